"""TwoNN and MLE against scikit-dimension, neighbour search included, same data, one run.

Goal (issue 2): the same estimate to within 1 % and at least 10x faster at N=10,000, D=512.
Run: python benchmarks/bench_id.py [--quick] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import skdim
from timing import timed

from manifold_probe.geometry.intrinsic_dimension import mle, twonn
from manifold_probe.geometry.neighbours import nearest_neighbours


def curved_manifold(n: int, d: int, ambient: int, seed: int = 0) -> np.ndarray:
    """A d-dimensional curved manifold in R^ambient: sin/cos features of Gaussian coordinates."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d))
    features = np.hstack([np.sin(z), np.cos(z), z])
    return (features @ rng.normal(size=(3 * d, ambient)) / np.sqrt(3 * d)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="N=2,000 instead of 10,000")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    n, ambient, d = (2000, 512, 8) if args.quick else (10_000, 512, 8)
    x = curved_manifold(n, d, ambient)
    x64 = x.astype(np.float64)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_twonn, t_ref_twonn = timed(lambda: skdim.id.TwoNN().fit(x64).dimension_)
        ref_mle, t_ref_mle = timed(lambda: skdim.id.MLE().fit(x64).dimension_)
    nearest_neighbours(x[:200], 2, device=args.device)  # warm-up: CUDA start-up is not the estimator's
    ours_twonn, t_twonn = timed(lambda: twonn(graph=nearest_neighbours(x, 2, device=args.device)).dimension)
    ours_mle, t_mle = timed(lambda: mle(graph=nearest_neighbours(x, 20, device=args.device)).dimension)

    def both():
        graph = nearest_neighbours(x, 20, device=args.device)
        return twonn(graph=graph).dimension, mle(graph=graph).dimension

    _, t_both = timed(both)

    print(f"intrinsic dimension, N={n}, D={ambient}, true d={d}, device={args.device}")
    header = ("estimator", "scikit-dim", "mprobe", "rel diff", "t skdim s", "t mprobe s", "speed-up")
    print(f"{header[0]:<22}" + "".join(f"{h:>12}" for h in header[1:]))
    for name, ref, ours, t_ref, t_ours in (
        ("TwoNN", ref_twonn, ours_twonn, t_ref_twonn, t_twonn),
        ("MLE (k=20)", ref_mle, ours_mle, t_ref_mle, t_mle),
    ):
        rel = abs(ours - ref) / ref
        row = f"{ref:>12.4f}{ours:>12.4f}{rel:>12.2e}{t_ref:>12.2f}{t_ours:>12.2f}"
        print(f"{name:<22}{row}{t_ref / t_ours:>11.1f}x")
    print(
        f"{'TwoNN+MLE, one graph':<22}{'':>36}{t_ref_twonn + t_ref_mle:>12.2f}{t_both:>12.2f}"
        f"{(t_ref_twonn + t_ref_mle) / t_both:>11.1f}x"
    )


if __name__ == "__main__":
    main()
