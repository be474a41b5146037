"""One module per data format, each parsing its files into a `Parsed` data set; the dispatcher
that turns a spec string into one of them is `sources.data.load_data`.

| module | spec | files |
| --- | --- | --- |
| `digits` | `digits` | scikit-learn's 8x8 digits (shipped with scikit-learn) |
| `npz` | `npz:PATH` | a NumPy archive of arrays |
| `imagefolder` | `imagefolder:ROOT` | one folder of images per class |
| `cifar` | `cifar10:ROOT`, `cifar100:ROOT` | CIFAR's pickled batches (through `safe_pickle`) |
| `idx` | `mnist:ROOT`, `fashion-mnist[:ROOT]` | MNIST's and Fashion-MNIST's IDX files |
| `tensors` | a dict of arrays | in memory: `TensorImages`, `KeywordArrays` |

Every parser refuses what it cannot read with one `InputError` naming the file, and never
allocates more than its `limits` allow for the file's size (`limits` states the multiples).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

SPLITS: tuple[str, ...] = ("train", "test")


class Parsed(NamedTuple):
    """One split of a data set as a format module reads it."""

    dataset: Any  # a torch Dataset of (input, label)
    labels: np.ndarray
    num_classes: int
    input_shape: tuple[int, ...]
    class_names: tuple[str, ...] | None = None
