"""Discovering a model's layers and choosing which ones to extract.

`list_layers` runs one forward pass on an example batch with a hook on every module and
lists each call that produced a per-sample tensor, in the order the outputs were produced
(a container's output comes after those of the modules inside it), then `logits`, the
model's output. Naming follows `hooks`: module paths, `path#k` for repeated calls.

`default_layers` picks the outputs of the model's blocks, the layers a geometry profile
plots: the model's repeated block list wherever it sits (BERT `bert.encoder.layer.N`, GPT-2
`transformer.h.N`, torchvision ViT `encoder.layers.encoder_layer_N`, timm `blocks.N`, ResNet
`layerN.M`), the final normalisation after it, and the logits. The rules, in order:

1. The candidates are the model's top-level children. A plain container (exactly
   `nn.Sequential`, `nn.ModuleList` or `nn.ModuleDict`, not a subclass with its own
   meaning such as torchvision's `Conv2dNormActivation`) is replaced by its children,
   recursively: ResNet's `layer2` becomes the blocks `layer2.0`, `layer2.1`; VGG's
   `features` becomes its convolutions, activations and poolings.
2. A top-level module that holds a stack at any depth (a plain container of at least 3
   blocks of one type: torchvision ViT's `encoder.layers`, BERT's `bert.encoder.layer`,
   GPT-2's `transformer.h`) contributes the stack's blocks, then the normalisation layers
   that are direct children of the stack's enclosing modules and run after its last block
   (the final norm: `encoder.ln`, `transformer.ln_f`), then its own output.
3. The calls of the candidates, in forward order, are grouped into units: a module with
   submodules (a block) or any other leaf (convolution, linear, pooling, ...) starts a
   unit; a parameter-free activation or a normalisation layer after it joins that unit,
   as do pass-through modules (Identity, Flatten, Unflatten, dropout, which in eval mode
   only repeat their input). A unit's layer is its last member that is not pass-through,
   so `conv, bn, relu` gives the relu output once, and `pool, flatten` gives the pool
   output with its spatial shape. A unit of pass-through modules alone (a leading
   Flatten: the input itself) gives no layer. Nothing joins a block (a module with
   submodules, in a stack or not): the norm after timm's last block (`norm`) is a layer of its
   own, at any depth.
4. A layer whose output is the very tensor of the layer before it (a wrapper returning
   its final norm's output) is listed once, under the first name. A unit whose output is
   the model's output itself (a final Linear) is listed as `logits`, which always closes
   the list.

Layer patterns (`select_layers`, `--layers`) are names or globs over the dotted names, where
a wildcard stays within one dotted level: `*` matches any run of characters other than a
dot, `?` one such character, `[...]` one character of a set, and `**` any run including
dots. `blocks.*` matches `blocks.3`, not `blocks.3.attn.qkv`; `blocks.**` matches both;
`layer*` matches `layer1` but not `layer1.0`; `**.ln_*` matches `encoder.layers.ln_1`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from ..device import model_device
from ..errors import InputError
from .hooks import LOGITS, OPAQUE_HINT, LayerRecorder, eval_mode, split_layer_name, to_device
from .patterns import layer_matches
from .reductions import CHANNELS_FIRST, CHANNELS_LAST, MAP, output_kind

_PLAIN_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_PASS_THROUGH = (
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
_NORMALISATIONS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.RMSNorm,
)
_MIN_STACK = 3


@dataclass(frozen=True)
class LayerInfo:
    """One layer a model produces: a module call (or the model output, `logits`).

    `output_shape` is per sample (the batch dimension dropped); `call_index` counts the
    calls of the module within one forward pass from 1 (`name#2` has call_index 2);
    `default` says whether it is among `default_layers` (set by the API's `list_layers`);
    `layout` is a spatial map's `channels_first` (C, H, W) or `channels_last` (H, W, C, as
    timm's Swin stages give), "" for other kinds (`detect_layouts`).
    """

    name: str
    module_type: str
    output_shape: tuple[int, ...]
    call_index: int
    default: bool = False
    layout: str = ""

    @property
    def n_features(self) -> int:
        """Number of values per sample (the flattened output size)."""
        return math.prod(self.output_shape)

    @property
    def kind(self) -> str:
        """`vector`, `token sequence` or `spatial map` (`reductions.output_kind`), which
        decides the reductions that apply (`auto`: mean over tokens, else none)."""
        return output_kind(self.output_shape)


@dataclass(frozen=True)
class _Traced:
    info: LayerInfo
    module: nn.Module
    output: torch.Tensor


def _trace(model: nn.Module, example_input: torch.Tensor) -> list[_Traced]:
    """Every per-sample output of one forward pass on `example_input`, in production order."""
    modules = dict(model.named_modules())
    traced: list[_Traced] = []

    def keep(name: str, tensor: torch.Tensor) -> None:
        path, call = split_layer_name(name)
        module = model if name == LOGITS else modules[path]
        info = LayerInfo(name, type(module).__name__, tuple(tensor.shape[1:]), call)
        traced.append(_Traced(info, module, tensor))

    inputs = to_device(example_input, model_device(model))
    with torch.inference_mode(), eval_mode(model), LayerRecorder(model, None, keep) as recorder:
        recorder.forward(inputs)
    # The model output comes last; a module literally named `logits` would clash with it,
    # and the output wins.
    if not traced or traced[-1].info.name != LOGITS:
        raise InputError(
            "the model's output is not a tensor with one row per sample; "
            "give a classifier that returns logits."
        )
    traced = [t for t in traced[:-1] if t.info.name != LOGITS] + [traced[-1]]
    layouts = detect_layouts([(t.module, t.info.output_shape) for t in traced])
    return [
        replace(t, info=replace(t.info, layout=layout)) for t, layout in zip(traced, layouts, strict=True)
    ]


_POOLS = nn.modules.pooling
_CHANNELS_FIRST_MODULES = (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase, nn.GroupNorm,
                           _POOLS._MaxPoolNd, _POOLS._AvgPoolNd, _POOLS._AdaptiveAvgPoolNd,
                           _POOLS._AdaptiveMaxPoolNd)  # fmt: skip


def _module_layout(module: nn.Module) -> str | None:
    """The layout a module's own type fixes for a spatial map it outputs, or None when its
    type says nothing (an activation, a block): a Linear or a LayerNorm acts on the last axis
    (channels last) unless it is a `...2d` variant that permutes first; convolutions,
    batch norms and poolings act on axis 1; timm's patch embedding says its `output_fmt`."""
    declared = str(getattr(module, "output_fmt", "") or "")
    if "NHWC" in declared or "NLC" in declared:
        return CHANNELS_LAST
    if "NCHW" in declared:
        return CHANNELS_FIRST
    if isinstance(module, _CHANNELS_FIRST_MODULES):
        return CHANNELS_FIRST
    if isinstance(module, (nn.Linear, nn.LayerNorm, nn.RMSNorm)):
        return CHANNELS_FIRST if "2d" in type(module).__name__.lower() else CHANNELS_LAST
    return None


def detect_layouts(calls: Sequence[tuple[nn.Module, tuple[int, ...]]]) -> list[str]:
    """The layout of each (module, per-sample output shape) of one forward pass, in production
    order: "" for vectors and token sequences; for a spatial map, what the module's type fixes
    (`_module_layout`), else (a block, an activation: the probe) the layout of the most recent
    earlier output of the same shape whose layout is known, which for a block is the last
    module inside it that made a map of its shape (a Swin block's MLP: channels last; a
    ConvNeXt block's depthwise convolution: channels first); channels first when none is."""
    layouts: list[str] = []
    known: list[tuple[tuple[int, ...], str]] = []
    for module, shape in calls:
        if output_kind(shape) != MAP:
            layouts.append("")
            continue
        layout = _module_layout(module)
        if layout is None:
            layout = next((seen for same, seen in reversed(known) if same == shape), CHANNELS_FIRST)
        known.append((shape, layout))
        layouts.append(layout)
    return layouts


def list_layers(model: nn.Module, example_input: torch.Tensor) -> list[LayerInfo]:
    """Every layer of the model that one forward pass on `example_input` (a batch) produces.

    In production order, `logits` last; calls whose output is not a per-sample tensor are
    left out. For a TorchScript or torch.export model this is `logits` alone.
    """
    return [t.info for t in _trace(model, example_input)]


def _is_plain_container(module: nn.Module) -> bool:
    return type(module) in _PLAIN_CONTAINERS


def _is_stack(module: nn.Module) -> bool:
    """A plain container of at least 3 blocks (modules with submodules) of one type."""
    blocks = list(module.children())
    return (
        _is_plain_container(module)
        and len(blocks) >= _MIN_STACK
        and all(any(True for _ in block.children()) for block in blocks)
        and len({type(block) for block in blocks}) == 1
    )


def _stacks_below(module: nn.Module, prefix: str) -> list[tuple[str, list[str]]]:
    """Every stack inside `module` at any depth (rule 2), not looking inside a stack: its
    path and the paths of the modules that enclose it (`prefix` first)."""
    found = []
    for name, child in module.named_children():
        path = f"{prefix}.{name}"
        if _is_stack(child):
            found.append((path, [prefix]))
        else:
            found += [(stack, [prefix, *around]) for stack, around in _stacks_below(child, path)]
    return found


@dataclass(frozen=True)
class _Candidates:
    """Module paths that can be default layers (rules 1 and 2): all of them, the blocks of a
    stack, and the final norms of rule 2 (listed only after a stack's block)."""

    paths: frozenset[str]
    stack_blocks: frozenset[str]
    final_norms: frozenset[str]


def _candidate_paths(model: nn.Module) -> _Candidates:
    """The candidates of rules 1 and 2."""
    modules = dict(model.named_modules())
    paths: set[str] = set()
    blocks: set[str] = set()
    norms: set[str] = set()

    def visit(module: nn.Module, prefix: str, top: bool) -> None:
        if prefix and _is_stack(module):
            blocks.update(f"{prefix}.{block}" for block, _ in module.named_children())
        for name, child in module.named_children():
            path = f"{prefix}.{name}" if prefix else name
            if _is_plain_container(child):
                visit(child, path, top=False)
                continue
            stacks = _stacks_below(child, path) if top else []
            for stack, enclosing_paths in stacks:
                visit(modules[stack], stack, top=False)
                for enclosing in enclosing_paths:
                    norms.update(
                        f"{enclosing}.{sibling_name}"
                        for sibling_name, sibling in modules[enclosing].named_children()
                        if isinstance(sibling, _NORMALISATIONS)
                    )
            paths.add(path)

    visit(model, "", top=True)
    return _Candidates(frozenset(paths | norms), frozenset(blocks), frozenset(norms))


def _role(module: nn.Module) -> str:
    """`starts` (a block or a leaf that computes), `joins` (activation, norm), `passes`."""
    if any(True for _ in module.children()):
        return "starts"
    if isinstance(module, _PASS_THROUGH):
        return "passes"
    if isinstance(module, _NORMALISATIONS):
        return "joins"
    is_activation = type(module).__module__ == "torch.nn.modules.activation"
    if is_activation and not any(True for _ in module.parameters()):
        return "joins"
    return "starts"


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.data_ptr() == b.data_ptr()
        and a.shape == b.shape
        and a.stride() == b.stride()
        and a.device == b.device
    )


def default_layers(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    """The outputs of the model's blocks, its final norm, then `logits` (the rules in this
    module's docstring)."""
    traced = _trace(model, example_input)
    logits = traced[-1]
    candidates = _candidate_paths(model)
    units: list[list[tuple[_Traced, str]]] = []
    after_block = False  # whether a block of a stack has run yet
    for t in traced[:-1]:
        path, _ = split_layer_name(t.info.name)
        if path not in candidates.paths or (path in candidates.final_norms and not after_block):
            continue
        role = _role(t.module)
        opener = units[-1][0][0] if units else None
        # nothing joins a block (rule 3): its output is a layer of its own, whatever follows
        unit_is_block = opener is not None and any(True for _ in opener.module.children())
        if role != "starts" and units and not unit_is_block and path not in candidates.final_norms:
            units[-1].append((t, role))
        else:
            units.append([(t, role)])
        after_block = after_block or path in candidates.stack_blocks
    chosen: list[_Traced] = []
    for unit in units:
        members = [t for t, role in unit if role != "passes"]
        if not members or _same_tensor(members[-1].output, logits.output):
            continue
        if chosen and _same_tensor(members[-1].output, chosen[-1].output):
            continue  # rule 4: a wrapper repeating its last layer's output
        chosen.append(members[-1])
    return [*(t.info.name for t in chosen), LOGITS]


def _split_patterns(patterns: Sequence[str]) -> list[str]:
    if isinstance(patterns, str):
        patterns = [patterns]
    split = [part.strip() for pattern in patterns for part in pattern.split(",")]
    return [part for part in split if part]


def select_layers(model: nn.Module, example_input: torch.Tensor, patterns: Sequence[str] | None) -> list[str]:
    """The layers named by `patterns` (names or globs whose wildcards stay within one dotted
    level, `**` crossing levels: see `patterns.layer_matches`; commas also separate them), in model
    order; `None` or an empty list gives `default_layers`.

    A pattern that matches no layer is an input error naming a few valid layers.
    """
    wanted = _split_patterns(patterns or [])
    if not wanted:
        return default_layers(model, example_input)
    names = [info.name for info in list_layers(model, example_input)]
    chosen: set[str] = set()
    for pattern in wanted:
        hits = [name for name in names if layer_matches(name, pattern)]
        if not hits:
            raise InputError(_no_match_message(model, pattern, names))
        chosen.update(hits)
    return [name for name in names if name in chosen]


def _no_match_message(model: nn.Module, pattern: str, names: list[str]) -> str:
    if names == [LOGITS] and any(True for _ in model.children()):
        return f"layer pattern {pattern!r} matches nothing: {OPAQUE_HINT}."
    step = max(1, len(names) // 6)
    examples = names[::step][:6]
    if names[-1] not in examples:
        examples.append(names[-1])
    return (
        f"layer pattern {pattern!r} matches no layer of this model (it has "
        f"{', '.join(examples)}, ...); list_layers(model) (`mprobe layers --model ...`) lists them all."
    )
