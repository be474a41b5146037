"""The curvature profile: principal curvature of every layer's data manifold (Kaufman & Azencot 2023).

Per layer: the tangent dimension d is the layer's TwoNN estimate rounded (or given), and
`geometry.curvature` fits the local quadratic model on each point's neighbourhood:
- `knn`: the K nearest neighbours in the layer itself;
- `perturb`: the paper's construction, each image's own perturbed copies
  (`extract.perturbations`) propagated through the model, so every layer sees the same
  input neighbourhood.
The summary carries the curvature gap between the last two layers, the quantity Kaufman &
Azencot relate to test accuracy.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from ..extraction.activations import Activations, LayerArray, extract
from ..extraction.perturbations import svd_perturbations
from ..geometry.curvature import (
    Curvature,
    NeighbourhoodCurvature,
    curvature,
    default_k,
    min_neighbours,
    n_unknowns,
)
from ..geometry.intrinsic_dimension import distinct_points, twonn
from ..geometry.neighbours import NeighbourGraph, nearest_neighbours
from ..geometry.tangent_dimension import tangent_dimension_at_fit_scale
from ..progress import track
from ..results import LayerResult, Result
from ..validation import check_positive
from .layers import layer_result, measure_layers

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
    last, before = layers[-1].metrics, layers[-2].metrics  # a skipped layer has none: NaN gaps
    nan = float("nan")
    names = {
        "curvature_gap": "mapc",
        "curvature_gap_scaled": "mapc_scaled",
        "curvature_sff_gap": "curvature_sff",
        "curvature_sff_gap_scaled": "curvature_sff_scaled",
    }
    return {gap: last.get(metric, nan) - before.get(metric, nan) for gap, metric in names.items()}


def _layer_entry(
    layer: LayerArray, index: int, n_layers: int, measured: Curvature, id_twonn: float
) -> LayerResult:
    entry = layer_result(layer, index, n_layers)
    entry.metrics.update(measured.metrics())
    entry.metrics["id_twonn"] = id_twonn
    entry.intervals.update({name: list(bounds) for name, bounds in measured.intervals.items()})
    entry.details.update(measured.details())
    return entry


def _unmeasured_entry(
    layer: LayerArray, index: int, n_layers: int, id_twonn: float, reason: str, details: dict
) -> LayerResult:
    """A layer that could not be measured: every curvature metric NaN, the reason in details."""
    entry = layer_result(layer, index, n_layers)
    entry.metrics.update({name: float("nan") for name in (*CURVATURE_METRICS, "signal_to_noise")})
    entry.metrics["id_twonn"] = id_twonn
    entry.details.update({"status": "not_measurable", "reason": reason, **details})
    return entry


def _too_few_points(n: int, dim: int) -> str:
    """Why a fit in dimension `dim` cannot run on n points, or "" when it can."""
    need = min_neighbours(dim)
    if need <= n - 1:
        return ""
    return (
        f"dim={dim} needs K >= {need} neighbours for the quadratic fit "
        f"({n_unknowns(dim)} unknowns per normal direction plus a constant; K = {default_k(dim)} by "
        f"default), but the layer has {n} distinct points: give more points or a smaller --dim"
    )


def curvature_profile(
    arrays: Activations,
    *,
    dim: int | None = None,
    k: int | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    device="cpu",
    progress: bool = False,
) -> Result:
    """Result of `mprobe curvature --neighbourhood knn`: curvature metrics and id_twonn per layer.

    Without `dim`, each layer's d is read from the gap in its local PCA spectra at the fit's
    neighbourhood size (`geometry.tangent_dimension`; details `dim_*` give the evidence).
    A layer that cannot be measured (too few points for its d, every neighbourhood
    degenerate) is kept with NaN metrics, `status` "not_measurable" and the `reason`; a layer
    of constant activations is `skipped` (`layers.measure_layers`); the other layers are
    measured. A measured layer whose value cannot be trusted has
    curvature_sff NaN, `status` "cannot_tell" and the `reason` (`geometry.curvature`).
    """
    result = Result(
        command="curvature",
        source=dict(arrays.source),
        params={"neighbourhood": "knn", "dim": dim, "k": k, "bootstrap": bootstrap, "seed": seed},
    )

    check_positive(bootstrap, name="n_bootstrap", integer=True)  # an option error is no layer's

    def measure(layer, index, n_layers):
        return _knn_layer(layer, index, n_layers, dim=dim, k=k, bootstrap=bootstrap, seed=seed,
                          device=device, progress=progress)  # fmt: skip

    result.layers.extend(
        measure_layers(arrays, measure, description="curvature", progress=progress,
                       skip_errors=dim is None and k is None)  # fmt: skip
    )
    result.summary.update(curvature_gap(result.layers))
    result.summary["curvature_gap_definition"] = GAP_DEFINITION
    return result


class _GrowingGraph:
    """The layer's kNN graph, recomputed only when more neighbours are asked for."""

    def __init__(self, points: np.ndarray, k: int, device):
        self.points, self.device = points, device
        self.graph = nearest_neighbours(points, k, device=device)

    def __call__(self, k: int) -> NeighbourGraph:
        if k > self.graph.k:
            self.graph = nearest_neighbours(self.points, k, device=self.device)
        return self.graph


def _knn_layer(
    layer: LayerArray, index: int, n_layers: int, *, dim, k, bootstrap, seed, device, progress
) -> LayerResult:
    """One layer of `curvature_profile`: measured, or kept with its reason (never raised)."""
    x = distinct_points(layer.points)
    n, ambient = x.shape
    if n < 4:
        reason = f"the layer has {n} distinct points; curvature needs many more"
        return _unmeasured_entry(layer, index, n_layers, float("nan"), reason, {})
    graph_for = _GrowingGraph(x, min(n - 1, max(k or 0, 64)), device)
    id_estimate = twonn(graph=graph_for.graph).dimension
    found = None
    if dim is not None:
        d, details = dim, {"dim_method": "given (--dim)"}
    else:
        found = tangent_dimension_at_fit_scale(
            x,
            graph_for,
            default_k,
            max_dim=min(ambient - 1, n - 2),
            max_k=n - 1,
            seed=seed,
        )
        d, details = found.dim, found.details()
    details["id_twonn"] = id_estimate
    reason = _too_few_points(n, d) if k is None else ""
    if reason:
        details["k_needed"] = min_neighbours(d)
        return _unmeasured_entry(layer, index, n_layers, id_estimate, reason, details)
    k_layer = k if k is not None else default_k(d, n)
    try:
        measured = curvature(
            x,
            d,
            k=k_layer,
            graph=graph_for(k_layer),
            device=device,
            n_bootstrap=bootstrap,
            seed=seed,
            progress=progress,
        )
    except InputError as error:
        if k is not None or dim is not None:
            raise  # the user's own --k or --dim: their input error
        return _unmeasured_entry(layer, index, n_layers, id_estimate, str(error).rstrip("."), details)
    entry = _layer_entry(layer, index, n_layers, measured, id_estimate)
    entry.details.update(details)
    if found is not None and not found.clear and measured.status == "measured":
        entry.details["status"] = "uncertain_dimension"
        entry.details["reason"] = (
            f"no clear gap in the local spectra (largest drop {found.gap:.2g}x < 3x): d={d} is "
            "the best guess; give --dim if it is known"
        )
    return entry


def perturbation_curvature_profile(
    arrays: Activations,
    *,
    n_top: int = 22,
    n_toggle: int = 10,
    n_copies: int | None = None,
    dim: int | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    device="cpu",
    progress: bool = False,
) -> Result:
    """Result of `mprobe curvature --neighbourhood perturb` for the model and layers of `arrays`.

    `arrays` holds the layers' activations of the images themselves (from `layers_from_model`):
    they give each layer's TwoNN dimension. Then, a batch of images at a time, every image's
    perturbed copies go through the model once, and in every layer the copies' activations
    are the neighbourhood of the centre's (the rank-n_top reconstruction's) activation.
    """
    if arrays.model is None or arrays.data is None:
        raise InputError(
            "--neighbourhood perturb needs --model and --data (image inputs); use knn for --points."
        )
    images = arrays.data.inputs()
    if images.ndim != 4:
        raise InputError(
            f"--neighbourhood perturb needs images (N, C, H, W), the data has inputs of shape "
            f"{tuple(images.shape[1:])}; use --neighbourhood knn."
        )
    names = [layer.name for layer in arrays.layers]
    reduction = arrays.source.get("reduction", "none")
    ids = {layer.name: twonn(distinct_points(layer.points)).dimension for layer in arrays.layers}
    accumulators = {
        layer.name: NeighbourhoodCurvature(
            dim if dim is not None else tangent_dimension(ids[layer.name], layer.points.shape[1]),
            device=device,
        )
        for layer in arrays.layers
    }
    width = sum(layer.points.shape[1] for layer in arrays.layers)
    first = svd_perturbations(images[:1], n_top=n_top, n_toggle=n_toggle, n_copies=n_copies, seed=seed)
    n_per_image = first.copies.shape[1] + 1
    per_batch = max(1, 2**26 // (n_per_image * max(width, int(np.prod(images.shape[1:])))))
    starts = range(0, len(images), per_batch)
    for start in track(starts, description="perturbed neighbourhoods", enabled=progress):
        batch = images[start : start + per_batch]
        perturbed = svd_perturbations(batch, n_top=n_top, n_toggle=n_toggle, n_copies=n_copies, seed=seed)
        g, p = perturbed.copies.shape[:2]
        inputs = torch.cat([perturbed.centres, perturbed.copies.reshape(g * p, *batch.shape[1:])])
        with extract(
            arrays.model.module, inputs, names, reduction=reduction, device=device, use_cache=False, seed=seed
        ) as acts:
            for name in names:
                values = np.asarray(acts[name])
                accumulators[name].add(values[:g], values[g:].reshape(g, p, -1))

    result = Result(
        command="curvature",
        source=dict(arrays.source),
        params={
            "neighbourhood": "perturb",
            "n_top": first.n_top,
            "n_toggle": first.n_toggle,
            "n_copies": p,
            "centre": first.centre,
            "dim": dim,
            "bootstrap": bootstrap,
            "seed": seed,
        },
    )
    for index, layer in enumerate(arrays.layers):
        measured = accumulators[layer.name].result(n_bootstrap=bootstrap, seed=seed)
        result.layers.append(_layer_entry(layer, index, len(arrays.layers), measured, ids[layer.name]))
    result.summary.update(curvature_gap(result.layers))
    result.summary["curvature_gap_definition"] = GAP_DEFINITION
    return result
