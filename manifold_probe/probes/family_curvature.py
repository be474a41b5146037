"""Exact curvature of the image of a smooth input family, layer by layer, differentiated through the model.

A smooth family of inputs x(theta), theta in R^d (`input_families`), pushed through the model
gives at every chosen layer a d-dimensional manifold f(theta) = reduce(layer(x(theta))). Its
metric, second fundamental form and curvatures follow exactly from the first and second
derivatives of f with respect to theta (`geometry.exact_curvature`); this module computes those
derivatives for every chosen layer at once and summarises them over a grid of theta.

Derivatives. The model call is wrapped in a function of the input that returns the chosen
layers' outputs as a tuple, captured by forward hooks (`extraction.hooks.LayerRecorder`, layer
names as everywhere in the tool) without detaching them, and differentiated in forward mode
with `torch.func.jvp`. Forward mode because d is 1 or 2 and the layers are wide: each
derivative costs one pass per input direction whatever the layers' widths, while reverse mode
(`jacrev`, `hessian`) costs one pass per output value. Nested jvp rather than
`jacfwd(jacfwd(...))`: one nested pass along (e_i, e_j) gives f, J e_i, J e_j and the second
derivative at once, so the d(d+1)/2 pairs i <= j give everything (jacfwd would compute all d^2
and vmap the model over them). The chain rule is applied explicitly, so that the model's own
second derivative is seen on its own: with the family's exact derivatives x_i = dx/dtheta_i and
x_ij (`torch.func.jvp` of the family map),

    J_i  = Df(x) x_i,      K_ij = D^2 f(x)[x_i, x_j] + Df(x) x_ij,

the first term from the nested jvp of the model along x_i and x_j, the second from one more jvp
along x_ij (skipped where the family is linear, x_ij = 0). The batch dimension carries independent
values of theta (the model runs in eval mode, its training flags restored afterwards).
Reductions (`extraction.reductions`) are linear maps, so the derivatives of a reduced layer are
the reductions of the derivatives; they are applied to each derivative as it comes.

Precision. By default the model runs as a float64 copy on the chosen device (`dtype`), and all
geometry is float64. The reducers compute in float32 (`make_reducer`); a float64 tensor is
reduced as reduce(hi) + reduce(lo), hi its float32 rounding and lo = float32(x - hi), which,
reductions being linear, is exact to float64 for the selecting reductions (none, flatten, cls,
token, last) and float32-accurate for the averaging ones (avgpool, mean, project).

Piecewise-linear models. With ReLU, max-pooling and the like, the model's second derivative is 0
almost everywhere: the image is piecewise flat and its curvature lives in the kinks, which the
autodiff value (exact at the sampled theta) never sees. So a smoothed second derivative is also
computed, central differences of the exact first derivatives at a step h_j = fd_step x (the
range of theta_j),

    K^h_ij = 1/2 [ (J_i(theta + h_j e_j) - J_i(theta - h_j e_j)) / (2 h_j) + (i <-> j) ],

which equals the second derivative averaged over the segment theta +- h_j e_j (kinks included, as
the jumps of J they are): the curvature of the image smoothed at the scale h. Each layer's
regime says which number is reported as `curvature_sff`:

- `smooth`: the model's own second derivative D^2 f[x_i, x_j] is nonzero somewhere: autodiff.
- `linear`: D^2 f[x_i, x_j] is exactly 0 at every sampled theta and the finite-difference value
  agrees with the autodiff one (RMS curvature_sff within `KINK_TOLERANCE`, or both flat to
  rounding): no kink within h of the samples, and the exact value stands: autodiff.
- `piecewise-linear`: D^2 f[x_i, x_j] is exactly 0 at every sampled theta but the finite
  differences differ: the model (or the family's bilinear resampling) has kinks between the
  samples; the reported value is the finite-difference one, at the stated step, and depends on it.
- `linear-or-piecewise-linear`: D^2 f[x_i, x_j] = 0 everywhere and no finite differences were
  asked for (`second_derivative="autodiff"`): the autodiff value counts only the family's own
  bending and any kinks are missed.

With `second_derivative="auto"` (default) the finite differences are computed, chunk by chunk of
theta, for the layers whose D^2 f vanishes there (those passes record only these layers and
stop after the last of them); "finite-difference" computes and reports them for every layer;
"autodiff" never.

Summaries per layer (`LayerFamilyCurvature`), over the N values of theta:
curvature_sff = sqrt(mean_theta ||II||^2 / d) (root mean square of the per-theta value, as
`geometry.curvature` averages its per-point values); curvature_sff_scaled = curvature_sff times
`length_scale`, the root-mean-square distance of the layer's image points from their mean
(1 for a round circle of any radius sampled evenly); volume_element = the mean over theta of
sqrt(det g); for d = 1, curve_length (trapezoidal rule, `geometry.exact_curvature.curve_length`,
periodic for the circle) and curve_curvature (= curvature_sff for a curve, Poole et al.'s
kappa, root mean square over theta).

Memory. Theta is processed in chunks sized by `max_memory`: per value of theta, an estimate of
4 times every module output of one forward pass (a nested jvp carries four tensors per
activation), 4 times the raw chosen layers, and the reduced derivatives and geometry work
arrays, all at the dtype's size.

References: do Carmo, "Riemannian Geometry" (1992), ch. 6 (second fundamental form); B. Poole,
S. Lahiri, M. Raghu, J. Sohl-Dickstein, S. Ganguli, "Exponential expressivity in deep neural
networks through transient chaos", NeurIPS 2016 (length and curvature of a great circle's image).

Example
-------
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 8))
>>> result = family_curvature(net, torch.randn(4, 16), "plane:0,1,2", layers=["1", "2"], n_grid=25)
>>> [layer.regime for layer in result.layers]
['smooth', 'smooth']
>>> sorted(result.layers[0].metrics())
['curvature_sff', 'curvature_sff_scaled', 'volume_element']
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import jvp

from ..device import model_device, resolve_device
from ..errors import InputError
from ..extraction.hooks import LOGITS, LayerRecorder, eval_mode, first_tensor, model_logits
from ..extraction.layers import list_layers, select_layers
from ..extraction.reductions import Reduction, make_reducer, resolve_reductions
from ..geometry.curvature import QUANTILES
from ..geometry.exact_curvature import SecondFundamentalForm, curve_length, second_fundamental_form
from ..progress import track
from ..validation import as_points, check_positive
from .input_families import InputFamily, parse_family

FD_STEP = 0.01
"""The finite-difference step as a fraction of each parameter's range."""
DEFAULT_GRID = 1024
"""About this many values of theta by default (`InputFamily.grid`: 1024 on a curve, 32 x 32)."""
WORK_BYTES = 2**28
"""Default working memory of one chunk of theta (`max_memory` overrides)."""
KINK_TOLERANCE = 0.01
"""Relative difference of the finite-difference and autodiff curvature_sff above which a layer
whose model part has no second derivative is `piecewise-linear` rather than `linear`."""
FLAT_TO_ROUNDING = 1e-9
"""curvature_sff_scaled at or below which an image counts as flat (both methods agree on 0)."""
PREVIEW_PER_AXIS = 5
"""The family's inputs kept for a page: this many grid points per parameter."""
SECOND_DERIVATIVES = ("auto", "autodiff", "finite-difference")
LENGTH_SCALE = "root-mean-square distance of the layer's image points (over theta) from their mean"
SFF_AVERAGE = "root mean square over theta of the per-theta sqrt(||II||^2 / d)"
MEANINGS = {
    "smooth": "exact: autodiff second derivatives at each theta",
    "linear": (
        "exact: the model's second derivative along the family is 0 at every theta and finite "
        "differences agree (no kink within the step)"
    ),
    "piecewise-linear": (
        "the model's second derivative along the family is 0 at every theta (piecewise linear: "
        "the curvature lives in the kinks); reported: finite differences of the exact first "
        "derivatives at the stated step, the curvature smoothed at that scale"
    ),
    "linear-or-piecewise-linear": (
        "the model's second derivative along the family is 0 at every theta and no finite "
        "differences were computed: the value counts only the family's own bending"
    ),
}


class _LiveRecorder(LayerRecorder):
    """A LayerRecorder that keeps each wanted layer's output as the forward pass made it, not
    detached, so that forward-mode tangents reach the caller (`outputs`)."""

    def __init__(self, model: nn.Module, layers: Sequence[str]):
        super().__init__(model, layers, lambda name, tensor: None)
        self.live: dict[str, torch.Tensor | None] = {}

    def _deliver(self, name: str, output) -> None:
        self.live[name] = model_logits(output) if name == LOGITS else first_tensor(output)
        super()._deliver(name, output)

    def outputs(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The wanted layers' outputs for one batch, in the order asked for (the hooks are on only
        for this pass; the pass stops after the last wanted layer unless that is `logits`)."""
        self.live = {}
        with self:
            self.forward(inputs)
        return tuple(self.live[name] for name in self.wanted)


@dataclass(frozen=True)
class LayerDerivatives:
    """Derivatives of one layer's reduced output along the family at B values of theta (float64).

    points: (B, D) f(theta); jacobian: (B, D, d); hessian: (B, D, d, d), autodiff;
    model_second_is_zero: whether D^2 f(x)[x_i, x_j], the model's own part of the hessian, is
    exactly 0 at every theta of the batch; hessian_fd: (B, D, d, d) the finite-difference
    hessian (module docstring), or None when not computed.
    """

    points: torch.Tensor
    jacobian: torch.Tensor
    hessian: torch.Tensor
    model_second_is_zero: bool
    hessian_fd: torch.Tensor | None = None


def _reduced(reducer, tensor: torch.Tensor) -> torch.Tensor:
    """reducer(tensor) to float64 precision for a float64 tensor (module docstring, Precision)."""
    high = tensor.float()
    value = reducer(high).double()
    if tensor.dtype == torch.float64:
        value = value + reducer((tensor - high.double()).float()).double()
    return value


@contextlib.contextmanager
def _forward_ad_errors() -> Iterator[None]:
    """An operation without a forward-mode derivative becomes an InputError that says so."""
    try:
        yield
    except InputError as exc:
        if isinstance(exc.__cause__, NotImplementedError):
            first = str(exc.__cause__).strip().splitlines()[0]
            raise InputError(
                f"exact curvature differentiates the model in forward mode, and it has an operation "
                f"without a forward-mode derivative: {first}"
            ) from exc.__cause__
        raise


def _on(device: torch.device, tensor: torch.Tensor) -> bool:
    return tensor.device.type == device.type and (device.index is None or tensor.device.index == device.index)


def _prepared(model: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """The model itself when its tensors are already on `device` in `dtype`, else a copy moved
    there (the caller's model is never changed)."""
    tensors = [*model.parameters(), *model.buffers()]
    if all(_on(device, t) and (not t.is_floating_point() or t.dtype == dtype) for t in tensors):
        return model
    return copy.deepcopy(model).to(device=device, dtype=dtype)


class _Differentiator:
    """Derivatives of the chosen layers along the family, for chunks of theta (`__call__`)."""

    def __init__(self, module: nn.Module, family: InputFamily, names, reductions, device, seed):
        self.family, self.names = family, list(names)
        self.reductions: dict[str, Reduction] = reductions
        self.device, self.seed = device, seed
        self.recorders = {tuple(self.names): _LiveRecorder(module, self.names)}
        self.module = module
        self.reducers: dict[str, Any] = {}
        self.concrete: dict[str, Reduction] = {}

    def _outputs(self, names: Sequence[str]):
        """x -> the raw outputs of these layers (a recorder per set of layers, kept)."""
        key = tuple(names)
        if key not in self.recorders:
            self.recorders[key] = _LiveRecorder(self.module, key)
        return self.recorders[key].outputs

    def _reduce(self, outputs: Sequence[torch.Tensor], names: Sequence[str]) -> list[torch.Tensor]:
        reduced = []
        for name, output in zip(names, outputs, strict=True):
            if name not in self.reducers:
                shape = tuple(output.shape[1:])
                self.concrete[name] = self.reductions[name].for_shape(shape, layer=name)
                self.reducers[name] = make_reducer(
                    self.concrete[name], shape, layer=name, seed=self.seed, device=self.device
                )
            reduced.append(_reduced(self.reducers[name], output))
        return reduced

    def _along(self, x: torch.Tensor, tangent: torch.Tensor, names: Sequence[str]) -> list[torch.Tensor]:
        """Df(x) tangent, reduced, for these layers."""
        return self._reduce(jvp(self._outputs(names), (x,), (tangent,))[1], names)

    def _family_first(self, theta: torch.Tensor, basis: list[torch.Tensor]) -> tuple[torch.Tensor, list]:
        """x(theta) and x_i for every i."""
        firsts = [jvp(self.family.map, (theta,), (e,)) for e in basis]
        return firsts[0][0], [tangent for _, tangent in firsts]

    def _pair(self, theta: torch.Tensor, e_i: torch.Tensor, e_j: torch.Tensor):
        """One nested pass along (e_i, e_j): the raw outputs f and Df x_i, the reduced K_ij per
        layer, and per layer whether the model's own part D^2 f[x_i, x_j] is exactly 0."""
        outputs = self._outputs(self.names)
        (x, x_i), (x_j, x_ij) = jvp(lambda t: jvp(self.family.map, (t,), (e_i,)), (theta,), (e_j,))
        (f, f_i), (_, f_ij) = jvp(lambda y: jvp(outputs, (y,), (x_i,)), (x,), (x_j,))
        flat = [not bool(torch.any(raw != 0)) for raw in f_ij]
        second = self._reduce(f_ij, self.names)
        if bool(torch.any(x_ij != 0)):  # the family's own second derivative: Df(x) x_ij
            second = [s + g for s, g in zip(second, self._along(x, x_ij, self.names), strict=True)]
        return f, f_i, second, flat

    def __call__(self, theta: torch.Tensor, finite_differences: bool | str, steps: Sequence[float]):
        """{layer: LayerDerivatives} at theta (B, d). finite_differences: True (every layer),
        False, or "auto" (the layers whose model part has no second derivative in this chunk)."""
        d = theta.shape[1]
        unit = torch.eye(d, dtype=theta.dtype, device=theta.device)
        basis = [unit[i].expand_as(theta) for i in range(d)]
        points, jac, hess, zero = [], {}, {}, [True] * len(self.names)
        with _forward_ad_errors():
            for i in range(d):
                for j in range(i, d):
                    f, f_i, hess[i, j], flat = self._pair(theta, basis[i], basis[j])
                    hess[j, i] = hess[i, j]
                    zero = [a and b for a, b in zip(zero, flat, strict=True)]
                    if i == j:
                        points, jac[i] = self._reduce(f, self.names), self._reduce(f_i, self.names)
            if finite_differences == "auto":
                wanted = [name for name, flat in zip(self.names, zero, strict=True) if flat]
            else:
                wanted = self.names if finite_differences else []
            fd = dict(zip(wanted, self._finite_differences(theta, basis, steps, wanted), strict=True))
        return {
            name: LayerDerivatives(
                points=points[k],
                jacobian=torch.stack([jac[i][k] for i in range(d)], dim=-1),
                hessian=torch.stack(
                    [torch.stack([hess[i, j][k] for j in range(d)], dim=-1) for i in range(d)], dim=-2
                ),
                model_second_is_zero=zero[k],
                hessian_fd=fd.get(name),
            )
            for k, name in enumerate(self.names)
        }

    def _finite_differences(self, theta, basis, steps, names) -> list[torch.Tensor]:
        """K^h (B, D, d, d) for these layers: symmetrised central differences of the exact J
        (module docstring)."""
        if not names:
            return []
        d = len(basis)
        slopes = []  # slopes[j][layer] = (J(theta + h_j e_j) - J(theta - h_j e_j)) / (2 h_j), (B, D, d)
        for j in range(d):
            sides = []
            for sign in (1.0, -1.0):
                x, tangents = self._family_first(theta + sign * steps[j] * basis[j], basis)
                per_direction = [self._along(x, t, names) for t in tangents]
                sides.append([torch.stack(cols, dim=-1) for cols in zip(*per_direction, strict=True)])
            slopes.append([(plus - minus) / (2 * steps[j]) for plus, minus in zip(*sides, strict=True)])
        hessians = []
        for layer in range(len(names)):
            rows = torch.stack([slopes[j][layer] for j in range(d)], dim=-1)  # [.., i, j] = d_j J_i
            hessians.append(0.5 * (rows + rows.transpose(-1, -2)))
        return hessians


@contextlib.contextmanager
def _differentiating(model, family, names, reduction, device, dtype, seed) -> Iterator[_Differentiator]:
    module = _prepared(model, device, dtype)
    reductions = resolve_reductions(reduction, names)
    with eval_mode(module), torch.no_grad(), warnings.catch_warnings():
        # torch's forward-mode AD scripts its own decompositions on first use, which torch 2.14
        # reports as a deprecation of torch.jit.script: nothing the user can act on
        warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
        yield _Differentiator(module, family, names, reductions, device, seed)


def _as_theta(theta, dim: int) -> np.ndarray:
    values = as_points(theta, name="theta", min_points=1).astype(np.float64)
    if values.shape[1] != dim:
        raise InputError(f"theta must have shape (N, {dim}) for this family, got {values.shape}.")
    return values


def _steps(family: InputFamily, fd_step: float) -> list[float]:
    check_positive(fd_step, name="fd_step")
    return [fd_step * (hi - lo) for lo, hi in family.ranges]


def _chosen_layers(
    model: nn.Module, family: InputFamily, theta: np.ndarray, layers
) -> tuple[list[str], torch.Tensor]:
    """The chosen layer names (`select_layers`) and a one-input example batch on the model's
    device, in the dtype of its floating-point tensors (float32 when it has none)."""
    tensors = (*model.parameters(), *model.buffers())
    dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)
    example = family(torch.as_tensor(theta[:1], dtype=dtype)).to(model_device(model))
    try:
        return select_layers(model, example, layers), example
    except RuntimeError as exc:  # the model rejects the family's inputs
        raise InputError(
            f"the model does not accept the family's inputs of shape {family.input_shape}: "
            f"{str(exc).splitlines()[0]}"
        ) from None


def layer_derivatives(
    model: nn.Module,
    family: InputFamily,
    theta,
    *,
    layers: str | Sequence[str] | None = None,
    reduction: str | Reduction | Mapping[str, str] = "auto",
    fd_step: float | None = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> dict[str, LayerDerivatives]:
    """First and second derivatives of every chosen layer's reduced output along the family, at
    the values theta (N, d), in one batch (module docstring).

    layers: names or patterns (`extraction.layers.select_layers`; None: the default layers);
    reduction: a spec or plan (`extraction.reductions.resolve_reductions`); fd_step: also the
    finite-difference hessian at steps fd_step x each parameter's range (None: not computed);
    dtype: the precision the model runs in; device: where (None: where the model is);
    seed: seeds `project:N` reductions.
    """
    values = _as_theta(theta, family.dim)
    names, _ = _chosen_layers(model, family, values, layers)
    dev = model_device(model) if device is None else resolve_device(device)
    steps = _steps(family, fd_step) if fd_step is not None else []
    with _differentiating(model, family, names, reduction, dev, dtype, seed) as differentiate:
        return differentiate(torch.as_tensor(values, dtype=dtype, device=dev), fd_step is not None, steps)


def _chunk_size(model, example, names, reduction, d: int, itemsize: int, max_memory: int | None) -> int:
    """Values of theta per chunk under `max_memory` bytes (module docstring, Memory)."""
    budget = WORK_BYTES if max_memory is None else check_positive(max_memory, name="max_memory", integer=True)
    infos = {info.name: info for info in list_layers(model, example)}
    reductions = resolve_reductions(reduction, names)
    activations = sum(info.n_features for info in infos.values())
    raw = sum(infos[name].n_features for name in names)
    reduced = sum(reductions[name].n_features(infos[name].output_shape) for name in names)
    pairs = d * (d + 1) // 2
    per_value = itemsize * (
        4 * activations
        + 4 * raw
        + reduced * (1 + d + 3 * pairs + 2 * d * d + 6 * d * d)
        + math.prod(example.shape[1:]) * (1 + d + pairs)
    )
    return max(1, budget // per_value)


@dataclass
class _Accumulator:
    """Per-theta values of one layer, chunk after chunk."""

    dim: int
    autodiff: list[SecondFundamentalForm] = field(default_factory=list)
    finite: list[SecondFundamentalForm] = field(default_factory=list)
    model_second_is_zero: bool = True
    n_chunks: int = 0
    origin: torch.Tensor | None = None
    offset_sum: torch.Tensor | None = None
    offset_sq: float = 0.0
    n_points: int = 0
    points: list[np.ndarray] = field(default_factory=list)

    def add(self, derivs: LayerDerivatives, keep_points: bool) -> None:
        self.n_chunks += 1
        self.model_second_is_zero &= derivs.model_second_is_zero
        self.autodiff.append(second_fundamental_form(derivs.jacobian, derivs.hessian))
        if derivs.hessian_fd is not None:
            self.finite.append(second_fundamental_form(derivs.jacobian, derivs.hessian_fd))
        if self.origin is None:
            self.origin = derivs.points[0].clone()
            self.offset_sum = torch.zeros_like(self.origin)
        offsets = derivs.points - self.origin  # shifted sums: no cancellation for a far-off image
        self.offset_sum += offsets.sum(0)
        self.offset_sq += float((offsets * offsets).sum())
        self.n_points += derivs.points.shape[0]
        if keep_points:
            self.points.append(derivs.points.float().cpu().numpy())

    def length_scale(self) -> float:
        mean = self.offset_sum / self.n_points
        return math.sqrt(max(self.offset_sq / self.n_points - float((mean * mean).sum()), 0.0))


def _joined(forms: list[SecondFundamentalForm], name: str) -> np.ndarray:
    return np.concatenate([getattr(form, name) for form in forms])


def _root_mean_square(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.sqrt(np.mean(finite * finite))) if len(finite) else float("nan")


@dataclass(frozen=True)
class LayerFamilyCurvature:
    """The exact geometry of one layer's image of the family (module docstring).

    Summaries: curvature_sff (of `method`), curvature_sff_autodiff, curvature_sff_fd (NaN when
    not computed), length_scale, volume_element; curve_length and curve_curvature for d = 1
    (else NaN). regime/method/meaning: which second derivative the numbers come from and why.
    Per theta (in the order of `FamilyCurvature.theta`): sff_per_theta (the reported method's
    sqrt(||II||^2 / d)), volume_per_theta (sqrt(det g)), principal_curvatures (N, d) along the
    first principal normal n_1, first_normal_share (N,) s_1^2 / ||II||^2 (how much of the bending
    is in one normal direction). points: the reduced layer values (N, D) float32 when asked for.
    """

    layer: str
    reduction: str
    n_features: int
    dim: int
    n_theta: int
    n_degenerate: int
    regime: str
    method: str
    fd_step: tuple[float, ...]
    curvature_sff: float
    curvature_sff_autodiff: float
    curvature_sff_fd: float
    length_scale: float
    volume_element: float
    curve_length: float
    curve_curvature: float
    sff_per_theta: np.ndarray
    volume_per_theta: np.ndarray
    principal_curvatures: np.ndarray
    first_normal_share: np.ndarray
    points: np.ndarray | None = None

    @property
    def meaning(self) -> str:
        return MEANINGS[self.regime]

    @property
    def curvature_sff_scaled(self) -> float:
        return self.curvature_sff * self.length_scale

    def metrics(self) -> dict[str, float]:
        """The summary numbers under their schema names (the curve's only for d = 1)."""
        values = {
            "curvature_sff": self.curvature_sff,
            "curvature_sff_scaled": self.curvature_sff_scaled,
            "volume_element": self.volume_element,
        }
        if self.dim == 1:
            values.update(curve_length=self.curve_length, curve_curvature=self.curve_curvature)
        return values

    def details(self) -> dict[str, Any]:
        """Everything else a result file should carry to be read without this code."""
        principal = self.principal_curvatures[np.isfinite(self.principal_curvatures)]
        share = self.first_normal_share[np.isfinite(self.first_normal_share)]
        quantiles = (
            {
                f"q{q:02d}": float(v)
                for q, v in zip(QUANTILES, np.percentile(principal, QUANTILES), strict=True)
            }
            if len(principal)
            else {}
        )
        return {
            "regime": self.regime,
            "method": self.method,
            "meaning": self.meaning,
            "fd_step": list(self.fd_step),
            "curvature_sff_autodiff": self.curvature_sff_autodiff,
            "curvature_sff_fd": self.curvature_sff_fd,
            "curvature_sff_average": SFF_AVERAGE,
            "length_scale": self.length_scale,
            "length_scale_definition": LENGTH_SCALE,
            "principal_curvature_quantiles": quantiles,
            "principal_curvatures_of": "the first principal normal n_1, pooled over theta",
            "first_normal_share": float(share.mean()) if len(share) else float("nan"),
            "dim": self.dim,
            "n_theta": self.n_theta,
            "n_degenerate": self.n_degenerate,
            "reduction": self.reduction,
            "n_features": self.n_features,
        }


def _regime(acc: _Accumulator, sff_ad: float, sff_fd: float, scale: float, asked: str) -> tuple[str, str]:
    """(regime, method) of a layer (module docstring)."""
    fd_everywhere = len(acc.finite) == acc.n_chunks
    if not acc.model_second_is_zero:
        regime = "smooth"
    elif not fd_everywhere:
        regime = "linear-or-piecewise-linear"
    else:
        larger = max(sff_ad, sff_fd)
        flat = larger * scale <= FLAT_TO_ROUNDING
        regime = "linear" if flat or abs(sff_fd - sff_ad) <= KINK_TOLERANCE * larger else "piecewise-linear"
    use_fd = asked == "finite-difference" or regime == "piecewise-linear"
    return regime, "finite-difference" if use_fd else "autodiff"


def _summary(
    name, acc: _Accumulator, reduction: Reduction, theta, family, steps, asked
) -> LayerFamilyCurvature:
    sff_ad = _root_mean_square(_joined(acc.autodiff, "curvature_sff"))
    sff_fd = _root_mean_square(_joined(acc.finite, "curvature_sff")) if acc.finite else float("nan")
    scale = acc.length_scale()
    regime, method = _regime(acc, sff_ad, sff_fd, scale, asked)
    forms = acc.finite if method == "finite-difference" else acc.autodiff
    per_theta = _joined(forms, "curvature_sff")
    volume = _joined(acc.autodiff, "volume_element")
    weights = _joined(forms, "normal_weights")
    principal = _joined(forms, "principal_curvatures")
    with np.errstate(invalid="ignore", divide="ignore"):
        share = weights[:, 0] ** 2 / (weights**2).sum(1) if weights.shape[1] else np.full(len(volume), np.nan)
    degenerate = _joined(acc.autodiff, "degenerate")
    length = kappa = float("nan")
    if acc.dim == 1:
        kappa = _root_mean_square(per_theta)
        if len(theta) >= 2:
            ((lo, hi),) = family.ranges
            length = curve_length(volume, theta[:, 0], period=(hi - lo) if family.periodic else None)
    return LayerFamilyCurvature(
        layer=name, reduction=reduction.spec, n_features=int(acc.origin.numel()), dim=acc.dim,
        n_theta=len(theta), n_degenerate=int(degenerate.sum()), regime=regime, method=method,
        fd_step=tuple(steps) if acc.finite else (), curvature_sff=_root_mean_square(per_theta),
        curvature_sff_autodiff=sff_ad, curvature_sff_fd=sff_fd, length_scale=scale,
        volume_element=float(volume[~degenerate].mean()) if (~degenerate).any() else float("nan"),
        curve_length=length, curve_curvature=kappa, sff_per_theta=per_theta, volume_per_theta=volume,
        principal_curvatures=principal[:, 0] if principal.shape[1] else np.zeros((len(volume), acc.dim)),
        first_normal_share=share,
        points=np.concatenate(acc.points) if acc.points else None,
    )  # fmt: skip


@dataclass(frozen=True)
class FamilyCurvature:
    """The exact curvature profile of an input family through a model.

    family: the `InputFamily` (spec, parameters, ranges); theta: the (N, d) parameter values;
    layers: one `LayerFamilyCurvature` per chosen layer, in model order; grid_theta and
    grid_inputs: a coarse grid of the family (`PREVIEW_PER_AXIS` per parameter) and its inputs
    (float32), to show the images that were bent; second_derivative, dtype, device: how it was
    computed.
    """

    family: InputFamily
    theta: np.ndarray
    layers: tuple[LayerFamilyCurvature, ...]
    grid_theta: np.ndarray
    grid_inputs: np.ndarray
    second_derivative: str
    dtype: str
    device: str

    def layer(self, name: str) -> LayerFamilyCurvature:
        """The result of the layer called `name`."""
        for layer in self.layers:
            if layer.layer == name:
                return layer
        raise InputError(f"no layer {name!r} was measured; the layers are {[x.layer for x in self.layers]}.")


def family_curvature(
    model: nn.Module,
    data: Any,
    family: str | InputFamily,
    layers: str | Sequence[str] | None = None,
    reduction: str | Reduction | Mapping[str, str] = "auto",
    n_grid: int | None = None,
    *,
    theta=None,
    second_derivative: str = "auto",
    fd_step: float = FD_STEP,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device | None = None,
    max_memory: int | None = None,
    keep_points: bool = False,
    seed: int = 0,
    progress: bool = False,
) -> FamilyCurvature:
    """Exact curvature of every chosen layer's image of an input family (module docstring).

    Parameters
    ----------
    model : any nn.Module whose operations have forward-mode derivatives (run in eval mode, a
        float64 copy by default; the caller's model is not changed).
    data : the data the family's spec indexes (a tensor or array of inputs, a Dataset,
        `load_data(...)`); unused when `family` is an `InputFamily`.
    family : a spec (`input_families.parse_family`: plane:I,J,K, rotate-scale:I, translate:I,
        circle[:Q]) or an `InputFamily`.
    layers : names or patterns (None: the model's default layers); reduction : as `extract`'s.
    n_grid : about this many values of theta on a regular grid (`DEFAULT_GRID`); theta : or
        these values (N, d) instead.
    second_derivative : "auto", "autodiff" or "finite-difference" (module docstring);
        fd_step : the finite-difference step as a fraction of each parameter's range.
    dtype, device : the precision and place the model runs in (None: where it is).
    max_memory : bytes of working memory per chunk of theta (`WORK_BYTES`).
    keep_points : keep each layer's reduced values at every theta (float32), for comparisons.
    seed : the great circle's directions and `project:N` reductions.

    Returns
    -------
    A `FamilyCurvature`: per layer a `LayerFamilyCurvature` (`metrics()`, `details()`), the
    values of theta and a preview grid of the family's inputs.
    """
    if second_derivative not in SECOND_DERIVATIVES:
        raise InputError(
            f"second_derivative must be one of {', '.join(SECOND_DERIVATIVES)}, got {second_derivative!r}."
        )
    fam = family if isinstance(family, InputFamily) else parse_family(family, data, seed=seed)
    values = (
        fam.grid(DEFAULT_GRID if n_grid is None else n_grid) if theta is None else _as_theta(theta, fam.dim)
    )
    steps = _steps(fam, fd_step)
    names, example = _chosen_layers(model, fam, values, layers)
    dev = model_device(model) if device is None else resolve_device(device)
    itemsize = torch.empty((), dtype=dtype).element_size()
    size = _chunk_size(model, example, names, reduction, fam.dim, itemsize, max_memory)
    accumulators = {name: _Accumulator(fam.dim) for name in names}
    finite = {"auto": "auto", "autodiff": False, "finite-difference": True}[second_derivative]
    with _differentiating(model, fam, names, reduction, dev, dtype, seed) as differentiate:
        starts = range(0, len(values), size)
        for start in track(starts, description="family curvature", enabled=progress):
            chunk = torch.as_tensor(values[start : start + size], dtype=dtype, device=dev)
            for name, derivs in differentiate(chunk, finite, steps).items():
                accumulators[name].add(derivs, keep_points)
        concrete = differentiate.concrete
    summaries = tuple(
        _summary(name, accumulators[name], concrete[name], values, fam, steps, second_derivative)
        for name in names
    )
    grid_theta = fam.grid(PREVIEW_PER_AXIS**fam.dim)
    grid_inputs = fam(torch.as_tensor(grid_theta, dtype=torch.float32)).numpy()
    return FamilyCurvature(
        family=fam, theta=values, layers=summaries, grid_theta=grid_theta, grid_inputs=grid_inputs,
        second_derivative=second_derivative, dtype=str(dtype).removeprefix("torch."), device=str(dev),
    )  # fmt: skip
