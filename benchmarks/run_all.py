"""`make bench`: every benchmark in this folder, one after another, each printing its ratios.

Each benchmark measures mprobe against its peer in the same run (same data, same machine
state), so the ratios are what to read; absolute times depend on the machine's load.
Pass --quick to run every benchmark at a small size.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    extra = [arg for arg in sys.argv[1:] if arg == "--quick"]
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"\n=== {script.name} {' '.join(extra)}", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(script), *extra])
        status = "ok" if code == 0 else f"FAILED ({code})"
        print(f"--- {script.name}: {status} in {time.perf_counter() - start:.0f} s")
        if code:
            failed.append(script.name)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
