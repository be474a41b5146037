"""The tangent dimension of a point cloud at the scale of a local fit: a gap in local PCA spectra.

A global intrinsic-dimension estimate (TwoNN) reads the two nearest distances: under noise
of a few per cent in many ambient dimensions those are distances in the noise, and the
estimate climbs far above the manifold's dimension. The curvature fit works at the scale of
its K neighbours, so its tangent dimension is read at that scale (the local PCA approach of
Fukunaga & Olsen 1971, "An algorithm for finding intrinsic dimensionality of data", IEEE
Trans. Computers; Little, Maggioni & Rosasco 2017, "Multiscale geometric methods for data
sets I: multiscale SVD, noise and curvature", ACHA):

1. For each of up to `n_anchors` seeded anchor points, the eigenvalues lambda_1 >= ... of
   the covariance of its K nearest neighbours (centred on their mean), from the K x K Gram
   matrix in float64, divided by lambda_1; `spectrum` is their mean over anchors.
2. Across one neighbourhood of a d-manifold the d tangent eigenvalues are comparable (about
   r^2 / (d + 2) each for a ball of radius r), the bending adds normal eigenvalues of relative
   size at most about theta^2 / (d + 4) (theta the bending angle across the neighbourhood,
   ~0.2 at the curvature fit's default K), and isotropic noise adds a bulk (Marchenko-Pastur)
   of eigenvalues near sigma^2 D / K that are all alike.
3. d is the first j with spectrum[j-1] / spectrum[j] >= `GAP` (a drop by a factor of 3) among
   the j with spectrum[j-1] >= `FLOOR` (a tenth of the largest): within the tangent block and
   within a noise bulk consecutive ratios stay near 1, and the first big drop is from the
   tangent block to whatever comes after it (bending or noise). When no such drop exists
   (noise as large as the tangent spread, or a spectrum that decays smoothly), d is the j of
   the largest ratio among those j, and `clear` is False.
4. The scale is that of the fit: K starts at the curvature default for d = 2 and follows the
   chosen d (K = default_k(d)) until d repeats or a K comes back (at most `MAX_ROUNDS`
   rounds); without a clear gap in any round, the round with the largest drop is kept.

Example: S^2 of radius 2 in R^512 with 1 % noise per coordinate, N = 2000: TwoNN gives
about 20, this gives d = 2 with spectrum ~ [1, 0.88, 0.03, 0.03, ...] and gap ~ 30.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..validation import as_points
from .neighbours import NeighbourGraph

GAP = 3.0
"""The drop spectrum[d-1] / spectrum[d] that counts as a clear gap."""
FLOOR = 0.1
"""Only eigenvalues at least this fraction of the largest (mean-normalised) can be tangent."""
MAX_ROUNDS = 4
BLOCK_BYTES = 2**25
"""Working memory (bytes) of one block of neighbourhoods in `local_spectrum` (default)."""
METHOD = (
    "local PCA at the fit's K: first drop by >= 3x of the mean normalised neighbourhood spectrum "
    "among eigenvalues >= 0.1 of the largest"
)


@dataclass(frozen=True)
class TangentDimension:
    """The chosen d, the K of the neighbourhoods it was read at, and the evidence.

    spectrum: mean over anchors of the neighbourhood covariance eigenvalues / the largest
    (first `len(spectrum)` entries); gap: spectrum[d-1] / spectrum[d]; clear: gap >= GAP;
    rounds: the (d, K) pairs tried.
    """

    dim: int
    k: int
    spectrum: np.ndarray
    gap: float
    clear: bool
    rounds: tuple[tuple[int, int], ...]
    n_anchors: int
    method: str = METHOD

    def details(self) -> dict:
        return {
            "dim_method": self.method,
            "dim_k": self.k,
            "dim_spectrum": [float(v) for v in self.spectrum],
            "dim_gap": self.gap,
            "dim_gap_clear": self.clear,
            "dim_rounds": [list(r) for r in self.rounds],
        }


def local_spectrum(
    points,
    graph: NeighbourGraph,
    k: int,
    *,
    n_anchors: int = 500,
    seed: int = 0,
    max_bytes: int = BLOCK_BYTES,
):
    """Mean over up to n_anchors seeded anchors of their K-neighbourhood covariance spectrum,
    each divided by its largest eigenvalue: (K - 1,) descending (item 1 of the module doc).

    The points stay in their own precision (float32 activations are not copied); a block of
    anchors at a time, their neighbourhoods are gathered in float64, centred on their own mean
    (before any product, so no cancellation) and reduced to K x K Gram matrices:
    n_anchors K^2 D operations, and at most about `max_bytes` of working memory per block."""
    x = torch.from_numpy(as_points(points, min_points=3))
    n, ambient = x.shape
    rng = np.random.default_rng(seed)
    anchors = np.sort(rng.choice(n, size=min(n, n_anchors), replace=False))
    indices = torch.from_numpy(graph.indices[anchors, :k])
    total = torch.zeros(k, dtype=torch.float64)
    block = max(1, max_bytes // (8 * k * (ambient + k)))
    for start in range(0, len(anchors), block):
        nb = x[indices[start : start + block]].double()  # (B, K, D)
        nb -= nb.mean(dim=1, keepdim=True)
        values = torch.linalg.eigvalsh(nb @ nb.mT).flip(-1).clamp_min(0.0)  # (B, K)
        del nb
        top = values[:, :1]
        total += (values / torch.where(top > 0, top, torch.ones_like(top))).sum(dim=0)
    return (total / len(anchors)).numpy()[: k - 1], len(anchors)


def read_gap(spectrum: np.ndarray) -> tuple[int, float, bool]:
    """(d, gap, clear) from a mean normalised spectrum (item 3 of the module doc)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = spectrum[:-1] / spectrum[1:]
    ratios = np.where(np.isnan(ratios), 1.0, ratios)
    candidates = np.flatnonzero(spectrum[:-1] >= FLOOR)  # index j-1 for d = j
    clear_ones = candidates[ratios[candidates] >= GAP]
    if len(clear_ones):
        j = int(clear_ones[0])
        return j + 1, float(ratios[j]), True
    j = int(candidates[np.argmax(ratios[candidates])])
    return j + 1, float(ratios[j]), False


def tangent_dimension_at_fit_scale(
    points,
    graph_for: Callable[[int], NeighbourGraph],
    k_for: Callable[[int], int],
    *,
    max_dim: int,
    max_k: int,
    n_anchors: int = 500,
    seed: int = 0,
    max_bytes: int = BLOCK_BYTES,
) -> TangentDimension:
    """The tangent dimension read from local spectra at K = k_for(d) (module docstring).

    graph_for(k): a neighbour graph holding at least k neighbours; k_for(d): the fit's K for
    dimension d (e.g. the curvature default); max_dim: the largest d allowed (below the
    ambient dimension); max_k: the most neighbours there are (N - 1). A d whose K exceeds
    max_k ends the rounds: the fit could not use it anyway (the caller reports that).
    max_bytes: working memory of one block of neighbourhoods (`local_spectrum`).
    """
    d, rounds, seen = min(2, max_dim), [], {}
    while True:
        k = min(k_for(d), max_k)
        spectrum, used = local_spectrum(
            points, graph_for(k), k, n_anchors=n_anchors, seed=seed, max_bytes=max_bytes
        )
        found, gap, clear = read_gap(spectrum)
        if found > max_dim:  # e.g. d = D: no normal direction left, not a tangent dimension
            found, clear = max_dim, False
        rounds.append((found, k))
        seen[(found, k)] = TangentDimension(
            dim=found,
            k=k,
            spectrum=spectrum[: min(len(spectrum), 2 * found + 4)],
            gap=gap,
            clear=clear,
            rounds=(),
            n_anchors=used,
        )
        k_next = k_for(found)
        cycle = any(k_next == size for _, size in rounds[:-1])  # that K was tried before
        if found == d or len(rounds) >= MAX_ROUNDS or k_next == k or k_next > max_k or cycle:
            break
        d = found
    best = seen[rounds[-1]]
    if not best.clear:  # no round settled: the round with the clearest gap
        best = max(seen.values(), key=lambda t: t.gap)
    return TangentDimension(
        dim=best.dim,
        k=best.k,
        spectrum=best.spectrum,
        gap=best.gap,
        clear=best.clear,
        rounds=tuple(rounds),
        n_anchors=best.n_anchors,
    )
