"""Loading a model from a file: the `--model` option.

`load_model(path)` recognises, in this order:

1. a `torch.export` program (`.pt2`, a zip archive with an `archive_format` entry):
   `torch.export.load(path).module()`. The module keeps the train/eval mode it was
   exported in (`.eval()` is not supported on it; export in eval mode) and its named
   children include torch's `_guards_fn`.
2. a TorchScript archive (a zip archive with `code/` and `constants.pkl` entries):
   `torch.jit.load`. torch 2.14 deprecates TorchScript; the FutureWarning that
   `torch.jit.load` emits is silenced here, since a user loading an archive cannot act on
   it (this docstring is the notice: prefer `torch.export`).
3. a `.safetensors` file (tensors only), read as a state_dict;
4. anything else through `torch.load(weights_only=True)`, which refuses pickled code:
   - the project checkpoint (`checkpoint.FORMAT`): the zoo rebuilds `arch(**arch_args)`;
   - a state_dict (also inside a {"state_dict": ...}, {"model": ...} or
     {"model_state_dict": ...} wrapper, with a common `module.` or `_orig_mod.` prefix
     removed) with `arch` (a zoo name, `torchvision:NAME`, `timm:NAME` or `hf:FOLDER`, see
     `named_models`), `arch_args` and `num_classes`;
   - a whole pickled nn.Module only with `trust_checkpoint=True`, which loads with
     `torch.load(weights_only=False)` and can run arbitrary code from the file.

The path may also name an architecture (`timm:NAME`, `hf:FOLDER`, `torchvision:NAME`):
that model with its seeded initial weights, or a Hugging Face folder's own weights file.

Programs (forms 1 and 2) can run code: without `trust_checkpoint=True` they load only
when `model_safety` finds nothing in them but pure tensor operators (see there).
Every failure is an InputError with one line for the user.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import io
import logging
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from ..device import model_device, resolve_device
from ..errors import InputError
from ..extraction.hooks import model_logits
from ..validation import check_count, existing_file, zip_members
from . import model_safety, named_models, zoo
from .checkpoint import check_checkpoint, checkpoint_metadata, is_project_checkpoint

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_PREFIXES = ("module.", "_orig_mod.")
_MAX_LISTED_MISMATCHES = 3


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready for inference, with what is known about it.

    `module` is in eval mode on the requested device (a torch.export module keeps the mode
    it was exported in); `kind` is one of "checkpoint", "state_dict", "torchscript",
    "export", "pickle"; `checkpoint` is a project checkpoint's metadata (no state_dict) or
    None; `digest` is `weights_digest(module.state_dict())`; `path` the file it was read
    from (None for a module built in memory).
    """

    module: nn.Module
    description: str
    kind: str
    digest: str
    checkpoint: dict | None = None
    arch: str | None = None
    arch_args: dict | None = None
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    path: str | None = None


INFO_ATTRIBUTE = "mprobe_info"
"""The attribute of a module from `api.load_model` that holds its `LoadedModel` metadata."""


def model_info(model: nn.Module | LoadedModel) -> LoadedModel:
    """What is known about `model`: the metadata `load_model` attached, else a description
    of an in-memory module; the weights digest is always computed from its current weights.

    Example
    -------
    >>> model_info(torch.nn.Linear(3, 2)).description
    'Linear (in memory)'
    """
    if isinstance(model, LoadedModel):
        return model
    if not isinstance(model, nn.Module):
        raise InputError(f"must be a torch.nn.Module, got {type(model).__name__}.", parameter="model")
    digest = weights_digest(model.state_dict())
    info = getattr(model, INFO_ATTRIBUTE, None)
    if isinstance(info, LoadedModel) and info.module is model:
        return replace(info, digest=digest)
    return LoadedModel(module=model, description=f"{type(model).__name__} (in memory)", kind="module",
                       digest=digest)  # fmt: skip


def on_device(model: nn.Module, device: str | torch.device | None) -> tuple[nn.Module, torch.device]:
    """The model on `device` (None: where it is): the model itself, or a copy when it would
    have to move (the caller's model is never moved)."""
    here = model_device(model)
    target = here if device is None else resolve_device(device)
    if target == here or (target.type == here.type and target.index is None):
        return model, here
    moved = copy.deepcopy(model).to(target)
    info = getattr(model, INFO_ATTRIBUTE, None)
    if isinstance(info, LoadedModel):
        setattr(moved, INFO_ATTRIBUTE, replace(info, module=moved))
    return moved, target


def weights_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 hex digest of a state_dict: every entry's name, dtype, shape and raw bytes.

    Entries are taken in sorted name order, so the digest depends only on the weights, not on
    the process, the device or the order modules were registered in.
    """
    sha = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name]
        if not isinstance(tensor, torch.Tensor):
            continue
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        raw = flat.view(torch.uint8).numpy().tobytes()
        header = f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0{len(raw)}\0"
        sha.update(header.encode())
        sha.update(raw)
    return sha.hexdigest()


def _zip_names(path: Path) -> list[str]:
    if not zipfile.is_zipfile(path):
        return []
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def _archive_kind(path: Path) -> str | None:
    """ "export", "torchscript" or None, from the entries of a zip archive."""
    names = _zip_names(path)
    tails = {name.split("/", 1)[-1] for name in names}
    if "archive_format" in tails:
        return "export"
    if "constants.pkl" in tails and any(tail.startswith("code/") for tail in tails):
        return "torchscript"
    return None


def _unsafe_global(message: str) -> str | None:
    """The name of the global that a weights-only load refused, if the message names one."""
    match = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", message)
    return match.group(1) if match else None


def _read_error(path: Path, exc: BaseException, note: str = "") -> InputError:
    """'could not read checkpoint PATH: [note ]<the gist of the exception>' on one line."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # skip torch's long preamble to the actual reason
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = lines[0] if lines else type(exc).__name__
    return InputError(f"could not read checkpoint {path}: {note}{reason[:200]}")


def _torch_load(path: Path, trust_checkpoint: bool):
    if zipfile.is_zipfile(path):  # torch allocates what each entry declares before inflating it
        try:
            with zipfile.ZipFile(path) as archive:
                zip_members(archive, path.stat().st_size, f"checkpoint {path}")
        except (zipfile.BadZipFile, OSError) as exc:
            raise _read_error(path, exc) from None
    try:
        with warnings.catch_warnings():
            # a plain pickle of protocol > 2 makes torch warn before it fails; the error says it
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
    except pickle.UnpicklingError as exc:
        name = _unsafe_global(str(exc))
        if not trust_checkpoint and name:
            raise InputError(
                f"{path} holds pickled Python objects ({name}) that a safe load refuses; only if "
                "you trust its source, pass --trust-checkpoint to load it with full pickle."
            ) from None
        note = "" if zipfile.is_zipfile(path) else "not a file written by torch.save: "
        raise _read_error(path, exc, note) from None
    except Exception as exc:
        raise _read_error(path, exc) from None


def _unwrap_state_dict(obj: Mapping) -> Mapping | None:
    """The tensor dict inside a state_dict or a common wrapper, prefixes stripped; else None."""
    for key in _WRAPPER_KEYS:
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        return None
    for prefix in _PREFIXES:
        if all(str(k).startswith(prefix) for k in obj):
            obj = {str(k)[len(prefix) :]: v for k, v in obj.items()}
    return obj


def _fit_state_dict(module: nn.Module, state_dict: Mapping, *, path: Path, label: str) -> None:
    """Load `state_dict` into `module` strictly, or name the first mismatches in an InputError.

    An entry the file leaves out is not missing when the model ties it to an entry the file
    has (one tensor under two names, as a language model's output embedding; `save_pretrained`
    and safetensors store it once)."""
    expected = module.state_dict()
    problems = []
    for name, tensor in state_dict.items():
        if name not in expected:
            problems.append(f"unexpected {name}")
        elif tuple(tensor.shape) != tuple(expected[name].shape):
            problems.append(
                f"{name} is {tuple(tensor.shape)} in the file but {tuple(expected[name].shape)} in the model"
            )
    given = {expected[name].data_ptr() for name in state_dict if name in expected}
    tied = {name for name in expected if name not in state_dict and expected[name].data_ptr() in given}
    problems += [f"missing {name}" for name in expected if name not in state_dict and name not in tied]
    if problems:
        shown = "; ".join(problems[:_MAX_LISTED_MISMATCHES])
        hidden = len(problems) - _MAX_LISTED_MISMATCHES
        more = f" and {hidden} more" if hidden > 0 else ""
        raise InputError(
            f"the weights in {path} do not fit {label} ({shown}{more}); "
            "check --arch, --arch-kwargs and --num-classes."
        )
    module.load_state_dict(state_dict, strict=not tied)


def _describe(arch: str, arch_args: Mapping) -> str:
    args = ", ".join(f"{k}={v}" for k, v in arch_args.items())
    return f"{arch}({args})"


def _build(arch: str, arch_args: dict, in_channels: int | None) -> tuple[nn.Module, dict, str]:
    """(fresh module, its full arguments, description) of a zoo, torchvision, timm or Hugging
    Face architecture; `in_channels` becomes the zoo's `in_channels`, timm's `in_chans`, or a
    rebuilt torchvision stem."""
    given = set(arch_args)
    if named_models.is_named(arch):
        if in_channels is not None:
            if arch.startswith(named_models.HF_PREFIX):
                raise InputError("--in-channels applies to image models; a Hugging Face config sets its own.")
            arch_args = {"in_chans": in_channels, **arch_args}
        module, description = named_models.build_named(arch, arch_args)
        return module, arch_args, description
    if in_channels is not None and not arch.startswith(zoo.TORCHVISION_PREFIX):
        arch_args = {**arch_args, "in_channels": in_channels}
    try:
        full = zoo.architecture_args(arch, arch_args)
    except InputError as exc:  # a value of arch_args: say so (the command line: --arch-kwargs)
        if exc.parameter not in given:
            raise
        raise InputError(f"{exc.parameter} {exc.message}", parameter="arch_args") from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(named_models.INIT_SEED)
        module = named_models.build_within_memory(
            lambda: zoo.build_model(arch, **full), _describe(arch, full)
        )
    if in_channels is not None and arch.startswith(zoo.TORCHVISION_PREFIX):
        named_models.set_in_channels(module, in_channels)
        full = {**full, "in_channels": in_channels}
    return module, full, _describe(arch, full)


def _from_arch(arch: str, arch_args: dict, state_dict: Mapping | None, path: Path,
               in_channels: int | None = None, *, trust_checkpoint: bool = False,
               ) -> tuple[nn.Module, dict, str]:  # fmt: skip
    """(module with the weights of `state_dict`, its arguments, description). A Hugging Face
    architecture loads through transformers' own `from_pretrained` (its checkpoint names are
    converted as transformers converts them); `state_dict` None: the folder's own weights."""
    if arch.startswith(named_models.HF_PREFIX):
        if in_channels is not None:
            raise InputError("--in-channels applies to image models; a Hugging Face config sets its own.")
        folder = Path(arch[len(named_models.HF_PREFIX) :]).expanduser()
        module = named_models.load_pretrained(folder, arch_args, state_dict=state_dict,
                                              trust_checkpoint=trust_checkpoint)  # fmt: skip
        return module, arch_args, _describe(arch, arch_args) if arch_args else arch
    module, full, description = _build(arch, arch_args, in_channels)
    _fit_state_dict(module, state_dict, path=path, label=description)
    return module, full, description


IMPORTABLE_FOR_EXPORTS = ("transformers.", "timm.")
"""Packages whose modules an export may need imported to read its output types (their
classes register themselves with torch's pytree when imported); others are named, not imported."""


def _unregistered_type(messages: list[str]) -> str | None:
    """The class a torch.export load could not rebuild ('Deserializing X in pytree is not
    registered'), from torch's log messages."""
    for message in messages:
        match = re.search(r"Deserializing ([\w.]+) in pytree is not registered", message)
        if match:
            return match.group(1)
    return None


class _ExportLog(logging.Handler):
    """Collects what torch.export logs while a program loads (its traceback of a failure)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f"\n{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        self.messages.append(text)


def _export_program(data: bytes, path: Path):
    """torch.export.load of the archive's bytes, torch's log kept off the terminal. A program
    whose output type comes from a module not imported yet (a Hugging Face `ModelOutput`) is
    loaded again after importing that module when it is in IMPORTABLE_FOR_EXPORTS, else an
    InputError names the module."""
    logger = logging.getLogger("torch.export")
    for attempt in range(2):
        handler = _ExportLog()
        handlers, propagate = logger.handlers, logger.propagate
        logger.handlers, logger.propagate = [handler], False
        try:
            program = torch.export.load(io.BytesIO(data))
        except Exception as exc:
            handler.messages.append(str(exc))
            program = None
        finally:
            logger.handlers, logger.propagate = handlers, propagate
        missing = _unregistered_type(handler.messages)
        if program is not None and missing is None:
            return program
        if missing is None:
            reason = next((m for m in reversed(handler.messages) if m.strip()), "unreadable archive")
            raise _read_error(path, RuntimeError(reason.strip().splitlines()[-1]))
        module_name = missing.rpartition(".")[0]
        if attempt == 0 and module_name.startswith(IMPORTABLE_FOR_EXPORTS):
            try:
                importlib.import_module(module_name)
                continue
            except ImportError:
                pass
        raise InputError(
            f"{path} returns a {missing}, a type torch can rebuild only once its module is imported: "
            f"install {module_name.partition('.')[0]} and, in Python, import {module_name} before loading."
        )
    raise AssertionError("unreachable")


class FixedBatch(nn.Module):
    """A torch.export program exported with a fixed batch size B, run on any number of inputs:
    the batch is cut into chunks of B rows, the last one padded with copies of its last row,
    and the padded rows' outputs dropped. Its output is the program's logits
    (`hooks.model_logits`)."""

    def __init__(self, program: nn.Module, batch_size: int):
        super().__init__()
        self.program = program
        self.batch_size = batch_size

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        outputs = []
        for start in range(0, len(inputs), self.batch_size):
            chunk = inputs[start : start + self.batch_size]
            n = len(chunk)
            if n < self.batch_size:
                chunk = torch.cat([chunk, chunk[-1:].expand(self.batch_size - n, *chunk.shape[1:])])
            outputs.append(model_logits(self.program(chunk))[:n])
        return torch.cat(outputs)


def _static_batch(program) -> int | None:
    """The batch size a program was exported with when it is fixed (a plain int in the first
    input's shape), None when it is dynamic or the program takes other than one tensor."""
    names = list(program.graph_signature.user_inputs)
    nodes = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    value = nodes[names[0]].meta.get("val") if len(names) == 1 and names[0] in nodes else None
    if value is None or not hasattr(value, "shape") or len(value.shape) == 0:
        return None
    first = value.shape[0]
    return first if isinstance(first, int) else None


def _load_export(path: Path, trust_checkpoint: bool) -> tuple[nn.Module, tuple[int, ...] | None]:
    """The program's module (wrapped in FixedBatch when its batch size is fixed) and its
    per-sample input shape when it takes one tensor."""
    data = model_safety.read_archive(path)
    model_safety.check_archive_size(data, path)
    if not trust_checkpoint:
        model_safety.check_export_archive(data, path)
    program = _export_program(data, path)
    try:
        module = program.module()
    except Exception as exc:
        raise _read_error(path, exc) from None
    args = program.example_inputs[0] if program.example_inputs else ()
    single_tensor = len(args) == 1 and isinstance(args[0], torch.Tensor)
    shape = tuple(args[0].shape[1:]) if single_tensor else None
    batch = _static_batch(program) if single_tensor else None
    return (FixedBatch(module, batch) if batch is not None else module), shape


def _load_torchscript(path: Path, device: torch.device, trust_checkpoint: bool) -> nn.Module:
    data = model_safety.read_archive(path)
    model_safety.check_archive_size(data, path)
    if not trust_checkpoint:
        model_safety.check_torchscript_archive(data, path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=FutureWarning)
        try:
            module = torch.jit.load(io.BytesIO(data), map_location=device)
        except Exception as exc:
            raise _read_error(path, exc) from None
    if not trust_checkpoint:
        model_safety.check_torchscript_module(module, path)
    return module


def _named_source(path) -> str | None:
    """`path` itself when it names an architecture rather than a file (`timm:NAME`, `hf:PATH`,
    `torchvision:NAME`); `hf:PATH` for a folder holding a Hugging Face config.json."""
    if isinstance(path, str) and (named_models.is_named(path) or path.startswith(zoo.TORCHVISION_PREFIX)):
        return path
    if isinstance(path, (str, os.PathLike)) and (Path(path).expanduser() / "config.json").is_file():
        return f"{named_models.HF_PREFIX}{path}"  # a Hugging Face folder from save_pretrained
    return None


def load_model(
    path: str | os.PathLike | None,
    *,
    arch: str | None = None,
    num_classes: int | None = None,
    arch_args: dict | None = None,
    in_channels: int | None = None,
    trust_checkpoint: bool = False,
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """The model stored at `path` (see the module docstring for the accepted forms).

    `arch`, `num_classes` and further `arch_args` (e.g. width and depth of a zoo net, a
    timm model's `in_chans`, a Hugging Face config's fields) describe a bare state_dict or
    safetensors file (num_classes defaults to the architecture's default: 10 for the zoo,
    1000 for torchvision); `in_channels` rebuilds a torchvision stem (or sets the zoo's and
    timm's input channels). `path` may also be an architecture itself (`timm:NAME`,
    `hf:FOLDER`, `torchvision:NAME`), or None with `arch`: that model with its initial
    weights (seeded, `named_models.INIT_SEED`), or the weights of the Hugging Face folder.
    The other forms carry their own architecture and ignore these. Raises InputError for a
    missing or unreadable file, a refused pickle, or weights that do not fit.
    """
    given_args = dict(arch_args or {})
    if num_classes is not None:  # checked here: a bad value in arch_args is then arch_args' own
        given_args["num_classes"] = check_count(num_classes, name="num_classes", minimum=1)
    if (named := _named_source(path)) is not None:
        if arch is not None and arch != named:
            raise InputError(f"the model {named} is an architecture; give either it or --arch {arch}.")
        path, arch = None, named
    if path is None:
        if arch is None:
            raise InputError(
                "give a model file, or an architecture (timm:NAME, hf:FOLDER, torchvision:NAME)."
            )
        weights = None
        if arch.startswith(named_models.HF_PREFIX):
            weights = named_models.hf_weights(Path(arch[len(named_models.HF_PREFIX) :]).expanduser())
        if weights is not None:
            module, full, description = _from_arch(arch, given_args, None, weights, in_channels,
                                                   trust_checkpoint=trust_checkpoint)  # fmt: skip
            kind, description, source = "state_dict", f"{weights} ({description})", str(weights)
        else:
            module, full, description = _build(arch, given_args, in_channels)
            kind, source = "named", None
            description = f"{description} (initial weights, seed {named_models.INIT_SEED})"
        return _finish(module, device, kind=kind, description=description, arch=arch, arch_args=full,
                       num_classes=full.get("num_classes"), input_shape=_input_shape(arch, full),
                       path=source)  # fmt: skip

    path = existing_file(path, what="checkpoint")
    archive = _archive_kind(path)
    fields: dict = {}

    if archive == "export":
        module, shape = _load_export(path, trust_checkpoint)
        fields = {"kind": "export", "description": f"{path} (torch.export)", "input_shape": shape}
    elif archive == "torchscript":
        module = _load_torchscript(path, resolve_device(device), trust_checkpoint)
        fields = {"kind": "torchscript", "description": f"{path} (TorchScript)"}
    else:
        obj = _read_weights_file(path, trust_checkpoint)
        if isinstance(obj, nn.Module):
            module = obj
            fields = {"kind": "pickle", "description": f"{path} (pickled {type(obj).__name__})"}
        elif is_project_checkpoint(obj):
            ckpt = check_checkpoint(obj, source=str(path))
            full = zoo.architecture_args(ckpt["arch"], dict(ckpt["arch_args"]))
            module, full, description = _from_arch(ckpt["arch"], full, ckpt["state_dict"], path)
            fields = {
                "kind": "checkpoint",
                "description": f"{path} ({description})",
                "checkpoint": checkpoint_metadata(ckpt),
                "arch": ckpt["arch"],
                "arch_args": full,
                "input_shape": zoo.input_shape(ckpt["arch"], full),
                "num_classes": full["num_classes"],
            }
        elif isinstance(obj, Mapping) and (state_dict := _unwrap_state_dict(obj)) is not None:
            if arch is None:
                raise InputError(
                    f"{path} is a bare state_dict, which does not say what network it belongs "
                    "to; pass --arch (torchvision:NAME, timm:NAME, hf:FOLDER or a zoo name) and "
                    "--num-classes."
                )
            module, full, description = _from_arch(arch, given_args, state_dict, path, in_channels)
            fields = {
                "kind": "state_dict",
                "description": f"{path} ({description})",
                "arch": arch,
                "arch_args": full,
                "input_shape": _input_shape(arch, full),
                "num_classes": full.get("num_classes"),
            }
        else:
            raise InputError(
                f"{path} holds a {type(obj).__name__}, not a model: expected a manifold-probe "
                "checkpoint, a state_dict, a TorchScript archive or a torch.export program."
            )
    return _finish(module, device, **fields)


def _input_shape(arch: str, arch_args: dict) -> tuple[int, ...] | None:
    return None if named_models.is_named(arch) else zoo.input_shape(arch, arch_args)


def _read_weights_file(path: Path, trust_checkpoint: bool):
    """What a weights file holds: a `.safetensors` file's tensors, else `torch.load`'s object."""
    if path.suffix == ".safetensors":
        return named_models.read_safetensors(path)
    return _torch_load(path, trust_checkpoint)


def _finish(module: nn.Module, device, **fields) -> LoadedModel:
    """The LoadedModel of a built or read module: in eval mode (a torch.export program keeps
    its mode) on `device`."""
    digest = weights_digest(module.state_dict())
    if fields["kind"] != "export":
        module.eval()
    module.to(resolve_device(device))
    return LoadedModel(module=module, digest=digest, **fields)


def forward_failure(exc: BaseException, models: list[str]) -> InputError | None:
    """One line for an error raised while a loaded program ran, else None.

    A TorchScript interpreter error prints both tracebacks (about 20 lines); its last line
    is the reason. A torch.export program checks its inputs against guards: one exported
    with a fixed batch size fails on any other batch (`Guard failed: input.size()[0] == 2`).
    `models` are the --model paths, named in the message.
    """
    names = ", ".join(models) if models else "the model"
    text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if isinstance(exc, torch.jit.Error):
        reason = lines[-1] if lines else type(exc).__name__
        return InputError(f"the model {names} failed in its forward pass: {reason[:300]}")
    if "Guard failed" in text or "Expected input at" in text:
        return InputError(
            f"the model {names} accepts only inputs of the shape it was exported with "
            f"({lines[0][:200]}); export it with a dynamic batch dimension "
            "(dynamic_shapes={0: torch.export.Dim('batch')})."
        )
    return None
