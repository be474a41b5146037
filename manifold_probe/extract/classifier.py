"""The classifier of a model: its last `nn.Linear`, that layer's weights, and its inputs.

Neural collapse (NC2 on the weights, NC3, NC4) and the last layer's Fisher spectra need the
classifier W (C x p), its bias b and the penultimate features h, the input of that layer
(Papyan, Han & Donoho 2020: the logits are W h + b).

- `find_classifier(model, example)` runs one forward pass on an example batch with a hook
  on every `nn.Linear` and takes the last one called (a Linear inside attention blocks or an
  MLP earlier in the net is called before the head). Without an example it takes the last
  Linear registered. It checks that this Linear makes the model's logits (its output width
  is the model's output width) and that it is applied to one feature vector per sample
  (input (N, p), not (N, T, p)). A model with no Linear (a convolutional head, or a
  TorchScript / torch.export program, whose submodules hooks cannot see) is an InputError
  that points to `--points` with `--classifier`.
- `classifier_input_rows(model, path, inputs)`: the classifier's inputs for one batch,
  captured by a forward pre-hook (what `nn.Linear` receives, after any functional op such
  as `torch.flatten` between the last block and the head).
- `extract_classifier_inputs(...)`: the same over a whole data set, streamed batch by batch
  into one (N, p) float32 array, through the activation cache (keyed by the weights digest,
  the data and the Linear's path) so a rerun reads it back without a forward pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..device import resolve_device
from ..errors import InputError
from ..progress import track
from .cache import ActivationCache, CacheKey
from .hooks import eval_mode, is_scripted

CLASSIFIER_HINT = (
    "save the penultimate features and the classifier's weight as arrays and use "
    "--points H.npy --labels y.npy --classifier W.npy [--bias b.npy]"
)


@dataclass(frozen=True, eq=False)
class ClassifierHead:
    """A linear classifier: logits = weight @ h + bias.

    name: the module path of the Linear (`head`, `fc`) or the file it was read from;
    weight: (C, p) float64; bias: (C,) float64 or None.
    """

    name: str
    weight: np.ndarray
    bias: np.ndarray | None = None

    @property
    def n_classes(self) -> int:
        return int(self.weight.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.weight.shape[1])


def _model_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _no_linear(model: nn.Module) -> InputError:
    if is_scripted(model) or not any(True for _ in model.children()) or _is_export(model):
        why = (
            "hooks cannot see inside TorchScript or torch.export models (load the original "
            "nn.Module as a state_dict with --arch), or "
        )
    else:
        why = "its head is not an nn.Linear; "
    return InputError(f"the model has no nn.Linear classifier to measure: {why}{CLASSIFIER_HINT}.")


def _is_export(model: nn.Module) -> bool:
    return type(model).__name__ in ("GraphModule", "_UnliftedGraphModule") or hasattr(model, "graph")


def linear_layers(model: nn.Module) -> list[str]:
    """Module paths of every nn.Linear of the model, in registration order."""
    if is_scripted(model):
        return []
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear) and name]


def head_of(model: nn.Module, path: str) -> ClassifierHead:
    """The weights of the Linear at `path` as a ClassifierHead (float64 copies)."""
    module = dict(model.named_modules()).get(path)
    if not isinstance(module, nn.Linear):
        raise InputError(f"the model has no nn.Linear at {path!r}.")
    weight = module.weight.detach().to("cpu", torch.float64).numpy().copy()
    bias = None
    if module.bias is not None:
        bias = module.bias.detach().to("cpu", torch.float64).numpy().copy()
    return ClassifierHead(path, weight, bias)


@contextlib.contextmanager
def _capture_inputs(model: nn.Module, paths: list[str]) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Forward pre-hooks on the modules at `paths`; yields the list of (path, input) calls."""
    modules = dict(model.named_modules())
    calls: list[tuple[str, torch.Tensor]] = []
    handles = []

    def hook_for(path: str):
        def hook(module, args):
            if args and isinstance(args[0], torch.Tensor):
                calls.append((path, args[0].detach()))

        return hook

    try:
        for path in paths:
            handles.append(modules[path].register_forward_pre_hook(hook_for(path)))
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def _forward(model: nn.Module, inputs: torch.Tensor, paths: list[str]):
    """(model output, [(path, input)] in call order) for one batch, in eval mode."""
    inputs = inputs.to(_model_device(model))
    with torch.inference_mode(), eval_mode(model), _capture_inputs(model, paths) as calls:
        try:
            output = model(inputs)
        except RuntimeError as exc:
            raise InputError(
                f"the model does not accept inputs of shape {tuple(inputs.shape[1:])}: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        return output, list(calls)


def find_classifier(model: nn.Module, example: torch.Tensor | None = None) -> ClassifierHead:
    """The model's classifier: its last nn.Linear (see the module docstring).

    example: a batch of inputs (batch first). With it, "last" means last called in the
    forward pass, and the Linear's output width and input shape are checked against the
    model's logits; without it, the last Linear registered, unchecked.
    """
    paths = linear_layers(model)
    if not paths:
        raise _no_linear(model)
    if example is None:
        return head_of(model, paths[-1])
    output, calls = _forward(model, example, paths)
    if not calls:
        raise _no_linear(model)
    path, features = calls[-1]
    head = head_of(model, path)
    logits = output if isinstance(output, torch.Tensor) else None
    if logits is None or logits.ndim != 2:
        shape = None if logits is None else tuple(logits.shape)
        raise InputError(
            f"the model's output is {shape or type(output).__name__}, not (batch, classes) logits; "
            f"{CLASSIFIER_HINT}."
        )
    if logits.shape[1] != head.n_classes:
        raise InputError(
            f"the last nn.Linear {path!r} gives {head.n_classes} outputs but the model gives "
            f"{logits.shape[1]} logits, so it is not the classifier; {CLASSIFIER_HINT}."
        )
    if features.ndim != 2:
        raise InputError(
            f"the classifier {path!r} is applied to inputs of shape {tuple(features.shape[1:])} "
            "per sample, not to one feature vector; neural collapse needs one vector per sample: "
            f"{CLASSIFIER_HINT}."
        )
    return head


def classifier_input_rows(model: nn.Module, path: str, inputs: torch.Tensor) -> np.ndarray:
    """The inputs of the Linear at `path` for one batch, as a float32 (batch, p) array (its
    last call when it is called more than once)."""
    _, calls = _forward(model, inputs, [path])
    if not calls:
        raise InputError(f"the classifier {path!r} was not called in the forward pass.")
    return calls[-1][1].reshape(len(inputs), -1).to("cpu", torch.float32).numpy()


def _batches(data, batch_size: int) -> Iterator[torch.Tensor]:
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if isinstance(data, torch.Tensor):
        for start in range(0, len(data), batch_size):
            yield data[start : start + batch_size]
        return
    for item in DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=0):
        yield item[0] if isinstance(item, (tuple, list)) else item


def classifier_input_key(model_key: str, data_key: str, path: str) -> CacheKey:
    """The activation-cache key of the classifier's inputs (its own layer field, so it never
    collides with a layer's output)."""
    return CacheKey(model_key, data_key, f"<input of {path}>", "none")


def extract_classifier_inputs(
    model: nn.Module,
    data: Dataset | torch.Tensor | np.ndarray,
    head: ClassifierHead,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    cache_dir: str | None = None,
    use_cache: bool = True,
    model_key: str | None = None,
    data_key: str | None = None,
    progress: bool = False,
) -> np.ndarray:
    """The inputs of the classifier for every sample of `data` (a Dataset yielding (x, y) or a
    tensor of inputs), as an (N, p) float32 array: a read-only memmap of the cache entry
    with the cache on, else an array in memory.

    With `use_cache` both `model_key` (the weights digest) and `data_key` are required; a
    complete entry is read back without running the model.
    """
    n_points = len(data)
    cache = ActivationCache(cache_dir) if use_cache else None
    key = None
    if cache is not None:
        if not (model_key and data_key):
            raise ValueError("extract_classifier_inputs needs model_key and data_key to use the cache.")
        key = classifier_input_key(model_key, data_key, head.name)
        entry = cache.lookup(key)
        if entry is not None and entry.array.shape == (n_points, head.n_features):
            return entry.array
    pending = cache.create(key, (n_points, head.n_features), {"layer": head.name}) if cache else None
    array = pending.array if pending is not None else np.empty((n_points, head.n_features), np.float32)
    dev = resolve_device(device)
    model.to(dev)
    start = 0
    try:
        batches = track(
            _batches(data, batch_size),
            description="classifier inputs",
            total=-(-n_points // batch_size),
            enabled=progress,
        )
        for inputs in batches:
            rows = classifier_input_rows(model, head.name, inputs)
            if rows.shape[1] != head.n_features:
                raise InputError(
                    f"the classifier {head.name!r} received {rows.shape[1]} features per sample "
                    f"but has {head.n_features} inputs."
                )
            array[start : start + len(rows)] = rows
            start += len(rows)
        if start != n_points:
            raise InputError(f"the data set yielded {start} samples but its length is {n_points}.")
    except BaseException:
        if pending is not None:
            pending.abort()
        raise
    if pending is not None:
        return pending.commit().array
    return array
