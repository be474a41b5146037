"""Data held in memory: `TensorImages` (one tensor of inputs), `KeywordArrays` (named arrays
passed to the model as keyword arguments), and the `arrays:` format, a dict of named arrays
(`keyword_arrays`) that `load_data` takes in place of a spec."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ...errors import InputError
from ...validation import as_class_indices


class TensorImages(Dataset):
    """Images held in memory as one tensor, turned into float32 inputs item by item.

    An item is `(images[i] * scale - mean) / std` with its label; `mean` and `std` hold one
    value per channel (axis 0 of an item) or are None (no standardisation). Integer `images`
    without scale and standardisation (token ids) stay integer: items are int64, so they can
    reach an `nn.Embedding`.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: np.ndarray,
        *,
        scale: float = 1.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        self.images = images
        self.labels = labels
        self.scale = scale
        self.mean = None if mean is None else tuple(float(v) for v in mean)
        self.std = None if std is None else tuple(float(v) for v in std)
        per_channel = (-1,) + (1,) * max(images.dim() - 2, 0)
        self._mean = None if mean is None else torch.tensor(self.mean).view(per_channel)
        self._std = None if std is None else torch.tensor(self.std).view(per_channel)

    def __len__(self) -> int:
        return len(self.images)

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        """Float32 model inputs from stored images (one item or a batch with a leading axis);
        int64 for integer arrays used as stored (token ids)."""
        if not images.is_floating_point() and self.scale == 1.0 and self._mean is None:
            return images.to(torch.int64)
        x = images.to(torch.float32)
        if self.scale != 1.0:
            x = x * self.scale
        if self._mean is not None:
            x = (x - self._mean) / self._std
        return x

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index]), int(self.labels[index])

    def subset(self, indices: np.ndarray) -> TensorImages:
        """The images at `indices`, with the same scaling and standardisation."""
        return TensorImages(
            self.images[torch.from_numpy(indices)],
            self.labels[indices],
            scale=self.scale,
            mean=self.mean,
            std=self.std,
        )

    def standardised(self, mean: Sequence[float], std: Sequence[float]) -> TensorImages:
        """The same images with per-channel (mean, std) standardisation after the scaling."""
        return TensorImages(self.images, self.labels, scale=self.scale, mean=mean, std=std)


LABEL_NAMES = ("y", "labels", "label")
"""Names of the label array among named arrays (an npz archive, a dict of arrays)."""


class KeywordArrays(Dataset):
    """Named arrays of one length whose items are the model's keyword arguments.

    Item i is `({name: arrays[name][i]}, labels[i])`; batches are passed to the model as
    `model(**batch)` (a Hugging Face model's `input_ids`, `attention_mask`, ...). Integer and
    boolean arrays become int64 tensors, the others float32.
    """

    def __init__(self, arrays: dict[str, torch.Tensor], labels: np.ndarray):
        self.arrays = arrays
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[dict[str, torch.Tensor], int]:
        return {name: array[index] for name, array in self.arrays.items()}, int(self.labels[index])

    def subset(self, indices: np.ndarray) -> KeywordArrays:
        """The samples at `indices`."""
        chosen = torch.from_numpy(indices)
        return KeywordArrays({k: v[chosen] for k, v in self.arrays.items()}, self.labels[indices])


def arrays_digest(arrays: Mapping) -> str:
    """sha256 of named arrays: every name, dtype, shape and the bytes (what identifies a dict
    of arrays in the activation cache)."""
    sha = hashlib.sha256()
    for name in sorted(arrays, key=str):
        values = np.ascontiguousarray(np.asarray(arrays[name]))
        sha.update(f"{name}|{values.dtype}|{values.shape}|".encode() + values.tobytes())
    return sha.hexdigest()


def as_input_tensor(values: np.ndarray, name: str, where: str) -> torch.Tensor:
    """A model input from a numeric array: int64 for integers and booleans, else float32."""
    if values.dtype == bool or np.issubdtype(values.dtype, np.integer):
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.int64))
    if not np.issubdtype(values.dtype, np.number):
        raise InputError(f"{name} in {where} must be a numeric array, got dtype {values.dtype}.")
    if not np.isfinite(values).all():
        raise InputError(f"{name} in {where} contains NaN or Inf; remove or impute them.")
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


def keyword_arrays(arrays, where: str) -> tuple[Dataset, np.ndarray, int, tuple[int, ...]]:
    """(dataset, labels, number of classes, shape of the first input) from named arrays: the
    label array (`y`, `labels` or `label`) and every other array, one row per sample, as the
    model's keyword arguments (a lone array `x` as its positional input).

    >>> ids = np.arange(12).reshape(3, 4)
    >>> named = {"input_ids": ids, "attention_mask": ids > 0, "labels": [0, 1, 1]}
    >>> data, labels, c, shape = keyword_arrays(named, "dict")
    >>> labels.tolist(), c, shape
    ([0, 1, 1], 2, (4,))
    """
    arrays = {str(k): np.asarray(v) for k, v in arrays.items()}
    label_name = next((name for name in LABEL_NAMES if name in arrays), None)
    if label_name is None:
        found = ", ".join(sorted(arrays)) or "nothing"
        raise InputError(
            f"{where} holds no labels: give arrays x and y, or named inputs (input_ids, ...) with "
            f"labels named y, labels or label (found {found})."
        )
    raw = arrays.pop(label_name)
    if not arrays:
        raise InputError(f"{where} holds labels but no inputs (add input_ids, x or other arrays).")
    n = len(raw)
    for name, values in arrays.items():
        if values.ndim < 1 or len(values) != n or n == 0:
            raise InputError(
                f"{name} in {where} has shape {values.shape} but there are {n} labels; every array "
                "needs one row per sample."
            )
    labels = as_class_indices(raw, n, None, name=f"{label_name} in {where}")
    tensors = {name: as_input_tensor(values, name, where) for name, values in arrays.items()}
    first = next(iter(tensors.values()))
    # a lone `x` is the model's one positional input, as in an npz of x and y
    dataset = TensorImages(first, labels) if list(tensors) == ["x"] else KeywordArrays(tensors, labels)
    return dataset, labels, int(labels.max()) + 1, tuple(first.shape[1:])
