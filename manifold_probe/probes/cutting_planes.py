"""Class-manifold dimension by random affine cutting planes (Fort et al. 2022).

A class manifold (CM) is the region of input space that the model assigns to a target
class with high confidence. A random affine d-plane through a point x0 outside it,

    x(theta) = x0 + theta M,   M (d x D) random, theta in R^d,

meets a set of effective dimension n in D dimensions when roughly d + n >= D (Gordon's
escape through a mesh), so the critical cutting dimension d* at which half the planes
reach the class gives the CM dimension D - d*.

Per plane (all choices seeded):
- x0: a pool point of a class outside the target set (`offset="data"`), or Gaussian noise
  with the pool's per-feature mean and standard deviation (`offset="noise"`).
- M: i.i.d. N(0, 1) rows scaled to unit length, as in the reference (only the span matters
  for whether the plane meets the class); `orthonormal=True` orthonormalises the same
  Gaussian rows by QR (same span).
- theta starts at 0 and Adam (lr 0.05, betas 0.9/0.999, eps 1e-8) minimises the
  cross-entropy to the target: -log p_c for one class c, or for a set Y the soft target
  1/|Y| each, -(1/|Y|) sum_{y in Y} log p_y (the low-confidence boundary between them).
- The plane's score at a step is |Y| min_{y in Y} p_y: p_c for one class, and for a set Y
  it is 1 exactly at the soft target. The recorded `max_prob` is the maximum score over
  the evaluated steps; the plane is a hit when max_prob >= 0.5 (for one class: p_c >= 0.5
  somewhere on the trajectory; for a set: every class of Y reaches at least half its
  share 1/|Y|).
- A plane runs until it converges: its best loss has not improved by more than `tol` times
  max(|best loss|, 1) (default 1e-6, never below 8 float epsilons; `improves`) for `patience`
  steps (its probability has stopped rising; with 1e-4 a line creeping towards a slab at lr-
  sized steps passed for converged). A stopped plane is frozen (removed from the batch). `steps`
  (default 3000) only caps the run: a plane still improving at the cap is `unconverged` unless
  it already hit (its maximum can only grow, so a hit is final).
  With `stop_at_hit`, a plane also stops at its first hit: no reading changes (a hit is
  final), only its recorded `max_prob` is then the first score >= 0.5 rather than the
  trajectory's maximum, and a plane that hits early costs no more steps.
  With a fixed budget of 300 steps, lines through a codimension-1 slab in R^64 stopped at
  p <= 0.49 and the sweep read d* = 1.98 "crossed" where the truth is below the range;
  the per-dimension count of unconverged planes is recorded, and the reading's status is
  `unconverged` (instead of `crossed`, `below_range` or `above_range`) when counting those
  planes as hits would change the status or move d* outside its interval.
- Ensembles: p is the members' averaged probability, used by the loss and the score
  alike (the intersection of the members' class manifolds).

Many planes are optimised together: `batch` planes per forward pass, planes of different
dimensions padded with zero rows in M (their theta coordinates get exactly zero gradient
and stay at zero). The loss is the SUM over planes, so each plane's gradient is its own
and Adam's per-element update keeps planes independent: a plane's trajectory does not
depend on its batch mates (up to floating-point summation order in the model's kernels).
Adam is written out here, not torch.optim.Adam, so that stopped planes can be dropped
from the batch along with their moment estimates.

The models run in eval mode (the reference used batch statistics) with their parameters'
requires_grad switched off during the probe; both are restored afterwards, as is the
models' device. Inputs are not clipped to the data range (the reference does not clip).

Reference: S. Fort, E. D. Cubuk, S. Ganguli, S. S. Schoenholz, "What does a deep neural
network confidently perceive? The effective dimension of high certainty class manifolds
and their low confidence boundaries", arXiv:2210.05546 (2022).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ..device import resolve_device
from ..errors import InputError
from ..progress import track
from ..validation import as_labels, as_pool, as_target_classes, check_count, check_dims, check_positive
from .critical_dimension import CriticalDimension, critical_dimension, default_dims

HIT_LEVEL = 0.5
"""A plane hits when its maximum target score reaches this level."""

BASIS_BUDGET = 2**26
"""At most this many basis entries (planes x padded dim x D) in one forward batch (256 MiB)."""

_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8  # Adam's defaults, as in torch.optim.Adam


OFFSETS = ("data", "noise")


@dataclass(frozen=True)
class CuttingPlaneOptions:
    """How a class manifold is probed: the cutting dimensions (`dims`; None: `n_dims`
    log-spaced ones from 1 to D, `default_dims`), `planes` per dimension, and the optimiser:
    at most `steps` Adam steps at rate `lr`, stopping after `patience` steps without a
    relative improvement of the loss by `tol` (floored at a few float epsilons: `improves`),
    `batch` planes per forward pass, `orthonormal` bases, `stop_at_hit` (stop a plane at its
    first hit), the planes' `offset` (`data`: points of other classes; `noise`: Gaussian with
    the data's statistics); `n_bootstrap` and `confidence` for the interval of d*.
    Checked once, here."""

    dims: tuple[int, ...] | None = None
    n_dims: int = 14
    planes: int = 5
    steps: int = 3000
    lr: float = 0.05
    patience: int = 20
    tol: float = 1e-6
    batch: int = 512
    orthonormal: bool = False
    stop_at_hit: bool = False
    offset: str = "data"
    n_bootstrap: int = 200
    confidence: float = 0.95

    def __post_init__(self) -> None:
        for name in ("planes", "steps", "patience", "batch"):
            check_count(getattr(self, name), name=name, minimum=1)
        check_count(self.n_dims, name="n_dims", minimum=2)
        check_count(self.n_bootstrap, name="n_bootstrap")
        check_positive(self.lr, name="lr")
        check_positive(self.tol, name="tol", allow_zero=True)
        if self.offset not in OFFSETS:
            raise InputError(f"unknown offset {self.offset!r}: use data or noise.", parameter="offset")
        if not 0.0 < self.confidence < 1.0:
            raise InputError(
                f"must lie strictly between 0 and 1, got {self.confidence}.", parameter="confidence"
            )
        if self.dims is not None:
            object.__setattr__(self, "dims", tuple(check_dims(self.dims)))

    def dims_for(self, input_dim: int) -> list[int]:
        """The cutting dimensions for inputs of `input_dim` features."""
        return (
            check_dims(self.dims, input_dim)
            if self.dims is not None
            else default_dims(input_dim, self.n_dims)
        )


@dataclass(frozen=True)
class CuttingPlane:
    """One random affine plane: its dimension, offset x0 (flat, length D) and basis seed."""

    dim: int
    offset: np.ndarray
    basis_seed: int


@dataclass(frozen=True)
class PlaneOutcome:
    """Per plane (in the order given): the maximum target score, the steps evaluated, and
    whether its optimisation converged (loss plateau) or hit before the step cap."""

    max_probs: np.ndarray
    steps: np.ndarray
    converged: np.ndarray

    @property
    def hits(self) -> np.ndarray:
        return self.max_probs >= HIT_LEVEL


@dataclass(frozen=True)
class DimensionSuccess:
    """The planes of one cutting dimension: how many hit, and each plane's maximum score."""

    dim: int
    planes: int
    hits: int
    mean_max_prob: float
    max_probs: tuple[float, ...]
    steps: tuple[int, ...]
    unconverged: int = 0

    @property
    def hit_fraction(self) -> float:
        return self.hits / self.planes


@dataclass(frozen=True)
class ClassManifold:
    """The success curve of one target (a class or a set of classes) and its reading."""

    target_classes: tuple[int, ...]
    input_dim: int
    success: tuple[DimensionSuccess, ...]
    critical: CriticalDimension

    @property
    def critical_dim(self) -> float | None:
        return self.critical.critical_dim

    @property
    def manifold_dim(self) -> float | None:
        return self.critical.manifold_dim

    def to_dict(self) -> dict[str, Any]:
        """The `classes[]` entry of the result schema (docs/methods.md#cutting-planes)."""
        curve = self.critical.curve
        targets = list(self.target_classes)
        return {
            "class": targets[0] if len(targets) == 1 else targets,
            "input_dim": self.input_dim,
            "critical_dim": self.critical.critical_dim,
            "critical_dim_interval": list(self.critical.interval),
            "critical_dim_empirical": self.critical.empirical_dim,
            "critical_dim_status": self.critical.status,
            "manifold_dim": self.critical.manifold_dim,
            "manifold_dim_interval": list(self.critical.manifold_dim_interval),
            "confidence": self.critical.confidence,
            "fit": None
            if curve is None
            else {"lower": curve.lower, "height": curve.height, "centre": curve.centre, "width": curve.width},
            "unconverged_planes": sum(s.unconverged for s in self.success),
            "success": [
                {
                    "dim": s.dim,
                    "planes": s.planes,
                    "hits": s.hits,
                    "unconverged": s.unconverged,
                    "mean_max_prob": s.mean_max_prob,
                    "max_probs": list(s.max_probs),
                }
                for s in self.success
            ],
        }


def measure_class_manifold(
    models: nn.Module | Sequence[nn.Module],
    pool_inputs,
    pool_labels,
    target_classes: int | Sequence[int],
    options: CuttingPlaneOptions = CuttingPlaneOptions(),
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> ClassManifold:
    """Sweep the cutting dimensions of `options` with `options.planes` planes each; read d* and D - d*.

    `pool_inputs` (P, *input_shape) supplies the offsets (points of classes outside
    `target_classes`) or, with `offset="noise"`, their per-feature mean and std. The
    models take a batch of inputs of that shape and return logits (batch, classes).
    See the module docstring for the procedure and `critical_dimension` for the reading.
    """
    models = _as_models(models)
    pool = as_pool(pool_inputs)
    labels = as_labels(pool_labels, pool.shape[0], name="pool_labels")
    targets = as_target_classes(target_classes)
    input_shape = tuple(pool.shape[1:])
    input_dim = int(np.prod(input_shape))
    dims = options.dims_for(input_dim)
    planes, n_bootstrap, confidence = options.planes, options.n_bootstrap, options.confidence
    cutting = draw_planes(pool, labels, targets, dims, planes, offset=options.offset, seed=seed)
    outcome = optimise_planes(
        models,
        cutting,
        input_shape=input_shape,
        target_classes=targets,
        steps=options.steps,
        lr=options.lr,
        patience=options.patience,
        tol=options.tol,
        batch=options.batch,
        orthonormal=options.orthonormal,
        stop_at_hit=options.stop_at_hit,
        device=device,
        progress=progress,
    )
    success = []
    for i, dim in enumerate(dims):
        rows = slice(i * planes, (i + 1) * planes)
        max_probs = outcome.max_probs[rows]
        success.append(
            DimensionSuccess(
                dim=dim,
                planes=planes,
                hits=int(np.sum(max_probs >= HIT_LEVEL)),
                mean_max_prob=float(np.mean(max_probs)),
                max_probs=tuple(float(p) for p in max_probs),
                steps=tuple(int(s) for s in outcome.steps[rows]),
                unconverged=int(np.sum(~outcome.converged[rows] & (max_probs < HIT_LEVEL))),
            )
        )
    critical = critical_dimension(
        dims,
        [s.hits for s in success],
        [s.planes for s in success],
        input_dim=input_dim,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
    )
    if any(s.unconverged for s in success):
        critical = _unless_unconverged(critical, dims, success, n_bootstrap, confidence, seed)
    return ClassManifold(
        target_classes=targets, input_dim=input_dim, success=tuple(success), critical=critical
    )


def draw_planes(
    pool: np.ndarray,
    labels: np.ndarray,
    target_classes: Sequence[int],
    dims: Sequence[int],
    planes: int,
    *,
    offset: str = "data",
    seed: int = 0,
) -> list[CuttingPlane]:
    """`planes` planes per dimension in `dims` (dimension-major order), seeded.

    Offsets are pool points whose label is outside `target_classes` (offset="data") or
    Gaussian noise with the pool's per-feature mean and std (offset="noise").
    """
    flat = np.asarray(pool, dtype=np.float32).reshape(len(pool), -1)
    rng = np.random.default_rng(seed)
    if offset == "data":
        candidates = np.flatnonzero(~np.isin(labels, list(target_classes)))
        if len(candidates) == 0:
            raise InputError(
                "the data hold no points outside the target classes to start planes from; "
                "give data of other classes or use offset 'noise'."
            )
    elif offset == "noise":
        mean, std = flat.mean(axis=0, dtype=np.float64), flat.std(axis=0, dtype=np.float64)
    else:
        raise InputError(f"unknown offset {offset!r}: use 'data' or 'noise'.")
    drawn = []
    for dim in dims:
        for _ in range(planes):
            if offset == "data":
                x0 = flat[candidates[rng.integers(len(candidates))]]
            else:
                x0 = (mean + std * rng.standard_normal(flat.shape[1])).astype(np.float32)
            basis_seed = int(rng.integers(2**62))
            drawn.append(CuttingPlane(dim=int(dim), offset=x0, basis_seed=basis_seed))
    return drawn


def plane_basis(plane: CuttingPlane, input_dim: int, *, orthonormal: bool = False) -> torch.Tensor:
    """The plane's basis M (dim x input_dim), float32: Gaussian rows of unit length, or their
    QR orthonormalisation (same span). Depends only on the plane's seed, never on batching."""
    generator = torch.Generator().manual_seed(plane.basis_seed)
    rows = torch.randn(plane.dim, input_dim, generator=generator, dtype=torch.float64)
    if orthonormal:
        q, _ = torch.linalg.qr(rows.T)
        return q.T.contiguous().float()
    return (rows / rows.norm(dim=1, keepdim=True)).float()


def optimise_planes(
    models: nn.Module | Sequence[nn.Module],
    planes: Sequence[CuttingPlane],
    *,
    input_shape: Sequence[int],
    target_classes: int | Sequence[int],
    steps: int = 3000,
    lr: float = 0.05,
    patience: int = 20,
    tol: float = 1e-6,
    batch: int = 512,
    orthonormal: bool = False,
    stop_at_hit: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> PlaneOutcome:
    """Optimise every plane's theta with Adam, `batch` planes per forward pass.

    Returns each plane's maximum target score over its trajectory and the number of steps
    it ran (see the module docstring for the loss, the score and the early stop).
    """
    models = _as_models(models)
    targets = as_target_classes(target_classes)
    steps = check_positive(steps, name="steps", integer=True)
    patience = check_positive(patience, name="patience", integer=True)
    batch = check_positive(batch, name="batch", integer=True)
    lr = check_positive(lr, name="lr")
    tol = check_positive(tol, name="tol", allow_zero=True)
    input_shape = tuple(int(s) for s in input_shape)
    input_dim = int(np.prod(input_shape))
    device = resolve_device(device)
    if not planes or any(p.offset.size != input_dim or not 1 <= p.dim <= input_dim for p in planes):
        raise InputError(
            f"give at least one plane, each with an offset of {input_dim} values and a dimension "
            f"from 1 to {input_dim} (the input shape {input_shape})."
        )
    max_probs = np.zeros(len(planes))
    steps_run = np.zeros(len(planes), dtype=np.int64)
    converged = np.zeros(len(planes), dtype=bool)
    chunks = _chunks([p.dim for p in planes], input_dim, batch)
    with _probing(models, device) as dtype:
        _check_outputs(models, input_shape, targets, device, dtype)
        for number, (start, stop) in enumerate(chunks, start=1):
            chunk = planes[start:stop]
            width = max(p.dim for p in chunk)
            bases = torch.zeros(len(chunk), width, input_dim, dtype=dtype)
            for i, plane in enumerate(chunk):
                bases[i, : plane.dim] = plane_basis(plane, input_dim, orthonormal=orthonormal)
            offsets = torch.as_tensor(np.stack([p.offset for p in chunk]), dtype=dtype)
            label = f"cutting planes {start + 1}-{stop} of {len(planes)} (batch {number}/{len(chunks)})"
            schedule = track(range(steps), description=label, enabled=progress)
            try:
                best, ran, settled = _optimise_batch(
                    models,
                    offsets.to(device),
                    bases.to(device),
                    input_shape,
                    torch.as_tensor(targets, device=device),
                    schedule,
                    lr,
                    patience,
                    tol,
                    stop_at_hit,
                )
            finally:
                schedule.close()  # clears the bar when the batch stops early
            max_probs[start:stop] = best
            steps_run[start:stop] = ran
            converged[start:stop] = settled
    return PlaneOutcome(max_probs=max_probs, steps=steps_run, converged=converged)


def _optimise_batch(models, offsets, bases, input_shape, targets, schedule, lr, patience, tol, stop_at_hit):
    """Adam on theta (B x width) for one batch of planes; stopped planes leave the batch.

    Returns per plane: the maximum score, the steps run, and whether it stopped on a plateau
    (or hit) rather than at the end of `schedule`. With `stop_at_hit` a plane also stops at
    its first hit."""
    n = offsets.shape[0]
    dtype, device = offsets.dtype, offsets.device
    best_score = np.zeros(n)
    steps_run = np.zeros(n, dtype=np.int64)
    converged = np.zeros(n, dtype=bool)
    alive = torch.arange(n, device=device)
    theta = torch.zeros(n, bases.shape[1], dtype=dtype, device=device)
    first_moment, second_moment = torch.zeros_like(theta), torch.zeros_like(theta)
    best_loss = torch.full((n,), math.inf, dtype=dtype, device=device)
    since_best = torch.zeros(n, dtype=torch.long, device=device)
    max_score = torch.zeros(n, dtype=dtype, device=device)
    t = 0
    for t in schedule:
        theta.requires_grad_(True)
        x = offsets + torch.bmm(theta.unsqueeze(1), bases).squeeze(1)
        log_p = _ensemble_log_probs(models, x.view(-1, *input_shape))[:, targets]
        loss = -log_p.mean(dim=1)
        (grad,) = torch.autograd.grad(loss.sum(), theta)
        with torch.no_grad():
            theta = theta.detach()
            score = len(targets) * log_p.detach().min(dim=1).values.exp()
            max_score = torch.maximum(max_score, score)
            improved = improves(loss.detach(), best_loss, tol)
            best_loss = torch.where(improved, loss.detach(), best_loss)
            since_best = torch.where(improved, torch.zeros_like(since_best), since_best + 1)
            step = t + 1
            first_moment.mul_(_BETA1).add_(grad, alpha=1 - _BETA1)
            second_moment.mul_(_BETA2).addcmul_(grad, grad, value=1 - _BETA2)
            denom = (second_moment / (1 - _BETA2**step)).sqrt_().add_(_EPS)
            theta.addcdiv_(first_moment, denom, value=-lr / (1 - _BETA1**step))
            stopped = since_best >= patience
            if stop_at_hit:
                stopped |= max_score >= HIT_LEVEL
            if bool(stopped.any()):
                done = alive[stopped].cpu().numpy()
                best_score[done] = max_score[stopped].cpu().numpy()
                steps_run[done] = step
                converged[done] = True
                keep = ~stopped
                alive, offsets, bases = alive[keep], offsets[keep], bases[keep]
                theta, first_moment, second_moment = theta[keep], first_moment[keep], second_moment[keep]
                best_loss, since_best, max_score = best_loss[keep], since_best[keep], max_score[keep]
                if len(alive) == 0:
                    break
    rest = alive.cpu().numpy()
    best_score[rest] = max_score.cpu().numpy()
    steps_run[rest] = t + 1
    converged[rest] = best_score[rest] >= HIT_LEVEL  # a hit is final; a miss could still rise
    return best_score, steps_run, converged


def improves(loss: torch.Tensor, best: torch.Tensor, tol: float) -> torch.Tensor:
    """Whether each plane's loss improves on its best so far: loss < best - tol * max(|best|, 1),
    the relative tolerance floored at 8 machine epsilons of the loss's dtype, so that the rule
    never sits at the dtype's resolution (where one ulp of difference between batch layouts
    would decide it). The first loss always improves (best = inf)."""
    rel = max(float(tol), 8 * torch.finfo(loss.dtype).eps)
    margin = best.abs().clamp(min=1.0) * rel
    return torch.isinf(best) | (loss < best - margin)


def _unless_unconverged(critical, dims, success, n_bootstrap, confidence, seed) -> CriticalDimension:
    """`critical` with status "unconverged" when counting the unconverged planes as hits
    would change its status or move d* outside its interval; else `critical` itself."""
    optimistic = critical_dimension(
        dims,
        [s.hits + s.unconverged for s in success],
        [s.planes for s in success],
        input_dim=critical.input_dim,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
    )
    if optimistic.status == critical.status == "crossed":
        low, high = critical.interval
        inside = low is not None and high is not None and low <= optimistic.critical_dim <= high
        if inside or optimistic.critical_dim == critical.critical_dim:
            return critical
    elif optimistic.status == critical.status:
        return critical
    return replace(critical, status="unconverged")


def _ensemble_log_probs(models, x: torch.Tensor) -> torch.Tensor:
    """log of the members' averaged softmax probability, (batch, classes), computed stably."""
    log_probs = [torch.log_softmax(model(x).to(x.dtype), dim=1) for model in models]
    if len(log_probs) == 1:
        return log_probs[0]
    return torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(len(log_probs))


@contextmanager
def _probing(models: list[nn.Module], device: torch.device) -> Iterator[torch.dtype]:
    """Models in eval mode on `device`, parameters without grad; everything restored after.

    Yields the floating dtype of the first model's parameters (float32 if it has none).
    """
    saved = []
    for model in models:
        modes = [(module, module.training) for module in model.modules()]
        grads = [(param, param.requires_grad) for param in model.parameters()]
        tensors = [*model.parameters(), *model.buffers()]
        saved.append((model, modes, grads, tensors[0].device if tensors else None))
    floats = [p for p in models[0].parameters() if p.is_floating_point()]
    dtype = floats[0].dtype if floats else torch.float32
    try:
        for model, _, grads, _ in saved:
            model.eval()
            model.to(device)
            for param, _ in grads:
                param.requires_grad_(False)
        yield dtype
    finally:
        for model, modes, grads, original in saved:
            for module, training in modes:
                module.training = training
            for param, requires_grad in grads:
                param.requires_grad_(requires_grad)
            if original is not None:
                model.to(original)


def _check_outputs(models, input_shape, targets, device, dtype) -> None:
    """One forward pass on zeros: every model returns (batch, classes) logits covering the targets."""
    classes = set()
    with torch.no_grad():
        for model in models:
            out = model(torch.zeros(2, *input_shape, dtype=dtype, device=device))
            if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 2:
                raise InputError(
                    "the model must return logits of shape (batch, classes) for inputs of shape "
                    f"(batch, {', '.join(map(str, input_shape))})."
                )
            classes.add(out.shape[1])
            if len(classes) > 1:
                raise InputError(f"the ensemble's models disagree on the number of classes: {classes}.")
            if max(targets) >= out.shape[1]:
                raise InputError(
                    f"target class {max(targets)} does not exist: the model has {out.shape[1]} classes."
                )


def _chunks(plane_dims: Sequence[int], input_dim: int, batch: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) runs of at most `batch` planes within the basis budget."""
    chunks, start = [], 0
    while start < len(plane_dims):
        stop, width = start, 0
        while stop < len(plane_dims) and stop - start < batch:
            width_next = max(width, plane_dims[stop])
            if stop > start and (stop - start + 1) * width_next * input_dim > BASIS_BUDGET:
                break
            width, stop = width_next, stop + 1
        chunks.append((start, stop))
        start = stop
    return chunks


def _as_models(models) -> list[nn.Module]:
    models = [models] if isinstance(models, nn.Module) else list(models)
    if not models or not all(isinstance(m, nn.Module) for m in models):
        raise InputError("give one model or a non-empty list of models (torch.nn.Module).")
    return models
