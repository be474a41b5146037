"""A whole `mprobe id --points` process against scikit-dimension's fit alone and a numpy-only
script doing the same job (issue 26, goal 3).

The data: N = 10,000 points of a curved 8-dimensional manifold in R^512 (float32, a `.npy`
file). Three things are timed, interleaved round by round, best of --repeats each:

- `mprobe id --points FILE --json OUT -q` as a fresh process (import, kNN, TwoNN, MLE, PCA,
  the table, the JSON and the interpreter's exit);
- scikit-dimension's `TwoNN().fit` and `MLE().fit` on the same array, in this process, with
  the import already paid (the fit alone);
- `numpy_reference.py`-style script in a fresh process: the same estimates with numpy only
  (a float32 Gram product per block, argpartition, exact distances, TwoNN, MLE, PCA).

Goals: the process at least 2x faster than the fit alone, and within 1.3x of the numpy script.
It also says which heavy libraries the process imported (torch should not be among them).

    python benchmarks/bench_points_process.py [--quick] [--repeats R] [--n N] [--dim D]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from bench_id import curved_manifold
from timing import report_ratio

NUMPY_SCRIPT = r"""
import sys
import numpy as np

x = np.load(sys.argv[1]).astype(np.float32)
n, k = len(x), 20
c = x - x.mean(axis=0)
sq = np.einsum("ij,ij->i", c, c)
dist = np.empty((n, k))
for s in range(0, n, 512):
    d2 = sq[s:s + 512, None] + sq[None, :] - 2 * (c[s:s + 512] @ c.T)
    d2[np.arange(len(d2)), np.arange(s, s + len(d2))] = np.inf
    idx = np.argpartition(d2, k, axis=1)[:, :k]
    diff = x[idx] - x[s:s + 512, None, :]
    exact = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff, dtype=np.float64))
    dist[s:s + 512] = np.sort(exact, axis=1)
mu = np.sort(dist[:, 1] / dist[:, 0])
keep = int(n * 0.9)
lx, ly = np.log(mu[:keep]), -np.log(1 - np.arange(1, keep + 1) / n)
twonn = lx @ ly / (lx @ lx)
mle = 1 / np.mean(np.log(dist[:, -1:] / dist).sum(axis=1) / (k - 1))
c64 = c.astype(np.float64)
eig = np.linalg.eigvalsh(c64.T @ c64)[::-1]
pca90 = int(np.searchsorted(np.cumsum(eig) / eig.sum(), 0.9) + 1)
pr = eig.sum() ** 2 / (eig ** 2).sum()
print(f"{twonn:.4f} {mle:.4f} {pca90} {pr:.2f}")
"""

HEAVY = ("torch", "scipy", "sklearn", "numba", "plotly", "pandas")


def run_process(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, out.stdout


def fit_alone(x64: np.ndarray) -> float:
    import skdim

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        skdim.id.TwoNN().fit(x64)
        skdim.id.MLE().fit(x64)
    return time.perf_counter() - start


def imported_by_mprobe(points: Path, out: Path) -> list[str]:
    probe = (
        "import sys; from manifold_probe_cli.main import main\n"
        f"try: main(['id', '--points', {str(points)!r}, '--json', {str(out)!r}, '-q'])\n"
        "except SystemExit: pass\n"
        f"print('loaded:' + ','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    )
    err = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stderr
    line = [t for t in err.splitlines() if t.startswith("loaded:")][-1]
    return [m for m in line.removeprefix("loaded:").split(",") if m]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two rounds instead of five")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    x = curved_manifold(args.n, 8, args.dim)
    with tempfile.TemporaryDirectory(prefix="bench-points-") as tmp:
        folder = Path(tmp)
        points, out, script = folder / "points.npy", folder / "out.json", folder / "numpy_reference.py"
        np.save(points, x)
        script.write_text(NUMPY_SCRIPT)
        mprobe = [sys.executable, "-m", "manifold_probe_cli.main", "id", "--points", str(points),
                  "--json", str(out), "-q"]  # fmt: skip
        reference = [sys.executable, str(script), str(points)]
        x64 = x.astype(np.float64)
        fit_alone(x64[:2000])  # numba compiles scikit-dimension's kernels on first use
        times: dict[str, list[float]] = {"mprobe process": [], "skdim fit alone": [], "numpy script": []}
        for _ in range(repeats):
            times["mprobe process"].append(run_process(mprobe)[0])
            times["skdim fit alone"].append(fit_alone(x64))
            seconds, printed = run_process(reference)
            times["numpy script"].append(seconds)
        best = {name: min(values) for name, values in times.items()}
        loaded = imported_by_mprobe(points, out)
    print(f"N={args.n}, D={args.dim}, float32 .npy; best of {repeats} interleaved rounds")
    for name, value in best.items():
        print(f"  {name:<18}{value:>8.2f} s")
    print(f"  numpy script's estimates (TwoNN, MLE, PCA90, PR): {printed.strip()}")
    print(f"  mprobe id --points imported: {', '.join(loaded) or 'none of ' + ', '.join(HEAVY)}")
    report_ratio("bench_points_process", "skdim fit alone / mprobe id process", best["skdim fit alone"] /
                 best["mprobe process"], 2.0, lower_is_better=False)  # fmt: skip
    report_ratio("bench_points_process", "mprobe id process / numpy-only script", best["mprobe process"] /
                 best["numpy script"], 1.3)  # fmt: skip


if __name__ == "__main__":
    main()
