"""The kNN graph equals brute force, and its distances stay exact for near-duplicate points."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from manifold_probe.errors import InputError
from manifold_probe.geometry.neighbours import nearest_neighbours


def brute_force(x, k):
    d = cdist(x, x)
    np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(d, order, axis=1)


@pytest.mark.parametrize("chunk_size", [None, 7])
def test_knn_equals_brute_force(chunk_size):
    x = np.random.default_rng(0).normal(size=(300, 17))
    graph = nearest_neighbours(x, 10, chunk_size=chunk_size)
    idx, dist = brute_force(x, 10)
    np.testing.assert_array_equal(graph.indices, idx)
    np.testing.assert_allclose(graph.distances, dist, rtol=1e-12)


def test_exact_distances_for_near_duplicates_far_from_origin():
    rng = np.random.default_rng(1)
    base = 1e3 + rng.normal(size=(200, 50))  # large norms: the Gram form loses ~1e-3 here
    twins = base + 1e-7 * rng.normal(size=base.shape)  # each point has a twin 1e-6 away
    x = np.vstack([base, twins])
    graph = nearest_neighbours(x, 3)
    n = len(base)
    expected_twin = np.concatenate([np.arange(n, 2 * n), np.arange(n)])
    np.testing.assert_array_equal(graph.indices[:, 0], expected_twin)
    exact = np.linalg.norm(x - x[expected_twin], axis=1)
    np.testing.assert_allclose(graph.distances[:, 0], exact, rtol=1e-9)
    _, dist = brute_force(x, 3)
    np.testing.assert_allclose(graph.distances, dist, rtol=1e-9)


def test_exact_duplicates_have_zero_distance_and_never_themselves():
    x = np.random.default_rng(2).normal(size=(50, 4))
    x = np.vstack([x, x[:5]])
    graph = nearest_neighbours(x, 2)
    assert (graph.indices != np.arange(len(x))[:, None]).all()
    assert np.all(graph.distances[:5, 0] == 0)


def test_float32_input_and_first():
    x = np.random.default_rng(3).normal(size=(100, 8)).astype(np.float32)
    graph = nearest_neighbours(x, 6)
    idx, dist = brute_force(x.astype(np.float64), 6)
    # float32 differences are correctly rounded: relative error ~eps32 whatever the norms
    np.testing.assert_allclose(graph.distances, dist, rtol=1e-6)
    assert graph.first(2).indices.shape == (100, 2)


def test_bad_k_and_nan_are_input_errors():
    x = np.random.default_rng(4).normal(size=(10, 3))
    with pytest.raises(InputError, match="k=10"):
        nearest_neighbours(x, 10)
    x[3, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        nearest_neighbours(x, 2)


def test_faiss_backend_gives_the_same_graph():
    pytest.importorskip("faiss")
    x = np.random.default_rng(5).normal(size=(400, 12))
    a, b = nearest_neighbours(x, 7), nearest_neighbours(x, 7, backend="faiss")
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.distances, b.distances)


def test_unknown_backend_is_an_input_error():
    with pytest.raises(InputError, match="backend"):
        nearest_neighbours(np.random.default_rng(0).normal(size=(20, 3)), 2, backend="annoy")
