"""Exact k nearest neighbours, chunked, on CPU or GPU; one graph per layer, shared by estimators.

Candidates are found with the Gram form ||x||^2 + ||y||^2 - 2 x.y on mean-centred float32
data, one block of query rows at a time (memory O(chunk * N)); from 1,024 features on, where
the product dominates, each pair of row blocks is multiplied once and serves both blocks (the
Gram matrix is symmetric). That form loses precision
when points nearly coincide (relative error ~ eps * ||x||^2 / d^2), which is exactly where
TwoNN reads its ratios r2/r1. So a few spare candidates are kept per point, their
distances are recomputed directly as ||x - y|| in the input's precision (a difference of
two floats is correctly rounded, so the relative error is ~eps of that precision whatever
the norms: about 1e-6 for float32 activations), and the final k are sorted by them, a block
of query rows at a time. Duplicate rows are found by hashing each row's bits (one pass, no
sort of the rows: `duplicate_rows`).
Both steps run on the points divided by `point_scale` (a power of two), so the graph is
the same for the points times any factor from 1e-300 to 1e300, its distances times
that factor.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from ..device import resolve_device, torch_threads
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

_RERANK_ELEMENTS = {"cpu": 2**20, "cuda": 2**26}
"""Gathered candidate coordinates per re-ranking block: about 4 MB on a CPU, so the gather,
the difference and the norm stay in cache (the data are read from memory once); large blocks
on a GPU, where each launch costs more than its memory traffic."""


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

    Two steps. (1) Candidates: the k + 1 + spare smallest of ||y||^2 - 2 q.y per query q,
    a float32 Gram product on the centred points, one block of query rows at a time.
    (2) Exact re-ranking: for blocks of query rows at once (vectorised), the candidates'
    distances ||q - y|| recomputed from differences in the input's precision, and the k
    nearest kept, ties broken by the lower index as a stable brute-force sort does.

    backend: "torch" (CPU or GPU) or "faiss" (an exact flat index, CPU; optional, `pip install
    manifold-probe[faiss]`) for the candidate search; the exact re-ranking is the same.
    chunk_size: query rows per block of distances (default: blocks of at most 64 MB).
    spare: extra candidates re-ranked by exact distance (default max(8, k // 4)).
    Memory: the points, one float32 centred copy and one block of distances.

    Example: nearest_neighbours(np.array([[0.0], [1.0], [3.0]]), 1).indices -> [[1], [0], [1]].
    """
    x_np = as_points(points, min_points=2)
    n, dim = x_np.shape
    k = check_k(k, n)
    dev = resolve_device(device)
    spare = max(8, k // 4) if spare is None else spare
    n_cand = min(n, k + 1 + spare)
    symmetric = backend == "torch" and dim >= SYMMETRIC_MIN_DIM
    if chunk_size is None:
        # 64 MB blocks of float32 distances; symmetric blocks of 1,024-4,096 rows (big products)
        chunk_size = min(n, max(1024, -(-n // 4)), 4096) if symmetric else max(1, min(n, 2**24 // n))
    if backend not in BACKENDS:
        raise InputError(f"unknown neighbour backend {backend!r}; use one of {', '.join(BACKENDS)}.")

    if dev.type != "cpu":
        return _search(x_np, k, dev, backend, n_cand, chunk_size, symmetric, workers=1)
    # On a CPU torch's own ops run on one thread: each of its parallel regions synchronises
    # its threads, which costs more than it saves on these ops and can stall for tens of
    # milliseconds on a loaded machine. The Gram products run in numpy's BLAS (all cores),
    # the re-ranking blocks in a pool of Python threads, one per core. A small search runs
    # entirely on one thread.
    if n * n * dim <= SMALL_SEARCH:
        with _one_thread():
            return _search(x_np, k, dev, backend, n_cand, chunk_size, symmetric, workers=1)
    workers = torch.get_num_threads()
    with torch_threads(1):
        return _search(x_np, k, dev, backend, n_cand, chunk_size, symmetric, workers=workers)


SMALL_SEARCH = 2**28
"""N^2 D (the Gram product's multiply-adds) up to which the search runs on one thread."""


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """torch and the BLAS numpy calls limited to one thread for the block."""
    with torch_threads(1), _blas_threads().limit(limits=1, user_api="blas"):
        yield


@functools.cache
def _blas_threads():
    """One threadpoolctl controller for the process: building one scans every loaded library
    (30 ms on a loaded machine), setting a limit through it costs 0.1 ms."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _search(x_np, k, dev, backend, n_cand, chunk_size, symmetric, workers) -> NeighbourGraph:
    """`nearest_neighbours` after its checks: candidates, then the exact re-ranking (in
    `workers` threads)."""
    n, dim = x_np.shape
    # both steps work on the points divided by a power of two near their spread: exact (a
    # power-of-two scaling only moves the exponent), and squares neither overflow nor
    # underflow float32 at any scale of the input; distances are scaled back in float64.
    # Exact distances use the points as given (float differences are correctly rounded, so
    # their relative error is eps of the input's precision whatever the norms); the search
    # uses them centred, in float32
    mean = _column_mean(x_np)
    scale = _spread_scale(x_np, mean)
    centred = torch.from_numpy(_centred_float32(x_np, mean, scale)).to(dev)
    sq_norms = (centred * centred).sum(dim=1)
    x = torch.from_numpy(np.ascontiguousarray(x_np)).to(dev)
    if backend == "torch":
        search = _symmetric_candidates if symmetric else _torch_candidates
        blocks = search(centred, sq_norms, n_cand, chunk_size)
    else:
        blocks = _faiss_candidates(centred, sq_norms, n_cand, chunk_size)

    indices = np.empty((n, k), dtype=np.int64)
    distances = np.empty((n, k), dtype=np.float64)
    rerank_rows = max(1, _RERANK_ELEMENTS[dev.type] // (n_cand * dim))

    # the re-ranking skips the exact division by `scale` where float squares of the points'
    # differences neither overflow nor underflow (the same numbers, one pass less)
    safe = 2.0**-30 <= scale <= 2.0**30
    inv_scale = 1.0 if safe else 1.0 / scale
    gram_error = gram_error_factor(dim)

    def rerank(first: int, cand: torch.Tensor, values: torch.Tensor) -> None:
        bound = gram_error * (sq_norms[first : first + len(cand), None] + sq_norms[cand])
        cand = _possible_neighbours(cand, values, bound, k)
        order, exact = _exact_rerank(x, first, cand, k, inv_scale)
        indices[first : first + len(cand)] = order.cpu().numpy()
        distances[first : first + len(cand)] = exact.cpu().numpy()

    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        for start, candidates, values in blocks:
            subs = range(start, start + len(candidates), rerank_rows)
            if pool is None:
                for first in subs:
                    part = slice(first - start, first - start + rerank_rows)
                    rerank(first, candidates[part], values[part])
                continue
            parts = [(f, slice(f - start, f - start + rerank_rows)) for f in subs]
            jobs = [pool.submit(rerank, f, candidates[part], values[part]) for f, part in parts]
            for job in jobs:
                job.result()
    finally:
        if pool is not None:
            pool.shutdown()
    if not safe:
        distances *= scale
    return NeighbourGraph(indices, distances)


def gram_error_factor(dim: int) -> float:
    """c such that |g - g_true| <= c (||q||^2 + ||y||^2) for the float32 search values
    g = ||y||^2 - 2 q.y of centred points (q, y) of `dim` features.

    A float32 dot product of length D errs by at most gamma_D ||q|| ||y||, gamma_D ~ D u with
    u = 2^-24 (Higham, Accuracy and Stability of Numerical Algorithms, 2002, eq. 3.5, whatever
    the order of summation); ||y||^2 likewise by gamma_D ||y||^2; and rounding the centred
    points to float32 moves ||q - y||^2 by at most 4 u (||q||^2 + ||y||^2). With
    2 ||q|| ||y|| <= ||q||^2 + ||y||^2 the sum is below 2 (D + 8) u (||q||^2 + ||y||^2).
    Example: gram_error_factor(512) == 520 * 2.0**-23.
    """
    return (dim + 8) * 2.0**-23


def _possible_neighbours(
    cand: torch.Tensor, values: torch.Tensor, bound: torch.Tensor, k: int
) -> torch.Tensor:
    """The candidates, nearest by search value first, cut after the last one that can still be
    among a row's k nearest (k + 1 with the row itself) in any row of the block.

    A candidate whose value less its error bound exceeds the (k + 1)-th smallest value plus
    bound is farther than k others whatever the rounding: its exact distance is not needed.
    The cut keeps at least the first k + 1 candidates.
    """
    order = torch.argsort(values, dim=1)
    cand, values, bound = (torch.gather(t, 1, order) for t in (cand, values, bound))
    limit = torch.kthvalue(values + bound, min(k + 1, values.shape[1]), dim=1).values
    possible = (values - bound) <= limit[:, None]
    columns = torch.arange(1, values.shape[1] + 1, device=values.device)
    return cand[:, : max(k + 1, int((possible * columns).max()))]


def _exact_rerank(
    x: torch.Tensor, first: int, cand: torch.Tensor, k: int, inv_scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest of each row's candidates (rows first, first+1, ... of x) by the exact
    distance ||x_i * inv_scale - x_j * inv_scale||, ties broken by the lower index; the row
    itself excluded. inv_scale is a power of two (1.0 where the points' own squares neither
    overflow nor underflow), so the scaling is exact and the differences cannot overflow."""
    rows, n_cand = cand.shape
    cand = torch.sort(cand, dim=1).values  # index order, so a stable sort breaks ties by index
    gathered = torch.index_select(x, 0, cand.reshape(-1)).view(rows, n_cand, -1)
    queries = x[first : first + rows, None, :]
    for factor in _exact_factors(inv_scale):
        gathered.mul_(factor)
        queries = queries * factor
    exact = torch.linalg.vector_norm(gathered.sub_(queries), dim=2).double()
    own = torch.arange(first, first + rows, device=x.device)[:, None]
    exact.masked_fill_(cand == own, torch.inf)
    order = torch.sort(exact, dim=1, stable=True).indices[:, :k]
    return torch.gather(cand, 1, order), torch.gather(exact, 1, order)


def _exact_factors(power: float) -> tuple[float, ...]:
    """A power of two as two factors (none for 1.0), each a power of two with at most half its
    exponent: torch multiplies a float32 tensor by a scalar in float32, where 2**133 (what
    points of 1e-40 are scaled by) is infinite but 2**66 and 2**67 are exact.

    >>> _exact_factors(2.0**133)
    (7.378697629483821e+19, 1.4757395258967641e+20)
    """
    if power == 1.0:
        return ()
    exponent = math.frexp(power)[1] - 1
    return (2.0 ** (exponent // 2), 2.0 ** (exponent - exponent // 2))


_ROW_BLOCK_ELEMENTS = 2**16
"""Elements per block of rows in the passes over all points (mean, spread, centring, hashes):
half a megabyte in float64, so each block's temporaries stay in cache."""


def _row_blocks(n: int, dim: int) -> Iterator[slice]:
    step = max(1, _ROW_BLOCK_ELEMENTS // max(dim, 1))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def _largest_power(x: np.ndarray) -> float:
    """A power of two above max |x_ij| (1.0 for an all-zero array)."""
    largest = max(float(x.max()), -float(x.min()))
    return 2.0 ** math.frexp(largest)[1] if largest > 0 else 1.0


def _column_mean(x: np.ndarray) -> np.ndarray:
    """The column means in float64, one block of rows at a time, without overflow (each
    block is divided by a power of two above the largest entry first)."""
    unit = _largest_power(x)
    total = np.zeros(x.shape[1], dtype=np.float64)
    for rows in _row_blocks(*x.shape):
        total += (x[rows] / unit).sum(axis=0, dtype=np.float64)
    return total * (unit / len(x))


def _spread_scale(x: np.ndarray, mean: np.ndarray) -> float:
    """`point_scale` given the column means."""
    unit = _largest_power(x)
    spread = max(float(np.abs(x[rows] / unit - mean / unit).max()) for rows in _row_blocks(*x.shape))
    return unit * 2.0 ** math.frexp(spread)[1] if spread > 0 else unit


def _centred_float32(x: np.ndarray, mean: np.ndarray, scale: float) -> np.ndarray:
    """(x - mean) / scale as float32, centred in float64 one block of rows at a time."""
    out = np.empty(x.shape, dtype=np.float32)
    for rows in _row_blocks(*x.shape):
        out[rows] = (x[rows] - mean) / scale
    return out


def point_scale(points) -> float:
    """A power of two within a factor of two of the points' spread max |x_ij - mean_j|
    (1.0 for identical points).

    Dividing by it is exact (only exponents change) and brings any finite point cloud,
    from 1e-300 to 1e300, to a spread near 1, where squared distances in float32 neither
    overflow nor underflow; scale-free estimators then give the same answer at every
    scale. Computed without overflow (each block of rows is first divided by a power of two
    above max |x_ij|) and without a full float64 copy.
    Example: point_scale(np.array([[0.0], [3e20]])) == 2.0**68 (the spread 1.5e20 lies in
    [2**67, 2**68)).
    """
    x = np.asarray(points.cpu() if isinstance(points, torch.Tensor) else points)
    if x.size == 0:
        return 1.0
    x = x.reshape(len(x), -1)
    return _spread_scale(x, _column_mean(x))


SYMMETRIC_MIN_DIM = 1024
"""From this many features the Gram product dominates the search, and `_symmetric_candidates`
multiplies each pair of row blocks once; below it the top-k selection dominates, and
`_torch_candidates` takes full rows (one selection per row, no merging)."""


def _product(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """a @ b.T; on a CPU through numpy's BLAS (OpenBLAS), twice as fast as torch's float32
    product on the AMD EPYC machines this was measured on (68 against 34 GFLOP/s, one core)."""
    if a.is_cuda:
        return torch.mm(a, b.T, out=out)
    result = np.matmul(a.numpy(), b.numpy().T, out=None if out is None else out.numpy())
    return out if out is not None else torch.from_numpy(result)


def _torch_candidates(
    centred: torch.Tensor, sq_norms: torch.Tensor, n_cand: int, chunk_size: int
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(first row, candidate indices, their ||y||^2 - 2 q.y) per block of query rows, from the
    Gram form in float32."""
    n = len(centred)
    # one buffer reused across blocks: fresh memory is slow to fault in on a busy machine
    block = torch.empty((min(chunk_size, n), n), dtype=torch.float32, device=centred.device)
    for start in range(0, n, chunk_size):
        stop = min(n, start + chunk_size)
        d2 = _product(centred[start:stop], centred, out=block[: stop - start])
        # ||q - y||^2 ranks like ||y||^2 - 2 q.y (||q||^2 is constant along a row)
        d2.mul_(-2.0).add_(sq_norms[None, :])
        found = torch.topk(d2, n_cand, dim=1, largest=False, sorted=False)
        yield start, found.indices, found.values


def _symmetric_candidates(
    centred: torch.Tensor, sq_norms: torch.Tensor, n_cand: int, chunk_size: int
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """The same candidates as `_torch_candidates`, each Gram block computed once.

    The Gram matrix is symmetric, so each pair of row blocks (I, J), J >= I, is multiplied
    once: its product serves rows I against columns J and, transposed, rows J against
    columns I ((m + 1) / 2m of the flops of the full product for m blocks). Every row keeps
    its running n_cand smallest of ||y||^2 - 2 q.y; a block of rows is final, and yielded,
    once it has met every block.
    """
    n, dev = len(centred), centred.device
    best_d2 = torch.full((n, n_cand), torch.inf, device=dev)
    best_idx = torch.zeros((n, n_cand), dtype=torch.int64, device=dev)

    def merge(rows: slice, d2: torch.Tensor, first_col: int) -> None:
        found = torch.topk(d2, min(n_cand, d2.shape[1]), dim=1, largest=False, sorted=False)
        pooled = torch.cat([best_d2[rows], found.values], dim=1)
        keep = torch.topk(pooled, n_cand, dim=1, largest=False, sorted=False).indices
        best_idx[rows] = torch.gather(torch.cat([best_idx[rows], found.indices + first_col], dim=1), 1, keep)
        best_d2[rows] = torch.gather(pooled, 1, keep)

    starts = range(0, n, chunk_size)
    for a, start in enumerate(starts):
        rows = slice(start, min(n, start + chunk_size))
        for other in starts[a:]:
            cols = slice(other, min(n, other + chunk_size))
            product = _product(centred[rows], centred[cols])
            if other != start:  # rows `cols` against columns `rows`: the same product, transposed
                merge(cols, sq_norms[None, rows] - 2.0 * product.T, start)
            merge(rows, product.mul_(-2.0).add_(sq_norms[None, cols]), other)
        yield start, best_idx[rows], best_d2[rows]


def _faiss_candidates(
    centred: torch.Tensor, sq_norms: torch.Tensor, n_cand: int, chunk_size: int
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """The same candidates from faiss's exact flat L2 index (CPU), with their squared distances
    (||q||^2 more than the Gram values: the same along a row; sq_norms is not needed)."""
    try:
        import faiss
    except ImportError:
        raise InputError("the faiss backend needs faiss: pip install 'manifold-probe[faiss]'.") from None
    data = np.ascontiguousarray(centred.cpu().numpy())
    index = faiss.IndexFlatL2(data.shape[1])
    index.add(data)
    for start in range(0, len(data), chunk_size):
        d2, found = index.search(data[start : start + chunk_size], n_cand)
        yield start, torch.from_numpy(found).to(centred.device), torch.from_numpy(d2).to(centred.device)


def duplicate_rows(points: np.ndarray) -> np.ndarray:
    """A boolean mask of the rows equal to an earlier row (so the first of each group is kept).

    One pass over the data, no sort of the rows: each row's bit pattern (with -0.0 read as
    0.0) is hashed as sum_j bits_ij * r_j modulo 2^64 with random odd r_j (integer arithmetic,
    so equal rows always get equal hashes, whatever order the sum runs in); only rows whose
    hashes collide are compared element by element, so the answer is exact.
    Example: duplicate_rows(np.array([[1.0, 2.0], [0.0, 1.0], [1.0, 2.0]])) -> [False, False, True].
    """
    x = np.ascontiguousarray(points)
    n, dim = x.shape
    bits = np.uint64 if x.itemsize == 8 else np.uint32
    odd = np.random.default_rng(0).integers(0, 2**63, size=dim, dtype=np.uint64)
    multipliers = odd * np.uint64(2) + np.uint64(1)
    hashes = np.empty(n, dtype=np.uint64)
    for rows in _row_blocks(n, dim):
        pattern = (x[rows] + 0.0).view(bits).astype(np.uint64)  # + 0.0 turns -0.0 into 0.0
        hashes[rows] = (pattern * multipliers).sum(axis=1, dtype=np.uint64)
    order = np.argsort(hashes, kind="stable")
    same = np.flatnonzero(hashes[order[1:]] == hashes[order[:-1]])
    repeated = np.zeros(n, dtype=bool)
    if len(same) == 0:
        return repeated
    # runs of equal hashes, each in row order (the sort is stable); compare rows within a run
    starts = same[np.r_[True, same[1:] != same[:-1] + 1]]
    for start in starts:
        stop = start + 1
        while stop < n and hashes[order[stop]] == hashes[order[start]]:
            stop += 1
        members = order[start:stop]
        for i, row in enumerate(members[1:], start=1):
            if any(np.array_equal(x[row], x[earlier]) for earlier in members[:i] if not repeated[earlier]):
                repeated[row] = True
    return repeated


def drop_duplicates(points: np.ndarray) -> tuple[np.ndarray, int]:
    """The points with exact duplicate rows removed (first occurrence kept, order preserved),
    and how many were removed. Neighbour-distance estimators of intrinsic dimension need
    distinct points: a duplicate makes r1 = 0 for itself and r1 = r2 for its neighbours.
    Found by `duplicate_rows` (a hash per row, no sort of the rows)."""
    repeated = duplicate_rows(points)
    removed = int(repeated.sum())
    return (points[~repeated], removed) if removed else (points, 0)
