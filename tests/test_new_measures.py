"""The measures added through the registry: exact family curvature and representation similarity,
used as a user would: the Python API, the command line, the JSON, the page."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import manifold_probe as mp
from manifold_probe_cli.main import main


@pytest.fixture(scope="module")
def tanh_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 24), nn.Tanh(), nn.Linear(24, 5)).eval()


def test_family_curvature_is_a_result_with_exact_numbers_and_the_sampled_estimate(tanh_net, tmp_path):
    inputs = torch.randn(5, 16, generator=torch.Generator().manual_seed(1))
    result = mp.family_curvature(tanh_net, inputs, family="plane:0,1,2", layers=["1", "3", "logits"],
                                 n_grid=400, compare_sampled=True, n_bootstrap=50)  # fmt: skip
    assert result.command == "family-curvature" and [layer.name for layer in result.layers] == [
        "1",
        "3",
        "logits",
    ]
    for layer in result.layers:
        assert layer.details["regime"] == "smooth" and np.isfinite(layer.metrics["curvature_sff"])
        assert "sampled_curvature_sff" in layer.metrics and layer.details["sampled"]["status"]
        if layer.details["sampled"]["status"] == "measured":  # the estimator vouches: it must hold the truth
            low, high = layer.intervals["sampled_curvature_sff"]
            assert low <= layer.metrics["curvature_sff"] <= high, layer.name
    assert np.asarray(result.summary["preview_inputs"]).shape[1:] == (16,)
    page = result.to_html(tmp_path / "family.html").read_text()
    assert "The family's inputs" in page and "sampled estimate" in page
    options = {"family": "plane:0,1,2", "layers": ["1", "3", "logits"], "n_grid": 400}
    again = mp.family_curvature(tanh_net, inputs, compare_sampled=True, n_bootstrap=50, **options)
    assert again.to_dict() == result.to_dict()  # the same seed, the same JSON


def test_curvature_family_on_the_command_line(digits_checkpoint, tmp_path, capsys):
    out = tmp_path / "f.json"
    model = str(digits_checkpoint)
    code = main(["curvature", "--model", model, "--data", "digits", "--family", "plane:0,1,2",
                 "--family-points", "64", "--json", str(out), "--html", str(tmp_path / "f.html"),
                 "-q"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    written = json.loads(out.read_text())
    assert written["command"] == "family-curvature" and written["params"]["family"] == "plane:0,1,2"
    regimes = {layer["details"]["regime"] for layer in written["layers"]}
    assert regimes <= {"piecewise-linear", "linear"}  # a ReLU net: no curvature between its kinks
    assert "exact curvature of plane:0,1,2" in captured.out
    assert main(["curvature", "--model", str(digits_checkpoint), "--family", "plane:0,1", "-q"]) == 2
    assert "--family" in capsys.readouterr().err  # the bad spec names its flag


def test_similarity_of_rotated_copies_is_one_and_matrices_are_square(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8))
    rotation, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    result = mp.similarity(x, x @ rotation * 3.0, methods=("linear_cka", "procrustes"))
    assert result.metrics["points"]["linear_cka"] == pytest.approx(1.0, abs=1e-9)
    assert result.metrics["points"]["procrustes"] == pytest.approx(0.0, abs=1e-6)
    assert result.summary["rows"] == result.summary["columns"] == ["points"]
    assert result.to_html(tmp_path / "s.html").read_text().count("linear_cka") >= 1


def test_similarity_between_two_models_on_the_command_line(digits_checkpoint, tmp_path, capsys):
    other = tmp_path / "untrained.pt"
    assert main(["train", "--arch", "digits-cnn", "--epochs", "0", "--out", str(other), "-q"]) == 0
    out = tmp_path / "s.json"
    model = str(digits_checkpoint)
    code = main(["similarity", "--model", model, "--compare", str(other), "--n-points", "200",
                 "--method", "linear_cka", "--bootstrap", "10", "--no-cache", "--json", str(out),
                 "-q"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    written = json.loads(out.read_text())
    matrix = np.array(written["summary"]["matrices"]["linear_cka"]["values"], dtype=float)
    assert matrix.shape == (len(written["summary"]["rows"]), len(written["summary"]["columns"]))
    assert written["source"]["other"]["model"] == str(other) and not written["params"]["within_one_model"]
    assert np.all((matrix >= -1e-9) & (matrix <= 1 + 1e-9))
