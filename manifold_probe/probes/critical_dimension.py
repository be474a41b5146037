"""Reading the critical cutting dimension d* off a success curve (Fort et al. 2022).

A random affine d-plane meets a class manifold of dimension n in D-dimensional input space
roughly when d + n >= D (Gordon's escape through a mesh), so the fraction of planes that
reach the class ("hits") rises from 0 to 1 around d* and the class-manifold dimension is
D - d*. This module works on arrays only: per cutting dimension d, how many planes were
tried and how many hit.

- Fitted d*: least squares fit of the reference's sigmoid in log d,
      p(d) = a + b / (1 + exp(-(ln d - ln c) / s)),
  read where the fit crosses 0.5:
      ln d* = ln c + s ln((0.5 - a) / (a + b - 0.5))      (needs a < 0.5 < a + b).
- Empirical d*: the first upward crossing of 0.5 by the measured hit fractions,
  interpolated linearly in ln d between the two dims that bracket it.
- Interval: bootstrap over planes (resampling the planes of each d with replacement,
  which draws hits* ~ Binomial(planes, hits / planes)), refitting each replicate; the
  interval is the replicates' central `confidence` range. Where the curve jumps from 0 to 1
  between two swept dims the replicates cannot vary, and the interval is those two dims.

A curve that does not cross 0.5 inside the swept range gives no number: `critical_dim` is
None and `status` says on which side d* lies ("below_range": already >= 0.5 at the
smallest d; "above_range": never reaches 0.5). Interval ends beyond the range are None too.

Reference: S. Fort, E. D. Cubuk, S. Ganguli, S. S. Schoenholz, "What does a deep neural
network confidently perceive? The effective dimension of high certainty class manifolds
and their low confidence boundaries", arXiv:2210.05546 (2022).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from scipy.special import expit as _logistic

from ..errors import InputError

CRITICAL_LEVEL = 0.5
"""d* is where the fraction of planes that hit crosses this level."""

_MIN_WIDTH, _MAX_WIDTH = 0.01, 10.0  # bounds on the sigmoid's width s, in units of ln d
_RANGE_SLACK = 1e-6  # a fitted crossing this close (relative) to an end of the range is inside
_MIN_DIMS_FREE_ASYMPTOTES = 6  # fewer swept dims: fit only c and s, with a = 0 and b = 1


@dataclass(frozen=True)
class SuccessCurve:
    """The fitted p(d) = lower + height / (1 + exp(-(ln d - ln centre) / width))."""

    lower: float
    height: float
    centre: float
    width: float

    def __call__(self, dims) -> np.ndarray:
        z = (np.log(np.asarray(dims, dtype=float)) - math.log(self.centre)) / self.width
        return self.lower + self.height / (1.0 + np.exp(-z))

    def crossing(self, level: float = CRITICAL_LEVEL) -> float | None:
        """The d where the curve equals `level`, or None when it never does (any d > 0)."""
        top = self.lower + self.height
        if not self.lower < level < top:
            return None
        return math.exp(math.log(self.centre) + self.width * math.log((level - self.lower) / (top - level)))


@dataclass(frozen=True)
class CriticalDimension:
    """d* of one success curve, its bootstrap interval and the class-manifold dimension D - d*.

    `status` is "crossed" (critical_dim is a number), "below_range" (d* < the smallest
    swept d), "above_range" (d* > the largest swept d) or "fit_failed"; `measure_class_manifold`
    sets "unconverged" when planes stopped at the step cap could change that reading.
    """

    input_dim: int
    critical_dim: float | None
    status: str
    interval: tuple[float | None, float | None]
    empirical_dim: float | None
    curve: SuccessCurve | None
    confidence: float
    n_bootstrap: int

    @property
    def manifold_dim(self) -> float | None:
        return None if self.critical_dim is None else self.input_dim - self.critical_dim

    @property
    def manifold_dim_interval(self) -> tuple[float | None, float | None]:
        low, high = self.interval
        return (
            None if high is None else self.input_dim - high,
            None if low is None else self.input_dim - low,
        )


def default_dims(input_dim: int, count: int = 14) -> list[int]:
    """About `count` log-spaced whole cutting dimensions from 1 to `input_dim` (both included).

    Rounding geomspace(1, D, count) repeats small values; each repeat is bumped to the next
    free integer, so the grid is strictly increasing (all of 1..D when D <= count).
    """
    if int(input_dim) != input_dim or input_dim < 1:
        raise InputError(f"the input dimension must be a positive whole number, got {input_dim}.")
    if int(count) != count or count < 2:
        raise InputError(f"the number of cutting dimensions must be at least 2, got {count}.")
    dims: list[int] = []
    for value in np.round(np.geomspace(1, input_dim, int(count))).astype(int):
        nxt = max(int(value), dims[-1] + 1 if dims else 1)
        if nxt <= input_dim:
            dims.append(nxt)
    return dims


def empirical_crossing(dims, fractions, level: float = CRITICAL_LEVEL) -> float | None:
    """The first d where the hit fraction rises through `level`, log-linearly interpolated.

    None when the first fraction is already >= level or no fraction reaches it.
    """
    dims = np.asarray(dims, dtype=float)
    fractions = np.asarray(fractions, dtype=float)
    if fractions[0] >= level:
        return None
    for i in range(len(dims) - 1):
        f0, f1 = fractions[i], fractions[i + 1]
        if f0 < level <= f1:
            t = (level - f0) / (f1 - f0)
            return float(math.exp((1 - t) * math.log(dims[i]) + t * math.log(dims[i + 1])))
    return None


def fit_success_curve(dims, hits, planes) -> SuccessCurve | None:
    """Least squares fit of the sigmoid in ln d to the hit fractions, weighted by plane count.

    Bounds: 0 <= a <= 1, 0 <= b <= 1, ln c within one unit of the swept ln d range,
    0.01 <= s <= 10. With fewer than `_MIN_DIMS_FREE_ASYMPTOTES` dims the asymptotes are
    fixed at a = 0, b = 1 (four parameters would interpolate noise). The fit starts at the
    empirical crossing (or the middle of the range) so a step-like curve keeps its centre
    between the bracketing dims. None if the fit raises.
    """
    dims, hits, planes = _as_curve(dims, hits, planes)
    log_d = np.log(dims)
    fractions = hits / planes
    weights = np.sqrt(planes)
    lo, hi = log_d[0] - 1.0, log_d[-1] + 1.0
    start_cross = empirical_crossing(dims, fractions)
    log_c0 = math.log(start_cross) if start_cross is not None else 0.5 * (log_d[0] + log_d[-1])
    a0 = float(np.clip(fractions.min(), 0.01, 0.98))
    b0 = float(np.clip(fractions.max() - a0, 0.01, 0.99))
    s0 = float(np.clip((log_d[-1] - log_d[0]) / 10.0, 0.05, 1.0)) if len(dims) > 1 else 0.5
    full = np.array([a0, b0, float(np.clip(log_c0, lo, hi)), s0])
    lower = np.array([0.0, 0.0, lo, _MIN_WIDTH])
    upper = np.array([1.0, 1.0, hi, _MAX_WIDTH])
    free = np.arange(4)
    if len(dims) < _MIN_DIMS_FREE_ASYMPTOTES:
        full[:2], free = (0.0, 1.0), np.array([2, 3])

    def parameters(values):
        params = full.copy()
        params[free] = values
        return params

    def residuals(values):
        a, b, log_c, s = parameters(values)
        return (a + b * _logistic((log_d - log_c) / s) - fractions) * weights

    def jacobian(values):
        a, b, log_c, s = parameters(values)
        sig = _logistic((log_d - log_c) / s)
        slope = b * sig * (1.0 - sig)
        columns = np.stack([np.ones_like(log_d), sig, -slope / s, -slope * (log_d - log_c) / s**2], axis=1)
        return columns[:, free] * weights[:, None]

    try:
        fit = least_squares(
            residuals, full[free], jac=jacobian, bounds=(lower[free], upper[free]), max_nfev=200
        )
    except (ValueError, np.linalg.LinAlgError):
        return None
    a, b, log_c, s = (float(v) for v in parameters(fit.x))
    return SuccessCurve(lower=a, height=b, centre=math.exp(log_c), width=s)


def critical_dimension(
    dims,
    hits,
    planes,
    *,
    input_dim: int,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> CriticalDimension:
    """d* from per-d hit counts: fitted sigmoid crossing, empirical crossing, bootstrap interval.

    `dims` strictly increasing cutting dimensions (each <= input_dim), `hits[i]` of
    `planes[i]` planes reached the class at dims[i]. Only a crossing inside
    [dims[0], dims[-1]] is reported as a number (see the module docstring).
    """
    dims, hits, planes = _as_curve(dims, hits, planes)
    if dims[-1] > input_dim:
        raise InputError(f"cutting dimension {int(dims[-1])} exceeds the input dimension {input_dim}.")
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must lie strictly between 0 and 1, got {confidence}.")
    n_bootstrap = int(n_bootstrap)
    if n_bootstrap < 0:
        raise InputError(f"n_bootstrap must be non-negative, got {n_bootstrap}.")

    fractions = hits / planes
    curve, log_star, status = _fitted_crossing(dims, hits, planes)
    rng = np.random.default_rng(seed)
    fitted: dict[tuple[float, ...], float] = {}  # replicates repeat often with few planes
    replicates = []
    for _ in range(n_bootstrap):
        resampled = rng.binomial(planes.astype(np.int64), fractions).astype(float)
        key = tuple(resampled)
        if key not in fitted:
            fitted[key] = _fitted_crossing(dims, resampled, planes)[1]
        replicates.append(fitted[key])
    interval = _central_interval(np.array(replicates), confidence)
    empirical = empirical_crossing(dims, fractions)
    if empirical is not None:
        interval = _widen_step_to_bracket(interval, dims, fractions, empirical)
    return CriticalDimension(
        input_dim=int(input_dim),
        # clamped again: exp(log(d)) can round just past the end of the swept range
        critical_dim=None if status != "crossed" else float(np.clip(math.exp(log_star), dims[0], dims[-1])),
        status=status,
        interval=interval,
        empirical_dim=empirical,
        curve=curve,
        confidence=float(confidence),
        n_bootstrap=n_bootstrap,
    )


def _fitted_crossing(dims, hits, planes) -> tuple[SuccessCurve | None, float, str]:
    """(curve, ln d*, status); ln d* is -inf below the swept range, +inf above, nan on failure."""
    fractions = hits / planes
    if fractions.max() < CRITICAL_LEVEL:
        return None, math.inf, "above_range"
    if fractions[0] >= CRITICAL_LEVEL:
        return None, -math.inf, "below_range"
    curve = fit_success_curve(dims, hits, planes)
    if curve is None:
        return None, math.nan, "fit_failed"
    d_star = curve.crossing()
    if d_star is None:  # the fitted curve stays on one side of 0.5
        above = curve.lower >= CRITICAL_LEVEL
        return curve, (-math.inf if above else math.inf), ("below_range" if above else "above_range")
    if d_star < dims[0] * (1 - _RANGE_SLACK):
        return curve, -math.inf, "below_range"
    if d_star > dims[-1] * (1 + _RANGE_SLACK):
        return curve, math.inf, "above_range"
    return curve, math.log(min(max(d_star, dims[0]), dims[-1])), "crossed"


def _central_interval(log_stars: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    """Order statistics of the replicates' ln d* (failed fits dropped); infinite ends become None."""
    values = np.sort(log_stars[~np.isnan(log_stars)])
    if len(values) == 0:
        return (None, None)
    tail = (1.0 - confidence) / 2.0
    low = values[int(math.floor(tail * (len(values) - 1)))]
    high = values[int(math.ceil((1.0 - tail) * (len(values) - 1)))]
    return (
        float(math.exp(low)) if math.isfinite(low) else None,
        float(math.exp(high)) if math.isfinite(high) else None,
    )


def _widen_step_to_bracket(interval, dims, fractions, empirical: float):
    """Where the curve steps from 0 to 1 between two swept dims, the interval covers both.

    Every plane missing at the lower dim and hitting at the upper one leaves the bootstrap
    nothing to resample (a zero-width interval), while the data only place d* somewhere
    between the two dims.
    """
    above = int(np.searchsorted(dims, empirical, side="left"))
    below = max(above - 1, 0)
    if not (fractions[below] == 0.0 and fractions[above] == 1.0):
        return interval
    low, high = interval
    return (
        None if low is None else min(low, float(dims[below])),
        None if high is None else max(high, float(dims[above])),
    )


def _as_curve(dims, hits, planes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dims = np.asarray(dims, dtype=float).reshape(-1)
    hits = np.asarray(hits, dtype=float).reshape(-1)
    planes = np.asarray(planes, dtype=float).reshape(-1)
    if len(dims) == 0 or not len(dims) == len(hits) == len(planes):
        raise InputError(
            f"dims, hits and planes must be non-empty and of one length, got "
            f"{len(dims)}, {len(hits)} and {len(planes)}."
        )
    if np.any(dims < 1) or np.any(dims != np.round(dims)) or np.any(np.diff(dims) <= 0):
        raise InputError("cutting dimensions must be positive whole numbers in increasing order.")
    if np.any(planes < 1) or np.any(hits < 0) or np.any(hits > planes):
        raise InputError("every cutting dimension needs at least one plane and 0 <= hits <= planes.")
    return dims, hits, planes
