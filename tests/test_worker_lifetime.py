"""Sweep workers die with their parent: after `kill -9` of `mprobe sweep --workers 2`, no worker
is left computing (and writing) a few seconds later."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes import untrained_checkpoint

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def _descendants(root: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = info[1]
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    info = _stat(pid)
    return info is not None and info[0] not in ("Z", "X")  # a zombie has stopped running


def _checkpoints(folder: Path) -> list[Path]:
    """Eight checkpoints: 16 tasks for two workers, far more than a fast machine runs in the time
    the test takes to see the workers start (so the sweep is still running when it is killed)."""
    return [
        untrained_checkpoint(folder / f"mlp{seed}.pt", "digits-mlp", {"width": 8, "depth": 1}, seed=seed)
        for seed in range(8)
    ]


def test_kill_9_of_the_sweep_leaves_no_worker_alive(tmp_path):
    out = tmp_path / "sweep"
    args = [sys.executable, "-m", "manifold_probe_cli.main", "sweep", *map(str, _checkpoints(tmp_path)),
            "--probes", "curvature,id", "--out", str(out), "--workers", "2", "-q"]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 180
    workers: set[int] = set()
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            workers = _descendants(proc.pid)
            if len(workers) >= 2 and (out / "cache").exists():  # workers started on their tasks
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the sweep ended before its workers could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        workers |= _descendants(proc.pid)
        assert workers
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.1)
        assert not [pid for pid in workers if _alive(pid)]
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
