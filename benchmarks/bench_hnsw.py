"""TwoNN and MLE on large N: the approximate neighbour graph (`--neighbours hnsw`) against the
exact one, and a million 768-wide embeddings within 10 minutes (issue 26, goal 2).

Data: embeddings of a curved 8-dimensional manifold (`bench_knn.manifold_layer`, float32,
built a block at a time). Two measurements:

1. Agreement: TwoNN and MLE (k = 20) from the exact graph and from the hnsw graph on
   --agree-n x 128 points (200,000 with --full; 50,000 by default), the relative change of
   each estimate (goal: under 0.1 %), the recall the hnsw graph measured on itself, and both
   times.
2. Scale: TwoNN + MLE from the hnsw graph on --scale-n x 768 points, the whole call timed
   (index build, search, exact distances of what was found, the recall check on 1,000 rows,
   the estimates). With --full --scale-n is 1,000,000 (goal: 10 minutes on 2 cores); below
   that the time is also extrapolated to a million as N log N and printed as a projection.

    python benchmarks/bench_hnsw.py [--quick | --full] [--agree-n N] [--scale-n N]
"""

from __future__ import annotations

import argparse
import math
import resource
import time
import warnings

import numpy as np
from bench_knn import manifold_layer
from timing import report_ratio

from manifold_probe.geometry.approximate_neighbours import hnsw_neighbours
from manifold_probe.geometry.intrinsic_dimension import mle, twonn
from manifold_probe.geometry.neighbours import nearest_neighbours

K = 20
MILLION = 1_000_000


def estimates(x: np.ndarray, method: str) -> tuple[float, float, float | None, float]:
    """(TwoNN, MLE, recall, seconds) from one graph of `method`."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = hnsw_neighbours(x, K) if method == "hnsw" else nearest_neighbours(x, K)
        values = twonn(graph=graph).dimension, mle(graph=graph, k=K).dimension
    return (*values, graph.recall, time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="agreement at 20k x 128, scale at 50k x 768")
    size.add_argument("--full", action="store_true", help="agreement at 200k x 128, scale at 1M x 768")
    parser.add_argument("--agree-n", type=int, default=None)
    parser.add_argument("--scale-n", type=int, default=None)
    args = parser.parse_args()
    agree_n = args.agree_n or (200_000 if args.full else 20_000 if args.quick else 50_000)
    scale_n = args.scale_n or (MILLION if args.full else 50_000 if args.quick else 200_000)

    x = manifold_layer(agree_n, 128)
    exact = estimates(x, "exact")
    approx = estimates(x, "hnsw")
    print(f"agreement, {agree_n} x 128 (k={K}):")
    print(f"  {'graph':<8}{'TwoNN':>10}{'MLE':>10}{'recall':>9}{'seconds':>10}")
    for name, r in (("exact", exact), ("hnsw", approx)):
        recall = "-" if r[2] is None else f"{r[2]:.4f}"
        print(f"  {name:<8}{r[0]:>10.4f}{r[1]:>10.4f}{recall:>9}{r[3]:>10.1f}", flush=True)
    change = max(abs(approx[0] / exact[0] - 1), abs(approx[1] / exact[1] - 1))
    print(f"  largest relative change of an estimate: {change:.2e}; hnsw {exact[3] / approx[3]:.1f}x faster")
    del x

    x = manifold_layer(scale_n, 768)
    twonn_value, mle_value, recall, seconds = estimates(x, "hnsw")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"scale, {scale_n} x 768 with hnsw: TwoNN {twonn_value:.3f}, MLE {mle_value:.3f}, "
          f"recall {recall:.4f}, {seconds:.0f} s, peak RSS {peak:.1f} GB", flush=True)  # fmt: skip
    report_ratio("bench_hnsw", f"hnsw vs exact, largest relative change ({agree_n} x 128)", change, 1e-3)
    report_ratio("bench_hnsw", "hnsw recall@20 (its own check)", recall, 0.99, lower_is_better=False)
    if scale_n >= MILLION:
        report_ratio("bench_hnsw", f"TwoNN + MLE, {scale_n} x 768, minutes", seconds / 60, 10)
    else:
        projected = seconds * (MILLION * math.log(MILLION)) / (scale_n * math.log(scale_n))
        print(
            f"PROJECTION to 1,000,000 x 768 (N log N from {scale_n}): {projected / 60:.1f} min; "
            "a projection, not a measurement (--full measures it)"
        )
        report_ratio("bench_hnsw", "TwoNN + MLE, 1M x 768, minutes (PROJECTED)", projected / 60, 10)


if __name__ == "__main__":
    main()
