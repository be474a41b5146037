"""Data sets named by a spec string: the built-in `digits`, arrays in an `.npz`, image folders, and
CIFAR-10/100 or MNIST from a local root. Nothing is ever downloaded.

Specs (`load_data(spec, split=..., n_points=..., seed=...)`):

- `digits`: scikit-learn's 8x8 handwritten digits (1,797 images, shipped with scikit-learn).
  A fixed stratified split, 25 % of every class to `test` (451 test, 1,346 train images),
  chosen by hashing each sample's index with the split seed 0 (`digits_split`), so it
  never depends on a library's random-number stream. Pixels are scaled to [0, 1] (/16) and
  then standardised with the mean and standard deviation of all training pixels; each image
  is a (1, 8, 8) float32 tensor. See data/digits.md.
- `npz:PATH`: a NumPy archive (read with allow_pickle=False) holding `x` (N, ...) and `y`
  (N,) for the `train` split and, optionally, `x_test` and `y_test` for the `test` split;
  asking for `test` when the archive has no `x_test` is an error. Arrays are used as
  stored: float32, or int64 for integer arrays (token ids for an `nn.Embedding`); labels
  are whole numbers 0..C-1, C = 1 + the largest label. An archive without `x` holds named
  arrays passed to the model as keyword arguments (`input_ids`, `attention_mask`, ...), its
  labels named `y`, `labels` or `label`; the test split is the arrays named `NAME_test`.
  A Python dict of such arrays (`load_data({"input_ids": ..., "labels": ...})`) is the same.
- `imagefolder:ROOT`: torchvision's ImageFolder (one sub-folder per class). `ROOT/train` and
  `ROOT/test` are the splits when ROOT has a `train` folder; otherwise ROOT itself is the
  `train` split and there is no `test` split. Classes are the union of both splits' class
  folders, sorted, so their indices agree. Images are loaded as RGB (or grayscale with
  `channels=1`) and turned into
  [0, 1] tensors (ToTensor); they must share one size unless `image_size` is given
  (resize of the short side, then centre crop).
- `cifar10:ROOT`, `cifar100:ROOT`: the python versions of CIFAR (ROOT/cifar-10-batches-py,
  ROOT/cifar-100-python, as torchvision lays them out; ROOT may also be that folder
  itself), as (3, 32, 32) tensors in [0, 1]. The pickled batches are read with an
  unpickler that only admits NumPy arrays and plain containers, never a shared
  container, and at most as many elements as the file has bytes (`safe_pickle`), so a
  planted file can neither run code nor expand into a memory bomb (torchvision's
  CIFAR class uses the full pickle module and checks MD5 sums instead; shapes are checked here).
- `mnist:ROOT`, `fashion-mnist[:ROOT]`: the four IDX files of MNIST or Fashion-MNIST,
  gzipped or not, in ROOT/MNIST/raw or ROOT/FashionMNIST/raw (torchvision's layouts),
  ROOT/raw or flat in ROOT (see `manifold_probe.sources.idx`), as (1, 28, 28) tensors in
  [0, 1], with class names (Fashion-MNIST's T-shirt/top ... Ankle boot; MNIST's 0..9).
  `fashion-mnist` alone reads Debian's `dataset-fashion-mnist` package
  (/usr/share/datasets/fashion-mnist). The files are parsed once per process.

Image sets (imagefolder, cifar, mnist) take `normalize=`: a name in NORMALIZATIONS or a
(mean, std) pair per channel, applied after the [0, 1] scaling, to match how a model was
trained. `n_points` draws a reproducible stratified subset of the split with
`np.random.default_rng(seed)` (kept in the split's original order).
"""

from __future__ import annotations

import difflib
import hashlib
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ..errors import InputError
from ..validation import as_class_indices, check_positive, existing_file
from .idx import DEBIAN_FASHION_MNIST, IDX_FILES, IDX_SETS, locate, read_split
from .safe_pickle import read_array_pickle

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

SPLITS: tuple[str, ...] = ("train", "test")

DIGITS_SPLIT_SEED = 0
"""The seed of the built-in digits split; fixed forever (checkpoints record it)."""

DIGITS_TEST_FRACTION = 0.25

NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
}
"""Per-channel (mean, std) of common training recipes, for `normalize=`."""

_CIFAR = {
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


def _as_input_tensor(values: np.ndarray, name: str, where: str) -> torch.Tensor:
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
    tensors = {name: _as_input_tensor(values, name, where) for name, values in arrays.items()}
    first = next(iter(tensors.values()))
    # a lone `x` is the model's one positional input, as in an npz of x and y
    dataset = TensorImages(first, labels) if list(tensors) == ["x"] else KeywordArrays(tensors, labels)
    return dataset, labels, int(labels.max()) + 1, tuple(first.shape[1:])


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


# --- the digits split ------------------------------------------------------------------


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


def _load_digits(split: str) -> tuple[TensorImages, np.ndarray, int, tuple[int, ...]]:
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
    return dataset, labels[chosen], 10, (1, 8, 8)


# --- npz ---------------------------------------------------------------------------------


def _load_npz(path_text: str, split: str):
    path = existing_file(path_text, what="npz file")
    if not zipfile.is_zipfile(path):
        raise InputError(
            f"could not read npz file {path}: it is not a NumPy .npz archive (write one with np.savez)."
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise InputError(
                f"{path} holds Python objects, which are not loaded for safety; "
                "save plain numeric arrays x and y with np.savez."
            ) from None
        raise InputError(f"could not read npz file {path}: {exc}") from None
    except Exception as exc:
        raise InputError(f"could not read npz file {path}: {exc}") from None
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
    images = _as_input_tensor(x, x_name, str(path))
    return TensorImages(images, labels), labels, num_classes, tuple(x.shape[1:])


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
    chosen = test if split == "test" else train
    dataset, labels, num_classes, shape = keyword_arrays(chosen, str(path))
    other = train if split == "test" else test
    other_labels = next((other[name] for name in LABEL_NAMES if name in other), None)
    if other_labels is not None and np.size(other_labels):
        checked = as_class_indices(other_labels, len(other_labels), None, name=f"labels in {path}")
        num_classes = max(num_classes, int(checked.max()) + 1)
    return dataset, labels, num_classes, shape


# --- image sets --------------------------------------------------------------------------


def _normalization(normalize) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    if normalize is None:
        return None
    if isinstance(normalize, str):
        if normalize not in NORMALIZATIONS:
            raise InputError(
                f"unknown normalization {normalize!r}: use one of {', '.join(NORMALIZATIONS)} "
                "or a (mean, std) pair."
            )
        return NORMALIZATIONS[normalize]
    try:
        mean, std = normalize
        mean = tuple(float(v) for v in mean)
        std = tuple(float(v) for v in std)
    except (TypeError, ValueError):
        raise InputError(
            f"normalize must be a name or a (mean, std) pair of per-channel lists, got {normalize!r}."
        ) from None
    if len(mean) != len(std) or min(std) <= 0:
        raise InputError("normalize needs as many positive stds as means, one per channel.")
    return mean, std


def _check_channels(norm, channels: int, spec: str) -> None:
    if norm is not None and len(norm[0]) not in (1, channels):
        raise InputError(
            f"normalize has {len(norm[0])} channel values but {spec} images have {channels} channels."
        )


def _read_array_pickle(path: Path) -> dict:
    entry = read_array_pickle(path)
    if not isinstance(entry, dict):
        raise InputError(f"{path} does not hold a CIFAR batch (a dict of data and labels).")
    return entry


def _load_cifar(kind: str, root_text: str, split: str):
    info = _CIFAR[kind]
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
    return dataset, labels_all, info["num_classes"], (3, 32, 32), class_names


def _load_idx_set(kind: str, root_text: str | None, split: str):
    images, labels, class_names = read_split(root_text or None, split, kind)
    # a private copy: the parsed files stay cached read-only for the next call in this process
    dataset = TensorImages(torch.from_numpy(images[:, None].copy()), labels, scale=1 / 255)
    return dataset, labels, len(class_names), (1, *images.shape[1:]), class_names


def _image_folder(directory: Path, classes: list[str], transform):
    """torchvision's ImageFolder with the class list given (so train and test indices agree),
    whose items are checked: an image that cannot be read (corrupt, truncated, or more pixels
    than PIL's decompression-bomb limit, `PIL.Image.MAX_IMAGE_PIXELS`, even at the warning
    level) or whose size differs from the first image's raises InputError naming the file."""
    from PIL import Image
    from torchvision.datasets import ImageFolder

    class _FixedClassesFolder(ImageFolder):
        shape: tuple[int, ...] | None = None  # the first image's, set by the loader

        def find_classes(self, _directory):
            return list(classes), {name: i for i, name in enumerate(classes)}

        def __getitem__(self, index):
            path = self.samples[index][0]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    image, label = super().__getitem__(index)
            except Exception as exc:
                raise InputError(f"could not read image {path}: {exc}") from None
            if self.shape is not None and tuple(image.shape) != self.shape:
                size = "x".join(map(str, image.shape))
                raise InputError(
                    f"image {path} is {size} but the first image is {'x'.join(map(str, self.shape))}; "
                    "the images of a data set must share one size (resize them, or pass "
                    "image_size to load_data)."
                )
            return image, label

    return _FixedClassesFolder(str(directory), transform=transform, allow_empty=True)


def _class_folders(directory: Path) -> set[str]:
    return {entry.name for entry in directory.iterdir() if entry.is_dir()}


def _load_imagefolder(root_text: str, split: str, normalize, image_size: int | None, channels: int = 3):
    from torchvision import transforms

    root = Path(root_text).expanduser()
    if not root.is_dir():
        raise InputError(f"image folder not found: {root} (expected ROOT/<class>/<image> files).")
    if (root / "train").is_dir():
        split_dirs = {name: root / name for name in SPLITS if (root / name).is_dir()}
    else:
        split_dirs = {"train": root}
    if split not in split_dirs:
        raise InputError(
            f"{root} has no {split} split: put the {split} images in {root / split} "
            f"(and the training images in {root / 'train'}) or use --split train."
        )
    classes = sorted(set().union(*(_class_folders(d) for d in split_dirs.values())))
    if not classes:
        raise InputError(f"{split_dirs[split]} has no class folders (expected <class>/<image> files).")
    steps = [] if channels == 3 else [transforms.Grayscale(num_output_channels=1)]
    if image_size is not None:
        size = check_positive(image_size, name="image_size", integer=True)
        steps += [transforms.Resize(size), transforms.CenterCrop(size)]
    steps.append(transforms.ToTensor())
    norm = _normalization(normalize)
    if norm is not None:
        _check_channels(norm, channels, f"imagefolder:{root}")
        steps.append(transforms.Normalize(*norm))
    folder = _image_folder(split_dirs[split], classes, transforms.Compose(steps))
    if len(folder) == 0:
        raise InputError(f"{split_dirs[split]} holds no images in its class folders.")
    labels = np.asarray(folder.targets, dtype=np.int64)
    first = folder[0][0]
    folder.shape = tuple(first.shape)
    return folder, labels, len(classes), tuple(first.shape), tuple(classes)


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
    if kind == "arrays":
        return None
    if kind in IDX_SETS:
        root = Path(argument).expanduser() if argument else DEBIAN_FASHION_MNIST
        found = locate(root, IDX_FILES["train"][0], kind) if root.is_dir() else None
        return found.parent if found is not None else (root if argument else None)
    if not argument:
        return None
    root = Path(argument).expanduser()
    inner = {"cifar10": _CIFAR["cifar10"]["folder"], "cifar100": _CIFAR["cifar100"]["folder"]}.get(kind)
    return root / inner if inner and (root / inner).is_dir() else root


def has_test_split(spec: str) -> bool:
    """Whether `spec` names a data set with a `test` split (cheap: lists files, loads nothing).

    False only for an npz archive without x_test and y_test and an image folder without
    ROOT/train and ROOT/test; a bad spec or missing file is left for `load_data` to report.
    """
    kind, _, argument = str(spec).strip().partition(":")
    kind = kind.lower()
    if kind == "npz":
        try:
            with np.load(Path(argument).expanduser(), allow_pickle=False) as archive:
                if "x" not in archive.files:  # named keyword arrays: the test split ends in _test
                    return any(name.endswith("_test") for name in archive.files)
                return {"x_test", "y_test"} <= set(archive.files)
        except Exception:
            return True
    if kind == "imagefolder":
        root = Path(argument).expanduser()
        if not root.is_dir():
            return True
        return (root / "train").is_dir() and (root / "test").is_dir()
    return True


def _preprocessing(normalize, image_size, channels: int | None = None) -> str:
    """What `normalize`, `image_size` and `channels` did, as text ("" when none was given)."""
    parts = [] if channels is None else [f"channels={channels}"]
    norm = _normalization(normalize)
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
        dataset, labels, num_classes, shape = _load_digits(split)
    elif kind in ("npz", "imagefolder", "cifar10", "cifar100", "mnist", "fashion-mnist"):
        if not argument and kind != "fashion-mnist":
            what = "PATH" if kind == "npz" else "ROOT"
            raise InputError(f"the {kind} data spec needs a location: {kind}:{what}.")
        if kind == "npz":
            if normalize is not None or image_size is not None:
                raise InputError("npz arrays are used as stored; normalize and image_size do not apply.")
            dataset, labels, num_classes, shape = _load_npz(argument, split)
        elif kind == "imagefolder":
            dataset, labels, num_classes, shape, class_names = _load_imagefolder(
                argument, split, normalize, image_size, channels or 3
            )
        else:
            if image_size is not None:
                raise InputError(f"{kind} images are fixed in size; image_size does not apply.")
            if kind in ("mnist", "fashion-mnist"):
                dataset, labels, num_classes, shape, class_names = _load_idx_set(kind, argument, split)
            else:
                dataset, labels, num_classes, shape, class_names = _load_cifar(kind, argument, split)
            norm = _normalization(normalize)
            if norm is not None:
                _check_channels(norm, shape[0], spec)
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
