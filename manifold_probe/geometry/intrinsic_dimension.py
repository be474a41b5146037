"""Nearest-neighbour intrinsic-dimension estimators: TwoNN and MLE, on a shared neighbour graph.

Both read only the distances of a `NeighbourGraph`, so one graph per layer serves both (and
the curvature estimator). Conventions follow scikit-dimension 0.5 so the numbers agree.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..validation import as_points
from .neighbours import NeighbourGraph, drop_duplicates, nearest_neighbours

MLE_NEIGHBOURS = 20  # Levina & Bickel's k, scikit-dimension's default


@dataclass(frozen=True)
class IntrinsicDimension:
    """An estimate, the number of points it used, and a bootstrap interval when one was asked for."""

    dimension: float
    n_used: int
    interval: tuple[float, float] | None = None


def distinct_points(points) -> np.ndarray:
    """The points as a checked array without duplicate rows, warning when some were removed."""
    x, removed = drop_duplicates(as_points(points))
    if removed:
        warnings.warn(f"removed {removed} duplicate points before estimating the dimension.", stacklevel=3)
    return x


def _graph(points, graph: NeighbourGraph | None, k: int, device) -> NeighbourGraph:
    if graph is None:
        if points is None:
            raise ValueError("give points or a neighbour graph")
        return nearest_neighbours(distinct_points(points), k, device=device)
    if graph.k < k:
        raise ValueError(f"the neighbour graph holds {graph.k} neighbours; this estimator needs {k}")
    return graph


def _percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    low, high = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def twonn_ratios(graph: NeighbourGraph) -> np.ndarray:
    """mu_i = r2 / r1 for every point, dropping points with r1 = 0 or r1 = r2 (with a warning).

    Duplicates (r1 = 0) make the ratio undefined; ties r1 = r2 (mu = 1, common on
    quantised data such as pixel values) have probability zero under the Pareto model
    and only bias the fit, so both are dropped (docs/methods.md#intrinsic-dimension). Build
    the graph on distinct points (`distinct_points`): a duplicated neighbour would turn its
    neighbours' ratios into ties.
    """
    r1, r2 = graph.distances[:, 0], graph.distances[:, 1]
    keep = (r1 > 0) & (r2 > r1)
    dropped = int((~keep).sum())
    if dropped:
        warnings.warn(
            f"TwoNN: dropped {dropped} of {len(r1)} points with a duplicate or a tied "
            "nearest neighbour (r1 = 0 or r1 = r2).",
            stacklevel=2,
        )
    return r2[keep] / r1[keep]


def _twonn_fit(mu: np.ndarray, discard_fraction: float) -> float:
    """Slope through the origin of -log(1 - F(mu)) against log(mu) on the smallest ratios."""
    n = len(mu)
    n_keep = int(n * (1 - discard_fraction))
    mu = np.sort(mu)[:n_keep]
    x = np.log(mu)
    y = -np.log(1.0 - np.arange(1, n_keep + 1) / n)
    return float(np.dot(x, y) / np.dot(x, x))


def twonn(
    points=None,
    *,
    graph: NeighbourGraph | None = None,
    discard_fraction: float = 0.1,
    n_bootstrap: int = 0,
    seed: int = 0,
    device="cpu",
) -> IntrinsicDimension:
    """TwoNN intrinsic dimension (Facco, d'Errico, Rodriguez & Laio 2017, Sci. Rep. 7:12140).

    The ratio mu = r2/r1 of each point's second to first neighbour distance is Pareto
    distributed, F(mu) = 1 - mu^-d, so -log(1 - F(mu)) = d log(mu). With the empirical
    F(mu_(i)) = i/N of the sorted ratios, d is the least-squares slope through the origin
    on the smallest (1 - discard_fraction) share of the ratios (scikit-dimension's
    protocol; Ansuini et al. 2019 also keep 90 %).

    n_bootstrap: number of resamples of the points for a 95 % percentile interval (0: none).
    Duplicate points are removed first (with a warning) when `points` are given.
    """
    if not 0 <= discard_fraction < 1:
        raise InputError(f"discard_fraction must be in [0, 1), got {discard_fraction}.")
    mu = twonn_ratios(_graph(points, graph, 2, device))
    if int(len(mu) * (1 - discard_fraction)) < 3:
        raise InputError(
            f"TwoNN needs at least 3 distinct, untied points after discarding; {len(mu)} remain."
        )
    estimate = _twonn_fit(mu, discard_fraction)
    interval = None
    if n_bootstrap:
        rng = np.random.default_rng(seed)
        draws = [_twonn_fit(rng.choice(mu, len(mu)), discard_fraction) for _ in range(n_bootstrap)]
        interval = _percentile_interval(np.asarray(draws))
    return IntrinsicDimension(estimate, len(mu), interval)


def mle_pointwise(graph: NeighbourGraph, k: int = MLE_NEIGHBOURS) -> np.ndarray:
    """Levina-Bickel local estimates m_i = (k - 1) / sum_{j<=k} log(T_k(x_i) / T_j(x_i)).

    Points with a zero distance among their k neighbours (duplicates) give no finite
    estimate and come back as NaN.
    """
    dist = graph.first(k).distances
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(dist[:, -1:] / dist).sum(axis=1)
        local = (k - 1) / log_ratio
    local[~np.isfinite(local) | (local <= 0)] = np.nan
    return local


def mle(
    points=None,
    *,
    graph: NeighbourGraph | None = None,
    k: int = MLE_NEIGHBOURS,
    n_bootstrap: int = 0,
    seed: int = 0,
    device="cpu",
) -> IntrinsicDimension:
    """Maximum-likelihood intrinsic dimension (Levina & Bickel 2004, NIPS 17).

    Local estimates m_i from each point's k nearest neighbours (see `mle_pointwise`) are
    pooled by the harmonic mean 1 / mean(1 / m_i) (MacKay & Ghahramani's correction, as in
    scikit-dimension's comb='mle'). k = 20 by default.
    """
    if k < 3:
        raise InputError(f"MLE needs k >= 3 neighbours, got {k}.")
    local = mle_pointwise(_graph(points, graph, k, device), k)
    valid = local[np.isfinite(local)]
    dropped = len(local) - len(valid)
    if dropped:
        warnings.warn(
            f"MLE: dropped {dropped} of {len(local)} points with a duplicate among their "
            f"{k} nearest neighbours.",
            stacklevel=2,
        )
    if len(valid) < 2:
        raise InputError("MLE needs at least 2 points without duplicate neighbours.")
    inverse = 1.0 / valid
    interval = None
    if n_bootstrap:
        rng = np.random.default_rng(seed)
        means = np.array([rng.choice(inverse, len(inverse)).mean() for _ in range(n_bootstrap)])
        interval = _percentile_interval(1.0 / means)
    return IntrinsicDimension(float(1.0 / inverse.mean()), len(valid), interval)
