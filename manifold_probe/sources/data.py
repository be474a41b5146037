"""Data sets named by a spec string: the dispatcher over the format modules of
`sources.formats` (one module per format). Nothing is ever downloaded.

Specs (`load_data(spec, split=..., n_points=..., seed=...)`):

- `digits`: scikit-learn's 8x8 handwritten digits (`formats.digits`; see data/digits.md).
  A fixed stratified split, 25 % of every class to `test` (451 test, 1,346 train images),
  chosen by hashing each sample's index with the split seed 0 (`digits_split`). Pixels are
  scaled to [0, 1] (/16) and standardised with the training pixels' mean and standard
  deviation; each image is a (1, 8, 8) float32 tensor.
- `npz:PATH`: a NumPy archive of arrays `x`, `y` (and `x_test`, `y_test`), or of named
  keyword inputs (`formats.npz`). A Python dict of such arrays
  (`load_data({"input_ids": ..., "labels": ...})`) is the same (`formats.tensors`).
- `imagefolder:ROOT`: one sub-folder per class, `ROOT/train` and `ROOT/test` as the splits
  when ROOT has a `train` folder (`formats.imagefolder`).
- `cifar10:ROOT`, `cifar100:ROOT`: the python versions of CIFAR, read by a bounded unpickler
  that admits NumPy arrays and plain containers only (`formats.cifar`, `formats.safe_pickle`).
- `mnist:ROOT`, `fashion-mnist[:ROOT]`: the four IDX files of MNIST or Fashion-MNIST,
  gzipped or not (`formats.idx`); `fashion-mnist` alone reads Debian's
  `dataset-fashion-mnist` package (/usr/share/datasets/fashion-mnist).

Image sets (imagefolder, cifar, mnist) take `normalize=`: a name in NORMALIZATIONS or a
(mean, std) pair per channel, applied after the [0, 1] scaling, to match how a model was
trained. `n_points` draws a reproducible stratified subset of the split with
`np.random.default_rng(seed)` (kept in the split's original order).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ..errors import InputError
from ..validation import check_positive
from .formats import SPLITS, cifar, digits, idx, imagefolder, npz
from .formats.digits import DIGITS_SPLIT_SEED, DIGITS_TEST_FRACTION, digits_split
from .formats.normalize import NORMALIZATIONS, check_channels, normalization
from .formats.tensors import (
    LABEL_NAMES,
    KeywordArrays,
    TensorImages,
    arrays_digest,
    keyword_arrays,
)

__all__ = [
    "DIGITS_SPLIT_SEED",
    "DIGITS_TEST_FRACTION",
    "LABEL_NAMES",
    "NORMALIZATIONS",
    "SPEC_FORMS",
    "SPLITS",
    "KeywordArrays",
    "LabelledData",
    "TensorImages",
    "arrays_digest",
    "data_location",
    "digits_split",
    "has_test_split",
    "keyword_arrays",
    "load_data",
    "stratified_subset",
]

SPEC_FORMS: tuple[str, ...] = (
    "digits",
    "npz:PATH",
    "imagefolder:ROOT",
    "cifar10:ROOT",
    "cifar100:ROOT",
    "mnist:ROOT",
    "fashion-mnist[:ROOT]",
)
"""The valid forms of a data spec."""


@dataclass(frozen=True, eq=False)
class LabelledData(Dataset):
    """A labelled data set ready for a model, itself a map-style Dataset of (input, label).

    `dataset` yields (input of shape `input_shape`, int label), the input float32, int64 for
    token ids, or a dict of keyword inputs (`KeywordArrays`); `labels` holds all
    labels in the same order; `indices` are the positions of the points in the whole split
    (equal to arange(n) without `n_points`); `class_names` names the classes when the data
    set does (CIFAR, image folders, MNIST, Fashion-MNIST), else None; `preprocessing` records
    a `normalize` and `image_size` given to `load_data` ("" when none), so that cache keys and
    results tell such inputs apart.
    """

    dataset: Dataset
    labels: np.ndarray
    num_classes: int
    input_shape: tuple[int, ...]
    spec: str
    split: str
    n_points: int
    indices: np.ndarray
    seed: int
    split_seed: int = DIGITS_SPLIT_SEED
    class_names: tuple[str, ...] | None = None
    preprocessing: str = ""

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index]

    def inputs(self) -> torch.Tensor:
        """All inputs as one (n_points, *input_shape) float32 tensor (for sets that fit in RAM).

        For in-memory sets stored as float32 (digits, npz) this may share memory with the
        data set: do not modify it in place. Keyword inputs (named arrays) are no one tensor:
        an InputError.
        """
        if isinstance(self.dataset, KeywordArrays):
            raise InputError(
                f"the data {self.spec} are keyword inputs ({', '.join(self.dataset.arrays)}), not one "
                "tensor of images; this measure needs image inputs."
            )
        if isinstance(self.dataset, TensorImages):
            return self.dataset.transform(self.dataset.images)
        return torch.stack([self.dataset[i][0] for i in range(len(self.dataset))])

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (inputs, labels) batches; with `shuffle`, in the order of `randperm(generator)`."""
        n = len(self.dataset)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            chosen = order[start : start + batch_size]
            if isinstance(self.dataset, TensorImages):
                x = self.dataset.transform(self.dataset.images[chosen])
            else:
                x = torch.stack([self.dataset[int(i)][0] for i in chosen])
            yield x, torch.from_numpy(self.labels[chosen.numpy()])


# --- spec parsing and subsets --------------------------------------------------------------


def _spec_error(spec: str) -> InputError:
    kind = spec.partition(":")[0].lower()
    kinds = [form.partition(":")[0].partition("[")[0] for form in SPEC_FORMS]
    if spec.endswith(".npz") and ":" not in spec:
        guess = f"npz:{spec}"
    else:
        close = difflib.get_close_matches(kind, kinds, n=1, cutoff=0.5)
        guess = close[0] if close else None
    hint = f" (did you mean {guess}?)" if guess else ""
    return InputError(f"unknown data spec {spec!r}{hint}: use one of {', '.join(SPEC_FORMS)}.")


def stratified_subset(labels: np.ndarray, n_points: int, seed: int) -> np.ndarray:
    """Sorted indices of `n_points` samples drawn with `np.random.default_rng(seed)`.

    Each class gets floor(n_points * share) samples, the remainder going to the classes with
    the largest fractional parts (ties: smaller class index); with fewer points than classes
    the subset is a plain random draw.
    """
    total = len(labels)
    rng = np.random.default_rng(seed)
    if n_points == total:
        return np.arange(total)
    classes, counts = np.unique(labels, return_counts=True)
    if n_points < len(classes):
        return np.sort(rng.choice(total, size=n_points, replace=False))
    exact = n_points * counts / total
    quota = np.floor(exact).astype(int)
    remainder = n_points - quota.sum()
    order = np.lexsort((classes, -(exact - quota)))
    quota[order[:remainder]] += 1
    chosen = [
        rng.choice(np.flatnonzero(labels == c), size=q, replace=False)
        for c, q in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


def data_location(spec: str) -> Path | None:
    """The file or folder whose contents a spec reads (for cache keys), None for `digits`:
    the npz file, the image folder, CIFAR's batch folder, the folder holding MNIST's or
    Fashion-MNIST's IDX files (Debian's for `fashion-mnist` alone; the root itself when those
    are missing). Bounding it keeps a key from walking a whole data disk given as the root of
    `cifar10:/data`."""
    kind, _, argument = str(spec).strip().partition(":")
    kind = kind.lower()
    if kind in idx.IDX_SETS:
        return idx.location(kind, argument)
    if kind == "arrays" or not argument:
        return None
    root = Path(argument).expanduser()
    return cifar.location(kind, root) if kind in cifar.CIFAR else root


def has_test_split(spec: str) -> bool:
    """Whether `spec` names a data set with a `test` split (cheap: lists files, loads nothing).

    False only for an npz archive without x_test and y_test and an image folder without
    ROOT/train and ROOT/test; a bad spec or missing file is left for `load_data` to report.
    """
    kind, _, argument = str(spec).strip().partition(":")
    kind = kind.lower()
    if kind == "npz":
        return npz.has_test_split(argument)
    if kind == "imagefolder":
        return imagefolder.has_test_split(argument)
    return True


def _preprocessing(normalize, image_size, channels: int | None = None) -> str:
    """What `normalize`, `image_size` and `channels` did, as text ("" when none was given)."""
    parts = [] if channels is None else [f"channels={channels}"]
    norm = normalization(normalize)
    if norm is not None:
        parts.append(f"normalize=mean{list(norm[0])},std{list(norm[1])}")
    if image_size is not None:
        parts.append(f"image_size={int(image_size)}")
    return ";".join(parts)


def _columns(table) -> dict | None:
    """The named arrays of a dict of arrays, or of a Hugging Face `datasets.Dataset`-like
    table (`column_names`, `table[name]` a column); None for anything else."""
    if isinstance(table, Mapping):
        return dict(table)
    names = getattr(table, "column_names", None)
    if isinstance(names, (list, tuple)) and not isinstance(table, str):
        return {name: table[name] for name in names}
    return None


def load_data(
    spec,
    *,
    split: str = "train",
    n_points: int | None = None,
    seed: int = 0,
    normalize: str | tuple | None = None,
    image_size: int | None = None,
    channels: int | None = None,
) -> LabelledData:
    """The data set named by `spec` (see the module docstring), optionally a seeded subset.

    `spec` may also be a dict of arrays (or a Hugging Face `datasets.Dataset`, by its
    columns): the label array `y`, `labels` or `label`, and the model's keyword arguments
    (`input_ids`, `attention_mask`, ...), see `keyword_arrays`; its spec is then
    `arrays:<digest>`. `channels` (1 or 3) reads an image folder as grayscale or RGB.

    Raises InputError for an unknown spec (suggesting the closest form), missing files (saying
    what to put where), a bad split, or more points than the split holds.
    """
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}: use train or test.", parameter="split")
    columns = _columns(spec)
    if columns is None:
        spec = str(spec).strip()
        kind, sep, argument = spec.partition(":")
        kind = kind.lower()
    else:
        kind, sep, argument = "arrays", "", ""
    if channels is not None and (kind != "imagefolder" or channels not in (1, 3)):
        raise InputError(
            "channels applies to imagefolder data only, as 1 (grayscale) or 3 (RGB); "
            f"got {channels} for {kind}."
        )
    class_names = None
    if columns is not None:
        if split != "train" or normalize is not None or image_size is not None:
            raise InputError(
                "a dict of arrays is one split used as stored: give the test arrays as their own "
                "dict; normalize and image_size do not apply."
            )
        dataset, labels, num_classes, shape = keyword_arrays(columns, "the dict of arrays")
        spec = f"arrays:{arrays_digest(columns)[:16]}"
    elif kind == "digits":
        if sep:
            raise InputError(f"the digits data set takes no argument, got {spec!r}; use digits.")
        if normalize is not None or image_size is not None:
            raise InputError("digits is already normalised; normalize and image_size do not apply.")
        dataset, labels, num_classes, shape, _ = digits.load(split)
    elif kind in ("npz", "imagefolder", "cifar10", "cifar100", "mnist", "fashion-mnist"):
        if not argument and kind != "fashion-mnist":
            what = "PATH" if kind == "npz" else "ROOT"
            raise InputError(f"the {kind} data spec needs a location: {kind}:{what}.")
        if kind == "npz":
            if normalize is not None or image_size is not None:
                raise InputError("npz arrays are used as stored; normalize and image_size do not apply.")
            dataset, labels, num_classes, shape, _ = npz.load(argument, split)
        elif kind == "imagefolder":
            dataset, labels, num_classes, shape, class_names = imagefolder.load(
                argument, split, normalize, image_size, channels or 3
            )
        else:
            if image_size is not None:
                raise InputError(f"{kind} images are fixed in size; image_size does not apply.")
            if kind in ("mnist", "fashion-mnist"):
                dataset, labels, num_classes, shape, class_names = idx.load(kind, argument, split)
            else:
                dataset, labels, num_classes, shape, class_names = cifar.load(kind, argument, split)
            norm = normalization(normalize)
            if norm is not None:
                check_channels(norm, shape[0], spec)
                dataset = dataset.standardised(*norm)
    else:
        raise _spec_error(spec)

    total = len(labels)
    if n_points is None:
        indices = np.arange(total)
    else:
        n_points = check_positive(n_points, name="n_points", integer=True)
        if n_points > total:
            raise InputError(
                f"n_points={n_points} but the {split} split of {spec} has {total} points; "
                f"ask for at most {total}."
            )
        indices = stratified_subset(labels, n_points, seed)
        if len(indices) < total:
            if isinstance(dataset, (TensorImages, KeywordArrays)):
                dataset = dataset.subset(indices)
            else:
                dataset = Subset(dataset, indices.tolist())
            labels = labels[indices]
    return LabelledData(
        dataset=dataset,
        labels=labels,
        num_classes=num_classes,
        input_shape=tuple(int(v) for v in shape),
        spec=spec,
        split=split,
        n_points=len(labels),
        indices=indices,
        seed=seed,
        split_seed=DIGITS_SPLIT_SEED,
        class_names=class_names,
        preprocessing=_preprocessing(normalize, image_size, channels),
    )
