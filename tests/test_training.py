"""Training: bit-for-bit determinism with a seed, a sane accuracy after a short run, and the
checkpoint round trip through `load_model` (same logits, stored metrics reproduce)."""

import numpy as np
import pytest
import torch

from manifold_probe.errors import InputError
from manifold_probe.sources import zoo
from manifold_probe.sources.checkpoint import FORMAT
from manifold_probe.sources.data import load_data
from manifold_probe.sources.models import load_model
from manifold_probe.training import (
    TrainingConfig,
    epoch_checkpoint_path,
    evaluate,
    train,
    train_and_save,
)

TINY = {"width": 8, "depth": 2}


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread while these tests run: on a shared 2-core machine under load, two
    spinning torch threads make these tiny steps ~10x slower. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_same_seed_gives_the_same_weights_bit_for_bit():
    rng_before = torch.get_rng_state()
    first, _, _ = train("digits-cnn", TINY, epochs=1, seed=3)
    second, _, _ = train("digits-cnn", TINY, epochs=1, seed=3)
    other, _, _ = train("digits-cnn", TINY, epochs=1, seed=4)
    a, b, c = first.state_dict(), second.state_dict(), other.state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert not torch.equal(a["block1.conv.weight"], c["block1.conv.weight"])
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is left alone


def test_short_training_reaches_a_sane_accuracy():
    module, metrics, history = train("digits-cnn", {"width": 16, "depth": 2}, epochs=3, seed=0)
    assert not module.training
    assert metrics["test_accuracy"] > 0.85  # chance is 0.10
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[0]["lr"] == pytest.approx(0.1)  # cosine from lr ...
    assert history[-1]["lr"] < history[1]["lr"] < 0.1  # ... down towards 0
    assert metrics["train_loss"] < history[0]["train_loss"]
    mlp, mlp_metrics, _ = train("digits-mlp", {"width": 32, "depth": 1}, epochs=3, seed=0)
    assert mlp_metrics["test_accuracy"] > 0.85


def test_checkpoint_round_trip_gives_the_same_logits(tmp_path):
    out = tmp_path / "run" / "ckpt.pt"
    run = train_and_save("digits-cnn", TINY, out=out, epochs=2, save_every=1, seed=1)
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "ckpt-epoch001.pt",
        "ckpt-epoch002.pt",
        "ckpt.pt",
    ]
    stored = torch.load(out, weights_only=True)
    assert stored["format"] == FORMAT and stored["epoch"] == 2 and stored["data"] == "digits"
    assert stored["arch_args"] == {**TINY, "num_classes": 10, "in_channels": 1, "input_size": 8}
    assert stored["training"] == TrainingConfig("digits-cnn", TINY, epochs=2, seed=1).as_dict()
    assert stored["metrics"] == run.metrics and len(stored["history"]) == 2

    loaded = load_model(out)
    test = load_data("digits", split="test")
    x = test.inputs()
    with torch.no_grad():
        assert torch.equal(loaded.module(x), run.module(x))
    loss, accuracy = evaluate(loaded.module, test, torch.device("cpu"))
    assert accuracy == run.metrics["test_accuracy"]
    assert loss == pytest.approx(run.metrics["test_loss"], rel=1e-6)

    first = load_model(epoch_checkpoint_path(out, 1))
    assert first.checkpoint["epoch"] == 1 and first.digest != loaded.digest
    assert load_model(epoch_checkpoint_path(out, 2)).digest == loaded.digest


def test_data_without_test_split_trains_with_test_metrics_none(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    x = rng.normal(size=(40, 1, 8, 8)) + 3.0 * y[:, None, None, None]  # two separable blobs
    path = tmp_path / "blobs.npz"
    np.savez(path, x=x, y=y)
    module, metrics, _ = train(
        "digits-mlp", {"width": 8, "depth": 1}, data=f"npz:{path}", epochs=10, batch_size=16
    )
    assert metrics["test_accuracy"] is None and metrics["test_loss"] is None
    assert metrics["train_accuracy"] > 0.9
    assert module.head.out_features == 2  # num_classes taken from the data


def test_zero_epochs_saves_the_untrained_network(tmp_path):
    run = train_and_save("digits-mlp", {"width": 8, "depth": 1}, out=tmp_path / "u.pt", epochs=0, seed=3)
    assert run.epoch == 0 and run.history == []
    assert run.metrics["test_accuracy"] < 0.5  # chance level is 0.1
    torch.manual_seed(3)
    fresh = zoo.build_model("digits-mlp", **run.arch_args)
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, run.module.state_dict()[name])


def test_bad_training_settings_are_input_errors():
    with pytest.raises(InputError, match="epochs must be non-negative"):
        TrainingConfig(epochs=-1)
    with pytest.raises(InputError, match="momentum must be below 1"):
        TrainingConfig(momentum=1.0)
    with pytest.raises(InputError, match="num_classes=5 but digits has 10 classes"):
        train("digits-cnn", {"num_classes": 5}, epochs=1)
    with pytest.raises(InputError, match="did you mean digits-mlp"):
        train("digits-mpl", epochs=1)
