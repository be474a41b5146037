"""Exact second fundamental form of a parametrised manifold, from its first and second derivatives.

For an embedding f: R^d -> R^D (theta -> f(theta)) and B parameter values, given the first
derivatives J = df/dtheta (B, D, d) and the second derivatives K_ij = d^2 f / dtheta_i dtheta_j
(B, D, d, d), `second_fundamental_form` computes at each theta (do Carmo, "Riemannian
Geometry", 1992, ch. 6; "Differential Geometry of Curves and Surfaces", 1976, sec. 3-2):

- the metric g = J^T J (d x d) and the volume element sqrt(det g) (the d-volume of the image
  per unit of parameter volume);
- the normal projector P_N = I - J g^-1 J^T, never formed (D can be 10^5): with the thin QR
  factorisation J = Q R (Q: D x d orthonormal, R^T R = g), P_N v = v - Q (Q^T v), applied
  twice (one re-projection makes the result orthogonal to Q to rounding, "twice is enough");
- the second fundamental form II_ij = P_N K_ij (vectors in R^D, `normal_part`);
- in orthonormal tangent coordinates u = R theta the form is H_ab = sum_ij (R^-1)_ia II_ij
  (R^-1)_jb, the normal part of d^2 f / du_a du_b, and
  ||II||^2 = sum_{ijkl} g^ik g^jl <II_ij, II_kl> = sum_ab ||H_ab||^2;
- curvature_sff = sqrt(||II||^2 / d): 1/R on any sphere S^d(R) however it is embedded
  (H = I/R along its one curved normal), the quantity `geometry.curvature` estimates from
  samples;
- the mean curvature |tr_g II| / d = |sum_a H_ab=a| / d and, by the Gauss equation, the
  intrinsic scalar curvature |tr_g II|^2 - ||II||^2 (d(d-1)/R^2 on S^d(R); twice the Gaussian
  curvature when d = 2);
- principal curvatures. In codimension 1 the shape operator g^-1 <II, n> along the unit normal n
  has the principal curvatures as eigenvalues. In higher codimension there is one shape
  operator per normal direction, and the directions are chosen here as follows: stack the
  d(d+1)/2 distinct vectors H_aa and sqrt(2) H_ab (a < b) as the columns of M (D x d(d+1)/2);
  for a unit normal n the shape operator S_n = <H, n> has ||S_n||_F = ||M^T n||, so the left
  singular vectors n_1, n_2, ... of M (by decreasing singular value s_k = ||S_{n_k}||_F) are
  the normal directions the image bends into most, in order, and sum_k ||S_{n_k}||_F^2 =
  ||II||^2. `principal_curvatures[:, k]` are the eigenvalues of S_{n_k} (the eigenvalues of
  g^-1 <II, n_k>), largest first, with the sign of n_k chosen so that their sum (d times the
  mean curvature along n_k) is >= 0 (for a trace-free S_{n_k} the sign is arbitrary);
  `normal_weights[:, k]` = s_k. There are min(d(d+1)/2, D - d) directions; beyond the rank of
  M their weights and curvatures are 0.

For a curve (d = 1) the volume element is the speed |f'| and curvature_sff is the curve's
curvature kappa = |P_N f''| / |f'|^2 (the form of Poole et al. 2016, "Exponential expressivity
in deep neural networks through transient chaos", NeurIPS: kappa^2 = ((v.v)(a.a) - (v.a)^2) /
(v.v)^3 with v = f', a = f''); `curve_length` integrates the speed over the parameter.

All arithmetic is in float64 on the device of the inputs (torch tensors or numpy arrays of any
float dtype; float32 derivatives are converted before any product or sum). K is symmetrised,
(K + K^T) / 2. Where J has rank below d (its singular values' ratio under `IMMERSION_TOL`) the map
is not an immersion, the tangent space is undefined, and every curvature of that point is NaN
(`degenerate`).

Example: the sphere of radius 2, f(u, v) = 2 (sin v cos u, sin v sin u, cos v), at (u, v) = (0, 1):
>>> import numpy as np
>>> u, v, r = 0.0, 1.0, 2.0
>>> J = r * np.array([[-np.sin(v) * np.sin(u), np.cos(v) * np.cos(u)],
...                   [np.sin(v) * np.cos(u), np.cos(v) * np.sin(u)],
...                   [0.0, -np.sin(v)]])
>>> K = r * np.array([[[-np.sin(v) * np.cos(u), -np.cos(v) * np.sin(u)],
...                    [-np.cos(v) * np.sin(u), -np.sin(v) * np.cos(u)]],
...                   [[-np.sin(v) * np.sin(u), np.cos(v) * np.cos(u)],
...                    [np.cos(v) * np.cos(u), -np.sin(v) * np.sin(u)]],
...                   [[0.0, 0.0], [0.0, -np.cos(v)]]])
>>> sff = second_fundamental_form(J[None], K[None])
>>> round(float(sff.curvature_sff[0]), 12), np.round(sff.principal_curvatures[0, 0], 12).tolist()
(0.5, [0.5, 0.5])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError

IMMERSION_TOL = 1e-10
"""A point whose Jacobian's smallest singular value is at most this fraction of its largest
(or whose Jacobian is 0) is degenerate: the image has no d-dimensional tangent space there."""


@dataclass(frozen=True)
class SecondFundamentalForm:
    """Per-point geometry of the image of B parameter values (numpy, float64; module docstring).

    metric: (B, d, d) g = J^T J.
    volume_element: (B,) sqrt(det g) (for a curve, the speed |f'|).
    sff_norm_squared: (B,) ||II||^2 = sum g^ik g^jl <II_ij, II_kl>.
    curvature_sff: (B,) sqrt(||II||^2 / d) (for a curve, its curvature kappa).
    mean_curvature: (B,) |tr_g II| / d.
    scalar_curvature: (B,) |tr_g II|^2 - ||II||^2 (Gauss equation; 2 x Gaussian curvature at d = 2).
    principal_curvatures: (B, m, d) eigenvalues of the shape operator along the principal
        normal directions n_1..n_m, m = min(d(d+1)/2, D - d), largest first.
    normal_weights: (B, m) s_k = ||shape operator along n_k||_F, decreasing; sum_k s_k^2 = ||II||^2.
    degenerate: (B,) bool, J of rank below d: every curvature there is NaN.
    """

    dim: int
    metric: np.ndarray
    volume_element: np.ndarray
    sff_norm_squared: np.ndarray
    curvature_sff: np.ndarray
    mean_curvature: np.ndarray
    scalar_curvature: np.ndarray
    principal_curvatures: np.ndarray
    normal_weights: np.ndarray
    degenerate: np.ndarray


def _as_float64(x, name: str) -> torch.Tensor:
    tensor = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    if not (tensor.is_floating_point() or tensor.dtype in (torch.int32, torch.int64)):
        raise InputError(f"{name} must be a real numeric array, got dtype {tensor.dtype}.")
    return tensor.to(torch.float64)


def _checked(jacobian, hessian) -> tuple[torch.Tensor, torch.Tensor]:
    """J (B, D, d) and the symmetrised K (B, D, d, d), float64, shapes checked."""
    j = _as_float64(jacobian, "jacobian")
    k = _as_float64(hessian, "hessian").to(j.device)
    if j.ndim != 3:
        raise InputError(f"jacobian must have shape (B, D, d), got {tuple(j.shape)}.")
    b, ambient, dim = j.shape
    if tuple(k.shape) != (b, ambient, dim, dim):
        raise InputError(
            f"hessian must have shape (B, D, d, d) = ({b}, {ambient}, {dim}, {dim}) to match the "
            f"jacobian, got {tuple(k.shape)}."
        )
    if dim < 1:
        raise InputError("the parameter dimension d must be at least 1.")
    if not (torch.isfinite(j).all() and torch.isfinite(k).all()):
        raise InputError("the derivatives contain NaN or Inf; check the map and its parameter values.")
    return j, 0.5 * (k + k.transpose(-1, -2))


def _tangent_frame(j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Q (B, D, d), R (B, d, d) with J = Q R, and the degenerate points (B,) bool."""
    q, r = torch.linalg.qr(j, mode="reduced")
    singular = torch.linalg.svdvals(r)
    degenerate = singular[:, -1] <= IMMERSION_TOL * singular[:, 0]
    eye = torch.eye(j.shape[-1], dtype=j.dtype, device=j.device)
    r = torch.where(degenerate[:, None, None], eye, r)  # any invertible R: these points are masked
    return q, r, degenerate


def _project_normal(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """P_N K_ij = K_ij - Q (Q^T K_ij), applied twice, for K (B, D, d, d)."""
    b, ambient, dim = q.shape
    flat = k.reshape(b, ambient, dim * dim)
    for _ in range(2):
        flat = flat - q @ (q.transpose(1, 2) @ flat)
    return flat.reshape(b, ambient, dim, dim)


def normal_part(jacobian, hessian) -> torch.Tensor:
    """The second fundamental form II_ij = P_N K_ij (B, D, d, d), float64 torch, on the inputs' device.

    >>> J = torch.tensor([[[1.0], [0.0]]]); K = torch.tensor([[[[0.3]], [[2.0]]]])
    >>> normal_part(J, K).flatten().tolist()
    [0.0, 2.0]
    """
    j, k = _checked(jacobian, hessian)
    q, _, _ = _tangent_frame(j)
    return _project_normal(q, k)


def _principal(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Principal curvatures (B, m, d) and normal weights (B, m) from H (B, D, d, d) (module docstring)."""
    b, ambient, dim, _ = h.shape
    rows, cols = torch.triu_indices(dim, dim, device=h.device)
    weight = torch.ones(len(rows), dtype=h.dtype, device=h.device)
    weight[rows != cols] = np.sqrt(2.0)
    stacked = h[:, :, rows, cols] * weight  # (B, D, p)
    m = min(len(rows), ambient - dim)
    if m <= 0:
        return h.new_zeros(b, 0, dim), h.new_zeros(b, 0)
    _, s, vh = torch.linalg.svd(stacked, full_matrices=False)
    s, vh = s[:, :m], vh[:, :m]  # M^T n_k = s_k v_k
    components = s[:, :, None] * vh / weight  # <H_ab, n_k> for a <= b
    shape = h.new_zeros(b, m, dim, dim)
    shape[:, :, rows, cols] = components
    shape[:, :, cols, rows] = components
    eig = torch.linalg.eigvalsh(shape).flip(-1)  # largest first
    flip = eig.sum(-1, keepdim=True) < 0
    eig = torch.where(flip, -eig.flip(-1), eig)
    return eig, s


def second_fundamental_form(jacobian, hessian) -> SecondFundamentalForm:
    """Metric, volume element, second fundamental form and curvatures at B parameter values.

    jacobian: (B, D, d) first derivatives df/dtheta; hessian: (B, D, d, d) second derivatives
    d^2 f / dtheta_i dtheta_j. Formulas and conventions: the module docstring (do Carmo 1992,
    ch. 6). Returns a `SecondFundamentalForm` of numpy float64 arrays.
    """
    j, k = _checked(jacobian, hessian)
    dim = j.shape[-1]
    q, r, degenerate = _tangent_frame(j)
    second = _project_normal(q, k)
    eye = torch.eye(dim, dtype=j.dtype, device=j.device).expand_as(r)
    r_inv = torch.linalg.solve_triangular(r, eye, upper=True)
    h = torch.einsum("nia,nxij,njc->nxac", r_inv, second, r_inv)
    norm_sq = (h * h).sum(dim=(1, 2, 3))
    trace = torch.diagonal(h, dim1=2, dim2=3).sum(-1)  # (B, D): the mean curvature vector x d
    trace_sq = (trace * trace).sum(-1)
    principal, weights = _principal(h)
    nan = torch.tensor(float("nan"), dtype=j.dtype, device=j.device)

    def masked(values: torch.Tensor) -> np.ndarray:
        shape = (-1,) + (1,) * (values.ndim - 1)
        return torch.where(degenerate.reshape(shape), nan, values).cpu().numpy()

    volume = torch.where(degenerate, 0.0, torch.abs(torch.diagonal(r, dim1=1, dim2=2)).prod(-1))
    return SecondFundamentalForm(
        dim=dim,
        metric=(j.transpose(1, 2) @ j).cpu().numpy(),
        volume_element=volume.cpu().numpy(),
        sff_norm_squared=masked(norm_sq),
        curvature_sff=masked(torch.sqrt(norm_sq / dim)),
        mean_curvature=masked(torch.sqrt(trace_sq) / dim),
        scalar_curvature=masked(trace_sq - norm_sq),
        principal_curvatures=masked(principal),
        normal_weights=masked(weights),
        degenerate=degenerate.cpu().numpy(),
    )


def curve_length(speed, parameter, *, period: float | None = None) -> float:
    """Length of a curve, integral of |f'(t)| dt, by the trapezoidal rule over the sorted t.

    speed: (n,) |f'| at the parameter values `parameter` (n,), in any order. With `period` (a
    closed curve, t and t + period the same point) the segment from the last t back to the first
    t + period is added: on a uniform grid this is the periodic trapezoidal rule, which converges
    faster than any power of the spacing for a smooth closed curve. Accumulated in float64.

    >>> t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    >>> round(curve_length(np.full(64, 3.0), t, period=2 * np.pi) / np.pi, 12)
    6.0
    """
    s = np.asarray(speed, dtype=np.float64).reshape(-1)
    t = np.asarray(parameter, dtype=np.float64).reshape(-1)
    if s.shape != t.shape or len(t) < 2:
        raise InputError(
            f"speed and parameter must be two arrays of the same length >= 2, got {s.shape} and {t.shape}."
        )
    order = np.argsort(t)
    s, t = s[order], t[order]
    length = float(np.sum(np.diff(t) * (s[1:] + s[:-1]) / 2))
    if period is not None:
        gap = t[0] + period - t[-1]
        if gap <= 0:
            raise InputError(f"period {period} is not longer than the span of the parameter values.")
        length += float(gap * (s[-1] + s[0]) / 2)
    return length
