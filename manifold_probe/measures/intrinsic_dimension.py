"""The intrinsic-dimension measure (`mp.intrinsic_dimension`, `mprobe id`): every requested
estimator on every layer, from one neighbour graph per layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import InputError
from ..geometry.id_profile import DEFAULT_METHODS, check_methods, measure_dimensions
from ..results import Result
from ..validation import check_count, check_seed
from .layers import layer_result, measure_layers
from .sources import as_activations, estimator_device


def intrinsic_dimension(
    source: Any,
    data: Any = None,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    n_bootstrap: int = 0,
    seed: int = 0,
    knn_backend: str = "torch",
    neighbours: str = "exact",
    device: str | None = None,
    max_memory: int | None = None,
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
    neighbours : `exact` (the default), or `hnsw`: an approximate graph for large N (faiss's
        HNSW index; the extra `manifold-probe[faiss]`), its recall measured on 1,000 rows
        drawn with `seed` against an exact search and reported per layer as
        `details["knn_recall"]` (a warning below 0.99). Use it from about 100,000 points.
    device : where the estimators run (None: where the model is, else the CPU).
    max_memory : with a model, bytes of RAM for the activations (`extract`).
    progress : show progress bars.
    **extract_options : passed to `extract` with a model (layers, reduction, cache, ...).

    Returns
    -------
    A `Result`: per layer `id_<method>`, `id_pca90`, `participation_ratio`. A model's layer
    that cannot be measured (constant, too few distinct points for the estimators'
    neighbours) is kept with status `skipped` and its reason.

    Example
    -------
    >>> import numpy as np, manifold_probe as mp
    >>> r = mp.intrinsic_dimension(np.random.default_rng(0).normal(size=(400, 3)), methods=("twonn", "mle"))
    >>> sorted(r.metrics["points"])
    ['id_mle', 'id_twonn']
    """
    methods = check_methods(methods)
    if neighbours not in ("exact", "hnsw"):
        raise InputError(
            f"unknown neighbour search {neighbours!r}; use exact or hnsw.", parameter="neighbours"
        )
    n_bootstrap = check_count(n_bootstrap, name="n_bootstrap")
    seed = check_seed(seed)
    acts = as_activations(source, data, min_points=4, classifier=False, max_memory=max_memory,
                          extract_options=extract_options)  # fmt: skip
    dev = estimator_device(acts, device)

    def measure(layer, index, n):
        measured = measure_dimensions(
            layer.points, methods, n_bootstrap=n_bootstrap, seed=seed, device=dev, backend=knn_backend,
            neighbours=neighbours,
        )  # fmt: skip
        return layer_result(layer, index, n, metrics=measured.metrics, intervals=measured.intervals,
                            details=measured.details)  # fmt: skip

    params = {"methods": list(methods), "n_bootstrap": n_bootstrap, "seed": seed, "knn_backend": knn_backend}
    if neighbours != "exact":  # exact results keep the params they always had
        params["neighbours"] = neighbours
    layers = measure_layers(acts, measure, description="intrinsic dimension", progress=progress)
    return Result(command="id", source=acts.source, params=params, layers=layers)
