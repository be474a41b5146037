"""Start-up: `mprobe --version` (and `--help`) against `python -c "import torch"`.

The command line loads torch, scipy and plotly only when a command runs (lazy imports in
`cli/`, a light `import manifold_probe`), so printing the version or the help costs the
interpreter, typer and rich: the goal is under a second on 2 cores, a small fraction of
importing torch. Each command runs in a fresh interpreter; the best of `--repeat` runs is
kept (the machine's other load only adds time).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from timing import timed

COMMANDS = {
    "mprobe --version": [sys.executable, "-m", "manifold_probe_cli.main", "--version"],
    "mprobe --help": [sys.executable, "-m", "manifold_probe_cli.main", "--help"],
    'python -c "import torch"': [sys.executable, "-c", "import torch"],
}
HEAVY = ("torch", "scipy", "plotly")


def best_time(command: list[str], repeat: int) -> float:
    runs = [timed(lambda: subprocess.run(command, capture_output=True, check=True))[1] for _ in range(repeat)]
    return min(runs)


def heavy_modules(args: list[str]) -> list[str]:
    """The heavy libraries that `mprobe ARGS` imports."""
    probe = (
        f"import sys; from manifold_probe_cli.main import main; main({args!r}); "
        f"print('loaded:' + ','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    line = [text for text in out.stderr.splitlines() if text.startswith("loaded:")][-1]
    return [m for m in line.removeprefix("loaded:").split(",") if m]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="One run of each command instead of five.")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    seconds = {name: best_time(command, repeat) for name, command in COMMANDS.items()}
    torch_time = seconds['python -c "import torch"']
    for name, value in seconds.items():
        print(f"{name:28s} {value:6.2f} s  ({value / torch_time:.2f}x import torch)")
    for flags in (["--version"], ["--help"]):
        loaded = heavy_modules(flags)
        print(f"mprobe {' '.join(flags)} imports: {', '.join(loaded) or 'none of ' + ', '.join(HEAVY)}")
        if loaded:
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
