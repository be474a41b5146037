"""Correlations with bootstrap intervals and permutation p-values: against scipy.stats and known cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from manifold_probe.errors import InputError
from manifold_probe.report.statistics import METHODS, correlation, correlations, linear_fit

SCIPY = {
    "pearson": lambda x, y: stats.pearsonr(x, y).statistic,
    "spearman": lambda x, y: stats.spearmanr(x, y).statistic,
    "kendall": lambda x, y: stats.kendalltau(x, y).statistic,  # tau-b, the default
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", ["continuous", "ties", "small"])
def test_values_match_scipy(method, case):
    rng = np.random.default_rng(3)
    if case == "continuous":
        x = rng.normal(size=60)
        y = 0.5 * x + rng.normal(size=60)
    elif case == "ties":  # many ties in both variables: average ranks and tau-b's tie correction
        x = rng.integers(0, 5, size=50).astype(float)
        y = x + rng.integers(0, 3, size=50)
    else:
        x, y = np.array([1.0, 2.0, 4.0]), np.array([0.3, 0.1, 0.9])
    result = correlation(x, y, method, n_bootstrap=50, n_perm=50)
    assert result.value == pytest.approx(SCIPY[method](x, y), abs=1e-12)
    assert result.n == len(x)


@pytest.mark.parametrize("method", METHODS)
def test_nan_pairs_are_dropped(method):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=30), rng.normal(size=30)
    x[[2, 7]] = np.nan
    y[11] = np.inf
    keep = np.isfinite(x) & np.isfinite(y)
    result = correlation(x, y, method, n_bootstrap=20, n_perm=20)
    assert result.n == 27
    assert result.value == pytest.approx(SCIPY[method](x[keep], y[keep]), abs=1e-12)


def test_perfect_monotone_relation_gives_one_with_a_degenerate_interval():
    x = np.arange(12.0)
    result = correlations(x, np.exp(x), seed=0)
    assert result["spearman"].value == pytest.approx(1.0)
    assert result["kendall"].value == pytest.approx(1.0)
    assert result["pearson"].value < 1.0  # exp is monotone, not linear
    for method in ("spearman", "kendall"):
        assert result[method].interval == pytest.approx((1.0, 1.0))
        assert result[method].p_value < 0.01
    decreasing = correlation(x, -(x**3), "spearman")
    assert decreasing.value == pytest.approx(-1.0)


def test_independent_noise_is_mostly_not_significant():
    rejections = {m: 0 for m in METHODS}
    for draw in range(20):
        rng = np.random.default_rng(100 + draw)
        x, y = rng.normal(size=25), rng.normal(size=25)
        for method, result in correlations(x, y, seed=draw, n_bootstrap=0, n_perm=400).items():
            rejections[method] += result.p_value <= 0.05
    for method, count in rejections.items():
        assert count <= 4, f"{method} rejected the null in {count} of 20 independent draws"


def test_strong_linear_relation_is_significant_and_interval_covers_the_value():
    rng = np.random.default_rng(1)
    x = rng.normal(size=30)
    y = 2 * x + 0.3 * rng.normal(size=30)
    for method, result in correlations(x, y, seed=0).items():
        assert result.p_value < 0.01, method
        assert result.p_value == pytest.approx(1 / 1001)  # no permutation reaches it: (0 + 1) / (n + 1)
        low, high = result.interval
        assert low <= result.value <= high and low > 0.5, method


def test_reproducible_with_a_seed_and_varies_with_it():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=20), rng.normal(size=20)
    a = correlations(x, y, seed=5, n_bootstrap=200, n_perm=200)
    b = correlations(x, y, seed=5, n_bootstrap=200, n_perm=200)
    c = correlations(x, y, seed=6, n_bootstrap=200, n_perm=200)
    assert a == b
    assert a["pearson"].interval != c["pearson"].interval


def test_too_few_pairs_or_constant_is_insufficient_not_a_number():
    few = correlations([1.0, 2.0, np.nan], [3.0, 4.0, 5.0])
    for result in few.values():
        assert result.insufficient and result.n == 2
        assert result.to_dict() == {"value": None, "interval": None, "p_value": None, "n": 2, "warning": None}
    constant = correlations([1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0])
    assert all(result.insufficient for result in constant.values())


def test_bad_arguments_raise_input_error():
    with pytest.raises(InputError):
        correlation([1, 2, 3], [1, 2], "pearson")
    with pytest.raises(InputError):
        correlation([1, 2, 3], [1, 2, 3], "distance")
    with pytest.raises(InputError):
        correlation([1, 2, 3], [1, 2, 3], "pearson", n_bootstrap=-1)


def test_linear_fit_matches_polyfit_and_its_band_brackets_the_line():
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, size=40)
    y = 3 * x + 1 + 0.2 * rng.normal(size=40)
    fit = linear_fit(x, y, seed=0, n_bootstrap=300)
    slope, intercept = np.polyfit(x, y, 1)
    assert fit.slope == pytest.approx(slope) and fit.intercept == pytest.approx(intercept)
    line = fit.intercept + fit.slope * fit.grid
    assert np.all(fit.low <= line + 1e-9) and np.all(line <= fit.high + 1e-9)
    assert np.all(fit.high - fit.low < 0.5)
    assert linear_fit([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None
