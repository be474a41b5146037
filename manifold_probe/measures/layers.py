"""What every layer profile shares: the layer's place in the network."""

from __future__ import annotations

from ..extraction.activations import LayerArray
from ..results import LayerResult


def layer_result(layer: LayerArray, index: int, n_layers: int) -> LayerResult:
    """An empty LayerResult for `layer`, the index-th of n_layers (relative depth index/(n-1))."""
    return LayerResult(
        name=layer.name,
        index=index,
        depth=index / (n_layers - 1) if n_layers > 1 else 0.0,
        ambient_dim=int(layer.points.shape[1]),
        n_points=int(layer.points.shape[0]),
        shape=list(layer.shape),
    )
