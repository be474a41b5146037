"""The Python API: every measure of `mprobe`, for a model and data held in a notebook.

Every measure takes either activations (from `extract`, or a bare (N, D) array measured as
one layer named `points`) or a model and its data, and returns a frozen `Result` with one
interface: `metrics`, `intervals`, `details`, `to_frame()`, `to_dict()`, `write(path)`,
`to_html(path)`. The command line is a client of these functions: for the same seed the
numbers are the same (tests/test_api.py checks it). See docs/python-api.md for a walkthrough
and docs/methods.md for what each number means.

Data may be a tensor or array of inputs (batch first), a map-style Dataset yielding
`(x, y)`, `x` or a dict of tensors, a DataLoader (its batches as they come, labels the
second entry of a tuple or the `labels` entry of a dict), or `load_data(...)`; a dict batch
is passed to the model as keyword arguments. Nothing is cached on disk unless `cache` is
given. No function changes its arguments: the model's weights, training flags and device
are as before the call, and arrays are not written to.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from .device import resolve_device
from .errors import InputError
from .extraction.activations import Activations
from .extraction.layers import LayerInfo, default_layers
from .extraction.layers import list_layers as _list_layers
from .extraction.reductions import Reduction
from .geometry.id_profile import DEFAULT_METHODS
from .measures.collapse import (
    FISHER_POINTS,
    SPECTRUM_VALUES,
    classifier_from_arrays,
    collapse_profile,
    model_classifier,
    points_classifier,
    spectra_profile,
)
from .measures.curvature import curvature_profile, perturbation_curvature_profile
from .measures.cutting_planes import CuttingPlaneOptions, cutting_planes_profile
from .measures.intrinsic_dimension import id_profile
from .measures.pipeline import example_batch, model_activations, points_activations
from .results import Result
from .sources.data import LabelledData
from .sources.data import load_data as _load_data
from .sources.models import LoadedModel, weights_digest
from .sources.models import load_model as _load_model
from .validation import check_positive

__all__ = [
    "collapse",
    "curvature",
    "cutting_planes",
    "extract",
    "intrinsic_dimension",
    "list_layers",
    "load_data",
    "load_model",
    "model_info",
    "spectra",
]

INFO_ATTRIBUTE = "mprobe_info"
"""The attribute of a module from `load_model` that holds its `LoadedModel` metadata."""


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
    >>> mp.model_info(model).checkpoint["metrics"]["test_accuracy"]
    >>> vit = mp.load_model("timm:vit_tiny_patch16_224", arch_args={"img_size": 32, "depth": 4})
    """
    loaded = _load_model(
        path, arch=arch, num_classes=num_classes, arch_args=arch_args, in_channels=in_channels,
        trust_checkpoint=trust_checkpoint, device=resolve_device(device),
    )  # fmt: skip
    if loaded.path is None and loaded.kind != "named":
        loaded = replace(loaded, path=str(path))
    setattr(loaded.module, INFO_ATTRIBUTE, loaded)
    return loaded.module


def model_info(model: nn.Module) -> LoadedModel:
    """What is known about `model`: the metadata `load_model` attached, else a description
    of an in-memory module; the weights digest is always computed from its current weights.

    Example
    -------
    >>> mp.model_info(torch.nn.Linear(3, 2)).description
    'Linear (in memory)'
    """
    if isinstance(model, LoadedModel):
        return model
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    digest = weights_digest(model.state_dict())
    info = getattr(model, INFO_ATTRIBUTE, None)
    if isinstance(info, LoadedModel) and info.module is model:
        return replace(info, digest=digest)
    return LoadedModel(module=model, description=f"{type(model).__name__} (in memory)", kind="module",
                       digest=digest)  # fmt: skip


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
    >>> text = mp.load_data({"input_ids": ids, "attention_mask": mask, "labels": y})
    """
    from .sources.input_fit import fit_input_shape, parse_input_shape, training_normalization

    check_positive(seed, name="seed", integer=True, allow_zero=True)
    info = model_info(model) if model is not None else None
    if isinstance(normalize, str) and normalize == "auto":
        normalize = training_normalization(info)
    data = _load_data(spec, split=split, n_points=n_points, seed=seed, normalize=normalize,
                      image_size=image_size, channels=channels)  # fmt: skip
    return fit_input_shape(data, parse_input_shape(input_shape), info.input_shape if info else None)


def _as_data(data: Any) -> Any:
    """A dict of arrays (or a `datasets.Dataset`) as `load_data` reads it; other data as given."""
    if isinstance(data, Mapping) or hasattr(data, "column_names"):
        return load_data(data)
    return data


def _device_of(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _on_device(model: nn.Module, device: str | torch.device | None) -> tuple[nn.Module, torch.device]:
    """The model on `device` (None: where it is): the model itself, or a copy when it would
    have to move (the caller's model is never moved)."""
    here = _device_of(model)
    target = here if device is None else resolve_device(device)
    if target == here or (target.type == here.type and target.index is None):
        return model, here
    moved = copy.deepcopy(model).to(target)
    info = getattr(model, INFO_ATTRIBUTE, None)
    if isinstance(info, LoadedModel):
        setattr(moved, INFO_ATTRIBUTE, replace(info, module=moved))
    return moved, target


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
    >>> [(layer.name, layer.output_shape) for layer in mp.list_layers(model, data)]
    """
    module, dev = _on_device(model, device)
    info = model_info(module)
    data = _as_data(data)
    if data is None:
        if info.input_shape is None:
            raise InputError("the model does not record its input shape; give data to trace it with.")
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
    reduction: str | Reduction | Mapping[str, str] = "auto",
    batch_size: int = 256,
    cache: str | os.PathLike | bool | None = None,
    data_key: str | None = None,
    max_memory: int | None = None,
    classifier: bool | None = None,
    seed: int = 0,
    device: str | None = None,
    progress: bool = False,
) -> Activations:
    """The activations of `model`'s layers over `data`, in one forward pass.

    Parameters
    ----------
    model : any `nn.Module` (it is run in eval mode; its flags are restored afterwards).
    data : a tensor or array of inputs, a Dataset, a DataLoader, `load_data(...)`, or a dict
        of arrays (keyword arguments of the model and their `labels`, as `load_data` reads it).
    layers : names or globs (`"layer*"`), see `list_layers`; None: the outputs of the
        model's blocks plus `logits`.
    reduction : `auto` (token sequences: `mean`; maps and vectors: `none`), `none` or
        `flatten`, `avgpool` (spatial mean of (C, H, W) maps), `cls`, `mean` (over tokens,
        with the batch's `attention_mask`), `last` (last real token), `token:I`, `project:N`
        (seeded Gaussian projection), or a dict {layer pattern: spec, "default": spec}; see
        `manifold_probe.extraction.reductions`.
    batch_size : inputs per forward pass (a DataLoader keeps its own batches).
    cache : None keeps everything in memory; a folder (or True for the user cache folder)
        caches each layer on disk, keyed by the weights' digest, the data and the layer.
    data_key : what identifies the data in the cache; needed for a Dataset or DataLoader
        (tensors, arrays and `load_data` sets have their own).
    max_memory : bytes of RAM for the arrays without a cache; larger layers go to a
        temporary file.
    classifier : also capture the input of the model's classifier (its last nn.Linear) in
        the same pass, for `collapse` and `spectra`; None does so when there is one.
    seed : seeds `project:N`.
    device : where the model runs (None: where it is; another device runs a copy).

    Returns
    -------
    `Activations`: layer name -> (N, features) float32 array, with `labels`, `source`,
    `module_inputs` and `classifier`. Close it (or use `with`) to free temporary files.

    Example
    -------
    >>> acts = mp.extract(model, data, layers="block*", reduction="avgpool")
    >>> acts["block1"].shape
    """
    module, dev = _on_device(model, device)
    data = _as_data(data)
    if cache is None or cache is False:
        cache_dir, use_cache = None, False
    else:
        cache_dir, use_cache = (None if cache is True else str(cache)), True
        if data_key is None and not isinstance(data, (LabelledData, torch.Tensor, np.ndarray)):
            raise InputError(
                f"cache needs data_key for data of type {type(data).__name__}: a string that "
                "identifies these inputs (their source and order)."
            )
    return model_activations(
        model_info(module), data, layers=layers, reduction=reduction, batch_size=batch_size,
        cache_dir=cache_dir, use_cache=use_cache, key=data_key, max_memory=max_memory, seed=seed,
        device=dev, classifier=classifier, progress=progress,
    )  # fmt: skip


def _activations(
    source: Any,
    data: Any,
    *,
    labels: Any = None,
    min_points: int = 2,
    classifier: bool | None = None,
    extract_options: Mapping[str, Any],
) -> Activations:
    """Activations from what a measure was given: activations, a bare array, or a model and data."""
    if isinstance(source, Activations):
        if data is not None or extract_options:
            raise InputError("give either activations, or a model with data and extraction options.")
        return source
    if isinstance(source, (nn.Module, LoadedModel)):
        if data is None:
            raise InputError("a model needs data: measure(model, data).")
        module = source.module if isinstance(source, LoadedModel) else source
        acts = extract(module, data, classifier=classifier, **extract_options)
        return acts if labels is None else acts.with_labels(labels)
    if data is not None:
        raise InputError("data goes with a model; for bare points give labels=... instead.")
    if isinstance(source, torch.Tensor):
        source = source.detach().cpu().numpy()
    return points_activations(np.asarray(source), labels, min_points=min_points)


def _device(acts: Activations, device: str | None) -> str | torch.device:
    """Where the estimators run: `device`, else where the model ran, else the CPU."""
    if device is not None:
        return resolve_device(device)
    if acts.model is not None:
        return _device_of(acts.model.module)
    return "cpu"


# --- measures ------------------------------------------------------------------------------


def intrinsic_dimension(
    source: Any,
    data: Any = None,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    n_bootstrap: int = 0,
    seed: int = 0,
    knn_backend: str = "torch",
    device: str | None = None,
    progress: bool = False,
    **extract_options: Any,
) -> Result:
    """Intrinsic dimension of every layer (docs/methods.md#intrinsic-dimension).

    Parameters
    ----------
    source : activations (`extract`), a bare (N, D) array, or a model (then give `data`).
    data : the model's data (anything `extract` takes).
    methods : `twonn` (Facco et al. 2017), `mle` (Levina & Bickel 2004, k = 20), `pca`
        (PCA 90 % and participation ratio), or any scikit-dimension estimator name.
    n_bootstrap : bootstrap resamples for 95 % intervals (0: none).
    seed : seeds the bootstrap.
    knn_backend : `torch` or `faiss` (exact neighbour search either way).
    device : where the estimators run (None: where the model is, else the CPU).
    **extract_options : passed to `extract` with a model (layers, reduction, cache, ...).

    Returns
    -------
    A `Result`: per layer `id_<method>`, `id_pca90`, `participation_ratio`.

    Example
    -------
    >>> r = mp.intrinsic_dimension(acts, methods=("twonn", "mle"), n_bootstrap=100)
    >>> r.to_frame().query("metric == 'id_twonn'")
    """
    acts = _activations(source, data, min_points=4, classifier=False, extract_options=extract_options)
    return id_profile(acts, methods, n_bootstrap=n_bootstrap, seed=seed, device=_device(acts, device),
                      backend=knn_backend, progress=progress)  # fmt: skip


def curvature(
    source: Any,
    data: Any = None,
    *,
    neighbourhood: str = "knn",
    dim: int | str | None = None,
    k: int | None = None,
    n_bootstrap: int = 1000,
    n_top: int = 22,
    n_toggle: int = 10,
    n_copies: int | None = None,
    seed: int = 0,
    device: str | None = None,
    max_memory: int | None = None,
    n_centres: int | None = None,
    progress: bool = False,
    **extract_options: Any,
) -> Result:
    """Principal curvature of every layer's data manifold (docs/methods.md#curvature).

    Parameters
    ----------
    source : activations, a bare (N, D) array, or a model (then give `data`).
    data : the model's data; `neighbourhood="perturb"` needs `load_data(...)` images.
    neighbourhood : `knn` (each point's K nearest neighbours in the layer) or `perturb`
        (Kaufman & Azencot 2023: each image's SVD-perturbed copies through the model).
    dim : tangent dimension d (None: each layer's, read from the gap in its local PCA spectra
        at the fit's neighbourhood size, NaN where there is no clear gap; "twonn": each layer's
        rounded TwoNN estimate, Kaufman & Azencot's protocol; docs/methods.md#curvature).
    k : neighbours per point for `knn` (None: 3 p, p = 1 + d + d(d+1)/2).
    n_bootstrap : bootstrap resamples of the points for the intervals.
    n_top, n_toggle, n_copies : the `perturb` construction (singular values kept, switched,
        and a seeded subset of the 2^n_toggle - 1 patterns).
    seed : seeds the bootstrap and the perturbation subset.
    device : where the estimators run (for `perturb` the model runs where it is).
    max_memory : bytes of working memory for the `knn` fits and local spectra (chunks and
        worker threads shrink to fit); with a model it also goes to `extract`.
    n_centres : `knn` only: fit at a seeded sample of this many points per layer (their
        neighbours from all points): the averages become means over that sample, at
        n_centres / N of the fits' cost (None: every point).
    **extract_options : passed to `extract` with a model.

    Returns
    -------
    A `Result`: per layer `mapc`, `curvature_sff`, their `_scaled` forms, `id_twonn`;
    `summary["curvature_gap"]` (last minus penultimate layer).

    Example
    -------
    >>> mp.curvature(acts).metrics["logits"]["mapc_scaled"]
    """
    if neighbourhood not in ("knn", "perturb"):
        raise InputError(f"neighbourhood must be knn or perturb, got {neighbourhood!r}.")
    if max_memory is not None and isinstance(source, (nn.Module, LoadedModel)):
        extract_options = {**extract_options, "max_memory": max_memory}
    acts = _activations(source, data, min_points=4, classifier=False, extract_options=extract_options)
    dev = _device(acts, device)
    if neighbourhood == "perturb":
        if n_centres is not None:
            raise InputError("n_centres is for knn neighbourhoods; with perturb, give fewer images instead.")
        if acts.model is None or not isinstance(acts.data, LabelledData):
            raise InputError(
                "neighbourhood='perturb' needs a model and image data from load_data(...); "
                "use neighbourhood='knn' for other data."
            )
        here = _device_of(acts.model.module)
        if device is not None and resolve_device(device) != here:
            raise InputError(
                f"neighbourhood='perturb' runs the model where it is ({here}); give device=None, or "
                "measure a model placed on the device you want."
            )
        return perturbation_curvature_profile(
            acts, n_top=n_top, n_toggle=n_toggle, n_copies=n_copies, dim=dim, bootstrap=n_bootstrap,
            seed=seed, device=dev, progress=progress,
        )  # fmt: skip
    return curvature_profile(acts, dim=dim, k=k, bootstrap=n_bootstrap, seed=seed, device=dev,
                             max_memory=max_memory, n_centres=n_centres, progress=progress)  # fmt: skip


def _classifier_layer(acts: Activations, classifier: Any, bias: Any):
    """(activations, ClassifierLayer or None): the given weights on bare points, or the model's."""
    if classifier is not None and classifier is not True and classifier is not False:
        if acts.model is not None:
            raise InputError(
                "classifier weights go with bare points; a model's classifier is its last nn.Linear."
            )
        return acts, points_classifier(acts, classifier_from_arrays(classifier, bias))
    if bias is not None:
        raise InputError("bias needs classifier (the weight it belongs to).")
    if classifier is False or acts.classifier is None:
        if classifier is True:
            raise InputError("these activations hold no classifier input; extract them with classifier=True.")
        return acts, None
    return model_classifier(acts)


def collapse(
    source: Any,
    data: Any = None,
    *,
    labels: Any = None,
    classifier: Any = None,
    bias: Any = None,
    progress: bool = False,
    **extract_options: Any,
) -> Result:
    """Neural collapse (Papyan, Han & Donoho 2020) of every layer (docs/methods.md#neural-collapse).

    Parameters
    ----------
    source : activations, a bare (N, p) array of features (give `labels`), or a model
        (then give `data`).
    data : the model's data (its labels, or give `labels`).
    labels : class labels of bare features, or of a model's data that yields none.
    classifier : for bare features, the classifier's weight W (C, p), adding the NC2
        weight metrics, NC3 and NC4; with a model its last nn.Linear, captured in the same
        pass (None: when there is one; False: not at all).
    bias : the classifier's bias b (C,), with `classifier`.
    **extract_options : passed to `extract` with a model.

    Returns
    -------
    A `Result`: per layer `nc1`, `nc1_trace_ratio`, `cdnv`, `etf_distance`, `nc2_*_means`;
    on the classifier's layer also `nc2_*_weights`, `nc3_self_duality`, `nc4_ncc_mismatch`.

    Example
    -------
    >>> mp.collapse(acts).metrics["pool"]["nc1"]
    """
    acts = _activations(source, data, labels=labels, min_points=4,
                        classifier=None if classifier is None else bool(classifier is True),
                        extract_options=extract_options)  # fmt: skip
    acts, layer = _classifier_layer(acts, classifier, bias)
    return collapse_profile(acts, layer, progress=progress)


def spectra(
    source: Any,
    data: Any = None,
    *,
    labels: Any = None,
    classifier: Any = None,
    bias: Any = None,
    n_values: int = SPECTRUM_VALUES,
    fisher_points: int = FISHER_POINTS,
    seed: int = 0,
    progress: bool = False,
    **extract_options: Any,
) -> Result:
    """Class/cross-class spectra (Papyan 2020) of every layer (docs/methods.md#spectra).

    Parameters
    ----------
    source, data, labels, classifier, bias : as for `collapse`.
    n_values : largest eigenvalues kept per spectrum in `details`.
    fisher_points : samples of the stratified seeded subset for the classifier's Fisher block.
    seed : seeds that subset.
    **extract_options : passed to `extract` with a model.

    Returns
    -------
    A `Result`: per layer `n_outliers`, `outlier_variance_share`, ...; on the classifier's
    layer the `fisher_*` split; eigenvalues in `details[layer]["spectra"]`.

    Example
    -------
    >>> mp.spectra(acts).details["pool"]["spectra"]["total"][:5]
    """
    acts = _activations(source, data, labels=labels, min_points=4,
                        classifier=None if classifier is None else bool(classifier is True),
                        extract_options=extract_options)  # fmt: skip
    acts, layer = _classifier_layer(acts, classifier, bias)
    return spectra_profile(acts, layer, n_values=n_values, fisher_points=fisher_points, seed=seed,
                           progress=progress)  # fmt: skip


def cutting_planes(
    model: nn.Module | Sequence[nn.Module],
    data: LabelledData,
    *,
    classes: str | int | Sequence[int] = "all",
    as_set: bool = False,
    dims: Sequence[int] | None = None,
    planes: int = CuttingPlaneOptions.planes,
    steps: int = CuttingPlaneOptions.steps,
    lr: float = CuttingPlaneOptions.lr,
    patience: int = CuttingPlaneOptions.patience,
    tol: float = CuttingPlaneOptions.tol,
    batch: int = CuttingPlaneOptions.batch,
    orthonormal: bool = CuttingPlaneOptions.orthonormal,
    stop_at_hit: bool = CuttingPlaneOptions.stop_at_hit,
    offset: str = CuttingPlaneOptions.offset,
    n_bootstrap: int = CuttingPlaneOptions.n_bootstrap,
    confidence: float = CuttingPlaneOptions.confidence,
    device: str | None = None,
    progress: bool = False,
) -> Result:
    """Class-manifold dimension by random affine cutting planes (Fort et al. 2022;
    docs/methods.md#cutting-planes).

    Parameters
    ----------
    model : an `nn.Module`, or several: one ensemble (their averaged probability).
    data : `load_data(...)`: its points of other classes are the planes' offsets, its seed
        seeds the planes and the bootstrap.
    classes : `all`, one class, or a list (each separately, or one set with `as_set`).
    dims : cutting dimensions d (None: about 14 log-spaced values from 1 to D).
    planes, steps, lr, patience, tol, batch, orthonormal, offset : the sweep and the optimiser.
    stop_at_hit : stop each plane at its first hit (the same readings, fewer steps; each hit
        plane's recorded max_prob is then its first score >= 0.5).
    n_bootstrap, confidence : the bootstrap interval of d*.
    device : where the models run (None: where the first one is; others run a copy).

    Returns
    -------
    A `Result` whose `classes` hold one entry per target; `metrics["class 3"]` has
    `critical_dim` and `manifold_dim` (D - d*), `intervals` their bootstrap intervals.

    Example
    -------
    >>> r = mp.cutting_planes(model, data, classes=[1, 3], dims=(2, 8, 32), planes=3)
    >>> r.to_frame()
    """
    if not isinstance(data, LabelledData):
        raise InputError(
            "cutting_planes needs labelled data from load_data(...) (its points are the offsets)."
        )
    models = [model] if isinstance(model, nn.Module) else list(model)
    if not models:
        raise InputError("give at least one model.")
    first_device = device if device is not None else _device_of(models[0])
    moved = [_on_device(m, first_device)[0] for m in models]
    options = CuttingPlaneOptions(
        dims=None if dims is None else tuple(dims), planes=planes, steps=steps, lr=lr, patience=patience,
        tol=tol, batch=batch, orthonormal=orthonormal, stop_at_hit=stop_at_hit, offset=offset,
        n_bootstrap=n_bootstrap, confidence=confidence,
    )  # fmt: skip
    return cutting_planes_profile(
        [model_info(m) for m in moved], data, classes=classes, as_set=as_set, options=options,
        device=_device_of(moved[0]), progress=progress,
    )  # fmt: skip
