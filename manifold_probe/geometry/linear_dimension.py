"""Linear dimension of a point cloud: PCA components for 90 % of the variance, participation ratio."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..device import blas_threads
from ..validation import as_points
from .neighbours import _column_mean, _cpu_count, point_scale


@dataclass(frozen=True)
class LinearDimension:
    """PCA-based dimensions of one point cloud; `eigenvalues` of the covariance, largest first."""

    pca90: int
    participation_ratio: float
    eigenvalues: np.ndarray


_GRAM_BLOCK = 2**20
"""float64 entries of one block of the centred points (8 MB) while the Gram matrix is summed."""


def _scaled_eigenvalues(points, device) -> tuple[np.ndarray, float]:
    """Covariance eigenvalues of points / s, largest first, and s = `point_scale(points)`."""
    gram, n, scale = _scaled_gram(points, device)
    if not isinstance(gram, np.ndarray):  # computed on a GPU already
        return gram, scale
    return np.ascontiguousarray(_eigenvalues(gram)) / max(n - 1, 1), scale


def _eigenvalues(gram: np.ndarray) -> np.ndarray:
    """Every eigenvalue of `gram`, largest first, negatives (rounding) clipped to 0; LAPACK on
    one thread (`device.blas_threads`: its threads cost far more than they give here)."""
    with blas_threads(1):
        return np.linalg.eigvalsh(gram)[::-1].clip(min=0)


def _scaled_gram(points, device):
    """(the smaller Gram matrix of the centred points / s in float64, N, s); on a GPU the
    eigenvalues instead of the matrix.

    On a CPU in numpy (LAPACK's syevd: torch's own, MKL on the AMD machines this was measured
    on, took 495 s where numpy's took 19 s for a 4,096 x 4,096 matrix), the Gram matrix summed
    over blocks of the centred points in float64 (rows for X^T X, columns for X X^T), so no
    float64 copy of the whole layer is made."""
    from ..device import cpu_without_torch

    x = as_points(points)
    scale = point_scale(x)
    n, dim = x.shape
    if not cpu_without_torch(device) and str(getattr(device, "type", device)).lower() != "cpu":
        return _device_eigenvalues(x, scale, device), n, scale
    mean = _column_mean(x) / scale
    size = min(n, dim)
    if dim <= n:  # X^T X over blocks of rows
        step = max(1, _GRAM_BLOCK // dim)

        def part(start: int, gram: np.ndarray) -> None:
            b = x[start : start + step].astype(np.float64) / scale - mean
            gram += b.T @ b
    else:  # X X^T over blocks of columns
        step = max(1, _GRAM_BLOCK // n)

        def part(start: int, gram: np.ndarray) -> None:
            b = x[:, start : start + step].astype(np.float64) / scale - mean[start : start + step]
            gram += b @ b.T

    starts = list(range(0, dim if dim > n else n, step))
    workers = _cpu_count() if size * size * max(n, dim) >= 2**30 else 1
    return _summed(part, starts, size, workers), n, scale


def _summed(part, starts: list[int], size: int, workers: int) -> np.ndarray:
    """The sum of part(start, gram) over `starts`: each of `workers` threads sums its share of
    the blocks into its own matrix, BLAS on one thread each (`device.blas_threads`), so the
    cores never wait for each other inside a product; the matrices are then added."""
    grams = [np.zeros((size, size)) for _ in range(workers)]

    def run(worker: int) -> None:
        for start in starts[worker::workers]:
            part(start, grams[worker])

    with blas_threads(1):
        if workers == 1:
            run(0)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(run, range(workers)))
    return functools.reduce(np.add, grams)


_FULL_SPECTRUM_MAX = 1024
"""Gram matrices up to this size are always diagonalised whole (milliseconds)."""


def _leading_spectrum(gram: np.ndarray, variance: float) -> np.ndarray:
    """The largest eigenvalues of the symmetric PSD `gram`, largest first, as many as it takes
    to reach `variance` of the trace (and one more), or the whole spectrum.

    A block Krylov space span{W, G W, ..., G^8 W} of a seeded Gaussian block W (GEMMs only),
    then Rayleigh-Ritz. Each Ritz value t with residual r = ||G u - t u|| lies within r of an
    eigenvalue, and no Ritz value exceeds the eigenvalue of its rank (Cauchy interlacing);
    the values are used while r stays below 1e-6 of the largest, and the count only when the
    share of the trace that decides it is farther from `variance` than the summed residuals.
    Otherwise the block widens (to twice the count seen, at least doubling), at most twice
    and up to an eighth of the matrix, and then the whole spectrum is computed (`eigvalsh`).
    The count and the participation ratio are thus the whole spectrum's (tested on fast and
    slow spectra); the eigenvalues returned are within their residuals of LAPACK's.
    """
    n = len(gram)
    total = float(np.trace(gram))
    if n > _FULL_SPECTRUM_MAX and total > 0:
        rng = np.random.default_rng(0)
        # the participation ratio (free from the trace and the Frobenius norm) is a first guess
        width = max(64, 2 * int(total**2 / float(np.sum(gram * gram))) + 16)
        for _ in range(3):
            if 8 * width > n:
                break
            theta, residual = _ritz(gram, rng.standard_normal((n, width)), steps=8)
            bad = residual > 1e-6 * theta[0]
            good = int(np.argmax(bad)) if bad.any() else len(theta)
            share = np.cumsum(theta[:good]) / total
            error = np.cumsum(residual[:good]) / total
            count = int(np.searchsorted(share, variance - 1e-12) + 1)
            if (
                count < good
                and abs(share[count - 1] - variance) > error[count - 1]
                and (count == 1 or abs(share[count - 2] - variance) > error[count - 2])
            ):
                return theta[: count + 1]
            seen = int(np.searchsorted(np.cumsum(theta) / total, variance) + 1)
            width = max(2 * width, 2 * seen + 16)
    return _eigenvalues(gram)


def _ritz(gram: np.ndarray, start: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(Ritz values, largest first, and their residual norms) of `gram` on the block Krylov
    space of `start`."""
    with blas_threads(1):  # the factorisations; the products below use every core
        block, _ = np.linalg.qr(start)
    blocks = [block]
    for _ in range(steps):
        product = gram @ block
        with blas_threads(1):
            block, _ = np.linalg.qr(product)
        blocks.append(block)
    with blas_threads(1):
        basis, _ = np.linalg.qr(np.hstack(blocks))  # orthonormal (Rayleigh-Ritz needs only that)
    product = gram @ basis
    with blas_threads(1):
        theta, vectors = np.linalg.eigh(basis.T @ product)
    theta, vectors = theta[::-1], vectors[:, ::-1]
    residual = np.linalg.norm(product @ vectors - (basis @ vectors) * theta, axis=0)
    return theta, residual


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


def linear_dimension(
    points, *, variance: float = 0.9, device="cpu", spectrum: str = "full"
) -> LinearDimension:
    """pca90: the fewest principal components whose variance reaches `variance` of the total;
    participation ratio PR = (sum lambda)^2 / sum lambda^2 = trace(C)^2 / ||C||_F^2 (Gao et al.
    2017, "A theory of multineuronal dimensionality"), between 1 and the rank. Both come from
    the smaller Gram matrix of the scaled points (one matrix per layer), so they are the same
    at every scale of the points.

    spectrum: "full" (every eigenvalue in `eigenvalues`), or "leading": only the largest ones
    that decide pca90 (`_leading_spectrum`: GEMMs on the Gram matrix instead of its whole
    eigendecomposition, which took most of a ResNet-18 run); pca90 and PR are the same.
    """
    gram, n, scale = _scaled_gram(points, device)
    if not isinstance(gram, np.ndarray):  # a GPU's eigenvalues
        eig = gram
        total, squares = eig.sum(), np.sum(eig**2)
    else:
        if spectrum not in ("full", "leading"):
            raise ValueError(f"spectrum must be full or leading, got {spectrum!r}")
        leading = spectrum == "leading" and n > 1
        eig = _leading_spectrum(gram, variance) if leading else _eigenvalues(gram)
        eig = np.ascontiguousarray(eig) / max(n - 1, 1)
        total = float(np.trace(gram)) / max(n - 1, 1)
        squares = float(np.sum(gram * gram)) / max(n - 1, 1) ** 2
    if total <= 0:
        return LinearDimension(0, 0.0, _unscaled(eig, scale))
    share = np.cumsum(eig) / total
    n_components = int(np.searchsorted(share, variance - 1e-12) + 1)
    return LinearDimension(n_components, float(total**2 / squares), _unscaled(eig, scale))
