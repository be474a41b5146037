"""Every case that used to end in "unexpected ..." and exit 1 now ends in one line naming the file
or option and exit 2; Ctrl-C during start-up exits 130 with one line; damaged sweep results count
as missing."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
import types
import zlib

import numpy as np
import pytest
import torch
from fakes import one_line, run_cli, save_script, untrained_checkpoint, write_idx
from PIL import Image
from torch import nn

from manifold_probe.errors import InputError
from manifold_probe.results import read_result
from manifold_probe.sources import zoo
from manifold_probe.sources.data import load_data
from manifold_probe.study.report import SweepRow, load_profiles
from manifold_probe.study.sweep import run_sweep
from manifold_probe.study.training_config import TrainingConfig


@pytest.fixture()
def points(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).normal(size=(60, 3)))
    return path


# --- options ----------------------------------------------------------------------------


def test_a_negative_seed_names_the_option(points, capsys):
    code, _, err = run_cli(["id", "--points", points, "--seed", "-1"], capsys)
    assert code == 2 and "--seed: must be a whole number from 0" in one_line(err)
    with pytest.raises(InputError, match="seed: must be a whole number from 0"):
        TrainingConfig(seed=-1)


def test_a_projection_too_large_for_memory_names_the_option(tmp_path, capsys):
    model = untrained_checkpoint(tmp_path / "cnn.pt")
    args = ["id", "--model", model, "--n-points", "40", "--reduction", "project:100000000", "--no-cache"]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "project:100000000" in one_line(err)


def test_a_projection_above_a_layers_width_names_the_option_and_the_layer(tmp_path, capsys):
    model = untrained_checkpoint(tmp_path / "cnn.pt")
    args = ["id", "--model", model, "--n-points", "40", "--reduction", "project:64", "--no-cache"]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "--reduction: project:64 would map layer 'block2' (16 features) up" in one_line(err)


# --- image sets -------------------------------------------------------------------------


def _image_folder(root, n=12, size=8):
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


class _RGB(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3 * 8 * 8, 10)

    def forward(self, x):
        return self.head(x.flatten(1))


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height pixels (greyscale, no real pixel data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("damage", ["truncated", "mixed size", "decompression bomb"])
def test_a_bad_image_that_is_not_the_first_names_the_file(tmp_path, capsys, damage):
    root = _image_folder(tmp_path / "images")
    bad = root / "b" / "5.png"
    if damage == "truncated":
        bad.write_bytes(bad.read_bytes()[:60])
    elif damage == "mixed size":
        Image.fromarray(np.zeros((10, 12, 3), dtype=np.uint8)).save(bad)
    else:
        bad.write_bytes(_png_claiming(40000, 40000))  # 1.6e9 pixels, about 100 bytes
    model = save_script(_RGB(), tmp_path / "rgb.pt")
    code, _, err = run_cli(["id", "--model", model, "--data", f"imagefolder:{root}", "--no-cache"], capsys)
    assert code == 2
    line = one_line(err)
    assert str(bad) in line
    if damage == "mixed size":
        assert "3x10x12 but the first image is 3x8x8" in line


def test_mnist_with_fewer_labels_than_images_names_both_files(tmp_path, capsys):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (30, 28, 28)), 2051)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(20) % 10, 2049)  # 20 labels for 30 images
    expected = "train-labels-idx1-ubyte holds 20 labels for the 30 images of .*train-images-idx3-ubyte"
    with pytest.raises(InputError, match=expected):
        load_data(f"mnist:{tmp_path}")
    model = save_script(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), tmp_path / "mnist.pt")
    code, _, err = run_cli(["id", "--model", model, "--data", f"mnist:{tmp_path}", "--no-cache"], capsys)
    assert code == 2 and "holds 20 labels for the 30 images of" in one_line(err)


# --- models that fail when they run -----------------------------------------------------


class _Refuses(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        if x.shape[0] > 0:
            raise RuntimeError("this model refuses every batch")
        return self.head(x.flatten(1))


def test_a_torchscript_model_failing_in_forward_isone_line(tmp_path, capsys):
    model = save_script(_Refuses(), tmp_path / "refuses.pt")
    code, _, err = run_cli(["layers", "--model", model], capsys)
    line = one_line(err)
    assert code == 2 and str(model) in line and "this model refuses every batch" in line


def test_a_fixed_batch_export_runs_in_chunks_of_its_batch_size(tmp_path, capsys):
    torch.manual_seed(0)
    module = zoo.build_model("digits-cnn", width=4, depth=2).eval()
    path = tmp_path / "fixed.pt2"
    torch.export.save(torch.export.export(module, (torch.zeros(2, 1, 8, 8),)), str(path))
    for command in (["layers"], ["id", "--n-points", "41", "--no-cache", "--method", "twonn"]):
        code, out, err = run_cli([*command, "--model", path], capsys)
        assert code == 0 and "logits" in out, err


def test_spectra_on_saturated_weights_gives_nan_shares_not_a_crash(tmp_path, capsys):
    """Classifier weights x 1e10 saturate the softmax: the Gauss-Newton block is exactly zero,
    so its shares are 0/0. They are NaN with a warning (the other layers are still measured)."""
    model = untrained_checkpoint(tmp_path / "huge.pt", head_scale=1e10)
    out = tmp_path / "spectra.json"
    args = ["spectra", "--model", model, "--n-points", "60", "--no-cache", "--json", out]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert "Gauss-Newton block is zero" in err
    fisher = next(layer for layer in json.loads(out.read_text())["layers"] if "fisher" in layer["details"])
    assert fisher["details"]["fisher"]["traces"]["total"] == 0.0


# --- sweeps -----------------------------------------------------------------------------


def test_a_non_object_result_file_counts_as_missing(tmp_path, capsys):
    model = untrained_checkpoint(tmp_path / "cnn.pt")
    out = tmp_path / "sweep"
    args = ["sweep", model, "--probes", "id", "--n-points", "60", "--workers", "1", "--out", out, "-q"]
    assert run_cli(args, capsys)[0] == 0
    (result,) = (out / "results").glob("*/id.json")
    result.write_text("[1, 2, 3]\n")
    with pytest.raises(InputError, match="holds a JSON list, not a result"):
        read_result(result)
    assert load_profiles(out, []) == []
    row = SweepRow({"run_id": result.parent.name}, untrained=True)
    with pytest.warns(UserWarning, match="holds a JSON list"):
        assert load_profiles(out, [row]) == []
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert "is not a complete id result; recomputing it" in err
    assert read_result(result).command == "id"


def test_a_ray_cluster_that_refuses_us_isone_line(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")

    def refused(*args, **kwargs):
        raise ConnectionError("Failed to connect to GCS: token authentication required\nmore detail")

    monkeypatch.setattr(ray, "init", refused)
    model = untrained_checkpoint(tmp_path / "cnn.pt")
    with pytest.raises(InputError, match=r"could not join the Ray cluster at --address 10\.0\.0\.1:6379: "
                                         r"ConnectionError: Failed to connect to GCS"):  # fmt: skip
        run_sweep([model], ["id"], tmp_path / "sweep", executor="ray", ray_address="10.0.0.1:6379")


# --- start-up ---------------------------------------------------------------------------


def test_ctrl_c_during_start_up_is_one_line_and_130(tmp_path):
    """The console script (`manifold_probe_cli.entry:run`) interrupted while it imports torch
    (seen in /proc: torch's library is mapped, the command line is not ready yet)."""
    code = "import sys; from manifold_probe_cli.entry import run; sys.argv[0] = 'mprobe'; run()"
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((500, 3)))
    # curvature: a command whose measure needs torch (id on a points file never imports it)
    args = [sys.executable, "-c", code, "curvature", "--points", str(tmp_path / "x.npy"), "-q"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    maps = f"/proc/{proc.pid}/maps"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:  # until it is importing torch
        with contextlib.suppress(OSError):
            if "libtorch" in open(maps).read():
                break
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.fail(f"the command ended before it was interrupted: {proc.communicate()[1]}")
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode in (0, 3):  # the imports finished before the signal: the command ran
        pytest.skip("start-up finished before the signal")
    assert proc.returncode == 130
    # the command line itself imports no torch (lazy imports): torch loads when the command
    # runs, where a Ctrl-C gets the command's own line
    assert err.strip().splitlines() in (
        ["interrupted during start-up; nothing was written."],
        ["interrupted; finished results are kept, nothing was half-written."],
    )


# --- third round: each input of issue 25 is one line and exit 2, or an InputError naming its
# parameter ----------------------------------------------------------------------------------


@pytest.fixture()
def bert_config(tmp_path):
    """A folder with the config.json of a tiny BERT (no weights: initial weights are built)."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path / "bert"
    folder.mkdir()
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32)  # fmt: skip
    config.to_json_file(folder / "config.json")
    return folder


@pytest.fixture()
def round_three(tmp_path, points, bert_config):
    """The files the cases below refer to (f.points, f.zero_d, f.csv, f.array, f.model, f.bert)."""
    np.save(tmp_path / "zero_d.npy", np.array(3.0))
    np.savetxt(tmp_path / "points.csv", np.random.default_rng(0).normal(size=(60, 3)), delimiter=",")
    (tmp_path / "array").mkdir()
    (tmp_path / "array" / "config.json").write_text("[1, 2, 3]")
    model = untrained_checkpoint(tmp_path / "cnn.pt")
    return types.SimpleNamespace(points=points, zero_d=tmp_path / "zero_d.npy", csv=tmp_path / "points.csv",
                                 array=tmp_path / "array", model=model, bert=bert_config)  # fmt: skip


def _tv(kwargs):
    return lambda f: ["layers", "--arch", "torchvision:resnet18", "--arch-kwargs", kwargs]


def _hf(kwargs):
    return lambda f: ["layers", "--arch", f"hf:{f.bert}", "--arch-kwargs", kwargs]


def _model(*options):
    return lambda f: ["id", "--model", f.model, "--n-points", "40", "--no-cache", *options]


ROUND_THREE = {  # name: (argv from the files, a piece of the expected error line)
    "0-d points": (lambda f: ["id", "--points", f.zero_d], "--points: points"),
    "a csv for points": (lambda f: ["id", "--points", f.csv], "is not a supported format"),
    "max-memory 1e999 with points": (
        lambda f: ["id", "--points", f.points, "--max-memory", "1e999"],
        "--max-memory",
    ),  # fmt: skip
    "max-memory 1e999 with a model": (_model("--max-memory", "1e999"), "--max-memory: '1e999' is not a size"),
    "num_classes ten": (_tv('{"num_classes": "ten"}'), "--arch-kwargs: num_classes must be a whole number"),
    "num_classes 1e10": (_tv('{"num_classes": 10000000000}'), "--arch-kwargs: torchvision:resnet18"),
    "vocab_size 1e10": (_hf('{"vocab_size": 10000000000}'), "GiB of weights, more than"),
    "hidden_size abc": (_hf('{"hidden_size": "abc"}'), "--arch-kwargs: hidden_size='abc' does not fit"),
    "config.json an array": (lambda f: ["layers", "--arch", f"hf:{f.array}"], "holds a JSON list"),
    "input-shape 1,8,8,x": (_model("--input-shape", "1,8,8,x"), "--input-shape: '1,8,8,x'"),
    "layers empty": (_model("--layers", ""), "--layers: was given with"),
    "method empty": (lambda f: ["id", "--points", f.points, "--method", ""], "--method: was given with"),
}


@pytest.mark.parametrize("case", list(ROUND_THREE))
def test_round_three_inputs_are_one_line_and_exit_2(case, capsys, round_three):
    argv, message = ROUND_THREE[case]
    code, out, err = run_cli(argv(round_three), capsys)
    assert code == 2, err
    assert message in one_line(err)
    assert "unexpected" not in err and "Traceback" not in err + out


def test_a_sweep_on_a_full_disk_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    import collections
    import shutil

    model = untrained_checkpoint(tmp_path / "cnn.pt")
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**30, 2**30, 0))
    code, _, err = run_cli(["sweep", model, "--out", tmp_path / "sweep", "-q", "--workers", "1"], capsys)
    assert code == 2
    assert "a sweep needs 64.0 MiB on disk" in one_line(err) and "only 0 bytes is free" in err


@pytest.mark.parametrize(
    "arguments, parameter",
    [
        ({"n_bootstrap": -1}, "n_bootstrap"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"max_memory": float("inf")}, "max_memory"),
    ],
)
def test_the_api_checks_counts_and_seeds_as_the_cli_does(arguments, parameter):
    import manifold_probe as mp

    points = np.random.default_rng(0).normal(size=(100, 5))
    with pytest.raises(InputError) as caught:
        mp.intrinsic_dimension(points, **arguments)
    assert caught.value.parameter == parameter


def test_a_0d_points_file_names_its_parameter_in_python(tmp_path):
    import manifold_probe as mp

    np.save(tmp_path / "zero_d.npy", np.array(3.0))
    with pytest.raises(InputError, match=r"got shape \(\)") as caught:
        mp.load_points(tmp_path / "zero_d.npy")
    assert caught.value.parameter == "points"  # load_points(points, ...)


def test_the_faiss_hint_names_the_extra(monkeypatch):
    import sys as system

    from manifold_probe.geometry.neighbours import nearest_neighbours

    monkeypatch.setitem(system.modules, "faiss", None)  # `import faiss` raises ImportError
    with pytest.raises(InputError, match=r"pip install 'manifold-probe\[faiss\]'"):
        nearest_neighbours(np.random.default_rng(0).normal(size=(50, 3)), 5, backend="faiss")
