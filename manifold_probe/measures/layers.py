"""What every layer profile shares: the layer's place in the network, and what happens to a
layer that cannot be measured.

One status vocabulary, in a layer's `details["status"]` (absent: measured):
- `skipped`: the layer could not be measured at all (its activations are constant, or an
  estimator refused it with an input error); `details["reason"]` says why, and the layer has
  no metrics;
- `not_measurable` (curvature): too few points for the fit in the layer's dimension;
- `cannot_tell` (curvature): measured, but `curvature_sff` is NaN because it cannot be trusted;
- `uncertain_dimension` (curvature): measured, with a tangent dimension that is a best guess.
A layer that is `skipped` or `not_measurable` never stops the others: every profile measures
the rest. When the layers come from a model, the model's layers are the tool's choice and a
failing one is skipped; a bare point cloud (one layer, `points`) that cannot be measured is
the user's input and stays an InputError.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import InputError
from ..extraction.activations import Activations, LayerArray
from ..progress import track
from ..results import LayerResult, Result

SKIPPED = "skipped"
NOT_MEASURED = (SKIPPED, "not_measurable")
"""Statuses of a layer that has no measurement."""

CONSTANT = "constant activations (all points equal)"
"""The reason of a layer whose rows are all equal (torchvision's ViT head starts at zero)."""

_ROWS_PER_SLICE = 4096


def layer_result(layer: LayerArray, index: int, n_layers: int) -> LayerResult:
    """An empty LayerResult for `layer`, the index-th of n_layers (relative depth index/(n-1))."""
    return LayerResult(
        name=layer.name,
        index=index,
        depth=index / (n_layers - 1) if n_layers > 1 else 0.0,
        ambient_dim=int(layer.points.shape[1]),
        n_points=int(layer.points.shape[0]),
        shape=list(layer.shape),
    )


def is_constant(points) -> bool:
    """Whether every row of `points` (N, D) equals the first, read in slices (a memmap from the
    cache is never loaded whole). Rows with NaN are never equal (validation reports them)."""
    if len(points) < 2:
        return False
    first = np.asarray(points[0])
    return all(
        bool((np.asarray(points[start : start + _ROWS_PER_SLICE]) == first).all())
        for start in range(0, len(points), _ROWS_PER_SLICE)
    )


def skipped_layer(layer: LayerArray, index: int, n_layers: int, reason: str) -> LayerResult:
    """The entry of a layer that could not be measured: no metrics, status `skipped`, the reason."""
    entry = layer_result(layer, index, n_layers)
    entry.details.update({"status": SKIPPED, "reason": reason})
    return entry


def is_measured(layer: LayerResult) -> bool:
    """Whether the layer has a measurement (its status is not `skipped` / `not_measurable`)."""
    return layer.details.get("status") not in NOT_MEASURED


def nothing_measured(result: Result) -> bool:
    """Whether a per-layer result has layers and none of them was measured."""
    return bool(result.layers) and not any(is_measured(layer) for layer in result.layers)


def measure_layers(
    arrays: Activations,
    measure: Callable[[LayerArray, int, int], LayerResult],
    *,
    description: str,
    progress: bool = False,
    skip_errors: bool = True,
) -> list[LayerResult]:
    """`measure(layer, index, n_layers)` on every layer of `arrays`; a layer whose activations
    are constant, or on which `measure` raises an InputError, becomes a `skipped_layer` with
    the reason (the error's message, naming the layer) and the others are still measured.

    Bare points (`arrays.model` is None) are the user's own array: their InputError is raised,
    as is every InputError with `skip_errors=False` (a measure whose errors come from the
    user's own options, such as curvature's `dim` and `k`).

    Example
    -------
    >>> layers = measure_layers(acts, lambda layer, i, n: layer_result(layer, i, n), description="x")
    """
    from_model = arrays.model is not None
    n = len(arrays.layers)
    entries = []
    for index, layer in enumerate(track(arrays.layers, description=description, enabled=progress)):
        if from_model and is_constant(layer.points):
            entries.append(skipped_layer(layer, index, n, CONSTANT))
            continue
        try:
            entries.append(measure(layer, index, n))
        except InputError as error:
            if not (from_model and skip_errors):
                raise
            reason = str(error).rstrip(".")
            if layer.name not in reason:
                reason = f"layer {layer.name!r}: {reason}"
            entries.append(skipped_layer(layer, index, n, reason))
    return entries
