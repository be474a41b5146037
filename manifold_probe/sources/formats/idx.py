"""MNIST and Fashion-MNIST from their IDX files, gzipped or not, in the common layouts.

The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/) is a 4-byte magic number,
``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian int32 sizes, then the values in C order.
MNIST and Fashion-MNIST store unsigned bytes (type 0x08): images as (N, 28, 28), labels as (N,).

Where the files may lie under ROOT (each name with or without ``.gz``):

- ``ROOT/MNIST/raw/`` or ``ROOT/FashionMNIST/raw/`` (torchvision's layouts),
- ``ROOT/raw/``,
- ``ROOT/`` itself (flat, as Zalando's repository and Debian's package ship them).

Debian's package ``dataset-fashion-mnist`` installs the four gzipped files in
``/usr/share/datasets/fashion-mnist``; ``fashion-mnist`` without a ROOT reads them from there.

Reading is bounded: the sizes in the header must match what the file holds (a plain file's
size is checked before anything is read), so a short or padded file, or a gzip stream that
expands past its declared size, is refused with a message naming the file; a gzipped file may
declare at most `validation.expansion_limit` of its own size (16 times, at least 64 MiB), and
no file more than 256 MiB.

Example
-------
>>> images, labels, names = read_split("/usr/share/datasets/fashion-mnist", "test", "fashion-mnist")
... # doctest: +SKIP
>>> images.shape, labels.shape, names[0]  # doctest: +SKIP
((10000, 28, 28), (10000,), 'T-shirt/top')
"""

from __future__ import annotations

import gzip
import os
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ...errors import InputError
from ...validation import check_expansion
from . import Parsed
from .tensors import TensorImages

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""Fashion-MNIST's class names, in label order (Xiao, Rasul & Vollgraf 2017)."""

MNIST_CLASSES: tuple[str, ...] = tuple(str(digit) for digit in range(10))

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's `dataset-fashion-mnist` package puts the four gzipped IDX files."""

IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""The (images, labels) file names of each split, without `.gz`."""

IDX_SETS: tuple[str, ...] = ("mnist", "fashion-mnist")
"""The data specs read from IDX files."""

_DATASETS = {
    "mnist": {"title": "MNIST", "folder": "MNIST", "classes": MNIST_CLASSES},
    "fashion-mnist": {
        "title": "Fashion-MNIST",
        "folder": "FashionMNIST",
        "classes": FASHION_MNIST_CLASSES,
    },
}

_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

MAX_IDX_BYTES = 256 * 2**20
"""The largest array one IDX file may declare (MNIST's training images take 47 MB)."""


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in the IDX file at `path` (gzip-compressed or not, told by its first bytes).

    Parameters
    ----------
    path : the file.

    Returns
    -------
    The array, in native byte order, of the shape the header declares.

    Raises
    ------
    InputError
        The file is missing, not IDX, declares more than MAX_IDX_BYTES, or holds fewer or more
        bytes than its header declares.

    Example
    -------
    >>> read_idx("t10k-labels-idx1-ubyte.gz").shape  # doctest: +SKIP
    (10000,)
    """
    path = Path(path)
    try:
        compressed = _is_gzip(path)
        file_size = path.stat().st_size
        with (gzip.open if compressed else open)(path, "rb") as handle:
            head = handle.read(4)
            if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] not in _TYPES:
                raise InputError(f"{path} is not an IDX file (bad magic number {head.hex()}).")
            dtype, ndim = _TYPES[head[2]], head[3]
            dims_bytes = handle.read(4 * ndim)
            if len(dims_bytes) < 4 * ndim:
                raise InputError(f"{path} is truncated in its IDX header.")
            shape = struct.unpack(f">{ndim}i", dims_bytes)
            if min(shape, default=1) < 0:
                raise InputError(f"{path} declares a negative size in its IDX header: {shape}.")
            size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if size > MAX_IDX_BYTES:
                raise InputError(
                    f"{path} declares an array of {size / 2**20:.0f} MiB, more than the "
                    f"{MAX_IDX_BYTES // 2**20} MiB an IDX file is read up to."
                )
            if compressed:  # what a gzip stream expands to is known only once read
                check_expansion(size, file_size, str(path))
            elif file_size != 4 + 4 * ndim + size:
                state = "truncated" if file_size < 4 + 4 * ndim + size else "longer than its header declares"
                raise InputError(f"{path} is {state}: the header declares shape {shape}.")
            body = handle.read(size + 1)
    except InputError:
        raise
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"could not read {path}: {exc}") from None
    if len(body) != size:
        state = "truncated" if len(body) < size else "longer than its header declares"
        raise InputError(f"{path} is {state}: the header declares shape {shape}.")
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _candidates(root: Path, folder: str, name: str) -> list[Path]:
    places = [root / folder / "raw", root / "raw", root]
    return [place / (name + ending) for place in places for ending in ("", ".gz")]


def locate(root: str | Path, name: str, dataset: str = "fashion-mnist") -> Path | None:
    """The first existing file for IDX file `name` under `root`, in the order of the module docstring."""
    folder = _DATASETS[dataset]["folder"]
    for path in _candidates(Path(root).expanduser(), folder, name):
        if path.is_file():
            return path
    return None


def _missing_message(root: Path | None, name: str, dataset: str) -> str:
    info = _DATASETS[dataset]
    if root is None:
        return (
            f"{info['title']} not found: give its location as {dataset}:ROOT, or install Debian's "
            f"package (apt-get install dataset-fashion-mnist puts the files in "
            f"{DEBIAN_FASHION_MNIST}); nothing is downloaded."
        )
    return (
        f"{info['title']} not found: no {name} (or {name}.gz) in {root}, {root / 'raw'} or "
        f"{root / info['folder'] / 'raw'}; put the four IDX files there; nothing is downloaded."
    )


@lru_cache(maxsize=4)
def _read_split_cached(paths: tuple[Path, Path], stamps: tuple) -> tuple[np.ndarray, np.ndarray]:
    images, labels = (read_idx(path) for path in paths)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def read_split(
    root: str | Path | None, split: str, dataset: str = "fashion-mnist"
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """One split of MNIST or Fashion-MNIST: uint8 images (N, 28, 28), int64 labels (N,), class names.

    Parameters
    ----------
    root : where the IDX files lie (see the module docstring); None for Fashion-MNIST means
        Debian's package location.
    split : "train" or "test".
    dataset : "mnist" or "fashion-mnist".

    Returns
    -------
    images, labels, class names. The arrays are read once per process and file version (path,
    size, modification and status-change times, inode) and returned read-only.
    """
    if dataset not in _DATASETS:
        raise InputError(f"unknown IDX data set {dataset!r}: use mnist or fashion-mnist.")
    if root is None and dataset == "fashion-mnist" and DEBIAN_FASHION_MNIST.is_dir():
        root = DEBIAN_FASHION_MNIST
    root_path = None if root is None else Path(root).expanduser()
    paths = []
    for name in IDX_FILES[split]:
        path = None if root_path is None else locate(root_path, name, dataset)
        if path is None:
            raise InputError(_missing_message(root_path, name, dataset))
        paths.append(path.resolve())
    # the version of each file: rsync -a and tar x keep size and mtime but make a new inode, and
    # anything that rewrites a file in place moves its status-change time
    stamps = tuple((s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino) for s in map(os.stat, paths))
    images, labels = _read_split_cached(tuple(paths), stamps)
    title = _DATASETS[dataset]["title"]
    if images.ndim != 3 or images.dtype != np.uint8:
        raise InputError(
            f"{paths[0]} holds {images.dtype} of shape {images.shape}; {title} images "
            "are uint8 (N, rows, cols)."
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise InputError(
            f"{paths[1]} holds {labels.shape[0] if labels.ndim else 0} labels for the "
            f"{len(images)} images of {paths[0]}."
        )
    classes = _DATASETS[dataset]["classes"]
    if labels.size and int(labels.max()) >= len(classes):
        raise InputError(f"{paths[1]} holds labels outside 0..{len(classes) - 1}.")
    return images, labels.astype(np.int64), classes


def location(kind: str, argument: str) -> Path | None:
    """The folder holding the IDX files a `mnist:ROOT` or `fashion-mnist[:ROOT]` spec reads
    (Debian's for `fashion-mnist` alone; the root itself when the files are missing)."""
    root = Path(argument).expanduser() if argument else DEBIAN_FASHION_MNIST
    found = locate(root, IDX_FILES["train"][0], kind) if root.is_dir() else None
    return found.parent if found is not None else (root if argument else None)


def load(kind: str, root_text: str | None, split: str) -> Parsed:
    """One split of MNIST or Fashion-MNIST as (1, 28, 28) images in [0, 1]."""
    images, labels, class_names = read_split(root_text or None, split, kind)
    # a private copy: the parsed files stay cached read-only for the next call in this process
    dataset = TensorImages(torch.from_numpy(images[:, None].copy()), labels, scale=1 / 255)
    return Parsed(dataset, labels, len(class_names), (1, *images.shape[1:]), class_names)
