"""scikit-dimension's estimators behind one call, fed the shared neighbour graph where they accept it.

Native TwoNN and MLE live in `intrinsic_dimension`; this adapter covers the rest
(`--method danco`, ...). Local estimators (ESS, MADA, MOM, TLE) take precomputed
neighbours (`precomputed_knn_arrays`), so they reuse the layer's graph; global ones see
the points.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np

from ..errors import InputError
from .intrinsic_dimension import IntrinsicDimension
from .neighbours import NeighbourGraph, nearest_neighbours, point_scale

# method name on the command line -> scikit-dimension class name
SKDIM_METHODS = {
    "corrint": "CorrInt",
    "danco": "DANCo",
    "ess": "ESS",
    "fishers": "FisherS",
    "gride": "GRIDE",
    "knn": "KNN",
    "lpca": "lPCA",
    "mada": "MADA",
    "mind_ml": "MiND_ML",
    "mom": "MOM",
    "tle": "TLE",
    "ph": "PH",
}


def skdim_estimator(method: str, seed: int = 0):
    """A fresh scikit-dimension estimator for `method`, seeded when it takes a random_state."""
    import skdim  # imported here: it pulls in numba, slow to import

    try:
        cls = getattr(skdim.id, SKDIM_METHODS[method])
    except KeyError:
        raise InputError(
            f"unknown intrinsic-dimension method {method!r}; choose from twonn, mle, pca, "
            + ", ".join(SKDIM_METHODS)
            + "."
        ) from None
    params = inspect.signature(cls).parameters
    return cls(random_state=seed) if "random_state" in params else cls()


def neighbours_needed(method: str) -> int:
    """How many neighbours a local scikit-dimension estimator reads by default (0 for global ones)."""
    from skdim._commonfuncs import LocalEstimator

    est = skdim_estimator(method)
    return int(getattr(est, "_N_NEIGHBORS", 0)) if isinstance(est, LocalEstimator) else 0


def skdim_dimension(
    method: str, points, *, graph: NeighbourGraph | None = None, seed: int = 0, device="cpu"
) -> IntrinsicDimension:
    """Intrinsic dimension of `points` by scikit-dimension's `method`, reusing `graph` if it is big enough."""
    est = skdim_estimator(method, seed)
    # scikit-dimension sees the points divided by a power of two near their spread (and the
    # graph's distances likewise): the dimension is scale-free, its arithmetic is not
    scale = point_scale(points)
    x = np.asarray(points, dtype=np.float64) / scale
    k = neighbours_needed(method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-dimension warns freely on benign cases
        if k:
            if graph is None or graph.k < k:
                graph = nearest_neighbours(x, min(k, len(x) - 1), device=device)
                scale = 1.0
            g = graph.first(min(k, graph.k))
            est.fit(x, precomputed_knn_arrays=(g.distances / scale, g.indices))
        else:
            est.fit(x)
    return IntrinsicDimension(float(est.dimension_), len(x))
