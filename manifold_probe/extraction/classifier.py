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
  that points to `--points` with `--classifier`. The model's logits are its output tensor,
  or the `logits` of the dict or Hugging Face `ModelOutput` it returns (`hooks.model_logits`).
- The classifier's inputs over a data set are captured in the same forward pass as the
  layers (`extract(..., capture_inputs=[head.name])`, a forward pre-hook): there is no
  second pass and no second extraction engine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from ..device import model_device
from ..errors import InputError
from .hooks import eval_mode, is_scripted, model_logits, run_model, to_device

CLASSIFIER_HINT = (
    "save the penultimate features and the classifier's weight as arrays and measure those points "
    "with their labels and that classifier"
)


@dataclass(frozen=True, eq=False)
class ClassifierHead:
    """A linear classifier: logits = weight @ h + bias.

    name: the module path of the Linear (`head`, `fc`) or the file it was read from;
    weight: (C, p) float64; bias: (C,) float64 or None; `position`: for a head applied to
    every token (a language model's `lm_head`, a sequence classifier's `score`), the token
    whose features the logits are read at (`last`: the last real token, or `token:I`), None
    for a head applied to one vector per sample; `pad_token_id`: set when the model itself
    pools at the last token that is not this id (Hugging Face's sequence classifiers), which
    then marks the real tokens instead of the attention mask.
    """

    name: str
    weight: np.ndarray
    bias: np.ndarray | None = None
    position: str | None = None
    pad_token_id: int | None = None

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
            "nn.Module as a state_dict with its arch), or "
        )
    else:
        why = "its head is not an nn.Linear; "
    return InputError(f"the model has no nn.Linear classifier to measure: {why}{CLASSIFIER_HINT}.",
                      parameter="classifier")  # fmt: skip


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


def _forward(model: nn.Module, inputs, paths: list[str]):
    """(model output, [(path, input)] in call order) for one batch, in eval mode."""
    inputs = to_device(inputs, model_device(model))
    with torch.inference_mode(), eval_mode(model), _capture_inputs(model, paths) as calls:
        try:
            output = run_model(model, inputs)
        except RuntimeError as exc:
            shape = tuple(inputs.shape[1:]) if isinstance(inputs, torch.Tensor) else "a dict batch"
            raise InputError(
                f"the model does not accept inputs of shape {shape}: {str(exc).splitlines()[0]}"
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
    logits = model_logits(output)
    if logits is not None and logits.ndim == 3 and features.ndim == 3 and logits.shape[-1] == head.n_classes:
        return replace(head, position="last")  # a language model: logits at every token
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
    if features.ndim == 3:
        return _pooled_head(model, head, example, features, logits)
    if features.ndim != 2:
        raise InputError(
            f"the classifier {path!r} is applied to inputs of shape {tuple(features.shape[1:])} "
            "per sample, not to one feature vector; neural collapse needs one vector per sample: "
            f"{CLASSIFIER_HINT}."
        )
    return head


def _pooled_head(model: nn.Module, head: ClassifierHead, example, features, logits) -> ClassifierHead:
    """The head of a sequence classifier that applies its Linear to every token and pools the
    logits at one position per sample (Hugging Face's `...ForSequenceClassification` of a
    decoder: the last token that is not padding). The position is found by a probe: the rule
    whose token reproduces the model's logits on the example batch, among the last token that
    is not the config's `pad_token_id`, the last real token of the attention mask, and the
    final position; none reproducing them is an InputError."""
    per_token = torch.einsum(
        "ntp,cp->ntc", features.double(), torch.as_tensor(head.weight, device=features.device)
    )
    if head.bias is not None:
        per_token = per_token + torch.as_tensor(head.bias, device=features.device)
    target = logits.double()
    n, t = features.shape[:2]
    positions = torch.arange(t, device=features.device)
    candidates: list[tuple[torch.Tensor, dict]] = []  # (position per sample, what the head records)
    pad = getattr(getattr(model, "config", None), "pad_token_id", None)
    ids = example.get("input_ids") if isinstance(example, dict) else None
    if isinstance(pad, int) and isinstance(ids, torch.Tensor) and ids.shape == (n, t):
        candidates.append(
            (((ids != pad).long() * positions).argmax(1), {"position": "last", "pad_token_id": pad})
        )
    mask = example.get("attention_mask") if isinstance(example, dict) else None
    if isinstance(mask, torch.Tensor) and mask.shape == (n, t):
        candidates.append((((mask != 0).long() * positions).argmax(1), {"position": "last"}))
    candidates.append((torch.full((n,), t - 1, device=features.device), {"position": "token:-1"}))
    scale = float(target.abs().max().clamp(min=1e-12))
    for index, extra in candidates:
        picked = per_token[torch.arange(n, device=features.device), index]
        if torch.allclose(picked, target, rtol=1e-4, atol=1e-4 * scale):
            return replace(head, **extra)
    raise InputError(
        f"the classifier {head.name!r} is applied to every token (inputs of shape "
        f"{tuple(features.shape[1:])} per sample) and the model pools its logits at a position mprobe "
        f"cannot find (not the last real token nor the last one); {CLASSIFIER_HINT}."
    )
