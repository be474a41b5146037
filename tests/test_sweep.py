"""Sweeps: result files and the table, resuming (skips, a deleted result, a real kill), failures,
the command line, and the Ray executor against the local one."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from manifold_probe import registry
from manifold_probe.errors import InputError
from manifold_probe.results import read_result
from manifold_probe.study.sweep import run_sweep
from manifold_probe.study.tables import COLUMN_TYPES, collect_table, measure_columns
from manifold_probe.study.training import train_and_save
from manifold_probe_cli import commands_sweep

PROBES = registry.sweep_measures()

N_POINTS = 200


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Two tiny digits-cnn checkpoints (1 epoch and untrained) and a zoo.json naming one's family."""
    folder = tmp_path_factory.mktemp("zoo")
    train_and_save("digits-cnn", {"width": 8, "depth": 2}, out=folder / "trained.pt", epochs=1)
    train_and_save("digits-cnn", {"width": 8, "depth": 2}, out=folder / "untrained.pt", epochs=0)
    entries = [{"name": "trained", "path": "trained.pt", "family": "cnn-small", "settings": {"epochs": 1}}]
    (folder / "zoo.json").write_text(json.dumps(entries))
    return folder


@pytest.fixture(scope="module")
def swept(zoo, tmp_path_factory):
    """Every probe on both checkpoints with two local worker processes."""
    out = tmp_path_factory.mktemp("sweep")
    summary = run_sweep([zoo], PROBES, out, n_points=N_POINTS, workers=2)
    return out, summary


def result_files(out: Path) -> list[Path]:
    return sorted((out / "results").glob("*/*.json"))


def copy_sweep(out: Path, tmp_path: Path) -> Path:
    target = tmp_path / "sweep"
    shutil.copytree(out / "results", target / "results")
    return target


def test_sweep_writes_every_result_and_the_table(swept):
    out, summary = swept
    assert (len(summary.done), summary.skipped, summary.failed) == (2 * len(PROBES), 0, ())
    files = result_files(out)
    assert len(files) == 2 * len(PROBES)
    for path in files:
        assert read_result(path).command == path.stem
    with open(summary.table_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    # every known column these checkpoints have a value for (in_report is a manifest's)
    known = [c for c in COLUMN_TYPES if c != "in_report"]
    columns = known + [c for p in PROBES for c in measure_columns(p)]
    assert list(rows[0]) == columns
    by_name = {Path(row["checkpoint"]).stem: row for row in rows}
    trained, untrained = by_name["trained"], by_name["untrained"]
    assert trained["family"] == "cnn-small" and untrained["family"] == "digits-cnn"
    assert (trained["untrained"], untrained["untrained"]) == ("False", "True")
    assert (trained["epochs"], trained["width"], trained["arch_depth"]) == ("1", "8", "2")
    assert trained["mixup"] == "0.0" and trained["label_noise"] == "0.0"
    gap = float(trained["train_accuracy"]) - float(trained["test_accuracy"])
    assert float(trained["generalization_gap"]) == pytest.approx(gap)
    for row in rows:
        assert row["run_id"] in {p.parent.name for p in result_files(out)}
        for column in ("last_layer_id_twonn", "nc1_penultimate"):
            assert np.isfinite(float(row[column]))
        # 200 points in the last layers: curvature may honestly be "cannot tell" or, without a
        # clear spectral gap, uncertain_dimension (empty), never a number at a guessed d
        for column in ("curvature_gap", "curvature_sff_gap_scaled"):
            assert row[column] == "" or np.isfinite(float(row[column]))
    curvature = read_result(out / "results" / trained["run_id"] / "curvature.json")
    if trained["curvature_gap"]:
        assert float(trained["curvature_gap"]) == pytest.approx(curvature.summary["curvature_gap"])
    else:
        assert any(layer.status != "measured" for layer in curvature.layers[-2:])
    assert curvature.params["n_bootstrap"] == registry.get("curvature").sweep.options["n_bootstrap"]
    if summary.table_parquet is not None:
        import pyarrow.parquet as pq

        table = pq.read_table(summary.table_parquet)
        assert table.column_names == columns and table.num_rows == 2
        assert str(table.schema.field("untrained").type) == "bool"


def test_tasks_share_the_worker_processes(swept):
    """More tasks than workers run in at most two processes, neither of them this one: each
    worker imports torch once and takes task after task."""
    _, summary = swept
    pids = {outcome.worker_pid for outcome in summary.done}
    assert len(summary.done) > 2
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids and 0 not in pids


def test_second_run_skips_everything(zoo, swept):
    out, _ = swept
    stamps = {p: p.stat().st_mtime_ns for p in result_files(out)}
    summary = run_sweep([zoo], PROBES, out, n_points=N_POINTS, workers=2)
    assert (summary.executed, summary.skipped) == (0, 2 * len(PROBES))
    assert {p: p.stat().st_mtime_ns for p in result_files(out)} == stamps


def test_deleted_result_and_stray_temporary_redo_only_that_task(zoo, swept, tmp_path):
    out = copy_sweep(swept[0], tmp_path)
    target = result_files(out)[0]
    probe = target.stem
    target.unlink()
    stray = target.with_name(f".{target.name}.abc123.tmp")
    stray.write_text('{"schema": "manifold-probe/res')  # what a killed writer leaves
    (target.parent / "id.json.tmp").write_text("not a result")
    summary = run_sweep([zoo], PROBES, out, n_points=N_POINTS, workers=1)
    assert summary.executed == 1 and summary.skipped == 2 * len(PROBES) - 1
    assert (summary.done[0].run_id, summary.done[0].measure) == (target.parent.name, probe)
    assert read_result(target).command == probe
    assert not stray.exists()


def test_a_failing_task_is_recorded_and_the_others_go_on(zoo, tmp_path, monkeypatch):
    from manifold_probe.study import tasks

    measure = tasks._measure

    def broken(task):
        if task.measure == "id":
            raise RuntimeError("probe exploded")
        return measure(task)

    monkeypatch.setattr(tasks, "_measure", broken)
    summary = run_sweep([zoo], ("id", "collapse"), tmp_path, n_points=N_POINTS, workers=1)
    assert len(summary.failed) == 2 and len(summary.done) == 2
    assert all("probe exploded" in f.error for f in summary.failed)
    for failure in summary.failed:
        folder = tmp_path / "results" / failure.run_id
        assert "RuntimeError: probe exploded" in (folder / "id.error.txt").read_text()
        assert not (folder / "id.json").exists()
    rows = collect_table(tmp_path, [zoo])
    assert "last_layer_id_twonn" not in rows[0] and rows[0]["nc1_penultimate"] is not None


def test_bad_options_are_input_errors(zoo, tmp_path):
    with pytest.raises(InputError, match="unknown measure"):
        run_sweep([zoo], ("id", "curvatur"), tmp_path)
    with pytest.raises(InputError, match="unknown executor"):
        run_sweep([zoo], ("id",), tmp_path, executor="dask")
    with pytest.raises(InputError, match="not found"):
        run_sweep([tmp_path / "missing.pt"], ("id",), tmp_path)
    with pytest.raises(InputError, match="no \\*.pt"):
        run_sweep([tmp_path], ("id",), tmp_path)


KILLED_SWEEP = """
import sys
from manifold_probe.study.sweep import run_sweep
if __name__ == "__main__":
    run_sweep([sys.argv[1]], ("id", "curvature"), sys.argv[2], n_points=200, workers=2)
"""


def test_a_killed_sweep_resumes_with_only_the_missing_work(zoo, tmp_path):
    out = tmp_path / "sweep"
    script = tmp_path / "killed_sweep.py"
    script.write_text(KILLED_SWEEP)
    process = subprocess.Popen(
        [sys.executable, str(script), str(zoo), str(out)],
        start_new_session=True,  # its own process group: the workers die with it
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not result_files(out) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    finished = len(result_files(out))
    assert 1 <= finished < 4
    summary = run_sweep([zoo], ("id", "curvature"), out, n_points=N_POINTS, workers=1)
    assert summary.skipped >= finished and summary.executed == 4 - summary.skipped
    assert not summary.failed
    files = result_files(out)
    assert len(files) == 4
    for path in files:
        json.loads(path.read_text())
    assert not list((out / "results").glob("*/.*.tmp"))


def test_the_command_prints_the_summary_and_the_table(zoo, swept, tmp_path):
    out = copy_sweep(swept[0], tmp_path)
    app = typer.Typer()
    commands_sweep.register(app)
    app.command("other")(lambda: None)  # two commands: `sweep` is then a subcommand
    args = ["sweep", str(zoo), "--out", str(out), "--probes", "id,curvature", "--n-points", "200", "--quiet"]
    outcome = CliRunner().invoke(app, args, terminal_width=200)
    assert outcome.exit_code == 0, outcome.output
    assert "table.csv" in outcome.output
    assert " 0 " in outcome.output and " 4 " in outcome.output  # done 0, skipped 4
    bad = CliRunner().invoke(app, ["sweep", str(zoo), "--out", str(out), "--probes", "nope"])
    assert isinstance(bad.exception, InputError)


def test_ray_gives_the_same_results_as_local(zoo, swept, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_sweep([zoo], ("id", "curvature"), tmp_path, n_points=N_POINTS, executor="ray")
    finally:
        ray.shutdown()
    assert (len(summary.done), summary.failed) == (4, ())
    for path in result_files(tmp_path):
        ours = read_result(path)
        local = read_result(swept[0] / "results" / path.parent.name / path.name)
        assert [layer.name for layer in ours.layers] == [layer.name for layer in local.layers]
        for a, b in zip(ours.layers, local.layers, strict=True):
            assert a.metrics.keys() == b.metrics.keys()
            for name in a.metrics:
                if b.metrics[name] is None:  # NaN, written as null: "cannot tell" in both
                    assert a.metrics[name] is None, name
                    continue
                assert a.metrics[name] == pytest.approx(b.metrics[name], rel=1e-6, nan_ok=True), name
        for key, value in local.summary.items():
            if isinstance(value, float):
                assert ours.summary[key] == pytest.approx(value, rel=1e-6), key
