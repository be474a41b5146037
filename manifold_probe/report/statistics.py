"""Correlation of two measures across models, with a bootstrap interval and a permutation p-value.

Three coefficients, all computed on a batch of rows at once (one row per resample), so a
thousand bootstrap resamples or permutations cost a few numpy calls, not a thousand scipy calls:

- Pearson r = sum (x - mx)(y - my) / sqrt(sum (x - mx)^2 sum (y - my)^2).
- Spearman rho = Pearson r of the average ranks (ties share the mean of their ranks).
- Kendall tau-b = sum_{i<j} s^x_ij s^y_ij / sqrt(T_x T_y), with s^x_ij = sign(x_i - x_j) and
  T_x = sum_{i<j} |s^x_ij| the pairs not tied in x (Kendall 1945; equals scipy.stats.kendalltau's
  default variant). The pairwise form costs O(n^2) per row: fine for sweeps of up to a few
  hundred models.

Uncertainty (Efron & Tibshirani 1993, *An Introduction to the Bootstrap*, ch. 13 and 15):
- the interval is the bootstrap **percentile** interval: resample the (x, y) *pairs* with
  replacement `n_bootstrap` times, recompute the coefficient (re-ranking each resample), take the
  2.5 % and 97.5 % quantiles. Resamples in which x or y is constant have no coefficient and
  are left out.
- the p-value is a two-sided permutation test of "no association": permute y against x
  `n_perm` times, count the permutations with |coefficient| >= |observed|, and report
  (count + 1) / (n_perm + 1) (Phipson & Smyth 2010: never 0, valid at any n_perm).

Pairs with NaN in either array are dropped first. With fewer than 3 pairs left, or when x or
y is constant, no coefficient exists: the result is marked insufficient (value, interval and
p-value None), never a made-up number. Everything is seeded with `np.random.default_rng(seed)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from ..errors import InputError
from ..validation import as_paired, check_resample_counts, check_seed

METHODS = ("pearson", "spearman", "kendall")
MIN_PAIRS = 3
MIN_RELIABLE_N = 8
"""Below this many pairs a coefficient gets a warning: with n = 4 a Spearman of -1 has a
permutation p of 1/12 and its bootstrap resamples repeat the same few orderings."""
_KENDALL_CHUNK = 4_000_000  # sign-matrix entries per chunk of rows (memory bound)


@dataclass(frozen=True)
class Correlation:
    """One coefficient with its bootstrap percentile interval and permutation p-value.

    `value`, `interval` and `p_value` are None when the coefficient does not exist
    (fewer than 3 pairs, or a constant variable): `insufficient` is then True. `warning` says
    why an existing coefficient should not be trusted: fewer than `MIN_RELIABLE_N` pairs, or a
    degenerate interval (both ends equal, e.g. [-1, -1]: every resample gave the same value).
    """

    method: str
    value: float | None
    interval: tuple[float, float] | None
    p_value: float | None
    n: int

    @property
    def insufficient(self) -> bool:
        return self.value is None

    @property
    def warning(self) -> str | None:
        """Why this coefficient should not be trusted, in words; None when nothing is wrong
        (or when it does not exist: `insufficient` says so).

        >>> Correlation("spearman", -1.0, (-1.0, -1.0), 0.08, 4).warning
        'n = 4 < 8 models; degenerate interval [-1, -1]: every resample gave the same value'
        """
        return correlation_warning(self.value, self.interval, self.n)

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "interval": None if self.interval is None else [self.interval[0], self.interval[1]],
            "p_value": self.p_value,
            "n": self.n,
            "warning": self.warning,
        }


def correlation_warning(value: float | None, interval, n: int) -> str | None:
    """The warning of a coefficient (`Correlation.warning`) from its value, interval and n: also
    for entries read back from a report's JSON."""
    if value is None:
        return None
    parts = []
    if n < MIN_RELIABLE_N:
        parts.append(f"n = {n} < {MIN_RELIABLE_N} models")
    if interval is not None and interval[0] == interval[1]:
        parts.append(f"degenerate interval [{interval[0]:.3g}, {interval[1]:.3g}]: every resample gave the "
                     "same value")  # fmt: skip
    return "; ".join(parts) or None


@dataclass(frozen=True)
class LinearFit:
    """Least-squares line y = intercept + slope x, and a pointwise bootstrap percentile band on `grid`."""

    slope: float
    intercept: float
    grid: np.ndarray
    low: np.ndarray
    high: np.ndarray


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of x, y (shape (B, n)); NaN where a row is constant."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    sxx = np.einsum("ij,ij->i", xc, xc)
    syy = np.einsum("ij,ij->i", yc, yc)
    sxy = np.einsum("ij,ij->i", xc, yc)
    denom = np.sqrt(sxx * syy)
    # a row whose spread is rounding noise is constant: relative test against the data's scale
    scale_x = np.max(np.abs(x), axis=1) ** 2 * x.shape[1]
    scale_y = np.max(np.abs(y), axis=1) ** 2 * y.shape[1]
    constant = (sxx <= 1e-24 * np.maximum(scale_x, 1e-300)) | (syy <= 1e-24 * np.maximum(scale_y, 1e-300))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sxy / denom
    r[constant] = np.nan
    return np.clip(r, -1.0, 1.0)


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _pearson_rows(rankdata(x, axis=1), rankdata(y, axis=1))


def _kendall_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall tau-b of each row pair, from the pairwise sign matrices (chunked over rows)."""
    rows, n = x.shape
    # signs of differences of doubled average ranks (whole numbers) equal those of the values,
    # and small integers make the n x n sign matrices cheap
    rank_type = np.int16 if 2 * n < np.iinfo(np.int16).max else np.int32
    rx = (2 * rankdata(x, axis=1)).astype(rank_type)
    ry = (2 * rankdata(y, axis=1)).astype(rank_type)
    chunk = max(1, _KENDALL_CHUNK // (n * n))
    out = np.empty(rows)
    for start in range(0, rows, chunk):
        # full sign matrices count every pair twice; the factor cancels in the ratio
        sx = np.sign(rx[start : start + chunk, :, None] - rx[start : start + chunk, None, :]).astype(np.int8)
        sy = np.sign(ry[start : start + chunk, :, None] - ry[start : start + chunk, None, :]).astype(np.int8)
        s = (sx * sy).reshape(len(sx), -1).sum(axis=1, dtype=np.int64)
        tx = np.count_nonzero(sx, axis=(1, 2))
        ty = np.count_nonzero(sy, axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            tau = s / np.sqrt(tx.astype(np.float64) * ty)
        tau[(tx == 0) | (ty == 0)] = np.nan
        out[start : start + chunk] = tau
    return np.clip(out, -1.0, 1.0)


_ROWS = {"pearson": _pearson_rows, "spearman": _spearman_rows, "kendall": _kendall_rows}


def correlation(
    x, y, method: str = "spearman", *, seed: int = 0, n_bootstrap: int = 1000, n_perm: int = 1000
) -> Correlation:
    """One coefficient (`pearson`, `spearman` or `kendall`) of x and y with its interval and p-value.

    See the module docstring for the formulas, the percentile bootstrap over pairs and the
    permutation p-value (count + 1) / (n_perm + 1). `n_bootstrap = 0` or `n_perm = 0` skip them.
    """
    return correlations(x, y, methods=(method,), seed=seed, n_bootstrap=n_bootstrap, n_perm=n_perm)[method]


def correlations(
    x,
    y,
    *,
    methods: tuple[str, ...] = METHODS,
    seed: int = 0,
    n_bootstrap: int = 1000,
    n_perm: int = 1000,
) -> dict[str, Correlation]:
    """Every coefficient in `methods` on the same bootstrap resamples and the same permutations."""
    unknown = [m for m in methods if m not in _ROWS]
    if unknown:
        raise InputError(f"unknown correlation method {unknown[0]!r}; choose from {', '.join(METHODS)}.")
    check_resample_counts(n_bootstrap, n_perm)
    check_seed(seed, name="seed")
    x, y = as_paired(x, y)
    n = len(x)
    if n < MIN_PAIRS:
        return {m: Correlation(m, None, None, None, n) for m in methods}
    observed = {m: _ROWS[m](x[None], y[None])[0] for m in methods}
    if not all(np.isfinite(v) for v in observed.values()):
        return {m: Correlation(m, None, None, None, n) for m in methods}
    rng = np.random.default_rng(seed)
    boot_index = rng.integers(0, n, size=(n_bootstrap, n))
    perm_index = rng.permuted(np.broadcast_to(np.arange(n), (n_perm, n)), axis=1)
    out = {}
    for m in methods:
        interval = None
        if n_bootstrap:
            boot = _ROWS[m](x[boot_index], y[boot_index])
            boot = boot[np.isfinite(boot)]
            if len(boot):
                low, high = np.quantile(boot, [0.025, 0.975])
                interval = (float(low), float(high))
        p_value = None
        if n_perm:
            null = _ROWS[m](np.broadcast_to(x, (n_perm, n)), y[perm_index])
            # relative tolerance: a permutation that reproduces the observed pairing counts as extreme
            extreme = np.abs(null) >= abs(observed[m]) * (1 - 1e-12)
            p_value = float((np.count_nonzero(extreme) + 1) / (n_perm + 1))
        out[m] = Correlation(m, float(observed[m]), interval, p_value, n)
    return out


def linear_fit(x, y, *, grid_points: int = 50, seed: int = 0, n_bootstrap: int = 1000) -> LinearFit | None:
    """Least-squares line of y on x with a pointwise 95 % bootstrap percentile band (pairs resampled).

    The band at each grid point is the 2.5 % and 97.5 % quantiles of the resampled lines'
    values there. None when fewer than 3 finite pairs remain or x is constant.
    """
    check_resample_counts(n_bootstrap, 0)
    x, y = as_paired(x, y)
    if len(x) < MIN_PAIRS or np.ptp(x) == 0:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    grid = np.linspace(x.min(), x.max(), grid_points)
    if n_bootstrap == 0:
        line = intercept + slope * grid
        return LinearFit(float(slope), float(intercept), grid, line, line)
    index = np.random.default_rng(seed).integers(0, len(x), size=(n_bootstrap, len(x)))
    bx, by = x[index], y[index]
    bxc = bx - bx.mean(axis=1, keepdims=True)
    sxx = np.einsum("ij,ij->i", bxc, bxc)
    ok = sxx > 0
    b_slope = np.einsum("ij,ij->i", bxc, by)[ok] / sxx[ok]
    b_intercept = by.mean(axis=1)[ok] - b_slope * bx.mean(axis=1)[ok]
    lines = b_intercept[:, None] + b_slope[:, None] * grid[None, :]
    low, high = np.quantile(lines, [0.025, 0.975], axis=0)
    return LinearFit(float(slope), float(intercept), grid, low, high)
