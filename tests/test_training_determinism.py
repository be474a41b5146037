"""Reproducible training: the same seed gives the same checkpoint, byte for byte, in fresh processes;
the learning-rate schedules follow their formulas."""

import hashlib
import subprocess
import sys

import pytest
import torch

from manifold_probe.errors import InputError
from manifold_probe.study.training import learning_rate_factor
from manifold_probe.study.training_config import TrainingConfig

TRAIN = """
import sys
import torch
torch.set_num_threads(2)  # the caller's setting: training must not depend on it
from manifold_probe.study.training import train_and_save
train_and_save("digits-cnn", {"width": 8, "depth": 2}, out=sys.argv[1], epochs=2, save_every=1,
               train_size=300, batch_size=32, lr_schedule="step", seed=int(sys.argv[2]))
assert not torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == 2
"""


def _train_in_fresh_process(out, seed: int) -> None:
    subprocess.run([sys.executable, "-c", TRAIN, str(out), str(seed)], check=True, timeout=300)


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_same_seed_gives_the_same_checkpoint_bytes_in_fresh_processes(tmp_path):
    first, second, other = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"
    _train_in_fresh_process(first, 3)
    _train_in_fresh_process(second, 3)
    _train_in_fresh_process(other, 4)
    assert _digest(first) == _digest(second)
    assert _digest(first.with_name("a-epoch001.pt")) == _digest(second.with_name("b-epoch001.pt"))
    # the comparison can fail: another seed gives other weights (and other bytes)
    assert _digest(first) != _digest(other)
    a = torch.load(first, weights_only=True)["state_dict"]
    c = torch.load(other, weights_only=True)["state_dict"]
    assert any(not torch.equal(a[name], c[name]) for name in a)


def test_learning_rate_schedules():
    total = 300
    assert [learning_rate_factor("step", s, total) for s in (0, 99, 100, 199, 200, 299)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )
    assert learning_rate_factor("cosine", 0, total) == 1.0
    assert learning_rate_factor("cosine", 150, total) == pytest.approx(0.5)
    assert learning_rate_factor("constant", 299, total) == 1.0
    with pytest.raises(InputError, match="lr_schedule: must be one of cosine, step, constant"):
        TrainingConfig(lr_schedule="linear")
