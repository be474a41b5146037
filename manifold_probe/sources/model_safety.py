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

- Every entry of the archive is one the check knows, by its exact name (`EXPORT_ENTRIES`,
  `TORCHSCRIPT_ENTRIES`: graphs, configs, weights, sample inputs, code, metadata, `extra/`
  files read as text), under one root folder; anything else refuses the file: an AOTInductor
  library (`data/aotinductor/`, a shared object torch's loader opens), an unknown entry, or a
  name that matches a known one only when case is ignored (torch's zip reader finds entries
  whatever their case, and `torch.export.load` loads every file under `models/` as a program,
  `models/model.JSON` included). No two entries may share a name ignoring case.
- `.pt2`: every node of every graph (submodules and nested graphs included) calls an
  operator of `PURE_ATEN_OPS` (or Python's `operator.getitem` and integer arithmetic on
  symbolic sizes); no weight or constant is pickled; no custom or opaque object; every
  other pickled entry (sample inputs, legacy weight files) loads with
  `torch.load(weights_only=True)`.
- TorchScript: no `__setstate__` in the archive's code; after loading, every callable
  reachable from the root module (every method of every submodule, and every forward hook
  and forward pre-hook of every module, the root's included, with the functions and methods
  they call inlined) uses only `PURE_ATEN_OPS` and the structural `prim::` nodes of
  `TORCHSCRIPT_PRIM_OPS`.

`PURE_ATEN_OPS` holds pure tensor operators: arithmetic, comparisons, reductions, shape
and indexing operations, neural-network layers, allocation of new tensors, and
TorchScript's list, string and scalar helpers. No operator in it reads or writes a file,
a process or the network. Anything else (a custom operator, a higher-order operator such
as `cond`, `prim::fork`, `prim::Print`) needs `--trust-checkpoint`. The archive is read
into memory once and checked and loaded from those same bytes, so the file cannot change
between the check and the load; its entries may decompress to at most `validation.EXPANSION`
times its size (checked before any is read, trusted or not).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from ..errors import InputError
from ..validation import zip_members

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

_PART = r"[A-Za-z0-9_][\w.-]*"  # one path component: no leading dot, so never `..`
_METADATA = rf"byteorder|\.data/version|\.data/serialization_id|extra/(?:{_PART}/)*{_PART}"

EXPORT_ENTRIES: dict[str, str] = {
    "program": rf"models/{_PART}\.json",
    "payload config": rf"data/(?:weights/{_PART}_weights|constants/{_PART}_constants)_config\.json",
    "tensor": r"data/weights/weight_\d+|data/constants/tensor_\d+",
    "pickle": rf"data/sample_inputs/{_PART}\.pt|data/(?:weights|constants)/{_PART}\.pt",
    "metadata": rf"archive_format|archive_version|{_METADATA}",
}
"""The entries of a `.pt2` archive (below its root folder) by role, as exact patterns."""

TORCHSCRIPT_ENTRIES: dict[str, str] = {
    "code": rf"code/(?:{_PART}/)*{_PART}\.py",
    "pickle": rf"data\.pkl|constants\.pkl|traced_inputs\.pkl|code/(?:{_PART}/)*{_PART}\.py\.debug_pkl",
    "tensor": r"data/\d+|constants/\d+|traced_inputs/\d+",
    "metadata": rf"version|{_METADATA}",
}
"""The entries of a TorchScript archive (below its root folder) by role, as exact patterns."""

AOTINDUCTOR_DIR = "data/aotinductor/"
"""Where a `.pt2` archive keeps AOTInductor's compiled code (shared objects torch's loader opens)."""


@contextlib.contextmanager
def _members(data: bytes, path: Path) -> Iterator[tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]]:
    """The zip archive in `data` and its members, checked to decompress to at most
    `validation.expansion_limit(len(data))` bytes; any failure to read it an InputError."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            yield archive, zip_members(archive, len(data), f"checkpoint {path}")
    except InputError:
        raise
    except Exception as exc:  # zipfile, zlib and the decompressors each raise their own
        raise InputError(f"could not read checkpoint {path}: {exc}.") from None


def check_archive_size(data: bytes, path: Path) -> None:
    """Refuse the archive in `data` if its entries decompress past their bound (trusted or not)."""
    with _members(data, path):
        pass


def _role(name: str, table: dict[str, str]) -> str | None:
    return next((role for role, pattern in table.items() if re.fullmatch(pattern, name)), None)


def archive_entries(
    data: bytes, path: Path, kind: str, table: dict[str, str]
) -> dict[str, tuple[str, bytes]]:
    """Every entry of the zip archive in `data` as {name below the root: (role, bytes)}, or
    InputError: a damaged archive or one that decompresses past its bound (whether trusted or
    not), or, listing each, entries that refuse the file without --trust-checkpoint (native
    code, names the check does not know, names equal ignoring case, several roots)."""
    with _members(data, path) as (archive, members):
        contents = [(info.filename, archive.read(info)) for info in members]
    unsafe: list[str] = []
    roots = {name.partition("/")[0] for name, _ in contents}
    if len(roots) != 1:
        unsafe.append(f"entries under {len(roots)} root folders")
    entries: dict[str, tuple[str, bytes]] = {}
    seen: dict[str, str] = {}
    for full, blob in contents:
        name = full.partition("/")[2]
        twin = seen.setdefault(name.lower(), name)
        if twin != name or name in entries:
            unsafe.append(f"two entries named {twin} and {name}, one name to torch's zip reader")
            continue
        role = _role(name, table)
        if role is None:
            known = _role(name.lower(), {k: v.lower() for k, v in table.items()})
            unsafe.append(
                f"AOTInductor compiled code {name}" if name.lower().startswith(AOTINDUCTOR_DIR)
                else f"{name}, a {known} entry only if case is ignored" if known
                else f"an entry it cannot check: {name}"
            )  # fmt: skip
            continue
        entries[name] = (role, blob)
    if unsafe:
        raise _refuse(path, kind, unsafe)
    return entries


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
    kind = "torch.export program"
    unsafe: list[str] = []
    for name, (role, blob) in archive_entries(data, path, kind, EXPORT_ENTRIES).items():
        if role in ("program", "payload config"):
            try:
                tree = json.loads(blob)
            except (ValueError, RecursionError):
                raise InputError(f"could not read checkpoint {path}: {name} is not JSON.") from None
        if role == "program":
            unsafe += [f"operator {t}" for t in _graph_targets(tree) if not _export_target_allowed(t)]
        elif role == "payload config":
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
        elif role == "pickle" and not _weights_only_loads(blob):
            unsafe.append(f"a pickle that a safe load refuses ({name})")
    if unsafe:
        raise _refuse(path, kind, unsafe)


# --- TorchScript -----------------------------------------------------------------------


def check_torchscript_archive(data: bytes, path: Path) -> None:
    """Raise InputError unless every entry of the TorchScript archive is known and its code
    defines no `__setstate__` (which runs while it loads)."""
    kind = "TorchScript archive"
    for role, blob in archive_entries(data, path, kind, TORCHSCRIPT_ENTRIES).values():
        if role == "code" and b"__setstate__" in blob:
            raise _refuse(path, kind, ["__setstate__, run while it loads"])


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


def _callables(module: torch.jit.ScriptModule) -> Iterator[torch.Graph]:
    """The graph of every callable reachable from `module`: every method of it and of every
    submodule, and every forward hook and forward pre-hook of each (the root's are not
    methods and are called by no graph: they run around its forward)."""
    for _, sub in module.named_modules():
        compiled = getattr(sub, "_c", None)
        if compiled is None:
            continue
        for method in compiled._method_names():
            yield compiled._get_method(method).graph
        for hook in (*compiled._get_forward_pre_hooks(), *compiled._get_forward_hooks()):
            yield hook.graph


def torchscript_operators(module: torch.jit.ScriptModule) -> set[str]:
    """Every node kind of every callable reachable from `module` (`_callables`), calls inlined."""
    kinds: set[str] = set()
    for graph in _callables(module):
        graph = graph.copy()
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
