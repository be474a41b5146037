"""The intrinsic-dimension profile: every requested estimator on every layer."""

from __future__ import annotations

from ..extraction.activations import Activations
from ..geometry.id_profile import DEFAULT_METHODS, check_methods, measure_dimensions
from ..progress import track
from ..results import Result
from .layers import layer_result


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
    """Result of `mprobe id`: metrics id_<method> (and id_pca90, participation_ratio) per layer."""
    methods = check_methods(methods)
    result = Result(
        command="id",
        source=dict(arrays.source),
        params={"methods": list(methods), "bootstrap": n_bootstrap, "seed": seed, "knn_backend": backend},
    )
    n = len(arrays.layers)
    for index, layer in enumerate(track(arrays.layers, description="intrinsic dimension", enabled=progress)):
        measured = measure_dimensions(
            layer.points, methods, n_bootstrap=n_bootstrap, seed=seed, device=device, backend=backend
        )
        entry = layer_result(layer, index, n)
        entry.metrics.update(measured.metrics)
        entry.intervals.update(measured.intervals)
        result.layers.append(entry)
    return result
