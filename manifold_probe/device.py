"""Devices: choosing one (`auto`, `cpu`, `cuda`), torch's threads, and numpy arrays as tensors."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import numpy as np
import torch

from .errors import InputError


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """`auto` takes CUDA when it is available, else the CPU; `cuda` without a GPU is an input error."""
    if isinstance(name, torch.device):
        return name
    name = str(name).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError("cuda was asked for but no CUDA GPU is available; use cpu.", parameter="device")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise InputError(f"unknown device {name!r}: use auto, cpu or cuda.", parameter="device")


def model_device(model: torch.nn.Module) -> torch.device:
    """Where `model`'s first parameter or buffer is (the CPU for a module without any)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def tensor_view(array: np.ndarray) -> torch.Tensor:
    """A CPU tensor sharing `array`'s memory, read-only arrays and memmaps included (torch
    warns that it could write to them; nothing here does, so the warning is not shown)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with torch limited to `n` intra-op threads, then restore the setting.

    For work that parallelises over a pool of Python threads instead: each pool thread then
    runs its small torch operations on one core rather than all of them contending."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
