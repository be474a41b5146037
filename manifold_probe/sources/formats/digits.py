"""`digits`: scikit-learn's 8x8 handwritten digits (1,797 images, shipped with scikit-learn),
with a fixed stratified split that depends on nothing but its seed (see data/digits.md)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from . import Parsed
from .tensors import TensorImages

DIGITS_SPLIT_SEED = 0
"""The seed of the built-in digits split; fixed forever (checkpoints record it)."""

DIGITS_TEST_FRACTION = 0.25


def digits_split(
    labels: np.ndarray,
    *,
    seed: int = DIGITS_SPLIT_SEED,
    test_fraction: float = DIGITS_TEST_FRACTION,
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices: test_fraction * n_c of every class c (rounded half up) to test.

    Within a class, samples are ordered by sha256(f"{seed}:{index}"), so the split depends on
    nothing but the seed and the data order (no random-number generator whose stream could
    change between library versions).
    """
    keys = np.array(
        [
            int.from_bytes(hashlib.sha256(f"{seed}:{i}".encode()).digest()[:8], "big")
            for i in range(len(labels))
        ],
        dtype=np.uint64,
    )
    test = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        ranked = members[np.argsort(keys[members], kind="stable")]
        test.append(ranked[: int(np.floor(test_fraction * len(members) + 0.5))])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


def load(split: str) -> Parsed:
    """One split of the digits: (1, 8, 8) float32 images, standardised by the training pixels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = bunch.data.astype(np.float64) / 16.0
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = digits_split(labels)
    mean = pixels[train_idx].mean()
    std = pixels[train_idx].std()
    chosen = train_idx if split == "train" else test_idx
    images = ((pixels[chosen] - mean) / std).astype(np.float32).reshape(-1, 1, 8, 8)
    dataset = TensorImages(torch.from_numpy(images), labels[chosen])
    return Parsed(dataset, labels[chosen], 10, (1, 8, 8))
