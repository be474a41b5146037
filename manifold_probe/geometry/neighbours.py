"""Exact k nearest neighbours on both cores (or a GPU); one graph per layer, shared by estimators.

Three steps, each proved rather than trusted:

1. Search values. For every query q and point y, s(q, y) = ||y||^2 - 2 q.y (which ranks like
   ||q - y||^2) from one float32 product of the centred, scaled points, augmented by a column
   so that the product is the search value itself (no pass over the block afterwards). Wide
   layers multiply each pair of row blocks once (the Gram matrix is symmetric) and sum the
   product over slices of at most `PRODUCT_SLICE` features, which keeps its rounding error
   bound small (below).
2. Candidates. Per row, every point whose search value is at most a threshold T that is no
   smaller than the (k + 1 + spare)-th smallest value: T is that rank among the minima of
   groups of columns (each group's minimum is one of its values, so at least that many values
   lie at or below it), then only the groups whose minimum is at most T are read again. Every
   point that is not a candidate has s > T. This reads each block once, in numpy, in one
   thread per core.
3. Exact distances and a certificate. Each search value errs by at most e_q, a rigorous
   bound from the float32 product's length and the actual norms (Higham, Accuracy and
   Stability of Numerical Algorithms, 2002, eq. 3.5, whatever the order of summation). The
   candidates whose lower bound can reach the k-th upper bound get their distance computed
   directly, ||x - y|| from differences in the input's precision (correctly rounded whatever
   the norms, so near-duplicate points far from the origin keep their distances; TwoNN reads
   exactly those), squared and summed in float32 slices added in float64; ties are broken by
   the lower index, as a stable brute-force sort does. A row is certified when every point
   left out, candidate or not, is provably farther than its k-th neighbour; a row that is not
   (exact ties at the edge, a bound too loose) is searched again against every point, with
   exact distances for every point within the bound. So the graph equals float64 brute force
   up to the precision of the exact distances themselves, whatever the data.

Both the search and the exact distances run on the points divided by `point_scale` (a power
of two), so the graph is the same for the points times any factor from 1e-300 to 1e300, its
distances times that factor. Duplicate rows are found by hashing each row's bits
(`duplicate_rows`). On a CPU nothing here imports torch: only the GPU path needs it.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..device import blas_threads
from ..errors import InputError
from ..validation import as_points, check_k, to_numpy

U32 = 2.0**-24
"""Unit roundoff of float32."""
U64 = 2.0**-53


@dataclass(frozen=True)
class NeighbourGraph:
    """k nearest neighbours of every point, nearest first, the point itself excluded.

    indices: (N, k) int64; distances: (N, k) float64, computed directly as ||x - y||.
    recall: None for an exact graph; for an approximate one (`approximate_neighbours.
    hnsw_neighbours`), the share of the true k nearest that it found, measured against an exact
    search on a seeded sample of its rows.
    """

    indices: np.ndarray
    distances: np.ndarray
    recall: float | None = None

    @property
    def k(self) -> int:
        return self.indices.shape[1]

    def first(self, k: int) -> NeighbourGraph:
        """The graph of the k nearest only (k <= self.k)."""
        if k > self.k:
            raise ValueError(f"graph holds {self.k} neighbours, asked for {k}")
        return NeighbourGraph(self.indices[:, :k], self.distances[:, :k], self.recall)


BACKENDS = ("torch", "faiss")

PRODUCT_SLICE = 4096
"""Features per float32 product that is summed in one go (`_product`): a product of length L
errs by at most about L u ||q|| ||y|| (u = 2^-24), so a 65,536-wide layer is multiplied in 16
slices whose products are added: (4096 + 16) u instead of 65,536 u, tight enough for the
certificate to pass; the extra additions cost a few per cent of the product."""

EXACT_SLICE = 1024
"""Features per float32 sum of squares in the exact distances, the slices added in float64:
a relative error of at most about (1024 + 4) u whatever the width."""

SYMMETRIC_MIN_DIM = 1024
"""From this many features the Gram product dominates the search, and each pair of row blocks
is multiplied once (`_Search.run_symmetric`); below it the candidate selection dominates and
full rows are taken (`_Search.run_rows`)."""

_BLOCK_ELEMENTS = 2**21
"""Search values per block of full rows: 8 MB in float32, so the blocks of both workers stay in
the shared cache between the product that writes them and the selection that reads them."""

_GATHER_ELEMENTS = 2**18
"""Candidate coordinates gathered at a time for their exact distances (1 MB in float32)."""

_SMALL_SEARCH = 2**18
"""N^2 (search values in all) below which the search runs on the calling thread only."""


def nearest_neighbours(
    points,
    k: int,
    *,
    device="cpu",
    backend: str = "torch",
    chunk_size: int | None = None,
    spare: int | None = None,
) -> NeighbourGraph:
    """The exact kNN graph of `points` (N, D), excluding each point itself (the module's
    docstring); for an approximate graph at large N, `approximate_neighbours.hnsw_neighbours`.

    backend: "torch" (the built-in search: numpy on a CPU, torch on a GPU) or "faiss" (faiss's
    exact flat index finds the candidates; optional, `pip install manifold-probe[faiss]`);
    the exact distances and the certificate are the same.
    chunk_size: query rows per block of search values (default: 16 MB blocks on a CPU).
    spare: extra candidates per row beyond k + 1 (default max(8, k // 4)).
    Memory: the points, one float32 centred copy and a few blocks of search values.

    Example: nearest_neighbours(np.array([[0.0], [1.0], [3.0]]), 1).indices -> [[1], [0], [1]].
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown neighbour backend {backend!r}; use one of {', '.join(BACKENDS)}.")
    x = as_points(to_numpy(points), min_points=2)
    n, dim = x.shape
    k = check_k(k, n)
    spare = max(8, k // 4) if spare is None else spare
    n_cand = min(n, k + 1 + spare)
    workers = 1 if n * n < _SMALL_SEARCH else _cpu_count()
    prep = _prepare(x, workers)
    gpu = _gpu_device(device)
    symmetric = backend == "torch" and gpu is None and dim >= SYMMETRIC_MIN_DIM
    if chunk_size is None:
        if symmetric:  # blocks of 256-2,048 rows: big products, (m + 1) / 2m of the flops
            chunk_size = min(n, max(256, -(-n // 8)), 2048)
        else:  # 8 MB blocks, or 256 rows at large N (a thinner product re-reads all of y for
            # few rows: 41-row blocks at 50k x 512 were 1.3x slower than the plain search), at
            # least one block per worker
            chunk_size = max(1, min(max(256, _BLOCK_ELEMENTS // n), -(-n // workers)))
    search = _Search(prep, k, n_cand, workers)
    if gpu is not None:
        search.run_candidates(_gpu_candidates(prep, n_cand, chunk_size, gpu))
    elif backend == "faiss":
        search.run_candidates(_faiss_candidates(prep, n_cand, chunk_size))
    else:
        # every product on one core, the cores shared by our own threads: a multi-threaded BLAS
        # call on a small block synchronises its threads, which on a loaded machine stalls for
        # whole time slices (4x slower measured here), and its idle threads spin afterwards
        with blas_threads(1):
            if symmetric:
                search.run_symmetric(chunk_size)
            else:
                search.run_rows(chunk_size)
    return search.graph()


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _gpu_device(device):
    """None for the CPU (without importing torch when it is not loaded), else the torch device."""
    from ..device import cpu_without_torch, resolve_device

    if cpu_without_torch(device) or str(getattr(device, "type", device)).lower() == "cpu":
        return None
    dev = resolve_device(device)
    return None if dev.type == "cpu" else dev


@dataclass(frozen=True)
class _Prepared:
    """The points and what every step shares.

    x: the points as given; y: (N, D + 1) float32, [-2 x~, fl(||x'||^2)] for the centred,
    scaled points x' = (x - mean) / scale (in float64) and x~ = fl32(x'), so that [q~, 1] . y_j
    = s(q, y_j) within `value_error`; sq_norms: ||x'||^2 in float64; largest: max ||x'||;
    scale: the power of two;
    inv_scale: 1.0 where the input's own squares neither overflow nor underflow, else
    1 / scale (the exact distances are then computed on the scaled points); eta: the
    relative error of an exact distance."""

    x: np.ndarray
    y: np.ndarray
    sq_norms: np.ndarray
    largest: float
    scale: float
    inv_scale: float
    eta: float

    def queries(self, rows, columns: slice | None = None) -> np.ndarray:
        """[x~, 1] for some rows (a slice or indices; exact: -2 x~ times -1/2), or only some of
        its columns."""
        q = self.y[rows] * np.float32(-0.5)
        q[:, -1] = 1.0
        return q if columns is None else np.ascontiguousarray(q[:, columns])

    def value_error(self, rows, gamma: float) -> np.ndarray:
        """e_q: |s - s_true| <= e_q for every point, when the product of length L has the
        rounding factor gamma ~ L u: the product of [q~, 1] and [-2 y~, ||y~||^2] sums terms
        of total size at most 2 ||q~|| M + M^2 (M = max ||y~||); then the stored column is
        fl(||x'||^2), within 3 u M^2 of ||y~||^2 (x~ is x' rounded), the sum is rounded once
        more, and ||q~||^2 (read as ||x'_q||^2) is off by 2 u M^2 at most."""
        big = self.largest
        return (gamma + 8 * U32) * (2 * np.sqrt(self.sq_norms[rows]) * big + big * big) * 1.0001

    def rounding(self, rows) -> np.ndarray:
        """rho_q: | ||x'_q - x'_y|| - ||x~_q - x~_y|| | <= rho_q for every y, x' = (x - mean) / scale
        exactly: each coordinate of x~ is x' rounded twice (to float64 after the subtraction, then
        to float32)."""
        return (U32 + 2 * U64) * (np.sqrt(self.sq_norms[rows]) + self.largest) * 1.0001


def _gamma(length: int, *, sliced: bool = True) -> float:
    """The factor gamma_L = L u / (1 - L u) of a float32 sum of L products (Higham eq. 3.5);
    `sliced`: for `_product`, which sums slices of `PRODUCT_SLICE` features and adds them
    (gamma of the slice's length plus that of the number of slices)."""
    total = length
    if sliced and length > PRODUCT_SLICE:
        total = PRODUCT_SLICE + -(-length // PRODUCT_SLICE)
    return total * U32 / (1 - total * U32) * 1.0001


def _product(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """a @ b.T in float32 through numpy's BLAS (all cores), summed over slices of at most
    `PRODUCT_SLICE` features (`_gamma` is its error factor)."""
    width = a.shape[1]
    if width <= PRODUCT_SLICE:
        return np.matmul(a, b.T, out=out)
    out = np.matmul(a[:, :PRODUCT_SLICE], b[:, :PRODUCT_SLICE].T, out=out)
    part = np.empty_like(out)
    for start in range(PRODUCT_SLICE, width, PRODUCT_SLICE):
        stop = start + PRODUCT_SLICE
        out += np.matmul(a[:, start:stop], b[:, start:stop].T, out=part)
    return out


def _prepare(x: np.ndarray, workers: int = 1) -> _Prepared:
    """Mean, scale and the augmented float32 copy, one block of rows at a time (in `workers`
    threads)."""
    n, dim = x.shape
    mean = _column_mean(x, workers)
    scale = _spread_scale(x, mean, workers)
    y = np.empty((n, dim + 1), dtype=np.float32)
    sq_norms = np.empty(n, dtype=np.float64)

    def centre(rows: slice) -> None:
        centred = x[rows] - mean
        centred /= scale
        sq_norms[rows] = np.einsum("ij,ij->i", centred, centred)
        np.multiply(centred, -2.0, out=y[rows, :dim], casting="same_kind")

    _map_blocks(centre, x.shape, workers)
    y[:, dim] = sq_norms
    # the exact distances skip the division by `scale` where float squares of the points'
    # differences neither overflow nor underflow (the same numbers, one pass less)
    safe = 2.0**-30 <= scale <= 2.0**30
    if x.dtype == np.float32:
        eta = (min(dim, EXACT_SLICE) + 4) * U32 + dim * U64
    else:
        eta = (dim + 4) * U64
    return _Prepared(
        x=np.ascontiguousarray(x),
        y=y,
        sq_norms=sq_norms,
        largest=float(np.sqrt(sq_norms.max())),
        scale=scale,
        inv_scale=1.0 if safe else 1.0 / scale,
        eta=eta * 1.0001,
    )


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


def _column_mean(x: np.ndarray, workers: int = 1) -> np.ndarray:
    """The column means in float64, one block of rows at a time, without overflow (each
    block is divided by a power of two above the largest entry first; float32 entries cannot
    overflow a float64 sum, so they are not)."""
    unit = 1.0 if x.dtype == np.float32 else _largest_power(x)
    parts = _map_blocks(lambda rows: (x[rows] / unit).sum(axis=0, dtype=np.float64), x.shape, workers)
    return np.sum(parts, axis=0) * (unit / len(x))


def _spread_scale(x: np.ndarray, mean: np.ndarray, workers: int = 1) -> float:
    """`point_scale` given the column means."""
    unit = 1.0 if x.dtype == np.float32 else _largest_power(x)
    shifted = mean / unit

    def spread(rows: slice) -> float:
        block = x[rows] / unit if unit != 1.0 else x[rows].astype(np.float64)
        block -= shifted
        return float(np.abs(block).max())

    largest = max(_map_blocks(spread, x.shape, workers))
    return unit * 2.0 ** math.frexp(largest)[1] if largest > 0 else unit


def _map_blocks(fn, shape: tuple[int, int], workers: int) -> list:
    """[fn(rows) for each block of rows (`_row_blocks`)], the blocks shared by `workers` threads
    (numpy lets go of the GIL while it works on a block)."""
    blocks = list(_row_blocks(*shape))
    if workers <= 1 or len(blocks) < 2 * workers:
        return [fn(rows) for rows in blocks]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, blocks))


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
    x = np.asarray(to_numpy(points))
    if x.size == 0:
        return 1.0
    x = x.reshape(len(x), -1)
    return _spread_scale(x, _column_mean(x))


# --- candidates --------------------------------------------------------------------------
# A candidate source (faiss, a GPU) yields, per block of query rows, (first row, (idx, values,
# threshold, e)):
# idx (r, w) int64 candidate columns (-1 pads a short row), values (r, w) float32 their search
# values (inf pads), threshold (r,) float64 such that every point that is not a candidate has
# a search value >= it, and e (r,) the bound on the search values' error.


def _group_size(columns: int, n: int) -> int:
    """Columns per group in `_survivors`: about sqrt(columns / n), which balanced the
    minima's pass against the selection among them in measurements (2k-50k columns)."""
    return max(1, min(64, int(0.8 * math.sqrt(columns / max(n, 1)))))


def _survivors(values: np.ndarray, n: int, columns: np.ndarray | None = None):
    """(idx, values, threshold) of the values of each row at or below a threshold T that is
    at least the row's n-th smallest value (so at least n survive, and every other value is
    above T); idx are `columns` (default the column numbers), padded with -1 (values inf).
    `values` is C-contiguous.

    T is the n-th smallest of the minima of column groups (group j: columns j, j + m, ...,
    so the minima come from one pass over contiguous slabs; the last columns, fewer than a
    group, are their own groups). Each minimum is one of the values, so at least n values lie
    at or below T. One comparison over the block and a flat scan then find the survivors.
    """
    r, c = values.shape
    if n >= c:
        idx = np.broadcast_to(np.arange(c) if columns is None else columns, (r, c))
        return np.array(idx, dtype=np.int64), values, np.full(r, np.inf)
    g = _group_size(c, n)
    m = c // g
    if g >= 2 and m + c - m * g >= n:
        pool = np.minimum.reduce(values[:, : m * g].reshape(r, g, m), axis=1)
        if m * g < c:
            pool = np.concatenate([pool, values[:, m * g :]], axis=1)
    else:
        pool = values
    threshold = np.partition(pool, n - 1, axis=1)[:, n - 1]
    flat = np.flatnonzero(values <= threshold[:, None])
    rows, cols = np.divmod(flat, c)
    counts = np.bincount(rows, minlength=r)
    width = int(counts.max())
    position = np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)
    idx = np.full((r, width), -1, dtype=np.int64)
    kept = np.full((r, width), np.inf, dtype=values.dtype)
    idx[rows, position] = cols if columns is None else columns[cols]
    kept[rows, position] = values.ravel()[flat]
    return idx, kept, threshold.astype(np.float64)


def _merge(old, new, n_cand: int):
    """Running candidates joined with a new block's: the survivors of both (every value left
    out is above the joined threshold)."""
    if old is None:
        return new
    idx = np.concatenate([old[0], new[0]], axis=1)
    values = np.concatenate([old[1], new[1]], axis=1)
    kept_idx, kept, threshold = _survivors(values, n_cand, None)
    real = kept_idx >= 0
    kept_idx[real] = np.take_along_axis(idx, np.where(real, kept_idx, 0), axis=1)[real]
    return kept_idx, kept, np.minimum(threshold, np.minimum(old[2], new[2]))


def _faiss_candidates(prep: _Prepared, n_cand: int, chunk_size: int):
    """Candidates from faiss's exact flat L2 index on the centred float32 points (CPU): the n_cand
    smallest squared distances, taken to search values by subtracting ||q~||^2 (in float64)."""
    try:
        import faiss
    except ImportError:
        raise InputError("the faiss backend needs faiss: pip install 'manifold-probe[faiss]'.") from None
    n, width = prep.y.shape
    dim = width - 1
    data = prep.y[:, :dim] * np.float32(-0.5)
    index = faiss.IndexFlatL2(dim)
    index.add(data)
    # faiss's squared distances ||q||^2 + ||y||^2 - 2 q.y, each of its terms in float32: they err
    # by at most (gamma_D + 4 u) (||q~|| + M)^2
    factor = (_gamma(dim, sliced=False) + 4 * U32) * 1.0001
    for start in range(0, n, chunk_size):
        rows = slice(start, min(n, start + chunk_size))
        d2, found = index.search(data[rows], n_cand)
        values = d2.astype(np.float64) - prep.sq_norms[rows, None]
        threshold = values.max(axis=1)
        error = factor * (np.sqrt(prep.sq_norms[rows]) + prep.largest) ** 2
        yield start, (found.astype(np.int64), values, threshold, error)


def _gpu_candidates(prep: _Prepared, n_cand: int, chunk_size: int, dev):
    """Candidates on a GPU (torch): the augmented product and a top-k per block; the exact
    distances and the certificate follow on the CPU."""
    import torch

    y = torch.from_numpy(prep.y).to(dev)
    n = len(y)
    gamma = _gamma(y.shape[1], sliced=False)  # the GPU's product is one sum
    for start in range(0, n, chunk_size):
        rows = slice(start, min(n, start + chunk_size))
        queries = torch.from_numpy(prep.queries(rows)).to(dev)
        found = torch.topk(queries @ y.T, n_cand, dim=1, largest=False, sorted=False)
        values = found.values.cpu().numpy()
        threshold = values.max(axis=1).astype(np.float64)
        error = prep.value_error(rows, gamma)
        yield start, (found.indices.cpu().numpy(), values, threshold, error)


# --- exact distances and the certificate ---------------------------------------------------


class _Search:
    """One exact search: tasks on a pool of `workers` threads (each product, selection and
    exact distance of a block on one core), every row's result written once, then the rows
    without a certificate searched again (`_search_again`). Distances are kept in the scaled
    frame (divided by `scale`, a power of two: exact) until `graph`."""

    def __init__(self, prep: _Prepared, k: int, n_cand: int, workers: int):
        n = len(prep.x)
        self.prep, self.k, self.n_cand, self.workers = prep, k, n_cand, workers
        self.indices = np.empty((n, k), dtype=np.int64)
        self.distances = np.empty((n, k), dtype=np.float64)
        self.uncertain: list[np.ndarray] = []
        self.local = threading.local()

    def _run(self, tasks) -> None:
        """Run the callables `tasks` (in order when there is one worker)."""
        if self.workers == 1:
            for task in tasks:
                task()
            return
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for future in [pool.submit(task) for task in tasks]:
                future.result()

    def finish(self, rows: np.ndarray, idx, values, threshold, error) -> None:
        """Exact neighbours of `rows` from their candidates (`_rerank`)."""
        found, exact, certified = _rerank(self.prep, rows, idx, values, threshold, error, self.k)
        self.indices[rows], self.distances[rows] = found, exact
        if not certified.all():
            self.uncertain.append(rows[~certified])

    def run_rows(self, chunk_size: int) -> None:
        """Full rows of search values, one block of rows per task: the augmented product gives
        s itself, then the candidates and their exact distances."""
        prep = self.prep
        n = len(prep.y)
        gamma = _gamma(prep.y.shape[1])

        def task(start: int) -> None:
            rows = np.arange(start, min(n, start + chunk_size))
            buffer = getattr(self.local, "block", None)
            if buffer is None:  # one per thread, reused: fresh memory is slow to fault in
                buffer = self.local.block = np.empty((min(chunk_size, n), n), dtype=np.float32)
            values = _product(prep.queries(slice(rows[0], rows[-1] + 1)), prep.y, out=buffer[: len(rows)])
            idx, kept, threshold = _survivors(values, self.n_cand)
            self.finish(rows, idx, kept, threshold, prep.value_error(rows, gamma))

        self._run([functools.partial(task, start) for start in range(0, n, chunk_size)])

    def run_symmetric(self, chunk_size: int) -> None:
        """The same candidates, each Gram block computed once.

        Each pair of row blocks (I, J), J >= I, is multiplied once, in one task: -2 x~_I . x~_J
        serves rows I against columns J (plus ||y_J||^2) and, transposed, rows J against columns
        I ((m + 1) / 2m of the flops of the full product for m blocks). Every block of rows keeps
        its running candidates (`_merge`, under its lock); the task that brings a block its last
        pair finishes it.
        """
        prep = self.prep
        n, width = prep.y.shape
        dim = width - 1
        gamma = _gamma(dim) + U32  # the search value adds ||y||^2 to the product: one rounding more
        starts = list(range(0, n, chunk_size))
        spans = [np.arange(start, min(n, start + chunk_size)) for start in starts]
        running: list = [None] * len(starts)
        locks = [threading.Lock() for _ in starts]
        remaining = [len(starts)] * len(starts)
        counting = threading.Lock()

        def merge(block: int, values: np.ndarray, columns: np.ndarray) -> None:
            new = _survivors(values, self.n_cand, columns)
            with locks[block]:
                running[block] = _merge(running[block], new, self.n_cand)
            with counting:
                remaining[block] -= 1
                done = remaining[block] == 0
            if done:
                rows = spans[block]
                idx, values, threshold = running[block]
                running[block] = None
                self.finish(rows, idx, values, threshold, prep.value_error(rows, gamma))

        def task(a: int, b: int) -> None:
            rows, cols = spans[a], spans[b]
            queries = prep.queries(slice(rows[0], rows[-1] + 1), slice(0, dim))
            product = _product(queries, prep.y[cols[0] : cols[-1] + 1, :dim])
            if b != a:  # rows `cols` against columns `rows`: the same product, transposed
                merge(b, np.add(product.T, prep.y[rows, dim][None, :], order="C"), rows)
            merge(a, np.add(product, prep.y[cols, dim][None, :], out=product), cols)

        pairs = [(a, b) for a in range(len(starts)) for b in range(a, len(starts))]
        self._run([functools.partial(task, a, b) for a, b in pairs])

    def run_candidates(self, blocks) -> None:
        """Candidates found elsewhere (faiss, a GPU), block by block; their exact distances on
        the pool (no BLAS there, so faiss's own threads are left alone)."""
        tasks = []
        for start, (idx, values, threshold, error) in blocks:
            rows = np.arange(start, start + len(idx))
            tasks.append(functools.partial(self.finish, rows, idx, values, threshold, error))
        self._run(tasks)

    def graph(self) -> NeighbourGraph:
        if self.uncertain:
            rows = np.concatenate(self.uncertain)
            kth = self.distances[rows, self.k - 1]
            self.indices[rows], self.distances[rows] = _search_again(self.prep, rows, kth, self.k)
        return NeighbourGraph(self.indices, self.distances * self.prep.scale)


def exact_neighbours_of(points, rows, k: int, *, spare: int | None = None) -> NeighbourGraph:
    """The exact k nearest neighbours of some rows only (each row itself excluded), among all
    the points: what `nearest_neighbours` gives for those rows, at a cost proportional to
    their number (the recall check of an approximate graph). `points` may be the output of
    `_prepare` (reused)."""
    prep = points if isinstance(points, _Prepared) else _prepare(as_points(to_numpy(points), min_points=2))
    n = len(prep.x)
    rows = np.asarray(rows, dtype=np.int64)
    k = check_k(k, n)
    spare = max(8, k // 4) if spare is None else spare
    n_cand = min(n, k + 1 + spare)
    gamma = _gamma(prep.y.shape[1])
    indices = np.empty((len(rows), k), dtype=np.int64)
    distances = np.empty((len(rows), k), dtype=np.float64)
    step = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, len(rows), step):
        block = rows[start : start + step]
        idx, kept, threshold = _survivors(_product(prep.queries(block), prep.y), n_cand)
        found, exact, certified = _rerank(
            prep, block, idx, kept, threshold, prep.value_error(block, gamma), k
        )
        if not certified.all():
            again = ~certified
            found[again], exact[again] = _search_again(prep, block[again], exact[again, k - 1], k)
        indices[start : start + len(block)], distances[start : start + len(block)] = found, exact
    return NeighbourGraph(indices, distances * prep.scale)


def _rerank(prep: _Prepared, own: np.ndarray, idx, values, threshold, error, k: int):
    """(indices, distances, certified) of the rows `own` from their candidates.

    Search values bound the squared distance of the centred float32 points, d~^2 = ||q~||^2 + s
    within +-e, and d~ bounds the exact scaled distance within +-rho. The candidates whose lower
    bound can reach the k-th smallest upper bound (the row itself left out) get their exact
    distance; a row is certified when the lower bound of everything else (the candidates not
    recomputed, and every other point through the threshold) is above its k-th exact distance.
    """
    r, width = idx.shape
    left_out = (idx == own[:, None]) | (idx < 0)
    values = np.where(left_out, np.inf, values.astype(np.float64))  # the row itself and pads last
    order = np.argsort(values, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    values = np.take_along_axis(values, order, axis=1)
    sq = prep.sq_norms[own][:, None]
    rho = prep.rounding(own)[:, None]
    error = error[:, None]
    with np.errstate(invalid="ignore"):
        lower = np.sqrt(np.maximum(sq + values - error, 0.0)) - rho
        upper = np.sqrt(sq + values + error) + rho
    kth_upper = np.partition(upper, k - 1, axis=1)[:, k - 1]
    # a prefix of each row (the values are sorted; inf never qualifies), at least k long
    count = np.maximum((lower <= kth_upper[:, None] * (1 + prep.eta)).sum(axis=1), k)

    exact = _exact_distances(prep, own, idx, count)
    cand = idx[:, : exact.shape[1]]
    by_index = np.argsort(np.where(np.isinf(exact), np.iinfo(np.int64).max, cand), axis=1, kind="stable")
    cand = np.take_along_axis(cand, by_index, axis=1)
    exact = np.take_along_axis(exact, by_index, axis=1)
    nearest = np.argsort(exact, axis=1, kind="stable")[:, :k]
    found = np.take_along_axis(cand, nearest, axis=1)
    exact = np.take_along_axis(exact, nearest, axis=1)

    # everything not computed: the candidates after the prefix, every other point via the threshold
    rest = np.take_along_axis(values, np.minimum(count, width - 1)[:, None], axis=1)[:, 0]
    rest = np.minimum(np.where(count < width, rest, np.inf), threshold)
    with np.errstate(invalid="ignore"):
        floor = np.sqrt(np.maximum(sq[:, 0] + rest - error[:, 0], 0.0)) - rho[:, 0]
    certified = floor > exact[:, k - 1] * (1 + prep.eta)
    return found, exact, certified


def _exact_distances(prep: _Prepared, rows: np.ndarray, cand: np.ndarray, count=None) -> np.ndarray:
    """||x_q - x_y|| / scale for the rows q and their first `count[q]` candidates y (default all),
    (r, max count) float64, inf beyond each row's count: differences in the input's precision,
    squared and summed in float32 slices of `EXACT_SLICE` features, the slices added in float64
    (numpy's own loops: BLAS called from two threads at once serialises)."""
    r = len(cand)
    count = np.full(r, cand.shape[1]) if count is None else count
    width = int(count.max())
    x = prep.x
    total = np.full((r, width), np.inf)
    if x.shape[1] >= _WIDE_ROWS:
        _exact_wide(prep, rows, cand, count, total)
        return np.sqrt(total) if prep.inv_scale != 1.0 else np.sqrt(total) / prep.scale
    # a few rows at a time, so that the gathered candidates (about 1 MB) stay in cache, each
    # chunk as wide as its widest row: at high D a chunk is one row, and only its own count is read
    step = max(1, _GATHER_ELEMENTS // max(1, width * x.shape[1]))
    for lo in range(0, r, step):
        hi = min(r, lo + step)
        m = int(count[lo:hi].max())
        gathered = x[cand[lo:hi, :m].ravel()].reshape(hi - lo, m, -1)
        queries = x[rows[lo:hi], None, :]
        for factor in _exact_factors(prep.inv_scale):
            gathered *= factor
            queries = queries * factor
        gathered -= queries
        part_total = np.zeros((hi - lo, m))
        for start in range(0, x.shape[1], EXACT_SLICE):
            part = gathered[:, :, start : start + EXACT_SLICE]
            part_total += np.einsum("ijk,ijk->ij", part, part)
        part_total[np.arange(m)[None, :] >= count[lo:hi, None]] = np.inf
        total[lo:hi, :m] = part_total
    exact = np.sqrt(total)
    return exact if prep.inv_scale != 1.0 else exact / prep.scale  # both in the scaled frame


def _exact_factors(power: float) -> tuple[float, ...]:
    """A power of two as two factors (none for 1.0), each a power of two with at most half its
    exponent: a float32 array times a Python float is computed in float32, where 2**133 (what
    points of 1e-40 are scaled by) is infinite but 2**66 and 2**67 are exact.

    >>> _exact_factors(2.0**133)
    (7.378697629483821e+19, 1.4757395258967641e+20)
    """
    if power == 1.0:
        return ()
    exponent = math.frexp(power)[1] - 1
    return (2.0 ** (exponent // 2), 2.0 ** (exponent - exponent // 2))


_WIDE_ROWS = 8192
"""From this many features the exact distances take one candidate at a time: its difference
to the query is written into a buffer that stays in cache, where a gathered block of candidates
(megabytes per row) would go through memory twice more (0.7 against 1.0-2.3 ns per feature
measured at 65,536 features)."""


def _exact_wide(prep: _Prepared, rows: np.ndarray, cand: np.ndarray, count: np.ndarray, total) -> None:
    """Squared scaled distances of wide rows into `total`, one candidate at a time (in the
    input's precision, float32 slices of `EXACT_SLICE` summed in float64)."""
    x = prep.x
    dim = x.shape[1]
    buffer = np.empty(-(-dim // EXACT_SLICE) * EXACT_SLICE, dtype=x.dtype)
    buffer[dim:] = 0.0
    slices = buffer.reshape(-1, EXACT_SLICE)
    factors = _exact_factors(prep.inv_scale)
    for i, q in enumerate(rows):
        query = x[q]
        for factor in factors:
            query = query * factor
        for j in range(int(count[i])):
            if not factors:
                np.subtract(x[cand[i, j]], query, out=buffer[:dim])
            else:
                np.multiply(x[cand[i, j]], factors[0], out=buffer[:dim])
                for factor in factors[1:]:
                    buffer[:dim] *= factor
                buffer[:dim] -= query
            total[i, j] = np.einsum("ij,ij->i", slices, slices).sum(dtype=np.float64)


def _search_again(prep: _Prepared, rows: np.ndarray, kth: np.ndarray, k: int):
    """(indices, distances) of rows without a certificate: their search values against every
    point again, and the exact distance of every point whose lower bound is within `kth`, the
    k-th distance found so far (an upper bound of the true one, so the true k nearest are
    among them). Rare: exact ties at the edge of the candidates, or a bound too loose."""
    n, width = prep.y.shape
    gamma = _gamma(width)
    indices = np.empty((len(rows), k), dtype=np.int64)
    distances = np.empty((len(rows), k), dtype=np.float64)
    step = max(1, min(256, _BLOCK_ELEMENTS // n))
    for start in range(0, len(rows), step):
        block = rows[start : start + step]
        values = _product(prep.queries(block), prep.y)
        error = prep.value_error(block, gamma)[:, None]
        rho = prep.rounding(block)[:, None]
        with np.errstate(invalid="ignore"):
            lower = np.sqrt(np.maximum(prep.sq_norms[block][:, None] + values - error, 0.0)) - rho
        reach = kth[start : start + step] * (1 + prep.eta)
        for i, (q, row_lower, limit) in enumerate(zip(block, lower, reach, strict=True), start=start):
            cand = np.flatnonzero(row_lower <= limit)
            cand = cand[cand != q][None, :]
            exact = _exact_distances(prep, block[i - start : i - start + 1], cand)
            nearest = np.argsort(exact[0], kind="stable")[:k]
            indices[i], distances[i] = cand[0, nearest], exact[0, nearest]
    return indices, distances


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
