"""Curvature measured only where the data look like a manifold: inside a scale window, with guards,
an independent cross-check and a matched null.

The quadratic fit of `geometry.curvature` returns a number on any point cloud, manifold or not;
on the layers of real networks (and on a Gaussian blob) that number measures nothing. Here it is
given only where the multiscale profile finds a manifold scale:

1. Denoise (`geometry.denoise`, on by default for wide points): the points are projected on their
   principal components above twice the Marchenko-Pastur edge of the estimated noise, so that
   hundreds of noise directions do not drown the bending (recorded; switchable).
2. The multiscale profile (`geometry.multiscale`): local singular values against radius over a
   ladder of K. No manifold scale window: status `no_manifold_scale`, no number, and the profile
   says why (d(r) grows with scale, no gap at any scale, ...).
3. In the window (dimension d), the quadratic fit at every K of the window that the fit allows;
   the K with the largest signal_to_noise among the quadratic fits whose bias stays bounded
   (`measured`, bending angle across a neighbourhood curvature_sff_scaled at most
   `QUADRATIC_SCALE_LIMIT`), else the narrowest interval among the radial-quartic fits within
   `SCALE_LIMIT`: not the first K that works (`choose_fit` gives the measurements behind the order).
4. Guards, each `cannot_tell` with its reason:
   - the neighbourhood reaches the curvature radius (curvature_sff_scaled > `SCALE_LIMIT`, or
     `QUADRATIC_SCALE_LIMIT` when noise leaves only the quadratic fit: its bias is no longer
     bounded; two products of spheres at N = 2000 read +8 % and +17 % at 0.94);
   - the window shows bending but the interval reaches 0;
   - the fit disagrees with the growth of the tangent-plane residual (`multiscale.residual_bracket`,
     an estimate independent of the quadratic fit), by more than `BRACKET_TOLERANCE`.
   A window with no bending direction and an interval that reaches 0 is flat at these scales:
   curvature_sff reads 0 with the interval [0, the fit's upper bound] (`flat`).
5. The matched null (`geometry.matched_null`): the same estimator (denoising, the manifold scale
   window at the same d, the fit at the same K and centres) on Gaussian draws with the points'
   covariance (and, with labels, the class-conditional mixture); a draw with no window at d reads
   nothing (`null_statistic`). Reported: the mean of the draws that read, their share, the excess
   and the p-value of the observed value.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> v = rng.normal(size=(2000, 3)); sphere = 2 * v / np.linalg.norm(v, axis=1, keepdims=True)
>>> found = windowed_curvature(sphere @ np.linalg.qr(rng.normal(size=(50, 3)))[0].T, n_null=3, n_bootstrap=50)
>>> found.status, round(found.fit.curvature_sff, 1)  # a sphere of radius 2: 1/2
('measured', 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import InputError
from ..results import NO_MANIFOLD_SCALE
from ..validation import as_points
from .curvature import QUARTIC_FIT, Curvature, curvature, default_k, min_neighbours
from .denoise import Denoised, denoise
from .matched_null import NullTest, matched_null
from .multiscale import MultiscaleProfile, ResidualBracket, multiscale_profile, residual_bracket
from .neighbours import nearest_neighbours

SCALE_LIMIT = 0.7
"""Largest curvature_sff_scaled (bending angle across a neighbourhood) a reading may have."""
QUADRATIC_SCALE_LIMIT = 0.35
"""... when the fit had to drop its radial-quartic terms (noise): the quadratic fit's bias grows
like c scaled^2 with c measured at 0.36-1.0 (a noisy torus of revolution: +1 % at 0.34, +20 %
at 0.45), so its readings stop at 0.35 (at most about 12 %)."""
BRACKET_TOLERANCE = 1.0
"""The fit may fall this far (relatively) outside the residual bracket before it is doubted: a
factor of 2 either way (the bracket assumes a locally uniform sampling; on a saddle patch with a
boundary it under-reads by 1.5x)."""
DENOISE_MIN_DIM = 20
"""Points narrower than this are not denoised (too few directions for a noise bulk)."""
NULL_CENTRES = 300
"""The null's fits (and the observed value they are compared with) run at this many centres."""


@dataclass(frozen=True)
class WindowedCurvature:
    """The outcome for one point cloud (module docstring): `status` (measured, cannot_tell,
    no_manifold_scale, not_measurable) with its `reason`; the `profile`; the `fit` kept (None
    without a window) and every fit tried (`fits`, by K); `flat`; the residual `bracket`; the
    `denoised` projection (None when not denoised); the nulls."""

    status: str
    reason: str
    profile: MultiscaleProfile | None
    fit: Curvature | None
    fits: dict
    flat: bool
    bracket: ResidualBracket | None
    denoised: Denoised | None
    null: NullTest | None
    null_classes: NullTest | None

    @property
    def curvature_sff(self) -> float:
        if self.fit is None or self.status != "measured":
            return float("nan")
        return 0.0 if self.flat else self.fit.curvature_sff

    def interval(self) -> tuple[float, float] | None:
        if self.fit is None or self.status != "measured":
            return None
        if self.flat:
            return (0.0, self.fit.upper_bound())
        low, high = self.fit.intervals.get("curvature_sff", (float("nan"), float("nan")))
        return (float(low), float(high))


def working_points(x: np.ndarray, use_denoise: bool) -> tuple[np.ndarray, Denoised | None]:
    if not use_denoise or x.shape[1] < DENOISE_MIN_DIM:
        return np.asarray(x, dtype=np.float64), None
    found = denoise(x)
    if found.n_components > x.shape[1] // 4:  # no noise bulk to speak of: keep every direction
        return np.asarray(x, dtype=np.float64), None
    return found.points, found


def _candidate_ks(window_ks, d: int, n: int) -> list[int]:
    least = min_neighbours(d)
    ks = [int(k) for k in window_ks if least <= k <= n - 1]
    default = default_k(d, n)
    if ks and window_ks[0] <= default <= window_ks[-1] and default not in ks:
        ks.append(default)
    return sorted(ks)


def scale_limit(fit: Curvature) -> float:
    """The largest bending angle across a neighbourhood at which this fit's reading holds."""
    return SCALE_LIMIT if fit.fit == QUARTIC_FIT else QUADRATIC_SCALE_LIMIT


def choose_fit(fits: dict[int, Curvature], curved: bool = True) -> int:
    """The K whose fit to keep (item 3 of the module docstring).

    In a window that bends, in this order:
    1. the largest signal_to_noise among the measured quadratic fits whose bias the quadratic
       model's own rule bounds (bending angle at most `QUADRATIC_SCALE_LIMIT`): where noise makes
       the fit drop its radial-quartic terms at small K, the quartic fit at larger K was measured
       biased upward by 8-17 % under 2 % noise (Clifford torus, S^3, ellipsoid in R^50-512) while
       these read within 2 %;
    2. else, among the measured fits within their `scale_limit` (clean points: the quartic fit at
       every K), the narrowest interval relative to its value (its bias allowance, the difference
       between the quadratic and the quartic fit, leads there);
    3. else the largest signal_to_noise of all (the guard will refuse it).
    In a flat window: the smallest upper bound."""
    if not curved:
        return min(fits, key=lambda k: (np.nan_to_num(fits[k].upper_bound(), nan=np.inf), k))
    measured = [k for k, f in fits.items() if f.status == "measured"]
    quadratic = [k for k in measured if fits[k].fit != QUARTIC_FIT
                 and fits[k].curvature_sff_scaled <= QUADRATIC_SCALE_LIMIT]  # fmt: skip
    if quadratic:
        return max(quadratic, key=lambda k: (fits[k].signal_to_noise, -k))
    within = [k for k in measured if fits[k].curvature_sff_scaled <= scale_limit(fits[k])]
    if within:
        return min(within, key=lambda k: (_relative_width(fits[k]), k))
    return max(fits, key=lambda k: (np.nan_to_num(fits[k].signal_to_noise, nan=-np.inf), -k))


def _relative_width(fit: Curvature) -> float:
    low, high = fit.intervals.get("curvature_sff", (np.nan, np.nan))
    width = (high - low) / (2 * fit.curvature_sff) if fit.curvature_sff > 0 else np.nan
    return float(width) if np.isfinite(width) else np.inf


def _guard(fit: Curvature, curved: bool, bracket: ResidualBracket | None) -> tuple[str, str, bool]:
    """(status, reason, flat) of the kept fit (item 4 of the module docstring)."""
    low, high = fit.intervals.get("curvature_sff", (np.nan, np.nan))
    reaches_zero = not np.isfinite(fit.curvature_sff) or not np.isfinite(low) or low <= 0
    if not curved and reaches_zero:
        return "measured", "", True
    if fit.status != "measured":
        return fit.status, fit.reason, False
    if fit.curvature_sff_scaled > scale_limit(fit):
        return (
            "cannot_tell",
            (
                f"the neighbourhood reaches the curvature radius (bending angle curvature_sff_scaled "
                f"{fit.curvature_sff_scaled:.2f} > {scale_limit(fit)} for the {fit.fit} fit): "
                "its bias is no longer bounded at this scale"
            ),
            False,
        )
    if curved and reaches_zero:
        return "cannot_tell", "the window shows bending but the interval reaches 0", False
    if bracket is not None and bracket.high > 0:
        value = fit.curvature_sff
        if not bracket.low / (1 + BRACKET_TOLERANCE) <= value <= (1 + BRACKET_TOLERANCE) * bracket.high:
            return "cannot_tell", (
                f"the quadratic fit ({value:.3g}) disagrees with the growth of the tangent-plane residual, "
                f"which allows [{bracket.low:.3g}, {bracket.high:.3g}]"
            ), False  # fmt: skip
    return "measured", "", False


def null_statistic(
    d: int, k: int, use_denoise: bool, n_centres: int | None, seed: int, device, metric: str,
    windowed: bool = False,
):  # fmt: skip
    """The statistic the null recomputes: the same fit (d, K, denoising, centres) and metric; for
    curvature_sff its signed form (`Curvature.curvature_sff_signed`), defined on every cloud.

    With `windowed`, the whole estimator: a cloud whose multiscale profile has no manifold scale
    window of dimension d gives no reading (-inf, below every observed value). A Gaussian with a
    thin manifold's covariance is a thick pancake, and a quadratic fit of ball-shaped neighbourhoods
    across its thickness reads an apparent bending of the same order as the manifold's (the density
    falls towards the pancake's faces: a spherical cap of the unit sphere in R^20 read 1.0, the
    Gaussians with its covariance 1.3-1.7); what tells them apart is that the pancake has no scale
    at which it looks like a 2-manifold, so that is part of the statistic."""

    def statistic(points: np.ndarray) -> float:
        work, denoised = working_points(points, use_denoise)
        if windowed:
            noise = denoised.noise_variance if denoised is not None else 0.0
            profile = multiscale_profile(work, seed=seed, device=device, noise_variance=noise, n_anchors=100,
                                         ambient_dim=np.asarray(points).shape[1])  # fmt: skip
            if profile.window is None or profile.window.dim != d:
                return float("-inf")
        if d >= work.shape[1]:
            work = np.asarray(points, dtype=np.float64)
        try:
            fit = curvature(work, d, k=k, n_bootstrap=1, seed=seed, device=device, n_centres=n_centres)
        except InputError:
            return float("nan")
        return fit.curvature_sff_signed if metric == "curvature_sff" else float(fit.metrics()[metric])

    return statistic


def windowed_curvature(
    points,
    *,
    labels=None,
    use_denoise: bool = True,
    n_bootstrap: int = 200,
    n_null: int = 19,
    seed: int = 0,
    device="cpu",
    max_memory: int | None = None,
    n_centres: int | None = None,
    progress: bool = False,
) -> WindowedCurvature:
    """Curvature inside the manifold scale window of `points` (N, D), with guards, the residual
    cross-check and the matched null (module docstring). `labels` add the class agreement to the
    profile and the class-conditional null; n_null = 0 computes no null; n_centres: the fits run
    at a seeded sample of this many points (neighbours from all)."""
    x = np.asarray(as_points(points, min_points=4), dtype=np.float64)
    n = len(x)
    work, denoised = working_points(x, use_denoise)
    noise = denoised.noise_variance if denoised is not None else 0.0
    profile = multiscale_profile(work, labels=labels, seed=seed, device=device, noise_variance=noise,
                                 ambient_dim=x.shape[1])  # fmt: skip
    empty = WindowedCurvature(NO_MANIFOLD_SCALE, profile.reason, profile, None, {}, False, None, denoised,
                              None, None)  # fmt: skip
    if profile.window is None:
        return empty
    window = profile.window
    d = window.dim
    ks = _candidate_ks(window.ks, d, n)
    if not ks:
        reason = (
            f"the window (K = {window.ks[0]}-{window.ks[-1]}) holds no K the fit in dimension {d} allows "
            f"(at least {min_neighbours(d)} neighbours)"
        )
        return replace(empty, status="not_measurable", reason=reason)
    if d >= work.shape[1]:  # the window fills the kept span: flat; the raw points bound the bending
        work, denoised = x, None
    graph = nearest_neighbours(work, max(ks), device=device)
    fits = {}
    for k in ks:
        try:
            fits[k] = curvature(work, d, k=k, graph=graph, n_bootstrap=n_bootstrap, seed=seed, device=device,
                                max_memory=max_memory, n_centres=n_centres, progress=progress)  # fmt: skip
        except InputError:
            continue
    if not fits:
        return replace(
            empty, status="not_measurable", reason="every neighbourhood of the window is degenerate"
        )
    chosen = choose_fit(fits, window.curved)
    fit = fits[chosen]
    scales = [k for k in window.ks if k <= chosen] or [chosen]
    bracket = residual_bracket(work, graph.indices, scales, d, seed=seed)
    status, reason, flat = _guard(fit, window.curved, bracket)
    null = classes = None
    if n_null and status == "measured":
        centres = min(n, NULL_CENTRES)
        statistic = null_statistic(
            d, chosen, use_denoise, centres, seed, device, "curvature_sff", windowed=True
        )
        observed = statistic(x)
        null = matched_null(x, statistic, observed=observed, n_draws=n_null, seed=seed)
        if labels is not None and len(np.unique(labels)) > 1:
            classes = matched_null(
                x, statistic, observed=observed, n_draws=n_null, seed=seed, labels=np.asarray(labels)
            )
    return WindowedCurvature(status, reason, profile, fit, fits, flat, bracket, denoised, null, classes)
