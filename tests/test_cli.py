"""The command line as a user runs it: train, layers, id; JSON schema; one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from manifold_probe.results import SCHEMA, read_result
from manifold_probe_cli.main import main


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_writes_a_checkpoint_with_metrics(tmp_path, capsys):
    out = tmp_path / "m.pt"
    code, stdout, _ = run(["train", "--arch", "digits-mlp", "--width", "16", "--depth", "1",
                           "--epochs", "1", "--out", out, "-q"], capsys)  # fmt: skip
    assert code == 0 and out.exists()
    assert "test accuracy" in stdout


def test_layers_lists_default_layers(digits_checkpoint, capsys):
    code, out, _ = run(["layers", "--model", digits_checkpoint], capsys)
    assert code == 0
    for name in ("block1", "block3", "pool", "logits", "block1.conv"):
        assert name in out


def test_id_on_a_model_writes_schema_json_and_page(digits_checkpoint, tmp_path, capsys):
    js, page = tmp_path / "id.json", tmp_path / "id.html"
    args = ["id", "--model", digits_checkpoint, "--data", "digits", "--n-points", "600",
            "--json", js, "--html", page, "--cache-dir", tmp_path / "cache", "-q"]  # fmt: skip
    code, out, _ = run(args, capsys)
    assert code == 0
    raw = json.loads(js.read_text())
    assert raw["schema"] == SCHEMA and raw["command"] == "id"
    assert raw["source"]["n_points"] == 600 and raw["source"]["data"] == "digits"
    result = read_result(js)
    assert [layer.name for layer in result.layers] == ["block1", "block2", "block3", "pool", "logits"]
    for layer in result.layers:
        assert layer.n_points == 600
        assert 1 < layer.metrics["id_twonn"] < layer.ambient_dim
        assert {"id_mle", "id_pca90", "participation_ratio"} <= set(layer.metrics)
    assert result.layers[0].depth == 0 and result.layers[-1].depth == 1
    text = page.read_text()
    assert "plotly" in text.lower() and "id_twonn" in text and "<script" in text
    assert "<script src=" not in text and len(text) > 1_000_000  # plotly.js inlined: works offline
    assert "block1" in out


def test_id_is_reproducible_with_a_seed(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(300, 6))
    np.save(tmp_path / "x.npy", x)
    outs = []
    for name in ("a.json", "b.json"):
        code, _, _ = run(["id", "--points", tmp_path / "x.npy", "--bootstrap", "20", "--seed", "4",
                          "--json", tmp_path / name], capsys)  # fmt: skip
        assert code == 0
        outs.append((tmp_path / name).read_text())
    assert outs[0] == outs[1]
    layer = read_result(tmp_path / "a.json").layers[0]
    assert layer.name == "points" and layer.ambient_dim == 6
    assert layer.intervals["id_twonn"][0] < layer.metrics["id_twonn"] < layer.intervals["id_twonn"][1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["id", "--points", "missing.npy"], "not found"),
        (["id", "--model", "missing.pt", "--data", "digits"], "not found"),
        (["id", "--model", "BROKEN", "--data", "digits"], "could not read checkpoint"),
        (["id", "--model", "CKPT", "--data", "digts"], "digits"),
        (["id", "--points", "NAN"], "NaN"),
        (["id", "--points", "FEW"], "too few"),
        (["id", "--model", "CKPT", "--layers", "nosuchlayer"], "mprobe layers"),
        (["id"], "either --model"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message, tmp_path, capsys, digits_checkpoint):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint at all")
    nan = np.ones((50, 3))
    nan[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "few.npy", np.random.default_rng(0).normal(size=(10, 3)))
    subst = {"BROKEN": broken, "CKPT": digits_checkpoint, "NAN": tmp_path / "nan.npy"}
    subst["FEW"] = tmp_path / "few.npy"
    args = [subst.get(a, a) for a in args]
    code, out, err = run(args, capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out
    assert len(err.strip().splitlines()) <= 2  # the error line (and at most a pointer to --help)


def test_existing_result_survives_a_failed_run(tmp_path, capsys):
    js = tmp_path / "id.json"
    js.write_text("earlier result")
    code, _, _ = run(["id", "--points", tmp_path / "missing.npy", "--json", js], capsys)
    assert code == 2 and js.read_text() == "earlier result"


def test_console_script_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "manifold_probe_cli.main", "id", "--points", str(tmp_path / "nope.npy")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "not found" in proc.stderr and "Traceback" not in proc.stderr


def test_id_on_a_torchvision_state_dict_and_a_cifar10_root(tmp_path, capsys):
    """The user's own model and data: a resnet18 state_dict and a (fake, tiny) CIFAR-10 root."""
    import torch
    import torchvision
    from fakes import write_fake_cifar10

    write_fake_cifar10(tmp_path / "cifar", per_batch=8)
    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), weights)
    js = tmp_path / "id.json"
    code, out, err = run(["id", "--model", weights, "--arch", "torchvision:resnet18", "--num-classes", "10",
                          "--data", f"cifar10:{tmp_path / 'cifar'}", "--reduction", "avgpool",
                          "--layers", "layer?.?,avgpool,logits", "--method", "twonn,pca", "--no-cache",
                          "--json", js, "-q"], capsys)  # fmt: skip
    assert code == 0, err
    result = read_result(js)
    names = [layer.name for layer in result.layers]
    assert names[:2] == ["layer1.0", "layer1.1"] and names[-2:] == ["avgpool", "logits"]
    assert result.layer("layer4.1").ambient_dim == 512  # avgpool: one value per channel
    assert all(layer.n_points == 40 for layer in result.layers)
