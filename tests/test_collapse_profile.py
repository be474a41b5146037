"""`mprobe collapse` / `mprobe spectra` and the collapse profiles: the classifier found in a
model, per-layer metrics, the closed form on a simplex ETF, checkpoints over training, and
one-line errors with exit code 2."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from manifold_probe.errors import InputError
from manifold_probe.extraction.classifier import find_classifier
from manifold_probe.extraction.engine import extract
from manifold_probe.geometry.collapse import neural_collapse
from manifold_probe.measures.classifier import classifier_from_arrays, points_classifier
from manifold_probe.measures.collapse import collapse_profile, collapse_series
from manifold_probe.measures.sources import points_activations
from manifold_probe.metric_names import CLASSIFIER_METRICS, COLLAPSE_METRICS, FISHER_METRICS, SPECTRA_METRICS
from manifold_probe.results import SCHEMA, read_result
from manifold_probe.study.training import train_and_save
from manifold_probe_cli import main as cli

DIGITS_LAYERS = ["block1", "block2", "block3", "pool", "logits"]


def run(args, capsys):
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A digits-cnn (width 8, depth 3) trained 2 epochs, saved every epoch; its folder holds the
    activation cache the tests share."""
    folder = tmp_path_factory.mktemp("collapse")
    train_and_save("digits-cnn", {"width": 8, "depth": 3}, out=folder / "m.pt", epochs=2, save_every=1)
    return folder


def simplex_etf(n_classes: int, dim: int, norm: float, rng) -> np.ndarray:
    """C vertices (rows) of a simplex ETF of norm `norm`, randomly rotated into R^dim."""
    basis, _ = np.linalg.qr(rng.standard_normal((dim, n_classes)))
    etf = np.sqrt(n_classes / (n_classes - 1)) * (np.eye(n_classes) - 1.0 / n_classes)
    return norm * (basis @ etf).T


# --- the classifier of a model --------------------------------------------------------


class TwoHeads(nn.Module):
    """Registers `head` before `trunk`, but calls `trunk` (with a Linear inside) first."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(6, 3)
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.ReLU())

    def forward(self, x):
        return self.head(self.trunk(x) * 2.0)


class TokenHead(nn.Module):
    """A Linear applied per token: not one feature vector per sample."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(x.reshape(len(x), 4, 4)).mean(dim=1)


def test_the_classifier_is_the_last_linear_called_and_its_input_is_captured():
    torch.manual_seed(0)
    model = TwoHeads().eval()
    x = torch.randn(5, 1, 4, 4)
    head = find_classifier(model, x)
    assert head.name == "head" and head.weight.shape == (3, 6) and head.bias.shape == (3,)
    assert head.weight.dtype == np.float64
    expected = (model.trunk(x) * 2.0).detach().numpy()
    # the pass that extracts the layers captures the classifier's input with a pre-hook:
    # what `head` receives (trunk's output times 2), not trunk's own output
    both = torch.cat([x, x])
    acts = extract(model, both, ["trunk"], capture_inputs=["head"], batch_size=3, use_cache=False)
    np.testing.assert_allclose(acts.module_inputs["head"], np.vstack([expected, expected]), rtol=1e-6)
    np.testing.assert_allclose(acts["trunk"], np.vstack([expected, expected]) / 2.0, rtol=1e-6)
    assert list(acts) == ["trunk"]  # the captured input is not a layer


def test_a_linear_that_is_not_the_classifier_is_refused():
    # a mean over tokens is no position the model pools at (a decoder classifier's would be found)
    with pytest.raises(InputError, match="applied to every token .* a position mprobe cannot find"):
        find_classifier(TokenHead().eval(), torch.randn(2, 1, 4, 4))
    not_logits = nn.Sequential(nn.Flatten(), nn.Linear(16, 5), nn.ReLU(), nn.Unflatten(1, (5, 1)))
    with pytest.raises(InputError, match="not .batch, classes. logits"):
        find_classifier(not_logits.eval(), torch.randn(2, 1, 4, 4))
    with pytest.raises(InputError, match="no nn.Linear classifier"):
        find_classifier(nn.Sequential(nn.Conv2d(1, 3, 4), nn.Flatten()), torch.randn(2, 1, 4, 4))


# --- the closed form through --points/--labels/--classifier ---------------------------


def test_points_on_a_simplex_etf_match_the_closed_form(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n_classes, dim, norm, sigma, per_class = 5, 20, 4.0, 0.5, 2000
    means = simplex_etf(n_classes, dim, norm, rng)
    labels = np.repeat(np.arange(n_classes), per_class)
    features = (means[labels] + sigma * rng.standard_normal((len(labels), dim))).astype(np.float32)
    for name, array in (("h", features), ("y", labels), ("w", means), ("b", np.zeros(n_classes))):
        np.save(tmp_path / f"{name}.npy", array)
    js, page = tmp_path / "c.json", tmp_path / "c.html"
    code, out, err = run(["collapse", "--points", tmp_path / "h.npy", "--labels", tmp_path / "y.npy",
                          "--classifier", tmp_path / "w.npy", "--bias", tmp_path / "b.npy",
                          "--json", js, "--html", page], capsys)  # fmt: skip
    assert code == 0, err
    raw = json.loads(js.read_text())
    assert raw["schema"] == SCHEMA and raw["command"] == "collapse"
    (layer,) = read_result(js).layers
    assert layer.name == "points"
    metrics = layer.metrics
    closed_form = sigma**2 * (n_classes - 1) ** 2 / (norm**2 * n_classes)
    assert metrics["nc1"] == pytest.approx(closed_form, rel=0.05)
    assert metrics["etf_distance"] < 0.02 and metrics["nc3_self_duality"] < 0.005
    assert metrics["nc2_equinorm_weights"] < 1e-9 and metrics["nc2_max_angle_weights"] < 1e-9
    assert metrics["nc4_ncc_mismatch"] < 0.005
    # the same numbers as the whole-array estimator (the profile only streams it)
    direct = neural_collapse(features, labels, classifier=means, bias=np.zeros(n_classes)).metrics
    for name, value in direct.items():
        assert metrics[name] == pytest.approx(value, rel=1e-9, abs=1e-12)
    assert raw["summary"]["classifier"]["layer"] == "points"
    assert raw["summary"]["class_counts"] == [per_class] * n_classes
    assert "nc3_self_duality" in out and "Neural collapse by layer" in page.read_text()

    # spectra on the same points: C - 1 class-mean outliers, the Fisher parts sum to the whole
    js = tmp_path / "s.json"
    code, _, err = run(["spectra", "--points", tmp_path / "h.npy", "--labels", tmp_path / "y.npy",
                        "--classifier", tmp_path / "w.npy", "--fisher-points", "500", "--n-values", "7",
                        "--json", js], capsys)  # fmt: skip
    assert code == 0, err
    (layer,) = read_result(js).layers
    assert layer.metrics["n_outliers"] == n_classes - 1
    assert layer.metrics["class_means_abs_cos"] == pytest.approx(1 / (n_classes - 1), rel=0.05)
    parts = ("same_class", "class_means", "cross_class", "within_class")
    shares = [layer.metrics[f"fisher_{part}_share"] for part in parts]
    assert sum(shares) == pytest.approx(1.0, abs=1e-9)
    spectra = layer.details["spectra"]
    assert len(spectra["total"]) == 7 and spectra["n_eigenvalues"] == dim and spectra["truncated_to"] == 7
    assert layer.details["fisher"]["n_points"] == 500


def test_random_means_are_far_from_collapse_and_labels_may_be_any_integers():
    rng = np.random.default_rng(1)
    labels = np.repeat([3, 7, 9], 50)
    features = rng.standard_normal((150, 4)) + rng.standard_normal((3, 4))[np.searchsorted([3, 7, 9], labels)]
    arrays = points_activations(features, labels, source={"points": "memory"})
    result = collapse_profile(arrays)
    (layer,) = result.layers
    assert set(COLLAPSE_METRICS) <= set(layer.metrics) and not set(CLASSIFIER_METRICS) & set(layer.metrics)
    assert layer.metrics["nc1"] > 0.1 and result.summary["n_classes"] == 3
    # a classifier needs indices 0..C-1: these labels are out of range for 3 rows
    head = classifier_from_arrays(rng.standard_normal((3, 4)))
    with pytest.raises(InputError, match="outside 0..2"):
        collapse_profile(arrays, points_classifier(arrays, head))


# --- a model: every layer, the classifier's layer, checkpoints ------------------------


def test_collapse_on_the_digits_model_gives_finite_metrics_for_every_layer(run_dir, capsys):
    js, page = run_dir / "c.json", run_dir / "c.html"
    code, out, err = run(["collapse", "--model", run_dir / "m.pt", "--cache-dir", run_dir / "cache",
                          "--json", js, "--html", page, "-q"], capsys)  # fmt: skip
    assert code == 0, err
    result = read_result(js)
    assert [layer.name for layer in result.layers] == DIGITS_LAYERS
    assert result.source["split"] == "train" and result.source["n_points"] == 1346  # the whole split
    for layer in result.layers:
        assert layer.n_points == 1346
        for metric in COLLAPSE_METRICS:
            assert math.isfinite(layer.metrics[metric]), (layer.name, metric)
    assert result.summary["classifier"] == {"module": "head", "layer": "pool", "n_classes": 10,
                                            "n_features": 8, "bias": True}  # fmt: skip
    pool = result.layer("pool")
    assert set(CLASSIFIER_METRICS) <= set(pool.metrics)
    assert 0 <= pool.metrics["nc4_ncc_mismatch"] <= 1
    assert not set(CLASSIFIER_METRICS) & set(result.layer("block2").metrics)
    (entry,) = result.summary["checkpoints"]
    assert entry["epoch"] == 2 and entry["metrics"] == pool.metrics
    assert "nc1" in out and "classifier head on layer pool" in out
    assert "Neural collapse by layer" in page.read_text()

    # --layers without the classifier's input: it is captured in a second pass as `penultimate`
    js2 = run_dir / "c2.json"
    code, _, err = run(["collapse", "--model", run_dir / "m.pt", "--layers", "block1,logits",
                        "--cache-dir", run_dir / "cache", "--json", js2, "-q"], capsys)  # fmt: skip
    assert code == 0, err
    second = read_result(js2)
    assert [layer.name for layer in second.layers] == ["block1", "penultimate", "logits"]
    assert second.summary["classifier"]["layer"] == "penultimate"
    for metric, value in pool.metrics.items():
        assert second.layer("penultimate").metrics[metric] == pytest.approx(value, rel=1e-9)


def test_spectra_on_the_digits_model(run_dir, capsys):
    js, page = run_dir / "s.json", run_dir / "s.html"
    code, out, err = run(["spectra", "--model", run_dir / "m.pt", "--cache-dir", run_dir / "cache",
                          "--fisher-points", "400", "--json", js, "--html", page, "-q"], capsys)  # fmt: skip
    assert code == 0, err
    result = read_result(js)
    assert [layer.name for layer in result.layers] == DIGITS_LAYERS
    for layer in result.layers:
        assert set(SPECTRA_METRICS) <= set(layer.metrics)
        assert 0 <= layer.metrics["n_outliers"] <= 9
        total = layer.details["spectra"]["total"]
        assert len(total) == min(200, layer.ambient_dim) and total == sorted(total, reverse=True)
    pool = result.layer("pool")
    assert set(FISHER_METRICS) <= set(pool.metrics) and "fisher" not in result.layer("block1").details
    fisher = pool.details["fisher"]
    assert len(fisher["class_means"]) == 10 and len(fisher["cross_class"]) == 90
    assert sum(fisher["traces"][p] for p in ("same_class", "class_means", "cross_class", "within_class")) == (
        pytest.approx(fisher["traces"]["total"], rel=1e-9)
    )
    text = page.read_text()
    assert "Covariance spectra" in text and "Fisher block" in text
    assert "fisher_outlier_bulk_ratio" in out


def test_several_checkpoints_give_a_series_over_epochs(run_dir, capsys):
    js, page = run_dir / "t.json", run_dir / "t.html"
    # a quoted glob plus the final checkpoint, which has the weights of epoch 2: kept once
    code, out, err = run(["collapse", "--model", str(run_dir / "m-epoch*.pt"), "--model", run_dir / "m.pt",
                          "--cache-dir", run_dir / "cache", "--json", js, "--html", page, "-q"],
                         capsys)  # fmt: skip
    assert code == 0, err
    result = read_result(js)
    checkpoints = result.summary["checkpoints"]
    assert [entry["epoch"] for entry in checkpoints] == [1, 2]
    assert [entry["model"].rsplit("/", 1)[-1] for entry in checkpoints] == ["m-epoch001.pt", "m-epoch002.pt"]
    for entry in checkpoints:
        assert entry["layer"] == "pool" and 0 < entry["train_accuracy"] <= 1
        assert set(entry["layers"]) == set(DIGITS_LAYERS) and math.isfinite(entry["metrics"]["nc1"])
    assert result.source["checkpoint"]["epoch"] == 2  # layers: the last checkpoint
    assert result.layer("pool").metrics == checkpoints[-1]["metrics"]
    assert "over training" in out and "Neural collapse over training" in page.read_text()


def test_collapse_series_orders_by_epoch_then_name():
    def result(model, epoch, digest):
        source = {"model": model, "weights_digest": digest, "checkpoint": {"epoch": epoch, "metrics": {}}}
        from manifold_probe.results import Result

        return Result("collapse", source, {}, summary={"classifier": None})

    merged = collapse_series([result("b", 10, "x"), result("a", 2, "y"), result("c", 10, "x")])
    assert [e["model"] for e in merged.summary["checkpoints"]] == ["a", "b"]
    assert merged.source["models"] == ["a", "b"]


# --- bad input: one line, exit code 2 -------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["collapse", "--points", "H", "--labels", "SHORT"], "entries but there are"),
        (["collapse", "--points", "H", "--labels", "SINGLE"], "class 2 has 1 sample"),
        (["collapse", "--points", "H", "--labels", "Y", "--classifier", "WT"], "classifier has shape"),
        (["collapse", "--points", "H", "--labels", "Y", "--classifier", "W", "--bias", "B5"], "bias has 5"),
        (["spectra", "--points", "H", "--labels", "Y", "--classifier", "WT"], "classifier has shape"),
        (["collapse", "--points", "H"], "needs --labels"),
        (["collapse", "--points", "H", "--labels", "Y", "--bias", "B5"], "--bias needs --classifier"),
        (["collapse", "--model", "CONV", "--trust-checkpoint"], "no nn.Linear"),
        (["collapse", "--model", "CKPT", "--classifier", "W"], "goes with --points"),
        (["collapse", "--model", "NOMATCH"], "no checkpoint matches"),
        (["collapse"], "either --model"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message, run_dir, tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    single = labels.copy()
    single[-9:] = 1  # class 2 keeps one sample
    conv = nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten())
    torch.save(conv, tmp_path / "conv.pt")
    files = {"H": rng.standard_normal((30, 4)), "Y": labels, "SHORT": labels[:20], "SINGLE": single,
             "W": rng.standard_normal((3, 4)), "WT": rng.standard_normal((4, 3)),
             "B5": np.zeros(5)}  # fmt: skip
    subst = {"CKPT": run_dir / "m.pt", "CONV": tmp_path / "conv.pt", "NOMATCH": tmp_path / "none-*.pt"}
    for name, array in files.items():
        np.save(tmp_path / f"{name}.npy", array)
        subst[name] = tmp_path / f"{name}.npy"
    args = [*(subst.get(a, a) for a in args), "--cache-dir", run_dir / "cache", "-q"]
    code, out, err = run(args, capsys)
    assert code == 2, err
    assert message in err
    assert "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1


# --- E & Wojtowytsch: deep nets collapse, a one-hidden-layer net does not --------------


@pytest.mark.slow
def test_deep_cnn_collapses_more_than_a_one_hidden_layer_mlp(tmp_path, capsys):
    """E & Wojtowytsch (2021): a deep, expressive net trained long collapses its last layer to
    a simplex; a shallow one does not. Measured on the built-in digits (train split).

    The same by hand:
        mprobe train --arch digits-cnn --depth 4 --width 32 --epochs 60 --out cnn.pt
        mprobe train --arch digits-mlp --depth 1 --width 32 --epochs 60 --out mlp.pt
        mprobe collapse --model cnn.pt --json cnn.json
        mprobe collapse --model mlp.pt --json mlp.json
    """
    measured = {}
    for arch, depth in (("digits-cnn", 4), ("digits-mlp", 1)):
        out = tmp_path / f"{arch}.pt"
        train_and_save(arch, {"width": 32, "depth": depth}, out=out, epochs=60, seed=0)
        js = tmp_path / f"{arch}.json"
        args = ["collapse", "--model", out, "--cache-dir", tmp_path / "cache", "--json", js, "-q"]
        code, _, err = run(args, capsys)
        assert code == 0, err
        result = read_result(js)
        measured[arch] = result.layer(result.summary["classifier"]["layer"]).metrics
    cnn, mlp = measured["digits-cnn"], measured["digits-mlp"]
    assert cnn["nc1"] < mlp["nc1"] / 3
    assert cnn["etf_distance"] < mlp["etf_distance"]
