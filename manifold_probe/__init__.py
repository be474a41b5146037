"""manifold-probe: the geometry of neural-network representations, layer by layer.

    import manifold_probe as mp
    model = mp.load_model("ckpt.pt")                  # or any nn.Module
    data = mp.load_data("digits", n_points=1000)      # or a Tensor / (X, y) / Dataset / DataLoader
    acts = mp.extract(model, data, layers="block*")
    mp.intrinsic_dimension(acts).to_frame()
    mp.geometry.twonn(X)                              # the estimators on bare arrays

Importing the package is light: torch, scipy and plotly load when a function is first used
(module `__getattr__`). Every measure (`mp.intrinsic_dimension`, `mp.curvature`, ...) comes
from the registry (`manifold_probe.registry`), so a registered measure is `mp.<name>` too.
Walkthrough: docs/python-api.md; the measures: docs/methods.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import registry

__version__ = "0.2.0"
"""The one place the version is written (pyproject.toml reads it from here)."""

_TYPES = {"Activations": "extraction.activations", "Result": "results", "InputError": "errors",
          "concat": "results", "read_result": "results", "load_points": "measures.sources",
          "plot": "report.figures", "write_figure": "report.figures"}  # fmt: skip
_MODULES = ("geometry",)
_API = ("extract", "list_layers", "load_data", "load_model", "model_info")  # load_points: no torch

__all__ = [
    "Activations",
    "InputError",
    "Result",
    "__version__",
    "collapse",
    "concat",
    "curvature",
    "cutting_planes",
    "extract",
    "geometry",
    "intrinsic_dimension",
    "list_layers",
    "load_data",
    "load_model",
    "load_points",
    "model_info",
    "plot",
    "read_result",
    "registry",
    "spectra",
    "write_figure",
]
__all__ += [m.api_name for m in registry.measures() if m.api_name not in __all__]  # measures added later

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load on first use
    from . import geometry
    from .api import extract, list_layers, load_data, load_model, load_points, model_info
    from .errors import InputError
    from .extraction.activations import Activations
    from .measures.collapse import collapse
    from .measures.curvature import curvature
    from .measures.cutting_planes import cutting_planes
    from .measures.intrinsic_dimension import intrinsic_dimension
    from .measures.spectra import spectra
    from .report.figures import plot, write_figure
    from .results import Result, concat, read_result


def __getattr__(name: str) -> Any:
    """Load a public name on first use: a type, `geometry`, a function of `api`, or a measure."""
    if name in _TYPES:
        value = getattr(importlib.import_module(f".{_TYPES[name]}", __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    elif name in _API:
        value = getattr(importlib.import_module(".api", __name__), name)
    elif (measure := registry.by_api_name(name)) is not None:
        return registry.resolve(measure.function)  # not cached: a measure may be registered again
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *(m.api_name for m in registry.measures())})
