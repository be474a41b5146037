"""The kNN graph equals brute force, and its distances stay exact for near-duplicate points."""

import subprocess
import sys

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors

from manifold_probe.errors import InputError
from manifold_probe.geometry import neighbours
from manifold_probe.geometry.neighbours import drop_duplicates, duplicate_rows, nearest_neighbours


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
    with pytest.raises(InputError, match="k: 10 neighbours need more than 10 points"):
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


def _lattice(n_side: int, dim: int) -> np.ndarray:
    """Integer grid points, shuffled: every distance is the square root of an integer, so
    shells of exactly tied neighbours (6 at 1, 12 at sqrt 2 in 3-D)."""
    grid = np.stack(np.meshgrid(*[np.arange(n_side)] * dim, indexing="ij"), axis=-1).reshape(-1, dim)
    return grid[np.random.default_rng(6).permutation(len(grid))].astype(np.float64)


@pytest.fixture
def symmetric_search(monkeypatch):
    """Every width takes the symmetric block product, with several blocks."""
    monkeypatch.setattr(neighbours, "SYMMETRIC_MIN_DIM", 1)


@pytest.mark.parametrize("path", ["rows", "symmetric"])
@pytest.mark.parametrize(
    "case",
    ["ties", "duplicates", "offset", "tiny", "huge", "wide"],
)
def test_knn_equals_float64_brute_force_on_adversarial_data(request, path, case):
    """Exact ties (broken by the lower index, as a stable sort does), duplicates, a large
    offset, tiny and huge scales and a wide layer: the same graph as brute force in float64."""
    if path == "symmetric":
        request.getfixturevalue("symmetric_search")
    rng = np.random.default_rng(7)
    x = {
        "ties": _lattice(7, 3) + 0.0,
        "duplicates": np.vstack([base := rng.normal(size=(150, 5)), base[:40], base[:3]]),
        "offset": 1e6 + rng.normal(size=(200, 6)),
        "tiny": 1e-200 * rng.normal(size=(200, 6)),
        "huge": 1e200 * rng.normal(size=(200, 6)),
        "wide": rng.normal(size=(120, 3000)),
    }[case]
    k = 10
    graph = nearest_neighbours(x, k, chunk_size=37 if path == "symmetric" else None)
    unit = 2.0 ** np.round(np.log2(np.abs(x).max()))  # exact; cdist's squares underflow at 1e-200
    idx, dist = brute_force(x / unit, k)
    dist *= unit
    np.testing.assert_allclose(graph.distances, dist, rtol=1e-9, atol=0)
    if case != "duplicates":  # equal rows are interchangeable: compare distances only
        np.testing.assert_array_equal(graph.indices, idx)
    if case == "ties":
        # scikit-learn's own float64 brute force, which includes each point as its own nearest
        ref_dist, _ = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(x).kneighbors(x)
        np.testing.assert_allclose(graph.distances, ref_dist[:, 1:], rtol=1e-12)


def test_float32_wide_layer_matches_float64_brute_force(symmetric_search):
    x = np.random.default_rng(8).normal(size=(150, 2048)).astype(np.float32)
    graph = nearest_neighbours(x, 5, chunk_size=40)
    idx, dist = brute_force(x.astype(np.float64), 5)
    np.testing.assert_array_equal(graph.indices, idx)
    np.testing.assert_allclose(graph.distances, dist, rtol=1e-6)


def test_duplicate_rows_are_found_exactly():
    rng = np.random.default_rng(9)
    base = rng.normal(size=(300, 4))
    signed_zero = np.zeros((2, 4))
    signed_zero[1, 0] = -0.0  # -0.0 == 0.0: a duplicate
    x = np.vstack([base, base[[5, 5, 17]], signed_zero, np.nextafter(base[:1], np.inf)])  # last: one ulp off
    expected = np.zeros(len(x), dtype=bool)
    expected[[300, 301, 302, 304]] = True  # the second and third copy of 5, 17, the second zero row
    np.testing.assert_array_equal(duplicate_rows(x), expected)
    np.testing.assert_array_equal(duplicate_rows(x.astype(np.float32))[:304], expected[:304])
    kept, removed = drop_duplicates(x)
    assert removed == 4
    np.testing.assert_array_equal(kept, x[~expected])
    assert drop_duplicates(base)[1] == 0 and drop_duplicates(base)[0] is base


def test_duplicate_rows_agree_with_a_row_sort():
    x = np.random.default_rng(10).integers(0, 3, size=(400, 3)).astype(np.float32)  # many repeats
    _, first = np.unique(x, axis=0, return_index=True)
    expected = np.ones(len(x), dtype=bool)
    expected[first] = False
    np.testing.assert_array_equal(duplicate_rows(x), expected)


def test_survivors_hold_the_n_smallest_and_everything_else_lies_above_the_threshold():
    """The candidate selection: at least the n smallest of each row (ties included), every
    value left out above the row's threshold, and the threshold at least the n-th smallest."""
    rng = np.random.default_rng(11)
    for columns, n in [(5000, 29), (2000, 29), (300, 29), (40, 29), (29, 29), (997, 7)]:
        values = rng.normal(size=(50, columns)).astype(np.float32)
        values[:10] = np.round(values[:10])  # many exact ties
        idx, kept, threshold = neighbours._survivors(values, n)
        nth = np.sort(values, axis=1)[:, n - 1]
        assert (threshold >= nth).all()
        for row in range(len(values)):
            chosen = idx[row][idx[row] >= 0]
            assert len(chosen) == len(set(chosen.tolist())) >= n
            np.testing.assert_array_equal(kept[row][: len(chosen)], values[row, chosen])
            left_out = np.setdiff1d(np.arange(columns), chosen)
            assert (values[row, left_out] > threshold[row]).all()


@pytest.mark.parametrize("case", ["ties", "wide"])
def test_rows_without_a_certificate_are_searched_again_exactly(monkeypatch, case):
    """A search-value bound far too loose for any certificate sends every row to the second
    search against all points; the graph is still float64 brute force's."""
    monkeypatch.setattr(neighbours, "_gamma", lambda length, sliced=True: 0.05)
    rng = np.random.default_rng(12)
    x = _lattice(6, 3) if case == "ties" else rng.normal(size=(150, 1500))
    calls = []
    again = neighbours._search_again

    def counted(prep, rows, *args):
        calls.append(len(rows))
        return again(prep, rows, *args)

    monkeypatch.setattr(neighbours, "_search_again", counted)
    graph = nearest_neighbours(x, 8, spare=0)
    assert calls and sum(calls) > len(x) // 2
    idx, dist = brute_force(x, 8)
    np.testing.assert_array_equal(graph.indices, idx)
    np.testing.assert_allclose(graph.distances, dist, rtol=1e-9)


def test_sliced_product_stays_within_its_bound_and_wide_layers_stay_exact(monkeypatch):
    """Products over more features than `PRODUCT_SLICE` are summed slice by slice; their error
    stays within `_gamma`'s factor, and a layer wider than a slice gives brute force's graph."""
    monkeypatch.setattr(neighbours, "PRODUCT_SLICE", 256)
    rng = np.random.default_rng(13)
    a, b = rng.normal(size=(30, 1000)).astype(np.float32), rng.normal(size=(40, 1000)).astype(np.float32)
    exact = a.astype(np.float64) @ b.astype(np.float64).T
    bound = neighbours._gamma(1000) * np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64).T
    assert neighbours._gamma(1000) < 300 * neighbours.U32 < neighbours._gamma(1000, sliced=False)
    assert (np.abs(neighbours._product(a, b) - exact) <= bound).all()
    x = rng.normal(size=(200, 1000)).astype(np.float32)
    graph = nearest_neighbours(x, 6, chunk_size=64)
    idx, dist = brute_force(x.astype(np.float64), 6)
    np.testing.assert_array_equal(graph.indices, idx)
    np.testing.assert_allclose(graph.distances, dist, rtol=1e-6)


def test_the_search_on_a_cpu_imports_no_torch():
    code = (
        "import sys, numpy as np\n"
        "from manifold_probe.geometry.neighbours import nearest_neighbours\n"
        "nearest_neighbours(np.random.default_rng(0).normal(size=(3000, 20)), 5)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("case", ["plain", "huge"])
def test_wide_rows_take_their_candidates_one_at_a_time_with_the_same_graph(monkeypatch, case):
    """The one-candidate-at-a-time exact distances of wide layers (`_WIDE_ROWS`) give brute
    force's graph, on scaled points too (tiny and huge values are divided by the scale)."""
    monkeypatch.setattr(neighbours, "_WIDE_ROWS", 16)
    rng = np.random.default_rng(15)
    x = rng.normal(size=(120, 40)) * (1e200 if case == "huge" else 1.0)
    graph = nearest_neighbours(x, 7)
    unit = 2.0 ** np.round(np.log2(np.abs(x).max()))
    idx, dist = brute_force(x / unit, 7)
    np.testing.assert_array_equal(graph.indices, idx)
    np.testing.assert_allclose(graph.distances, dist * unit, rtol=1e-9)
