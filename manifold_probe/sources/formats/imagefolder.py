"""`imagefolder:ROOT`: torchvision's ImageFolder (one sub-folder per class).

`ROOT/train` and `ROOT/test` are the splits when ROOT has a `train` folder; otherwise ROOT
itself is the `train` split and there is no `test` split. Classes are the union of both
splits' class folders, sorted, so their indices agree. Images are loaded as RGB (or
grayscale with `channels=1`) and turned into [0, 1] tensors (ToTensor); they must share one
size unless `image_size` is given (resize of the short side, then centre crop).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...validation import check_positive
from . import SPLITS, Parsed
from .normalize import check_channels, normalization


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


def load(root_text: str, split: str, normalize, image_size: int | None, channels: int = 3) -> Parsed:
    """One split of the image folder at `root_text` (see the module docstring)."""
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
    norm = normalization(normalize)
    if norm is not None:
        check_channels(norm, channels, f"imagefolder:{root}")
        steps.append(transforms.Normalize(*norm))
    folder = _image_folder(split_dirs[split], classes, transforms.Compose(steps))
    if len(folder) == 0:
        raise InputError(f"{split_dirs[split]} holds no images in its class folders.")
    labels = np.asarray(folder.targets, dtype=np.int64)
    first = folder[0][0]
    folder.shape = tuple(first.shape)
    return Parsed(folder, labels, len(classes), tuple(first.shape), tuple(classes))


def has_test_split(root_text: str) -> bool:
    """Whether ROOT has both `train` and `test` folders (True when ROOT is missing: `load` reports that)."""
    root = Path(root_text).expanduser()
    if not root.is_dir():
        return True
    return (root / "train").is_dir() and (root / "test").is_dir()
