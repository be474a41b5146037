"""Hardening: bad input through the command line, interrupted runs that a rerun completes, and
extraction bounded by --max-memory. Each bad input ends in one line on stderr and exit code 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from manifold_probe.results import read_result
from manifold_probe.study.training import train_and_save
from manifold_probe_cli.main import main


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def mlp_checkpoints(tmp_path_factory):
    """Two tiny digits-mlp checkpoints (width 8, depth 1, one epoch)."""
    folder = tmp_path_factory.mktemp("mlp")
    paths = []
    for seed in (0, 1):
        out = folder / f"mlp{seed}.pt"
        train_and_save("digits-mlp", {"width": 8, "depth": 1}, out=out, epochs=1, seed=seed)
        paths.append(out)
    return paths


def _bad_inputs(tmp_path, cnn, mlp):
    """name -> (argv, a piece of the expected error line)."""
    truncated = tmp_path / "truncated.pt"
    data = cnn.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])

    mlp_weights = tmp_path / "mlp_state_dict.pt"
    torch.save(torch.load(mlp, weights_only=True)["state_dict"], mlp_weights)
    cnn_weights = tmp_path / "cnn_state_dict.pt"
    torch.save(torch.load(cnn, weights_only=True)["state_dict"], cnn_weights)

    pickled = tmp_path / "module.pt"
    torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)), pickled)

    rng = np.random.default_rng(0)
    inf = rng.normal(size=(50, 3))
    inf[7, 2] = np.inf
    np.save(tmp_path / "inf.npy", inf)
    np.save(tmp_path / "x.npy", rng.normal(size=(60, 3)))
    np.save(tmp_path / "one_class.npy", np.zeros(60, dtype=np.int64))
    np.save(tmp_path / "five.npy", rng.normal(size=(5, 3)))

    return {
        "truncated checkpoint": (["id", "--model", truncated, "--data", "digits"], "could not read"),
        "another architecture": (
            ["id", "--model", mlp_weights, "--arch", "digits-cnn", "--data", "digits"],
            "do not fit",
        ),
        "wrong number of classes": (
            ["id", "--model", cnn_weights, "--arch", "digits-cnn", "--num-classes", "5", "--data", "digits"],
            "do not fit",
        ),
        "pickled module": (["id", "--model", pickled, "--data", "digits"], "--trust-checkpoint"),
        "Inf in points": (["id", "--points", tmp_path / "inf.npy"], "NaN or Inf"),
        "one class": (
            ["collapse", "--points", tmp_path / "x.npy", "--labels", tmp_path / "one_class.npy"],
            "single class",
        ),
        "d >= D": (["curvature", "--points", tmp_path / "x.npy", "--dim", "3"], "ambient dimension 3"),
        "k >= N": (["id", "--points", tmp_path / "five.npy"], "5 points are too few for 20"),
        "empty dims": (["cutting-planes", "--model", cnn, "--dims", ""], "--dims"),
        "absent dataset root": (
            ["id", "--model", cnn, "--data", f"cifar10:{tmp_path / 'nonexistent'}"],
            "cifar-10-batches-py",
        ),
        "unknown probe": (
            ["sweep", cnn, "--probes", "curvatur", "--out", tmp_path / "sweep", "-q"],
            "--measures: unknown measure",
        ),
    }


CASES = [
    "truncated checkpoint",
    "another architecture",
    "wrong number of classes",
    "pickled module",
    "Inf in points",
    "one class",
    "d >= D",
    "k >= N",
    "empty dims",
    "absent dataset root",
    "unknown probe",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_exit_code_2(case, tmp_path, capsys, digits_checkpoint, mlp_checkpoints):
    args, message = _bad_inputs(tmp_path, digits_checkpoint, mlp_checkpoints[0])[case]
    code, out, err = run(args, capsys)
    assert code == 2, err
    assert message in err, err
    assert "Traceback" not in err + out
    assert len(err.strip().splitlines()) <= 2, err  # the error line (and at most a pointer to --help)


def test_wrong_number_of_classes_names_the_head(tmp_path, capsys, digits_checkpoint):
    """The cnn's own state_dict with its own width and depth but 5 classes: only the head differs."""
    from manifold_probe.errors import InputError
    from manifold_probe.sources.models import load_model

    weights = tmp_path / "cnn_state_dict.pt"
    torch.save(torch.load(digits_checkpoint, weights_only=True)["state_dict"], weights)
    with pytest.raises(InputError, match=r"\(10, 8\) in the file but \(5, 8\)"):
        load_model(weights, arch="digits-cnn", num_classes=5, arch_args={"width": 8, "depth": 3})


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_one_line_and_exit_code_2(tmp_path, capsys):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).normal(size=(60, 3)))
    path.chmod(0)
    try:
        code, out, err = run(["id", "--points", path], capsys)
    finally:
        path.chmod(0o600)
    assert code == 2, err
    assert "Traceback" not in err + out and len(err.strip().splitlines()) == 1


def test_duplicate_points_warn_and_succeed(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(200, 4))
    x = np.concatenate([x, x[:20]])
    np.save(tmp_path / "dup.npy", x)
    code, out, err = run(["id", "--points", tmp_path / "dup.npy", "-q"], capsys)
    assert code == 0, err
    warning_lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert any("20 duplicate points" in line for line in warning_lines), err
    assert "Traceback" not in err


def test_keyboard_interrupt_in_a_command_exits_130(tmp_path, capsys, monkeypatch):
    """typer returns (not raises) the code of an interrupted command; main must pass it on."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    from manifold_probe.measures import intrinsic_dimension as module

    monkeypatch.setattr(module, "intrinsic_dimension", interrupted)  # what `mprobe id` calls (registry)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(60, 3)))
    code, out, err = run(["id", "--points", tmp_path / "x.npy"], capsys)
    assert code == 130 and "interrupted" in err and "Traceback" not in err + out


def test_exit_code_of_a_command_is_kept(tmp_path, capsys, monkeypatch):
    """`sweep` ends with typer.Exit(1) when a task failed: the code must reach the shell."""
    import typer

    import manifold_probe.study.sweep as sweep

    def failed(*args, **kwargs):
        raise typer.Exit(1)

    monkeypatch.setattr(sweep, "run_sweep", failed)  # what `mprobe sweep` calls
    code, _, _ = run(["sweep", tmp_path, "--out", tmp_path / "sweep", "-q"], capsys)
    assert code == 1


# --- interruptions -----------------------------------------------------------------------------


def _cli(*args):
    return [sys.executable, "-m", "manifold_probe_cli.main", *[str(a) for a in args]]


def _default_sigint():
    """The child handles SIGINT as Python does by default (a shell may have started us ignoring it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _popen(args):
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            preexec_fn=_default_sigint)  # fmt: skip


def _env():
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _interrupt_when(proc, ready, timeout=120.0):
    """SIGINT to `proc` once ready() holds; False if the process ended before that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            proc.send_signal(signal.SIGINT)
            return True
        time.sleep(0.02)
    proc.kill()
    pytest.fail("the run neither became ready nor ended")


def _no_temporaries(folder):
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.suffixes]


def test_interrupted_sweep_leaves_complete_results_and_resumes(tmp_path, mlp_checkpoints):
    out = tmp_path / "sweep"
    args = _cli("sweep", *mlp_checkpoints, "--probes", "id,curvature", "--out", out,
                "--n-points", "200", "--workers", "1", "-q")  # fmt: skip
    proc = _popen(args)
    interrupted = _interrupt_when(proc, lambda: any((out / "results").glob("*/*.json")))
    _, err = proc.communicate(timeout=120)
    finished = list((out / "results").glob("*/*.json")) if (out / "results").exists() else []
    # the signal was sent while the sweep ran (3 of its 4 tasks left) and the sweep stopped on it
    assert interrupted, "the sweep ended before its first result: nothing was interrupted"
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert 1 <= len(finished) < 4
    assert "Traceback" not in err
    assert not _no_temporaries(out)
    for path in finished:
        json.loads(path.read_text())
    assert len(finished) >= 1

    stamps = {path: path.stat().st_mtime_ns for path in finished}
    rerun = subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "Traceback" not in rerun.stderr
    assert {path: path.stat().st_mtime_ns for path in finished} == stamps  # skipped, not redone
    results = sorted((out / "results").glob("*/*.json"))
    assert len(results) == 4  # 2 checkpoints x 2 probes
    for path in results:
        json.loads(path.read_text())
    assert not _no_temporaries(out)


def test_interrupted_extraction_is_completed_by_a_rerun(tmp_path, digits_checkpoint):
    cache = tmp_path / "cache"
    base = ["id", "--model", digits_checkpoint, "--data", "digits", "--layers", "block1,pool",
            "--method", "twonn,pca", "--seed", "0", "-q"]  # fmt: skip
    slow = [*base, "--batch-size", "1", "--cache-dir", cache, "--json", tmp_path / "a.json"]
    proc = _popen(_cli(*slow))
    # interrupt once the extraction has started writing into the cache
    interrupted = _interrupt_when(proc, lambda: cache.exists() and any(p.is_file() for p in cache.rglob("*")))
    _, err = proc.communicate(timeout=120)
    # the signal reached the extraction (1,346 forward passes of one image each) and stopped it
    assert interrupted, "the command ended before its extraction started: nothing was interrupted"
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err

    rerun = subprocess.run(_cli(*slow), capture_output=True, text=True, env=_env(), timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert not _no_temporaries(cache)
    code = main([str(a) for a in [*base, "--no-cache", "--json", tmp_path / "b.json"]])
    assert code == 0
    a, b = read_result(tmp_path / "a.json"), read_result(tmp_path / "b.json")
    assert [layer.name for layer in a.layers] == [layer.name for layer in b.layers]
    for la, lb in zip(a.layers, b.layers, strict=True):
        assert la.n_points == lb.n_points
        for name, value in lb.metrics.items():
            assert la.metrics[name] == pytest.approx(value, rel=1e-6, abs=1e-9), (la.name, name)


# --- scale -----------------------------------------------------------------------------------


def test_max_memory_streams_a_layer_to_disk(tmp_path, digits_checkpoint):
    from manifold_probe.extraction.engine import extract
    from manifold_probe.sources.data import load_data
    from manifold_probe.sources.models import load_model

    model = load_model(digits_checkpoint).module
    data = load_data("digits").dataset
    with extract(model, data, layers=["block1"], max_memory=10_000, use_cache=False,
                 cache_dir=tmp_path / "scratch") as small:  # fmt: skip
        record = small.info["block1"]
        assert small["block1"].nbytes > 10_000
        assert record.on_disk
        kept = np.array(small["block1"])
    with extract(model, data, layers=["block1"], use_cache=False, cache_dir=tmp_path / "scratch") as big:
        assert not big.info["block1"].on_disk
        np.testing.assert_array_equal(kept, big["block1"])


def test_max_memory_on_the_command_line_gives_the_same_result(tmp_path, digits_checkpoint):
    base = ["id", "--model", digits_checkpoint, "--data", "digits", "--no-cache", "--layers", "block1",
            "--method", "twonn,pca", "-q"]  # fmt: skip
    bounded = subprocess.run(_cli(*base, "--max-memory", "100KB", "--json", tmp_path / "a.json"),
                             capture_output=True, text=True, env=_env(), timeout=300)  # fmt: skip
    assert bounded.returncode == 0, bounded.stderr
    code = main([str(a) for a in [*base, "--json", tmp_path / "b.json"]])
    assert code == 0
    a, b = read_result(tmp_path / "a.json"), read_result(tmp_path / "b.json")
    assert a.layers[0].metrics == pytest.approx(b.layers[0].metrics, rel=1e-9)  # BLAS threads differ


def test_max_memory_bounds_the_memory_held_for_activations():
    """A 33 MB layer extracted under a 1 MB bound: the arrays Python holds at the peak stay near
    one batch, not the layer (tracemalloc sees numpy's allocations); without the bound they hold it."""
    import tracemalloc

    import torch

    from manifold_probe.extraction.engine import extract

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 4096))
    inputs = torch.randn(2000, 16)
    layer_bytes = 2000 * 4096 * 4

    def peak(max_memory):
        tracemalloc.start()
        with extract(model, inputs, ["0"], batch_size=100, use_cache=False, max_memory=max_memory) as acts:
            first_row = np.array(acts["0"][0])
            on_disk = acts.info["0"].on_disk
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top, on_disk, first_row

    bounded, on_disk, row = peak(2**20)
    unbounded, in_memory_on_disk, row_free = peak(None)
    assert on_disk and not in_memory_on_disk
    np.testing.assert_array_equal(row, row_free)
    assert unbounded >= layer_bytes
    assert bounded < layer_bytes / 4
