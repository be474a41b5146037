"""The curvature profile: principal curvature of every layer's data manifold (Kaufman & Azencot 2023).

Per layer: the tangent dimension d is the layer's TwoNN estimate rounded (or given), the
neighbourhoods are the K nearest neighbours in the layer (`knn`), and
`geometry.curvature` fits the local quadratic model. The summary carries the curvature
gap between the last two layers, the quantity Kaufman & Azencot relate to test accuracy.
"""

from __future__ import annotations

from ..errors import InputError
from ..geometry.curvature import curvature, default_k
from ..geometry.intrinsic_dimension import distinct_points, twonn
from ..geometry.neighbours import nearest_neighbours
from ..pipeline import LayerArrays
from ..progress import track
from ..results import LayerResult, Result
from .layers import layer_result

CURVATURE_METRICS = ("mapc", "curvature_sff", "mapc_scaled", "curvature_sff_scaled")
GAP_DEFINITION = (
    "curvature_gap = mapc(last layer) - mapc(penultimate layer), raw (the reference's MAPC, 1/length); "
    "*_scaled gaps use each layer's dimensionless mapc_scaled / curvature_sff_scaled"
)


def tangent_dimension(id_twonn: float, ambient: int) -> int:
    """The TwoNN estimate rounded, at least 1 and below the ambient dimension."""
    return int(min(max(round(id_twonn), 1), ambient - 1))


def curvature_gap(layers: list[LayerResult]) -> dict[str, float]:
    """Last layer minus penultimate layer, for each curvature metric (raw and scaled)."""
    if len(layers) < 2:
        return {}
    last, before = layers[-1].metrics, layers[-2].metrics
    names = {
        "curvature_gap": "mapc",
        "curvature_gap_scaled": "mapc_scaled",
        "curvature_sff_gap": "curvature_sff",
        "curvature_sff_gap_scaled": "curvature_sff_scaled",
    }
    return {gap: last[metric] - before[metric] for gap, metric in names.items()}


def curvature_profile(
    arrays: LayerArrays,
    *,
    dim: int | None = None,
    k: int | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    device="cpu",
    progress: bool = False,
) -> Result:
    """Result of `mprobe curvature --neighbourhood knn`: curvature metrics and id_twonn per layer."""
    result = Result(
        command="curvature",
        source=dict(arrays.source),
        params={"neighbourhood": "knn", "dim": dim, "k": k, "bootstrap": bootstrap, "seed": seed},
    )
    n_layers = len(arrays.layers)
    for index, layer in enumerate(track(arrays.layers, description="curvature", enabled=progress)):
        x = distinct_points(layer.points)
        n, ambient = x.shape
        if n < 4:
            raise InputError(f"layer {layer.name} has {n} distinct points; curvature needs many more.")
        graph = nearest_neighbours(x, min(n - 1, max(k or 0, 64)), device=device)
        id_estimate = twonn(graph=graph).dimension
        d = dim if dim is not None else tangent_dimension(id_estimate, ambient)
        k_layer = k if k is not None else default_k(d, n)
        if k_layer > graph.k:
            graph = nearest_neighbours(x, k_layer, device=device)
        measured = curvature(
            x, d, k=k_layer, graph=graph, device=device, n_bootstrap=bootstrap, seed=seed, progress=progress
        )
        entry = layer_result(layer, index, n_layers)
        entry.metrics.update(measured.metrics())
        entry.metrics["id_twonn"] = id_estimate
        entry.intervals.update({name: list(bounds) for name, bounds in measured.intervals.items()})
        entry.details.update(measured.details())
        result.layers.append(entry)
    result.summary.update(curvature_gap(result.layers))
    result.summary["curvature_gap_definition"] = GAP_DEFINITION
    return result
