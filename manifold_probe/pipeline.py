"""From what the user names (a checkpoint and a data spec, or an array file) to per-layer arrays.

Every command that measures layers starts here: `layers_from_model` loads the model and
the data, selects layers and extracts their activations in one pass (cached on disk);
`layers_from_points` reads a bare point cloud as a single layer named `points`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .device import resolve_device
from .errors import InputError
from .extract.activations import extract
from .extract.cache import path_fingerprint
from .extract.layers import select_layers
from .sources.data import LabelledData, data_location, load_data
from .sources.models import LoadedModel, load_model
from .validation import as_labels, as_points, existing_file


@dataclass(frozen=True)
class ModelSpec:
    """How to load a model: a path, and for a bare state_dict its architecture and class count."""

    path: str
    arch: str | None = None
    num_classes: int | None = None
    trust_checkpoint: bool = False


@dataclass(frozen=True)
class DataSelection:
    """Which data: a spec (`digits`, `npz:PATH`, ...), the split, a seeded subset size."""

    spec: str = "digits"
    split: str = "train"
    n_points: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class ExtractionOptions:
    """Which layers and how to store them (see `manifold_probe.extract`)."""

    layers: tuple[str, ...] | None = None
    reduction: str | dict[str, str] = "none"  # a spec, or {"default": spec, layer pattern: spec}
    batch_size: int = 256
    cache_dir: str | None = None
    use_cache: bool = True
    max_memory: int | None = None


@dataclass(frozen=True)
class LayerArray:
    """One layer's activations as points (N, features) and its per-sample output shape."""

    name: str
    points: np.ndarray
    shape: tuple[int, ...]


@dataclass
class LayerArrays:
    """The layers of one model on one data set (or one bare point cloud), in model order."""

    layers: list[LayerArray]
    labels: np.ndarray | None
    source: dict[str, Any]
    model: LoadedModel | None = None
    data: LabelledData | None = None
    _closers: list = field(default_factory=list, repr=False)

    def close(self) -> None:
        for close in self._closers:
            close()
        self._closers.clear()

    def __enter__(self) -> LayerArrays:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_array(path: str, what: str) -> np.ndarray:
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


def layers_from_points(
    points_path: str, labels_path: str | None = None, *, min_points: int = 2
) -> LayerArrays:
    """A bare point cloud (`.npy`, or an `.npz` with one array) as one layer named `points`."""
    points = as_points(
        load_array(points_path, "points file"), name=f"points ({points_path})", min_points=min_points
    )
    labels = None
    if labels_path is not None:
        labels = as_labels(
            load_array(labels_path, "labels file"), len(points), name=f"labels ({labels_path})"
        )
    source = {"points": str(points_path), "labels": labels_path, "n_points": len(points)}
    return LayerArrays([LayerArray("points", points, (points.shape[1],))], labels, source)


def load_model_spec(model: ModelSpec, *, device="cpu") -> LoadedModel:
    """The model named by `model`, in eval mode on `device`."""
    return load_model(
        model.path,
        arch=model.arch,
        num_classes=model.num_classes,
        trust_checkpoint=model.trust_checkpoint,
        device=resolve_device(device),
    )


def example_input(loaded: LoadedModel, data_spec: str = "digits") -> torch.Tensor:
    """A batch of one input for tracing the model: zeros of the checkpoint's input shape when
    it is known, else the first sample of `data_spec`."""
    device = next(
        (t.device for t in (*loaded.module.parameters(), *loaded.module.buffers())), torch.device("cpu")
    )
    if loaded.input_shape is not None:
        return torch.zeros((1, *loaded.input_shape), device=device)
    return load_data(data_spec, n_points=None).dataset[0][0].unsqueeze(0).to(device)


def _select(loaded: LoadedModel, example: torch.Tensor, patterns) -> list[str]:
    try:
        return select_layers(loaded.module, example, list(patterns) if patterns else None)
    except InputError:
        raise
    except RuntimeError as exc:
        raise InputError(
            f"the model does not accept the data's inputs of shape {tuple(example.shape[1:])}: "
            f"{str(exc).splitlines()[0]}"
        ) from None


def data_key(data: DataSelection) -> str:
    """What identifies the inputs for the activation cache: the selection, and for data read
    from a file or folder the `path_fingerprint` of its `data_location` (resolved path; size
    and modification time of the file, or of every file in the folder), so changed data gets
    new cache entries."""
    key = f"{data.spec}|{data.split}|{data.n_points}|{data.seed}"
    location = data_location(data.spec)
    if location is not None:
        key += f"|{path_fingerprint(location)}"
    return key


def layers_from_model(
    model: ModelSpec,
    data: DataSelection,
    extraction: ExtractionOptions = ExtractionOptions(),
    *,
    device: str = "auto",
    seed: int = 0,
    progress: bool = False,
) -> LayerArrays:
    """Load the model and the data, pick layers, extract all of them in one forward pass."""
    dev = resolve_device(device)
    loaded = load_model_spec(model, device=dev)
    dataset = load_data(data.spec, split=data.split, n_points=data.n_points, seed=data.seed)
    names = _select(loaded, dataset.dataset[0][0].unsqueeze(0).to(dev), extraction.layers)
    acts = extract(
        loaded.module,
        dataset.dataset,
        names,
        reduction=extraction.reduction,
        batch_size=extraction.batch_size,
        device=dev,
        cache_dir=extraction.cache_dir,
        use_cache=extraction.use_cache,
        model_key=f"{loaded.description}|{loaded.digest}",  # code changes of an arch get new entries too
        data_key=data_key(data),
        max_memory=extraction.max_memory,
        seed=seed,
        progress=progress,
    )
    layers = [LayerArray(name, acts[name], tuple(acts.info[name].shape)) for name in names]
    source = {
        "model": str(Path(model.path)),
        "model_description": loaded.description,
        "weights_digest": loaded.digest,
        "data": data.spec,
        "split": data.split,
        "n_points": len(dataset.labels),
        "seed": data.seed,
        "reduction": extraction.reduction,
    }
    if loaded.checkpoint:
        kept = ("arch", "arch_args", "metrics", "epoch")
        source["checkpoint"] = {k: v for k, v in loaded.checkpoint.items() if k in kept}
    result = LayerArrays(layers, np.asarray(dataset.labels), source, loaded, dataset)
    if hasattr(acts, "close"):
        result._closers.append(acts.close)
    return result
