"""The intrinsic-dimension profile: every requested estimator on every layer."""

from __future__ import annotations

from ..extraction.activations import Activations
from ..geometry.id_profile import DEFAULT_METHODS, check_methods, measure_dimensions
from ..results import Result
from .layers import layer_result, measure_layers


def id_profile(
    arrays: Activations,
    methods=DEFAULT_METHODS,
    *,
    n_bootstrap: int = 0,
    seed: int = 0,
    device="cpu",
    backend: str = "torch",
    progress: bool = False,
) -> Result:
    """Result of `mprobe id`: metrics id_<method> (and id_pca90, participation_ratio) per layer.

    A model's layer that cannot be measured (constant, too few distinct points for the
    estimators' neighbours) is kept with status `skipped` and its reason (`layers.measure_layers`).
    """
    methods = check_methods(methods)
    result = Result(
        command="id",
        source=dict(arrays.source),
        params={"methods": list(methods), "bootstrap": n_bootstrap, "seed": seed, "knn_backend": backend},
    )

    def measure(layer, index, n):
        measured = measure_dimensions(
            layer.points, methods, n_bootstrap=n_bootstrap, seed=seed, device=device, backend=backend
        )
        entry = layer_result(layer, index, n)
        entry.metrics.update(measured.metrics)
        entry.intervals.update(measured.intervals)
        return entry

    layers = measure_layers(arrays, measure, description="intrinsic dimension", progress=progress)
    result.layers.extend(layers)
    return result
