"""Fitting a data set's inputs to a model: the normalisation the model was trained with
(`normalize="auto"`) and a per-sample reshape of flat or channel-less arrays.

- `training_normalization(info)`: what a project checkpoint records about its training inputs.
  The project's recipe (`study.training`) trains on `load_data(spec)` as it comes, so its
  checkpoints record the data spec and no normalisation: "auto" is then no normalisation
  (images scaled to [0, 1] by the loader, exactly as in training). A checkpoint whose
  `training` holds a `normalize` entry gets that. Any other model file records nothing to
  read: one clear line says so.
- `fit_input_shape(data, shape, model_shape)`: an explicit `shape` (e.g. (1, 28, 28)) reshapes
  every sample when the element counts agree; without one, a sample with fewer axes than the
  model's input (N x 784 or N x 28 x 28 for a model taking 1 x 28 x 28) is reshaped when the
  counts agree, which is unambiguous in row-major order. Anything else is left to the model.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from ..errors import InputError
from ..validation import parse_int_list
from .data import LabelledData, TensorImages
from .models import LoadedModel


def training_normalization(info: LoadedModel | None):
    """The `normalize` a model was trained with, read from its project checkpoint.

    Returns None (no normalisation) for the project's own checkpoints, or the `normalize`
    their training records; raises InputError for models whose file records no training
    inputs (a state_dict, TorchScript, torch.export, a module in memory).

    Example
    -------
    >>> training_normalization(mp.model_info(mp.load_model("ckpt.pt"))) is None  # mprobe train's: none
    True
    """
    checkpoint = info.checkpoint if info is not None else None
    if not checkpoint:
        where = f"{info.path or info.description}" if info is not None else "no model given"
        raise InputError(
            f"--normalize auto: {where} records no training normalisation (only mprobe's own checkpoints "
            "do); give --normalize with a recipe name or per-channel means then stds."
        )
    return (checkpoint.get("training") or {}).get("normalize")


def parse_input_shape(text: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """'1,28,28' or '1x28x28' (or a sequence of ints) as a per-sample shape of positive integers;
    anything else, an empty item or a stray letter included, is an InputError.

    >>> parse_input_shape("1x28x28")
    (1, 28, 28)
    """
    if text is None:
        return None
    if isinstance(text, str):  # an item that is no whole number counts as 0: refused below
        shape = tuple(int(part) if part.strip().isdigit() else 0 for part in re.split(r"[,x]", text.strip()))
    else:
        shape = tuple(parse_int_list(text, name="input_shape"))
    if not shape or any(size <= 0 for size in shape):
        raise InputError(f"{text!r}: give positive integers per sample, e.g. 1,28,28.",
                         parameter="input_shape")  # fmt: skip
    return shape


class _Reshaped(Dataset):
    """Each input of `base` reshaped to `shape` (labels unchanged)."""

    def __init__(self, base: Dataset, shape: tuple[int, ...]) -> None:
        self.base, self.shape = base, shape

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        x, y = self.base[index]
        return torch.as_tensor(x).reshape(self.shape), y


def _text(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def fit_input_shape(
    data: LabelledData, shape: Sequence[int] | None = None, model_shape: Sequence[int] | None = None
) -> LabelledData:
    """`data` with every sample reshaped to `shape`, or to `model_shape` when a sample has fewer
    axes than the model's input and as many elements (see the module docstring); else `data`.

    >>> np.savez("flat.npz", x=np.zeros((4, 784), np.float32), y=np.arange(4))
    >>> flat = mp.load_data("npz:flat.npz")          # x: N x 784
    >>> fit_input_shape(flat, model_shape=(1, 28, 28)).input_shape
    (1, 28, 28)
    """
    have = tuple(data.input_shape)
    target = tuple(shape) if shape is not None else None
    if target is None and model_shape is not None:
        want = tuple(model_shape)
        if want != have and len(have) < len(want):
            if math.prod(have) != math.prod(want):
                raise InputError(
                    f"{data.spec} has inputs of {_text(have)} per sample but the model takes {_text(want)}; "
                    "give data of that size, or --input-shape if the model takes another layout."
                )
            target = want
    if target is None or target == have:
        return data
    if math.prod(target) != math.prod(have):
        raise InputError(
            f"--input-shape {_text(target)} has {math.prod(target)} values per sample but {data.spec} "
            f"has {math.prod(have)} ({_text(have)})."
        )
    base = data.dataset
    if isinstance(base, TensorImages) and base.mean is None:
        images = base.images.reshape(len(base.images), *target)
        dataset: Dataset = TensorImages(images, base.labels, scale=base.scale)
    else:
        dataset = _Reshaped(base, target)
    return dataclasses.replace(data, dataset=dataset, input_shape=target)
