"""Estimators on arrays only: neighbours, intrinsic dimension, curvature (fitted, windowed, exact),
the multiscale profile, collapse, spectra, representation similarity.

Nothing in here knows about nn.Module; every function takes arrays and returns arrays or a
frozen dataclass. The estimators are public as `mp.geometry.<name>` (the names below shadow
the submodules of the same name: `from manifold_probe.geometry.curvature import ...` still
reaches the module). What each computes, and how it is validated: docs/methods.md.

Example
-------
>>> import manifold_probe as mp
>>> round(mp.geometry.twonn(X).dimension)  # X: 500 points on the unit sphere S^2
2
>>> round(mp.geometry.curvature(X, dim=2).metrics()["curvature_sff"], 1)  # 1 / radius
1.0
"""

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

_WHERE = {
    "neural_collapse": "collapse", "curvature": "curvature", "principal_curvatures": "curvature",
    "measure_dimensions": "id_profile", "mle": "intrinsic_dimension", "twonn": "intrinsic_dimension",
    "linear_dimension": "linear_dimension", "nearest_neighbours": "neighbours",
    "skdim_dimension": "skdim_adapter", "covariance_spectra": "spectra", "fisher_spectra": "spectra",
    "multiscale_profile": "multiscale", "denoise": "denoise", "windowed_curvature": "windowed_curvature",
    "matched_null": "matched_null", "second_fundamental_form": "exact_curvature",
    "representation_similarity": "similarity",
}  # fmt: skip
"""Where each estimator lives: loaded on first use, so that importing one module of the
package (the neighbours, the intrinsic dimension) does not import every other (torch, scipy)."""

if TYPE_CHECKING:
    from .collapse import neural_collapse
    from .curvature import curvature, principal_curvatures
    from .denoise import denoise
    from .exact_curvature import second_fundamental_form
    from .id_profile import measure_dimensions
    from .intrinsic_dimension import mle, twonn
    from .linear_dimension import linear_dimension
    from .matched_null import matched_null
    from .multiscale import multiscale_profile
    from .neighbours import nearest_neighbours
    from .similarity import representation_similarity
    from .skdim_adapter import skdim_dimension
    from .spectra import covariance_spectra, fisher_spectra
    from .windowed_curvature import windowed_curvature


class _Estimators(types.ModuleType):
    """The package: an estimator loads on first use; and when a submodule of the same name
    (`curvature`, `linear_dimension`) is imported, which sets the package's attribute to the
    submodule, the attribute becomes the estimator instead (as an eager import used to leave it)."""

    def __getattr__(self, name: str) -> Any:
        if name not in _WHERE:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        super().__setattr__(name, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _WHERE.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Estimators


__all__ = [
    "covariance_spectra",
    "curvature",
    "denoise",
    "fisher_spectra",
    "linear_dimension",
    "matched_null",
    "measure_dimensions",
    "mle",
    "multiscale_profile",
    "nearest_neighbours",
    "neural_collapse",
    "principal_curvatures",
    "representation_similarity",
    "second_fundamental_form",
    "skdim_dimension",
    "twonn",
    "windowed_curvature",
]
