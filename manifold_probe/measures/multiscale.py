"""The multiscale measure (`mp.multiscale`, `mprobe multiscale`): each layer's geometry against scale.

Per layer, the multiscale local SVD profile (`geometry.multiscale`): over a ladder of
neighbourhood sizes K, the radius, the local singular values, the scale-dependent dimension d(r),
each direction's growth exponent (1 tangent, 2 bending, 0 noise), the share of neighbours that
share the centre's class, and the manifold scale window if there is one. It answers, before any
curvature is fitted, whether a layer looks like a manifold at some range of scales. The profile
is the measurement, so every profiled layer is `measured`; one with no window has `window_dim` NaN
and a `reason` saying what its profile shows instead. Wide layers are first
projected on their components above the noise edge (`geometry.denoise`), as the curvature
measure does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..geometry.intrinsic_dimension import distinct_points
from ..geometry.multiscale import multiscale_profile
from ..geometry.windowed_curvature import working_points
from ..results import Result
from ..validation import check_count, check_seed
from .layers import distinct_labels, layer_result, measure_layers
from .sources import as_activations, estimator_device


def multiscale(
    source: Any,
    data: Any = None,
    *,
    labels: Any = None,
    n_anchors: int = 200,
    denoise: bool = True,
    seed: int = 0,
    device: str | None = None,
    max_memory: int | None = None,
    progress: bool = False,
    **extract_options: Any,
) -> Result:
    """The multiscale profile of every layer (Little, Maggioni & Rosasco 2017;
    docs/methods.md#multiscale-profile).

    Parameters
    ----------
    source : activations, a bare (N, D) array, or a model (then give `data`).
    data : the model's data.
    labels : class labels (else the data's): the share of neighbours in the centre's class.
    n_anchors : the seeded sample of anchor points whose neighbourhoods are analysed.
    denoise : project wide layers on their components above the noise edge first.
    seed : seeds the anchors (and `project:N` reductions).
    device, max_memory : where the neighbour search runs; the extraction's memory bound.
    progress : show progress bars.
    **extract_options : passed to `extract` with a model.

    Returns
    -------
    A `Result` (command `multiscale`): per layer `window_dim` and `window_bending` (the window's
    d and bending directions; NaN without a window), `scale_dim_small`, `scale_dim_large` (d(r)
    at the smallest and largest K), and with labels `class_agreement_small` / `_large`; the whole
    profile in `details[layer]["profile"]`.

    Example
    -------
    >>> import numpy as np, manifold_probe as mp
    >>> rng = np.random.default_rng(0)
    >>> v = rng.normal(size=(2000, 3)); sphere = v / np.linalg.norm(v, axis=1, keepdims=True)
    >>> mp.multiscale(sphere).metrics["points"]["window_dim"]
    2.0
    """
    seed = check_seed(seed)
    n_anchors = check_count(n_anchors, name="n_anchors", minimum=4)
    acts = as_activations(source, data, labels=labels, min_points=4, classifier=False, max_memory=max_memory,
                          extract_options=extract_options)  # fmt: skip
    dev = estimator_device(acts, device)

    def measure(layer, index, n):
        x = distinct_points(layer.points)
        work, denoised = working_points(np.asarray(x, dtype=np.float64), denoise)
        found = multiscale_profile(
            work,
            labels=distinct_labels(layer.points, acts.labels),
            n_anchors=n_anchors,
            seed=seed,
            device=dev,
            noise_variance=denoised.noise_variance if denoised is not None else 0.0,
            ambient_dim=x.shape[1],
        )
        details = {
            "profile": found.details(),
            "denoised": denoised.details() if denoised is not None else None,
        }
        reason = "" if found.window is not None else f"no manifold scale window: {found.reason}"
        return layer_result(layer, index, n, metrics=found.metrics(), details=details, reason=reason)

    params = {"n_anchors": n_anchors, "denoise": denoise, "seed": seed}
    layers = measure_layers(acts, measure, description="multiscale profile", progress=progress)
    return Result(command="multiscale", source=acts.source, params=params, layers=layers)
