"""Matched nulls for a statistic of a point cloud: Gaussians with the cloud's own second moments.

A curvature estimate on a real layer means something only if a cloud with the same covariance
and no curvature at all would not give it too (a Gaussian's level sets are flat; a local
quadratic fit on a Gaussian blob still returns a number, and on digits-cnn layers that number is
as large as the layer's). So every statistic is recomputed, with the same estimator and its
same settings, on `n_draws` seeded draws of

- `gaussian`: N points from N(mu, Sigma), mu and Sigma the cloud's mean and covariance, drawn as
  mu + W Xc / sqrt(N - 1) with W an (N, N) standard normal matrix and Xc the centred points
  (exactly Sigma's distribution, without forming the D x D Sigma);
- `classes` (with labels): the class-conditional Gaussian mixture, each class's points redrawn
  from the Gaussian of that class's mean and covariance, the class sizes kept.

The p-value of the observed value t against the draws t_1..t_B is (1 + #{t_b >= t}) / (1 + B):
when the cloud is itself a draw of the null it is uniform on {1/(B+1), ..., 1} (exchangeability),
so it is below 0.05 with probability at most 0.05 for B = 19 (tests/test_matched_null.py checks
this by simulation). The excess is t - mean(t_b).

Example
-------
>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(300, 4))
>>> found = matched_null(x, lambda p: float(np.abs(p).max()), n_draws=19, seed=1)
>>> 0 < found.p_value <= 1
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..validation import as_points, check_count

N_DRAWS = 19
"""Draws per null: the smallest number whose p-value can reach 0.05."""


@dataclass(frozen=True)
class NullTest:
    """An observed statistic against its matched null: the draws, their mean, the excess and the
    one-sided p-value (large values are the alternative)."""

    kind: str
    observed: float
    draws: np.ndarray
    p_value: float

    @property
    def mean(self) -> float:
        """The mean of the draws that gave a value (a statistic may give none: -inf or NaN)."""
        finite = self.draws[np.isfinite(self.draws)]
        return float(finite.mean()) if len(finite) else float("nan")

    @property
    def share_with_value(self) -> float:
        """The share of draws that gave a value."""
        return float(np.isfinite(self.draws).mean()) if len(self.draws) else float("nan")

    @property
    def excess(self) -> float:
        return self.observed - self.mean

    def details(self) -> dict:
        return {"kind": self.kind, "observed": self.observed, "mean": self.mean, "excess": self.excess,
                "p_value": self.p_value, "share_with_value": self.share_with_value,
                "draws": [float(v) if np.isfinite(v) else None for v in self.draws]}  # fmt: skip


def p_value(observed: float, draws: np.ndarray) -> float:
    """(1 + #{draw >= observed}) / (1 + number of draws); a draw that failed (NaN) counts as
    reaching the observed value (a conservative choice), one that read nothing (-inf) as not;
    NaN when the observed value is NaN.

    >>> p_value(3.0, np.array([1.0, 2.0, 4.0]))
    0.5
    >>> p_value(3.0, np.array([float("nan"), float("-inf"), 4.0]))
    0.75
    """
    if not np.isfinite(observed):
        return float("nan")
    reached = np.isnan(draws) | (draws >= observed)
    return float((1 + reached.sum()) / (1 + len(draws)))


def gaussian_draws(points, n_draws: int, seed: int, labels=None) -> Iterator[np.ndarray]:
    """`n_draws` seeded clouds with the points' mean and covariance (per class with `labels`)."""
    x = np.asarray(as_points(points, min_points=3), dtype=np.float64)
    rng = np.random.default_rng(seed)
    groups = (
        [np.arange(len(x))] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    )
    parts = []
    for rows in groups:
        mean = x[rows].mean(axis=0)
        parts.append((rows, mean, x[rows] - mean))
    for _ in range(n_draws):
        out = np.empty_like(x)
        for rows, mean, centred in parts:
            if len(rows) < 2:
                out[rows] = mean
                continue
            weights = rng.standard_normal((len(rows), len(rows)))
            out[rows] = mean + weights @ centred / np.sqrt(len(rows) - 1)
        yield out


def matched_null(
    points,
    statistic: Callable[[np.ndarray], float],
    *,
    observed: float | None = None,
    n_draws: int = N_DRAWS,
    seed: int = 0,
    labels=None,
) -> NullTest:
    """`statistic` on the points (or `observed`) against `n_draws` Gaussian draws with their
    covariance (`gaussian`), or with `labels` the class-conditional mixture (`classes`)."""
    n_draws = check_count(n_draws, name="n_null", minimum=1)
    value = statistic(np.asarray(points)) if observed is None else float(observed)
    draws = np.array([statistic(draw) for draw in gaussian_draws(points, n_draws, seed, labels)], dtype=float)
    return NullTest(
        "classes" if labels is not None else "gaussian", float(value), draws, p_value(value, draws)
    )
