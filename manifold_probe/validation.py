"""Every check of user input, in one place (scikit-learn's `check_array` is the model).

Each check either returns a clean array or raises `InputError` with one sentence that
names the problem and what to do about it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import InputError


def existing_file(path: str | os.PathLike, *, what: str = "file") -> Path:
    """The path as a Path, if it names a readable regular file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{what} not found: {p}")
    if not p.is_file():
        raise InputError(f"{what} is not a file: {p}")
    if not os.access(p, os.R_OK):
        raise InputError(f"{what} is not readable (permissions): {p}")
    return p


def as_points(x, *, name: str = "points", min_points: int = 2) -> np.ndarray:
    """A finite 2-D float array of shape (n_points, n_features).

    Float32 input stays float32 (activations are big); anything else becomes float64.
    """
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise InputError(f"{name} could not be read as an array: {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"{name} must be numeric, got dtype {arr.dtype}.")
    if arr.ndim != 2:
        raise InputError(
            f"{name} must be a 2-D array (n_points, n_features), got shape {arr.shape}; "
            "flatten or pool the features first."
        )
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if not arr.flags.writeable:  # a read-only memmap from the activation cache
        arr = np.array(arr)
    n, dim = arr.shape
    if dim < 1:
        raise InputError(f"{name} has no features (shape {arr.shape}).")
    if n < min_points:
        raise InputError(f"{name} has {n} points; this needs at least {min_points}.")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise InputError(f"{name} contains NaN or Inf in {bad} of {n} rows; remove or impute them.")
    return arr


def as_labels(y, n_points: int, *, name: str = "labels", min_per_class: int = 1) -> np.ndarray:
    """A 1-D integer label array of length n_points, every class holding at least min_per_class samples."""
    arr = np.asarray(y)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise InputError(f"{name} must be a 1-D array, got shape {arr.shape}.")
    if len(arr) != n_points:
        raise InputError(f"{name} has {len(arr)} entries but there are {n_points} points.")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise InputError(f"{name} must be whole numbers (class indices).")
        arr = arr.astype(np.int64)
    elif not np.issubdtype(arr.dtype, np.integer):
        _, arr = np.unique(arr, return_inverse=True)
    arr = arr.astype(np.int64)
    classes, counts = np.unique(arr, return_counts=True)
    small = classes[counts < min_per_class]
    if len(small):
        raise InputError(
            f"{name}: class {small[0]} has {counts[counts < min_per_class][0]} sample(s); "
            f"this needs at least {min_per_class} per class."
        )
    return arr


def check_k(k: int, n_points: int, *, name: str = "k") -> int:
    """A neighbour count with 1 <= k < n_points."""
    if int(k) != k or k < 1:
        raise InputError(f"{name} must be a positive whole number, got {k}.")
    if k >= n_points:
        raise InputError(
            f"{name}={k} needs more than {k} points but there are {n_points}; "
            f"lower {name} or give more points."
        )
    return int(k)


def check_positive(value, *, name: str, integer: bool = False, allow_zero: bool = False):
    """A positive (or non-negative) number, optionally whole."""
    if integer and int(value) != value:
        raise InputError(f"{name} must be a whole number, got {value}.")
    if value < 0 or (value == 0 and not allow_zero):
        raise InputError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {value}.")
    return int(value) if integer else float(value)
