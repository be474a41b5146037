"""A layer that cannot be measured never loses the others (issue 11, item 5): every measure
keeps it with status `skipped` and its reason, measures the rest, and the command line exits 0
(3, with the result written, when no layer could be measured)."""

import json

import numpy as np
import pytest
import torch

import manifold_probe as mp
from manifold_probe.errors import InputError
from manifold_probe.measures.collapse import collapse_profile
from manifold_probe.measures.layers import CONSTANT, is_constant, nothing_measured
from manifold_probe_cli.main import main

COMMON = ["--data", "digits", "--n-points", "300", "--no-cache", "-q"]


def _edited_checkpoint(source, out, zero):
    """A copy of the checkpoint with the named weights set to zero."""
    checkpoint = torch.load(source, weights_only=True)
    for name in zero:
        checkpoint["state_dict"][name] = torch.zeros_like(checkpoint["state_dict"][name])
    torch.save(checkpoint, out)
    return out


@pytest.fixture(scope="module")
def zero_head(digits_checkpoint, tmp_path_factory):
    """The digits-cnn with its head at zero: every logit is 0, like torchvision's fresh ViT."""
    out = tmp_path_factory.mktemp("zero") / "zero-head.pt"
    return _edited_checkpoint(digits_checkpoint, out, ["head.weight", "head.bias"])


@pytest.fixture(scope="module")
def all_constant(digits_checkpoint, tmp_path_factory):
    """The first convolution at zero: every layer after it is the same for every image."""
    out = tmp_path_factory.mktemp("const") / "all-constant.pt"
    return _edited_checkpoint(digits_checkpoint, out, ["block1.conv.weight"])


def test_is_constant_reads_slices_and_ignores_nan():
    assert is_constant(np.ones((5000, 3)))
    x = np.ones((5000, 3))
    x[4999, 2] = 2.0  # the difference is in the second slice
    assert not is_constant(x)
    assert not is_constant(np.full((4, 2), np.nan))
    assert not is_constant(np.ones((1, 3)))


def test_a_fresh_torchvision_vit_gives_its_logits_skipped_and_the_rest_measured():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=16, patch_size=8, num_layers=3, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=4
    )
    x = torch.randn(60, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    result = mp.intrinsic_dimension(vit, x, methods=("twonn", "pca"))
    logits = result.layer("logits")
    assert (logits.status, logits.reason, logits.details, logits.metrics) == ("skipped", CONSTANT, {}, {})
    measured = [layer for layer in result.layers if layer.name != "logits"]
    assert [layer.name for layer in measured][1:4] == [f"encoder.layers.encoder_layer_{i}" for i in range(3)]
    for layer in measured:
        assert layer.status == "measured" and 1 < layer.metrics["id_twonn"] < layer.ambient_dim
    frame = result.to_frame()
    assert "logits" not in set(frame["layer"]) and not nothing_measured(result)
    assert set(frame["status"]) == {"measured"}


def test_every_api_measure_skips_a_constant_layer(zero_head):
    model = mp.load_model(zero_head)
    data = mp.load_data("digits", n_points=300, seed=0)
    with mp.extract(model, data) as acts:
        results = {
            "id": mp.intrinsic_dimension(acts, methods=("twonn",)),
            "curvature": mp.curvature(acts, dim=2, n_bootstrap=10),
            "collapse": mp.collapse(acts),
            "spectra": mp.spectra(acts, fisher_points=60),
        }
    for name, result in results.items():
        logits = result.layer("logits")
        assert logits.status == "skipped", name
        assert logits.reason == CONSTANT, name
        others = [layer for layer in result.layers if layer.name != "logits"]
        assert others and all(layer.metrics for layer in others), name
    # collapse keeps the classifier's metrics on the (measured) layer that feeds it
    assert "nc3_self_duality" in results["collapse"].metrics["pool"]
    # the curvature gap involves the skipped last layer: NaN, not a number made up
    assert np.isnan(results["curvature"].summary["curvature_gap"])


def test_a_bare_constant_point_cloud_is_still_an_input_error():
    with pytest.raises(InputError, match="too few"):
        mp.intrinsic_dimension(np.ones((50, 3)))


def test_an_input_error_on_one_layer_names_it_and_spares_the_others(digits_checkpoint):
    model = mp.load_model(digits_checkpoint)
    data = mp.load_data("digits", n_points=300, seed=0)
    with mp.extract(model, data, layers=["block1", "pool"]) as acts:
        result = collapse_profile(acts, max_features=100)  # block1 has 8 x 4 x 4 = 128 features
    block1 = result.layer("block1")
    assert block1.status == "skipped" and "'block1' has 128 features" in block1.reason
    assert result.metrics["pool"]["nc1"] > 0


@pytest.mark.parametrize(
    "command",
    [
        ["id", "--method", "twonn,pca"],
        ["curvature", "--dim", "twonn", "--bootstrap", "10"],  # the paper protocol reads every layer
        ["collapse"],
        ["spectra", "--fisher-points", "60"],
    ],
    ids=lambda c: c[0],
)
def test_each_command_skips_a_constant_layer_and_exits_0(command, zero_head, tmp_path, capsys):
    out = tmp_path / "r.json"
    page = tmp_path / "r.html"
    code = main([*command, "--model", str(zero_head), *COMMON, "--json", str(out), "--html", str(page)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert page.stat().st_size > 0  # the page draws the measured layers
    layers = {layer["name"]: layer for layer in json.loads(out.read_text())["layers"]}
    assert (layers["logits"]["status"], layers["logits"]["reason"]) == ("skipped", CONSTANT)
    assert all(layer["metrics"] for name, layer in layers.items() if name != "logits")
    assert f"logits: skipped: {CONSTANT}" in captured.err  # the reason is printed
    assert "skip" in captured.out  # and the status column of the table (narrow here: "skip…")


def test_no_layer_measured_writes_the_result_and_exits_3(all_constant, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["id", "--model", str(all_constant), *COMMON, "--json", str(out)])
    err = capsys.readouterr().err
    assert code == 3
    assert "no layer could be measured" in err
    layers = json.loads(out.read_text())["layers"]
    assert layers and all(layer["status"] == "skipped" for layer in layers)


def test_a_warning_from_one_layer_names_the_layer_once():
    x = np.random.default_rng(0).standard_normal((200, 5))
    with pytest.warns(UserWarning) as caught:
        mp.intrinsic_dimension(np.vstack([x, x[:10]]), methods=("twonn", "mle"))
    messages = [str(w.message) for w in caught if "duplicate" in str(w.message)]
    assert messages == ["layer 'points': removed 10 duplicate points before estimating the dimension."]
