"""Choosing the torch device from the `--device auto|cpu|cuda` option."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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
            raise InputError("--device cuda was asked for but no CUDA GPU is available; use --device cpu.")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise InputError(f"unknown device {name!r}: use auto, cpu or cuda.")


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
