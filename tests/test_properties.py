"""Property tests (hypothesis): every estimator is invariant to what should not matter
(the order of the points, a rotation, a translation), follows its scaling law, and gives
identical results for a fixed seed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manifold_probe.geometry.collapse import neural_collapse
from manifold_probe.geometry.curvature import curvature
from manifold_probe.geometry.intrinsic_dimension import mle, twonn
from manifold_probe.geometry.linear_dimension import linear_dimension
from manifold_probe.report.statistics import correlations

seeds = st.integers(min_value=0, max_value=2**31 - 1)
scales = st.floats(min_value=1e-3, max_value=1e3)
FEW = settings(max_examples=8, deadline=None)


def rotation(rng: np.random.Generator, dim: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(dim, dim)))
    return q * np.sign(np.diag(r))


def curved_cloud(rng: np.random.Generator, n: int = 300, dim: int = 8) -> np.ndarray:
    """A 2-dimensional curved sheet in R^dim: generic enough for every estimator."""
    u = rng.uniform(-1, 1, size=(n, 2))
    x = np.zeros((n, dim))
    x[:, 0], x[:, 1], x[:, 2] = u[:, 0], u[:, 1], 0.5 * (u[:, 0] ** 2 - u[:, 1] ** 2)
    return x @ rotation(rng, dim)


@FEW
@given(seed=seeds, scale=scales)
def test_intrinsic_dimension_is_invariant_to_order_rotation_translation_and_scale(seed, scale):
    rng = np.random.default_rng(seed)
    x = curved_cloud(rng)
    moved = scale * x[rng.permutation(len(x))] @ rotation(rng, x.shape[1]) + rng.normal(size=x.shape[1])
    assert twonn(moved).dimension == pytest.approx(twonn(x).dimension, rel=1e-6)
    assert mle(moved).dimension == pytest.approx(mle(x).dimension, rel=1e-6)
    a, b = linear_dimension(x), linear_dimension(moved)
    assert a.pca90 == b.pca90
    assert a.participation_ratio == pytest.approx(b.participation_ratio, rel=1e-6)


@FEW
@given(seed=seeds, scale=scales)
def test_curvature_follows_one_over_length_and_ignores_order_and_rigid_motion(seed, scale):
    rng = np.random.default_rng(seed)
    x = curved_cloud(rng)
    base = curvature(x, 2, k=30, n_bootstrap=10, seed=1)
    moved = curvature(scale * x[rng.permutation(len(x))] @ rotation(rng, x.shape[1]) + 3.0, 2, k=30,
                      n_bootstrap=10, seed=1)  # fmt: skip
    assert moved.mapc == pytest.approx(base.mapc / scale, rel=1e-6)
    assert moved.curvature_sff == pytest.approx(base.curvature_sff / scale, rel=1e-5)
    assert moved.mapc_scaled == pytest.approx(base.mapc_scaled, rel=1e-6)
    again = curvature(x, 2, k=30, n_bootstrap=10, seed=1)
    assert again.intervals == base.intervals and again.mapc == base.mapc


@FEW
@given(seed=seeds, scale=scales)
def test_collapse_metrics_are_invariant_to_order_rotation_translation_and_scale(seed, scale):
    rng = np.random.default_rng(seed)
    n_classes, dim = 4, 6
    labels = np.repeat(np.arange(n_classes), 30)
    features = rng.normal(size=(n_classes, dim))[labels] + 0.3 * rng.normal(size=(len(labels), dim))
    order = rng.permutation(len(labels))
    moved = scale * features[order] @ rotation(rng, dim) + rng.normal(size=dim)
    a = neural_collapse(features, labels).metrics
    b = neural_collapse(moved, labels[order]).metrics
    for name in ("nc1", "nc1_trace_ratio", "cdnv", "etf_distance", "nc2_equinorm_means",
                 "nc2_equiangular_means"):  # fmt: skip
        assert b[name] == pytest.approx(a[name], rel=1e-6, abs=1e-12), name


@FEW
@given(seed=seeds)
def test_rank_correlations_ignore_monotone_transforms_and_seeds_reproduce(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=20)
    y = x + rng.normal(size=20)
    a = correlations(x, y, seed=3, n_bootstrap=50, n_perm=50)
    b = correlations(np.exp(x), y**3, seed=3, n_bootstrap=50, n_perm=50)
    for method in ("spearman", "kendall"):
        assert b[method].value == pytest.approx(a[method].value, abs=1e-12)
    assert correlations(x, y, seed=3, n_bootstrap=50, n_perm=50) == a
