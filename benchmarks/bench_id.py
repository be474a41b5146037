"""TwoNN and MLE against scikit-dimension, from the points (duplicate check and neighbour
search included), same data, one run, over a grid of (N, D).

Goal (issue 13, item 3): at least as fast as scikit-dimension in every cell, small N
included, the same estimates (relative difference printed), and at least 5x at N >= 10,000.
Each cell is timed as the best of --repeats runs (the machine's other load only adds time).

    python benchmarks/bench_id.py [--quick | --full] [--device cpu|cuda] [--threads T]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import skdim
import torch
from timing import best_of, report_ratio

from manifold_probe.geometry.intrinsic_dimension import mle, twonn
from manifold_probe.geometry.neighbours import nearest_neighbours

QUICK = [(500, 64), (2000, 512), (2000, 4096), (10_000, 512)]
FULL = [
    (500, 64),
    (500, 4096),
    (2000, 64),
    (2000, 512),
    (2000, 4096),
    (10_000, 64),
    (10_000, 512),
    (10_000, 4096),
    (20_000, 512),
]


def curved_manifold(n: int, d: int, ambient: int, seed: int = 0) -> np.ndarray:
    """A d-dimensional curved manifold in R^ambient: sin/cos features of Gaussian coordinates."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d))
    features = np.hstack([np.sin(z), np.cos(z), z])
    return (features @ rng.normal(size=(3 * d, ambient)) / np.sqrt(3 * d)).astype(np.float32)


def measure_cell(x: np.ndarray, device: str, repeats: int):
    """(estimator, (skdim's estimate, seconds), (mprobe's estimate, seconds)) for TwoNN and MLE."""
    x64 = x.astype(np.float64)
    pairs = (
        ("TwoNN", lambda: skdim.id.TwoNN().fit(x64).dimension_, lambda: twonn(x, device=device).dimension),
        ("MLE", lambda: skdim.id.MLE().fit(x64).dimension_, lambda: mle(x, device=device).dimension),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [(name, best_of(ref, repeats), best_of(ours, repeats)) for name, ref, ours in pairs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help=f"cells {QUICK} (the default)")
    size.add_argument("--full", action="store_true", help=f"cells {FULL}")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cells, d = (FULL if args.full else QUICK), 8
    print(
        f"intrinsic dimension from the points, true d={d}, device={args.device}, "
        f"torch threads={torch.get_num_threads()}, best of {args.repeats}",
        flush=True,
    )
    header = ("estimator", "N", "D", "skdim", "mprobe", "rel diff", "t skdim s", "t mprobe s", "speed-up")
    print(f"{header[0]:<8}{header[1]:>7}{header[2]:>6}" + "".join(f"{h:>11}" for h in header[3:]), flush=True)
    nearest_neighbours(curved_manifold(200, d, 16), 2, device=args.device)  # warm-up (CUDA start-up)
    slowest, slowest_large, worst_rel = np.inf, np.inf, 0.0
    for n, ambient in cells:
        x = curved_manifold(n, d, ambient)
        for name, (ref, t_ref), (ours, t_ours) in measure_cell(x, args.device, args.repeats):
            rel, speed = abs(ours - ref) / ref, t_ref / t_ours
            worst_rel = max(worst_rel, rel)
            slowest = min(slowest, speed)
            if n >= 10_000:
                slowest_large = min(slowest_large, speed)
            print(
                f"{name:<8}{n:>7}{ambient:>6}{ref:>11.4f}{ours:>11.4f}{rel:>11.1e}{t_ref:>11.2f}"
                f"{t_ours:>11.2f}{speed:>10.1f}x",
                flush=True,
            )
    report_ratio("bench_id", "ID speed-up over skdim, slowest", slowest, 1.0, lower_is_better=False)
    if np.isfinite(slowest_large):
        report_ratio("bench_id", "ID speed-up, N >= 10k", slowest_large, 5.0, lower_is_better=False)
    report_ratio("bench_id", "ID estimate, largest relative difference", worst_rel, 1e-6)


if __name__ == "__main__":
    main()
