"""Streamed neural-collapse metrics against a plain numpy implementation holding everything.

Synthetic penultimate features (float32, N x p, C unbalanced classes around random means with
an offset, as ReLU features have) come batch by batch from a seeded generator, a stand-in for
reading a layer cache. `neural_collapse_streamed` reads the batches twice (class statistics,
then NC4) and never holds the layer; the plain implementation concatenates the batches and
computes every metric on whole float64 arrays. Each side runs in its own subprocess with the
same imports; peak memory is the growth of the process's peak resident set over its size after
the imports (resource.getrusage ru_maxrss), so both are measured the same way. Time excludes
the generation of the batches (timed separately; the stream generates them twice).

    python benchmarks/bench_collapse.py [--quick] [--n N] [--dim P] [--classes C] [--batch B]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

from manifold_probe.geometry.collapse import neural_collapse_streamed


class BatchSource:
    """Deterministic batches: batch i is a function of (seed, i) only; counts generation time."""

    def __init__(self, n: int, dim: int, n_classes: int, batch: int, seed: int):
        self.n, self.dim, self.n_classes, self.batch, self.seed = n, dim, n_classes, batch, seed
        rng = np.random.default_rng(seed)
        self.centres = 0.4 * rng.standard_normal((n_classes, dim)) + 1.0
        self.classifier = self.centres - self.centres.mean(axis=0)
        self.classifier += 0.05 * rng.standard_normal(self.classifier.shape)
        self.bias = 0.1 * rng.standard_normal(n_classes)
        self.class_probabilities = rng.dirichlet(np.full(n_classes, 5.0))
        self.seconds = 0.0

    def __call__(self):
        for index, start in enumerate(range(0, self.n, self.batch)):
            began = time.perf_counter()
            rng = np.random.default_rng([self.seed, index])
            size = min(self.batch, self.n - start)
            labels = rng.choice(self.n_classes, size=size, p=self.class_probabilities)
            noise = rng.standard_normal((size, self.dim), dtype=np.float32)
            features = self.centres[labels].astype(np.float32) + noise
            self.seconds += time.perf_counter() - began
            yield features, labels


def plain_collapse(features: np.ndarray, labels: np.ndarray, w: np.ndarray, b: np.ndarray):
    """Papyan's formulas on whole arrays, float64, two passes over the data in memory."""
    h = features.astype(np.float64)
    n, n_classes = len(h), w.shape[0]
    counts = np.bincount(labels, minlength=n_classes)
    means = np.stack([h[labels == c].mean(axis=0) for c in range(n_classes)])
    centred = h - means[labels]
    sigma_w = centred.T @ centred / n
    m = means - means.mean(axis=0)
    sigma_b = m.T @ m / n_classes
    values, vectors = np.linalg.eigh(sigma_b)
    top_values, top_vectors = values[-(n_classes - 1) :], vectors[:, -(n_classes - 1) :]
    nc1 = np.trace(top_vectors.T @ sigma_w @ top_vectors @ np.diag(1 / top_values)) / n_classes
    variances = np.bincount(labels, weights=np.sum(centred**2, axis=1)) / counts
    first, second = np.triu_indices(n_classes, 1)
    distances = np.sum((means[first] - means[second]) ** 2, axis=1)
    metrics = {
        "nc1": nc1,
        "nc1_trace_ratio": np.trace(sigma_w) / np.trace(sigma_b),
        "cdnv": np.mean((variances[first] + variances[second]) / (2 * distances)),
    }
    for name, vectors_ in (("means", m), ("weights", w)):
        norms = np.linalg.norm(vectors_, axis=1)
        cosines = (vectors_ @ vectors_.T / np.outer(norms, norms))[first, second]
        metrics[f"nc2_equinorm_{name}"] = np.std(norms, ddof=1) / np.mean(norms)
        metrics[f"nc2_equiangular_{name}"] = np.std(cosines, ddof=1)
        metrics[f"nc2_max_angle_{name}"] = np.mean(np.abs(cosines + 1 / (n_classes - 1)))
    gram = m @ m.T
    etf = (np.eye(n_classes) - 1 / n_classes) / np.sqrt(n_classes - 1)
    metrics["etf_distance"] = np.linalg.norm(gram / np.linalg.norm(gram) - etf)
    metrics["nc3_self_duality"] = np.sum((w / np.linalg.norm(w) - m / np.linalg.norm(m)) ** 2)
    sq_distances = np.sum(h**2, axis=1)[:, None] - 2 * h @ means.T + np.sum(means**2, axis=1)
    predicted = np.argmax(h @ w.T + b, axis=1)
    metrics["nc4_ncc_mismatch"] = np.mean(predicted != np.argmin(sq_distances, axis=1))
    return {name: float(value) for name, value in metrics.items()}


def worker(args) -> None:
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    source = BatchSource(args.n, args.dim, args.classes, args.batch, args.seed)
    began = time.perf_counter()
    if args.worker == "streamed":
        metrics = neural_collapse_streamed(
            source, args.classes, classifier=source.classifier, bias=source.bias
        ).metrics
    else:
        batches = list(source())
        features = np.concatenate([f for f, _ in batches])
        labels = np.concatenate([y for _, y in batches])
        del batches
        metrics = plain_collapse(features, labels, source.classifier, source.bias)
    elapsed = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "metrics": metrics,
                "seconds": elapsed - source.seconds,
                "generate_seconds": source.seconds,
                "peak_mib": (peak - baseline) / 1024,
            }
        )
    )


def run_worker(kind: str, args) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--n",
        str(args.n),
        "--dim",
        str(args.dim),
        "--classes",
        str(args.classes),
        "--batch",
        str(args.batch),
        "--seed",
        str(args.seed),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (N=5000, p=64, C=10)")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--dim", type=int, default=None)
    parser.add_argument("--classes", type=int, default=None)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=None, help="runs of each side (best kept)")
    parser.add_argument("--worker", choices=("streamed", "plain"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.n = args.n or (5_000 if args.quick else 50_000)
    args.dim = args.dim or (64 if args.quick else 512)
    args.classes = args.classes or (10 if args.quick else 100)
    if args.worker:
        worker(args)
        return

    from rich.console import Console
    from rich.table import Table

    repeats = args.repeats or (1 if not args.quick else 2)
    runs = {"streamed": [], "plain": []}
    for _ in range(repeats):  # alternate, so both see the same machine state
        for kind in runs:
            runs[kind].append(run_worker(kind, args))
    best = {kind: min(results, key=lambda r: r["seconds"]) for kind, results in runs.items()}
    peak = {kind: max(r["peak_mib"] for r in results) for kind, results in runs.items()}
    streamed, plain = best["streamed"], best["plain"]

    console = Console(width=110)
    numbers = Table(title="same numbers: streamed vs in-memory")
    for column in ("metric", "streamed", "in memory", "relative difference"):
        numbers.add_column(column, justify="left" if column == "metric" else "right")
    worst = 0.0
    for name, value in plain["metrics"].items():
        mine = streamed["metrics"][name]
        difference = abs(mine - value) / max(abs(value), 1e-300)
        worst = max(worst, difference)
        numbers.add_row(name, f"{mine:.10g}", f"{value:.10g}", f"{difference:.1e}")
    console.print(numbers)

    costs = Table(
        title=(
            f"neural collapse, N={args.n}, p={args.dim}, C={args.classes}, "
            f"float32 batches of {args.batch} (best of {repeats})"
        )
    )
    for column in ("method", "seconds", "time ratio", "peak MiB", "memory ratio", "generation s"):
        costs.add_column(column, justify="left" if column == "method" else "right")
    costs.add_row(
        "plain numpy, all in memory",
        f"{plain['seconds']:.2f}",
        "1.00",
        f"{peak['plain']:.0f}",
        "1.00",
        f"{plain['generate_seconds']:.2f}",
    )
    costs.add_row(
        "neural_collapse_streamed",
        f"{streamed['seconds']:.2f}",
        f"{streamed['seconds'] / plain['seconds']:.2f}",
        f"{peak['streamed']:.0f}",
        f"{peak['streamed'] / peak['plain']:.3f}",
        f"{streamed['generate_seconds']:.2f}",
    )
    console.print(costs)
    data_mib = args.n * args.dim * 4 / 2**20
    console.print(
        f"the layer itself: {data_mib:.0f} MiB as float32; largest relative difference "
        f"between the two: {worst:.1e}"
    )


if __name__ == "__main__":
    main()
