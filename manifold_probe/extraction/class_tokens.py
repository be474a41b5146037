"""Which token sequences start with a class token: what `cls` may read.

`cls` reads token 0 as the sequence's summary. That is right only where token 0 *is* a class
token, which is known per architecture:

- a model with a class-token parameter (timm's ViT and DeiT `cls_token`, torchvision's ViT
  `class_token`, Hugging Face ViT `embeddings.cls_token`, CLIP's `class_embedding`) prepends it
  somewhere in its forward pass. A probe pass finds where: the parameter is shifted, the model
  run again on the example batch, and a layer whose output did not change comes before the
  token was prepended (DeiT's `patch_embed`: patches only). The parameter is restored
  bit for bit.
- a Hugging Face text encoder trained with a masked-LM objective (BERT, RoBERTa, ...) reads its
  first input token, the tokenizer's `[CLS]`, at every layer;
- a causal language model (GPT-2, Llama: a causal-LM architecture with no masked-LM one) has no
  class token: its summary is the last real token (`last`);
- any other model does not say: `cls` is refused with one line asking for `token:0`, which
  reads token 0 whatever it is.

`class_token_refusals` gives the reason for each token-sequence layer where `cls` is refused;
the extraction keeps such a layer in the result with status `skipped` and that reason.

Example
-------
>>> block = torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
>>> class_token_refusals(block, torch.zeros(1, 5, 8), {"logits": (5, 8)})
{'logits': "cls on layer 'logits': TransformerEncoderLayer has no class-token parameter ...; use token:0 ..."}
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .hooks import LayerRecorder, eval_mode
from .reductions import TOKENS, output_kind

CLASS_TOKEN_PARAMETERS = ("cls_token", "class_token", "class_embedding")
"""The names (last dotted part) of the class-token parameters of timm, torchvision and
Hugging Face models."""


def class_token_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The model's class-token parameters (`CLASS_TOKEN_PARAMETERS`), by name."""
    return [(name, param) for name, param in model.named_parameters()
            if name.rpartition(".")[2] in CLASS_TOKEN_PARAMETERS]  # fmt: skip


def hf_text_kind(model: nn.Module) -> str | None:
    """`causal` for a Hugging Face model of a causal-LM-only architecture (GPT-2, Llama),
    `encoder` for one with a masked-LM head (BERT's family: its first token is [CLS]),
    else None (not a Hugging Face model, or a vision one)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if not model_type or not type(model).__module__.startswith("transformers."):
        return None
    from transformers.models.auto import modeling_auto as auto

    if model_type in auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "encoder"
    if model_type in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal"
    return None


def _outputs(model: nn.Module, example, names: list[str]) -> dict[str, torch.Tensor]:
    outputs: dict[str, torch.Tensor] = {}
    keep = lambda name, tensor: outputs.__setitem__(name, tensor.clone())  # noqa: E731
    with torch.inference_mode(), eval_mode(model), LayerRecorder(model, names, keep) as recorder:
        recorder.forward(example)
    return outputs


def _unchanged_by(model: nn.Module, example, names: list[str], params: list[nn.Parameter]) -> list[str]:
    """The layers among `names` whose output on `example` does not depend on `params` (a probe:
    each parameter shifted by one, the model run again, every parameter restored)."""
    before = _outputs(model, example, names)
    saved = [param.detach().clone() for param in params]
    try:
        with torch.no_grad():
            for param in params:
                param.add_(1.0)
        after = _outputs(model, example, names)
    finally:
        with torch.no_grad():
            for param, value in zip(params, saved, strict=True):
                param.copy_(value)
    return [name for name in names if torch.equal(before[name], after[name])]


def class_token_refusals(model: nn.Module, example, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, str]:
    """For each layer (name -> per-sample output shape) that gives a token sequence whose token
    0 is not known to be a class token, why `cls` is refused there (see the module docstring)."""
    tokens = [name for name, shape in shapes.items() if output_kind(shape) == TOKENS]
    if not tokens:
        return {}
    label = type(model).__name__
    found = class_token_parameters(model)
    if found:
        before = _unchanged_by(model, example, tokens, [param for _, param in found])
        return {
            name: f"layer {name!r} comes before {label} prepends its class token ({found[0][0]}): its tokens "
            "are patches only; use mean, or token:0 for the first patch"
            for name in before
        }
    kind = hf_text_kind(model)
    if kind == "encoder":
        return {}
    if kind == "causal":
        why = f"{label} is a causal language model, without a class token; use last (its last real token)"
    else:
        names = ", ".join(CLASS_TOKEN_PARAMETERS)
        why = (f"{label} has no class-token parameter ({names}), so its token 0 is not known to be a class "
               "token; use token:0 to read it anyway, or mean")  # fmt: skip
    return {name: f"cls on layer {name!r}: {why}" for name in tokens}
