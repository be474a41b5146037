"""The multiscale profile of a point cloud: local singular values against radius, the scale-dependent
dimension, each direction's growth exponent, and the manifold scale window (if there is one).

Multiscale local SVD (Little, Maggioni & Rosasco 2017, "Multiscale geometric methods for data
sets I: multiscale SVD, noise and curvature", Applied and Computational Harmonic Analysis). For
a ladder of neighbourhood sizes K (log-spaced, `scale_ladder`) and a seeded sample of anchor
points, each anchor's K nearest neighbours are centred on their mean and their covariance
eigenvalues lambda_1 >= lambda_2 >= ... computed (float64; from the K x K Gram matrix when
K <= D). Per scale:

- `radii`: the median over anchors of the RMS distance from an anchor to its K neighbours: r(K);
- `singular_values[:, i]`: the mean over anchors of sqrt(lambda_i), the neighbourhood's RMS
  extent along its i-th direction;
- `noise_floor`: the largest singular value isotropic noise alone would give a K-neighbourhood,
  FLOOR_FACTOR sigma (1 + sqrt(m / (K - 1))) (the Marchenko-Pastur edge; sigma^2 the noise
  variance per direction, given, e.g. from `geometry.denoise`; m the number of directions), and
  at least `RELATIVE_FLOOR` of the largest; a direction below it holds no structure;
- `exponents[:, i]`: the growth exponent d log sigma_i / d log r (differences over neighbouring
  scales). On a d-manifold with noise sigma, the d tangent directions grow like r (exponent 1),
  the directions the manifold bends into grow like kappa r^2 (exponent 2) once they clear the
  noise, and noise directions stay flat (0; or fall, while K < D, as sqrt(D / K));
- `dims`: d(r), the number of leading directions before the first clear gap (a drop of the
  singular values by `GAP` = sqrt(3), the eigenvalues by 3x) among those above the floor; where
  there is no clear gap, every direction above the floor (`gaps` False);
- `bending`: the directions after the first d above the floor that grow like bending (exponent
  in `BENDING`).

The manifold scale window is the longest run of at least `MIN_SCALES` consecutive scales with a
clear gap over which d(r) is constant and below the number of directions the neighbourhood spans,
the radius grows by at least `MIN_RADIUS_RATIO` (so that exponents mean something), the tangent
block grows like r (the median exponent of its RMS extent in `TANGENT`), and the first normal
direction, where it clears the floor, does not grow like a tangent (that would be a manifold of
higher dimension emerging); among runs, one with a bending direction is preferred. In the window
the data look like a d-manifold, and a curvature fit there measures its bending (`curved`: a
direction grows like r^2 in at least two scales of the window) or bounds it (no such direction:
flat within the noise at these scales).
With no window, `reason` says what the profile shows instead (the local dimension grows with
scale, every direction grows alike, ...).

`class_agreement`: with labels, the mean share of an anchor's K neighbours that share its class:
where it falls, neighbourhoods span several class clusters and a fit there bends across them.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> v = rng.normal(size=(3000, 3)); sphere = v / np.linalg.norm(v, axis=1, keepdims=True)
>>> profile = multiscale_profile(sphere @ np.linalg.qr(rng.normal(size=(50, 3)))[0].T)
>>> profile.window.dim, profile.window.curved
(2, True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..device import tensor_view
from ..validation import as_points
from .neighbours import NeighbourGraph, nearest_neighbours

TANGENT = (0.6, 1.45)
"""Growth exponents of a tangent direction (1 in theory; noise and sampling widen it)."""
BENDING = (1.45, 3.0)
"""Growth exponents of a direction the manifold bends into (2 in theory)."""
FLOOR_FACTOR = 1.5
"""A direction counts only above this many times the largest singular value of pure noise."""
RELATIVE_FLOOR = 1e-6
"""... and above this fraction of the scale's largest singular value (rounding in clean data)."""
GAP = 3**0.5
"""A clear gap: consecutive singular values dropping by this factor (the eigenvalues by 3x)."""
MIN_SCALES = 3
MIN_RADIUS_RATIO = 1.3
KEPT = 40
"""Singular values kept per scale (the leading ones)."""
N_SCALES = 12
K_MIN = 10
K_MAX = 400
BLOCK_BYTES = 2**26


@dataclass(frozen=True)
class ScaleWindow:
    """A run of scales (indices `start`..`stop` of the ladder, inclusive) where the data look
    like a `dim`-manifold; `bending`: the directions (0-based indices) that grow like r^2 there;
    `curved`: some direction does in at least two of its scales."""

    start: int
    stop: int
    dim: int
    bending: tuple[int, ...]
    curved: bool
    ks: tuple[int, ...]
    radii: tuple[float, float]


@dataclass(frozen=True)
class MultiscaleProfile:
    """The multiscale profile of one point cloud (module docstring)."""

    ks: np.ndarray
    radii: np.ndarray
    singular_values: np.ndarray
    noise_floor: np.ndarray
    exponents: np.ndarray
    dims: np.ndarray
    gaps: np.ndarray
    bending: np.ndarray
    class_agreement: np.ndarray | None
    window: ScaleWindow | None
    reason: str
    n_anchors: int
    noise_variance: float

    def metrics(self) -> dict[str, float]:
        """Summary numbers: d(r) at the smallest and largest scale, the window's d and its number
        of bending directions (NaN without a window), and with labels the class agreement at the
        smallest and largest scale."""
        window = self.window
        values = {
            "window_dim": float(window.dim) if window is not None else float("nan"),
            "window_bending": float(len(window.bending)) if window is not None else float("nan"),
            "scale_dim_small": float(self.dims[0]),
            "scale_dim_large": float(self.dims[-1]),
        }
        if self.class_agreement is not None:
            values["class_agreement_small"] = float(self.class_agreement[0])
            values["class_agreement_large"] = float(self.class_agreement[-1])
        return values

    def details(self) -> dict:
        """The profile itself: every scale's K, radius, singular values, exponents, d(r)."""
        window = None
        if self.window is not None:
            w = self.window
            window = {"k": [int(w.ks[0]), int(w.ks[-1])], "radius": list(w.radii), "dim": w.dim,
                      "bending": list(w.bending), "curved": w.curved}  # fmt: skip
        return {
            "ks": self.ks.tolist(),
            "radii": self.radii.tolist(),
            "singular_values": np.round(self.singular_values, 8).tolist(),
            "noise_floor": self.noise_floor.tolist(),
            "exponents": np.round(self.exponents, 4).tolist(),
            "dims": self.dims.tolist(),
            "gaps": self.gaps.tolist(),
            "bending": self.bending.tolist(),
            "class_agreement": None if self.class_agreement is None else self.class_agreement.tolist(),
            "window": window,
            "window_reason": self.reason,
            "n_anchors": self.n_anchors,
            "noise_variance": self.noise_variance,
        }


def scale_ladder(
    n_points: int, *, k_min: int = K_MIN, k_max: int = K_MAX, n_scales: int = N_SCALES
) -> np.ndarray:
    """About `n_scales` log-spaced neighbourhood sizes from k_min to min(k_max, N // 4), distinct.

    >>> scale_ladder(2000).tolist()
    [10, 14, 20, 27, 38, 53, 75, 105, 146, 205, 286, 400]
    """
    top = max(k_min + 2, min(k_max, n_points // 4, n_points - 1))
    low = min(k_min, top - 2)
    return np.unique(np.round(np.geomspace(low, top, n_scales)).astype(int))


def _local_spectra(x: torch.Tensor, indices: np.ndarray, anchors: np.ndarray, k: int, kept: int):
    """(mean sqrt eigenvalues (kept,), RMS radius per anchor) at K = k."""
    n, ambient = x.shape
    width = min(kept, k - 1, ambient)
    total = torch.zeros(width, dtype=torch.float64)
    radii = []
    block = max(1, BLOCK_BYTES // (8 * k * (ambient + k)))
    idx = torch.from_numpy(indices[anchors, :k])
    centres = x[torch.from_numpy(anchors)].double()
    for start in range(0, len(anchors), block):
        nb = x[idx[start : start + block]].double()  # (B, K, D)
        radii.append(((nb - centres[start : start + block, None, :]) ** 2).sum(-1).mean(-1).sqrt())
        nb -= nb.mean(dim=1, keepdim=True)
        product = nb @ nb.mT if k <= ambient else nb.mT @ nb
        values = torch.linalg.eigvalsh(product).flip(-1).clamp_min(0.0) / (k - 1)  # covariance eigenvalues
        del nb, product
        total += values[:, :width].sqrt().sum(dim=0)
    return (total / len(anchors)).numpy(), torch.cat(radii).numpy()


def _exponents(singular: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """d log sigma_i / d log r by differences over neighbouring scales (one-sided at the ends)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_s, log_r = np.log(singular), np.log(radii)[:, None]
    out = np.full(singular.shape, np.nan)
    s = len(radii)
    for i in range(s):
        a, b = max(0, i - 1), min(s - 1, i + 1)
        if b > a and log_r[b, 0] > log_r[a, 0]:
            with np.errstate(invalid="ignore"):
                out[i] = (log_s[b] - log_s[a]) / (log_r[b, 0] - log_r[a, 0])
    return out


def _dimension(singular: np.ndarray, floor: float, truncated: bool = False) -> tuple[int, bool]:
    """(d, clear): the directions before the first clear gap among those above the floor, or,
    without a clear gap, every direction above the floor. `truncated`: the neighbourhood spans
    more directions than the `singular` kept, so the end of the array is not a gap (d is then
    at least len(singular), and not clear)."""
    above = int(np.sum(singular > floor))
    for j in range(1, above + 1):
        if j == len(singular) and truncated:
            break
        after = singular[j] if j < len(singular) else 0.0
        if after == 0 or singular[j - 1] / after >= GAP:
            return j, True
    return above, False


def _block_exponent(singular: np.ndarray, radii: np.ndarray, d: int, a: int, b: int) -> float:
    """The growth exponent of the RMS extent of the first d directions over scales a..b."""
    extent = np.sqrt((singular[a : b + 1, :d] ** 2).mean(axis=1))
    return float(np.polyfit(np.log(radii[a : b + 1]), np.log(extent), 1)[0])


def _window(ks, radii, singular, exponents, floors, dims, gaps, bending_sets, spans, capped):
    runs = []
    start = 0
    for i in range(1, len(ks) + 1):
        if i == len(ks) or dims[i] != dims[start] or gaps[i] != gaps[start]:
            runs.append((start, i - 1))
            start = i
    good = []
    for a, b in runs:
        d = int(dims[a])
        if not gaps[a] or b - a + 1 < MIN_SCALES or d < 1 or any(d >= spans[s] for s in range(a, b + 1)):
            continue
        if radii[b] / radii[a] < MIN_RADIUS_RATIO:
            continue
        if not TANGENT[0] <= _block_exponent(singular, radii, d, a, b) < TANGENT[1]:
            continue
        emerging = [
            s
            for s in range(a, b + 1)
            if d < singular.shape[1]
            and singular[s, d] > floors[s]
            and TANGENT[0] <= exponents[s, d] < BENDING[0]
        ]
        if len(emerging) > (b - a + 1) // 2:
            continue
        bent = [s for s in range(a, b + 1) if bending_sets[s]]
        good.append((len(bent) >= 2, b - a, a, b, d, bent))
    if not good:
        return None, _no_window(dims, gaps, spans, ks, capped)
    curved, _, a, b, d, bent = max(good)
    directions = tuple(sorted({i for s in bent for i in bending_sets[s]}))
    window = ScaleWindow(
        start=a, stop=b, dim=d, bending=directions if curved else (), curved=curved,
        ks=tuple(int(k) for k in ks[a : b + 1]), radii=(float(radii[a]), float(radii[b])),
    )  # fmt: skip
    return window, ""


def _no_window(dims, gaps, spans, ks, capped) -> str:
    """Why the profile has no manifold scale window, in words (`capped`: d is at least the number
    of singular values kept, written >= d)."""
    pairs = ", ".join(
        f"{'>=' if c else ''}{int(d)}{'' if g or c else '?'} at K={int(k)}"
        for d, g, k, c in zip(dims, gaps, ks, capped, strict=True)
    )
    if not any(gaps):
        return (
            f"no clear gap in the local spectra at any scale (d(r), ? = no gap: {pairs}): no range of scales "
            "where the data look like a low-dimensional manifold"
        )
    if all(d >= s - 1 for d, s in zip(dims, spans, strict=True)):
        return f"every direction grows alike at every scale (d(r): {pairs}): no lower-dimensional manifold"
    if dims[-1] > dims[0] + 1:
        return (
            f"the local dimension grows with scale (d(r): {pairs}): no range of scales where the data look "
            "like a manifold of one dimension"
        )
    return (
        f"no run of {MIN_SCALES} scales where d(r) stays constant with a clear gap, the tangent block grows "
        f"like r and no further direction does (d(r), ? = no gap: {pairs})"
    )


def multiscale_profile(
    points,
    *,
    labels=None,
    ks=None,
    n_anchors: int = 200,
    seed: int = 0,
    graph: NeighbourGraph | Callable[[int], NeighbourGraph] | None = None,
    device="cpu",
    kept: int = KEPT,
    noise_variance: float = 0.0,
    ambient_dim: int | None = None,
) -> MultiscaleProfile:
    """The multiscale profile of `points` (N, D) (module docstring).

    labels: one class per point, for `class_agreement`; ks: the neighbourhood sizes (default
    `scale_ladder(N)`); n_anchors: a seeded sample of this many anchor points; graph: a
    neighbour graph holding at least max(ks) neighbours (or a function k -> such a graph);
    kept: how many leading singular values are kept per scale; noise_variance: sigma^2 per
    direction of the points' isotropic noise (`geometry.denoise` estimates it; 0: no floor but
    rounding, RELATIVE_FLOOR of the largest singular value); ambient_dim: the dimension of the
    space the points were projected from (`geometry.denoise`): a d that fills the projection but
    not that space is a flat piece (its normal directions were dropped as noise), not a
    space-filling cloud (default: the points' own dimension).
    """
    x_np = as_points(points, min_points=4)
    n, ambient = x_np.shape
    ladder = scale_ladder(n) if ks is None else np.unique(np.asarray(ks, dtype=int))
    ladder = ladder[(ladder >= 3) & (ladder <= n - 1)]
    if len(ladder) < MIN_SCALES:
        raise ValueError(
            f"a multiscale profile needs at least {MIN_SCALES} scales; the points allow {len(ladder)}"
        )
    k_max = int(ladder[-1])
    if graph is None:
        found = nearest_neighbours(x_np, k_max, device=device)
    else:
        found = graph(k_max) if callable(graph) else graph
    rng = np.random.default_rng(seed)
    anchors = np.sort(rng.choice(n, size=min(n, n_anchors), replace=False))
    x = tensor_view(np.ascontiguousarray(x_np))
    width = min(kept, ambient, k_max - 1)
    singular = np.full((len(ladder), width), np.nan)
    radii = np.zeros(len(ladder))
    sigma2 = float(noise_variance)
    floors = FLOOR_FACTOR * np.sqrt(sigma2) * (1 + np.sqrt(ambient / np.maximum(ladder - 1, 1)))
    agreement = np.zeros(len(ladder)) if labels is not None else None
    y = None if labels is None else np.asarray(labels)
    for s, k in enumerate(ladder):
        values, per_anchor = _local_spectra(x, found.indices, anchors, int(k), kept)
        singular[s, : len(values)] = values
        radii[s] = float(np.median(per_anchor))
        if y is not None:
            agreement[s] = float((y[found.indices[anchors, :k]] == y[anchors, None]).mean())
    exponents = _exponents(singular, radii)
    spans = np.minimum(ladder - 1, ambient if ambient_dim is None else max(ambient, int(ambient_dim)))
    dims = np.zeros(len(ladder), dtype=int)
    gaps = np.zeros(len(ladder), dtype=bool)
    bending_sets: list[tuple[int, ...]] = []
    floors = np.maximum(floors, RELATIVE_FLOOR * np.nan_to_num(singular[:, 0]))
    truncated = np.minimum(ladder - 1, ambient) > width  # more directions than the `kept` values
    for s in range(len(ladder)):
        values = np.nan_to_num(singular[s])
        dims[s], gaps[s] = _dimension(values, floors[s], truncated=bool(truncated[s]))
        bending_sets.append(
            tuple(i for i in range(dims[s], width)
                  if values[i] > floors[s] and BENDING[0] <= exponents[s, i] < BENDING[1])
        )  # fmt: skip
    bending = np.array([len(b) for b in bending_sets])
    window, reason = _window(ladder, radii, singular, exponents, floors, dims, gaps, bending_sets, spans,
                             capped=truncated & (dims >= width))  # fmt: skip
    return MultiscaleProfile(
        ks=ladder, radii=radii, singular_values=singular, noise_floor=floors, exponents=exponents, dims=dims,
        gaps=gaps, bending=bending, class_agreement=agreement, window=window, reason=reason,
        n_anchors=len(anchors), noise_variance=sigma2,
    )  # fmt: skip


@dataclass(frozen=True)
class ResidualBracket:
    """The range of ||II|| that the growth of the tangent-plane residual allows (`residual_bracket`):
    `slope` b of |normal part|^2 against |u|^4, its intercept (the noise energy), and
    [low, high] = [2 sqrt(b), sqrt(2 (d + 2) b)]."""

    slope: float
    intercept: float
    low: float
    high: float
    n_pairs: int

    def details(self) -> dict:
        return {"residual_slope": self.slope, "residual_intercept": self.intercept,
                "residual_bracket": [self.low, self.high], "residual_pairs": self.n_pairs}  # fmt: skip


def residual_bracket(points, indices: np.ndarray, ks, dim: int, *, n_anchors: int = 200, seed: int = 0):
    """An estimate of the curvature independent of the quadratic fit: how the residual off the
    tangent plane grows with the distance along it.

    At a point, a neighbour at tangent offset u sits ||II(u, u)|| / 2 off the tangent plane (plus
    noise), so over a neighbourhood |normal part|^2 = a + b |u|^4, a the noise energy. Averaged
    over directions u (locally uniform sampling), b = (2 sum_a ||H_a||_F^2 + sum_a (tr H_a)^2) /
    (4 d (d + 2)); with ||II||^2 = sum_a ||H_a||_F^2 / d and 0 <= sum_a (tr H_a)^2 <= d^2 ||II||^2,
    ||II|| lies in [2 sqrt(b), sqrt(2 (d + 2) b)] (the low end for a minimal surface, the high end
    for a sphere). b is fitted by least squares with an intercept over the neighbourhoods of a
    seeded sample of anchors at every K in `ks` (tangent frames from the local PCA of the
    neighbours centred on their mean, differences taken from the anchor).

    >>> import numpy as np
    >>> from manifold_probe.geometry.neighbours import nearest_neighbours
    >>> v = np.random.default_rng(0).normal(size=(3000, 3))
    >>> s = 2 * v / np.linalg.norm(v, axis=1, keepdims=True)
    >>> bracket = residual_bracket(s, nearest_neighbours(s, 60).indices, [30, 60], 2)
    >>> bracket.low <= 0.5 <= bracket.high  # a sphere of radius 2: ||II|| = 1/2, the high end
    True
    """
    x = np.asarray(as_points(points, min_points=4), dtype=np.float64)
    rng = np.random.default_rng(seed)
    anchors = rng.choice(len(x), size=min(len(x), n_anchors), replace=False)
    quartic, energy = [], []
    for k in ks:
        nb = x[indices[anchors, : int(k)]]  # (A, K, D)
        delta = nb - x[anchors, None, :]
        centred = nb - nb.mean(axis=1, keepdims=True)
        _, _, frames = np.linalg.svd(centred, full_matrices=False)  # (A, min(K, D), D)
        tangent = frames[:, :dim, :]  # (A, d, D)
        u = np.einsum("akd,ajd->akj", delta, tangent)
        normal = delta - np.einsum("akj,ajd->akd", u, tangent)
        quartic.append(((u**2).sum(-1) ** 2).ravel())
        energy.append((normal**2).sum(-1).ravel())
    q, e = np.concatenate(quartic), np.concatenate(energy)
    design = np.stack([np.ones_like(q), q], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(design, e, rcond=None)
    slope = max(float(slope), 0.0)
    return ResidualBracket(
        slope, float(intercept), 2 * np.sqrt(slope), float(np.sqrt(2 * (dim + 2) * slope)), len(q)
    )
