"""Exact tests and intervals with the training run as the unit, Holm's correction, and the verdict rule.

Every claim reduces its evidence to numbers that are independent across training runs (one
number per run, or one (x, y) pair per run), so every p-value here is exact for independent
runs and no resampling of dependent units enters an interval.

- `location`: the mean of per-run effects (a paired difference, a within-run change). Test: the
  sign-flip (randomisation) test of Fisher (1935) with statistic sum(x_i - mu): under the null
  that every x_i - mu is symmetric about 0, each of the 2^n sign patterns is equally likely,
  so p = #{s : |sum s_i (x_i - mu)| >= |sum (x_i - mu)|} / 2^n exactly. Interval: Hartigan's
  (1969, "Using subsample values as typical values", JASA 64) subset means: the 2^n - 1 means
  of the non-empty subsets cut the line into 2^n pieces of equal probability 1/2^n under a
  continuous symmetric distribution, so [M_(k), M_(2^n - k)] with k = floor(2^n * a / 2) holds
  the centre with probability 1 - 2k / 2^n >= 1 - a, and its ends are where the sign-flip test
  changes its decision. Five runs give no finite 95 % interval (2^5 = 32 < 40): a claim needs
  six or more.
- `rank_correlation`: Spearman's rho over runs. Test: the permutation test (exact enumeration of
  the n! pairings up to n = 8, else `N_PERMUTATIONS` seeded random pairings with the add-one
  p = (b + 1) / (B + 1) of Phipson & Smyth 2010, which is never below the exact level).
  Interval: Fisher's z with the variance (1 + rho^2 / 2) / (n - 3) of Bonett & Wright (2000,
  "Sample size requirements for estimating Pearson, Kendall and Spearman correlations",
  Psychometrika 65): tanh(atanh(rho) +- z_(1-a/2) sqrt((1 + rho^2/2) / (n - 3))).
- `holm`: Holm's (1979) step-down adjustment across a family of claims: sort p ascending,
  p_adj(i) = max_{j <= i} min(1, (m - j + 1) p_(j)); it controls the family-wise error rate
  at the nominal level for any dependence between the tests.
- `verdict`: the four outcomes, decided in this order (docs/claims.md): *equivalent to no
  effect* when the (1 - 2 alpha) interval lies inside +-margin (two one-sided tests, Schuirmann
  1987); *supported* when the Holm-adjusted p is below alpha and the effect has the predicted
  sign; *contradicted* when it is below alpha with the other sign; *inconclusive* otherwise.
  A claim that predicts no effect (`none`) is *supported* by equivalence and *contradicted* by
  a significant effect of either sign. `robustness` compares the verdicts of several designs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import permutations

import numpy as np
from scipy import stats

ALPHA = 0.05
EXACT_SIGNS = 16
"""Up to this many runs the sign-flip test and subset means enumerate all 2^n patterns."""
EXACT_PERMUTATIONS = 8
"""Up to this many runs the permutation test enumerates all n! pairings."""
N_PERMUTATIONS = 9999
VERDICTS = ("equivalent to no effect", "supported", "contradicted", "inconclusive")
KINDS = ("increase", "decrease", "none")


@dataclass(frozen=True)
class Inference:
    """An effect over runs: its value, 95 % interval, (1 - 2 alpha) interval for equivalence,
    two-sided exact p-value and the number of runs. Intervals are None where the runs cannot
    give a finite one (fewer than six for `location`, fewer than four for `rank_correlation`)."""

    value: float
    interval: tuple[float, float] | None
    equivalence_interval: tuple[float, float] | None
    p_value: float
    n: int
    method: str


def _sign_patterns(n: int, seed: int) -> np.ndarray:
    """All 2^n sign patterns (n <= EXACT_SIGNS), else 2^EXACT_SIGNS seeded random ones, as +-1 rows."""
    if n <= EXACT_SIGNS:
        bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
    else:
        bits = np.random.default_rng(seed).integers(0, 2, size=(2**EXACT_SIGNS, n))
    return 1 - 2 * bits


def _subset_interval(means: np.ndarray, level: float) -> tuple[float, float] | None:
    """Hartigan's interval from the sorted subset means (the empty subset excluded): the k-th
    smallest and k-th largest with k = floor(2^n (1 - level) / 2); None when k = 0."""
    pieces = len(means) + 1
    k = math.floor(pieces * (1.0 - level) / 2 + 1e-9)
    if k == 0:
        return None
    return float(means[k - 1]), float(means[len(means) - k])


def location(values, *, seed: int = 0, alpha: float = ALPHA) -> Inference:
    """The mean of independent per-run effects with the exact sign-flip p-value and Hartigan's
    subset-mean intervals (module docstring). Needs two or more finite values."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n < 2:
        raise ValueError(f"a location needs two or more runs, got {n}")
    signs = _sign_patterns(n, seed)
    total = np.abs(x.sum())
    flipped = np.abs(signs @ x)
    p = float(np.mean(flipped >= total * (1 - 1e-12)))
    chosen = signs == -1  # a pattern's flipped runs form its subset
    sizes = chosen.sum(axis=1)
    keep = sizes > 0
    means = np.sort((chosen[keep] @ x) / sizes[keep])
    return Inference(
        value=float(x.mean()),
        interval=_subset_interval(means, 1 - alpha),
        equivalence_interval=_subset_interval(means, 1 - 2 * alpha),
        p_value=p,
        n=n,
        method="sign-flip test over runs, Hartigan subset-mean interval",
    )


def _spearman_rows(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    rx = stats.rankdata(x)
    ry = stats.rankdata(ys, axis=-1)
    rx = rx - rx.mean()
    ry = ry - ry.mean(axis=-1, keepdims=True)
    return (ry @ rx) / np.sqrt((rx @ rx) * np.einsum("ij,ij->i", ry, ry))


def fisher_interval(rho: float, n: int, level: float) -> tuple[float, float] | None:
    """Bonett & Wright's Fisher-z interval for Spearman's rho (module docstring); None for n < 4."""
    if n < 4:
        return None
    z = math.atanh(float(np.clip(rho, -1 + 1e-12, 1 - 1e-12)))
    half = stats.norm.ppf(1 - (1 - level) / 2) * math.sqrt((1 + rho**2 / 2) / (n - 3))
    return math.tanh(z - half), math.tanh(z + half)


def rank_correlation(
    x, y, *, seed: int = 0, alpha: float = ALPHA, n_permutations: int = N_PERMUTATIONS
) -> Inference:
    """Spearman's rho over independent runs with its exact (or add-one Monte Carlo) permutation
    p-value and the Fisher-z interval (module docstring). Needs three or more finite pairs and
    neither variable constant."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    order = np.lexsort((y[ok], x[ok]))  # the same pairs in any order give the same Monte Carlo p
    x, y = x[ok][order], y[ok][order]
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        raise ValueError(f"a rank correlation needs three or more pairs and two varying variables, got {n}")
    rho = float(_spearman_rows(x, y[None, :])[0])
    if n <= EXACT_PERMUTATIONS:
        null = _spearman_rows(x, y[np.array(list(permutations(range(n))))])
        p = float(np.mean(np.abs(null) >= abs(rho) - 1e-12))
        method = "exact permutation test over runs"
    else:
        rng = np.random.default_rng(seed)
        shuffled = rng.permuted(np.broadcast_to(y, (n_permutations, n)), axis=1)
        null = _spearman_rows(x, shuffled)
        p = float((np.sum(np.abs(null) >= abs(rho) - 1e-12) + 1) / (n_permutations + 1))
        method = f"permutation test over runs ({n_permutations} seeded pairings, add-one p)"
    return Inference(
        value=rho,
        interval=fisher_interval(rho, n, 1 - alpha),
        equivalence_interval=fisher_interval(rho, n, 1 - 2 * alpha),
        p_value=p,
        n=n,
        method=method + ", Bonett-Wright Fisher-z interval",
    )


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (module docstring), in the input order; NaN stays NaN
    and does not count towards m."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    present = np.flatnonzero(np.isfinite(p))
    m = len(present)
    order = present[np.argsort(p[present], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def verdict(
    kind: str,
    value: float | None,
    equivalence_interval: tuple[float, float] | None,
    p_adjusted: float | None,
    margin: float,
    *,
    alpha: float = ALPHA,
) -> str:
    """One of VERDICTS for a claim of `kind` (increase, decrease, none), in the order of the
    module docstring: equivalence first (interval inside +-margin), then a significant effect."""
    if kind not in KINDS:
        raise ValueError(f"unknown claim kind {kind!r}")
    equivalent = equivalence_interval is not None and (
        -margin <= equivalence_interval[0] and equivalence_interval[1] <= margin
    )
    significant = value is not None and p_adjusted is not None and p_adjusted < alpha and value != 0
    if kind == "none":
        if equivalent:
            return "supported"
        return "contradicted" if significant else "inconclusive"
    if equivalent:
        return "equivalent to no effect"
    if significant:
        return "supported" if (value > 0) == (kind == "increase") else "contradicted"
    return "inconclusive"


def robustness(verdicts: dict[str, str]) -> str:
    """ "robust" when every design with a verdict gave the same one, "not robust" when two
    decided differently, "untested" when fewer than two designs were run."""
    decided = set(verdicts.values())
    if len(verdicts) < 2:
        return "untested"
    return "robust" if len(decided) == 1 else "not robust"
