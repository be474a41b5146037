"""Representation similarity against plain numpy implementations of the same formulas.

Issue 24, item 7: linear CKA, debiased linear CKA and the orthogonal Procrustes distance
(`manifold_probe.geometry.similarity`) on two float32 layers of n = 5000 points and
p = q = 512 and 4096 features, each timed against a plain float64 numpy implementation in
the same run, on the same data, alternating, best of the repeats. The peers:

- linear CKA: the Gram form of the definition, HSIC = tr(K H L H) with K = X X^T (as in
  Kornblith et al.'s reference code), and the feature form ||Y^T X||_F^2 / (||X^T X|| ||Y^T Y||);
  mprobe picks whichever costs fewer operations, so the ratio against the other is a saving;
- debiased CKA: Song et al.'s (2012) eq. 5 on the n x n Gram matrices with zeroed diagonals;
- Procrustes: centre, scale to unit norm, sqrt(2 - 2 ||X^T Y||_*) with numpy's SVD.

mprobe's calls include what the peers leave out: the input checks (finite, same rows), the
exact power-of-two rescaling (`point_scale`) and the float64 copy. The values must agree to
1e-10. Ratios are mprobe / peer (lower is faster); no goal is set, they are reported.

    python benchmarks/bench_similarity.py [--quick | --full] [--widths 512,4096] [--repeats R]

--quick: n = 2000, p = 512 (seconds). --full (the default): n = 5000, p in {512, 4096}.
"""

from __future__ import annotations

import argparse

import numpy as np
from timing import report_ratio, timed

from manifold_probe.geometry.similarity import linear_cka, procrustes_distance

QUICK = [(2000, 512)]
FULL = [(5000, 512), (5000, 4096)]


def layer_pair(n: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two float32 layers of the same points: noisy images of a shared 32-dimensional latent,
    the second through a tanh."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 32), dtype=np.float32)
    x = latent @ rng.standard_normal((32, width), dtype=np.float32)
    x += rng.standard_normal((n, width), dtype=np.float32)
    y = np.tanh(latent @ rng.standard_normal((32, width), dtype=np.float32))
    y += 0.5 * rng.standard_normal((n, width), dtype=np.float32)
    return x, y


def _centred64(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    return a - a.mean(axis=0)


def _centred_gram(gram: np.ndarray) -> np.ndarray:
    row = gram.mean(axis=0)
    return gram - row[:, None] - row[None, :] + row.mean()


def _gram(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    return a @ a.T


def plain_cka_gram(x, y) -> float:
    k, l = _centred_gram(_gram(x)), _centred_gram(_gram(y))  # noqa: E741
    return float(np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l)))


def plain_cka_features(x, y) -> float:
    xc, yc = _centred64(x), _centred64(y)
    return float(np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)))


def plain_debiased_cka(x, y) -> float:
    k, l = _gram(x), _gram(y)  # noqa: E741
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    n = len(k)

    def hsic(a, b):
        a_sum, b_sum = a.sum(axis=0), b.sum(axis=0)
        trace = np.sum(a * b)
        return (trace + a_sum.sum() * b_sum.sum() / ((n - 1) * (n - 2)) - 2 / (n - 2) * a_sum @ b_sum) / (
            n * (n - 3)
        )

    return float(hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l)))


def plain_procrustes(x, y) -> float:
    xc, yc = _centred64(x), _centred64(y)
    xc /= np.linalg.norm(xc)
    yc /= np.linalg.norm(yc)
    nuclear = np.linalg.svd(xc.T @ yc, compute_uv=False).sum()
    return float(np.sqrt(max(2 - 2 * nuclear, 0.0)))


def debiased_cka(x, y) -> float:
    return linear_cka(x, y, debiased=True)


ROWS = [
    ("linear CKA / plain Gram form", linear_cka, plain_cka_gram),
    ("linear CKA / plain feature form", linear_cka, plain_cka_features),
    ("debiased CKA / Song et al. eq. 5", debiased_cka, plain_debiased_cka),
    ("Procrustes / plain SVD", procrustes_distance, plain_procrustes),
]
"""(what, mprobe's function, the peer), each called on (x, y)."""


def compare(label: str, ours, peer, x, y, repeats: int) -> tuple[float, float, float]:
    """(mprobe seconds, peer seconds, |difference of the values|), alternating calls."""
    best_ours = best_peer = float("inf")
    for _ in range(repeats):
        value_ours, seconds = timed(lambda: ours(x, y))
        best_ours = min(best_ours, seconds)
        value_peer, seconds = timed(lambda: peer(x, y))
        best_peer = min(best_peer, seconds)
    difference = abs(value_ours - value_peer)
    if difference > 1e-10:
        raise SystemExit(f"{label}: mprobe gives {value_ours!r} but the plain form {value_peer!r}")
    return best_ours, best_peer, difference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help=f"cells (n, p) {QUICK}")
    size.add_argument("--full", action="store_true", help=f"cells (n, p) {FULL} (the default)")
    parser.add_argument("--widths", default="", help="only these p (comma-separated), e.g. 512")
    parser.add_argument("--repeats", type=int, default=3, help="best of R alternating runs (default 3)")
    args = parser.parse_args()
    cells = QUICK if args.quick else FULL
    if args.widths:
        widths = {int(w) for w in args.widths.split(",")}
        cells = [(n, width) for n, width in cells if width in widths]
    print(f"similarity of float32 layers in float64, best of {args.repeats}", flush=True)
    header = f"{'mprobe s':>10}{'peer s':>10}{'ratio':>8}{'|diff|':>10}"
    print(f"{'n':>6}{'p':>6}  {'what':<34}{header}", flush=True)
    for n, width in cells:
        x, y = layer_pair(n, width)
        for what, ours, peer in ROWS:
            seconds_ours, seconds_peer, difference = compare(what, ours, peer, x, y, args.repeats)
            ratio = seconds_ours / seconds_peer
            print(
                f"{n:>6}{width:>6}  {what:<34}{seconds_ours:>10.2f}{seconds_peer:>10.2f}{ratio:>7.2f}x"
                f"{difference:>10.1e}",
                flush=True,
            )
            report_ratio("bench_similarity", f"{what}, n={n} p={width}", ratio, None)


if __name__ == "__main__":
    main()
