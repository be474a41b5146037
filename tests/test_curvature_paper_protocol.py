"""`dim="twonn"`: Kaufman & Azencot's protocol, each layer fitted at its rounded TwoNN estimate.

Known answers: on the Clifford torus (a flat 2-torus in R^4, ||II|| = 1 exactly) TwoNN reads
about 2, so the protocol must give exactly the numbers of a fit at the given d = 2; on a
Gaussian blob, which has no clear local spectral gap (so the default gives no value), the
protocol fits at round(TwoNN) and marks the layer so."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import manifold_probe as mp
from manifold_probe.errors import InputError
from manifold_probe.extraction.activations import Activations, LayerRecord
from manifold_probe.measures.curvature import curvature_profile
from manifold_probe.results import Result
from manifold_probe.study.sweep import result_complete
from manifold_probe.validation import check_curvature_dim
from manifold_probe_cli.main import main

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "curvature_accuracy.py"
_spec = importlib.util.spec_from_file_location("curvature_accuracy", _SCRIPT)
acc = importlib.util.module_from_spec(_spec)
sys.modules["curvature_accuracy"] = acc
_spec.loader.exec_module(acc)


def _profile(points: dict[str, np.ndarray], **kwargs) -> Result:
    records = {
        name: LayerRecord(name, (x.shape[1],), "none", x.shape[1], False, False) for name, x in points.items()
    }
    return curvature_profile(
        Activations(points, records, None, source={"points": "test"}), n_bootstrap=30, **kwargs
    )


def test_twonn_protocol_equals_the_fit_at_the_rounded_twonn_dimension():
    torus = acc.sample("clifford", 1500, None, 0.0, seed=1).points
    paper = _profile({"torus": torus}, dim="twonn").layers[0]
    assert round(paper.metrics["id_twonn"]) == 2
    assert paper.details["dim"] == 2
    assert paper.details["dim_method"].startswith("twonn")
    assert paper.details["dim_user_given"] is False
    given = _profile({"torus": torus}, dim=2).layers[0]
    for name in ("mapc", "curvature_sff", "mapc_scaled", "curvature_sff_scaled"):
        assert paper.metrics[name] == given.metrics[name]
    assert paper.metrics["curvature_sff"] == pytest.approx(1.0, rel=0.05)  # the exact ||II|| = 1


def test_twonn_protocol_measures_a_layer_the_gap_rule_cannot():
    """A Gaussian in R^20 whose axis scales decay smoothly (0.8^i), like a real layer's
    spectrum: no manifold scale window, so the default rule says no_manifold_scale; the protocol
    fits it at round(TwoNN) and says where d came from."""
    blob = np.random.default_rng(3).standard_normal((700, 20)) * 0.8 ** np.arange(20)
    default = _profile({"blob": blob})
    assert default.layers[0].status == "no_manifold_scale"
    frame = default.to_frame()  # the status travels with the NaN values
    assert frame[frame.metric == "mapc"]["value"].isna().all()
    assert set(frame["status"]) == {"no_manifold_scale"}
    paper = _profile({"blob": blob}, dim="twonn").layers[0]
    assert paper.details["dim"] == max(1, round(paper.metrics["id_twonn"]))
    assert paper.status == "paper_protocol"
    assert np.isfinite(paper.metrics["mapc"])


def test_twonn_protocol_refuses_a_layer_that_fills_its_space():
    """A full-rank Gaussian in R^5: TwoNN reads about 5 = D, so no normal direction is left."""
    full = _profile({"full": np.random.default_rng(4).standard_normal((800, 5))}, dim="twonn").layers[0]
    assert full.status == "not_measurable"
    assert "fills its space" in full.reason
    assert np.isnan(full.metrics["mapc"])


def test_a_given_dim_too_wide_for_one_layer_costs_only_that_layer():
    """--dim 3 on a profile whose last layer has 3 features: that layer is not_measurable with
    the reason, the sphere before it is measured."""
    rng = np.random.default_rng(5)
    sphere = rng.standard_normal((600, 4))
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    narrow = rng.standard_normal((600, 3))
    result = _profile(
        {"sphere": sphere @ np.linalg.qr(rng.standard_normal((6, 6)))[0][:4], "narrow": narrow}, dim=3
    )
    wide, small = result.layers
    assert wide.status in ("measured", "cannot_tell") and np.isfinite(wide.metrics["mapc"])
    assert small.status == "not_measurable" and "dim=3 was given" in small.reason


@pytest.mark.parametrize("bad", ["gap", "two", 0, -3, 2.5, True])
def test_a_bad_dim_is_refused(bad):
    with pytest.raises(InputError, match="twonn"):
        check_curvature_dim(bad)


def test_dim_from_text_becomes_an_integer():
    assert check_curvature_dim("3") == 3 and check_curvature_dim("twonn") == "twonn"
    assert check_curvature_dim(None) is None


def test_cli_dim_twonn_and_a_bad_dim(tmp_path, capsys):
    points = tmp_path / "torus.npy"
    np.save(points, acc.sample("clifford", 800, None, 0.0, seed=2).points.astype(np.float32))
    out = tmp_path / "curvature.json"
    code = main(["curvature", "--points", str(points), "--dim", "twonn", "--bootstrap", "20",
                 "--json", str(out), "-q"])  # fmt: skip
    printed, _ = capsys.readouterr()
    assert code == 0
    written = json.loads(out.read_text())
    assert written["params"]["dim"] == "twonn"
    assert written["layers"][0]["details"]["dim"] == 2
    assert "Kaufman & Azencot's protocol" in printed
    assert main(["curvature", "--points", str(points), "--dim", "tw0nn", "-q"]) == 2
    _, err = capsys.readouterr()
    assert "twonn" in err and err.count("\n") == 1


def test_sweep_redoes_a_curvature_result_measured_at_another_dim(tmp_path):
    path = tmp_path / "curvature.json"
    Result(command="curvature", source={}, params={"dim": None}).write(path)
    assert result_complete(path, "curvature", {"dim": None})
    assert not result_complete(path, "curvature", {"dim": "twonn"})


def test_fits_at_sampled_centres_equal_the_full_fit_at_those_points():
    """`n_centres`: the per-point values at the sampled rows are exactly those of the fit at
    every point (same neighbourhoods from all N points), and the mean stays within its interval."""
    from manifold_probe.geometry.curvature import centre_rows, curvature

    torus = acc.sample("clifford", 1200, 10, 0.0, seed=7).points
    full = curvature(torus, 2, n_bootstrap=50)
    sampled = curvature(torus, 2, n_bootstrap=50, n_centres=300)
    rows = centre_rows(len(torus), 300, seed=0)
    assert sampled.n_points == 300 and len(set(rows.tolist())) == 300
    np.testing.assert_allclose(sampled.mapc_per_point, full.mapc_per_point[rows], rtol=1e-10)
    np.testing.assert_allclose(sampled.sff_squared_per_point, full.sff_squared_per_point[rows], rtol=1e-10)
    low, high = sampled.intervals["mapc"]
    assert low <= full.mapc <= high
    assert curvature(torus, 2, n_bootstrap=50, n_centres=5000).n_points == 1200  # more than N: every point
    assert centre_rows(100, None, seed=0) is None


def test_sweep_and_profile_record_the_centres(tmp_path):
    torus = acc.sample("clifford", 900, None, 0.0, seed=2).points
    result = _profile({"torus": torus}, dim="twonn", n_centres=200)
    assert result.params["n_centres"] == 200 and result.layers[0].details["n_centres"] == 200
    path = tmp_path / "curvature.json"
    result.write(path)
    assert result_complete(path, "curvature", {"dim": "twonn", "n_centres": 200})
    assert not result_complete(path, "curvature", {"dim": "twonn", "n_centres": None})


def test_the_protocol_with_perturbation_neighbourhoods_reports_mapc_marked(digits_checkpoint):
    """Kaufman & Azencot's own construction (perturbed copies, d = rounded TwoNN): every layer the
    copies can fit is `paper_protocol` with its MAPC, whatever the guards of the fit alone say."""
    model = mp.load_model(digits_checkpoint)
    data = mp.load_data("digits", n_points=30, seed=0)
    result = mp.curvature(model, data, neighbourhood="perturb", dim="twonn", n_top=8, n_toggle=7,
                          n_bootstrap=10, layers=["block1", "pool"])  # fmt: skip
    for layer in result.layers:
        assert layer.status == "paper_protocol", layer.reason
        assert layer.details["dim"] == max(1, round(layer.metrics["id_twonn"]))
        assert np.isfinite(layer.metrics["mapc"]) and layer.metrics["mapc"] > 0
        assert "the fit alone says" in layer.reason
