"""The curvature_sff interval against the truth over fresh samples, and memory-bounded runs.

Coverage: over repeated fresh samples of a manifold of known ||II|| (benchmarks/
curvature_accuracy.py draws them), the 95 % interval (block bootstrap widened by the bias
allowance) holds the truth in at least the stated share of draws. Small N here; the big case
is marked slow."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from manifold_probe.geometry.curvature import BIAS_ALLOWANCE, curvature
from manifold_probe.geometry.neighbours import nearest_neighbours
from manifold_probe.geometry.tangent_dimension import local_spectrum

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "curvature_accuracy.py"
_spec = importlib.util.spec_from_file_location("curvature_accuracy", _SCRIPT)
acc = importlib.util.module_from_spec(_spec)
sys.modules["curvature_accuracy"] = acc
_spec.loader.exec_module(acc)


def test_interval_covers_the_truth_over_fresh_samples():
    """Clifford torus in R^4, 0.5 % noise, N = 600, 10 fresh samples: the estimate is biased
    (+1-2 %) by more than the bootstrap's half-width, so the bootstrap alone misses; the
    widened interval holds ||II|| = 1 in at least 8 of 10 draws."""
    result = acc.coverage("clifford", 600, None, 0.005, draws=10, n_bootstrap=100)
    assert result.measured == 10
    assert result.covered >= 8
    assert result.covered_without_bias < result.covered  # the allowance is what covers the bias
    assert result.allowance > 0


@pytest.mark.slow
@pytest.mark.parametrize(("name", "ambient", "noise"), [("torus", None, 0.0), ("clifford", 50, 0.01)])
def test_interval_coverage_at_n_2000(name, ambient, noise):
    """40 fresh samples at N = 2000: the 95 % interval holds the truth in >= 85 % of them."""
    result = acc.coverage(name, 2000, ambient, noise, draws=40, n_bootstrap=200)
    assert result.measured >= 36
    assert result.covered >= 0.85 * result.measured


def test_interval_details_say_how_it_was_made():
    drawn = acc.sample("clifford", 800, None, 0.0, seed=1)
    result = curvature(drawn.points, 2, n_bootstrap=50)
    details = result.details()
    assert details["interval_bias_method"] == BIAS_ALLOWANCE
    low, high = result.intervals["curvature_sff"]
    # widened by the allowance on both sides of the bootstrap interval, which holds the estimate
    assert low <= result.curvature_sff - result.bias_allowance
    assert high >= result.curvature_sff + result.bias_allowance
    assert result.bias_allowance >= 0.5 * result.curvature_sff_scaled**2 * result.curvature_sff * (1 - 1e-9)


def test_memory_bounded_runs_give_the_same_numbers():
    """A budget too small for one worker's default chunk: one point at a time, one worker;
    every per-point value and summary equals the in-memory run."""
    drawn = acc.sample("torus", 400, 30, 0.005, seed=2)
    points = drawn.points.astype(np.float32)
    free = curvature(points, 2, n_bootstrap=50)
    bounded = curvature(points, 2, n_bootstrap=50, max_memory=1)
    np.testing.assert_allclose(
        bounded.sff_squared_per_point, free.sff_squared_per_point, rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(bounded.mapc_per_point, free.mapc_per_point, rtol=1e-9)
    assert bounded.curvature_sff == pytest.approx(free.curvature_sff, rel=1e-12)
    for name, bounds in free.intervals.items():
        assert bounded.intervals[name] == pytest.approx(bounds, rel=1e-12)


def test_local_spectrum_is_the_same_in_blocks_and_from_float32():
    """The local spectra of float32 points, one anchor per block, equal those of the float64
    points in one block (the neighbourhoods are centred before any product)."""
    drawn = acc.sample("clifford", 300, 20, 0.01, seed=3)
    graph = nearest_neighbours(drawn.points, 30)
    whole, _ = local_spectrum(drawn.points, graph, 30, n_anchors=100)
    single = drawn.points.astype(np.float32)
    blocks, _ = local_spectrum(single, graph, 30, n_anchors=100, max_bytes=1)
    np.testing.assert_allclose(blocks, whole, rtol=1e-5, atol=1e-7)
    assert whole[0] == pytest.approx(1.0) and whole[1] > 0.5 and whole[2] < 0.1  # d = 2
