"""The hnsw neighbour graph: exact distances for what it finds, its recall measured and reported."""

import sys

import numpy as np
import pytest

import manifold_probe as mp
from manifold_probe.errors import InputError
from manifold_probe.geometry import approximate_neighbours
from manifold_probe.geometry.approximate_neighbours import hnsw_neighbours
from manifold_probe.geometry.intrinsic_dimension import mle, twonn
from manifold_probe.geometry.neighbours import _prepare, exact_neighbours_of, nearest_neighbours

pytest.importorskip("faiss")


def _manifold(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4))
    return (np.hstack([np.sin(z), np.cos(z), z]) @ rng.normal(size=(12, 40))).astype(np.float32)


def test_hnsw_graph_has_exact_distances_a_measured_recall_and_the_same_estimates():
    x = _manifold(3000)
    exact = nearest_neighbours(x, 20)
    approx = hnsw_neighbours(x, 20, seed=1)
    assert exact.recall is None and approx.recall is not None and approx.recall >= 0.99
    rows = np.arange(len(x))[:, None]
    direct = np.linalg.norm(x[approx.indices].astype(np.float64) - x[rows].astype(np.float64), axis=2)
    np.testing.assert_allclose(approx.distances, direct, rtol=1e-6)
    assert (np.diff(approx.distances, axis=1) >= 0).all() and (approx.indices != rows).all()
    assert twonn(graph=approx).dimension == pytest.approx(twonn(graph=exact).dimension, rel=1e-3)
    assert mle(graph=approx).dimension == pytest.approx(mle(graph=exact).dimension, rel=1e-3)
    assert approx.first(5).recall == approx.recall


def test_exact_neighbours_of_some_rows_equal_the_whole_graph_rows():
    x = _manifold(1500, seed=2)
    whole = nearest_neighbours(x, 10)
    rows = np.array([0, 7, 1499, 300])
    some = exact_neighbours_of(x, rows, 10)
    np.testing.assert_array_equal(some.indices, whole.indices[rows])
    np.testing.assert_array_equal(some.distances, whole.distances[rows])


def test_recall_counts_the_true_neighbours_found_and_warns_below_the_threshold(monkeypatch):
    x = _manifold(2000, seed=3)
    exact = nearest_neighbours(x, 10)
    prep = _prepare(x)
    assert approximate_neighbours.measure_recall(prep, exact.indices, exact.distances, 500, 0) == 1.0
    # the two nearest of every row replaced by far points: 8 of 10 found
    far = np.argsort(-np.linalg.norm(x - x.mean(axis=0), axis=1))[:2]
    indices = np.concatenate([exact.indices[:, 2:], np.broadcast_to(far, (len(x), 2))], axis=1)
    distances = np.concatenate([exact.distances[:, 2:], np.full((len(x), 2), 1e9)], axis=1)
    assert approximate_neighbours.measure_recall(prep, indices, distances, 500, 0) == pytest.approx(0.8)
    monkeypatch.setattr(approximate_neighbours, "RECALL_WARNING", 1.01)  # any recall now warns
    with pytest.warns(UserWarning, match="true 10 nearest"):
        hnsw_neighbours(x, 10)


def test_intrinsic_dimension_reports_the_recall_beside_the_estimates(tmp_path):
    x = _manifold(2500, seed=4)
    result = mp.intrinsic_dimension(x, methods=("twonn", "mle"), neighbours="hnsw")
    layer = result.layers[0]
    assert layer.details["neighbours"] == "hnsw" and layer.details["knn_recall"] >= 0.99
    assert result.params["neighbours"] == "hnsw"
    exact = mp.intrinsic_dimension(x, methods=("twonn", "mle"))
    assert "knn_recall" not in exact.layers[0].details and "neighbours" not in exact.params
    for name in ("id_twonn", "id_mle"):
        assert layer.metrics[name] == pytest.approx(exact.layers[0].metrics[name], rel=1e-3)
    with pytest.raises(InputError) as error:
        mp.intrinsic_dimension(x, neighbours="annoy")
    assert error.value.parameter == "neighbours"


def test_command_line_neighbours_hnsw_prints_and_writes_the_recall(tmp_path):
    from manifold_probe_cli.main import main

    points, out = tmp_path / "points.npy", tmp_path / "out.json"
    np.save(points, _manifold(2000, seed=5))
    code = main(["id", "--points", str(points), "--neighbours", "hnsw", "--method", "twonn", "--json",
                 str(out), "-q"])  # fmt: skip
    assert code in (0, None)
    assert mp.read_result(out).layers[0].details["knn_recall"] >= 0.99


def test_hnsw_without_faiss_is_an_input_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(InputError, match="faiss"):
        hnsw_neighbours(_manifold(100), 5)
