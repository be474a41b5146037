"""Exact k nearest neighbours, chunked, on CPU or GPU; one graph per layer, shared by estimators.

Candidates are found with the Gram form ||x||^2 + ||y||^2 - 2 x.y on mean-centred float32
data, one block of query rows at a time (memory O(chunk * N)). That form loses precision
when points nearly coincide (relative error ~ eps * ||x||^2 / d^2), which is exactly where
TwoNN reads its ratios r2/r1. So a few spare candidates are kept per point, their
distances are recomputed directly as ||x - y|| in the input's precision (a difference of
two floats is correctly rounded, so the relative error is ~eps of that precision whatever
the norms: about 1e-6 for float32 activations), and the final k are sorted by them.
Both steps run on the points divided by `point_scale` (a power of two), so the graph is
the same for the points times any factor from 1e-300 to 1e300, its distances times
that factor.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..device import resolve_device
from ..errors import InputError
from ..validation import as_points, check_k


@dataclass(frozen=True)
class NeighbourGraph:
    """k nearest neighbours of every point, nearest first, the point itself excluded.

    indices: (N, k) int64; distances: (N, k) float64, computed directly as ||x - y||.
    """

    indices: np.ndarray
    distances: np.ndarray

    @property
    def k(self) -> int:
        return self.indices.shape[1]

    def first(self, k: int) -> NeighbourGraph:
        """The graph of the k nearest only (k <= self.k)."""
        if k > self.k:
            raise ValueError(f"graph holds {self.k} neighbours, asked for {k}")
        return NeighbourGraph(self.indices[:, :k], self.distances[:, :k])


BACKENDS = ("torch", "faiss")


def nearest_neighbours(
    points,
    k: int,
    *,
    device: str | torch.device = "cpu",
    backend: str = "torch",
    chunk_size: int | None = None,
    spare: int | None = None,
) -> NeighbourGraph:
    """Exact kNN graph of `points` (N, D), excluding each point itself.

    backend: "torch" (CPU or GPU) or "faiss" (an exact flat index, CPU; optional, `pip install
    manifold-probe[faiss]`) for the candidate search; the exact re-ranking is the same.
    chunk_size: query rows per block of distances (default: blocks of about 64 MB).
    spare: extra candidates re-ranked by exact distance (default max(8, k // 4)).
    """
    x_np = as_points(points, min_points=2)
    n, dim = x_np.shape
    k = check_k(k, n)
    dev = resolve_device(device)
    spare = max(8, k // 4) if spare is None else spare
    n_cand = min(n, k + 1 + spare)
    if chunk_size is None:
        chunk_size = max(1, min(n, 2**24 // n))  # a 64 MB block of float32 distances
    exact_rows = max(1, 2**21 // (n_cand * dim))  # 8 MB of gathered candidates at a time

    # both steps work on the points divided by a power of two near their spread: exact (a
    # power-of-two scaling only moves the exponent), and squares neither overflow nor
    # underflow float32 at any scale of the input; distances are scaled back in float64.
    # Exact distances use these points as given (float32 differences are correctly
    # rounded, so their relative error is eps32 whatever the norms); the search uses them
    # centred, in float32
    scale = point_scale(torch.from_numpy(x_np))
    x = torch.from_numpy(np.ascontiguousarray(x_np)).to(dev) / scale
    centred = (x.double() - x.double().mean(dim=0)).to(torch.float32)
    if backend == "torch":
        blocks = _torch_candidates(centred, n_cand, chunk_size)
    elif backend == "faiss":
        blocks = _faiss_candidates(centred, n_cand, chunk_size)
    else:
        raise InputError(f"unknown neighbour backend {backend!r}; use one of {', '.join(BACKENDS)}.")

    indices = np.empty((n, k), dtype=np.int64)
    distances = np.empty((n, k), dtype=np.float64)
    for start, candidates in blocks:
        for sub in range(start, start + len(candidates), exact_rows):
            end = min(start + len(candidates), sub + exact_rows)
            cand = candidates[sub - start : end - start]
            exact = torch.linalg.vector_norm(x[cand] - x[sub:end, None, :], dim=2).double()
            rows = torch.arange(sub, end, device=dev)[:, None]
            exact = torch.where(cand == rows, torch.inf, exact)
            order = torch.argsort(exact, dim=1, stable=True)[:, :k]
            indices[sub:end] = torch.gather(cand, 1, order).cpu().numpy()
            distances[sub:end] = torch.gather(exact, 1, order).cpu().numpy()
    distances *= scale
    return NeighbourGraph(indices, distances)


def point_scale(points) -> float:
    """A power of two within a factor of two of the points' spread max |x_ij - mean_j|
    (1.0 for identical points).

    Dividing by it is exact (only exponents change) and brings any finite point cloud,
    from 1e-300 to 1e300, to a spread near 1, where squared distances in float32 neither
    overflow nor underflow; scale-free estimators then give the same answer at every
    scale. Computed without overflow: first divided by a power of two near max |x_ij|.
    Example: point_scale(np.array([[0.0], [3e20]])) == 2.0**68 (the spread 1.5e20 lies in
    [2**67, 2**68)).
    """
    x = torch.as_tensor(points)
    largest = float(x.abs().max()) if x.numel() else 0.0
    if largest == 0.0:
        return 1.0
    unit = 2.0 ** math.frexp(largest)[1]
    y = x.double() / unit
    spread = float((y - y.mean(dim=0)).abs().max())
    return unit * 2.0 ** math.frexp(spread)[1] if spread > 0 else unit


def _torch_candidates(
    centred: torch.Tensor, n_cand: int, chunk_size: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """(first row, candidate indices) per block of query rows, from the Gram form in float32."""
    n = len(centred)
    sq_norms = (centred * centred).sum(dim=1)[None, :]
    # one buffer reused across blocks: fresh memory is slow to fault in on a busy machine
    block = torch.empty((min(chunk_size, n), n), dtype=torch.float32, device=centred.device)
    for start in range(0, n, chunk_size):
        stop = min(n, start + chunk_size)
        d2 = block[: stop - start]
        # ||q - y||^2 ranks like ||y||^2 - 2 q.y (||q||^2 is constant along a row)
        torch.addmm(sq_norms, centred[start:stop], centred.T, alpha=-2.0, out=d2)
        yield start, torch.topk(d2, n_cand, dim=1, largest=False, sorted=False).indices


def _faiss_candidates(
    centred: torch.Tensor, n_cand: int, chunk_size: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """The same candidates from faiss's exact flat L2 index (CPU)."""
    try:
        import faiss
    except ImportError:
        raise InputError("the faiss backend needs faiss: pip install 'manifold-probe[faiss]'.") from None
    data = np.ascontiguousarray(centred.cpu().numpy())
    index = faiss.IndexFlatL2(data.shape[1])
    index.add(data)
    for start in range(0, len(data), chunk_size):
        _, found = index.search(data[start : start + chunk_size], n_cand)
        yield start, torch.from_numpy(found).to(centred.device)


def drop_duplicates(points: np.ndarray) -> tuple[np.ndarray, int]:
    """The points with exact duplicate rows removed (first occurrence kept, order preserved),
    and how many were removed. Neighbour-distance estimators of intrinsic dimension need
    distinct points: a duplicate makes r1 = 0 for itself and r1 = r2 for its neighbours."""
    _, first = np.unique(points, axis=0, return_index=True)
    if len(first) == len(points):
        return points, 0
    return points[np.sort(first)], len(points) - len(first)
