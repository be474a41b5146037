"""What a measure was given, before any model: activations, a bare point cloud (an array, a
tensor or a `.npy` file), or a model with its data. Nothing here imports torch: a measure of
bare points on a CPU (`mprobe id --points`) never loads it; a model's path loads
`pipeline` (and torch) when a model comes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..device import cpu_without_torch
from ..errors import InputError
from ..extraction.activations import Activations, LayerRecord
from ..validation import as_labels, as_points, check_count, existing_file, to_numpy


def load_array(path: str | os.PathLike, what: str) -> np.ndarray:
    """A numeric array from a `.npy` file or a one-array `.npz` (never a pickle; anything else
    is not a supported format), read within bounds set by the file's size (`npz.read_arrays`)."""
    from ..sources.formats.npz import read_arrays

    p = existing_file(path, what=what)
    arrays = read_arrays(p, what)
    if len(arrays) != 1:
        raise InputError(f"{p} holds arrays {sorted(arrays)}; give a .npy file or a one-array .npz.")
    return next(iter(arrays.values()))


def points_activations(
    points,
    labels=None,
    *,
    source: Mapping[str, Any] | None = None,
    min_points: int = 2,
    name: str = "points",
    parameter: str | None = None,
) -> Activations:
    """A bare point cloud (N, D) as Activations with one layer named `points` (the validated
    array is used as is, never copied); `source` (default: an array) gains `n_points`."""
    x = as_points(to_numpy(points), name=name, min_points=min_points, parameter=parameter)
    y = None if labels is None else as_labels(to_numpy(labels), len(x), name="labels")
    record = LayerRecord("points", (x.shape[1],), "none", x.shape[1], False, False)
    source = {**(source or {"points": "array", "labels": None}), "n_points": len(x)}
    return Activations({"points": x}, {"points": record}, y, source=source)


def load_points(
    points: str | os.PathLike, labels: str | os.PathLike | None = None, *, min_points: int = 2
) -> Activations:
    """A point cloud in a file (`.npy`, or an `.npz` holding one array; never a pickle) as
    activations with one layer named `points`, with labels from a second file: what the
    command line's `--points` and `--labels` read (`mp.load_points`).

    Example
    -------
    >>> acts = mp.load_points("embeddings.npy", "labels.npy")
    >>> mp.collapse(acts).metrics["points"]["nc1"] > 1  # random labels: no collapse
    True
    """
    array = load_array(points, "points file")
    label_array = None if labels is None else load_array(labels, "labels file")
    source = {"points": str(points), "labels": None if labels is None else str(labels)}
    return points_activations(array, label_array, source=source, min_points=min_points,
                              name=f"points ({points})", parameter="points")  # fmt: skip


# --- what a measure was given ----------------------------------------------------------


def as_activations(
    source: Any,
    data: Any = None,
    *,
    labels: Any = None,
    min_points: int = 2,
    classifier: bool | None = None,
    max_memory: int | None = None,
    extract_options: Mapping[str, Any] | None = None,
) -> Activations:
    """Activations from a measure's `source` (activations, a bare array, or a model with `data`),
    with `labels` when given; `max_memory` bounds the extraction's RAM when there is one (and
    is checked either way)."""
    extract_options = dict(extract_options or {})
    if max_memory is not None:
        max_memory = check_count(max_memory, name="max_memory")
    if isinstance(source, Activations):
        if data is not None or extract_options:
            raise InputError(
                "these are activations already; data and extraction options go with a model "
                f"(got {', '.join(['data'] * (data is not None) + list(extract_options))}).",
                parameter="data" if data is not None else next(iter(extract_options)),
            )
        return source if labels is None else source.with_labels(to_numpy(labels))
    if _is_model(source):
        from .pipeline import extract_activations

        if data is None:
            raise InputError("a model needs data: measure(model, data).", parameter="data")
        if max_memory is not None:
            extract_options.setdefault("max_memory", max_memory)
        return extract_activations(source, data, classifier=classifier, labels=labels, **extract_options)
    if data is not None:
        raise InputError("data goes with a model; for bare points give labels=... instead.", parameter="data")
    if extract_options:
        raise InputError(
            f"extraction options ({', '.join(extract_options)}) go with a model, not with bare points.",
            parameter=next(iter(extract_options)),
        )
    if isinstance(source, (str, Path)):
        return load_points(source, min_points=min_points) if labels is None else load_points(
            source, min_points=min_points).with_labels(to_numpy(labels))  # fmt: skip
    return points_activations(source, labels, min_points=min_points)


def _is_model(source: Any) -> bool:
    """An nn.Module or a LoadedModel (neither can exist before torch and the model loader are
    imported, so bare points never import them to find out)."""
    if "torch" not in sys.modules:
        return False
    from torch import nn

    from ..sources.models import LoadedModel

    return isinstance(source, (nn.Module, LoadedModel))


def estimator_device(acts: Activations, device: Any):
    """Where the estimators run: `device`, else where the model ran, else the CPU. Bare points
    on a CPU get the string "cpu" while torch is not loaded (`device.cpu_without_torch`), a
    torch.device otherwise."""
    if acts.model is None and cpu_without_torch(device):
        return "cpu"
    from ..device import resolve_device

    if device is not None:
        return resolve_device(device)
    if acts.model is not None:
        from ..device import model_device

        return model_device(acts.model.module)
    return resolve_device("cpu")
