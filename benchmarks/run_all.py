"""`make bench`: every benchmark in this folder, one after another, each printing as it goes,
then a summary table of every ratio against its goal.

Each benchmark measures mprobe against its peer in the same run (same data, same machine
state), so the ratios are what to read; absolute times depend on the machine's load.

    python benchmarks/run_all.py [--quick | --full] [--only NAME[,NAME]] [--timeout S]

--quick (the default of `make bench`): every benchmark at its small size, a few minutes
each on 2 cores. --full (`make bench-full`): the sizes of the goals; benchmarks without a
--full option run at their default (full) size. A benchmark reports its ratios as SUMMARY
lines (`timing.report_ratio`); one that runs past --timeout is stopped, said so, and the
next one starts.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).parent


def run_one(script: Path, size: str, timeout: float | None) -> tuple[str, float, list[list[str]]]:
    """Run one benchmark, echoing its output line by line; (status, seconds, SUMMARY rows)."""
    accepts_full = '"--full"' in script.read_text()
    extra = ["--quick"] if size == "quick" else (["--full"] if accepts_full else [])
    print(f"\n=== {script.name} {' '.join(extra)}", flush=True)
    start = time.perf_counter()
    command = [sys.executable, "-u", str(script), *extra]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=HERE)
    stopped = threading.Event()
    if timeout:

        def stop() -> None:
            if proc.poll() is None:
                stopped.set()
                proc.kill()

        timer = threading.Timer(timeout, stop)
        timer.start()
    rows = []
    for line in proc.stdout:
        if line.startswith("SUMMARY\t"):
            rows.append(line.rstrip("\n").split("\t")[1:])
        print(line, end="", flush=True)
    code = proc.wait()
    if timeout:
        timer.cancel()
    seconds = time.perf_counter() - start
    status = "ok" if code == 0 else f"FAILED ({code})"
    if stopped.is_set():
        status = f"stopped after {timeout:.0f} s"
    print(f"--- {script.name}: {status} in {seconds:.0f} s", flush=True)
    return status, seconds, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes (the default)")
    size.add_argument("--full", action="store_true", help="the goals' sizes")
    parser.add_argument("--only", default="", help="comma-separated benchmark names, e.g. knn,id")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per benchmark (default 900 with --quick, none with --full)",
    )
    args = parser.parse_args()
    size_name = "full" if args.full else "quick"
    timeout = args.timeout if args.timeout is not None else (None if args.full else 900.0)
    wanted = {f"bench_{name.strip()}.py" for name in args.only.split(",") if name.strip()}
    scripts = [s for s in sorted(HERE.glob("bench_*.py")) if not wanted or s.name in wanted]
    table, failed = [], []
    for script in scripts:
        status, seconds, rows = run_one(script, size_name, timeout)
        if status != "ok":
            failed.append(script.name)
        table.extend(rows)
        if not rows:
            table.append([script.stem, f"(no ratio line; {status} in {seconds:.0f} s)", "", "", ""])
        elif status != "ok":
            table.append([script.stem, f"({status})", "", "", ""])
    print(f"\n=== summary ({size_name}) ===")
    rows = [["benchmark", "measure", "measured", "goal", "verdict"], *table]
    widths = [max(len(str(row[i])) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    if failed:
        print("failed or stopped:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
