"""All intrinsic-dimension measurements of one point cloud (one layer) from one neighbour graph."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InputError
from ..validation import as_points
from .approximate_neighbours import hnsw_neighbours
from .intrinsic_dimension import MLE_NEIGHBOURS, distinct_points, mle, twonn
from .linear_dimension import linear_dimension
from .neighbours import nearest_neighbours
from .skdim_adapter import SKDIM_METHODS, neighbours_needed, skdim_dimension

NATIVE_METHODS = ("twonn", "mle", "pca")
DEFAULT_METHODS = ("twonn", "mle", "pca")


@dataclass(frozen=True)
class DimensionProfile:
    """Metric name -> value (names as in docs/methods.md: id_twonn, id_mle, id_<skdim>, id_pca90,
    participation_ratio) and metric name -> [low, high] bootstrap interval; `details` holds
    `knn_recall` (and `neighbours`) when the neighbour graph was approximate."""

    metrics: dict[str, float]
    intervals: dict[str, list[float]] = field(default_factory=dict)
    details: dict[str, object] = field(default_factory=dict)


def check_methods(methods) -> tuple[str, ...]:
    """Lower-cased method names, each native or a scikit-dimension estimator."""
    if isinstance(methods, str):
        methods = methods.split(",")
    names = tuple(m.strip().lower() for m in methods if m.strip())
    if not names:
        raise InputError("no intrinsic-dimension method given; name at least one, e.g. twonn,mle.",
                         parameter="methods")  # fmt: skip
    for name in names:
        if name not in NATIVE_METHODS and name not in SKDIM_METHODS:
            raise InputError(
                f"unknown method {name!r}; choose from "
                + ", ".join(NATIVE_METHODS + tuple(SKDIM_METHODS))
                + ".",
                parameter="methods",
            )
    return names


def measure_dimensions(
    points,
    methods=DEFAULT_METHODS,
    *,
    mle_k: int = MLE_NEIGHBOURS,
    n_bootstrap: int = 0,
    seed: int = 0,
    device="cpu",
    backend: str = "torch",
    neighbours: str = "exact",
) -> DimensionProfile:
    """Every requested estimate on `points` (N, D); the kNN graph is computed once, with the
    largest k any method needs, and shared. Duplicate points are removed first (warning).
    neighbours: "exact", or "hnsw" for an approximate graph on large N (its recall, measured
    on 1,000 rows drawn with `seed`, is in `details["knn_recall"]`; see
    `geometry.approximate_neighbours`)."""
    methods = check_methods(methods)
    x = distinct_points(as_points(points, min_points=4))
    graph_methods = [
        m for m in methods if m in ("twonn", "mle") or (m in SKDIM_METHODS and neighbours_needed(m))
    ]
    k_needed = max(
        [2]
        + [mle_k for m in methods if m == "mle"]
        + [neighbours_needed(m) for m in methods if m in SKDIM_METHODS]
    )
    graph = None
    if graph_methods:
        if k_needed >= len(x):
            raise InputError(
                f"{len(x)} points are too few for {k_needed} nearest neighbours; give more than "
                f"{k_needed} distinct points, or methods that need fewer neighbours (twonn and pca "
                "work from 4 points)."
            )
        if neighbours == "hnsw":
            graph = hnsw_neighbours(x, k_needed, seed=seed)
        else:
            graph = nearest_neighbours(x, k_needed, device=device, backend=backend)

    metrics: dict[str, float] = {}
    intervals: dict[str, list[float]] = {}
    for method in methods:
        if method == "pca":
            lin = linear_dimension(x, device=device, spectrum="leading")
            metrics["id_pca90"] = float(lin.pca90)
            metrics["participation_ratio"] = lin.participation_ratio
            continue
        if method == "twonn":
            est = twonn(graph=graph, n_bootstrap=n_bootstrap, seed=seed)
        elif method == "mle":
            est = mle(graph=graph, k=mle_k, n_bootstrap=n_bootstrap, seed=seed)
        else:
            est = skdim_dimension(method, x, graph=graph, seed=seed, device=device)
        metrics[f"id_{method}"] = est.dimension
        if est.interval is not None:
            intervals[f"id_{method}"] = list(est.interval)
    details: dict[str, object] = {}
    if graph is not None and graph.recall is not None:
        details = {"neighbours": neighbours, "knn_recall": round(graph.recall, 4)}
    return DimensionProfile(metrics, intervals, details)
