"""manifold-probe: the geometry of neural-network representations, layer by layer.

    import manifold_probe as mp
    model = mp.load_model("ckpt.pt")                  # or any nn.Module
    data = mp.load_data("digits", n_points=1000)      # or a Tensor / Dataset / DataLoader
    acts = mp.extract(model, data, layers="block*")
    mp.intrinsic_dimension(acts).to_frame()
    mp.geometry.twonn(X)                              # the estimators on bare arrays

Importing the package is light: torch, scipy and plotly load when a function is first used
(module `__getattr__`). Walkthrough: docs/python-api.md; the measures: docs/methods.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_TYPES = {"Activations": "extraction.activations", "Result": "results", "InputError": "errors"}
_MODULES = ("geometry",)

__all__ = [
    "Activations",
    "InputError",
    "Result",
    "__version__",
    "collapse",
    "curvature",
    "cutting_planes",
    "extract",
    "geometry",
    "intrinsic_dimension",
    "list_layers",
    "load_data",
    "load_model",
    "model_info",
    "spectra",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load on first use
    from . import geometry
    from .api import (
        collapse,
        curvature,
        cutting_planes,
        extract,
        intrinsic_dimension,
        list_layers,
        load_data,
        load_model,
        model_info,
        spectra,
    )
    from .errors import InputError
    from .extraction.activations import Activations
    from .results import Result


def __getattr__(name: str) -> Any:
    """Load a public name on first use: a type, `geometry`, or a function of `api`."""
    if name in _TYPES:
        value = getattr(importlib.import_module(f".{_TYPES[name]}", __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    elif name in __all__:
        value = getattr(importlib.import_module(".api", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
