"""Estimators on arrays only: neighbours, intrinsic dimension, curvature, collapse, spectra.

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

from .collapse import neural_collapse
from .curvature import curvature, principal_curvatures
from .id_profile import measure_dimensions
from .intrinsic_dimension import mle, twonn
from .linear_dimension import linear_dimension
from .neighbours import nearest_neighbours
from .skdim_adapter import skdim_dimension
from .spectra import covariance_spectra, fisher_spectra

__all__ = [
    "covariance_spectra",
    "curvature",
    "fisher_spectra",
    "linear_dimension",
    "measure_dimensions",
    "mle",
    "nearest_neighbours",
    "neural_collapse",
    "principal_curvatures",
    "skdim_dimension",
    "twonn",
]
