"""Layer activations in one forward pass: layer selection, hooks, reductions, the on-disk cache.

layers = select_layers(model, example_batch, ["layer*.?", "logits"])
with extract(model, dataset, layers, reduction="avgpool", model_key=..., data_key=...) as acts:
    for name, array in acts.items(): ...
"""

from .activations import Activations, LayerRecord
from .cache import ActivationCache, CacheKey, default_cache_dir
from .engine import extract
from .layers import LayerInfo, default_layers, list_layers, select_layers
from .patterns import layer_matches
from .reductions import Reduction, parse_reduction, parse_reduction_options, resolve_reductions

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
