"""Scale: every intrinsic-dimension estimator gives the same answer for the points times any
factor from 1e-30 to 1e30 (float32 and float64; float64 also at 1e-300 and 1e300), and
curvature follows its 1/length law over the same range. Before `point_scale`, x 1e19 in
float32 overflowed the squared distances (TwoNN 2.17 became NaN or a wrong number) and
x 1e-25 underflowed them to zero ("duplicate points")."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from manifold_probe.geometry.curvature import curvature
from manifold_probe.geometry.intrinsic_dimension import mle, twonn
from manifold_probe.geometry.linear_dimension import covariance_eigenvalues, linear_dimension
from manifold_probe.geometry.neighbours import nearest_neighbours, point_scale
from manifold_probe.geometry.skdim_adapter import skdim_dimension

FACTORS = [1e-30, 1e-25, 1e-19, 1e-10, 1e10, 1e19, 1e20, 1e25, 1e30]
SKDIM_METHODS = ["corrint", "fishers", "lpca", "mada", "mom", "tle"]


def _sheet(dtype) -> np.ndarray:
    """A curved 2-D sheet in R^8 (300 points), rotated."""
    rng = np.random.default_rng(0)
    u = rng.uniform(-1, 1, size=(300, 2))
    x = np.zeros((300, 8))
    x[:, 0], x[:, 1], x[:, 2] = u[:, 0], u[:, 1], 0.5 * (u[:, 0] ** 2 - u[:, 1] ** 2)
    return (x @ np.linalg.qr(rng.normal(size=(8, 8)))[0]).astype(dtype)


def _estimates(x) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        linear = linear_dimension(x)
        found = {
            "twonn": twonn(x).dimension,
            "mle": mle(x).dimension,
            "pca90": linear.pca90,
            "participation_ratio": linear.participation_ratio,
        }
        found.update({m: skdim_dimension(m, x).dimension for m in SKDIM_METHODS})
    return found


@pytest.fixture(scope="module")
def base():
    return {dtype: _estimates(_sheet(dtype)) for dtype in (np.float32, np.float64)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("factor", FACTORS)
def test_intrinsic_dimension_is_the_same_at_every_scale(base, dtype, factor):
    scaled = (_sheet(np.float64) * factor).astype(dtype)
    expected = base[dtype]
    got = _estimates(scaled)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-4), (name, factor)
    assert 1.5 < got["twonn"] < 2.5 and 1.5 < got["mle"] < 2.5  # and it is the sheet's dimension


@pytest.mark.parametrize("factor", [1e-300, 1e300])
def test_float64_extremes_keep_the_dimension(base, factor):
    got = _estimates(_sheet(np.float64) * factor)
    for name in ("twonn", "mle", "pca90", "participation_ratio"):
        assert got[name] == pytest.approx(base[np.float64][name], rel=1e-4), name


@pytest.mark.parametrize("factor", [1e-30, 1e-19, 1e19, 1e30])
def test_neighbour_distances_scale_with_the_points(factor):
    x = _sheet(np.float64)
    a, b = nearest_neighbours(x, 5), nearest_neighbours(x * factor, 5)
    assert np.array_equal(a.indices, b.indices)
    assert np.allclose(b.distances / factor, a.distances, rtol=1e-12)
    assert np.allclose(covariance_eigenvalues(x * factor) / factor**2, covariance_eigenvalues(x), rtol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("factor", FACTORS)
def test_curvature_follows_one_over_length_at_every_scale(dtype, factor):
    x = _sheet(np.float64)
    base = curvature(x.astype(dtype), 2, k=30, n_bootstrap=1, seed=1)
    scaled = curvature((x * factor).astype(dtype), 2, k=30, n_bootstrap=1, seed=1)
    assert scaled.mapc * factor == pytest.approx(base.mapc, rel=1e-4)
    assert scaled.mapc_scaled == pytest.approx(base.mapc_scaled, rel=1e-4)


def test_point_scale_is_a_power_of_two_near_the_spread():
    assert point_scale(np.array([[0.0], [3e20]])) == 2.0**68
    assert point_scale(np.zeros((3, 2))) == 1.0
    offset = np.array([[1e30, 0.0], [1e30 + 2**80, 0.0]])  # a large offset, a smaller spread
    assert point_scale(offset) == 2.0**80  # spread 2**79 = 0.5 * 2**80


def test_distinct_float32_rows_of_subnormal_size_are_not_called_duplicates():
    """500 distinct float32 rows times 1e-40 (subnormal numbers): the exact re-ranking scaled
    them by 2**133, infinite in float32, so every distance came out inf or NaN and TwoNN
    dropped every point as a duplicate or a tie."""
    x = np.random.default_rng(0).normal(size=(500, 10)).astype(np.float32)
    tiny = x * np.float32(1e-40)
    assert len(np.unique(tiny, axis=0)) == 500
    graph = nearest_neighbours(tiny, 2)
    assert np.isfinite(graph.distances).all() and (graph.distances > 0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no point dropped as a duplicate or a tie
        assert twonn(tiny).dimension == pytest.approx(twonn(x).dimension, rel=1e-3)
