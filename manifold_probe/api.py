"""The Python API's front door: models, data, layers and activations; the measures by name.

`load_model`, `load_data`, `list_layers` and `extract` are here; every measure
(`intrinsic_dimension`, `curvature`, `collapse`, `spectra`, `cutting_planes`, and any measure
registered later) is its measure module's function, found through the registry
(`manifold_probe.registry`): `mp.curvature` and `from manifold_probe.api import curvature` both
reach it.

Every measure shares one signature grammar: `measure(source, data=None, *, ..., seed,
n_bootstrap, device, max_memory, progress, **extract_options)`, where `source` is activations
(from `extract`), a bare (N, D) array, or a model (then give `data`). Each returns a frozen
`Result` with one interface: `metrics`, `intervals`, `details`, `to_frame()`, `to_dict()`,
`write(path)`, `to_html(path)`. The command line is a client of these functions: for the same
seed the numbers are the same (tests/test_api.py checks it). docs/python-api.md is a
walkthrough and docs/methods.md says what each number means.

Data may be a tensor or array of inputs (batch first), an `(inputs, labels)` pair, a map-style
Dataset yielding `(x, y)`, `x` or a dict of tensors, a DataLoader (its batches as they come,
labels the second entry of a tuple or the `labels` entry of a dict), a dict of arrays, or
`load_data(...)`; a dict batch is passed to the model as keyword arguments. Nothing is cached
on disk unless `cache` is given. No function changes its arguments: the model's weights,
training flags and device are as before the call, and arrays are not written to.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from . import registry
from .device import resolve_device
from .errors import InputError
from .extraction.activations import Activations
from .extraction.layers import LayerInfo, default_layers
from .extraction.layers import list_layers as _list_layers
from .extraction.reductions import Reduction
from .measures.pipeline import as_data, example_batch, extract_activations
from .measures.sources import load_points  # public here too; it needs no torch
from .sources.data import LabelledData
from .sources.data import load_data as _load_data
from .sources.models import INFO_ATTRIBUTE, model_info, on_device
from .sources.models import load_model as _load_model
from .validation import check_seed

__all__ = ["extract", "list_layers", "load_data", "load_model", "load_points", "model_info"]


# --- models and data ---------------------------------------------------------------------


def load_model(
    path: str | os.PathLike | None = None,
    *,
    arch: str | None = None,
    num_classes: int | None = None,
    arch_args: dict | None = None,
    in_channels: int | None = None,
    trust_checkpoint: bool = False,
    device: str = "cpu",
) -> nn.Module:
    """A model from a file or by name, as an `nn.Module` in eval mode, with its metadata attached.

    Parameters
    ----------
    path : mprobe's checkpoint (from `mprobe train`), a state_dict or `.safetensors` file
        (give `arch` and `num_classes`), a TorchScript archive or a `torch.export` program
        (`.pt2`); or an architecture by name: `timm:NAME`, `hf:FOLDER` (a local config.json,
        with its weights file when the folder has one), `torchvision:NAME`, built offline
        with seeded initial weights.
    arch : architecture of a bare state_dict: `digits-cnn`, `digits-mlp`, `torchvision:NAME`,
        `timm:NAME`, `hf:FOLDER`.
    num_classes : number of classes of a bare state_dict.
    arch_args : further arguments of the architecture: torchvision sizes
        (`{"image_size": 32}`), timm's `create_model` arguments (`in_chans`, `embed_dim`,
        `depth`), or Hugging Face config fields (`num_labels`).
    in_channels : input channels: rebuilds a torchvision stem (a 1-channel ResNet `conv1`).
    trust_checkpoint : allow a whole pickled module (unpickling runs code from the file).
    device : `cpu`, `cuda` or `auto`.

    Returns
    -------
    The module; `model_info(module)` (also `module.mprobe_info`) is its `LoadedModel`:
    description, kind, checkpoint metadata, architecture, input shape, number of classes.

    Example
    -------
    >>> model = mp.load_model("ckpt.pt")
    >>> 0 <= mp.model_info(model).checkpoint["metrics"]["test_accuracy"] <= 1
    True
    >>> vit = mp.load_model("timm:vit_tiny_patch16_224", arch_args={"img_size": 32, "depth": 4})
    >>> mp.model_info(vit).description
    'timm:vit_tiny_patch16_224(img_size=32, depth=4) (initial weights, seed 0)'
    """
    loaded = _load_model(
        path, arch=arch, num_classes=num_classes, arch_args=arch_args, in_channels=in_channels,
        trust_checkpoint=trust_checkpoint, device=resolve_device(device),
    )  # fmt: skip
    if loaded.path is None and loaded.kind != "named":
        loaded = replace(loaded, path=str(path))
    setattr(loaded.module, INFO_ATTRIBUTE, loaded)
    return loaded.module


def load_data(
    spec: Any = "digits",
    *,
    split: str = "train",
    n_points: int | None = None,
    seed: int = 0,
    normalize: str | tuple | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    model: nn.Module | None = None,
    input_shape: Sequence[int] | str | None = None,
) -> LabelledData:
    """A labelled data set, itself a map-style `Dataset` of (input, label).

    Parameters
    ----------
    spec : `digits` (built in), `npz:PATH` (arrays x, y; or named arrays such as input_ids,
        attention_mask, labels, passed to the model as keyword arguments), `imagefolder:ROOT`,
        `cifar10:ROOT`, `cifar100:ROOT`, `mnist:ROOT`, `fashion-mnist[:ROOT]`; or a dict of
        arrays (a Hugging Face `datasets.Dataset` too): labels under `labels`, `label` or `y`,
        the rest keyword arguments of the model. Nothing is ever downloaded.
    split : `train` or `test`.
    n_points : a reproducible, class-stratified seeded subset of this many samples.
    seed : the subset's seed.
    normalize, image_size : per-channel standardisation and resizing of image sets;
        `normalize="auto"` takes the normalisation `model` was trained with (mprobe's own
        checkpoints record it; see `sources.input_fit.training_normalization`).
    channels : 1 reads an image folder as grayscale, 3 (the default) as RGB.
    model : the model the data is for: "auto" reads it, and a flat or channel-less sample
        (N x 784, N x 28 x 28) is reshaped to its input shape (1 x 28 x 28) when unambiguous.
    input_shape : an explicit per-sample shape, e.g. (1, 28, 28) or "1,28,28".

    Returns
    -------
    A `LabelledData`: `labels`, `num_classes`, `class_names`, `input_shape`, `inputs()`.

    Example
    -------
    >>> data = mp.load_data("digits", split="train", n_points=500, seed=0)
    >>> len(data), data.num_classes
    (500, 10)
    >>> ids, mask = np.ones((6, 5), dtype=np.int64), np.ones((6, 5), dtype=np.int64)
    >>> text = mp.load_data({"input_ids": ids, "attention_mask": mask, "labels": [0, 1, 0, 1, 0, 1]})
    >>> len(text), text.num_classes
    (6, 2)
    """
    from .sources.input_fit import fit_input_shape, parse_input_shape, training_normalization

    seed = check_seed(seed)
    info = model_info(model) if model is not None else None
    if isinstance(normalize, str) and normalize == "auto":
        normalize = training_normalization(info)
    data = _load_data(spec, split=split, n_points=n_points, seed=seed, normalize=normalize,
                      image_size=image_size, channels=channels)  # fmt: skip
    return fit_input_shape(data, parse_input_shape(input_shape), info.input_shape if info else None)


def list_layers(model: nn.Module, data: Any = None, *, device: str | None = None) -> list[LayerInfo]:
    """The layers a forward pass of `model` produces, in order: name, module type, output shape.

    Parameters
    ----------
    model : any `nn.Module` (names are module paths as in `model.named_modules()`, `path#2`
        for a second call, `logits` for the output).
    data : inputs to trace the model with (anything `extract` takes); optional when the
        model knows its input shape (mprobe's checkpoints).
    device : where to run (None: where the model is).

    Returns
    -------
    A list of `LayerInfo` (`name`, `module_type`, `output_shape`, `n_features`, `default`:
    whether `extract` takes the layer when `layers` is not given).

    Example
    -------
    >>> [(layer.name, layer.output_shape) for layer in mp.list_layers(model, data) if layer.default]
    [('block1', (8, 4, 4)), ('block2', (8, 2, 2)), ('pool', (8,)), ('logits', (10,))]
    """
    module, dev = on_device(model, device)
    info = model_info(module)
    data, _ = as_data(data)
    if data is None:
        if info.input_shape is None:
            raise InputError("the model does not record its input shape; give data to trace it with.",
                             parameter="data")  # fmt: skip
        example = torch.zeros((1, *info.input_shape), device=dev)
    else:
        example = _to(example_batch(data, 1), dev)
    defaults = set(default_layers(module, example))
    return [replace(layer, default=layer.name in defaults) for layer in _list_layers(module, example)]


def _to(batch, device: torch.device):
    if isinstance(batch, Mapping):
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    return batch.to(device)


# --- activations ---------------------------------------------------------------------------


def extract(
    model: nn.Module,
    data: Any,
    *,
    layers: str | Sequence[str] | None = None,
    reduction: str | Reduction | Mapping[str, str] | Sequence[str] = "auto",
    layout: str | Mapping[str, str] | Sequence[str] = "auto",
    batch_size: int = 256,
    cache: str | os.PathLike | bool | None = None,
    data_key: str | None = None,
    max_memory: int | None = None,
    classifier: bool | None = None,
    labels: Any = None,
    seed: int = 0,
    device: str | None = None,
    progress: bool = False,
) -> Activations:
    """The activations of `model`'s layers over `data`, in one forward pass.

    Parameters
    ----------
    model : any `nn.Module` (it is run in eval mode; its flags are restored afterwards).
    data : a tensor or array of inputs, an `(inputs, labels)` pair, a Dataset, a DataLoader,
        `load_data(...)`, or a dict of arrays (keyword arguments of the model and their
        `labels`, as `load_data` reads it).
    layers : names or globs (`"layer*"`), see `list_layers`; None: the outputs of the
        model's blocks plus `logits`.
    reduction : `auto` (token sequences: `mean`; maps and vectors: `none`), `none` or
        `flatten`, `avgpool` (spatial mean of (C, H, W) maps), `cls`, `mean` (over tokens,
        with the batch's `attention_mask`), `last` (last real token), `token:I`, `project:N`
        (seeded Gaussian projection), or a dict {layer pattern: spec, "default": spec}; see
        `manifold_probe.extraction.reductions`; a list of command-line style items
        (`avgpool`, `LAYER=SPEC`) works too. `cls` on a sequence whose token 0 is not a class
        token (DeiT's `patch_embed`, a causal LM) leaves that layer out, with the reason in
        `Activations.refused` (a measure keeps it as `skipped`); `token:0` reads it anyway.
    layout : the layout of spatial maps, which decides what `avgpool` averages: `auto` (the
        default: detected per layer; timm's Swin stages are `channels_last`, H x W x C),
        `channels_first`, `channels_last`, or a dict {layer pattern: layout, "default": ...};
        `list_layers` shows each layer's, the result's `source.layouts` records it.
    batch_size : inputs per forward pass (a DataLoader keeps its own batches).
    cache : None keeps everything in memory; a folder (or True for the user cache folder)
        caches each layer on disk, keyed by the weights' digest, the data and the layer.
    data_key : what identifies the data in the cache; needed for a Dataset or DataLoader
        (tensors, arrays and `load_data` sets have their own).
    max_memory : bytes of RAM for the arrays without a cache; larger layers go to a
        temporary file.
    classifier : also capture the input of the model's classifier (its last nn.Linear) in
        the same pass, for `collapse` and `spectra`; None does so when there is one.
    labels : one label per input (else the data's own, if it yields any).
    seed : seeds `project:N`.
    device : where the model runs (None: where it is; another device runs a copy).

    Returns
    -------
    `Activations`: layer name -> (N, features) float32 array, with `labels`, `source`,
    `module_inputs` and `classifier`. Close it (or use `with`) to free temporary files.

    Example
    -------
    >>> acts = mp.extract(model, data, layers="block*", reduction="avgpool")
    >>> acts["block1"].shape  # 300 points, 8 channels
    (300, 8)
    >>> swin = mp.load_model("timm:swin_tiny_patch4_window7_224", arch_args={"img_size": 56, "embed_dim": 24,
    ...     "depths": (1, 1), "num_heads": (1, 2), "num_classes": 3})
    >>> images = torch.randn(20, 3, 56, 56)
    >>> mp.extract(swin, images, layers="layers.0", reduction="avgpool")["layers.0"].shape  # 14 x 14 x 24
    (20, 24)
    """
    return extract_activations(
        model, data, layers=layers, reduction=reduction, layout=layout, batch_size=batch_size, cache=cache,
        data_key=data_key, max_memory=max_memory, classifier=classifier, labels=labels, seed=seed,
        device=device, progress=progress,
    )  # fmt: skip


def __getattr__(name: str) -> Any:
    """A measure's API function by its name (`registry.by_api_name`), loaded on first use."""
    measure = registry.by_api_name(name)
    if measure is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return registry.resolve(measure.function)
