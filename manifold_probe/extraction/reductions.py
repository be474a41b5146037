"""Per-layer reductions of a layer's output to a (batch, features) float32 matrix.

A layer's per-sample output is of one of three kinds (`output_kind`), by its number of axes:

- a *vector* (D,) (a linear layer, the logits);
- a *token sequence* (T, D) (a transformer block: tokens, then hidden features);
- a *spatial map* (C, H, W) or (C, D, H, W) (a convolution: channels first).

A (C, L) output of a 1-D convolution has two axes too and counts as a token sequence: two axes
cannot tell channels-first maps from tokens, so `avgpool` refuses them (give `mean`, which
averages over the first axis, or `flatten`).

A reduction is named by a spec string:

- `auto` (the default): per output kind, `none` for vectors and spatial maps (the map flattened
  as it is) and `mean` for token sequences (the mask-aware token mean: defined for every
  transformer, with or without a class token, and with padding).
- `none`, or `flatten`: flatten the per-sample output as it is (features = product of the
  output shape; for a token sequence T * D, padding tokens included).
- `avgpool`: the spatial mean of a map, (C, H, W) -> its C channel means (of a
  `channels_last` map, (H, W, C) -> its C channel means: the layout, `Reduction.layout`, is
  detected per layer by `layers.detect_layouts` or given by the caller); a vector stays as
  it is; a token sequence is refused (its mean over the hidden axis is about 0 after a
  LayerNorm, by construction: use `mean`).
- `cls`: the first token x[0] of a token sequence (the class token of BERT and ViT);
  `token:I`: token I (negative I counts from the end, `token:-1` the last position).
- `mean`: the mean over tokens, sum_t m_t x_t / sum_t m_t with m the batch's attention mask
  (1 for real tokens, 0 for padding; all ones when the batch has none).
- `last`: the last real token, x[t*] with t* the largest t where m_t = 1 (the summary token
  of a causal language model, wherever its padding is).
- `project:N`: a Gaussian random projection to N <= `MAX_PROJECTION_DIM` dimensions,
  y = x R with R a (D, N) matrix of i.i.d. N(0, 1/N) entries, so that
  E ||y||^2 = ||x||^2 (Johnson-Lindenstrauss). Only N <= D: a layer narrower than N is
  refused (an InputError about `reduction` naming the layer), never projected up, since the
  N - D empty directions would change its geometry (they dilute `mapc`); give such a layer its
  own width in a plan (`{"default": "project:512", "logits": "none"}`).
  R is a function of (seed, layer name, D, N) only: it is generated in blocks of
  `PROJECTION_BLOCK_ROWS` rows, block b from a `torch.Generator` seeded with a hash of
  (seed, layer name, b). When R fits in `max_matrix_bytes` it is built once and kept;
  otherwise every batch regenerates it block by block, so memory stays bounded by one block
  (slower: D * N normal draws per batch). Both paths give the same matrix.

Token reductions (`cls`, `token:I`, `mean`, `last`) applied to a vector leave it as it is
(so one spec can cover a transformer's blocks and its logits) and refuse a spatial map.
`Reduction.for_shape` turns a spec into the concrete reduction of one layer's output (what
results and the cache record).

Every reduction works in float32 on the device the layer ran on, batch by batch.

A reduction plan gives each layer its reduction: one spec for all layers, or a dict whose
keys are layer names or glob patterns (plus `default`), see `resolve_reductions`.

Example
-------
>>> make_reducer(parse_reduction("cls"), (16, 64), layer="blocks.0")(torch.zeros(8, 16, 64)).shape
torch.Size([8, 64])
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

_SPEC_HELP = (
    "use auto, none, flatten, avgpool, cls, mean, last, token:I or project:N "
    "(I a whole number, N a positive whole number)"
)

VECTOR, TOKENS, MAP = "vector", "token sequence", "spatial map"
"""The output kinds (`output_kind`)."""

CHANNELS_FIRST, CHANNELS_LAST = "channels_first", "channels_last"
LAYOUTS = (CHANNELS_FIRST, CHANNELS_LAST)
"""The layouts of a spatial map: channels then space (torch's convolutions), or space then
channels (timm's Swin stages, the inner norm and MLP of a ConvNeXt block: `NHWC`)."""

AUTO_REDUCTIONS = {VECTOR: "none", TOKENS: "mean", MAP: "none"}
"""What `auto` applies to each output kind."""

_PLAIN = ("none", "flatten", "avgpool", "auto", "cls", "mean", "last")
_TOKEN_KINDS = ("cls", "token", "mean", "last")


def output_kind(shape: Sequence[int]) -> str:
    """The kind of a per-sample output shape: `vector` (at most one axis), `token sequence`
    (two axes, tokens then features) or `spatial map` (three or more, channels first).

    >>> output_kind((197, 192)), output_kind((64, 8, 8)), output_kind((10,))
    ('token sequence', 'spatial map', 'vector')
    """
    return VECTOR if len(shape) <= 1 else TOKENS if len(shape) == 2 else MAP


@dataclass(frozen=True)
class Reduction:
    """A parsed reduction: `kind` is auto, none, flatten, avgpool, cls, token, mean, last or
    project; `dim` is N for project:N and I for token:I; `layout` is the layout of the spatial
    map it applies to (`channels_first` or `channels_last`: which axes `avgpool` averages)."""

    kind: str
    dim: int | None = None
    layout: str = CHANNELS_FIRST

    @property
    def spec(self) -> str:
        """The spec string this reduction parses from (`none`, `token:3`, `project:N`, ...)."""
        return f"{self.kind}:{self.dim}" if self.kind in ("project", "token") else self.kind

    def for_shape(self, shape: Sequence[int], *, layer: str = "") -> Reduction:
        """The concrete reduction of an output of this per-sample shape: `auto` resolved by
        the output kind, a vector's pooling or token choice as `none`; an InputError (one line
        naming the layer) for a reduction that does not fit the kind."""
        kind = output_kind(shape)
        named = f"layer {layer!r}" if layer else "the layer"
        if self.kind == "auto":
            return Reduction(AUTO_REDUCTIONS[kind])
        if self.kind == "project" and self.dim > math.prod(shape):
            width = math.prod(shape)
            own = f"{{{layer!r}: 'none', ...}}" if layer else "a dict plan"
            raise InputError(
                f"{self.spec} would map {named} ({width} features) up to {self.dim} dimensions; a random "
                "projection may only reduce a layer (the empty directions it adds change the geometry: "
                f"they dilute mapc); keep the layer's own width with {own} (--reduction "
                f"{layer or 'LAYER'}=none) or give N of at most {width}.",
                parameter="reduction",
            )
        if self.kind == "project" or self.kind in ("none", "flatten"):
            return self
        if kind == VECTOR:
            return Reduction("none")
        shown = "x".join(str(int(s)) for s in shape)
        if self.kind == "avgpool" and kind == TOKENS:
            raise InputError(
                f"reduction avgpool averages a (C, H, W) map over space, but {named} gives a token "
                f"sequence ({shown}: tokens x features); use mean, cls, last, token:I or flatten."
            )
        if self.kind in _TOKEN_KINDS and kind == MAP:
            raise InputError(
                f"reduction {self.spec} picks or averages tokens, but {named} gives a spatial map "
                f"({shown}); use avgpool, none or project:N there (LAYER=SPEC)."
            )
        if self.kind == "token" and not -shape[0] <= self.dim < shape[0]:
            raise InputError(
                f"reduction {self.spec}: {named} has {shape[0]} tokens (token:0 to token:{shape[0] - 1}, "
                "or negative from the end)."
            )
        return self

    def n_features(self, shape: Sequence[int]) -> int:
        """How many features a per-sample output of this shape reduces to."""
        concrete = self.for_shape(shape)
        if concrete.kind == "project":
            return int(concrete.dim)
        if concrete.kind == "avgpool":
            return int(shape[-1] if self.layout == CHANNELS_LAST else shape[0])
        if concrete.kind in _TOKEN_KINDS:
            return int(shape[1])
        return math.prod(shape)

    def cache_token(self, seed: int) -> str:
        """What the cache key records: the spec, plus the seed for a seeded projection and
        the rule for `auto`."""
        if self.kind == "auto":
            return "auto(" + ",".join(f"{k}={v}" for k, v in AUTO_REDUCTIONS.items()) + ")"
        if self.kind == "avgpool" and self.layout == CHANNELS_LAST:
            return f"{self.spec} {CHANNELS_LAST}"
        return f"{self.spec} seed={seed}" if self.kind == "project" else self.spec


def parse_reduction(spec: str | Reduction) -> Reduction:
    """Parse a spec: `auto`, `none`, `flatten`, `avgpool`, `cls`, `mean`, `last`, `token:I`
    or `project:N` (case and surrounding spaces ignored)."""
    if isinstance(spec, Reduction):
        return spec
    if not isinstance(spec, str):
        raise InputError(f"reduction must be a string, got {spec!r}; {_SPEC_HELP}.")
    text = spec.strip().lower()
    if text in _PLAIN:
        return Reduction(text)
    token = re.fullmatch(r"token\s*:\s*(-?\d+)", text)
    if token:
        return Reduction("token", int(token.group(1)))
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

    `plan` is one spec for every layer, or a dict: the key `default` (else `auto`) applies
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
    default = parsed.pop("default", Reduction("auto"))
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
    `PATTERN=SPEC` one layer or pattern; one option may hold several, comma-separated (a
    manifest cell, or `--reduction 'blocks.*=cls,logits=none'`), each split at its first `=`.

    `["avgpool", "logits=none"]` -> `{"default": "avgpool", "logits": "none"}`.

    >>> parse_reduction_options(["blocks.*=cls,logits=none", "avgpool"])
    {'blocks.*': 'cls', 'logits': 'none', 'default': 'avgpool'}
    """
    plan: dict[str, str] = {}
    items = [item.strip() for option in options for item in str(option).split(",")]
    for item in items:
        if not item:
            continue
        key, sep, spec = item.partition("=")
        key, spec = (key.strip(), spec.strip()) if sep else ("default", key.strip())
        if sep and not key:
            raise InputError(f"reduction option {item!r} has no layer before '='; use LAYER=SPEC.")
        parse_reduction(spec)
        if key in plan:
            raise InputError(f"reduction for {key!r} is given twice; give it once.")
        plan[key] = spec
    if not plan:
        raise InputError("no reduction given; name one (e.g. avgpool, or LAYER=SPEC).")
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
    return torch.cat([projection_block(seed, layer, b, in_dim, out_dim) for b in range(n_blocks)], dim=0)


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


def _token_mask(mask: torch.Tensor | None, batch: torch.Tensor, layer: str) -> torch.Tensor:
    """The (batch, T) float mask of real tokens: the attention mask, or all ones without one."""
    n, tokens = batch.shape[0], batch.shape[1]
    if mask is None:
        return torch.ones(n, tokens, device=batch.device)
    if tuple(mask.shape) != (n, tokens):
        raise InputError(
            f"the attention mask is {tuple(mask.shape)} but layer {layer!r} has {tokens} tokens per "
            "sample; use cls, token:I or flatten for this layer (LAYER=SPEC)."
        )
    return (mask != 0).to(device=batch.device, dtype=torch.float32)


def make_reducer(
    reduction: Reduction,
    shape: Sequence[int],
    *,
    layer: str,
    seed: int = 0,
    device: torch.device | str = "cpu",
    max_matrix_bytes: int = DEFAULT_MAX_MATRIX_BYTES,
) -> Callable[..., torch.Tensor]:
    """A function taking a batch of outputs (batch, *shape), and the batch's attention mask
    (batch, T) or None, to (batch, features) float32.

    `reduction` is resolved for `shape` first (`Reduction.for_shape`: `auto` by the output
    kind, an InputError for a reduction that does not fit). The result is a new tensor for
    every reduction but none/flatten, which may return a view of the input (the caller
    copies it before the model can overwrite it in place).
    """
    shape = tuple(int(s) for s in shape)
    reduction = reduction.for_shape(shape, layer=layer)
    kind = reduction.kind
    if kind in ("none", "flatten"):
        return lambda batch, mask=None: batch.reshape(batch.shape[0], -1).float()
    if kind == "avgpool":
        last = reduction.layout == CHANNELS_LAST
        spatial = tuple(range(1, len(shape))) if last else tuple(range(2, len(shape) + 1))
        return lambda batch, mask=None: batch.float().mean(dim=spatial)
    if kind in ("cls", "token"):
        index = 0 if kind == "cls" else reduction.dim
        return lambda batch, mask=None: batch[:, index].float()
    if kind == "mean":

        def mean(batch: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            weights = _token_mask(mask, batch, layer)
            total = torch.einsum("nt,ntd->nd", weights, batch.float())
            return total / weights.sum(dim=1, keepdim=True).clamp(min=1.0)

        return mean
    if kind == "last":

        def last(batch: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            weights = _token_mask(mask, batch, layer)
            positions = torch.arange(batch.shape[1], device=batch.device, dtype=torch.float32)
            index = (weights * positions).argmax(dim=1)  # the largest t with m_t = 1
            return batch[torch.arange(batch.shape[0], device=batch.device), index].float()

        return last
    projector = _Projector(
        seed, layer, math.prod(shape), reduction.dim, torch.device(device), max_matrix_bytes
    )
    return lambda batch, mask=None: projector(batch.reshape(batch.shape[0], -1).float())
