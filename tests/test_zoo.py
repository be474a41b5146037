"""The model zoo: presets, zoo.json (the contract the sweep reads), resuming, and `mprobe zoo`."""

from __future__ import annotations

import json

import pytest
import torch

from manifold_probe.errors import InputError
from manifold_probe.study import training, zoo_presets
from manifold_probe.study.zoo_presets import (
    PRESETS,
    SETTINGS,
    ZOO_SCHEMA,
    ZooModel,
    preset_models,
    train_zoo,
)
from manifold_probe_cli.main import main

MICRO = (
    ZooModel("digits-mlp", 8, 1, 1),
    ZooModel("digits-mlp", 8, 1, 0),
    ZooModel("digits-cnn", 4, 1, 1, weight_decay=0.0, mixup=0.2, label_smoothing=0.1, label_noise=0.2,
             train_size=60),
)  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread (see test_training.py): tiny steps are slower with two under load."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_names_follow_the_settings():
    assert MICRO[0].name(3) == "mlp-w8-d1-e1-s3"
    assert MICRO[1].name(0) == "mlp-w8-d1-e0-s0"
    assert MICRO[2].name(0) == "cnn-w4-d1-e1-wd0-mix0.2-ls0.1-ln0.2-n60-s0"


def test_presets_have_unique_names_spread_their_settings_and_include_untrained_copies():
    for name, models in PRESETS.items():
        names = [model.name(0) for model in models]
        assert len(set(names)) == len(names), name
        assert any(model.epochs == 0 for model in models)
    demo, full = PRESETS["demo"], PRESETS["full"]
    assert 10 <= len(demo) <= 14 and all(model.width <= 16 for model in demo)
    assert len(full) >= 30 and {model.arch for model in full} == {"digits-cnn", "digits-mlp"}
    for models in (demo, full):
        assert any(model.mixup for model in models) and any(model.label_smoothing for model in models)
        assert any(model.label_noise for model in models) and any(model.train_size for model in models)
        assert any(model.weight_decay == 0 for model in models)
        assert len({model.depth for model in models}) > 1 and len({model.epochs for model in models}) > 2


def test_unknown_preset_is_an_input_error():
    with pytest.raises(InputError, match="did you mean demo"):
        preset_models("dmeo")


def test_a_micro_zoo_writes_its_index_and_resumes(tmp_path):
    entries = train_zoo(tmp_path / "zoo", MICRO, seed=1)
    assert [entry.name for entry in entries] == [model.name(1) for model in MICRO]
    assert all(entry.trained and entry.path.is_file() for entry in entries)

    index = json.loads((tmp_path / "zoo" / "zoo.json").read_text())
    assert index["schema"] == ZOO_SCHEMA and index["complete"] and index["seed"] == 1
    assert [item["path"] for item in index["models"]] == [f"{model.name(1)}.pt" for model in MICRO]
    assert [item["family"] for item in index["models"]] == ["digits-mlp", "digits-mlp", "digits-cnn"]
    for item in index["models"]:
        assert tuple(item["settings"]) == SETTINGS
        assert {"train_accuracy", "test_accuracy", "train_loss", "test_loss"} <= set(item["metrics"])
    noisy = index["models"][2]["settings"]
    assert noisy == {
        "arch": "digits-cnn", "width": 4, "depth": 1, "epochs": 1, "untrained": False, "weight_decay": 0.0,
        "mixup": 0.2, "label_smoothing": 0.1, "label_noise": 0.2, "train_size": 60, "lr": 0.1,
        "lr_schedule": "cosine", "batch_size": 128, "seed": 1,
    }  # fmt: skip
    assert index["models"][0]["settings"]["train_size"] == 1346  # the whole split, counted
    assert [item["settings"]["untrained"] for item in index["models"]] == [False, True, False]

    # the checkpoint holds every option under the same names (what the sweep reads)
    stored = torch.load(entries[2].path, weights_only=True)
    assert {key: stored["training"][key] for key in ("mixup", "label_smoothing", "label_noise")} == {
        "mixup": 0.2, "label_smoothing": 0.1, "label_noise": 0.2}  # fmt: skip
    # the untrained copy starts from the trained twin's initial weights: same seed, same shape
    assert stored["seed"] == 1

    written = {entry.path: entry.path.stat().st_mtime_ns for entry in entries}

    def no_training(*args, **kwargs):
        raise AssertionError("a resumed zoo must not train again")

    with pytest.MonkeyPatch.context() as patch:  # resuming reads what is there: no training at all
        patch.setattr(training, "train_and_save", no_training)
        again = train_zoo(tmp_path / "zoo", MICRO, seed=1)
    assert not any(entry.trained for entry in again)  # the second call trains nothing
    assert {entry.path: entry.path.stat().st_mtime_ns for entry in again} == written
    assert [entry.metrics for entry in again] == [entry.metrics for entry in entries]

    entries[1].path.unlink()  # a lost checkpoint is the only one trained again
    third = train_zoo(tmp_path / "zoo", MICRO, seed=1)
    assert [entry.trained for entry in third] == [False, True, False]


def test_a_zoo_trained_in_two_processes_has_the_same_checkpoints(tmp_path):
    one = train_zoo(tmp_path / "one", MICRO, seed=1)
    two = train_zoo(tmp_path / "two", MICRO, seed=1, workers=2)
    assert [entry.name for entry in two] == [entry.name for entry in one]
    assert [entry.path.read_bytes() for entry in two] == [entry.path.read_bytes() for entry in one]


def test_zoo_command_prints_the_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(zoo_presets.PRESETS, "micro", MICRO[:2])
    code = main(["zoo", "--out", str(tmp_path / "z"), "--preset", "micro", "--seed", "2", "-q"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "mlp-w8-d1-e1-s2" in out and "mlp-w8-d1-e0-s2" in out and "test acc" in out
    assert "2 trained, 0 kept" in err and (tmp_path / "z" / "zoo.json").is_file()
    code = main(["zoo", "--out", str(tmp_path / "z"), "--preset", "micro", "--seed", "2", "-q"])
    assert code == 0 and "0 trained, 2 kept" in capsys.readouterr().err
    code = main(["zoo", "--out", str(tmp_path / "z"), "--preset", "nope", "-q"])
    assert code == 2 and "unknown zoo preset 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_demo_preset_spreads_test_accuracy_from_chance_to_high(tmp_path):
    entries = train_zoo(tmp_path / "demo", "demo", seed=0)
    accuracies = sorted(entry.metrics["test_accuracy"] for entry in entries)
    assert accuracies[0] < 0.2 and accuracies[-1] > 0.95
    assert sum(0.3 < a < 0.9 for a in accuracies) >= 2  # and something in between
