"""`npz:PATH`: a NumPy archive read with `allow_pickle=False`.

It holds `x` (N, ...) and `y` (N,) for the `train` split and, optionally, `x_test` and
`y_test` for the `test` split. Arrays are used as stored: float32, or int64 for integer
arrays (token ids for an `nn.Embedding`); labels are whole numbers 0..C-1, C = 1 + the
largest label. An archive without `x` holds named arrays passed to the model as keyword
arguments (`input_ids`, `attention_mask`, ...), its labels named `y`, `labels` or `label`;
the test split is the arrays named `NAME_test`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...validation import as_class_indices, check_npy_header, existing_file, zip_members
from . import Parsed

NPY_MAGIC, ZIP_MAGIC = b"\x93NUMPY", b"PK"


def read_arrays(path: Path, what: str, *, npy: bool = True) -> dict[str, np.ndarray]:
    """The arrays of the NumPy file at `path`: a `.npz` archive's by name, or a `.npy` file's
    array under the name "" (when `npy`), told by the file's first bytes, never a pickle.

    Bounded by the file's size: an archive's members may decompress to at most
    `validation.expansion_limit` of it, and every array must fit in the bytes that hold it
    (NumPy allocates what a header declares before it reads). Anything else (a `.csv`, a
    pickle) is "not a supported format"; every failure is an InputError naming the file.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(len(NPY_MAGIC))
        if npy and head == NPY_MAGIC:
            handle.seek(0)
            check_npy_header(handle, size, f"{what} {path}")
    formats = ".npy file or .npz archive (np.save, np.savez)" if npy else ".npz archive (np.savez)"
    if not (head.startswith(ZIP_MAGIC) or (npy and head == NPY_MAGIC)):
        raise InputError(
            f"{what} {path} is not a supported format: give a NumPy {formats}; a table such as "
            "a .csv becomes one with np.save(PATH, np.loadtxt(CSV, delimiter=','))."
        )
    try:
        if head == NPY_MAGIC:
            return {"": np.load(path, allow_pickle=False)}
        with zipfile.ZipFile(path) as archive:
            for info in zip_members(archive, size, f"{what} {path}"):
                with archive.open(info) as member:
                    check_npy_header(member, info.file_size, f"{info.filename} in {what} {path}")
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except InputError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise InputError(
                f"{what} {path} holds Python objects, which are not loaded for safety; "
                "save plain numeric arrays with np.save or np.savez."
            ) from None
        raise InputError(f"could not read {what} {path}: {exc}") from None
    except Exception as exc:
        raise InputError(f"could not read {what} {path}: {exc}") from None


def load(path_text: str, split: str) -> Parsed:
    """One split of the archive at `path_text` (see the module docstring)."""
    path = existing_file(path_text, what="npz file")
    arrays = read_arrays(path, "npz file", npy=False)
    if "x" not in arrays and arrays:
        return _npz_keywords(arrays, path, split)
    if "x" not in arrays or "y" not in arrays:
        found = ", ".join(sorted(arrays)) or "nothing"
        raise InputError(f"{path} must hold arrays named x and y (found {found}).")
    x_name, y_name = ("x", "y") if split == "train" else ("x_test", "y_test")
    if x_name not in arrays or y_name not in arrays:
        raise InputError(
            f"{path} has no test split (arrays x_test and y_test); "
            "add them to the archive or use --split train."
        )
    x = arrays[x_name]
    if not np.issubdtype(x.dtype, np.number) or x.ndim < 2 or len(x) == 0:
        raise InputError(
            f"{x_name} in {path} must be a non-empty numeric array of shape (N, ...), "
            f"got dtype {x.dtype} and shape {x.shape}."
        )
    if not np.isfinite(x).all():
        raise InputError(f"{x_name} in {path} contains NaN or Inf; remove or impute them.")
    labels = as_class_indices(arrays[y_name], len(x), None, name=f"{y_name} in {path}")
    other_name = "y_test" if split == "train" else "y"
    largest = labels.max()
    if other_name in arrays and arrays[other_name].size:
        other = arrays[other_name]
        other_labels = as_class_indices(other, len(other), None, name=f"{other_name} in {path}")
        largest = max(largest, other_labels.max())
    num_classes = int(largest) + 1
    from .tensors import TensorImages, as_input_tensor  # torch: only when images are read

    images = as_input_tensor(x, x_name, str(path))
    return Parsed(TensorImages(images, labels), labels, num_classes, tuple(x.shape[1:]))


def _npz_keywords(arrays: dict[str, np.ndarray], path: Path, split: str):
    """An npz of named arrays without `x`: the model's keyword arguments (`keyword_arrays`);
    the `test` split is the arrays whose names end in `_test` (suffix dropped)."""
    test = {name[: -len("_test")]: v for name, v in arrays.items() if name.endswith("_test")}
    train = {name: v for name, v in arrays.items() if not name.endswith("_test")}
    if split == "test" and not test:
        raise InputError(
            f"{path} has no test split (arrays named like input_ids_test, y_test); "
            "add them to the archive or use --split train."
        )
    from .tensors import LABEL_NAMES, keyword_arrays  # torch: only when inputs are read

    chosen = test if split == "test" else train
    dataset, labels, num_classes, shape = keyword_arrays(chosen, str(path))
    other = train if split == "test" else test
    other_labels = next((other[name] for name in LABEL_NAMES if name in other), None)
    if other_labels is not None and np.size(other_labels):
        checked = as_class_indices(other_labels, len(other_labels), None, name=f"labels in {path}")
        num_classes = max(num_classes, int(checked.max()) + 1)
    return Parsed(dataset, labels, num_classes, shape)


def has_test_split(path_text: str) -> bool:
    """Whether the archive holds a test split (True when it cannot be read: `load` reports that)."""
    try:
        with np.load(Path(path_text).expanduser(), allow_pickle=False) as archive:
            if "x" not in archive.files:  # named keyword arrays: the test split ends in _test
                return any(name.endswith("_test") for name in archive.files)
            return {"x_test", "y_test"} <= set(archive.files)
    except Exception:
        return True
