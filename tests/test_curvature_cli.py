"""`mprobe curvature` as a user runs it: a point cloud of known curvature, a model, a comparison page."""

from __future__ import annotations

import numpy as np
import pytest

from manifold_probe.measures.layers import nothing_measured
from manifold_probe.results import read_result
from manifold_probe.study.training import train_and_save
from manifold_probe_cli.main import main


def sphere(n: int, radius: float, ambient: int, seed: int = 0) -> np.ndarray:
    """S^2 of `radius`, sampled uniformly, rotated into R^ambient."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    x *= radius / np.linalg.norm(x, axis=1, keepdims=True)
    q, _ = np.linalg.qr(rng.normal(size=(ambient, ambient)))
    return x @ q[:3]


def test_points_of_a_sphere_give_its_curvature(tmp_path, capsys):
    np.save(tmp_path / "s.npy", sphere(1500, 2.0, 20))
    code = main(["curvature", "--points", str(tmp_path / "s.npy"), "--bootstrap", "50",
                 "--json", str(tmp_path / "c.json"), "-q"])  # fmt: skip
    assert code == 0
    layer = read_result(tmp_path / "c.json").layers[0]
    assert layer.details["dim"] == 2  # the gap in the local spectra
    assert layer.metrics["curvature_sff"] == pytest.approx(0.5, rel=0.05)
    low, high = layer.intervals["curvature_sff"]
    assert low <= layer.metrics["curvature_sff"] <= high


def test_given_dim_overrides_twonn_and_too_small_k_is_refused(tmp_path, capsys):
    np.save(tmp_path / "s.npy", sphere(800, 1.0, 5))
    code = main(["curvature", "--points", str(tmp_path / "s.npy"), "--dim", "2", "--k", "4", "-q"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "neighbour" in err or "K=" in err


def test_model_profile_with_an_untrained_comparison_on_one_page(tmp_path, capsys):
    trained, untrained = tmp_path / "t.pt", tmp_path / "u.pt"
    train_and_save("digits-mlp", {"width": 16, "depth": 2}, out=trained, epochs=2, seed=0)
    train_and_save("digits-mlp", {"width": 16, "depth": 2}, out=untrained, epochs=0, seed=0)
    code = main(["curvature", "--model", str(trained), "--compare", str(untrained), "--data", "digits",
                 "--n-points", "400", "--dim", "twonn", "--bootstrap", "20",
                 "--cache-dir", str(tmp_path / "c"), "--json", str(tmp_path / "c.json"),
                 "--html", str(tmp_path / "c.html"), "-q"])  # fmt: skip
    assert code == 0
    result = read_result(tmp_path / "c.json")
    other = read_result(tmp_path / "c.u.json")
    assert [layer.name for layer in result.layers] == [layer.name for layer in other.layers]
    last, before = result.layers[-1].metrics, result.layers[-2].metrics
    assert result.summary["curvature_gap"] == pytest.approx(last["mapc"] - before["mapc"])
    scaled_gap = last["mapc_scaled"] - before["mapc_scaled"]
    assert result.summary["curvature_gap_scaled"] == pytest.approx(scaled_gap)
    page = (tmp_path / "c.html").read_text()
    assert "t (digits-mlp, epoch 2)" in page and "u (digits-mlp, epoch 0)" in page  # legends name models
    assert "knn neighbourhoods" in page and "TwoNN rounded" in page


def test_perturb_neighbourhoods_through_a_model(tmp_path, capsys):
    model = tmp_path / "m.pt"
    train_and_save("digits-cnn", {"width": 8, "depth": 2}, out=model, epochs=1, seed=0)
    code = main(["curvature", "--neighbourhood", "perturb", "--model", str(model), "--n-points", "40",
                 "--dim", "3", "--bootstrap", "20", "--no-cache", "--json", str(tmp_path / "p.json"),
                 "-q"])  # fmt: skip
    assert code == 0
    result = read_result(tmp_path / "p.json")
    assert result.params["neighbourhood"] == "perturb"
    assert result.params["n_copies"] == 2**7 - 1  # 8x8 images: n_top 8, n_toggle 7
    for layer in result.layers:
        assert layer.details["k"] == 127 and layer.n_points == 40
        assert layer.metrics["mapc"] > 0


def test_perturb_needs_a_model(tmp_path, capsys):
    np.save(tmp_path / "s.npy", sphere(200, 1.0, 5))
    code = main(["curvature", "--neighbourhood", "perturb", "--points", str(tmp_path / "s.npy"), "-q"])
    _, err = capsys.readouterr()
    assert code == 2 and "perturb" in err


def test_perturb_reads_each_layers_dimension_from_its_spectral_gap(tmp_path, capsys):
    """Without --dim, perturb takes each layer's d from the gap in its local PCA spectra (as
    knn does), not from TwoNN; every layer is measured at that d or kept with its reason."""
    model = tmp_path / "m.pt"
    train_and_save("digits-cnn", {"width": 8, "depth": 2}, out=model, epochs=1, seed=0)
    code = main(["curvature", "--neighbourhood", "perturb", "--model", str(model), "--n-points", "60",
                 "--bootstrap", "20", "--no-cache", "--json", str(tmp_path / "p.json"), "-q"])  # fmt: skip
    result = read_result(tmp_path / "p.json")
    assert code == (3 if nothing_measured(result) else 0)  # 3: written, but no layer has a reading
    for layer in result.layers:
        assert layer.details["dim_method"].startswith("local PCA")
        assert layer.details["dim_user_given"] is False
        if layer.status == "measured":
            assert layer.details["dim_gap_clear"] and layer.details["k"] == 127
        else:
            assert layer.reason and layer.metrics["mapc"] is None  # NaN in JSON: null


def test_without_n_points_a_large_data_set_is_capped_with_a_note(tmp_path, capsys, monkeypatch,
                                                                 digits_checkpoint):  # fmt: skip
    """The command's own cap (5,000; 300 here on digits' 1,346 training images): a seeded subset
    and one note saying so; --n-points still wins."""
    from manifold_probe_cli import commands_curvature

    monkeypatch.setattr(commands_curvature, "DEFAULT_POINTS", 300)
    common = ["curvature", "--model", str(digits_checkpoint), "--layers", "pool", "--dim", "twonn",
              "--bootstrap", "10", "--null-draws", "0", "--no-cache",
              "--json", str(tmp_path / "c.json")]  # fmt: skip
    assert main(common) == 0
    assert "a seeded subset of 300 of the 1346 samples" in capsys.readouterr().err
    assert read_result(tmp_path / "c.json").layers[0].n_points == 300
    assert main([*common, "--n-points", "400", "-q"]) == 0
    assert read_result(tmp_path / "c.json").layers[0].n_points == 400
