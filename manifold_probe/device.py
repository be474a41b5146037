"""Devices: choosing one (`auto`, `cpu`, `cuda`), torch's threads, and numpy arrays as tensors.

torch is imported by the functions that need it, so that a measure of bare points on a CPU
(`mprobe id --points`) never loads it: `cpu_without_torch` says when that is the case.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .errors import InputError

if TYPE_CHECKING:
    import numpy as np
    import torch


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """`auto` takes CUDA when it is available, else the CPU; `cuda` without a GPU is an input error."""
    import torch

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


def cuda_driver_present() -> bool:
    """Whether an NVIDIA driver could serve CUDA here: on Linux its device files or /proc entry
    (torch finds no CUDA device without them); elsewhere assumed (torch is asked)."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia"))


def cpu_without_torch(name: Any) -> bool:
    """True when `name` (None, a string or a torch.device) surely means the CPU and torch has
    not been loaded: `cpu`, None or `auto` on a machine without an NVIDIA driver. Estimators
    of bare points then keep to numpy."""
    if "torch" in sys.modules and name is not None and not isinstance(name, str):
        return False
    if name is None:
        return "torch" not in sys.modules
    text = str(name).lower()
    return "torch" not in sys.modules and (text == "cpu" or (text == "auto" and not cuda_driver_present()))


def model_device(model: torch.nn.Module) -> torch.device:
    """Where `model`'s first parameter or buffer is (the CPU for a module without any)."""
    import torch

    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def tensor_view(array: np.ndarray) -> torch.Tensor:
    """A CPU tensor sharing `array`'s memory, read-only arrays and memmaps included (torch
    warns that it could write to them; nothing here does, so the warning is not shown)."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with torch limited to `n` intra-op threads, then restore the setting.

    For work that parallelises over a pool of Python threads instead: each pool thread then
    runs its small torch operations on one core rather than all of them contending."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.cache
def _blas_controller():
    """One threadpoolctl controller for the process: building one scans every loaded library
    (30 ms on a loaded machine), setting a limit through it costs 0.1 ms."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def blas_threads(n: int):
    """A context in which numpy's BLAS (and LAPACK) use at most `n` threads.

    For LAPACK's eigensolvers and factorisations, whose many small BLAS calls synchronise
    their threads each time: on a loaded 2-core machine OpenBLAS's two threads took 15.5 s
    for an eigvalsh of 2,048 x 2,048 that one thread did in 0.6 s, and a QR of 4,096 x 64
    0.94 s against 0.012 s."""
    return _blas_controller().limit(limits=n, user_api="blas")
