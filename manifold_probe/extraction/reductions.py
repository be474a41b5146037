"""Per-layer reductions of a layer's output to a (batch, features) float32 matrix.

A reduction is named by a spec string:

- `none`: flatten the per-sample output as it is (features = product of the output shape).
- `avgpool`: mean over every dimension after the first (channels-first convention): a
  (C, H, W) or (C, L) output becomes its C channel means; a vector stays as it is.
- `project:N`: a Gaussian random projection to N <= `MAX_PROJECTION_DIM` dimensions,
  y = x R with R a (D, N) matrix of i.i.d. N(0, 1/N) entries, so that
  E ||y||^2 = ||x||^2 (Johnson-Lindenstrauss).
  R is a function of (seed, layer name, D, N) only: it is generated in blocks of
  `PROJECTION_BLOCK_ROWS` rows, block b from a `torch.Generator` seeded with a hash of
  (seed, layer name, b). When R fits in `max_matrix_bytes` it is built once and kept;
  otherwise every batch regenerates it block by block, so memory stays bounded by one block
  (slower: D * N normal draws per batch). Both paths give the same matrix.

Every reduction works in float32 on the device the layer ran on, batch by batch.

A reduction plan gives each layer its reduction: one spec for all layers, or a dict whose
keys are layer names or glob patterns (plus `default`), see `resolve_reductions`.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from ..errors import InputError
from .patterns import layer_matches

PROJECTION_BLOCK_ROWS = 4096
MAX_PROJECTION_DIM = 2**16
"""The largest N of project:N: one block of the matrix (4096 x N float32) is then 1 GiB."""
"""Rows of the projection matrix generated from one seed (the unit of streaming)."""

DEFAULT_MAX_MATRIX_BYTES = 256 * 2**20
"""Projection matrices up to this size are built once and kept; larger ones are streamed."""

_SPEC_HELP = "use none, avgpool or project:N with N a positive whole number"


@dataclass(frozen=True)
class Reduction:
    """A parsed reduction: `kind` is none, avgpool or project; `dim` is N for project:N."""

    kind: str
    dim: int | None = None

    @property
    def spec(self) -> str:
        """The spec string this reduction parses from (`none`, `avgpool`, `project:N`)."""
        return f"project:{self.dim}" if self.kind == "project" else self.kind

    def n_features(self, shape: Sequence[int]) -> int:
        """How many features a per-sample output of this shape reduces to."""
        if self.kind == "project":
            return int(self.dim)
        if self.kind == "avgpool" and len(shape) >= 2:
            return int(shape[0])
        return math.prod(shape)

    def cache_token(self, seed: int) -> str:
        """What the cache key records: the spec, plus the seed for a seeded projection."""
        return f"{self.spec} seed={seed}" if self.kind == "project" else self.spec


def parse_reduction(spec: str | Reduction) -> Reduction:
    """Parse `none`, `avgpool` or `project:N` (case and surrounding spaces ignored)."""
    if isinstance(spec, Reduction):
        return spec
    if not isinstance(spec, str):
        raise InputError(f"reduction must be a string, got {spec!r}; {_SPEC_HELP}.")
    text = spec.strip().lower()
    if text in ("none", "avgpool"):
        return Reduction(text)
    match = re.fullmatch(r"project\s*:\s*(\d+)", text)
    if match and int(match.group(1)) > MAX_PROJECTION_DIM:
        raise InputError(
            f"reduction {spec!r} projects to more than {MAX_PROJECTION_DIM} dimensions (a block of "
            f"the projection matrix, {PROJECTION_BLOCK_ROWS} x N float32, must stay under 1 GiB); "
            "a projection reduces a layer, to 64 to 4096 dimensions typically."
        )
    if match and int(match.group(1)) > 0:
        return Reduction("project", int(match.group(1)))
    raise InputError(f"unknown reduction {spec!r}: {_SPEC_HELP}.")


def resolve_reductions(
    plan: str | Reduction | Mapping[str, str | Reduction], layers: Sequence[str]
) -> dict[str, Reduction]:
    """The reduction of each layer under a plan.

    `plan` is one spec for every layer, or a dict: the key `default` (else `none`) applies
    to layers no other key matches; other keys are layer names or glob patterns
    (`patterns.layer_matches`: a wildcard stays within one dotted level, `**` crosses levels).
    An exact name wins over patterns; among patterns the first in the dict's order wins. A
    key that matches none of `layers` is an input error (it is almost always a typo).
    """
    if isinstance(plan, (str, Reduction)):
        reduction = parse_reduction(plan)
        return {name: reduction for name in layers}
    if not isinstance(plan, Mapping):
        raise InputError(f"reduction must be a spec string or a dict, got {type(plan).__name__}.")
    parsed = {key: parse_reduction(spec) for key, spec in plan.items()}
    default = parsed.pop("default", Reduction("none"))
    for key in parsed:
        if not any(layer_matches(name, key) for name in layers):
            raise InputError(
                f"reduction given for {key!r}, which matches none of the selected layers "
                f"({', '.join(layers[:5])}{', ...' if len(layers) > 5 else ''}); fix the name."
            )
    result = {}
    for name in layers:
        if name in parsed:
            result[name] = parsed[name]
            continue
        matching = [key for key in parsed if layer_matches(name, key)]
        result[name] = parsed[matching[0]] if matching else default
    return result


def parse_reduction_options(options: Sequence[str]) -> str | dict[str, str]:
    """Turn repeated command-line options into a plan: `SPEC` sets the default,
    `PATTERN=SPEC` one layer or pattern.

    `["avgpool", "logits=none"]` -> `{"default": "avgpool", "logits": "none"}`.
    """
    plan: dict[str, str] = {}
    for option in options:
        key, sep, spec = option.rpartition("=")
        key = key.strip() if sep else "default"
        if sep and not key:
            raise InputError(
                f"reduction option {option!r} has no layer before '='; use LAYER=SPEC."
            )
        parse_reduction(spec)
        if key in plan:
            raise InputError(f"reduction for {key!r} is given twice; give it once.")
        plan[key] = spec.strip()
    if list(plan) == ["default"]:
        return plan["default"]
    return plan


def _block_seed(seed: int, layer: str, block: int) -> int:
    """A 63-bit generator seed for one row block of one layer's projection matrix."""
    text = f"manifold-probe/project\0{seed}\0{layer}\0{block}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") & (2**63 - 1)


def projection_block(seed: int, layer: str, block: int, in_dim: int, out_dim: int) -> torch.Tensor:
    """Rows [b * B, min((b + 1) * B, in_dim)) of the projection matrix (B the block rows),
    float32 on the CPU."""
    start = block * PROJECTION_BLOCK_ROWS
    rows = min(PROJECTION_BLOCK_ROWS, in_dim - start)
    generator = torch.Generator().manual_seed(_block_seed(seed, layer, block))
    return torch.randn(rows, out_dim, generator=generator) / math.sqrt(out_dim)


def projection_matrix(seed: int, layer: str, in_dim: int, out_dim: int) -> torch.Tensor:
    """The whole (in_dim, out_dim) projection matrix of a layer (for tests and small layers)."""
    n_blocks = -(-in_dim // PROJECTION_BLOCK_ROWS)
    return torch.cat(
        [projection_block(seed, layer, b, in_dim, out_dim) for b in range(n_blocks)], dim=0
    )


class _Projector:
    """x (batch, D) -> x R, with R kept on the device when small and regenerated when not."""

    def __init__(self, seed, layer, in_dim, out_dim, device, max_matrix_bytes):
        self.seed, self.layer, self.in_dim, self.out_dim = seed, layer, in_dim, out_dim
        self.device = device
        self.matrix = None
        if in_dim * out_dim * 4 <= max_matrix_bytes:
            self.matrix = projection_matrix(seed, layer, in_dim, out_dim).to(device)

    def __call__(self, flat: torch.Tensor) -> torch.Tensor:
        if self.matrix is not None:
            return flat @ self.matrix
        result = torch.zeros(flat.shape[0], self.out_dim, device=flat.device)
        for block, start in enumerate(range(0, self.in_dim, PROJECTION_BLOCK_ROWS)):
            rows = projection_block(self.seed, self.layer, block, self.in_dim, self.out_dim)
            result += flat[:, start : start + rows.shape[0]] @ rows.to(flat.device)
        return result


def make_reducer(
    reduction: Reduction,
    shape: Sequence[int],
    *,
    layer: str,
    seed: int = 0,
    device: torch.device | str = "cpu",
    max_matrix_bytes: int = DEFAULT_MAX_MATRIX_BYTES,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function taking a batch of outputs (batch, *shape) to (batch, features) float32.

    The result is a new tensor for avgpool and project, and may be a view of the input for
    none (the caller copies it before the model can overwrite it in place).
    """
    shape = tuple(int(s) for s in shape)
    if reduction.kind == "none":
        return lambda batch: batch.reshape(batch.shape[0], -1).float()
    if reduction.kind == "avgpool":
        if len(shape) < 2:
            return lambda batch: batch.reshape(batch.shape[0], -1).float()
        spatial = tuple(range(2, len(shape) + 1))
        return lambda batch: batch.float().mean(dim=spatial)
    projector = _Projector(
        seed, layer, math.prod(shape), reduction.dim, torch.device(device), max_matrix_bytes
    )
    return lambda batch: projector(batch.reshape(batch.shape[0], -1).float())
