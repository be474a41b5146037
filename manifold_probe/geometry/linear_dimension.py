"""Linear dimension of a point cloud: PCA components for 90 % of the variance, participation ratio."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..validation import as_points
from .neighbours import _column_mean, point_scale


@dataclass(frozen=True)
class LinearDimension:
    """PCA-based dimensions of one point cloud; `eigenvalues` of the covariance, largest first."""

    pca90: int
    participation_ratio: float
    eigenvalues: np.ndarray


_GRAM_BLOCK = 2**20
"""float64 entries of one block of the centred points (8 MB) while the Gram matrix is summed."""


def _scaled_eigenvalues(points, device) -> tuple[np.ndarray, float]:
    """Covariance eigenvalues of points / s, largest first, and s = `point_scale(points)`.

    On a CPU in numpy (LAPACK's syevd: torch's own, MKL on the AMD machines this was measured
    on, took 495 s where numpy's took 19 s for a 4,096 x 4,096 matrix), the Gram matrix summed
    over blocks of the centred points in float64 (rows for X^T X, columns for X X^T), so no
    float64 copy of the whole layer is made."""
    from ..device import cpu_without_torch

    x = as_points(points)
    scale = point_scale(x)
    if not cpu_without_torch(device) and str(getattr(device, "type", device)).lower() != "cpu":
        return _device_eigenvalues(x, scale, device), scale
    n, dim = x.shape
    mean = _column_mean(x) / scale
    if dim <= n:
        gram = np.zeros((dim, dim))
        step = max(1, _GRAM_BLOCK // dim)
        for start in range(0, n, step):
            block = x[start : start + step].astype(np.float64) / scale - mean
            gram += block.T @ block
    else:
        gram = np.zeros((n, n))
        step = max(1, _GRAM_BLOCK // n)
        for start in range(0, dim, step):
            block = x[:, start : start + step].astype(np.float64) / scale - mean[start : start + step]
            gram += block @ block.T
    eig = np.linalg.eigvalsh(gram)[::-1].clip(min=0) / max(n - 1, 1)
    return np.ascontiguousarray(eig), scale


def _device_eigenvalues(x: np.ndarray, scale: float, device) -> np.ndarray:
    """The same on a GPU (torch, float64)."""
    import torch

    from ..device import resolve_device

    xt = torch.from_numpy(np.ascontiguousarray(x)).to(resolve_device(device), torch.float64) / scale
    xt = xt - xt.mean(dim=0)
    gram = xt.T @ xt if xt.shape[1] <= xt.shape[0] else xt @ xt.T
    eig = torch.linalg.eigvalsh(gram).flip(0).clamp_min(0) / max(x.shape[0] - 1, 1)
    return eig.cpu().numpy()


def covariance_eigenvalues(points, *, device="cpu") -> np.ndarray:
    """Eigenvalues of the sample covariance (1/(N-1)) X_c^T X_c, largest first, in float64.

    Computed from the smaller of the two Gram matrices (D x D or N x N): both share the
    nonzero spectrum, so a layer with D >> N never forms a D x D matrix. The points are
    divided by `point_scale` (a power of two) first and the eigenvalues multiplied by its
    square, so no square overflows or underflows on the way (a variance beyond 1e308 is inf).
    """
    eig, scale = _scaled_eigenvalues(points, device)
    return _unscaled(eig, scale)


def _unscaled(eig: np.ndarray, scale: float) -> np.ndarray:
    with np.errstate(over="ignore"):  # beyond float64: inf
        return eig * scale * scale


def linear_dimension(points, *, variance: float = 0.9, device="cpu") -> LinearDimension:
    """pca90: the fewest principal components whose variance reaches `variance` of the total;
    participation ratio PR = (sum lambda)^2 / sum lambda^2 (Gao et al. 2017, "A theory of
    multineuronal dimensionality"), between 1 and the rank. Both are computed from the
    spectrum of the scaled points, so they are the same at every scale of the points.
    """
    eig, scale = _scaled_eigenvalues(points, device)
    total = eig.sum()
    if total <= 0:
        return LinearDimension(0, 0.0, _unscaled(eig, scale))
    share = np.cumsum(eig) / total
    n_components = int(np.searchsorted(share, variance - 1e-12) + 1)
    return LinearDimension(n_components, float(total**2 / np.sum(eig**2)), _unscaled(eig, scale))
