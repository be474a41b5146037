"""The project's checkpoint format, `manifold-probe/checkpoint@1`.

A checkpoint is a plain dict saved with `torch.save` (in memory, then `files.atomic_write`) that
`torch.load(weights_only=True)` reads back: only strings, numbers, booleans, None, lists,
dicts and tensors inside, never a pickled class.

    {"format": "manifold-probe/checkpoint@1",
     "arch": "digits-cnn",                      # a zoo name or torchvision:NAME
     "arch_args": {"width": 32, ...},           # all arguments, defaults filled in
     "state_dict": {...},                       # CPU tensors
     "data": "digits", "split_seed": 0,         # the training data spec and its split seed
     "seed": 0,                                 # the training seed
     "metrics": {"train_accuracy": ..., "test_accuracy": ..., "train_loss": ..., "test_loss": ...},
     "epoch": 30,                               # epochs completed
     "training": {...},                         # hyper-parameters (TrainingConfig)
     "history": [{"epoch": 1, ...}, ...],       # per-epoch metrics
     "version": "0.1.0", "torch_version": "2.14.1"}

Test metrics are None when the data set has no test split.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping

import torch

from .. import __version__
from ..errors import InputError
from ..files import atomic_write

FORMAT = "manifold-probe/checkpoint@1"
FORMAT_PREFIX = "manifold-probe/checkpoint@"
METRIC_NAMES = ("train_accuracy", "test_accuracy", "train_loss", "test_loss")
REQUIRED_KEYS = (
    "format",
    "arch",
    "arch_args",
    "state_dict",
    "data",
    "split_seed",
    "seed",
    "metrics",
    "epoch",
    "training",
)

_PLAIN_SCALARS = (str, int, float, bool, type(None))


def _plain(value, where: str):
    """`value` with tuples turned into lists, if it holds only plain types; else ValueError."""
    if isinstance(value, _PLAIN_SCALARS):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    raise ValueError(f"{where} holds a {type(value).__name__}; checkpoints hold only plain types")


def make_checkpoint(
    *,
    arch: str,
    arch_args: Mapping,
    state_dict: Mapping[str, torch.Tensor],
    data: str,
    split_seed: int,
    seed: int,
    metrics: Mapping[str, float | None],
    epoch: int,
    training: Mapping,
    history: list[Mapping] | None = None,
) -> dict:
    """The checkpoint dict: tensors as detached CPU copies, non-finite numbers as None."""
    missing = [name for name in METRIC_NAMES if name not in metrics]
    if missing:
        raise ValueError(f"metrics lack {', '.join(missing)}")
    return {
        "format": FORMAT,
        "arch": str(arch),
        "arch_args": _plain(dict(arch_args), "arch_args"),
        "state_dict": {name: t.detach().cpu().clone() for name, t in state_dict.items()},
        "data": str(data),
        "split_seed": int(split_seed),
        "seed": int(seed),
        "metrics": _plain(dict(metrics), "metrics"),
        "epoch": int(epoch),
        "training": _plain(dict(training), "training"),
        "history": _plain(list(history or []), "history"),
        "version": __version__,
        "torch_version": str(torch.__version__),
    }


def save_checkpoint(path: str | os.PathLike, checkpoint: dict) -> None:
    """Write a checkpoint dict (from `make_checkpoint`) atomically with torch.save.

    The archive is built in memory first: torch.save names the zip's top folder after the file
    it writes, and the temporary file of an atomic write has a random name, so saving to it
    directly would give two saves of the same checkpoint different bytes.
    """
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    with atomic_write(path, "wb") as handle:
        handle.write(buffer.getbuffer())


def is_project_checkpoint(obj) -> bool:
    """Whether a loaded object claims to be a manifold-probe checkpoint (of any version)."""
    return isinstance(obj, Mapping) and str(obj.get("format", "")).startswith(FORMAT_PREFIX)


def check_checkpoint(obj: Mapping, *, source: str) -> Mapping:
    """The checkpoint, if it is version 1 with every required key; else InputError."""
    if obj.get("format") != FORMAT:
        raise InputError(
            f"{source} is a {obj.get('format')} file, which this version of manifold-probe "
            f"({__version__}) cannot read; it reads {FORMAT}."
        )
    missing = [key for key in REQUIRED_KEYS if key not in obj]
    if missing:
        raise InputError(f"{source} is an incomplete manifold-probe checkpoint (no {missing[0]}).")
    if not isinstance(obj["state_dict"], Mapping) or not isinstance(obj["arch_args"], Mapping):
        raise InputError(f"{source} is a damaged manifold-probe checkpoint (bad state_dict).")
    return obj


def checkpoint_metadata(obj: Mapping) -> dict:
    """Everything in a checkpoint but the state_dict (what results and reports quote)."""
    return {key: value for key, value in obj.items() if key != "state_dict"}
