"""Capturing layer outputs with forward hooks, in one forward pass.

Layer names (the same as `layers.list_layers` gives):

- a module's path as in `model.named_modules()` (`features.3`, `layer2.1`), the path
  torchvision.models.feature_extraction uses;
- `path#k` for the k-th call of a module called more than once in one forward pass
  (the first call is plain `path`);
- `logits` for the model's own output;
- `<input of path>` for what the module at `path` receives (its first positional argument,
  captured by a forward pre-hook): the classifier's input, the penultimate features, is
  captured this way in the same pass as the layers (`input_name`).

A module's output that is a tuple, list or dict (a namedtuple, a Hugging Face `ModelOutput`)
is represented by its first tensor, searched depth first in order (dict values in insertion
order); the model's own output is its `logits` entry or attribute when it has one
(`model_logits`), so a Hugging Face classifier's `logits` layer is its logits. Outputs whose
first dimension is not the batch are not per-sample activations and are skipped.

Hooks see outputs while the forward pass is still running: a later in-place operation
(`ReLU(inplace=True)`) may overwrite the very tensor the hook saw. The callback must copy
the tensor before returning (the extractor copies it into its own array right away).

TorchScript modules do not run Python hooks (registering one on the root raises; on a
submodule it is silently never called), and a `torch.export` program calls no submodules, so
for both only `logits`, the model's return value, can be captured.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping

import torch
from torch import nn

from ..errors import InputError

LOGITS = "logits"
"""The name of the model's output among the layers."""

INPUT_PREFIX, INPUT_SUFFIX = "<input of ", ">"


def input_name(path: str) -> str:
    """The layer name of the input of the module at `path` (captured by a forward pre-hook)."""
    return f"{INPUT_PREFIX}{path}{INPUT_SUFFIX}"


def input_path(name: str) -> str | None:
    """The module path of an `input_name`, or None for an output's name."""
    if name.startswith(INPUT_PREFIX) and name.endswith(INPUT_SUFFIX):
        return name[len(INPUT_PREFIX) : -len(INPUT_SUFFIX)]
    return None


OPAQUE_HINT = (
    "hooks cannot see inside TorchScript or torch.export models, so only `logits` is "
    "available; load the original nn.Module (a state_dict with its arch) to probe inner layers"
)

OutputCallback = Callable[[str, torch.Tensor], None]
"""Called as `callback(layer_name, output)` for each captured layer, in model order."""


def first_tensor(output) -> torch.Tensor | None:
    """The tensor an output stands for: itself, or the first tensor inside tuples/lists/dicts."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        items = output.values()
    elif isinstance(output, (tuple, list)):
        items = output
    else:
        return None
    for item in items:
        found = first_tensor(item)
        if found is not None:
            return found
    return None


def model_logits(output) -> torch.Tensor | None:
    """The logits a model returned: the tensor itself, the `logits` entry of a dict or a
    Hugging Face `ModelOutput` (or a `logits` attribute), else the first tensor inside.

    >>> model_logits({"loss": None, "logits": torch.zeros(2, 3)}).shape
    torch.Size([2, 3])
    """
    if isinstance(output, torch.Tensor):
        return output
    named = output.get("logits") if isinstance(output, Mapping) else getattr(output, "logits", None)
    if isinstance(named, torch.Tensor):
        return named
    return first_tensor(output)


ATTENTION_MASK = "attention_mask"
"""The keyword argument of a dict batch that marks real tokens (1) and padding (0)."""


def attention_mask(inputs) -> torch.Tensor | None:
    """The `attention_mask` entry of a dict batch (2-D: batch x tokens), else None."""
    if isinstance(inputs, Mapping):
        mask = inputs.get(ATTENTION_MASK)
        if isinstance(mask, torch.Tensor) and mask.ndim == 2:
            return mask
    return None


def split_layer_name(name: str) -> tuple[str, int]:
    """`"features.3#2"` -> `("features.3", 2)`; `"features.3"` -> `("features.3", 1)`."""
    path, sep, call = name.rpartition("#")
    if sep and call.isdigit() and int(call) >= 2:
        return path, int(call)
    return name, 1


def layer_name(path: str, call: int) -> str:
    """The layer name of the `call`-th call (1-based) of the module at `path`."""
    return path if call == 1 else f"{path}#{call}"


def is_scripted(model: nn.Module) -> bool:
    """Whether the model is TorchScript (its submodules run no Python hooks)."""
    return isinstance(model, torch.jit.ScriptModule)


def batch_size_of(inputs: torch.Tensor | Mapping[str, torch.Tensor]) -> int:
    """The batch size of a batch of inputs: a tensor's first dimension, or that of the first
    tensor of a dict batch (keyword arguments of the model)."""
    if isinstance(inputs, Mapping):
        inputs = first_tensor(inputs)
    if not isinstance(inputs, torch.Tensor) or inputs.ndim == 0:
        raise InputError(
            "model inputs must be a tensor with the batch as first dimension, or a dict of such tensors."
        )
    return int(inputs.shape[0])


def _describe_batch(inputs: torch.Tensor | Mapping[str, torch.Tensor]) -> str:
    if isinstance(inputs, Mapping):
        return ", ".join(f"{key} {_describe_batch(value)}" for key, value in inputs.items())
    if isinstance(inputs, torch.Tensor):
        return f"{'x'.join(map(str, inputs.shape))} {str(inputs.dtype).removeprefix('torch.')}"
    return type(inputs).__name__


def run_model(model: nn.Module, inputs: torch.Tensor | Mapping[str, torch.Tensor]):
    """The model applied to one batch: `model(inputs)`, or `model(**inputs)` for a dict batch.

    A model that rejects the data (a shape, channel count or dtype it was not built for)
    is bad input, not a crash: its error becomes an `InputError` that names the batch's shape.
    """
    try:
        if isinstance(inputs, Mapping):
            return model(**inputs)
        return model(inputs)
    except (torch.OutOfMemoryError, InputError):  # a hook's own one-line error stays as it is
        raise
    except (RuntimeError, AssertionError, ValueError, TypeError, IndexError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(
            f"the model's forward pass failed on a batch of {_describe_batch(inputs)}: {first_line} "
            "(does the data fit the input size, channels and dtype the model was built for?)"
        ) from exc


def to_device(inputs, device: torch.device):
    """A batch (a tensor, or a dict of tensors and other values) moved to `device`."""
    if isinstance(inputs, Mapping):
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    return inputs.to(device)


def is_per_sample(tensor: torch.Tensor, batch_size: int) -> bool:
    """Whether a tensor holds one row per sample of the batch."""
    return tensor.ndim >= 1 and tensor.shape[0] == batch_size


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put the model in eval mode (dropout off, batch-norm running statistics) and restore
    every submodule's training flag afterwards. A torch.export program refuses `eval()`:
    it runs in the mode it was exported in."""
    flags = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
    except NotImplementedError:
        pass  # a torch.export program: its train/eval behaviour was fixed when it was exported
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training


class _StopForward(Exception):
    """Raised by a hook once every wanted layer of this pass is captured (skips the rest)."""


class LayerRecorder:
    """Forward hooks that pass selected layer outputs to a callback during one forward pass.

    Use as a context manager (hooks are removed on exit) and call `forward(inputs)` per
    batch. `layers=None` records every module (for listing); otherwise only the named
    layers are recorded, hooks go only on their modules (a forward pre-hook for an
    `input_name`; the last call of the module wins), and when `logits` is not among them
    the forward pass stops as soon as the last wanted layer is captured. `forward` raises an
    InputError when a wanted layer is not produced (data-dependent control flow, a name from
    another model, a TorchScript model).

    The callback gets the detached output tensor itself (still on the model's device); it
    must copy what it keeps before returning.
    """

    def __init__(self, model: nn.Module, layers: Iterable[str] | None, callback: OutputCallback):
        self.model = model
        self.callback = callback
        self.wanted = None if layers is None else dict.fromkeys(layers)  # ordered set
        self._calls: dict[str, int] = {}
        self._captured: set[str] = set()
        self._batch_size = 0
        self._handles: list = []
        self._paths = self._paths_to_hook()
        self._inputs = self._input_paths()

    def _input_paths(self) -> dict[str, nn.Module]:
        modules = dict(self.model.named_modules())
        paths = {}
        for name in self.wanted or ():
            path = input_path(name)
            if path is None:
                continue
            if path not in modules or is_scripted(self.model):
                raise InputError(f"the model has no module {path!r} whose input could be captured.")
            paths[path] = modules[path]
        return paths

    def _paths_to_hook(self) -> dict[str, nn.Module]:
        modules = dict(self.model.named_modules())
        modules.pop("", None)
        if is_scripted(self.model):
            inner = [name for name in self.wanted or () if name != LOGITS and input_path(name) is None]
            if inner:
                raise InputError(f"layer {inner[0]!r} cannot be extracted: {OPAQUE_HINT}.")
            return {}
        if self.wanted is None:
            return modules
        paths = {}
        for name in self.wanted:
            if name == LOGITS or input_path(name) is not None:
                continue
            path, _ = split_layer_name(name)
            if path not in modules:
                raise InputError(
                    f"the model has no layer {name!r}; list_layers(model) (`mprobe layers`) shows the names."
                )
            paths[path] = modules[path]
        return paths

    def __enter__(self) -> LayerRecorder:
        for path, module in self._paths.items():
            self._handles.append(module.register_forward_hook(self._hook_for(path)))
        for path, module in self._inputs.items():
            self._handles.append(module.register_forward_pre_hook(self._pre_hook_for(path)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook_for(self, path: str):
        def hook(module, inputs, output):
            call = self._calls.get(path, 0) + 1
            self._calls[path] = call
            name = layer_name(path, call)
            if self.wanted is not None and name not in self.wanted:
                return
            self._deliver(name, output)

        return hook

    def _pre_hook_for(self, path: str):
        name = input_name(path)

        def hook(module, args):
            self._calls[name] = self._calls.get(name, 0) + 1
            self._deliver(name, args[0] if args else None)

        return hook

    def _deliver(self, name: str, output) -> None:
        tensor = model_logits(output) if name == LOGITS else first_tensor(output)
        if tensor is None or not is_per_sample(tensor, self._batch_size):
            if self.wanted is None:
                return
            shape = None if tensor is None else tuple(tensor.shape)
            raise InputError(
                f"layer {name!r} gives no per-sample tensor (got {shape or type(output).__name__} "
                f"for a batch of {self._batch_size}); choose another layer."
            )
        self.callback(name, tensor.detach())
        self._captured.add(name)
        if self.wanted is not None and LOGITS not in self.wanted and len(self._captured) == len(self.wanted):
            raise _StopForward

    def forward(self, inputs: torch.Tensor | Mapping[str, torch.Tensor]) -> None:
        """Run the model on one batch (a dict batch as keyword arguments), handing every
        recorded layer to the callback."""
        self._calls.clear()
        self._captured.clear()
        self._batch_size = batch_size_of(inputs)
        try:
            output = run_model(self.model, inputs)
        except _StopForward:
            return
        if self.wanted is None or LOGITS in self.wanted:
            self._deliver(LOGITS, output)
        if self.wanted is not None and len(self._captured) < len(self.wanted):
            missing = [name for name in self.wanted if name not in self._captured]
            path = input_path(missing[0]) or split_layer_name(missing[0])[0]
            ran = self._calls.get(path if input_path(missing[0]) is None else missing[0], 0)
            if ran == 0:
                why = f"module {path!r} never ran: it is unused by forward, or {OPAQUE_HINT}"
            else:
                why = f"module {path!r} ran {ran} time(s); list_layers(model) shows the names"
            raise InputError(f"layer {missing[0]!r} was not produced by the forward pass: {why}.")
