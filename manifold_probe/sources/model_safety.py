"""What a TorchScript archive or a `torch.export` program may execute, checked before it runs.

Both formats carry a program, not only weights. A program can call any operator torch
registers, and some of them touch the file system: `aten::from_file(filename, shared=True,
size)` maps a file into a tensor, creating it when missing and writing the tensor's bytes
back into it; `aten::save` writes one. Loading can also run Python code:

- `torch.export.load` unpickles parts of the archive with `weights_only=False`: weights
  and constants marked `use_pickle`, "opaque" constants (`pickle.loads`), TorchScript
  custom objects, and the sample inputs, whose safe load silently falls back to a full
  pickle load when it fails (torch 2.14, `deserialize_torch_artifact`). A planted pickle
  in `data/sample_inputs/` runs while the archive loads.
- `torch.jit.load` runs every `__setstate__` method of the archive's modules and classes
  while it loads; the graphs run at the first forward pass, which mprobe makes right after
  loading (to list the layers and their shapes).

So a program loads without `--trust-checkpoint` only when all of this holds:

- `.pt2`: every node of every graph (submodules and nested graphs included) calls an
  operator of `PURE_ATEN_OPS` (or Python's `operator.getitem` and integer arithmetic on
  symbolic sizes); no weight or constant is pickled; no custom or opaque object; every
  other pickled entry (sample inputs, legacy weight files) loads with
  `torch.load(weights_only=True)`.
- TorchScript: no `__setstate__` in the archive's code; after loading, every method of
  every submodule, with the functions and methods it calls inlined, uses only
  `PURE_ATEN_OPS` and the structural `prim::` nodes of `TORCHSCRIPT_PRIM_OPS`.

`PURE_ATEN_OPS` holds pure tensor operators: arithmetic, comparisons, reductions, shape
and indexing operations, neural-network layers, allocation of new tensors, and
TorchScript's list, string and scalar helpers. No operator in it reads or writes a file,
a process or the network. Anything else (a custom operator, a higher-order operator such
as `cond`, `prim::fork`, `prim::Print`) needs `--trust-checkpoint`. The archive is read
into memory once and checked and loaded from those same bytes, so the file cannot change
between the check and the load.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from ..errors import InputError

PURE_ATEN_OPS: frozenset[str] = frozenset(
    """
    abs absolute acos acosh adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d
    adaptive_max_pool1d adaptive_max_pool2d add add_ addcdiv addcmul addmm addmv alias
    all amax amin any arange argmax argmin as_strided asin asinh atan atan2 atanh
    avg_pool1d avg_pool2d avg_pool3d baddbmm batch_norm bernoulli_ bitwise_and bitwise_not
    bitwise_or bitwise_xor bmm broadcast_tensors cat ceil celu channel_shuffle chunk clamp
    clamp_ clamp_max clamp_min clamp_min_ clone constant_pad_nd contiguous conv1d conv2d
    conv3d conv_transpose1d conv_transpose2d conv_transpose3d _convolution convolution copy
    copy_ cos cosh cumprod cumsum detach diag diagonal dim div div_ dropout dropout_ einsum
    elu elu_ embedding empty empty_like eq erf exp expand expand_as expm1 feature_dropout
    fill_ flatten flip floor floor_divide fmod full full_like gather ge gelu glu
    group_norm gt hardsigmoid hardsigmoid_ hardswish hardswish_ hardtanh hardtanh_ index
    index_select instance_norm interpolate is_floating_point isfinite isinf isnan layer_norm
    le leaky_relu leaky_relu_ lerp lift_fresh_copy linear log log1p log_softmax logical_and
    logical_not logical_or logsumexp lt masked_fill masked_fill_ matmul max max_pool1d
    max_pool2d max_pool3d maximum mean min minimum mish mm mul mul_ narrow ne neg new_empty
    new_full new_ones new_zeros norm numel ones ones_like pad permute pixel_shuffle pow
    prelu prod reciprocal reflection_pad2d relu relu6 relu_ remainder repeat
    replication_pad2d reshape roll round rsqrt rsub scaled_dot_product_attention select
    selu sigmoid sigmoid_ sign silu silu_ sin sinh size slice softmax softplus split
    split_with_sizes sqrt square squeeze stack std sub sub_ sum sym_numel sym_size
    sym_stride t tanh tanh_ tensor tensor_split topk transpose tril triu type_as unbind
    unflatten unsqueeze upsample_bilinear2d upsample_nearest2d var view view_as where
    zero_ zeros zeros_like _native_multi_head_attention
    Bool Float Int ScalarImplicit __and__ __contains__ __getitem__ __is__ __isnot__ __not__
    __or__ _set_item append floordiv format is_autocast_enabled is_grad_enabled len list
    str warn
    """.split()
)
"""Operators (aten namespace, any overload) that only compute on tensors and values."""

TORCHSCRIPT_PRIM_OPS: frozenset[str] = frozenset(
    """
    Constant GetAttr If ListConstruct ListUnpack Loop NumToTensor RaiseException
    TupleConstruct TupleIndex TupleUnpack Uninitialized device dtype is_nested
    requires_grad type unchecked_cast layout shape min max isinstance DictConstruct
    """.split()
)
"""Structural TorchScript nodes (constants, attributes, control flow, containers)."""

EXPORT_PYTHON_TARGETS: frozenset[str] = frozenset(
    f"{module}.{name}"
    for module in ("_operator", "operator")
    for name in ("getitem", "add", "sub", "mul", "floordiv", "mod", "neg", "eq", "ne", "lt",
                 "le", "gt", "ge")
)  # fmt: skip
"""Python callables a torch.export graph may name (item access, integer size arithmetic)."""

_TRUST_HINT = "only if you trust its source, pass --trust-checkpoint to load it."


def _refuse(path: Path, kind: str, found: Iterable[str]) -> InputError:
    names = sorted(set(found))
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return InputError(f"{path} is a {kind} that can run code ({shown}); {_TRUST_HINT}")


# --- torch.export ----------------------------------------------------------------------


def _graph_targets(tree) -> Iterator[str]:
    """Every node target in a serialized exported program, nested graphs included."""
    if isinstance(tree, dict):
        if isinstance(tree.get("target"), str) and "inputs" in tree:
            yield tree["target"]
        for value in tree.values():
            yield from _graph_targets(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _graph_targets(value)


def _export_target_allowed(target: str) -> bool:
    if target in EXPORT_PYTHON_TARGETS:
        return True
    match = re.fullmatch(r"torch\.ops\.aten\.(\w+)\.\w+", target)
    return bool(match) and match.group(1) in PURE_ATEN_OPS


def _weights_only_loads(blob: bytes) -> bool:
    try:
        torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception:
        return False
    return True


def check_export_archive(data: bytes, path: Path) -> None:
    """Raise InputError unless the `.pt2` archive in `data` is safe to load and run (module
    docstring); the message names what needs `--trust-checkpoint`."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        entries = {
            name: archive.read(name)
            for name in archive.namelist()
            if name.endswith((".json", ".pt", ".pkl"))  # the entries torch parses or unpickles
        }
    unsafe: list[str] = []
    for name, blob in entries.items():
        if name.endswith(".json"):  # every JSON entry: graphs may sit under other names too
            try:
                tree = json.loads(blob)
                unsafe += [f"operator {t}" for t in _graph_targets(tree) if not _export_target_allowed(t)]
            except (ValueError, RecursionError):
                raise InputError(f"could not read checkpoint {path}: {name} is not JSON.") from None
        if name.endswith("_config.json"):
            config = tree.get("config", {}) if isinstance(tree, dict) else None
            if not isinstance(config, dict):
                raise InputError(f"could not read checkpoint {path}: {name} holds no payload config.")
            for fqn, meta in config.items():
                file = str(meta.get("path_name", "")) if isinstance(meta, dict) else ""
                if (
                    not isinstance(meta, dict)
                    or meta.get("use_pickle")
                    or not file.startswith(("weight_", "tensor_"))
                ):
                    unsafe.append(f"a pickled or custom object ({fqn})")
        elif name.endswith((".pt", ".pkl")) and not _weights_only_loads(blob):
            unsafe.append(f"a pickle that a safe load refuses ({name})")
    if unsafe:
        raise _refuse(path, "torch.export program", unsafe)


# --- TorchScript -----------------------------------------------------------------------


def check_torchscript_archive(data: bytes, path: Path) -> None:
    """Raise InputError if the TorchScript archive defines `__setstate__` (it runs on load)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            if "/code/" in f"/{name}" and b"__setstate__" in archive.read(name):
                raise _refuse(path, "TorchScript archive", ["__setstate__, run while it loads"])


def _node_kinds(block) -> Iterator[str]:
    for node in block.nodes():
        yield node.kind()
        for inner in node.blocks():
            yield from _node_kinds(inner)


def _torchscript_kind_allowed(kind: str) -> bool:
    namespace, _, name = kind.partition("::")
    if namespace == "aten":
        return name in PURE_ATEN_OPS
    return namespace == "prim" and name in TORCHSCRIPT_PRIM_OPS


def torchscript_operators(module: torch.jit.ScriptModule) -> set[str]:
    """Every node kind of every method of `module` and its submodules, calls inlined."""
    kinds: set[str] = set()
    for _, sub in module.named_modules():
        methods = sub._c._method_names() if hasattr(sub, "_c") else []
        for method in methods:
            graph = sub._c._get_method(method).graph.copy()
            torch._C._jit_pass_inline(graph)
            kinds.update(_node_kinds(graph))
    return kinds


def check_torchscript_module(module: torch.jit.ScriptModule, path: Path) -> None:
    """Raise InputError if a method of the loaded TorchScript `module` calls an operator
    outside the allowlists (module docstring)."""
    unsafe = [f"operator {k}" for k in torchscript_operators(module) if not _torchscript_kind_allowed(k)]
    if unsafe:
        raise _refuse(path, "TorchScript archive", unsafe)


def read_archive(path: Path) -> bytes:
    """The bytes of the archive at `path`, read once (checked and loaded from memory)."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"could not read checkpoint {path}: {exc.strerror}.") from None
