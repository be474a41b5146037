"""From what a measure is given to `Activations`: the one way every measure, the command line
and the sweep get their per-layer arrays, validated once.

A measure's first argument (`source`) is activations (from `mp.extract`), a bare (N, D)
array or tensor (one layer named `points`), or a model (with its `data`). `sources.as_activations`
turns any of these into `Activations`:

- a model and data: `extract_activations` picks layers on an example batch, finds the
  classifier when asked, and extracts every chosen layer and the classifier's input in one
  forward pass (through the activation cache when a data key is known), building the final
  `Activations` once, with its source, labels and classifier;
- a bare array: `points_activations` (checked once, never copied);
- activations: as they are (with `labels`, a copy holding those labels).

Data is anything `mp.extract` takes: a tensor or array of inputs, a Dataset, a DataLoader,
`load_data(...)`, a dict of arrays, or an `(inputs, labels)` pair.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..errors import InputError
from ..extraction.activations import Activations
from ..extraction.cache import content_fingerprint
from ..extraction.class_tokens import class_token_refusals
from ..extraction.classifier import find_classifier
from ..extraction.engine import extract, n_samples, split_batch
from ..extraction.hooks import LOGITS, to_device
from ..extraction.layers import list_layers, select_layers
from ..extraction.layouts import resolve_layouts
from ..extraction.patterns import layer_matches
from ..extraction.reductions import Reduction, parse_reduction_options, resolve_reductions
from ..sources.data import LabelledData, data_location, load_data
from ..sources.models import LoadedModel, model_info, on_device
from ..validation import as_labels, check_count, check_seed, to_numpy

__all__ = ["extract_activations"]

CLASSIFIER_CHECK_ROWS = 16
"""Samples of the example batch on which the classifier is found and its input compared."""


# --- points: `measures/points.py` (no torch) -------------------------------------------


# --- data ------------------------------------------------------------------------------


def as_data(data: Any) -> tuple[Any, Any]:
    """(inputs, labels or None) of what a user passed as data: a dict of arrays (or a Hugging
    Face `datasets.Dataset`) as `load_data` reads it, an `(inputs, labels)` pair or list as
    its two parts, an array of inputs as a tensor, anything else as it is."""
    if isinstance(data, Mapping) or hasattr(data, "column_names"):
        return load_data(data), None
    if isinstance(data, (tuple, list)) and len(data) == 2 and not isinstance(data[0], (int, float)):
        inputs, labels = data
        inputs = torch.from_numpy(np.asarray(inputs)) if not isinstance(inputs, torch.Tensor) else inputs
        return inputs, np.asarray(to_numpy(labels))
    if isinstance(data, np.ndarray):
        return torch.from_numpy(data), None
    return data, None


def example_batch(data, n: int = 1):
    """The first `n` inputs of `data` as one batch (a tensor, or a dict of tensors)."""
    if isinstance(data, LabelledData):
        data = data.dataset
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if isinstance(data, torch.Tensor):
        return data[:n]
    if isinstance(data, DataLoader):
        data = data.dataset
    items = [data[i] for i in range(min(n, len(data)))]
    if not items:
        raise InputError("the data set is empty; give at least one sample.", parameter="data")
    batch = torch.utils.data.default_collate(items)
    return split_batch(batch)[0]


def default_data_key(data) -> str | None:
    """What identifies the inputs for the activation cache, or None when nothing does.

    A `LabelledData`: its spec, split, number of points and seed, and for data read from a
    file or folder the `content_fingerprint` of its `data_location` (resolved path and a
    SHA-256 of the bytes of the file, or of every file in the folder), so changed data gets
    new cache entries, whatever its size and times. A tensor or array: the digest of its
    bytes. Anything else (a Dataset, a DataLoader) has no key of its own.
    """
    if isinstance(data, LabelledData):
        key = f"{data.spec}|{data.split}|{data.n_points}|{data.seed}"
        if data.preprocessing:
            key += f"|{data.preprocessing}"
        location = data_location(data.spec)
        if location is not None:
            key += f"|{content_fingerprint(location)}"
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


# --- models ----------------------------------------------------------------------------


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


def _reduction_plan(reduction: str | Reduction | Mapping[str, str] | Sequence[str]):
    """A reduction as `extract` takes it: a spec, a {pattern: spec} plan, or command-line style
    items (`avgpool`, `LAYER=SPEC`)."""
    if isinstance(reduction, (list, tuple)):
        return parse_reduction_options(list(reduction))
    return reduction


def extract_activations(
    model: nn.Module | LoadedModel,
    data: Any,
    *,
    layers: Sequence[str] | str | None = None,
    reduction: str | Reduction | Mapping[str, str] | Sequence[str] = "auto",
    layout: str | Mapping[str, str] | Sequence[str] = "auto",
    batch_size: int = 256,
    cache: str | os.PathLike | bool | None = None,
    data_key: str | None = None,
    max_memory: int | None = None,
    classifier: bool | None = None,
    labels: Any = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> Activations:
    """The activations of `model`'s chosen layers over `data`, in one forward pass (`mp.extract`
    documents the options). The model runs where it is, or on a copy on `device`."""
    seed = check_seed(seed)
    batch_size = check_count(batch_size, name="batch_size", minimum=1)
    module, dev = on_device(model.module if isinstance(model, LoadedModel) else model, device)
    loaded = model_info(module)
    data, pair_labels = as_data(data)
    labels = pair_labels if labels is None else to_numpy(labels)
    if layers is not None:
        layers = [layers] if isinstance(layers, str) else list(layers)
        if not layers or not all(isinstance(p, str) and p.strip() for p in layers):
            raise InputError("give at least one layer name or pattern (see list_layers).", parameter="layers")
    use_cache = cache is not None and cache is not False
    cache_dir = None if cache is True or not use_cache else str(cache)
    key = data_key or default_data_key(data)
    if use_cache and key is None:
        raise InputError(
            f"caching data of type {type(data).__name__} needs a data key: a string that identifies "
            "these inputs (their source and order).",
            parameter="data_key",
        )
    dataset = data.dataset if isinstance(data, LabelledData) else data
    example = to_device(example_batch(dataset, CLASSIFIER_CHECK_ROWS), dev)
    first = example[:1] if isinstance(example, torch.Tensor) else example
    names = _select(module, first, layers)
    head = None
    if classifier is not False:
        try:
            head = find_classifier(module, example)
        except InputError:
            if classifier:
                raise
    if isinstance(data, LabelledData):
        labels = np.asarray(data.labels) if labels is None else labels
    n_points = n_samples(dataset)
    if labels is not None:
        labels = as_labels(labels, n_points, name="labels")
    plan = _reduction_plan(reduction)
    if head is not None and head.position is not None and head.pad_token_id is None:
        plan, head = _read_logits_at(plan, names, head)
    layouts, refused = _layer_traits(module, first, names, plan, layout)
    source = {**model_source(loaded), **data_source(data, n_points),
              "reduction": plan.spec if isinstance(plan, Reduction) else plan}  # fmt: skip
    if "checkpoint" in source:  # the JSON has always listed the checkpoint last
        source["checkpoint"] = source.pop("checkpoint")
    return extract(
        module, dataset, names, capture_inputs=[head.name] if head is not None else (),
        reduction=plan, batch_size=batch_size, device=dev, cache_dir=cache_dir,
        use_cache=use_cache, model_key=f"{loaded.description}|{loaded.digest}", data_key=key,
        max_memory=max_memory, seed=seed, progress=progress, source=source, loaded=loaded,
        labelled=data if isinstance(data, LabelledData) else None, labels=labels, classifier=head,
        layouts=layouts, refused=refused,
    )  # fmt: skip


def _read_logits_at(plan, names: list[str], head):
    """(plan, head) of a language model (a head applied to every token, logits per token): the
    logits layer reduced at the head's position (`last`, the last real token) unless the plan
    names a position for it (`last`, `token:I`: then the head reads its input there too)."""
    if LOGITS not in names:
        return plan, head
    plan = {"default": plan} if isinstance(plan, (str, Reduction)) else dict(plan)
    chosen = resolve_reductions(plan, names)[LOGITS]
    if chosen.kind in ("last", "token"):
        return plan, replace(head, position=chosen.spec)
    if any(key != "default" and layer_matches(LOGITS, key) for key in plan):
        raise InputError(
            f"the logits of a language model are read at one token: give logits=last or logits=token:I, "
            f"not {chosen.spec}.",
            parameter="reduction",
        )
    return {**plan, LOGITS: head.position}, head


def _layer_traits(module, example, names: list[str], plan, layout):
    """(layout of each layer, {layer: (shape, reason)} of the layers where `cls` is refused),
    from one traced pass on `example` (`layers.detect_layouts`) and, where `cls` is asked of a
    token sequence, the class-token probe (`class_tokens`)."""
    infos = {info.name: info for info in list_layers(module, example)}
    layouts = resolve_layouts(layout, {name: infos[name].layout if name in infos else "" for name in names})
    reductions = resolve_reductions(plan, names)
    asked = {
        name: infos[name].output_shape for name in names if reductions[name].kind == "cls" and name in infos
    }
    refusals = class_token_refusals(module, example, asked)
    return layouts, {name: (infos[name].output_shape, reason) for name, reason in refusals.items()}
