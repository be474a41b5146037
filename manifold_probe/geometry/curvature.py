"""Principal curvatures of the manifold a point cloud lies on, point by point (Li 2017).

The estimator of Kaufman & Azencot 2023 ("Data representations' study of latent image
manifolds", ICML, arXiv 2305.19730), which takes it from Li 2017 ("Curvature-aware
manifold learning", Pattern Recognition), vectorised over points.

For a point x with neighbours x_1..x_K (its kNN in the layer, or given explicitly):

1. Delta = [x_j - x] (D x K), relative to x itself. Thin SVD Delta = U S V^T, r = min(D, K).
   The local coordinates are Y = U^T Delta = S V^T, so only S and V are needed: they come
   from the eigendecomposition of the K x K Gram matrix Delta^T Delta = V S^2 V^T (float64;
   for D < K from Delta Delta^T = U S^2 U^T and Y = U^T Delta).
2. Tangent coordinates u = the first d rows of Y, normal coordinates f_a = the other
   m = r - d rows, a = 1..m, ordered by singular value.
3. Least squares for every normal coordinate at once, design row
   psi(u) = [u_1..u_d, 1/2 u_i^2 (i = 1..d), u_i u_j (i < j)]  (q = d + d(d+1)/2 unknowns):
   f_a ~ b_a . u + 1/2 u^T H_a u.
4. The principal curvatures at x along normal a are the eigenvalues of the symmetric H_a.

Summaries of a layer (each per point first, then over points):

- `mapc`, the reference's mean absolute principal curvature: the mean of |kappa| over all
  m normal directions and all d eigenvalues, then the mean over points, with the fit of
  step 3 exactly as in the reference (no constant term). Kept for comparison with the
  paper; it depends on the embedding (every normal direction the data does not bend into
  dilutes it: S^2(1) isometrically in R^50 gives about 0.04, not 1) and on noise.
- `curvature_sff`, the norm of the second fundamental form,
  ||II||^2 = sum_a ||H_a||_F^2 / d, which is independent of the normal basis and of how
  many flat directions the embedding adds: on any sphere S^d(R), H = I/R along its one
  curved normal, so ||II||^2 = (d / R^2) / d and ||II|| = 1/R. The layer value is the
  root mean square over points, sqrt(mean_i ||II||_i^2), of the noise-corrected per-point
  values below (so that the noise correction, unbiased per point, stays unbiased).

Noise. Every normal direction that holds only noise adds a positive amount to
sum_a ||H_a||_F^2, and a layer has hundreds of them. This estimator removes that bias in
the fit itself, for `curvature_sff` only (`mapc` stays the reference's):

- the tangent frame is that of the neighbours centred on their own mean (the top d
  principal directions), not of Delta relative to x: the centre's own noise is common to
  all K differences and, relative to x, can outweigh the true normal displacement and
  tilt the frame;
- the fit has a constant term, f ~ c + b . u + 1/2 u^T H u (p = q + 1 unknowns), since the
  centre's noise shifts every normal coordinate alike; without a constant the quadratic
  terms absorb that shift, a bias sqrt(K) times larger than the neighbours' noise;
- the fit is of the normal parts of the differences as vectors in R^D (coefficients
  C = R^-1 Q^T [normal parts], Psi = QR), so sum_a ||H_a||_F^2 = sum_i w_i ||C_i||^2 over
  the quadratic rows, w = 1 for u_i^2 and 2 for u_i u_j: no normal basis is needed and no
  direction has to be declared signal or noise;
- for independent noise of variance sigma_a^2 in normal direction a, the coefficients have
  covariance sigma_a^2 (Psi^T Psi)^-1, so E sum_a ||H_a||_F^2 = true value
  + sum_a sigma_a^2 tr(W (Psi^T Psi)^-1_HH), and RSS_a / (K - p) estimates sigma_a^2
  without bias: the estimator subtracts RSS / (K - p) tr(W (Psi^T Psi)^-1_HH), RSS the
  total residual over all directions (`noise_share` says what fraction that removed).

Measured on S^2 (R = 2) in R^100, Gaussian noise 0.5 % of R per coordinate, N = 3000
uniform points, R * curvature_sff (1 is right), uncorrected -> corrected:
K = 18: 6.66 -> 0.95; 24: 3.96 -> 0.94; 30 (the default): 2.79 -> 0.98..1.00 over three
seeds; 36: 2.17 -> 1.00; 48: 1.57 -> 1.00; 72: 1.20 -> 1.02. Without the constant term
the corrected values stay at 1.9-6.8; with the frame relative to x instead of centred,
the correction breaks down at K <= 3 p (heavy-tailed per-point values, a negative mean)
and is up to 1 % higher above. S^3 likewise: 1.60 -> 1.03 at the default K. Small K leaves the
correction unbiased but noisy (a few ill-conditioned neighbourhoods dominate the mean):
hence the floor of 30 neighbours in the default.

Clean manifolds: the quartic terms bias a quadratic fit upward by about a relative
0.5 curvature_sff_scaled^2 (the squared bending angle across a neighbourhood): +6 % for the
torus and +20 % for S^5 at N = 2000 with the default K. So the SFF fit also carries the
d(d+1)/2 radial-quartic columns |u|^2 u_i u_j (p = 1 + d + d(d+1) unknowns; from the same QR,
whose leading columns are the quadratic design's): over a ball-shaped neighbourhood a quartic
form splits into a harmonic part, orthogonal to every quadratic, and |u|^2 times a quadratic,
which these columns absorb. With them the clean error at N = 2000 is +1.7 % (torus), +0.5 %
(Clifford torus, S^3), -1.2 % (S^5). They cost precision under noise (they are nearly
collinear with the quadratic columns), so they are used only while that fit keeps
signal_to_noise >= 1; otherwise the quadratic fit is used, and where its expected bias
0.5 curvature_sff_scaled^2 exceeds 8 % the layer says "cannot tell" (`cannot_tell`).

Scale. Curvature is 1/length. The `_scaled` forms multiply by the length
`length_scale` = the median over points of the root-mean-square distance from a point to
its K neighbours, so they are dimensionless and compare across layers of different scale;
they are the typical bending angle across one neighbourhood (about 0.18 for S^2 with the
default K and N = 2000), and so depend on the neighbourhood size, as the raw values do not.

Default K: max(3 p, 30), p = 1 + d + d(d+1)/2 the unknowns of the fit with a constant,
capped at N - 1: enough equations per unknown for the fit and its noise estimate (K near q
biases the reference low: K = 2d gives 0.7x on spheres), few enough that the quartic bias
above stays at a few per cent. The smallest K accepted is q + 2 = p + 1 (one residual
degree of freedom for the noise estimate).

Computation: per point, one product Delta Delta^T (or Delta^T Delta when D < K), then only
K x K (or D x D) work: two symmetric eigendecompositions (the frame relative to x, the
centred frame), two small QR factorisations and the eigenvalues of the m Hessians; batched
over chunks of points in torch, float64, on the CPU (chunks in parallel threads) or a GPU.

Per-point values come with quantiles (5, 25, 50, 75, 95 %) and a 95 % interval (seeded) made
of two parts:

- sampling: a percentile bootstrap of the mean. With kNN neighbourhoods the per-point values
  are not independent (neighbourhoods overlap), so it resamples blocks of nearby points (the
  Voronoi cells of N // 2K seeded anchors, 10 to 100 cells); explicit neighbourhoods do not
  overlap and are resampled point by point;
- bias (`curvature_sff` only): the fit's own bias does not shrink with more bootstrap draws,
  so the interval is widened on both sides by an allowance for it (`bias_allowance`, in units
  of curvature_sff): the larger of the quadratic fit's expected bias 0.5 curvature_sff_scaled^2
  (relative) and the difference between the quadratic and the radial-quartic fit on the same
  neighbourhoods (where the quartic fit is well posed). The quartic terms remove the leading
  bias, but what stays was measured at 0.08-0.35 of what they removed at N = 2000 (torus,
  Clifford torus, S^3, S^5), 0.9 on the torus at N = 1000, and noise adds its own (torus of
  revolution, N = 1000, 1 % noise: +10 % with the quartic fit, +13 % without); the leading
  order 0.5 curvature_sff_scaled^2 is what this estimator can vouch for.

Coverage measured with `python benchmarks/curvature_accuracy.py --coverage` (fresh samples
of manifolds of known ||II||, the share of 95 % intervals that hold the truth): docs/methods.md.
`mapc`'s interval is the bootstrap part alone (the reference's quantity has no truth to be
biased from).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from ..device import resolve_device, tensor_view, torch_threads
from ..errors import InputError
from ..progress import track
from ..validation import as_neighbourhoods, as_points, check_k, check_positive, check_tangent_dim
from .neighbours import NeighbourGraph, nearest_neighbours

QUANTILES = (5, 25, 50, 75, 95)
LENGTH_SCALE = "median over points of the RMS distance from a point to its K neighbours"
SFF_AVERAGE = "root mean square over points of the noise-corrected per-point SFF norm"
# relative size under which a singular value or a pivot of the fit counts as zero
_DEGENERATE = 1e-10
WORK_BYTES = 2**28
"""Default working memory of the fits, all worker threads together (`max_memory` overrides)."""
QUADRATIC_FIT = "quadratic with a constant"
QUARTIC_FIT = "quadratic with a constant and radial-quartic terms |u|^2 u_i u_j"
MAX_QUADRATIC_BIAS = 0.08
"""The largest expected bias of the quadratic-only fit (0.5 curvature_sff_scaled^2) accepted."""
# squared bending angle (raw ||II||^2 r^2) below which a layer is flat to rounding: its SFF is 0
_FLAT = 1e-20
MIN_SIGNAL_TO_NOISE = 0.1
"""Below this signal_to_noise the layer's curvature_sff is NaN ("cannot tell")."""
BLOCKS = (
    "percentile bootstrap over blocks of nearby points (Voronoi cells of seeded anchors), "
    "so that overlapping neighbourhoods are resampled together"
)
BIAS_ALLOWANCE = (
    "curvature_sff interval widened on both sides by the larger of 0.5 curvature_sff_scaled^2 "
    "(relative) and |quadratic fit - radial-quartic fit|"
)


def n_unknowns(dim: int) -> int:
    """Unknowns of the reference fit per normal direction: d linear + d(d+1)/2 quadratic."""
    return dim + dim * (dim + 1) // 2


def sff_unknowns(dim: int) -> int:
    """Unknowns of the SFF fit: a constant, q, and the d(d+1)/2 radial-quartic terms."""
    return 1 + n_unknowns(dim) + dim * (dim + 1) // 2


def min_neighbours(dim: int) -> int:
    """The smallest K accepted: q + 2 (one more for the constant, one residual degree of freedom)."""
    return n_unknowns(dim) + 2


def default_k(dim: int, n_points: int | None = None) -> int:
    """max(3 p, 30) neighbours, p = q + 1 the unknowns of the fit with a constant; at most N - 1."""
    k = max(3 * (n_unknowns(dim) + 1), 30)
    return k if n_points is None else min(k, n_points - 1)


MAX_FIT_FLOPS = 1e13
"""The most floating-point operations `fit_flops` the default K may cost a layer (about an hour
on 2 CPU cores at the few GFLOP/s these batched small factorisations reach); a layer above it
is reported as too costly unless the user gives K."""


def fit_flops(n_points: int, k: int, ambient: int, dim: int) -> float:
    """Estimated floating-point operations of the fits of n_points points (`_local_fits`):
    per point the Gram product (2 K s D, s = min(K, D)), two symmetric eigendecompositions
    with vectors (about 9 s^3 each) and the QR factorisations of the two designs (2 K p^2,
    p the unknowns of each fit). Example: d = 2, K = 30, D = 512 gives about 1e6 per point;
    d = 50 at its default K = 3978 about 1e11."""
    side = min(k, ambient)
    designs = 2 * k * (n_unknowns(dim) ** 2 + sff_unknowns(dim) ** 2)
    return float(n_points) * (2.0 * k * side * ambient + 18.0 * side**3 + designs)


@dataclass(frozen=True)
class Curvature:
    """Curvature of one point cloud (a layer): summaries, per-point values, quantiles, intervals.

    mapc: reference mean |principal curvature| (mean over points, normal directions, eigenvalues).
    curvature_sff: second-fundamental-form norm sqrt(sum_a ||H_a||_F^2 / d), noise-corrected,
        root mean square over points (`sff_average`); NaN with `status` "cannot_tell" and a `reason` when the
        value cannot be trusted (see `cannot_tell`).
    signal_to_noise: the noise-corrected sum_a ||H_a||_F^2 over the noise part the
        correction removed (mean over points): the bending's share of the raw fit against the
        noise's. Below `MIN_SIGNAL_TO_NOISE` the tool says "cannot tell".
    length_scale: the length the `_scaled` forms multiply by (`length_scale_definition`).
    *_per_point: (N,) arrays, NaN where the neighbourhood is degenerate (rank below d).
    sff_squared_per_point: the noise-corrected ||II||^2 per point (may be slightly negative).
    noise_share: the fraction of the raw sum_a ||H_a||_F^2 (all points) removed as noise.
    quantiles: {metric: {"q05": .., "q25": .., "q50": .., "q75": .., "q95": ..}} of per-point values.
    intervals: {metric: (low, high)} at `confidence`: percentile bootstrap over `n_blocks`
        blocks of nearby points (`interval_method`), for curvature_sff widened by the fit's
        `bias_allowance` (module docstring).
    bias_allowance: how far the curvature_sff interval was widened on each side for the fit's
        bias (units of curvature_sff; `BIAS_ALLOWANCE`).
    """

    dim: int
    k: int
    n_points: int
    n_degenerate: int
    mapc: float
    curvature_sff: float
    length_scale: float
    mapc_per_point: np.ndarray
    sff_per_point: np.ndarray
    sff_squared_per_point: np.ndarray
    radius_per_point: np.ndarray
    noise_share: float
    quantiles: dict[str, dict[str, float]]
    intervals: dict[str, tuple[float, float]]
    confidence: float
    n_bootstrap: int
    seed: int
    length_scale_definition: str = LENGTH_SCALE
    sff_average: str = SFF_AVERAGE
    signal_to_noise: float = float("nan")
    status: str = "measured"
    reason: str = ""
    n_blocks: int = 0
    interval_method: str = ""
    fit: str = ""
    bias_allowance: float = float("nan")
    sff_square_interval: tuple[float, float] = (float("nan"), float("nan"))

    @property
    def curvature_sff_signed(self) -> float:
        """sign(m) sqrt(|m|), m the mean noise-corrected ||II||^2 over the valid points: defined
        even where `curvature_sff` is not (a null's draws are compared on it)."""
        values = self.sff_squared_per_point[np.isfinite(self.sff_squared_per_point)]
        if not len(values):
            return float("nan")
        mean = float(values.mean())
        return float(np.sign(mean) * np.sqrt(abs(mean)))

    def upper_bound(self) -> float:
        """An upper bound of curvature_sff at the interval's confidence, also where the value itself
        cannot be told from 0: sqrt of the bootstrap's upper percentile of the mean ||II||^2."""
        high = self.sff_square_interval[1]
        return float(np.sqrt(max(high, 0.0))) if np.isfinite(high) else float("nan")

    @property
    def mapc_scaled(self) -> float:
        return self.mapc * self.length_scale

    @property
    def curvature_sff_scaled(self) -> float:
        return self.curvature_sff * self.length_scale

    def metrics(self) -> dict[str, float]:
        """The four metrics under their schema names."""
        return {
            "mapc": self.mapc,
            "curvature_sff": self.curvature_sff,
            "mapc_scaled": self.mapc_scaled,
            "curvature_sff_scaled": self.curvature_sff_scaled,
            "signal_to_noise": self.signal_to_noise,
        }

    def details(self) -> dict:
        """Everything else a result file should carry to be read without this code (the
        status and reason are the layer's own fields)."""
        return {
            "dim": self.dim,
            "k": self.k,
            "sff_fit": self.fit,
            "n_degenerate": self.n_degenerate,
            "length_scale": self.length_scale,
            "length_scale_definition": self.length_scale_definition,
            "curvature_sff_average": self.sff_average,
            "noise_share": self.noise_share,
            "quantiles": self.quantiles,
            "interval_method": self.interval_method,
            "interval_bias_allowance": self.bias_allowance,
            "interval_bias_method": BIAS_ALLOWANCE,
            "n_blocks": self.n_blocks,
            "confidence": self.confidence,
            "n_bootstrap": self.n_bootstrap,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class _LocalFits:
    """Per-point results of one chunk (torch tensors on the working device)."""

    mapc: torch.Tensor  # (B,)
    sff_squared: torch.Tensor  # (B,) noise-corrected sum_a ||H_a||_F^2 / d
    sff_squared_raw: torch.Tensor  # (B,) uncorrected
    sff_squared_quartic: torch.Tensor  # (B,) the same with the radial-quartic terms in the fit
    sff_squared_quartic_raw: torch.Tensor  # (B,)
    valid_quartic: torch.Tensor  # (B,) bool: the fit with the quartic terms is well posed
    radius: torch.Tensor  # (B,) RMS distance to the neighbours
    valid: torch.Tensor  # (B,) bool
    principal: torch.Tensor | None  # (B, m, d) eigenvalues of H_a (reference fit), if asked


def curvature(
    points,
    dim: int,
    *,
    k: int | None = None,
    graph: NeighbourGraph | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
    chunk_size: int | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    workers: int | None = None,
    max_memory: int | None = None,
    n_centres: int | None = None,
    progress: bool = False,
) -> Curvature:
    """Curvature of `points` (N, D) with kNN neighbourhoods in the points themselves.

    dim: tangent dimension d (see `geometry.tangent_dimension`, or given by the user).
    k: neighbours per point (default `default_k(dim, N)`); `graph`: a precomputed
    NeighbourGraph holding at least k neighbours (its first k are used).
    dtype: working precision (float64 by default); chunk_size: at most this many points per
    batch; workers: batches in parallel threads (see `_fit_all`);
    max_memory: bytes of working memory for the fits, all workers together (default
    `WORK_BYTES`; chunks and workers shrink to fit, down to one point at a time; the points
    themselves are not counted: float32 points stay float32, only each chunk's differences
    are float64).
    n_bootstrap, confidence, seed: the percentile bootstrap over points.
    n_centres: fit at a seeded random subset of this many points only (`centre_rows`), their
    neighbourhoods still drawn from all N: the layer's averages are then means over a random
    sample of its points, at n_centres / N of the cost, and the bootstrap over that sample
    gives their intervals. None: every point.

    Example: S^2 of radius 2 has ||II|| = 1/2 everywhere:
    >>> x = np.random.default_rng(0).standard_normal((2000, 3))
    >>> round(curvature(2 * x / np.linalg.norm(x, axis=1, keepdims=True), 2).curvature_sff, 1)
    0.5
    """
    x = as_points(points, min_points=3)
    n, ambient = x.shape
    dim = check_tangent_dim(dim, ambient)
    k = default_k(dim, n) if k is None else check_k(k, n)
    _check_enough(k, dim)
    if graph is None:
        graph = nearest_neighbours(x, k, device=device)
    else:
        if graph.indices.shape[0] != n:
            raise InputError(
                f"the neighbour graph has {graph.indices.shape[0]} rows but there are {n} points; "
                "compute it on the same points."
            )
        if graph.k < k:
            raise InputError(f"the neighbour graph holds {graph.k} neighbours, fewer than k={k}.")
        graph = graph.first(k)
    dev = resolve_device(device)
    xt = tensor_view(x).to(dev)  # read-only layers (cached activations) included: nothing writes to xt
    rows = centre_rows(n, n_centres, seed)

    buffers = threading.local()  # each worker thread's gather and difference buffers

    def chunk(start: int, stop: int) -> torch.Tensor:
        """x_j - x for the chunk's points (B, K, D), exact in float64 from float32 points.

        The differences go into buffers that each worker thread allocates once and reuses:
        fresh blocks of tens of MB per chunk fragment glibc's per-thread heaps (measured up
        to 2.7 GB resident for a 32 MB budget at D = 65,536)."""
        size = stop - start
        if getattr(buffers, "delta", None) is None or buffers.delta.shape[0] < size:
            buffers.delta = torch.empty((size, k, ambient), dtype=dtype, device=dev)
            same = xt.dtype == dtype
            buffers.gather = (
                buffers.delta if same else torch.empty((size, k, ambient), dtype=xt.dtype, device=dev)
            )
        fitted = np.arange(start, stop) if rows is None else rows[start:stop]
        idx = torch.from_numpy(graph.indices[fitted]).to(dev).reshape(-1)
        gathered = buffers.gather[:size]
        torch.index_select(xt, 0, idx, out=gathered.view(size * k, ambient))
        delta = buffers.delta[:size]
        if buffers.gather is not buffers.delta:
            delta.copy_(gathered)
        return delta.sub_(xt[torch.from_numpy(fitted).to(dev), None, :].to(dtype))

    n_fitted = n if rows is None else len(rows)
    fits = _fit_all(chunk, n_fitted, k, ambient, dim, chunk_size, workers, progress, dev, max_memory)
    positions = x if rows is None else x[rows]
    return _summarise(fits, dim, k, n_bootstrap, confidence, seed, positions=positions)


def centre_rows(n_points: int, n_centres: int | None, seed: int) -> np.ndarray | None:
    """The sorted rows a fit at `n_centres` centres uses: a seeded uniform sample without
    replacement (None when n_centres is None or covers every point).

    >>> centre_rows(10, 3, seed=0).tolist()
    [5, 6, 9]
    """
    if n_centres is None:
        return None
    n_centres = check_positive(n_centres, name="n_centres", integer=True)
    if n_centres >= n_points:
        return None
    return np.sort(np.random.default_rng(seed).choice(n_points, size=n_centres, replace=False))


class NeighbourhoodCurvature:
    """Curvature over explicit neighbourhoods that arrive in batches of points.

    The `perturb` construction yields, batch of images by batch, every layer's
    neighbourhoods at once; `add` fits a batch (centres (B, D), neighbourhoods (B, K, D))
    and keeps only the per-point results, so memory holds one batch of neighbourhoods;
    `result` summarises all points as `curvature_of_neighbourhoods` does.
    """

    def __init__(
        self,
        dim: int,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
        chunk_size: int | None = None,
        workers: int | None = None,
    ):
        self.dim, self.dtype, self.chunk_size, self.workers = dim, dtype, chunk_size, workers
        self.device = resolve_device(device)
        self.k: int | None = None
        self._parts: list[_LocalFits] = []

    def add(self, centres, neighbourhoods, *, progress: bool = False) -> None:
        c, nb = as_neighbourhoods(centres, neighbourhoods)
        n, k, ambient = nb.shape
        if self.k is None:
            self.dim = check_tangent_dim(self.dim, ambient)
            _check_enough(k, self.dim)
            self.k = k
        elif k != self.k:
            raise InputError(f"every neighbourhood must hold K={self.k} points, got {k}.")
        dev, dtype = self.device, self.dtype

        def chunk(start: int, stop: int) -> torch.Tensor:
            block = torch.from_numpy(nb[start:stop]).to(dev, dtype)
            return block - torch.from_numpy(c[start:stop]).to(dev, dtype)[:, None, :]

        self._parts.append(
            _fit_all(chunk, n, k, ambient, self.dim, self.chunk_size, self.workers, progress, dev)
        )

    def result(self, *, n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0) -> Curvature:
        """The summary; its intervals resample blocks of consecutive points (`_summarise`)."""
        if not self._parts:
            raise InputError("no neighbourhoods were given.")
        return _summarise(_concatenate(self._parts), self.dim, self.k, n_bootstrap, confidence, seed)


def curvature_of_neighbourhoods(
    centres,
    neighbourhoods,
    dim: int,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
    chunk_size: int | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = False,
) -> Curvature:
    """Curvature with explicit neighbourhoods: `centres` (N, D), `neighbourhoods` (N, K, D).

    Used by the `perturb` construction, where the neighbourhood of a point is the layer's
    activations of its own perturbed copies (K = their number).
    """
    accumulator = NeighbourhoodCurvature(
        dim, device=device, dtype=dtype, chunk_size=chunk_size, workers=workers
    )
    accumulator.add(centres, neighbourhoods, progress=progress)
    return accumulator.result(n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)


def principal_curvatures(
    centres,
    neighbourhoods,
    dim: int,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
) -> np.ndarray:
    """Principal curvatures (N, m, d) with explicit neighbourhoods (the reference fit).

    Entry [i, a] holds the eigenvalues (ascending) of H_a at point i; normal directions a
    are ordered by singular value, largest first; m = min(D, K) - d. Signs follow the SVD's
    arbitrary orientation of each normal direction. NaN where the neighbourhood is degenerate.
    """
    c, nb = as_neighbourhoods(centres, neighbourhoods)
    _, k, ambient = nb.shape
    dim = check_tangent_dim(dim, ambient)
    _check_enough(k, dim)
    dev = resolve_device(device)
    delta = torch.from_numpy(nb).to(dev, dtype) - torch.from_numpy(c).to(dev, dtype)[:, None, :]
    fits = _local_fits(delta, dim, keep_principal=True)
    principal = fits.principal.masked_fill(~fits.valid[:, None, None], torch.nan)
    return principal.cpu().numpy()


def _check_enough(k: int, dim: int) -> None:
    need = min_neighbours(dim)
    if k < need:
        raise InputError(
            f"K={k} neighbours cannot determine the quadratic fit in dim={dim} "
            f"({n_unknowns(dim)} unknowns per normal direction, plus a constant); "
            f"use K >= {need} (default {default_k(dim)})."
        )


def _fit_all(chunk, n, k, ambient, dim, chunk_size, workers, progress, device, max_memory=None) -> _LocalFits:
    """Run `_local_fits` over chunks of points; `chunk(start, stop)` gives their differences.

    The chunks run in a pool of `workers` threads (default: torch.get_num_threads() on the
    CPU, 1 on a GPU): torch's batched eigh loops over the batch on one core, and the pool
    spreads the chunks over all of them; each chunk's result is the same as in a serial run.
    With several workers torch runs one intra-op thread per worker for the duration (the
    setting is restored after): small batched solves contend badly when every worker also
    spreads its own operations over all cores (15 s against 2.2 s at N = 5000 on 16 cores).
    max_memory: bytes for all workers' chunks together (`_bytes_per_point` each point;
    default `WORK_BYTES`): the workers and then the chunks shrink to fit, down to one point;
    a given max_memory also makes glibc return freed blocks at once (`_return_freed_memory`).
    Chunks as large as the budget allows also keep the resident set small: glibc serves
    blocks over 32 MB by mmap and returns them on free, while per-thread heaps of many
    blocks just under that size fragment (measured: one-point chunks of 16 MB in two threads,
    N = 200, D = 65,536, held 1.4 GB; five-point chunks 0.2 GB).
    """
    if workers is None:
        workers = torch.get_num_threads() if device.type == "cpu" else 1
    workers = check_positive(workers, name="workers", integer=True)
    per_point = _bytes_per_point(k, ambient, dim)
    budget = WORK_BYTES if max_memory is None else check_positive(max_memory, name="max_memory", integer=True)
    if max_memory is not None:
        _return_freed_memory()
    workers = max(1, min(workers, budget // per_point))
    fits_in = max(1, min(budget // (workers * per_point), -(-n // workers)))  # every worker busy
    chunk_size = fits_in if chunk_size is None else min(chunk_size, fits_in)
    chunk_size = check_positive(chunk_size, name="chunk_size", integer=True)
    starts = range(0, n, chunk_size)

    def fit(start: int) -> _LocalFits:
        return _local_fits(chunk(start, min(n, start + chunk_size)), dim)

    workers = min(len(starts), workers)
    threads = torch_threads(1) if workers > 1 else contextlib.nullcontext()
    with threads, ThreadPoolExecutor(max_workers=workers) as pool:
        done = track(pool.map(fit, starts), description="curvature", total=len(starts), enabled=progress)
        parts = list(done)
    return _concatenate(parts)


@functools.cache
def _return_freed_memory() -> bool:
    """Ask glibc to serve blocks of 64 KB and more by mmap and to trim freed heap at once
    (mallopt M_MMAP_THRESHOLD, M_TRIM_THRESHOLD; process-wide, once), so that memory freed
    between chunks goes back to the system. Without it the per-chunk blocks of the fits piled
    up in glibc's heaps whatever the chunk size: N = 400, D = 65,536, a 32 MB budget held
    230 MB above the start, 26 MB with it, at the same speed. False where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 65536)) and bool(libc.mallopt(-1, 0))  # M_MMAP_, M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        return False


def _bytes_per_point(k: int, ambient: int, dim: int) -> int:
    """Working bytes of one point's fit (upper estimate): its float32 gather and float64
    differences (12 K D), the K x K (or D x D) products and eigenvectors, and the designs and
    their factors (K x p, p the quartic fit's unknowns), in float64."""
    side = min(k, ambient)
    return 12 * k * ambient + 8 * (6 * side * side + 4 * k * sff_unknowns(dim) + 2 * k * side)


def _concatenate(parts: list[_LocalFits]) -> _LocalFits:
    """One _LocalFits of all points of `parts`, in order (per-point tensors moved to the CPU)."""
    return _LocalFits(
        mapc=torch.cat([p.mapc.cpu() for p in parts]),
        sff_squared=torch.cat([p.sff_squared.cpu() for p in parts]),
        sff_squared_raw=torch.cat([p.sff_squared_raw.cpu() for p in parts]),
        sff_squared_quartic=torch.cat([p.sff_squared_quartic.cpu() for p in parts]),
        sff_squared_quartic_raw=torch.cat([p.sff_squared_quartic_raw.cpu() for p in parts]),
        valid_quartic=torch.cat([p.valid_quartic.cpu() for p in parts]),
        radius=torch.cat([p.radius.cpu() for p in parts]),
        valid=torch.cat([p.valid.cpu() for p in parts]),
        principal=None,
    )


def _local_fits(delta: torch.Tensor, dim: int, keep_principal: bool = False) -> _LocalFits:
    """The per-point fits for a chunk of points; delta: (B, K, D) differences x_j - x.

    Everything after one product of Delta with itself works on K x K (or D x D, whichever
    is smaller) matrices, in units of each point's own radius (RMS distance to its
    neighbours), so that the columns of the designs have comparable size.
    """
    _, k, ambient = delta.shape
    gram_side = k <= ambient
    small = delta @ delta.mT if gram_side else delta.mT @ delta  # (B, s, s), s = min(K, D)
    radius = torch.diagonal(small, dim1=1, dim2=2).sum(dim=1).div(k).sqrt()
    unit = torch.where(radius > 0, radius, torch.ones_like(radius))
    small = small / unit.square()[:, None, None]
    weights = _frobenius_weights(dim, delta)

    # reference: thin SVD of Delta relative to x, fit without a constant per normal direction
    sv2, vecs = torch.linalg.eigh(small)
    sv2, vecs = sv2.flip(-1).clamp_min(0.0), vecs.flip(-1)
    coords = vecs * sv2.sqrt()[:, None, :] if gram_side else (delta / unit[:, None, None]) @ vecs
    u, f = coords[..., :dim], coords[..., dim:]  # Y^T = V S: tangent and normal coordinates
    valid = (radius > 0) & (sv2[:, dim - 1] > _DEGENERATE * sv2[:, 0])
    q_ref, r_ref = torch.linalg.qr(_design(u))
    valid &= _well_posed(r_ref)
    coef = _triangular_inverse(_guard(r_ref, valid))[:, dim:, :] @ (q_ref.mT @ f)  # (B, q-d, m)
    hess = _hessians(coef.mT, dim) / unit[:, None, None, None]  # (B, m, d, d)
    principal = torch.linalg.eigvalsh(hess)  # m = min(D, K) - d >= 1 normal directions
    mapc = principal.abs().mean(dim=(1, 2))

    # SFF: tangent frame of the mean-centred neighbourhood (the centre's own noise, common to
    # all K differences, stays out of it); joint fit with a constant of the normal parts of
    # the differences as vectors in R^D, needed only through N = their Gram matrix (K x K)
    # or the parts themselves (D < K); noise bias removed with the residuals
    if gram_side:
        centred = small - small.mean(dim=1, keepdim=True) - small.mean(dim=2, keepdim=True)
        centred = centred + small.mean(dim=(1, 2), keepdim=True)
        top, frame = (t[..., -dim:] for t in torch.linalg.eigh(centred))
        frame = frame - frame.mean(dim=1, keepdim=True)  # exactly orthogonal to the ones
        scale = torch.where(top > 0, top, torch.ones_like(top)).sqrt()
        u_c = small @ frame / scale[:, None, :]  # tangent coordinates relative to x
        normal_gram = small - u_c @ u_c.mT
        energy = torch.diagonal(normal_gram, dim1=1, dim2=2).sum(dim=1)
    else:
        scaled = delta / unit[:, None, None]
        mean = scaled.mean(dim=1)
        centred = small - k * mean[:, :, None] * mean[:, None, :]
        tangent = torch.linalg.eigh(centred)[1][..., -dim:]  # (B, D, d)
        u_c = scaled @ tangent
        normal = scaled - u_c @ tangent.mT
        energy = normal.square().sum(dim=(1, 2))
    # one QR of [1, psi, |u|^2 psi_H]: its leading p0 columns are the QR of the quadratic
    # design [1, psi] alone, so both fits come from the same factors
    quadratic = _design(u_c)
    p0 = 1 + quadratic.shape[2]
    columns = [torch.ones_like(u_c[..., :1]), quadratic]
    with_quartic = k > p0 + quadratic.shape[2] - dim  # K above the quartic fit's unknowns
    if with_quartic:
        columns.append(quadratic[..., dim:] * u_c.square().sum(dim=2, keepdim=True))  # |u|^2 psi_H
    q_c, r_c = torch.linalg.qr(torch.cat(columns, dim=2))
    valid &= _well_posed(r_c[:, :p0, :p0])
    if gram_side:
        proj_gram = q_c.mT @ normal_gram @ q_c  # (B, p, p) Gram of Q^T (normal parts)
    else:
        proj = q_c.mT @ normal
        proj_gram = proj @ proj.mT
    per_unit = unit.square() * dim
    raw, noise = _sff_terms(r_c[:, :p0, :p0], proj_gram[:, :p0, :p0], energy, weights, valid, k, dim)
    if with_quartic:
        valid_quartic = valid & _well_posed(r_c)
        raw_4, noise_4 = _sff_terms(r_c, proj_gram, energy, weights, valid_quartic, k, dim)
    else:
        valid_quartic = torch.zeros_like(valid)
        raw_4 = noise_4 = torch.full_like(raw, torch.nan)
    return _LocalFits(
        mapc=mapc,
        sff_squared=(raw - noise) / per_unit,
        sff_squared_raw=raw / per_unit,
        sff_squared_quartic=(raw_4 - noise_4) / per_unit,
        sff_squared_quartic_raw=raw_4 / per_unit,
        valid_quartic=valid_quartic,
        radius=radius,
        valid=valid,
        principal=principal if keep_principal else None,
    )


def _sff_terms(r, proj_gram, energy, weights, valid, k, dim):
    """(raw sum_a ||H_a||_F^2, its noise part) of one least-squares fit, in the radius' units.

    r: the design's triangular factor (B, p, p), columns [1, u, quadratic, ...];
    proj_gram: the Gram matrix of Q^T (normal parts) (B, p, p); energy: the normal parts'
    total square. Coefficients C = R^-1 Q^T (normal parts) and sum_a ||H_a||_F^2 =
    sum_i w_i ||C_i||^2 over the quadratic rows; noise = RSS / (K - p) tr(W (Psi^T Psi)^-1_HH).
    """
    n_quad = weights.shape[0]
    r_inv = _triangular_inverse(_guard(r, valid))[:, 1 + dim : 1 + dim + n_quad, :]
    raw = (weights * torch.diagonal(r_inv @ proj_gram @ r_inv.mT, dim1=1, dim2=2)).sum(dim=1)
    rss = (energy - torch.diagonal(proj_gram, dim1=1, dim2=2).sum(dim=1)).clamp_min(0.0)
    trace_cov = (weights[None, :, None] * r_inv.square()).sum(dim=(1, 2))
    return raw, rss / (k - r.shape[-1]) * trace_cov


def _design(u: torch.Tensor) -> torch.Tensor:
    """psi(u) = [u_1..u_d, 1/2 u_i^2, u_i u_j (i < j)] for every neighbour: (B, K, q)."""
    dim = u.shape[-1]
    rows, cols = torch.triu_indices(dim, dim, offset=1, device=u.device)
    return torch.cat([u, 0.5 * u.square(), u[..., rows] * u[..., cols]], dim=-1)


def _hessians(quad: torch.Tensor, dim: int) -> torch.Tensor:
    """Symmetric H (..., d, d) from the quadratic coefficients (..., d(d+1)/2) in `_design` order."""
    hess = quad.new_zeros(*quad.shape[:-1], dim, dim)
    diag = torch.arange(dim, device=quad.device)
    hess[..., diag, diag] = quad[..., :dim]
    rows, cols = torch.triu_indices(dim, dim, offset=1, device=quad.device)
    hess[..., rows, cols] = quad[..., dim:]
    hess[..., cols, rows] = quad[..., dim:]
    return hess


def _frobenius_weights(dim: int, like: torch.Tensor) -> torch.Tensor:
    """||H||_F^2 = sum_i H_ii^2 + 2 sum_{i<j} H_ij^2: weight 1 per diagonal, 2 per pair."""
    n_pairs = dim * (dim - 1) // 2
    ones = torch.ones(dim, dtype=like.dtype, device=like.device)
    return torch.cat([ones, 2 * torch.ones(n_pairs, dtype=like.dtype, device=like.device)])


def _well_posed(r: torch.Tensor) -> torch.Tensor:
    """Whether the triangular factor of a design has no (relatively) zero pivot."""
    pivots = torch.diagonal(r, dim1=-2, dim2=-1).abs()
    return pivots.min(dim=-1).values > _DEGENERATE * pivots.max(dim=-1).values


def _triangular_inverse(r: torch.Tensor) -> torch.Tensor:
    """R^-1 of a batch of small upper-triangular factors (one solve with p right-hand sides,
    much faster than a triangular solve against D right-hand sides)."""
    eye = torch.eye(r.shape[-1], dtype=r.dtype, device=r.device).expand_as(r)
    return torch.linalg.solve_triangular(r, eye, upper=True)


def _guard(r: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Replace the factors of invalid points by the identity so their solves stay finite."""
    eye = torch.eye(r.shape[-1], dtype=r.dtype, device=r.device)
    return torch.where(valid[:, None, None], r, eye)


def _summarise(
    fits: _LocalFits,
    dim,
    k,
    n_bootstrap,
    confidence,
    seed,
    *,
    positions: np.ndarray | None = None,
) -> Curvature:
    """The layer's summary of the per-point fits.

    positions: the points (N, D), for the blocks of the interval; None when neighbourhoods do
    not overlap (explicit neighbourhoods), where every point is its own block.
    """
    n_bootstrap = check_positive(n_bootstrap, name="n_bootstrap", integer=True)
    if not 0 < confidence < 1:
        raise InputError(f"confidence must lie between 0 and 1, got {confidence}.")
    valid = fits.valid.cpu().numpy()
    if not valid.any():
        raise InputError(
            f"every neighbourhood is degenerate (rank below dim={dim}); "
            "lower dim, raise K, or remove duplicate points."
        )
    nan = np.full(valid.shape, np.nan)
    mapc = np.where(valid, fits.mapc.cpu().numpy(), nan)
    radius = fits.radius.cpu().numpy()
    snr = _signal_to_noise(fits.sff_squared.cpu().numpy()[valid], fits.sff_squared_raw.cpu().numpy()[valid])
    quartic = bool(fits.valid_quartic.cpu().numpy()[valid].all())
    if quartic:
        corrected = fits.sff_squared_quartic.cpu().numpy()
        quartic = _signal_to_noise(corrected[valid], fits.sff_squared_quartic_raw.cpu().numpy()[valid]) >= 1
    if quartic:
        sff_sq = np.where(valid, corrected, nan)
        raw = fits.sff_squared_quartic_raw.cpu().numpy()[valid]
    else:
        sff_sq = np.where(valid, fits.sff_squared.cpu().numpy(), nan)
        raw = fits.sff_squared_raw.cpu().numpy()[valid]
    sff = np.sqrt(np.clip(sff_sq, 0.0, None))

    good_mapc, good_sq = mapc[valid], sff_sq[valid]
    n_blocks, blocks = _blocks(positions, valid, k, seed)
    boot_mapc, boot_sq = _block_bootstrap(np.stack([good_mapc, good_sq]), blocks, n_blocks, n_bootstrap, seed)
    tail = 100 * (1 - confidence) / 2
    lo, hi = tail, 100 - tail
    length = float(np.median(radius[valid]))
    mean_sq = float(good_sq.mean())
    noise_total = float(raw.sum()) - float(good_sq.sum())
    flat = float(np.mean(raw * radius[valid] ** 2)) < _FLAT  # no fitted bending above rounding
    quadratic_bias = 0.0 if quartic else 0.5 * max(mean_sq, 0.0) * length**2
    reason = "" if flat else cannot_tell(mean_sq, snr, quadratic_bias)
    status = "cannot_tell" if reason else "measured"
    mapc_iv = tuple(float(v) for v in np.percentile(boot_mapc, [lo, hi]))
    square_iv = tuple(float(v) for v in np.percentile(boot_sq, [lo, hi]))
    sff_iv = tuple(float(v) for v in np.sqrt(np.clip(square_iv, 0, None)))
    estimate = float(np.sqrt(max(mean_sq, 0.0)))
    allowance = 0.5 * (estimate * length) ** 2 * estimate  # 0.5 curvature_sff_scaled^2, relative
    if fits.valid_quartic.cpu().numpy()[valid].all():  # both fits well posed everywhere
        quadratic_sq = fits.sff_squared.cpu().numpy()[valid]
        quartic_sq = fits.sff_squared_quartic.cpu().numpy()[valid]
        allowance = max(allowance, abs(_root_mean(quadratic_sq) - _root_mean(quartic_sq)))
    sff_iv = (max(sff_iv[0] - allowance, 0.0), sff_iv[1] + allowance)
    if reason:
        sff_iv, allowance = (np.nan, np.nan), np.nan
    intervals = {
        "mapc": mapc_iv,
        "curvature_sff": sff_iv,
        "mapc_scaled": (mapc_iv[0] * length, mapc_iv[1] * length),
        "curvature_sff_scaled": (sff_iv[0] * length, sff_iv[1] * length),
    }
    raw_total = float(raw.sum())
    return Curvature(
        dim=dim,
        k=k,
        n_points=len(valid),
        n_degenerate=int((~valid).sum()),
        mapc=float(good_mapc.mean()),
        curvature_sff=np.nan if reason else 0.0 if flat else float(np.sqrt(mean_sq)),
        length_scale=length,
        mapc_per_point=mapc,
        sff_per_point=sff,
        sff_squared_per_point=sff_sq,
        radius_per_point=radius,
        noise_share=float(noise_total / raw_total) if raw_total > 0 else 0.0,
        quantiles={"mapc": _quantiles(good_mapc), "curvature_sff": _quantiles(sff[valid])},
        intervals=intervals,
        confidence=float(confidence),
        n_bootstrap=n_bootstrap,
        seed=seed,
        signal_to_noise=float(snr),
        fit=QUARTIC_FIT if quartic else QUADRATIC_FIT,
        status=status,
        reason=reason,
        n_blocks=n_blocks,
        bias_allowance=float(allowance),
        sff_square_interval=square_iv,
        interval_method=BLOCKS
        if positions is not None
        else "percentile bootstrap over points (explicit neighbourhoods do not overlap)",
    )


def _root_mean(squares: np.ndarray) -> float:
    """sqrt(mean(squares)), clipped at 0."""
    return float(np.sqrt(max(float(squares.mean()), 0.0)))


def _signal_to_noise(corrected: np.ndarray, raw: np.ndarray) -> float:
    """sum of the noise-corrected values over the sum of the noise parts removed (inf: none)."""
    noise = float(raw.sum() - corrected.sum())
    return float(corrected.sum() / noise) if noise > 0 else np.inf


def cannot_tell(mean_sq: float, signal_to_noise: float, quadratic_bias: float = 0.0) -> str:
    """Why the layer's curvature_sff cannot be trusted, or "" when it can.

    - the noise correction leaves ||II||^2 <= 0 (noise outweighs the bending entirely);
    - signal_to_noise < MIN_SIGNAL_TO_NOISE: the correction removed most of the raw value, so
      a small error in the noise model moves the result by a large factor;
    - quadratic_bias > MAX_QUADRATIC_BIAS: the data were too noisy for the radial-quartic
      terms, and the quadratic fit alone is biased upward by about 0.5 curvature_sff_scaled^2
      (measured: 0.36 Clifford torus, 0.45 spheres, 0.5 torus), more than 8 % here.
    """
    if not mean_sq > 0:
        return (
            "the noise correction removes all of the fitted bending (noise-corrected ||II||^2 <= 0): "
            "noise outweighs curvature at this neighbourhood size"
        )
    if signal_to_noise < MIN_SIGNAL_TO_NOISE:
        return (
            f"signal_to_noise {signal_to_noise:.2g} < {MIN_SIGNAL_TO_NOISE}: the noise correction "
            "removes most of the fitted bending"
        )
    if quadratic_bias > MAX_QUADRATIC_BIAS:
        return (
            f"too noisy for the radial-quartic fit, and the quadratic fit alone is biased by about "
            f"+{quadratic_bias:.0%} (0.5 curvature_sff_scaled^2) at this neighbourhood size"
        )
    return ""


def _blocks(positions, valid, k, seed) -> tuple[int, np.ndarray]:
    """Block labels (one per valid point) for the interval.

    With kNN neighbourhoods, the Voronoi cells of G seeded anchor points, G = N // (2 K)
    clipped to [10, 100] (cells of at least ~2 K points, so that most neighbourhoods lie in
    one or two cells); without positions every point is its own block."""
    n = int(valid.sum())
    if positions is None:
        return n, np.arange(n)
    x = positions if valid.all() else positions[valid]  # no copy of a wide layer when it can
    n_blocks = int(min(max(n // (2 * k), 10), 100, n))
    rng = np.random.default_rng(seed)
    anchors = torch.from_numpy(x[rng.choice(n, size=n_blocks, replace=False)])
    points = torch.from_numpy(x)
    labels = np.empty(n, dtype=np.int64)
    step = max(1, 2**22 // (n_blocks * x.shape[1] + 1))
    for start in range(0, n, step):
        labels[start : start + step] = torch.cdist(points[start : start + step], anchors).argmin(1).numpy()
    present, labels = np.unique(labels, return_inverse=True)
    return len(present), labels


def _block_bootstrap(values: np.ndarray, blocks: np.ndarray, n_blocks: int, n_bootstrap: int, seed):
    """Bootstrap means of the rows of `values` (m, n) over resampled blocks: each replicate
    draws n_blocks blocks with replacement and takes sum(values) / count over their points."""
    sums = np.stack([np.bincount(blocks, weights=row, minlength=n_blocks) for row in values])
    counts = np.bincount(blocks, minlength=n_blocks).astype(float)
    rng = np.random.default_rng(seed)
    out = np.empty((len(values), n_bootstrap))
    step = max(1, 2**22 // n_blocks)
    for start in range(0, n_bootstrap, step):
        stop = min(n_bootstrap, start + step)
        pick = rng.integers(0, n_blocks, size=(stop - start, n_blocks))
        out[:, start:stop] = sums[:, pick].sum(axis=2) / counts[pick].sum(axis=1)
    return out


def _quantiles(values: np.ndarray) -> dict[str, float]:
    return {f"q{q:02d}": float(v) for q, v in zip(QUANTILES, np.percentile(values, QUANTILES), strict=True)}
