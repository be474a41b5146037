"""Layer activations in one forward pass: layer selection, hooks, reductions, the on-disk cache.

layers = select_layers(model, example_batch, ["layer*.?", "logits"])
with extract(model, dataset, layers, reduction="avgpool", model_key=..., data_key=...) as acts:
    for name, array in acts.items(): ...
"""

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "Activations": "activations", "LayerRecord": "activations", "ActivationCache": "cache",
    "CacheKey": "cache", "default_cache_dir": "cache", "extract": "engine", "LayerInfo": "layers",
    "default_layers": "layers", "list_layers": "layers", "select_layers": "layers",
    "layer_matches": "patterns", "Reduction": "reductions", "parse_reduction": "reductions",
    "parse_reduction_options": "reductions", "resolve_reductions": "reductions",
}  # fmt: skip
"""Where each public name lives: loaded on first use, so that `extraction.activations` (the
type a measure of bare points needs) does not bring torch in through the engine."""

if TYPE_CHECKING:
    from .activations import Activations, LayerRecord
    from .cache import ActivationCache, CacheKey, default_cache_dir
    from .engine import extract
    from .layers import LayerInfo, default_layers, list_layers, select_layers
    from .patterns import layer_matches
    from .reductions import Reduction, parse_reduction, parse_reduction_options, resolve_reductions


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "ActivationCache",
    "Activations",
    "CacheKey",
    "LayerInfo",
    "LayerRecord",
    "Reduction",
    "default_cache_dir",
    "default_layers",
    "extract",
    "layer_matches",
    "list_layers",
    "parse_reduction",
    "parse_reduction_options",
    "resolve_reductions",
    "select_layers",
]
