"""The exact curvature measure (`mp.family_curvature`, `mprobe curvature --family SPEC`).

A smooth family of inputs x(theta) (`probes.input_families`: the plane through three images,
an image rotated and scaled, translated, or a great circle) is pushed through the model and
every chosen layer's image of it is differentiated exactly (`probes.family_curvature`): the
second fundamental form, its norm `curvature_sff`, the volume element, and for a curve its
length and curvature (Poole et al. 2016). With `compare_sampled`, the sampled estimator
(`geometry.curvature`, what `mp.curvature` runs on point clouds) is run on the same layer's
image points at the family's own dimension, so each layer shows the exact value beside the
estimate, its interval and its status: a truth for the sampled estimator on real layers.

Piecewise-linear layers (ReLU nets) have no second derivative between their kinks; their
`curvature_sff` is the curvature smoothed at the stated finite-difference step (details
`regime`, `method`, `meaning`, `fd_step`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from ..errors import InputError
from ..geometry.curvature import curvature as fit_curvature
from ..probes.family_curvature import FD_STEP, LayerFamilyCurvature
from ..probes.family_curvature import family_curvature as differentiate_family
from ..results import CANNOT_TELL, LayerResult, Result
from ..sources.data import LabelledData
from ..sources.models import LoadedModel, model_info
from ..validation import check_count, check_seed
from .pipeline import as_data, data_source, model_source

PREVIEW_IMAGES = 9
"""How many of the family's inputs the result keeps for its page (a 3 x 3 grid at most)."""


def family_curvature(
    source: nn.Module | LoadedModel,
    data: Any = None,
    *,
    family: str,
    layers: str | list[str] | None = None,
    reduction: str = "auto",
    n_grid: int | None = None,
    second_derivative: str = "auto",
    fd_step: float = FD_STEP,
    compare_sampled: bool = False,
    n_bootstrap: int = 200,
    seed: int = 0,
    device: str | None = None,
    max_memory: int | None = None,
    progress: bool = False,
) -> Result:
    """Exact curvature of every layer's image of a smooth input family (docs/methods.md#exact-curvature).

    Parameters
    ----------
    source : a model (`nn.Module`); its operations need forward-mode derivatives.
    data : the data the family's spec indexes (`load_data(...)`, a tensor of inputs).
    family : `plane:I,J,K` (x0 + a (x1 - x0) + b (x2 - x0), three data indices),
        `rotate-scale:I`, `translate:I`, or `circle[:Q]` (a great circle of squared radius Q
        per input feature, Poole et al.).
    layers, reduction : as `extract`'s (None: the default layers).
    n_grid : about this many values of theta on a regular grid (default 1024).
    second_derivative : `auto`, `autodiff` or `finite-difference` (ReLU nets: see the module).
    fd_step : the finite-difference step, a fraction of each parameter's range.
    compare_sampled : also run the sampled estimator on each layer's image points at the
        family's dimension, for its value, interval and status beside the exact one.
    n_bootstrap : bootstrap resamples of the sampled estimator's interval.
    seed : the great circle's directions, `project:N` reductions, the bootstrap.
    device : where the model runs (None: where it is; a float64 copy is differentiated).
    max_memory : bytes of working memory per chunk of theta.
    progress : show progress bars.

    Returns
    -------
    A `Result` (command `family-curvature`): per layer `curvature_sff`, `curvature_sff_scaled`,
    `volume_element` (and `curve_length`, `curve_curvature` for a 1-parameter family); with
    `compare_sampled` also `sampled_curvature_sff` with its interval and `sampled_status`.

    Example
    -------
    >>> import torch, manifold_probe as mp
    >>> net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 8))
    >>> r = mp.family_curvature(net, torch.randn(4, 16), family="plane:0,1,2", layers=["1", "2"], n_grid=64)
    >>> [layer.details["regime"] for layer in r.layers]
    ['smooth', 'smooth']
    """
    seed = check_seed(seed)
    n_bootstrap = check_count(n_bootstrap, name="n_bootstrap", minimum=1)
    if not isinstance(family, str) or not family.strip():
        raise InputError("give a family spec, e.g. plane:0,1,2, rotate-scale:0, translate:0 or circle.",
                         parameter="family")  # fmt: skip
    if not isinstance(source, (nn.Module, LoadedModel)):
        raise InputError("the exact curvature needs a model to differentiate.", parameter="source")
    loaded = model_info(source.module if isinstance(source, LoadedModel) else source)
    inputs, _ = as_data(data)
    measured = differentiate_family(
        loaded.module, inputs, family, layers=layers, reduction=reduction, n_grid=n_grid,
        second_derivative=second_derivative, fd_step=fd_step, device=device, max_memory=max_memory,
        keep_points=compare_sampled, seed=seed, progress=progress,
    )  # fmt: skip
    n = len(measured.layers)
    entries = [
        _layer_entry(layer, index, n, compare_sampled, n_bootstrap, seed, progress)
        for index, layer in enumerate(measured.layers)
    ]
    fam = measured.family
    source_info = {**model_source(loaded), **_data_source(data, inputs), "family": fam.spec}
    if "checkpoint" in source_info:
        source_info["checkpoint"] = source_info.pop("checkpoint")
    params = {
        "family": fam.spec, "n_theta": int(len(measured.theta)), "second_derivative": second_derivative,
        "fd_step": fd_step, "dtype": measured.dtype, "compare_sampled": compare_sampled, "seed": seed,
        "reduction": reduction,
    }  # fmt: skip
    preview = measured.grid_inputs[_preview_rows(len(measured.grid_inputs))]
    summary = {
        "family": {
            "spec": fam.spec, "description": fam.description, "parameters": list(fam.parameters),
            "ranges": [list(r) for r in fam.ranges], "periodic": fam.periodic, "dim": fam.dim,
        },
        "preview_theta": measured.grid_theta[_preview_rows(len(measured.grid_theta))].tolist(),
        "preview_inputs": np.round(preview.astype(np.float64), 4).tolist(),
    }  # fmt: skip
    return Result(
        command="family-curvature", source=source_info, params=params, layers=entries, summary=summary
    )


def _data_source(data: Any, inputs: Any) -> dict[str, Any]:
    n = len(inputs) if hasattr(inputs, "__len__") else 0
    return (
        data_source(data, n)
        if isinstance(data, LabelledData)
        else {"data": type(data).__name__, "n_points": n}
    )


def _preview_rows(n: int) -> np.ndarray:
    """At most `PREVIEW_IMAGES` rows of the preview grid, evenly spread."""
    return np.unique(np.linspace(0, n - 1, min(n, PREVIEW_IMAGES)).round().astype(int))


def _layer_entry(
    layer: LayerFamilyCurvature, index: int, n_layers: int, compare: bool, n_bootstrap: int, seed: int,
    progress: bool,
) -> LayerResult:  # fmt: skip
    metrics = dict(layer.metrics())
    details = dict(layer.details())
    intervals: dict[str, tuple[float, float]] = {}
    if compare and layer.points is not None:
        metrics["sampled_curvature_sff"], intervals, details["sampled"] = _sampled(
            layer.points, layer.dim, n_bootstrap, seed, progress
        )
    status, reason = "measured", ""
    if layer.n_degenerate == layer.n_theta:
        status, reason = CANNOT_TELL, "the family's image collapses at every theta (the metric is singular)"
    return LayerResult(
        name=layer.layer, index=index, depth=index / (n_layers - 1) if n_layers > 1 else 0.0,
        ambient_dim=layer.n_features, n_points=layer.n_theta, metrics=metrics, intervals=intervals,
        shape=None, details=details, status=status, reason=reason,
    )  # fmt: skip


def _sampled(points: np.ndarray, dim: int, n_bootstrap: int, seed: int, progress: bool):
    """(value, intervals, details) of the sampled estimator on one layer's image points."""
    try:
        fitted = fit_curvature(points, dim, n_bootstrap=n_bootstrap, seed=seed, progress=progress)
    except InputError as error:
        return float("nan"), {}, {"status": "not_measurable", "reason": str(error)}
    interval = fitted.intervals.get("curvature_sff")
    intervals = {"sampled_curvature_sff": tuple(interval)} if interval is not None else {}
    details = {"status": fitted.status, "reason": fitted.reason, "k": fitted.k, "dim": dim,
               "curvature_sff_scaled": fitted.curvature_sff_scaled}  # fmt: skip
    return fitted.curvature_sff, intervals, details
