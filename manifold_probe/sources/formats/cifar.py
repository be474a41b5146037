"""`cifar10:ROOT`, `cifar100:ROOT`: the python versions of CIFAR (ROOT/cifar-10-batches-py,
ROOT/cifar-100-python, as torchvision lays them out; ROOT may also be that folder itself), as
(3, 32, 32) tensors in [0, 1].

The pickled batches are read with `safe_pickle`'s unpickler, which only admits NumPy arrays
and plain containers, never a shared container, and bounds what it builds by the file's size,
so a planted file can neither run code nor expand into a memory bomb (torchvision's CIFAR
class uses the full pickle module and checks MD5 sums instead; shapes are checked here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import InputError
from . import Parsed
from .safe_pickle import read_array_pickle
from .tensors import TensorImages

CIFAR = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "label_key": "labels",
        "meta": ("batches.meta", "label_names"),
        "num_classes": 10,
        "title": "CIFAR-10",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "label_key": "fine_labels",
        "meta": ("meta", "fine_label_names"),
        "num_classes": 100,
        "title": "CIFAR-100",
    },
}
"""Each CIFAR's folder, batch files per split, label key, meta file and number of classes."""


def location(kind: str, root: Path) -> Path:
    """The batch folder a `cifar10:ROOT` or `cifar100:ROOT` spec reads."""
    inner = root / CIFAR[kind]["folder"]
    return inner if inner.is_dir() else root


def _read_array_pickle(path: Path) -> dict:
    """The dict a CIFAR batch or meta file holds."""
    entry = read_array_pickle(path)
    if not isinstance(entry, dict):
        raise InputError(f"{path} does not hold a CIFAR batch (a dict of data and labels).")
    return entry


def load(kind: str, root_text: str, split: str) -> Parsed:
    """One split of CIFAR-10 or CIFAR-100 under `root_text` (see the module docstring)."""
    info = CIFAR[kind]
    root = Path(root_text).expanduser()
    folder = root / info["folder"]
    if not folder.is_dir() and root.name == info["folder"]:
        folder = root
    names = info[split]
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise InputError(
            f"{info['title']} not found: expected {root / info['folder'] / missing[0]} "
            f"(the python version of {info['title']}, extracted into {root}); "
            "nothing is downloaded."
        )
    images, labels = [], []
    for name in names:
        entry = _read_array_pickle(folder / name)
        if "data" not in entry or info["label_key"] not in entry:
            raise InputError(
                f"{folder / name} is not a {info['title']} batch (no data or {info['label_key']})."
            )
        data = np.asarray(entry["data"])
        batch_labels = np.asarray(entry[info["label_key"]], dtype=np.int64).reshape(-1)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise InputError(
                f"{folder / name} holds data of shape {data.shape} ({data.dtype}); "
                f"{info['title']} batches hold uint8 rows of 3072 pixels."
            )
        if len(batch_labels) != len(data):
            raise InputError(f"{folder / name} has {len(data)} images but {len(batch_labels)} labels.")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(batch_labels)
    labels_all = np.concatenate(labels)
    if labels_all.min() < 0 or labels_all.max() >= info["num_classes"]:
        raise InputError(f"{folder} holds labels outside 0..{info['num_classes'] - 1}.")
    class_names = None
    meta_name, meta_key = info["meta"]
    if (folder / meta_name).is_file():
        meta = _read_array_pickle(folder / meta_name)
        if isinstance(meta.get(meta_key), list):
            class_names = tuple(str(v) for v in meta[meta_key])
    dataset = TensorImages(torch.from_numpy(np.concatenate(images)), labels_all, scale=1 / 255)
    return Parsed(dataset, labels_all, info["num_classes"], (3, 32, 32), class_names)
