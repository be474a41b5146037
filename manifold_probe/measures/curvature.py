"""The curvature measure: principal curvature of every layer's data manifold (Kaufman & Azencot 2023).

With `knn` neighbourhoods and no `dim` (the default), each layer is measured only where it looks
like a manifold (`geometry.windowed_curvature`): denoised, its multiscale profile read for a
manifold scale window, fitted at the K of the window with the best signal under a bounded bias,
guarded (the neighbourhood must not reach the curvature radius, the interval must not reach 0
where the window shows bending, the fit must agree with the residual growth), and put beside
its matched null (the same fit on Gaussians with the layer's covariance, and with labels the
class-conditional mixture). A layer with no window is `no_manifold_scale`: every curvature metric
is NaN and its profile (in the details) shows why. A flat window reads 0 with an upper bound.

`dim` given (an integer): the fit at that d and the default K (or `k`), with the same guards and
null, whatever the profile says (it is still recorded). `dim="twonn"` is Kaufman & Azencot's own
protocol: each layer fitted at d = its rounded TwoNN estimate, status `paper_protocol`, with its
null (the Gaussian's mapc beside the layer's): the values compare models measured the same way,
they do not say the layer is a d-manifold at the fit's scale.

`mapc` and `mapc_scaled` (the paper's quantities) are NaN wherever `curvature_sff` is not measured
(or, for the paper's protocol, printed with their null), so no number is shown without evidence.

`perturb` neighbourhoods (the paper's construction: each image's own perturbed copies through
the model) read each layer's d from the gap in its local spectra, as before.

The summary carries the curvature gap between the last two layers, the quantity Kaufman &
Azencot relate to test accuracy (NaN when either layer has no number).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..device import model_device
from ..errors import InputError
from ..extraction.activations import Activations, LayerArray
from ..extraction.engine import extract
from ..extraction.perturbations import svd_perturbations
from ..geometry.curvature import (
    MAX_FIT_FLOPS,
    Curvature,
    NeighbourhoodCurvature,
    default_k,
    fit_flops,
    min_neighbours,
    n_unknowns,
)
from ..geometry.curvature import curvature as fit_curvature
from ..geometry.intrinsic_dimension import distinct_points, twonn
from ..geometry.matched_null import matched_null
from ..geometry.neighbours import NeighbourGraph, nearest_neighbours
from ..geometry.tangent_dimension import (
    BLOCK_BYTES,
    GAP,
    TangentDimension,
    tangent_dimension_at_fit_scale,
)
from ..geometry.windowed_curvature import (
    NULL_CENTRES,
    null_statistic,
    scale_limit,
    windowed_curvature,
)
from ..metric_names import CURVATURE_METRICS
from ..progress import track
from ..results import (
    CANNOT_TELL,
    MEASURED,
    NOT_MEASURABLE,
    PAPER_PROTOCOL,
    UNCERTAIN_DIMENSION,
    LayerResult,
    Result,
)
from ..sources.data import LabelledData
from ..validation import check_count, check_curvature_dim, check_seed, check_tangent_dim
from .layers import distinct_labels, layer_result, measure_layers
from .sources import as_activations, estimator_device

NEIGHBOURHOODS = ("knn", "perturb")
WITH_NUMBERS = (MEASURED, PAPER_PROTOCOL)
"""Statuses whose mapc and curvature_sff are shown."""
NULL_METRICS = ("curvature_sff_null", "curvature_sff_excess", "curvature_p_value")
GAP_DEFINITION = (
    "curvature_gap = mapc(last layer) - mapc(penultimate layer), raw (the reference's MAPC, 1/length); "
    "*_scaled gaps use each layer's dimensionless mapc_scaled / curvature_sff_scaled"
)


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
    layer: LayerArray,
    index: int,
    n_layers: int,
    measured: Curvature,
    id_twonn: float,
    details: dict,
    *,
    status: str | None = None,
    reason: str | None = None,
    null: dict | None = None,
) -> LayerResult:
    """A fitted layer: the fit's metrics (mapc NaN unless the status shows numbers), its null."""
    status = measured.status if status is None else status
    reason = measured.reason if reason is None else reason
    metrics = {**measured.metrics(), "id_twonn": id_twonn, **(null or {})}
    intervals = dict(measured.intervals)
    if status not in WITH_NUMBERS:
        for name in ("mapc", "mapc_scaled"):
            metrics[name] = float("nan")
            intervals.pop(name, None)
    return layer_result(
        layer,
        index,
        n_layers,
        metrics=metrics,
        intervals=intervals,
        details={**measured.details(), **details},
        status=status,
        reason=reason,
    )


def _null_metrics(test, prefix: str = "curvature_sff", suffix: str = "") -> dict[str, float]:
    """The null's mean, the excess over it and the p-value as metrics."""
    if test is None:
        return {}
    p_name = "curvature_p_value" if prefix == "curvature_sff" else f"{prefix}_p_value"
    return {
        f"{prefix}_null{suffix}": test.mean,
        f"{prefix}_excess{suffix}": test.excess,
        f"{p_name}{suffix}": test.p_value,
    }


def _fit_null(x, labels, d, k, statistic_metric, observed, n_null, seed, device) -> tuple[dict, dict]:
    """(metrics, details) of the matched null of one fit's metric (Gaussian; classes with labels)."""
    if not n_null or not np.isfinite(observed):
        return {}, {}
    centres = min(len(x), NULL_CENTRES)
    statistic = null_statistic(d, k, False, centres, seed, device, statistic_metric)
    value = statistic(x)
    tests = [matched_null(x, statistic, observed=value, n_draws=n_null, seed=seed)]
    if labels is not None and len(np.unique(labels)) > 1:
        tests.append(matched_null(x, statistic, observed=value, n_draws=n_null, seed=seed, labels=labels))
    prefix = "curvature_sff" if statistic_metric == "curvature_sff" else statistic_metric
    metrics = {}
    for test, suffix in zip(tests, ("", "_classes"), strict=False):
        metrics.update(_null_metrics(test, prefix, suffix))
    details = {f"null_{statistic_metric}": {t.kind: t.details() for t in tests},
               "null_method": f"the same fit (d={d}, K={k}) at {centres} centres on {n_null} Gaussian draws "
               "with the layer's covariance (and the class-conditional mixture)"}  # fmt: skip
    return metrics, details


def _unmeasured_entry(
    layer: LayerArray,
    index: int,
    n_layers: int,
    id_twonn: float,
    reason: str,
    details: dict,
    status: str = NOT_MEASURABLE,
) -> LayerResult:
    """A layer that could not be measured: every curvature metric NaN, its `status` and `reason`."""
    metrics = {name: float("nan") for name in (*CURVATURE_METRICS, "signal_to_noise")}
    return layer_result(layer, index, n_layers, metrics={**metrics, "id_twonn": id_twonn}, details=details,
                        status=status, reason=reason)  # fmt: skip


def _uncertain_dimension(found: TangentDimension, id_twonn: float) -> str:
    """The reason a layer without a clear spectral gap gets no curvature numbers."""
    return (
        f"no clear gap in the local spectra (largest drop {found.gap:.2g}x < {GAP:g}x at K={found.k}): "
        f"the tangent dimension is unknown (best guess d={found.dim}, TwoNN {id_twonn:.3g}), so every "
        "curvature value would be of unknown meaning; give dim (--dim) if d is known, or dim='twonn' "
        "for the paper's protocol (d = rounded TwoNN)"
    )


def _checked_dim(dim: int | str | None, arrays: Activations) -> int | str | None:
    """`check_curvature_dim`, and a given integer d below the widest layer's features (a d too
    wide for only some layers makes just those layers not_measurable)."""
    dim = check_curvature_dim(dim)
    if isinstance(dim, int) and arrays.layers:
        check_tangent_dim(dim, max(layer.points.shape[1] for layer in arrays.layers))
    return dim


def _layer_dimension(
    x: np.ndarray, graph_for, dim: int | str | None, seed: int, id_twonn: float, max_memory: int | None = None
) -> tuple[int, dict, TangentDimension | None]:
    """(d, details, the spectral evidence or None): the user's `dim`; the rounded TwoNN
    estimate for "twonn" (0 when TwoNN has no value); else the local-spectrum gap."""
    n, ambient = x.shape
    if dim == "twonn":
        d = max(1, round(id_twonn)) if np.isfinite(id_twonn) else 0
        return d, {"dim_method": "twonn (the paper's protocol)", "dim": d, "dim_user_given": False}, None
    if isinstance(dim, int):
        return dim, {"dim_method": "given (--dim)", "dim_user_given": True}, None  # JSON text kept
    found = tangent_dimension_at_fit_scale(
        x,
        graph_for,
        default_k,
        max_dim=min(ambient - 1, n - 2),
        max_k=n - 1,
        seed=seed,
        max_bytes=min(max_memory or BLOCK_BYTES, BLOCK_BYTES),
    )
    return found.dim, {**found.details(), "dim": found.dim, "dim_user_given": False}, found


def _too_few_copies(dim: int, n_copies: int) -> str:
    """Why a `perturb` fit in dimension `dim` cannot run on n_copies copies per image."""
    return (
        f"dim={dim} needs K >= {min_neighbours(dim)} neighbours for the quadratic fit, but each image has "
        f"{n_copies} perturbed copies: raise n_toggle (--n-toggle) or n_copies (--copies), or give a "
        "smaller dim"
    )


def _too_few_points(n: int, dim: int) -> str:
    """Why a fit in dimension `dim` cannot run on n points, or "" when it can."""
    need = min_neighbours(dim)
    if need <= n - 1:
        return ""
    return (
        f"dim={dim} needs K >= {need} neighbours for the quadratic fit "
        f"({n_unknowns(dim)} unknowns per normal direction plus a constant; K = {default_k(dim)} by "
        f"default), but the layer has {n} distinct points: give more points or a smaller dim"
    )


def _too_costly(n: int, ambient: int, dim: int, n_fitted: int) -> str:
    """Why the default K's fits at n_fitted of the n points are intractable for this layer
    (`MAX_FIT_FLOPS`), or ""."""
    k = default_k(dim, n)
    flops = fit_flops(n_fitted, k, ambient, dim)
    if flops <= MAX_FIT_FLOPS:
        return ""
    return (
        f"dim={dim} at the default K={k} would cost about {flops:.1g} floating-point operations "
        f"(more than {MAX_FIT_FLOPS:.0g}, hours on a few CPU cores): give k (--k) to run it anyway, "
        "or a smaller dim, or fit at fewer points with n_centres (--centres)"
    )


def curvature(
    source,
    data=None,
    *,
    neighbourhood: str = "knn",
    dim: int | str | None = None,
    k: int | None = None,
    n_bootstrap: int = 1000,
    n_top: int = 22,
    n_toggle: int = 10,
    n_copies: int | None = None,
    n_centres: int | None = None,
    n_null: int = 19,
    denoise: bool = True,
    labels=None,
    seed: int = 0,
    device: str | None = None,
    max_memory: int | None = None,
    progress: bool = False,
    **extract_options,
) -> Result:
    """Principal curvature of every layer's data manifold (Kaufman & Azencot 2023;
    docs/methods.md#curvature), where the layer shows a manifold scale, beside its matched null.

    Parameters
    ----------
    source : activations, a bare (N, D) array, or a model (then give `data`).
    data : the model's data; `neighbourhood="perturb"` needs `load_data(...)` images.
    neighbourhood : `knn` (each point's K nearest neighbours in the layer) or `perturb`
        (Kaufman & Azencot 2023: each image's SVD-perturbed copies through the model).
    dim : tangent dimension d (None: each layer's manifold scale window decides d and K, and a
        layer without one is `no_manifold_scale`; an integer: fit at that d; "twonn": each layer's
        rounded TwoNN estimate, Kaufman & Azencot's protocol, status `paper_protocol`).
    k : neighbours per point for `knn` (None: chosen in the window, or 3 p with `dim`,
        p = 1 + d + d(d+1)/2).
    n_bootstrap : bootstrap resamples of the points for the intervals (at least 1).
    n_top, n_toggle, n_copies : the `perturb` construction (singular values kept, switched,
        and a seeded subset of the 2^n_toggle - 1 patterns).
    n_centres : `knn` only: fit at a seeded sample of this many points per layer (their
        neighbours from all points): the averages become means over that sample, at
        n_centres / N of the fits' cost (None: every point).
    n_null : Gaussian draws of the matched null (0: none); 19 lets the p-value reach 0.05.
    denoise : project wide layers on their components above the noise edge before the window
        and the fits (`geometry.denoise`; the default path only).
    labels : class labels of the points (else the data's): the profile's class agreement and
        the class-conditional null.
    seed : seeds the bootstrap, the centres, the null and the perturbation subset.
    device : where the estimators run (for `perturb` the model runs where it is).
    max_memory : bytes of working memory for the `knn` fits and local spectra (chunks and
        worker threads shrink to fit); with a model it also bounds the extraction.
    progress : show progress bars.
    **extract_options : passed to `extract` with a model.

    Returns
    -------
    A `Result`: per layer `mapc`, `curvature_sff`, their `_scaled` forms, `signal_to_noise`,
    `id_twonn`, the null's `curvature_sff_null`, `curvature_sff_excess`, `curvature_p_value`
    (the paper's protocol: `mapc_null`, `mapc_excess`, `mapc_p_value`), and each layer's status
    (measured, cannot_tell, no_manifold_scale, paper_protocol, not_measurable, skipped) with its
    reason; the multiscale profile in `details[layer]["profile"]`; `summary["curvature_gap"]`
    (last minus penultimate layer, NaN when either has no number).

    Example
    -------
    >>> import numpy as np, manifold_probe as mp
    >>> angles = np.random.default_rng(0).uniform(0, 2 * np.pi, size=(800, 1))
    >>> circle = np.hstack([np.cos(angles), np.sin(angles), np.zeros((800, 3))])
    >>> r = mp.curvature(circle, dim=1, n_bootstrap=50, n_null=0)
    >>> round(r.metrics["points"]["curvature_sff"], 1)  # a unit circle bends by 1 / radius
    1.0
    """
    if neighbourhood not in NEIGHBOURHOODS:
        raise InputError(f"must be knn or perturb, got {neighbourhood!r}.", parameter="neighbourhood")
    n_bootstrap = check_count(n_bootstrap, name="n_bootstrap", minimum=1)
    seed = check_seed(seed)
    if k is not None:
        k = check_count(k, name="k", minimum=2)
    if n_centres is not None:
        n_centres = check_count(n_centres, name="n_centres", minimum=1)
        if neighbourhood == "perturb":
            raise InputError("is for knn neighbourhoods; with perturb, give fewer images instead.",
                             parameter="n_centres")  # fmt: skip
    n_null = check_count(n_null, name="n_null")
    acts = as_activations(source, data, labels=labels, min_points=4, classifier=False, max_memory=max_memory,
                          extract_options=extract_options)  # fmt: skip
    dev = estimator_device(acts, device)
    if neighbourhood == "perturb":
        if acts.model is None or not isinstance(acts.data, LabelledData):
            raise InputError(
                "perturb needs a model and image data from load_data(...); use knn for other data.",
                parameter="neighbourhood",
            )
        here = model_device(acts.model.module)
        if device is not None and dev != here:
            raise InputError(
                f"perturb runs the model where it is ({here}); leave device unset, or measure a model "
                "placed on the device you want.",
                parameter="device",
            )
        return perturbation_curvature_profile(
            acts, n_top=n_top, n_toggle=n_toggle, n_copies=n_copies, dim=dim, n_bootstrap=n_bootstrap,
            seed=seed, device=dev, progress=progress,
        )  # fmt: skip
    return curvature_profile(acts, dim=dim, k=k, n_bootstrap=n_bootstrap, seed=seed, device=dev,
                             max_memory=max_memory, n_centres=n_centres, n_null=n_null, denoise=denoise,
                             progress=progress)  # fmt: skip


def _gap_summary(layers) -> dict:
    return {**curvature_gap(list(layers)), "curvature_gap_definition": GAP_DEFINITION}


def curvature_profile(
    arrays: Activations,
    *,
    dim: int | str | None = None,
    k: int | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    device="cpu",
    max_memory: int | None = None,
    n_centres: int | None = None,
    n_null: int = 19,
    denoise: bool = True,
    progress: bool = False,
) -> Result:
    """The curvature of every layer of `arrays` with `knn` neighbourhoods (see `curvature`).

    Without `dim`, each layer's d is read from the gap in its local PCA spectra at the fit's
    neighbourhood size (`geometry.tangent_dimension`; details `dim_*` give the evidence);
    `dim="twonn"` fits each layer at its rounded TwoNN estimate (the paper's protocol).
    A layer that cannot be measured (too few points for its d, every neighbourhood
    degenerate) is kept with NaN metrics, `status` "not_measurable" and the `reason`; a layer
    of constant activations is `skipped` (`layers.measure_layers`); the other layers are
    measured. A measured layer whose value cannot be trusted has
    curvature_sff NaN, `status` "cannot_tell" and the `reason` (`geometry.curvature`).
    max_memory: bytes of working memory for the local spectra and the fits (not the layers).
    n_centres: fit at a seeded sample of this many points per layer, neighbours from all of
    them (`geometry.curvature.curvature`); None: every point.
    """
    dim = _checked_dim(dim, arrays)
    params = {"neighbourhood": "knn", "dim": dim, "k": k, "n_bootstrap": n_bootstrap, "seed": seed,
              "n_centres": n_centres, "n_null": n_null, "denoise": denoise}  # fmt: skip

    def measure(layer, index, n_layers):
        return _knn_layer(layer, index, n_layers, dim=dim, k=k, n_bootstrap=n_bootstrap, seed=seed,
                          device=device, max_memory=max_memory, n_centres=n_centres, progress=progress,
                          labels=arrays.labels, n_null=n_null, denoise=denoise)  # fmt: skip

    layers = measure_layers(arrays, measure, description="curvature", progress=progress,
                            skip_errors=not isinstance(dim, int) and k is None)  # fmt: skip
    return Result(command="curvature", source=arrays.source, params=params, layers=layers,
                  summary=_gap_summary(layers))  # fmt: skip


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
    layer: LayerArray,
    index: int,
    n_layers: int,
    *,
    dim,
    k,
    n_bootstrap,
    seed,
    device,
    max_memory,
    n_centres,
    progress,
    labels=None,
    n_null: int = 19,
    denoise: bool = True,
) -> LayerResult:
    """One layer of `curvature_profile`: measured, or kept with its reason (never raised)."""
    if dim is None and k is None:
        return _windowed_layer(layer, index, n_layers, labels=labels, n_bootstrap=n_bootstrap, seed=seed,
                               device=device, max_memory=max_memory, n_centres=n_centres, n_null=n_null,
                               denoise=denoise, progress=progress)  # fmt: skip
    x, graph_for, d, id_estimate, details, reason, status = _layer_setup(
        layer, dim, seed, device, k or 0, max_memory
    )
    if reason:
        return _unmeasured_entry(layer, index, n_layers, id_estimate, reason, details, status)
    n, ambient = x.shape
    reason = _too_few_points(n, d) if k is None else ""
    if reason:
        details["k_needed"] = min_neighbours(d)
        return _unmeasured_entry(layer, index, n_layers, id_estimate, reason, details)
    n_fitted = min(n, n_centres or n)
    reason = _too_costly(n, ambient, d, n_fitted) if k is None else ""
    if reason:
        details["fit_flops"] = fit_flops(n_fitted, default_k(d, n), ambient, d)
        return _unmeasured_entry(layer, index, n_layers, id_estimate, reason, details)
    k_layer = k if k is not None else default_k(d, n)
    try:
        measured = fit_curvature(
            x,
            d,
            k=k_layer,
            graph=graph_for(k_layer),
            device=device,
            n_bootstrap=n_bootstrap,
            seed=seed,
            max_memory=max_memory,
            n_centres=n_centres,
            progress=progress,
        )
    except InputError as error:
        if k is not None or isinstance(dim, int):
            raise  # the user's own k or dim: their input error
        return _unmeasured_entry(layer, index, n_layers, id_estimate, str(error).rstrip("."), details)
    y = distinct_labels(layer.points, labels)
    status, reason = measured.status, measured.reason
    if dim == "twonn":
        status, reason = PAPER_PROTOCOL, (
            f"the paper's protocol: d = {d} from the rounded TwoNN, not read from the layer's scales; "
            "compare the values with their Gaussian null"
        )  # fmt: skip
        null, null_details = _fit_null(x, y, d, k_layer, "mapc", measured.mapc, n_null, seed, device)
    else:
        status, reason = _user_dim_guard(measured)
        null, null_details = ({}, {})
        if status == MEASURED:
            null, null_details = _fit_null(x, y, d, k_layer, "curvature_sff", measured.curvature_sff, n_null,
                                           seed, device)  # fmt: skip
    details = {**details, **null_details, "n_centres": measured.n_points}
    return _layer_entry(layer, index, n_layers, measured, id_estimate, details, status=status, reason=reason,
                        null=null)  # fmt: skip


def _user_dim_guard(measured: Curvature) -> tuple[str, str]:
    """The status of a fit at a given d: the fit's own, and cannot_tell when the neighbourhood
    reaches the curvature radius or the interval reaches 0."""
    if measured.status != MEASURED:
        return measured.status, measured.reason
    if measured.curvature_sff_scaled > scale_limit(measured):
        return CANNOT_TELL, (
            f"the neighbourhood reaches the curvature radius (curvature_sff_scaled "
            f"{measured.curvature_sff_scaled:.2f} > {scale_limit(measured)} for the {measured.fit} fit): "
            "its bias is no longer bounded at this scale"
        )
    low, _ = measured.intervals.get("curvature_sff", (float("nan"), float("nan")))
    if not np.isfinite(low) or low <= 0:
        return CANNOT_TELL, "the interval reaches 0: no bending can be told from none"
    return MEASURED, ""


def _windowed_layer(
    layer, index, n_layers, *, labels, n_bootstrap, seed, device, max_memory, n_centres, n_null, denoise,
    progress,
) -> LayerResult:  # fmt: skip
    """A layer measured inside its manifold scale window (`geometry.windowed_curvature`)."""
    x = distinct_points(layer.points)
    if len(x) < 4:
        reason = f"the layer has {len(x)} distinct points; curvature needs many more"
        return _unmeasured_entry(layer, index, n_layers, float("nan"), reason, {})
    y = distinct_labels(layer.points, labels)
    id_estimate = twonn(graph=nearest_neighbours(x, min(len(x) - 1, 2), device=device)).dimension
    found = windowed_curvature(
        x,
        labels=y,
        use_denoise=denoise,
        n_bootstrap=n_bootstrap,
        n_null=n_null,
        seed=seed,
        device=device,
        max_memory=max_memory,
        n_centres=n_centres,
        progress=progress,
    )
    details: dict = {
        "dim_method": "the manifold scale window of the multiscale profile",
        "id_twonn": id_estimate,
        "profile": found.profile.details() if found.profile is not None else None,
        "denoised": found.denoised.details() if found.denoised is not None else None,
    }
    if found.fit is None:
        return _unmeasured_entry(layer, index, n_layers, id_estimate, found.reason, details, found.status)
    fit = found.fit
    details.update(
        dim=fit.dim,
        dim_user_given=False,
        flat=found.flat,
        fits={
            str(k): {
                "curvature_sff": f.curvature_sff,
                "signal_to_noise": f.signal_to_noise,
                "status": f.status,
                "curvature_sff_scaled": f.curvature_sff_scaled,
            }
            for k, f in found.fits.items()
        },
        **(found.bracket.details() if found.bracket is not None else {}),
    )
    null = _null_metrics(found.null) | _null_metrics(found.null_classes, suffix="_classes")
    for test in (found.null, found.null_classes):
        if test is not None:
            details.setdefault("null_curvature_sff", {})[test.kind] = test.details()
    entry = _layer_entry(
        layer, index, n_layers, fit, id_estimate, details, status=found.status, reason=found.reason, null=null
    )
    bound = found.interval()
    if found.flat and bound is not None:  # flat at these scales: 0 with the fit's upper bound
        metrics = {**entry.metrics, "curvature_sff": 0.0, "curvature_sff_scaled": 0.0}
        entry = replace(entry, metrics=metrics, intervals={**entry.intervals, "curvature_sff": bound})
    return entry


def _layer_setup(
    layer: LayerArray, dim: int | str | None, seed: int, device, k: int = 0, max_memory: int | None = None
):
    """(distinct points, their growing kNN graph, d, id_twonn, details, reason, status) of one
    layer before its fits: reason "" when it can be fitted, else why not (too few distinct
    points: not_measurable; no clear spectral gap: uncertain_dimension) and the status."""
    x = distinct_points(layer.points)
    n = x.shape[0]
    if n < 4:
        reason = f"the layer has {n} distinct points; curvature needs many more"
        return x, None, 0, float("nan"), {}, reason, NOT_MEASURABLE
    graph_for = _GrowingGraph(x, min(n - 1, max(k, 64)), device)
    id_estimate = twonn(graph=graph_for.graph).dimension
    d, details, found = _layer_dimension(x, graph_for, dim, seed, id_estimate, max_memory)
    details["id_twonn"] = id_estimate
    if dim is not None and not 1 <= d < x.shape[1]:  # a d from the gap rule is below D
        if d < 1:
            reason = "TwoNN has no estimate for this layer, so the paper's protocol has no d"
        else:
            source = f"TwoNN reads {id_estimate:.3g}" if dim == "twonn" else f"dim={d} was given"
            reason = (
                f"{source}, not below the layer's {x.shape[1]} features: a manifold that fills its "
                "space has no normal direction to bend into"
            )
        return x, graph_for, d, id_estimate, details, reason, NOT_MEASURABLE
    if found is not None and not found.clear:
        return (
            x,
            graph_for,
            d,
            id_estimate,
            details,
            _uncertain_dimension(found, id_estimate),
            UNCERTAIN_DIMENSION,
        )
    return x, graph_for, d, id_estimate, details, "", "measured"


def perturbation_curvature_profile(
    arrays: Activations,
    *,
    n_top: int = 22,
    n_toggle: int = 10,
    n_copies: int | None = None,
    dim: int | str | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    device="cpu",
    progress: bool = False,
) -> Result:
    """The curvature of every layer of `arrays` with `perturb` neighbourhoods (see `curvature`).

    `arrays` holds the layers' activations of the images themselves (from `layers_from_model`):
    they give each layer's tangent dimension, read as for `knn` from the gap in the local PCA
    spectra of the images' kNN neighbourhoods (`dim` overrides: an integer, or "twonn" for
    each layer's rounded TwoNN estimate, the paper's protocol); a layer without a clear gap, or
    whose d needs more neighbours than there are copies, is kept with NaN metrics and its
    reason, and the copies do not run through it. Then, a batch of images at a time, every image's
    perturbed copies go through the model once, and in every layer the copies' activations
    are the neighbourhood of the centre's (the rank-n_top reconstruction's) activation.
    """
    if arrays.model is None or arrays.data is None:
        raise InputError("perturb needs a model and its image data; use knn for bare points.",
                         parameter="neighbourhood")  # fmt: skip
    images = arrays.data.inputs()
    if images.ndim != 4:
        raise InputError(
            f"perturb needs images (N, C, H, W), the data has inputs of shape {tuple(images.shape[1:])}; "
            "use knn.",
            parameter="neighbourhood",
        )
    dim = _checked_dim(dim, arrays)
    reduction = arrays.source.get("reduction", "none")
    first = svd_perturbations(images[:1], n_top=n_top, n_toggle=n_toggle, n_copies=n_copies, seed=seed)
    n_per_image = first.copies.shape[1] + 1
    n_layers = len(arrays.layers)
    entries: dict[str, LayerResult] = {}  # layers settled before the copies run (not measurable)
    accumulators: dict[str, tuple[NeighbourhoodCurvature, float, dict]] = {}
    for index, layer in enumerate(arrays.layers):
        _, _, d, id_estimate, details, reason, status = _layer_setup(layer, dim, seed, device)
        if not reason and min_neighbours(d) > n_per_image - 1:
            details["k_needed"] = min_neighbours(d)
            reason, status = _too_few_copies(d, n_per_image - 1), NOT_MEASURABLE
        if reason:
            entries[layer.name] = _unmeasured_entry(
                layer, index, n_layers, id_estimate, reason, details, status
            )
        else:
            accumulators[layer.name] = (NeighbourhoodCurvature(d, device=device), id_estimate, details)
    names = list(accumulators)
    width = sum(layer.points.shape[1] for layer in arrays.layers if layer.name in accumulators)
    per_batch = max(1, 2**26 // (n_per_image * max(width, int(np.prod(images.shape[1:])))))
    starts = range(0, len(images), per_batch) if names else range(0)
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
                accumulators[name][0].add(values[:g], values[g:].reshape(g, p, -1))

    params = {"neighbourhood": "perturb", "n_top": first.n_top, "n_toggle": first.n_toggle,
              "n_copies": n_per_image - 1, "centre": first.centre, "dim": dim, "n_bootstrap": n_bootstrap,
              "seed": seed}  # fmt: skip
    layers = []
    for index, layer in enumerate(arrays.layers):
        if layer.name in entries:
            layers.append(entries[layer.name])
            continue
        accumulator, id_estimate, details = accumulators[layer.name]
        try:
            measured = accumulator.result(n_bootstrap=n_bootstrap, seed=seed)
        except InputError as error:  # every neighbourhood degenerate
            reason = str(error).rstrip(".")
            layers.append(_unmeasured_entry(layer, index, n_layers, id_estimate, reason, details))
            continue
        status = reason = None
        if dim == "twonn":  # the paper's own construction: MAPC reported, marked, whatever the guards say
            status, reason = PAPER_PROTOCOL, (
                f"the paper's protocol: d = {details.get('dim')} from the rounded TwoNN, not read from the "
                f"layer's scales; the fit alone says {measured.status}"
                + (f" ({measured.reason})" if measured.reason else "")
                + "; perturbation neighbourhoods have no Gaussian null")  # fmt: skip
        layers.append(_layer_entry(layer, index, n_layers, measured, id_estimate, details, status=status,
                                   reason=reason))  # fmt: skip
    return Result(command="curvature", source=arrays.source, params=params, layers=layers,
                  summary=_gap_summary(layers))  # fmt: skip
