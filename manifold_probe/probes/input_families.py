"""Smooth low-dimensional families of model inputs x(theta), as maps torch can differentiate.

A family is a map from parameters theta in R^d (a batch (B, d)) to inputs (B, *input_shape),
built from torch operations that have forward-mode derivatives, so that
`torch.func.jvp` gives dx/dtheta and d^2 x / dtheta_i dtheta_j exactly. Specs (`parse_family`):

- `plane:I,J,K`: x(a, b) = x_I + a (x_J - x_I) + b (x_K - x_I), the plane through three data
  points (indices into the data), (a, b) in [0, 1]^2 (the parallelogram spanned by the three).
  Linear in theta: its own second derivative is 0.
- `rotate-scale:I`: image I rotated by the angle a (radians) and scaled by exp(b) about its
  centre, a in [-pi/6, pi/6], b in [-0.2, 0.2]: output pixel p samples the image at
  exp(-b) R(-a) p, R the rotation matrix, in the normalised coordinates [-1, 1]^2 of
  `torch.nn.functional.affine_grid` (x to the right, y down the rows, so a > 0 turns the image
  clockwise on screen; a true rotation for square images), zeros outside the image.
- `translate:I`: image I shifted by (a, b) pixels along x (columns) and y (rows), sub-pixel,
  a, b in [-1, 1]: output pixel p samples the image at p - (a, b).
- `circle` or `circle:Q`: Poole et al.'s great circle (2016, "Exponential expressivity in deep
  neural networks through transient chaos"), x(t) = sqrt(N Q) (u0 cos t + u1 sin t), t in
  [0, 2 pi) (periodic), N the number of input values, u0 and u1 orthonormal (from seeded
  Gaussian vectors by QR), Q (default 1) the mean squared input value along the circle. Only the
  data's input shape is used.

Resampling (`bilinear_resample`) is bilinear interpolation with zeros outside the image,
the same numbers as `torch.nn.functional.grid_sample(..., mode="bilinear",
padding_mode="zeros", align_corners=False)`, written with gathers because grid_sample has no
forward-mode derivative in torch (2.14: "Trying to use forward AD with grid_sampler_2d").
Bilinear interpolation is piecewise bilinear in the sampling position: within a pixel cell
its second derivative along one axis is 0 and only the mixed term and the curvature of the
sampling grid in theta remain; where a sample crosses a pixel boundary its first derivative
jumps. So `rotate-scale` and `translate` are smooth only piecewise: autodiff gives the exact
second derivative within the cells, finite differences (`family_curvature`) also see the
kinks.

Example
-------
>>> images = torch.arange(2 * 64, dtype=torch.float32).reshape(2, 1, 8, 8)
>>> family = parse_family("translate:1", images)
>>> family.dim, family(torch.zeros(3, 2)).shape
(2, torch.Size([3, 1, 8, 8]))
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..extraction.engine import split_batch  # the one reading of a batch's parts
from ..sources.data import LabelledData
from ..validation import check_positive, check_seed, count_samples

SPECS = "plane:I,J,K, rotate-scale:I, translate:I, circle or circle:Q"
"""The family specs `parse_family` reads."""

ROTATION_RANGE = (-math.pi / 6, math.pi / 6)
LOG_SCALE_RANGE = (-0.2, 0.2)
SHIFT_RANGE = (-1.0, 1.0)


@dataclass(frozen=True)
class InputFamily:
    """A d-parameter family of inputs: `family(theta)` maps (B, d) parameters to (B, *input_shape).

    parameters: the names of the d parameters; ranges: the box of theta that `grid` covers;
    periodic: whether every parameter is an angle with period hi - lo (the circle);
    input_shape: the per-sample input shape; description: one line on what the family is.
    `map` takes theta of any float dtype on any device and returns inputs of that dtype there.
    """

    spec: str
    parameters: tuple[str, ...]
    ranges: tuple[tuple[float, float], ...]
    periodic: bool
    input_shape: tuple[int, ...]
    description: str
    map: Callable[[torch.Tensor], torch.Tensor]

    @property
    def dim(self) -> int:
        """d, the number of parameters."""
        return len(self.parameters)

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        return self.map(theta)

    def per_axis(self, n_points: int) -> int:
        """Grid points per parameter for about `n_points` in all: round(n_points^(1/d)), at least 2."""
        check_positive(n_points, name="n_grid", integer=True)
        return max(2, round(n_points ** (1.0 / self.dim)))

    def grid(self, n_points: int) -> np.ndarray:
        """A regular grid of about `n_points` parameter values over `ranges` ((n, d), float64,
        the first parameter varying slowest): `per_axis` points per axis, endpoints included
        (for a periodic parameter the end, equal to the start, is left out)."""
        m = self.per_axis(n_points)
        axes = [np.linspace(lo, hi, m, endpoint=not self.periodic) for lo, hi in self.ranges]
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack([axis.reshape(-1) for axis in mesh], axis=1)


def bilinear_resample(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of images (B or 1, C, H, W) at grid (B, H', W', 2) (normalised (x, y) in
    [-1, 1], pixel centres, zeros outside): what grid_sample(align_corners=False) gives, built
    from operations with forward-mode derivatives (module docstring). Returns (B, C, H', W').

    >>> image = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> grid = torch.nn.functional.affine_grid(torch.eye(2, 3)[None], (1, 1, 4, 4), align_corners=False)
    >>> torch.equal(bilinear_resample(image, grid), image)
    True
    """
    batch, (channels, height, width) = grid.shape[0], images.shape[1:]
    px = ((grid[..., 0] + 1) * width - 1) / 2  # pixel coordinates, centres at 0..W-1
    py = ((grid[..., 1] + 1) * height - 1) / 2
    x0, y0 = torch.floor(px.detach()), torch.floor(py.detach())
    fx, fy = (px - x0)[:, None], (py - y0)[:, None]
    # one pixel of zeros around the image; every index outside it is clamped onto that border
    flat = F.pad(images, (1, 1, 1, 1)).reshape(images.shape[0], channels, -1)
    flat = flat.expand(batch, channels, flat.shape[-1])

    def corner(dy: int, dx: int) -> torch.Tensor:
        xi = (x0 + dx + 1).clamp(0, width + 1).long()
        yi = (y0 + dy + 1).clamp(0, height + 1).long()
        index = (yi * (width + 2) + xi).reshape(batch, 1, -1).expand(batch, channels, -1)
        return torch.gather(flat, 2, index).reshape(batch, channels, *grid.shape[1:3])

    top = (1 - fx) * corner(0, 0) + fx * corner(0, 1)
    bottom = (1 - fx) * corner(1, 0) + fx * corner(1, 1)
    return (1 - fy) * top + fy * bottom


def _affine_family(image: torch.Tensor, affine: Callable[[torch.Tensor], torch.Tensor]):
    """theta -> the image resampled on the grid of the (B, 2, 3) matrices affine(theta)."""

    def resample(theta: torch.Tensor) -> torch.Tensor:
        base = image.to(device=theta.device, dtype=theta.dtype)[None]
        matrices = affine(theta)
        grid = F.affine_grid(matrices, [theta.shape[0], *image.shape], align_corners=False)
        return bilinear_resample(base, grid)

    return resample


def _rotate_scale_matrices(theta: torch.Tensor) -> torch.Tensor:
    """exp(-b) R(-a) with a zero offset: output pixel p samples the image at exp(-b) R(-a) p."""
    angle, shrink = theta[:, 0], torch.exp(-theta[:, 1])
    cos, sin, zero = torch.cos(angle) * shrink, torch.sin(angle) * shrink, torch.zeros_like(angle)
    return torch.stack([torch.stack([cos, sin, zero], 1), torch.stack([-sin, cos, zero], 1)], 1)


def _translation_matrices(height: int, width: int):
    def matrices(theta: torch.Tensor) -> torch.Tensor:
        one, zero = torch.ones_like(theta[:, 0]), torch.zeros_like(theta[:, 0])
        dx, dy = -2 * theta[:, 0] / width, -2 * theta[:, 1] / height  # pixels -> [-1, 1] units
        return torch.stack([torch.stack([one, zero, dx], 1), torch.stack([zero, one, dy], 1)], 1)

    return matrices


def _plane_map(x0: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor):
    def plane(theta: torch.Tensor) -> torch.Tensor:
        base, first, second = (x.to(device=theta.device, dtype=theta.dtype) for x in (x0, x1, x2))
        shape = (-1,) + (1,) * base.ndim
        a, b = theta[:, 0].reshape(shape), theta[:, 1].reshape(shape)
        return base + a * (first - base) + b * (second - base)

    return plane


def great_circle_directions(n_values: int, seed: int) -> torch.Tensor:
    """Two orthonormal vectors (2, n_values), float64: QR of two seeded Gaussian vectors."""
    generator = torch.Generator().manual_seed(check_seed(seed, name="seed"))
    gaussian = torch.randn(n_values, 2, generator=generator, dtype=torch.float64)
    return torch.linalg.qr(gaussian).Q.T.contiguous()


def _circle_map(input_shape: tuple[int, ...], q: float, seed: int):
    n_values = math.prod(input_shape)
    directions = great_circle_directions(n_values, seed) * math.sqrt(n_values * q)

    def circle(theta: torch.Tensor) -> torch.Tensor:
        u = directions.to(device=theta.device, dtype=theta.dtype)
        t = theta[:, :1]
        return (torch.cos(t) * u[0] + torch.sin(t) * u[1]).reshape(-1, *input_shape)

    return circle


def data_input(data, index: int) -> torch.Tensor:
    """Input `index` of the data (a tensor or array of inputs, a Dataset, `load_data(...)`) as a
    float32 tensor of the per-sample shape; keyword (dict) inputs are an InputError."""
    n = count_samples(data)
    if not 0 <= index < n:
        raise InputError(f"data index {index} is out of range: the data have {n} samples (0 to {n - 1}).",
                         parameter="family")  # fmt: skip
    if isinstance(data, LabelledData):
        data = data.dataset
    if isinstance(data, np.ndarray):
        item = torch.from_numpy(np.asarray(data[index]))
    elif isinstance(data, torch.Tensor):
        item = data[index]
    else:
        item = split_batch(torch.utils.data.default_collate([data[index]]))[0]
        if isinstance(item, torch.Tensor):
            item = item[0]
    if not isinstance(item, torch.Tensor) or not (item.is_floating_point() or item.dtype == torch.uint8):
        raise InputError(
            "input families need numeric inputs (images or vectors), not token ids or keyword inputs; "
            "give image data."
        )
    return item.detach().to(torch.float32).cpu()


def _indices(text: str, count: int, spec: str) -> list[int]:
    parts = [part.strip() for part in text.split(",")] if text else []
    if len(parts) != count or not all(re.fullmatch(r"\d+", part) for part in parts):
        raise InputError(
            f"family {spec!r} needs {count} data ind{'ex' if count == 1 else 'ices'} "
            f"(whole numbers from 0, separated by commas); the specs are {SPECS}.",
            parameter="family",
        )
    return [int(part) for part in parts]


def _image(data, index: int, spec: str) -> torch.Tensor:
    image = data_input(data, index)
    if image.ndim != 3:
        raise InputError(
            f"family {spec!r} resamples an image of shape (C, H, W), but the data's inputs have shape "
            f"{tuple(image.shape)}; use plane:I,J,K or circle for these inputs.",
            parameter="family",
        )
    return image


def parse_family(spec: str, data, *, seed: int = 0) -> InputFamily:
    """The input family a spec names (module docstring), built on `data`.

    seed: draws the great circle's directions (`circle`).
    """
    if not isinstance(spec, str):
        raise InputError(
            f"family must be a spec string, got {spec!r}; the specs are {SPECS}.", parameter="family"
        )
    text = spec.strip().lower()
    kind, _, argument = text.partition(":")
    kind, argument = kind.strip(), argument.strip()
    if kind == "plane":
        i, j, k = _indices(argument, 3, spec)
        if len({i, j, k}) < 3:
            raise InputError(
                f"family {spec!r} needs three different data indices to span a plane.", parameter="family"
            )
        x0, x1, x2 = (data_input(data, index) for index in (i, j, k))
        return InputFamily(
            spec=f"plane:{i},{j},{k}", parameters=("a", "b"), ranges=((0.0, 1.0), (0.0, 1.0)),
            periodic=False, input_shape=tuple(x0.shape),
            description=f"x{i} + a (x{j} - x{i}) + b (x{k} - x{i}), (a, b) in [0, 1]^2",
            map=_plane_map(x0, x1, x2),
        )  # fmt: skip
    if kind in ("rotate-scale", "translate"):
        (index,) = _indices(argument, 1, spec)
        image = _image(data, index, spec)
        if kind == "rotate-scale":
            return InputFamily(
                spec=f"rotate-scale:{index}", parameters=("angle", "log_scale"),
                ranges=(ROTATION_RANGE, LOG_SCALE_RANGE), periodic=False, input_shape=tuple(image.shape),
                description=f"image {index} rotated by the angle (radians) and scaled by exp(log_scale), "
                "bilinear resampling",
                map=_affine_family(image, _rotate_scale_matrices),
            )  # fmt: skip
        return InputFamily(
            spec=f"translate:{index}", parameters=("shift_x", "shift_y"), ranges=(SHIFT_RANGE, SHIFT_RANGE),
            periodic=False, input_shape=tuple(image.shape),
            description=f"image {index} shifted by (shift_x, shift_y) pixels, bilinear resampling",
            map=_affine_family(image, _translation_matrices(*image.shape[1:])),
        )  # fmt: skip
    if kind == "circle":
        q = 1.0
        if argument:
            try:
                q = float(argument)
            except ValueError:
                raise InputError(
                    f"family {spec!r}: Q must be a positive number (circle:Q).", parameter="family"
                ) from None
            if not (math.isfinite(q) and q > 0):
                raise InputError(
                    f"family {spec!r}: Q must be a positive number (circle:Q).", parameter="family"
                )
        shape = tuple(data_input(data, 0).shape)
        return InputFamily(
            spec=f"circle:{q:g}", parameters=("t",), ranges=((0.0, 2 * math.pi),), periodic=True,
            input_shape=shape,
            description=f"great circle sqrt(N Q) (u0 cos t + u1 sin t), N = {math.prod(shape)}, Q = {q:g}, "
            f"seed {seed}",
            map=_circle_map(shape, q, seed),
        )  # fmt: skip
    raise InputError(f"unknown input family {spec!r}; the specs are {SPECS}.", parameter="family")
