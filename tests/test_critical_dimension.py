"""The success-curve fit and the reading of d*, against closed forms and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq

from manifold_probe.errors import InputError
from manifold_probe.probes.critical_dimension import (
    SuccessCurve,
    critical_dimension,
    default_dims,
    empirical_crossing,
    fit_success_curve,
)


def sigmoid(dims, a, b, c, s):
    return a + b / (1 + np.exp(-(np.log(dims) - np.log(c)) / s))


def test_crossing_matches_a_numerical_root():
    curve = SuccessCurve(lower=0.1, height=0.8, centre=30.0, width=0.4)
    root = brentq(lambda d: curve([d])[0] - 0.5, 1.0, 1e4)
    assert curve.crossing() == pytest.approx(root, rel=1e-10)
    assert SuccessCurve(0.0, 1.0, 30.0, 0.4).crossing() == pytest.approx(30.0)  # symmetric
    assert SuccessCurve(0.0, 0.45, 30.0, 0.4).crossing() is None  # never reaches 0.5
    assert SuccessCurve(0.6, 0.3, 30.0, 0.4).crossing() is None  # always above 0.5


def test_fit_recovers_a_known_sigmoid_from_noise_free_fractions():
    dims = np.array(default_dims(512))
    planes = 10**6
    truth = dict(a=0.05, b=0.9, c=40.0, s=0.35)
    hits = np.round(sigmoid(dims, **truth) * planes)
    curve = fit_success_curve(dims, hits, np.full(len(dims), planes))
    assert curve.lower == pytest.approx(0.05, abs=1e-3)
    assert curve.height == pytest.approx(0.9, abs=1e-3)
    assert curve.centre == pytest.approx(40.0, rel=1e-3)
    assert curve.width == pytest.approx(0.35, rel=1e-2)
    result = critical_dimension(dims, hits, [planes] * len(dims), input_dim=512, n_bootstrap=20)
    expected = SuccessCurve(0.05, 0.9, 40.0, 0.35).crossing()
    assert result.status == "crossed"
    assert result.critical_dim == pytest.approx(expected, rel=1e-3)
    assert result.manifold_dim == pytest.approx(512 - expected, rel=1e-3)


def test_empirical_crossing_interpolates_in_log_d():
    assert empirical_crossing([1, 10, 100], [0.0, 0.25, 0.75]) == pytest.approx(math.sqrt(1000))
    assert empirical_crossing([2, 8], [0.0, 1.0]) == pytest.approx(4.0)
    assert empirical_crossing([2, 8, 32], [0.2, 0.5, 1.0]) == pytest.approx(8.0)
    # the first upward crossing, not a later one after a dip
    assert empirical_crossing([1, 2, 4, 8], [0.0, 0.6, 0.2, 1.0]) == pytest.approx(
        math.exp(math.log(2) * 5 / 6)
    )
    assert empirical_crossing([1, 2], [0.5, 1.0]) is None
    assert empirical_crossing([1, 2], [0.0, 0.4]) is None


def test_curves_that_do_not_cross_give_no_number():
    dims = default_dims(64)
    planes = [5] * len(dims)
    never = critical_dimension(dims, [0] * len(dims), planes, input_dim=64, n_bootstrap=20)
    assert never.status == "above_range"
    assert never.critical_dim is None and never.manifold_dim is None
    assert never.empirical_dim is None
    assert never.interval == (None, None)
    always = critical_dimension(dims, [5] * len(dims), planes, input_dim=64, n_bootstrap=20)
    assert always.status == "below_range"
    assert always.critical_dim is None and always.manifold_dim is None
    low_plateau = [0] * 10 + [2, 2, 2, 2]  # 40 % at most: never crosses
    plateau = critical_dimension(dims, low_plateau, planes, input_dim=64, n_bootstrap=50)
    assert plateau.status == "above_range" and plateau.critical_dim is None
    assert plateau.interval[1] is None  # some replicates cross, so a lower end exists


def test_a_step_curve_gets_an_interval_spanning_the_bracketing_dims():
    dims = default_dims(64)  # ..., 34, 46, 64
    hits = [0] * (len(dims) - 2) + [5, 5]
    result = critical_dimension(dims, hits, [5] * len(dims), input_dim=64, n_bootstrap=50)
    assert result.status == "crossed"
    assert 34 <= result.critical_dim <= 46
    assert result.interval == (34.0, 46.0)
    assert result.manifold_dim_interval == (64 - 46.0, 64 - 34.0)


def test_bootstrap_interval_is_seeded_contains_the_estimate_and_narrows_with_more_planes():
    dims = np.array(default_dims(256))
    rng = np.random.default_rng(0)
    p = sigmoid(dims, 0.0, 1.0, 30.0, 0.5)
    widths = []
    for planes in (10, 160):
        hits = rng.binomial(planes, p)
        result = critical_dimension(dims, hits, [planes] * len(dims), input_dim=256, seed=1, n_bootstrap=100)
        again = critical_dimension(dims, hits, [planes] * len(dims), input_dim=256, seed=1, n_bootstrap=100)
        assert result == again
        low, high = result.interval
        assert low <= result.critical_dim <= high
        widths.append(math.log(high / low))
    assert widths[1] < widths[0] / 2


@pytest.mark.slow
def test_bootstrap_interval_covers_the_true_crossing_most_of_the_time():
    dims = np.array(default_dims(256))
    truth = SuccessCurve(0.0, 1.0, 30.0, 0.5)
    rng = np.random.default_rng(2)
    covered = 0
    trials = 60
    for trial in range(trials):
        hits = rng.binomial(20, truth(dims))
        low, high = critical_dimension(dims, hits, [20] * len(dims), input_dim=256, seed=trial).interval
        covered += (low or 0) <= 30.0 <= (high or math.inf)
    assert covered >= 0.85 * trials


def test_few_dims_fit_only_centre_and_width():
    curve = fit_success_curve([4, 8, 16], [0, 2, 4], [4, 4, 4])
    assert (curve.lower, curve.height) == (0.0, 1.0)
    assert curve.crossing() == pytest.approx(8.0, rel=1e-3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=14))
def test_any_hit_counts_give_a_consistent_reading(hits):
    dims = default_dims(200)[: len(hits)]
    result = critical_dimension(dims, hits, [6] * len(hits), input_dim=200, n_bootstrap=5)
    fractions = np.array(hits) / 6
    if result.status == "crossed":
        assert dims[0] <= result.critical_dim <= dims[-1]
        assert result.manifold_dim == pytest.approx(200 - result.critical_dim)
    else:
        assert result.critical_dim is None
    if fractions.max() < 0.5:
        assert result.status == "above_range"
    if fractions[0] >= 0.5:
        assert result.status == "below_range"
    low, high = result.interval
    if low is not None and high is not None:
        assert low <= high


def test_default_dims():
    big = default_dims(3072)
    assert big[0] == 1 and big[-1] == 3072 and len(big) == 14
    assert np.all(np.diff(big) > 0)
    np.testing.assert_allclose(big[6:], np.geomspace(1, 3072, 14)[6:], rtol=0.02)
    assert default_dims(64) == [1, 2, 3, 4, 5, 6, 7, 9, 13, 18, 25, 34, 46, 64]
    assert default_dims(10) == list(range(1, 11))
    assert default_dims(1) == [1]


@pytest.mark.parametrize(
    ("dims", "hits", "planes"),
    [
        ([], [], []),
        ([4, 2], [0, 1], [1, 1]),
        ([2, 4], [0, 3], [1, 1]),
        ([0, 4], [0, 1], [1, 1]),
        ([2, 4], [0], [1, 1]),
    ],
)
def test_bad_curves_raise_input_error(dims, hits, planes):
    with pytest.raises(InputError):
        critical_dimension(dims, hits, planes, input_dim=64)


def test_dims_beyond_the_input_dimension_raise():
    with pytest.raises(InputError, match="exceeds the input dimension"):
        critical_dimension([2, 100], [0, 1], [1, 1], input_dim=64)


def test_a_crossing_at_the_last_dimension_stays_inside_the_range():
    """hits [0, 0, 3] of 6 cross 0.5 exactly at d = 3: exp(log(3)) must not round past 3."""
    result = critical_dimension([1, 2, 3], [0, 0, 3], [6, 6, 6], input_dim=200, n_bootstrap=5)
    assert result.status == "crossed"
    assert 1 <= result.critical_dim <= 3
