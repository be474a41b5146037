"""Every check of user input, in one place (scikit-learn's `check_array` is the model).

Each check either returns a clean array or raises `InputError` with one sentence that
names the problem and what to do about it.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import shutil
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

# --- files and disk space ----------------------------------------------------------------


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


def byte_size(n_bytes: float) -> str:
    """A number of bytes for people: '512 bytes', '3.2 MiB', '1.50 GiB'.

    >>> byte_size(0), byte_size(3 * 2**20), byte_size(1.5 * 2**30)
    ('0 bytes', '3.0 MiB', '1.50 GiB')
    """
    if n_bytes < 2**10:
        return f"{int(n_bytes)} bytes"
    if n_bytes < 2**30:
        unit, scale = ("KiB", 2**10) if n_bytes < 2**20 else ("MiB", 2**20)
        return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes / 2**30:,.2f} GiB"


_SPACE_HINT = "use another --cache-dir, a reduction (avgpool or project:N) or fewer points."


def check_free_space(directory: Path, n_bytes: int, what: str, hint: str = _SPACE_HINT) -> None:
    """Raise an InputError when `directory`'s file system has less than `n_bytes` free; the
    message ends with `hint` (what to do)."""
    free = shutil.disk_usage(directory).free
    if n_bytes > free:
        raise InputError(
            f"{what} needs {byte_size(n_bytes)} on disk in {directory} but only {byte_size(free)} "
            f"is free; {hint}"
        )


# --- memory bounded by the file ----------------------------------------------------------

EXPANSION = 16
"""What a parser may build from a file: at most EXPANSION times the file's size in bytes (or
SMALL_FILE_ALLOWANCE, whichever is larger), checked from the sizes the file declares before
anything of that size is allocated (`expansion_limit`)."""

SMALL_FILE_ALLOWANCE = 64 * 2**20
"""The allowance of a small file (a compressed npz of zeros, a short gzipped IDX file)."""


def expansion_limit(n_bytes: int) -> int:
    """The most a parser may allocate for a file of `n_bytes` bytes (see EXPANSION).

    >>> expansion_limit(2 * 2**20) == 64 * 2**20 and expansion_limit(2**30) == 16 * 2**30
    True
    """
    return max(EXPANSION * int(n_bytes), SMALL_FILE_ALLOWANCE)


def check_expansion(declared: int, n_bytes: int, what: str) -> None:
    """Refuse `what` (a file of `n_bytes` bytes) when it declares `declared` bytes of content,
    more than `expansion_limit(n_bytes)`."""
    if declared > expansion_limit(n_bytes):
        raise InputError(
            f"{what} declares {declared / 2**20:,.0f} MiB of content in {n_bytes / 2**20:,.2f} MiB, more "
            f"than the {EXPANSION}x its size (at least {SMALL_FILE_ALLOWANCE // 2**20} MiB) that is "
            "read; it is damaged or built to exhaust memory."
        )


def zip_members(archive: zipfile.ZipFile, n_bytes: int, what: str) -> list[zipfile.ZipInfo]:
    """The members of `archive` (a zip file of `n_bytes` bytes), after checking that each lies
    inside the file and that together they decompress to at most `expansion_limit(n_bytes)`
    bytes (readers allocate what a member declares, and stop there)."""
    members = archive.infolist()
    for info in members:
        if info.header_offset + info.compress_size > n_bytes or info.file_size < 0:
            raise InputError(f"{what} is damaged: its entry {info.filename!r} lies outside the file.")
    check_expansion(sum(info.file_size for info in members), n_bytes, what)
    return members


def check_npy_header(stream, available: int, what: str) -> tuple[tuple[int, ...], np.dtype]:
    """The (shape, dtype) that the `.npy` header at the start of `stream` declares, after checking
    that the array fits in the `available` bytes (the file's, or the zip member's) that hold it:
    NumPy allocates what the header declares before it reads. Leaves `stream` after the header.
    """
    try:
        version = np.lib.format.read_magic(stream)
        read = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read(stream)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise InputError(f"{what} is not a NumPy array file ({exc}).") from None
    n_bytes = math.prod(shape) * dtype.itemsize
    if n_bytes > available - stream.tell():
        raise InputError(
            f"{what} declares an array of shape {shape} ({n_bytes:,} bytes) but holds "
            f"{max(0, available - stream.tell()):,}; it is truncated or damaged."
        )
    return shape, dtype


# --- arrays ------------------------------------------------------------------------------


def to_numpy(values) -> object:
    """Torch tensors (on any device, any float type) to numpy; anything else unchanged."""
    detach = getattr(values, "detach", None)
    if not callable(detach):
        return values
    tensor = detach().cpu()
    if tensor.is_floating_point() and tensor.element_size() < 4:
        tensor = tensor.float()  # numpy has no bfloat16
    return tensor.numpy()


_ASSUME_FINITE: contextvars.ContextVar[bool] = contextvars.ContextVar("assume_finite", default=False)


@contextlib.contextmanager
def assume_finite() -> Iterator[None]:
    """Within this context `as_points` skips its scan for NaN and Inf: for data already
    checked once at the boundary (scikit-learn's `config_context(assume_finite=True)`).

    >>> with assume_finite():
    ...     as_points(np.full((3, 2), np.nan)).shape
    (3, 2)
    """
    token = _ASSUME_FINITE.set(True)
    try:
        yield
    finally:
        _ASSUME_FINITE.reset(token)


def check_points_finite(points, *, name: str = "points") -> None:
    """Raise an InputError naming how many rows of `points` (N, D) hold NaN or Inf; reads the
    array in slices of about 64 MB, so a memmap is never loaded whole."""
    n = len(points)
    step = max(1, 2**24 // max(1, int(np.prod(points.shape[1:]))))
    bad = 0
    for start in range(0, n, step):
        block = np.asarray(points[start : start + step])
        if block.dtype.kind in "fc":
            bad += int((~np.isfinite(block)).reshape(len(block), -1).any(axis=1).sum())
    if bad:
        raise InputError(f"{name} contains NaN or Inf in {bad} of {n} rows; remove or impute them.")


def as_points(x, *, name: str = "points", min_points: int = 2, parameter: str | None = None) -> np.ndarray:
    """A finite 2-D float array of shape (n_points, n_features), checked, never copied when it
    is one already (read-only arrays and memmaps stay as they are: nothing here writes to them).

    Float32 input stays float32 (activations are big); anything else becomes float64. Inside
    `assume_finite()` the scan for NaN and Inf is skipped. `parameter` names the argument the
    points came from in the errors (`InputError.parameter`).
    """
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise InputError(f"{name} could not be read as an array: {exc}", parameter=parameter) from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"{name} must be numeric, got dtype {arr.dtype}.", parameter=parameter)
    if arr.ndim != 2:
        raise InputError(
            f"{name} must be a 2-D array (n_points, n_features), got shape {arr.shape}; "
            "flatten or pool the features first.",
            parameter=parameter,
        )
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    n, dim = arr.shape
    if dim < 1:
        raise InputError(f"{name} has no features (shape {arr.shape}).", parameter=parameter)
    if n < min_points:
        raise InputError(f"{name} has {n} points; this needs at least {min_points}.", parameter=parameter)
    if not _ASSUME_FINITE.get():
        check_points_finite(arr, name=name)
    return arr


def as_neighbourhoods(centres, neighbourhoods) -> tuple[np.ndarray, np.ndarray]:
    """Centres (N, D) and their finite neighbourhoods (N, K, D), checked against each other."""
    c = as_points(centres, name="centres", min_points=1)
    try:
        nb = np.asarray(neighbourhoods)
    except Exception as exc:
        raise InputError(f"neighbourhoods could not be read as an array: {exc}") from None
    if nb.ndim != 3 or nb.shape[0] != c.shape[0] or nb.shape[2] != c.shape[1]:
        raise InputError(
            f"neighbourhoods must have shape (N, K, D) = ({c.shape[0]}, K, {c.shape[1]}) "
            f"to match the centres, got {nb.shape}."
        )
    if not np.issubdtype(nb.dtype, np.number):
        raise InputError(f"neighbourhoods must be numeric, got dtype {nb.dtype}.")
    if not np.isfinite(nb).all():
        raise InputError("neighbourhoods contain NaN or Inf; remove those points.")
    return c, nb


def as_pool(pool_inputs) -> np.ndarray:
    """Pool inputs (e.g. images) as a finite float32 array (P, *input_shape)."""
    pool = np.asarray(to_numpy(pool_inputs), dtype=np.float32)
    if pool.ndim < 2 or pool.shape[0] < 1:
        raise InputError(f"pool inputs must have shape (points, *input_shape), got {pool.shape}.")
    if not np.isfinite(pool).all():
        raise InputError("pool inputs contain NaN or Inf; remove those points.")
    return pool


def as_paired(x, y) -> tuple[np.ndarray, np.ndarray]:
    """Two measures of equal length as float64 vectors, pairs with a NaN or Inf dropped."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise InputError(f"the two measures have different lengths ({len(x)} and {len(y)}).")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def count_samples(data) -> int:
    """The number of samples of a data set (anything with a length), at least one."""
    try:
        n_points = len(data)
    except TypeError:
        raise InputError(
            "the data set has no length; give a map-style Dataset or a tensor of inputs."
        ) from None
    if n_points < 1:
        raise InputError("the data set is empty; give at least one sample.")
    return n_points


def check_widths(layers: Sequence[Any], max_features: int, what: str) -> None:
    """Every layer (with `.name` and `.points`) has at most max_features features."""
    for layer in layers:
        width = layer.points.shape[1]
        if width > max_features:
            raise InputError(
                f"layer {layer.name!r} has {width} features, more than {what} handles "
                f"({max_features}: it needs p x p matrices); reduce it (reduction avgpool or "
                "project:N) or leave it out of the layers."
            )


# --- labels, classes and classifiers -----------------------------------------------------


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


def as_class_indices(
    labels, n_points: int, n_classes: int | None = None, *, name: str = "labels"
) -> np.ndarray:
    """Integer class indices, one per point: in 0..n_classes-1, or merely non-negative without n_classes.

    Streaming needs indices that mean the same class in every batch, so strings and other
    non-numeric labels are refused here (the whole-array functions map them to indices first).
    """
    arr = np.asarray(to_numpy(labels))
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        span = "0..C-1" if n_classes is None else f"0..{n_classes - 1}"
        raise InputError(
            f"{name} must be integer class indices {span}, got dtype {arr.dtype}; "
            "map the labels to indices first."
        )
    arr = as_labels(arr, n_points, name=name)
    if n_classes is None:
        if arr.size and arr.min() < 0:
            raise InputError(f"{name} holds negative labels; class indices must be 0..C-1.")
        return arr
    if len(arr) and (arr.min() < 0 or arr.max() >= n_classes):
        bad = arr[(arr < 0) | (arr >= n_classes)][0]
        raise InputError(
            f"{name} contain class {bad}, outside 0..{n_classes - 1}; "
            f"give n_classes larger than every label (or a classifier with one row per class)."
        )
    return arr


def as_collapse_labels(labels, n_points: int, n_classes: int | None = None) -> tuple[np.ndarray, int]:
    """(class indices, number of classes) for neural collapse: two or more classes, each with 2+ samples.

    Without `n_classes` the classes are the sorted distinct labels; with it (the classifier's
    rows) labels must be indices 0..n_classes-1 and every class must be present.
    """
    if labels is None:
        raise InputError(
            "neural collapse needs class labels: give labels for these points.", parameter="labels"
        )
    arr = as_labels(labels, n_points)
    if n_classes is None:
        _, y = np.unique(arr, return_inverse=True)
        y = y.astype(np.int64)
        n_classes = int(y.max()) + 1 if len(y) else 0
        if n_classes < 2:
            raise InputError("the labels hold a single class; neural collapse needs at least 2 classes.")
    else:
        y = as_class_indices(arr, n_points, n_classes)
    counts = np.bincount(y, minlength=n_classes)
    small = np.flatnonzero(counts < 2)
    if len(small):
        c = int(small[0])
        raise InputError(
            f"class {c} has {counts[c]} sample(s); neural collapse needs at least 2 samples of every "
            f"class{' of the classifier' if counts[c] == 0 else ''}: give more data (more points) or "
            "drop that class."
        )
    return y, n_classes


def as_target_classes(target_classes) -> tuple[int, ...]:
    """Target classes (one index or several) as a sorted tuple of distinct non-negative ints."""
    raw = [target_classes] if np.ndim(target_classes) == 0 else list(target_classes)
    if not raw or any(int(c) != c or c < 0 for c in raw):
        raise InputError(f"target classes must be non-negative class indices, got {target_classes}.")
    return tuple(sorted({int(c) for c in raw}))


def select_targets(
    classes: str | int | Sequence[int], num_classes: int, *, as_set: bool = False
) -> list[tuple[int, ...]]:
    """The targets to measure: 'all' (each class), one class, or a list (each, or one set)."""
    if isinstance(classes, str) and classes.strip().lower() == "all":
        chosen = list(range(num_classes))
    else:
        chosen = parse_int_list(classes, name="classes")
    bad = [c for c in chosen if not 0 <= c < num_classes]
    if bad:
        raise InputError(
            f"class {bad[0]} does not exist: the model has {num_classes} classes (0 to {num_classes - 1})."
        )
    chosen = list(dict.fromkeys(chosen))  # repeats dropped, order kept
    if as_set:
        if len(chosen) < 2:
            raise InputError(
                "a set needs two or more classes (e.g. 3,5): a set of one is a class.", parameter="as_set"
            )
        return [tuple(sorted(chosen))]
    return [(c,) for c in chosen]


def as_classifier(classifier, bias, *, n_classes: int, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """The classifier W as (n_classes, n_features) float64 and the bias as (n_classes,) (zeros when None)."""
    weights = as_points(to_numpy(classifier), name="classifier", min_points=1).astype(np.float64)
    if weights.shape != (n_classes, n_features):
        raise InputError(
            f"classifier has shape {weights.shape} but the features need "
            f"({n_classes}, {n_features}) (one row per class, one column per feature); "
            "pass the last Linear's weight."
        )
    if bias is None:
        return weights, np.zeros(n_classes)
    offsets = np.asarray(to_numpy(bias), dtype=np.float64).reshape(-1)
    if offsets.shape != (n_classes,):
        raise InputError(f"bias has {offsets.size} entries but the classifier has {n_classes} rows.")
    if not np.isfinite(offsets).all():
        raise InputError("bias contains NaN or Inf; pass the last Linear's finite bias.")
    return weights, offsets


# --- numbers and options -----------------------------------------------------------------


def check_k(k: int, n_points: int, *, name: str = "k") -> int:
    """A neighbour count with 1 <= k < n_points."""
    k = check_count(k, name=name, minimum=1)
    if k >= n_points:
        raise InputError(
            f"{k} neighbours need more than {k} points but there are {n_points}; use fewer or give more "
            "points.",
            parameter=name,
        )
    return k


MAX_SEED = 2**63 - 1


def _whole(value) -> int | None:
    """`value` as an int when it is a whole number (not a bool, not NaN or Inf), else None."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    if isinstance(value, (float, np.floating)) and not (math.isfinite(value) and float(value).is_integer()):
        return None
    return int(value)


def check_seed(seed, *, name: str = "seed") -> int:
    """A random seed: a whole number from 0 to 2**63 - 1 (what numpy and torch both accept)."""
    value = _whole(seed)
    if value is None or not 0 <= value <= MAX_SEED:
        raise InputError(f"must be a whole number from 0 to 2**63 - 1, got {seed!r}.", parameter=name)
    return value


def check_count(value, *, name: str, minimum: int = 0, maximum: int | None = None) -> int:
    """A whole number of at least `minimum` (and at most `maximum`): a count of resamples,
    points, planes, steps.

    >>> check_count(200, name="n_bootstrap")
    200
    >>> check_count(-1, name="n_bootstrap")
    Traceback (most recent call last):
    ...
    manifold_probe.errors.InputError: n_bootstrap: must be a whole number of at least 0, got -1.
    """
    whole = _whole(value)
    if whole is None or whole < minimum or (maximum is not None and whole > maximum):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        raise InputError(f"must be a whole number {bound}, got {value!r}.", parameter=name)
    return whole


def check_positive(value, *, name: str, integer: bool = False, allow_zero: bool = False):
    """A positive (or non-negative) finite number, optionally whole."""
    if integer:
        return check_count(value, name=name, minimum=0 if allow_zero else 1)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"must be a number, got {value!r}.", parameter=name)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise InputError(f"must be a {kind} finite number, got {value!r}.", parameter=name)
    return float(value)


def check_fraction(value, *, name: str) -> float:
    """A number in [0, 1]."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not 0 <= value <= 1
    ):
        raise InputError(f"must be a number from 0 to 1, got {value!r}.", parameter=name)
    return float(value)


def check_tangent_dim(dim, ambient: int) -> int:
    """A tangent dimension: a positive whole number below the ambient dimension."""
    dim = check_count(dim, name="dim", minimum=1)
    if dim >= ambient:
        raise InputError(
            f"the tangent dimension {dim} must be below the ambient dimension {ambient}; "
            "a manifold as wide as its space has no normal directions to bend into.",
            parameter="dim",
        )
    return dim


def check_curvature_dim(dim: int | str | None) -> int | str | None:
    """The curvature measures' `dim`: None (each layer's spectral gap), a positive integer, or
    "twonn" (each layer's rounded TwoNN, the paper's protocol); digits given as text (a command
    line, a CSV cell) become an integer."""
    if isinstance(dim, str) and dim.strip().isdigit():
        dim = int(dim)
    if dim is None or dim == "twonn":
        return dim
    if isinstance(dim, (int, np.integer)) and not isinstance(dim, bool) and dim >= 1:
        return int(dim)
    raise InputError(
        f"must be a positive integer or 'twonn' (the paper's protocol), got {dim!r}.", parameter="dim"
    )


def check_resample_counts(n_bootstrap: int, n_perm: int) -> None:
    """Bootstrap and permutation counts, both non-negative."""
    if n_bootstrap < 0 or n_perm < 0:
        raise InputError(f"bootstrap and permutation counts must be >= 0, got {n_bootstrap} and {n_perm}.")


def parse_int_list(text: str | int | Sequence[int], *, name: str) -> list[int]:
    """'8,16,32' (or a sequence of ints) as a list of whole numbers; empty is an error."""
    if isinstance(text, str):
        parts = [part.strip() for part in text.split(",")]
        if not any(parts):
            raise InputError("is empty: give comma-separated whole numbers, e.g. 8,16,32.", parameter=name)
        if not all(parts):
            raise InputError(
                f"{text!r} has an empty item: give comma-separated whole numbers.", parameter=name
            )
        values: list[Any] = []
        for part in parts:
            try:
                values.append(int(part))
            except ValueError:
                raise InputError(f"{text!r}: {part!r} is not a whole number; give e.g. 8,16,32.",
                                 parameter=name) from None  # fmt: skip
        return values
    values = [text] if np.ndim(text) == 0 else list(text)
    if not values:
        raise InputError("is empty: give at least one whole number.", parameter=name)
    if any(_whole(v) is None for v in values):
        raise InputError(f"must hold whole numbers, got {values}.", parameter=name)
    return [int(v) for v in values]


def check_dims(
    dims: str | int | Sequence[int], input_dim: int | None = None, *, name: str = "dims"
) -> list[int]:
    """Cutting dimensions: whole numbers from 1 to the input dimension, sorted, repeats dropped."""
    values = parse_int_list(dims, name=name)
    low = min(values)
    if low < 1:
        raise InputError(f"cutting dimension {low} is not positive: cutting dimensions must be at least 1.",
                         parameter=name)  # fmt: skip
    if input_dim is not None and max(values) > input_dim:
        raise InputError(
            f"cutting dimension {max(values)} exceeds the input dimension {input_dim}: "
            f"cutting dimensions (planes) have at most {input_dim} dimensions.",
            parameter=name,
        )
    return sorted(set(values))


def parse_flag(text: str, *, name: str) -> bool:
    """A true/false cell ('True', '1', 'yes' / 'False', '0', 'no', empty) as a bool."""
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no", ""):
        return False
    raise InputError(f"must be True or False, got {text!r}.", parameter=name)


def check_sweep_options(
    measures: Sequence[str],
    executor: str,
    workers: int | None,
    *,
    known_measures: Sequence[str],
    executors: Sequence[str],
) -> tuple[str, ...]:
    """A sweep's measures (distinct, known; returned in order), executor and worker count."""
    chosen = tuple(dict.fromkeys(p.strip() for p in measures if p.strip()))
    if not chosen:
        raise InputError(f"give at least one measure: {', '.join(known_measures)}.", parameter="measures")
    unknown = [p for p in chosen if p not in known_measures]
    if unknown:
        raise InputError(
            f"unknown measure {unknown[0]!r}: use {', '.join(known_measures)}.", parameter="measures"
        )
    if executor not in executors:
        raise InputError(
            f"unknown executor {executor!r}: use {' or '.join(executors)}.", parameter="executor"
        )
    if workers is not None:
        check_count(workers, name="workers", minimum=1)
    return chosen
