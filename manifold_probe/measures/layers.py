"""What every per-layer measure shares: the layer's place in the network, one validation of its
points, and what happens to a layer that cannot be measured.

A layer that cannot be measured at all (its activations are constant, contain NaN, or an
estimator refused it with an input error) gets status `skipped` with the `reason` and no
metrics, and never stops the others: every measure measures the rest. When the layers come
from a model, the model's layers are the tool's choice and a failing one is skipped; a bare
point cloud (one layer, `points`) that cannot be measured is the user's input and stays an
InputError. Statuses: `results.STATUSES`.

Each layer's points are checked once here (finite, 2-D; read in slices, so a memmap from the
activation cache is never loaded whole or copied) and the estimators then run under
`validation.assume_finite()`, so they do not scan the data again.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import InputError
from ..extraction.activations import Activations, LayerArray
from ..geometry.neighbours import duplicate_rows
from ..progress import track
from ..results import SKIPPED, LayerResult, Result
from ..validation import assume_finite, check_points_finite

CONSTANT = "constant activations (all points equal)"
"""The reason of a layer whose rows are all equal (torchvision's ViT head starts at zero)."""

_ROWS_PER_SLICE = 4096


def layer_result(
    layer: LayerArray,
    index: int,
    n_layers: int,
    *,
    metrics: Mapping[str, float] | None = None,
    intervals: Mapping[str, Any] | None = None,
    details: Mapping[str, Any] | None = None,
    status: str = "measured",
    reason: str = "",
) -> LayerResult:
    """The LayerResult of `layer`, the index-th of n_layers (relative depth index / (n - 1))."""
    return LayerResult(
        name=layer.name,
        index=index,
        depth=index / (n_layers - 1) if n_layers > 1 else 0.0,
        ambient_dim=int(layer.points.shape[1]),
        n_points=int(layer.points.shape[0]),
        metrics=metrics or {},
        intervals={name: tuple(bounds) for name, bounds in (intervals or {}).items()},
        shape=tuple(layer.shape),
        details=details or {},
        status=status,
        reason=reason,
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
    return layer_result(layer, index, n_layers, status=SKIPPED, reason=reason)


def distinct_labels(points, labels):
    """The labels of the distinct rows of `points` (as `distinct_points` keeps them)."""
    if labels is None:
        return None
    repeated = duplicate_rows(np.asarray(points))
    return np.asarray(labels)[~repeated]


def nothing_measured(result: Result) -> bool:
    """Whether a per-layer result has layers and none of them was measured."""
    return bool(result.layers) and not any(layer.measured for layer in result.layers)


def measure_layers(
    arrays: Activations,
    measure: Callable[[LayerArray, int, int], LayerResult],
    *,
    description: str,
    progress: bool = False,
    skip_errors: bool = True,
) -> tuple[LayerResult, ...]:
    """`measure(layer, index, n_layers)` on every layer of `arrays`, each layer's points checked
    once first; a layer whose activations are constant or not finite, or on which `measure`
    raises an InputError, becomes a `skipped_layer` with the reason (the error's message,
    naming the layer) and the others are still measured; so does a layer the extraction
    refused to reduce as asked (`Activations.refused`: `cls` where there is no class token).

    Bare points (`arrays.model` is None) are the user's own array: their InputError is raised,
    as is every InputError with `skip_errors=False` (a measure whose errors come from the
    user's own options, such as curvature's `dim` and `k`).

    Example
    -------
    >>> layers = measure_layers(acts, lambda layer, i, n: layer_result(layer, i, n), description="x")
    """
    from_model = arrays.model is not None
    refused = arrays.refused
    layers = {layer.name: layer for layer in arrays.layers}
    names = [name for name in arrays.info if name in layers or name in refused]
    n = len(names)
    entries = []
    for index, name in enumerate(track(names, description=description, enabled=progress)):
        if name in refused:  # not extracted: the reduction asked for does not apply (cls, no class token)
            empty = np.empty((arrays.n_points, 0), dtype=np.float32)
            entries.append(skipped_layer(LayerArray(name, empty, tuple(arrays.info[name].shape)), index, n,
                                         refused[name]))  # fmt: skip
            continue
        layer = layers[name]
        try:
            if from_model and is_constant(layer.points):
                entries.append(skipped_layer(layer, index, n, CONSTANT))
                continue
            check_points_finite(layer.points, name=f"layer {layer.name!r}")
            with assume_finite(), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                entries.append(measure(layer, index, n))
            for seen in {(str(w.message), w.category): w for w in caught}.values():  # once each, named
                warnings.warn_explicit(f"layer {name!r}: {seen.message}", seen.category, seen.filename,
                                       seen.lineno)  # fmt: skip
        except InputError as error:
            if not (from_model and skip_errors):
                raise
            reason = str(error).rstrip(".")
            if layer.name not in reason:
                reason = f"layer {layer.name!r}: {reason}"
            entries.append(skipped_layer(layer, index, n, reason))
    return tuple(entries)
