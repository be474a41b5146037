"""`mprobe cutting-planes` and its library side (profiles.cutting_planes) on tiny digits models."""

from __future__ import annotations

import json

import numpy as np
import pytest

import manifold_probe as mp
from manifold_probe.errors import InputError
from manifold_probe.measures.cutting_planes import (
    CuttingPlaneOptions,
    class_manifolds,
    cutting_planes_profile,
    success_curve_points,
)
from manifold_probe.results import SCHEMA, ClassResult, read_result
from manifold_probe.sources.data import load_data
from manifold_probe.study.training import train_and_save
from manifold_probe.validation import check_dims, select_targets
from manifold_probe_cli import main as cli_main

SWEEP = ["--dims", "4,16,64", "--planes", "3", "--steps", "60"]
SMALL = ["--dims", "4,64", "--planes", "2", "--steps", "30", "--bootstrap", "20"]


def run(args, capsys):
    code = cli_main.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def checkpoints(digits_checkpoint, tmp_path_factory):
    """Two tiny digits-cnns (width 8, 2 epochs) with seeds 0 (conftest's) and 1."""
    path = tmp_path_factory.mktemp("cutting-planes") / "cnn-seed1.pt"
    train_and_save("digits-cnn", {"width": 8, "depth": 3}, out=path, epochs=2, seed=1)
    return [digits_checkpoint, path]


def two_class_args(checkpoint, js):
    return ["cutting-planes", "--model", checkpoint, "--data", "digits", "--class", "3,5", *SWEEP,
            "--seed", "3", "--json", js, "-q"]  # fmt: skip


@pytest.fixture(scope="module")
def two_classes(checkpoints, tmp_path_factory):
    """One CLI run on classes 3 and 5: (exit code, JSON path, HTML path)."""
    folder = tmp_path_factory.mktemp("run")
    js, page = folder / "cp.json", folder / "cp.html"
    code = cli_main.main([str(a) for a in [*two_class_args(checkpoints[0], js), "--html", page]])
    return code, js, page


def test_classes_have_success_records_and_manifold_dim_is_d_minus_critical_dim(two_classes):
    code, js, _ = two_classes
    assert code == 0
    raw = json.loads(js.read_text())
    assert raw["schema"] == SCHEMA and raw["command"] == "cutting-planes"
    assert raw["layers"] == [] and raw["params"]["dims"] == [4, 16, 64]
    assert [entry["class"] for entry in raw["classes"]] == [3, 5]
    for entry in raw["classes"]:
        assert [s["dim"] for s in entry["success"]] == [4, 16, 64]
        for record in entry["success"]:
            assert record["planes"] == 3 and 0 <= record["hits"] <= 3
            assert len(record["max_probs"]) == 3 and 0 <= record["mean_max_prob"] <= 1
            assert record["hit_fraction"] == record["hits"] / 3
            assert record["hits"] == sum(p >= 0.5 for p in record["max_probs"])
            assert 0 <= record["unconverged"] <= 3 - record["hits"]  # 60 steps: some still rising
        assert entry["unconverged_planes"] == sum(r["unconverged"] for r in entry["success"])
        assert entry["critical_dim_status"] in (
            "crossed",
            "below_range",
            "above_range",
            "fit_failed",
            "unconverged",
        )
        if entry["critical_dim"] is not None:  # crossed, or unconverged after a crossing
            assert entry["manifold_dim"] == pytest.approx(64 - entry["critical_dim"])
            low, high = entry["critical_dim_interval"]
            assert 4 <= low <= high <= 64
            assert entry["manifold_dim_interval"] == pytest.approx([64 - high, 64 - low])
        else:
            assert entry["critical_dim"] is None and entry["manifold_dim"] is None
    assert any(entry["critical_dim"] is not None for entry in raw["classes"])
    summary = raw["summary"]
    assert summary["input_dim"] == 64 and summary["n_targets"] == 2 and summary["ensemble_size"] == 1
    crossed = [e["manifold_dim"] for e in raw["classes"] if e["critical_dim_status"] == "crossed"]
    if crossed:  # the mean is over crossed readings only, never over unconverged ones
        assert summary["mean_manifold_dim"] == pytest.approx(sum(crossed) / len(crossed))
    else:
        assert summary["mean_manifold_dim"] is None
    assert raw["source"]["input_shape"] == [1, 8, 8] and raw["source"]["num_classes"] == 10


def test_html_page_has_success_curves_and_is_self_contained(two_classes):
    _, _, page = two_classes
    text = page.read_text()
    assert "Success curves" in text and "fitted sigmoid" in text and "hit fraction" in text
    assert "<script src=" not in text and len(text) > 1_000_000  # plotly.js inlined


def test_same_seed_reproduces_the_json_exactly(checkpoints, tmp_path, capsys):
    texts = []
    for name in ("a.json", "b.json"):
        code, out, _ = run(["cutting-planes", "--model", checkpoints[0], "--class", "3,5", *SMALL,
                            "--seed", "7", "--json", tmp_path / name], capsys)  # fmt: skip
        assert code == 0
        texts.append((tmp_path / name).read_text())
    assert texts[0] == texts[1]
    assert "hits per d" in out and "D - d*" in out


def test_a_class_gets_the_same_planes_alone_or_with_others(checkpoints):
    """Per-target seeds: class 3's entry does not depend on which other classes are measured."""
    module = mp.load_model(checkpoints[0])
    data = load_data("digits", n_points=400, seed=0)
    options = CuttingPlaneOptions(dims=(4, 64), planes=2, steps=20, n_bootstrap=20)
    alone = class_manifolds(module, data.inputs(), data.labels, [(3,)], options, seed=1)
    together = class_manifolds(module, data.inputs(), data.labels, [(5,), (3,)], options, seed=1)
    assert alone[0].to_dict() == together[1].to_dict()
    assert together[0].to_dict()["success"] != together[1].to_dict()["success"]


def test_ensemble_of_two_checkpoints_runs(checkpoints, tmp_path, capsys):
    js = tmp_path / "ens.json"
    code, out, _ = run(["cutting-planes", "--model", checkpoints[0], "--model", checkpoints[1],
                        "--class", "3", *SMALL, "--json", js, "-q"], capsys)  # fmt: skip
    assert code == 0, out
    result = read_result(js)
    assert [m["model"] for m in result.source["models"]] == [str(p) for p in checkpoints]
    assert result.params["criterion"] == "ensemble averaged probability"
    assert result.summary["ensemble_size"] == 2 and "ensemble_limitation" in result.summary
    assert len(result.classes) == 1 and len(result.classes[0].success) == 2
    assert "2 models" in " ".join(out.split())


def test_set_of_classes_is_one_target(checkpoints):
    result = cutting_planes_profile(
        mp.model_info(mp.load_model(checkpoints[0])),
        mp.load_data("digits", n_points=300),
        classes="3,5",
        as_set=True,
        options=CuttingPlaneOptions(dims=(8, 64), planes=2, steps=20, n_bootstrap=10),
        device="cpu",
    )
    assert [entry.target for entry in result.classes] == [(3, 5)]
    assert result.params["set"] is True


def test_help_states_the_caveats_and_the_hit(capsys):
    code, out, _ = run(["cutting-planes", "--help"], capsys)
    assert code == 0
    text = " ".join(out.split())
    for phrase in ("eval mode", "batch statistics", "not clipped", "up to 2x", "HITS", "D - d*"):
        assert phrase in text


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--class", "12"], "class 12 does not exist"),
        (["--dims", ""], "--dims: is empty"),
        (["--dims", "4,100"], "exceeds the input dimension 64"),
        (["--dims", "0"], "not positive"),
        (["--dims", "4,x"], "not a whole number"),
        (["--class", "3", "--set"], "--set: a set needs two or more classes"),
        (["--offset", "edge"], "unknown offset"),
        (["--planes", "0"], "--planes: must be a whole number of at least 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(extra, message, checkpoints, capsys):
    code, out, err = run(["cutting-planes", "--model", checkpoints[0], "-q", *extra], capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1


def test_missing_model_is_exit_code_2(capsys):
    code, _, err = run(["cutting-planes", "--data", "digits"], capsys)
    assert code == 2 and "--model" in err


def test_library_checks():
    assert check_dims("16, 4,4") == [4, 16]
    assert check_dims([2, 8], 64) == [2, 8]
    assert select_targets("all", 3) == [(0,), (1,), (2,)]
    assert select_targets("5,3,5", 10) == [(5,), (3,)]
    assert select_targets([5, 3], 10, as_set=True) == [(3, 5)]
    assert select_targets(7, 10) == [(7,)]
    with pytest.raises(InputError, match="exceeds"):
        check_dims("65", 64)
    with pytest.raises(InputError, match="does not exist"):
        select_targets("-1", 10)


def test_fitted_curve_points_follow_the_fit():
    entry = {
        "class": 0,
        "input_dim": 100,
        "fit": {"lower": 0.0, "height": 1.0, "centre": 10.0, "width": 0.5},
        "success": [{"dim": 1, "planes": 1, "hits": 0}, {"dim": 100, "planes": 1, "hits": 1}],
    }
    grid, values = success_curve_points(ClassResult.from_dict(entry), n=5)
    assert grid[0] == pytest.approx(1) and grid[-1] == pytest.approx(100)
    assert values[2] == pytest.approx(0.5) and values == sorted(values)
    unfitted = ClassResult.from_dict({**entry, "fit": None, "success": [{"dim": 1, "planes": 1, "hits": 0}]})
    assert success_curve_points(unfitted) == ([], [])


def test_data_the_model_cannot_take_is_exit_code_2(checkpoints, tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "rgb.npz", x=rng.normal(size=(20, 3, 8, 8)), y=np.arange(20) % 10)
    code, _, err = run(["cutting-planes", "--model", checkpoints[0], "--data", f"npz:{tmp_path / 'rgb.npz'}",
                        "--class", "3", "-q"], capsys)  # fmt: skip
    assert code == 2 and "does not accept the data's inputs of shape (3, 8, 8)" in err
    assert len(err.strip().splitlines()) == 1
