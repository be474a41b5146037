"""From a model and data (or a bare point cloud) to `Activations`: the one way every measure,
the CLI and the sweep get their per-layer arrays.

`model_activations` picks layers on an example batch, finds the classifier when asked, and
extracts every chosen layer and the classifier's input in one forward pass (through the
activation cache when a data key is known); `points_activations` wraps a bare point cloud
as a single layer named `points`, and `layers_from_points` reads one from a file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..errors import InputError
from ..extraction.activations import Activations, LayerRecord, extract
from ..extraction.cache import path_fingerprint
from ..extraction.classifier import find_classifier
from ..extraction.hooks import to_device
from ..extraction.layers import select_layers
from ..sources.data import LabelledData, data_location
from ..sources.models import LoadedModel
from ..validation import as_labels, as_points, existing_file

CLASSIFIER_CHECK_ROWS = 16
"""Samples of the example batch on which the classifier is found and its input compared."""


def load_array(path: str, what: str) -> np.ndarray:
    """A numeric array from a `.npy` file or a one-array `.npz` (never a pickle)."""
    p = existing_file(path, what=what)
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as archive:
                if len(archive.files) != 1:
                    raise InputError(
                        f"{p} holds arrays {archive.files}; give a .npy file or a one-array .npz."
                    )
                return archive[archive.files[0]]
        return np.load(p, allow_pickle=False)
    except InputError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(
                f"{p} holds Python objects (a pickle), which are not loaded; save a numeric array."
            ) from None
        raise InputError(f"could not read {what} {p}: {exc}") from None
    except Exception as exc:
        raise InputError(f"could not read {what} {p}: {exc}") from None


def points_activations(
    points, labels=None, *, source: Mapping[str, Any] | None = None, min_points: int = 2, name: str = "points"
) -> Activations:
    """A bare point cloud (N, D) as Activations with one layer named `points` (a float64 copy
    is not made: the validated array is used as is)."""
    x = as_points(points, name=name, min_points=min_points)
    y = None if labels is None else as_labels(labels, len(x), name="labels")
    record = LayerRecord("points", (x.shape[1],), "none", x.shape[1], False, False)
    source = dict(source) if source is not None else {"points": "array", "labels": None, "n_points": len(x)}
    return Activations({"points": x}, {"points": record}, y, source=source)


def layers_from_points(
    points_path: str, labels_path: str | None = None, *, min_points: int = 2
) -> Activations:
    """A bare point cloud (`.npy`, or an `.npz` with one array) as one layer named `points`."""
    points = load_array(points_path, "points file")
    labels = None if labels_path is None else load_array(labels_path, "labels file")
    source = {"points": str(points_path), "labels": labels_path, "n_points": len(points)}
    x = as_points(points, name=f"points ({points_path})", min_points=min_points)
    y = None if labels is None else as_labels(labels, len(x), name=f"labels ({labels_path})")
    record = LayerRecord("points", (x.shape[1],), "none", x.shape[1], False, False)
    return Activations({"points": x}, {"points": record}, y, source=source)


def example_batch(data, n: int = 1):
    """The first `n` inputs of `data` as one batch (a tensor, or a dict of tensors)."""
    if isinstance(data, LabelledData):
        data = data.dataset
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if isinstance(data, torch.Tensor):
        return data[:n]
    from ..extraction.activations import _split_batch  # the one reading of a batch's parts

    if isinstance(data, DataLoader):
        data = data.dataset
    items = [data[i] for i in range(min(n, len(data)))]
    if not items:
        raise InputError("the data set is empty; give at least one sample.")
    batch = torch.utils.data.default_collate(items)
    return _split_batch(batch)[0]


def _select(module, example, patterns) -> list[str]:
    try:
        return select_layers(module, example, list(patterns) if patterns else None)
    except InputError:
        raise
    except RuntimeError as exc:
        shape = tuple(example.shape[1:]) if isinstance(example, torch.Tensor) else "a dict batch"
        raise InputError(
            f"the model does not accept the data's inputs of shape {shape}: {str(exc).splitlines()[0]}"
        ) from None


def data_key(data) -> str | None:
    """What identifies the inputs for the activation cache, or None when nothing does.

    A `LabelledData`: its spec, split, number of points and seed, and for data read from a
    file or folder the `path_fingerprint` of its `data_location` (resolved path; size and
    modification time of the file, or of every file in the folder), so changed data gets new
    cache entries. A tensor or array: the digest of its bytes. Anything else (a Dataset, a
    DataLoader) has no key of its own.
    """
    if isinstance(data, LabelledData):
        key = f"{data.spec}|{data.split}|{data.n_points}|{data.seed}"
        if data.preprocessing:
            key += f"|{data.preprocessing}"
        location = data_location(data.spec)
        if location is not None:
            key += f"|{path_fingerprint(location)}"
        return key
    if isinstance(data, (torch.Tensor, np.ndarray)):
        array = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else data
        array = np.ascontiguousarray(array)
        digest = hashlib.sha256(f"{array.dtype}|{array.shape}|".encode() + array.tobytes()).hexdigest()
        return f"array|{digest}"
    return None


def model_source(loaded: LoadedModel) -> dict[str, Any]:
    """What a result records about the model: its file, description, weights digest and
    (for a project checkpoint) its architecture, metrics and epoch."""
    entry: dict[str, Any] = {
        "model": str(Path(loaded.path)) if loaded.path is not None else loaded.description,
        "model_description": loaded.description,
        "weights_digest": loaded.digest,
    }
    if loaded.checkpoint:
        kept = ("arch", "arch_args", "metrics", "epoch")
        entry["checkpoint"] = {k: v for k, v in loaded.checkpoint.items() if k in kept}
    return entry


def data_source(data, n_points: int) -> dict[str, Any]:
    """What a result records about the data: the spec, split, size and seed of a LabelledData
    (and its class names when the data set has them), else the kind of object and its size."""
    if isinstance(data, LabelledData):
        source = {"data": data.spec, "split": data.split, "n_points": data.n_points, "seed": data.seed}
        if data.preprocessing:
            source["preprocessing"] = data.preprocessing
        if data.class_names:
            source["class_names"] = list(data.class_names)
        return source
    return {"data": type(data).__name__, "n_points": n_points}


def model_activations(
    loaded: LoadedModel,
    data,
    *,
    layers: Sequence[str] | str | None = None,
    reduction: str | Mapping[str, str] = "auto",
    batch_size: int = 256,
    cache_dir: str | None = None,
    use_cache: bool = True,
    key: str | None = None,
    max_memory: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    classifier: bool | None = False,
    progress: bool = False,
) -> Activations:
    """The chosen layers of `loaded` over `data`, extracted in one forward pass.

    data: a LabelledData, a tensor or array of inputs, a Dataset or a DataLoader.
    layers: names or globs (None: the default layers). classifier: True finds the model's
    classifier (an InputError when it has none) and captures its input in the same pass;
    None does so when there is one; False does not look. The cache is used when `use_cache`
    and a data key is known (`key`, else `data_key(data)`); the model is keyed by its
    description and weights digest.
    """
    module = loaded.module
    dataset = data.dataset if isinstance(data, LabelledData) else data
    if isinstance(dataset, np.ndarray):
        dataset = torch.from_numpy(dataset)
    example = example_batch(dataset, CLASSIFIER_CHECK_ROWS)
    device = torch.device(device)
    example = to_device(example, device)
    if isinstance(layers, str):
        layers = [layers]
    names = _select(module, example[:1] if isinstance(example, torch.Tensor) else example, layers)
    head = None
    if classifier is not False:
        try:
            head = find_classifier(module, example)
        except InputError:
            if classifier:
                raise
    key = key or data_key(data)
    acts = extract(
        module,
        dataset,
        names,
        capture_inputs=[head.name] if head is not None else (),
        reduction=reduction,
        batch_size=batch_size,
        device=device,
        cache_dir=cache_dir,
        use_cache=use_cache and key is not None,
        model_key=f"{loaded.description}|{loaded.digest}",  # code changes of an arch get new entries too
        data_key=key,
        max_memory=max_memory,
        seed=seed,
        progress=progress,
    )
    labels = np.asarray(data.labels) if isinstance(data, LabelledData) else acts.labels
    source = {**model_source(loaded), **data_source(data, acts.n_points), "reduction": reduction,
              "reductions": {name: record.reduction for name, record in acts.info.items()}}  # fmt: skip
    if "checkpoint" in source:  # the JSON has always listed the checkpoint last
        source["checkpoint"] = source.pop("checkpoint")
    return Activations(
        dict(acts.items()),
        dict(acts.info),
        labels,
        acts._temp_dir,
        source=source,
        model=loaded,
        data=data,
        module_inputs=acts.module_inputs,
        classifier=head,
    )
