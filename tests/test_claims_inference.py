"""The claims' statistics against known answers, and by simulation: coverage of the nominal-95 %
intervals within 92-98 % and a false-positive rate under no effect at most the nominal level.

Simulation bounds: with R replicates a rate's standard error is sqrt(q (1 - q) / R); a rate
"at most nominal" is checked as at most alpha + 2.6 standard errors (a one-sided 99.5 % bound on
the replicates' own noise), so a test that doubles the level fails. Seeds are fixed: every run
of a test draws the same replicates.
"""

import math
from itertools import combinations, permutations, product

import numpy as np
import pytest
from scipy.stats import spearmanr

from manifold_probe.study.claims.inference import (
    VERDICTS,
    holm,
    location,
    rank_correlation,
    robustness,
    verdict,
)

ALPHA = 0.05


def _at_most_nominal(rate: float, replicates: int, level: float = ALPHA) -> bool:
    return rate <= level + 2.6 * math.sqrt(level * (1 - level) / replicates)


# --- known answers ------------------------------------------------------------------------


def test_sign_flip_p_and_subset_interval_equal_brute_force():
    x = np.array([0.8, -0.3, 1.1, 0.4, 2.0, -0.1, 0.6])
    found = location(x)
    patterns = list(product((1, -1), repeat=len(x)))
    brute_p = np.mean([abs(np.dot(s, x)) >= abs(x.sum()) - 1e-12 for s in patterns])
    means = sorted(np.mean(c) for k in range(1, len(x) + 1) for c in combinations(x, k))
    k = math.floor(2 ** len(x) * 0.025)  # 3 of 128
    assert found.value == pytest.approx(x.mean())
    assert found.p_value == pytest.approx(brute_p)
    assert found.interval == pytest.approx((means[k - 1], means[-k]))
    k90 = math.floor(2 ** len(x) * 0.05)
    assert found.equivalence_interval == pytest.approx((means[k90 - 1], means[-k90]))
    assert found.n == 7


def test_six_runs_of_one_sign_give_the_smallest_p_and_the_range_as_interval():
    x = [0.2, 0.5, 0.1, 0.9, 0.3, 0.4]
    found = location(x)
    assert found.p_value == pytest.approx(2 / 64)
    assert found.interval == (0.1, 0.9)  # k = 1: the smallest and largest single run


def test_five_runs_cannot_give_a_95_percent_interval():
    found = location([0.2, 0.5, 0.1, 0.9, 0.3])
    assert found.interval is None and found.p_value == pytest.approx(2 / 32)
    assert found.equivalence_interval is not None  # 90 %: k = floor(32 * 0.05) = 1


def test_rank_correlation_equals_scipy_and_exact_enumeration():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    y = np.array([0.3, 0.1, 0.5, 0.4, 0.9, 0.8])
    found = rank_correlation(x, y)
    rho = spearmanr(x, y).statistic
    null = [spearmanr(x, y[list(p)]).statistic for p in permutations(range(6))]
    assert found.value == pytest.approx(rho)
    assert found.p_value == pytest.approx(np.mean(np.abs(null) >= abs(rho) - 1e-12))
    z, half = math.atanh(rho), 1.959964 * math.sqrt((1 + rho**2 / 2) / 3)
    assert found.interval == pytest.approx((math.tanh(z - half), math.tanh(z + half)), rel=1e-5)
    monotone = rank_correlation([1, 2, 3, 4], [2, 5, 7, 9])
    assert monotone.value == pytest.approx(1.0) and monotone.p_value == pytest.approx(2 / 24)


def test_monte_carlo_permutation_p_is_never_below_one_over_b_plus_one():
    x = np.arange(12.0)
    found = rank_correlation(x, x**2, n_permutations=999)
    assert found.value == pytest.approx(1.0) and found.p_value == pytest.approx(1 / 1000)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="two or more runs"):
        location([1.0, np.nan])
    with pytest.raises(ValueError, match="two varying"):
        rank_correlation([1, 1, 1, 1], [1, 2, 3, 4])


def test_holm_adjusts_a_hand_computed_example():
    adjusted = holm([0.01, 0.04, 0.03, 0.005, np.nan])
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> running max
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert np.isnan(adjusted[4])


@pytest.mark.parametrize(
    "kind, value, interval, p, margin, expected",
    [
        ("increase", 0.02, (-0.05, 0.08), 0.5, 0.1, "equivalent to no effect"),
        ("increase", 0.05, (0.01, 0.09), 0.001, 0.1, "equivalent to no effect"),  # significant but tiny
        ("increase", 0.5, (0.2, 0.8), 0.01, 0.1, "supported"),
        ("decrease", -0.5, (-0.8, -0.2), 0.01, 0.1, "supported"),
        ("increase", -0.5, (-0.8, -0.2), 0.01, 0.1, "contradicted"),
        ("decrease", 0.5, (0.2, 0.8), 0.01, 0.1, "contradicted"),
        ("increase", 0.5, (0.2, 0.8), 0.2, 0.1, "inconclusive"),  # not significant after Holm
        ("increase", 0.3, (-0.2, 0.8), 0.4, 0.1, "inconclusive"),
        ("increase", 0.3, None, None, 0.1, "inconclusive"),
        ("none", 0.02, (-0.05, 0.08), 0.5, 0.1, "supported"),
        ("none", 0.5, (0.2, 0.8), 0.01, 0.1, "contradicted"),
        ("none", -0.5, (-0.8, -0.2), 0.01, 0.1, "contradicted"),
        ("none", 0.05, (-0.2, 0.3), 0.5, 0.1, "inconclusive"),
    ],
)
def test_verdict_rule_on_constructed_intervals(kind, value, interval, p, margin, expected):
    assert verdict(kind, value, interval, p, margin) == expected
    assert expected in VERDICTS


def test_verdict_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown claim kind"):
        verdict("up", 1.0, (0.5, 1.5), 0.01, 0.1)


def test_robustness_of_a_verdict_across_designs():
    assert robustness({"epoch 40": "supported", "epoch 24": "supported"}) == "robust"
    assert robustness({"epoch 40": "supported", "epoch 24": "inconclusive"}) == "not robust"
    assert robustness({"epoch 40": "supported"}) == "untested"


# --- simulations --------------------------------------------------------------------------


@pytest.mark.parametrize("n, noise", [(6, "normal"), (8, "laplace"), (10, "t3")])
def test_location_interval_covers_and_the_test_holds_its_level(n, noise):
    rng = np.random.default_rng(n)
    replicates = 3000
    draw = {
        "normal": lambda: rng.normal(size=n),
        "laplace": lambda: rng.laplace(size=n),
        "t3": lambda: rng.standard_t(3, size=n),
    }[noise]
    covered = rejected = 0
    for _ in range(replicates):
        x = draw() + 1.7  # true centre 1.7
        found = location(x)
        covered += found.interval[0] <= 1.7 <= found.interval[1]
        rejected += location(x - 1.7).p_value < ALPHA  # no effect
    assert 0.92 <= covered / replicates <= 0.98
    assert _at_most_nominal(rejected / replicates, replicates)


@pytest.mark.parametrize("n", [10, 20])
def test_rank_correlation_interval_covers(n):
    rng = np.random.default_rng(n)
    rho = 0.5
    truth = 6 / math.pi * math.asin(rho / 2)  # Spearman's rho of a bivariate normal
    replicates = 2000
    covered = 0
    for _ in range(replicates):
        z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
        interval = rank_correlation(z[:, 0], z[:, 1], n_permutations=9).interval
        covered += interval[0] <= truth <= interval[1]
    assert 0.92 <= covered / replicates <= 0.98


@pytest.mark.parametrize("n, n_permutations", [(6, None), (12, 199)])
def test_rank_correlation_test_holds_its_level_under_no_effect(n, n_permutations):
    rng = np.random.default_rng(100 + n)
    replicates = 2000
    options = {} if n_permutations is None else {"n_permutations": n_permutations}
    x = np.arange(n, dtype=float)
    rejected = sum(
        rank_correlation(x, rng.normal(size=n), **options).p_value < ALPHA for _ in range(replicates)
    )
    assert _at_most_nominal(rejected / replicates, replicates)


def test_the_verdict_says_supported_under_no_effect_at_most_half_the_level():
    """A directional claim on runs with no effect: 'supported' only on the predicted side."""
    rng = np.random.default_rng(5)
    replicates = 3000
    supported = 0
    for _ in range(replicates):
        found = location(rng.normal(size=8))
        supported += (
            verdict("increase", found.value, found.equivalence_interval, found.p_value, 0.1) == "supported"
        )
    assert _at_most_nominal(supported / replicates, replicates, ALPHA / 2)


def test_holm_keeps_the_family_wise_error_rate_over_claims_with_no_effect():
    rng = np.random.default_rng(6)
    replicates, claims = 1500, 6
    any_rejected = 0
    for _ in range(replicates):
        p = [location(rng.normal(size=8)).p_value for _ in range(claims)]
        any_rejected += bool(np.any(holm(p) < ALPHA))
    assert _at_most_nominal(any_rejected / replicates, replicates)
    # the same claims without a correction reject far more often: the check can fail
    unadjusted = np.mean([np.any([location(rng.normal(size=8)).p_value < ALPHA for _ in range(claims)])
                          for _ in range(300)])  # fmt: skip
    assert unadjusted > 2 * ALPHA


def test_rank_correlation_does_not_depend_on_the_order_of_the_runs():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=14), rng.normal(size=14)
    order = rng.permutation(14)
    first = rank_correlation(x, y, n_permutations=499)
    again = rank_correlation(x[order], y[order], n_permutations=499)
    assert (first.value, first.p_value, *first.interval) == pytest.approx(
        (again.value, again.p_value, *again.interval)
    )
