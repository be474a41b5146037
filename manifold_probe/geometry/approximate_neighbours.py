"""An approximate kNN graph for large N: faiss's HNSW index, its recall measured on every run.

An exact graph costs N^2 D (a million 768-wide embeddings: hours on 2 cores); a hierarchical
navigable small-world graph (Malkov & Yashunin 2018, IEEE TPAMI 42:824) finds most neighbours
in about N log N distance evaluations. What it returns here:

- the neighbours it found, each distance computed exactly (`neighbours._exact_distances`:
  differences in the input's precision), so TwoNN and MLE read exact distances of possibly
  wrong neighbours rather than rounded ones;
- its recall: for `recall_sample` rows drawn with `seed`, the share of the true k nearest
  (from the exact, certified search of those rows, `neighbours.exact_neighbours_of`) that it
  found; a found neighbour whose exact distance ties the true k-th counts as found. Below
  `RECALL_WARNING` a warning says so.

When to use it: N above about 100,000 (where the exact search takes minutes), with the recall
in the result checked; the estimates of TwoNN and MLE then move by far less than their
statistical error (docs in benchmarks/README.md: 200k x 128, TwoNN and MLE within 0.1 % of
the exact graph's at recall 0.99+).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import InputError
from ..validation import as_points, to_numpy
from .neighbours import NeighbourGraph, _exact_distances, _prepare, check_k, exact_neighbours_of

RECALL_WARNING = 0.99
"""Below this recall@k a warning is given."""

HNSW_LINKS = 32
"""Links per node (faiss's M): 32 reaches recall 0.99+ on embeddings of a few hundred features."""


def hnsw_neighbours(
    points, k: int, *, recall_sample: int = 1000, seed: int = 0, ef_search: int | None = None
) -> NeighbourGraph:
    """The approximate kNN graph of `points` (N, D), excluding each point itself, from faiss's
    HNSW index on the centred, scaled float32 points (`pip install manifold-probe[faiss]`);
    exact distances for the neighbours found; `recall` measured on `recall_sample` rows drawn
    with `seed` against an exact search of those rows (a warning below `RECALL_WARNING`).
    ef_search: the search's breadth (default max(64, 4 k)); higher is slower and more exact."""
    try:
        import faiss
    except ImportError:
        raise InputError(
            "the hnsw neighbour search needs faiss: pip install 'manifold-probe[faiss]'.", parameter="method"
        ) from None
    x = as_points(to_numpy(points), min_points=2)
    k = check_k(k, len(x))
    n, dim = x.shape
    prep = _prepare(x)
    data = np.ascontiguousarray(prep.y[:, :dim] * np.float32(-0.5))  # x~, exactly
    index = faiss.IndexHNSWFlat(dim, HNSW_LINKS)
    index.hnsw.efConstruction = 80
    index.add(data)
    index.hnsw.efSearch = ef_search or max(64, 4 * k)
    wanted = min(n, k + 1)
    indices = np.empty((n, k), dtype=np.int64)
    distances = np.empty((n, k), dtype=np.float64)
    step = 16384
    for start in range(0, n, step):
        rows = np.arange(start, min(n, start + step))
        _, found = index.search(data[rows], wanted)
        found = _without_self(found, rows, k)
        exact = _exact_distances(prep, rows, np.maximum(found, 0))
        exact[found < 0] = np.inf
        by_index = np.argsort(np.where(found < 0, np.iinfo(np.int64).max, found), axis=1, kind="stable")
        found = np.take_along_axis(found, by_index, axis=1)
        exact = np.take_along_axis(exact, by_index, axis=1)
        order = np.argsort(exact, axis=1, kind="stable")
        indices[rows] = np.take_along_axis(found, order, axis=1)
        distances[rows] = np.take_along_axis(exact, order, axis=1)
    del index, data
    recall = measure_recall(prep, indices, distances, recall_sample, seed)
    if recall < RECALL_WARNING:
        warnings.warn(
            f"the hnsw neighbour graph found {recall:.1%} of the true {k} nearest neighbours on a "
            f"sample of rows (below {RECALL_WARNING:.0%}); estimates from it may be biased: use the exact "
            "search, or a larger ef_search.",
            stacklevel=3,
        )
    if (indices < 0).any():
        raise InputError("the hnsw index returned fewer neighbours than asked for; use the exact search.")
    return NeighbourGraph(indices, distances * prep.scale, recall=recall)


def _without_self(found: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The first k found of each row that are not the row itself (-1 where too few)."""
    keep = found != rows[:, None]
    order = np.argsort(~keep, axis=1, kind="stable")  # kept ones first, in their order
    found = np.take_along_axis(np.where(keep, found, -1), order, axis=1)
    return found[:, :k]


def measure_recall(prep, indices: np.ndarray, distances: np.ndarray, sample: int, seed: int) -> float:
    """Recall@k of a graph on `sample` rows drawn with `seed`: the share of the true k nearest
    found, a found neighbour as close as the true k-th (an exact tie) counting as found."""
    n, k = indices.shape
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False))
    truth = exact_neighbours_of(prep, rows, k)
    scaled = distances[rows] / prep.scale
    kth = truth.distances[:, -1:] / prep.scale
    within = scaled <= kth * (1 + prep.eta)
    return float(within.sum() / within.size)
