"""A reproducible zoo of digits models whose test accuracy spreads widely: the input of a sweep.

The report stage asks whether a geometric measure (the curvature gap of Kaufman & Azencot
2023, class-manifold dimension, neural collapse) tracks generalization across models, so the
zoo varies what moves generalization on the built-in digits: width, depth, epochs, weight
decay, mixup, label smoothing, label noise and training-set size (see `training.TrainingConfig`),
plus untrained copies (epochs 0: the same initial weights as the trained model of the same
seed and shape).

Layout of a zoo folder ZOO (the contract the sweep reads):

    ZOO/<name>.pt    mprobe checkpoints (sources/checkpoint.py); every option is in the
                     checkpoint's "training" dict under its TrainingConfig name, width and
                     depth in "arch_args"
    ZOO/zoo.json     {"schema": "manifold-probe/zoo@1", "preset": ..., "seed": ..., "complete": bool,
                      "models": [{"name", "path", "family", "settings", "metrics"}, ...]}

`path` is relative to ZOO (`<name>.pt`; `sweep.read_zoo` resolves it). `family` is the architecture
("digits-cnn", "digits-mlp"); `settings` holds arch, width, depth, epochs, untrained,
weight_decay, mixup, label_smoothing, label_noise, train_size (points used), lr,
batch_size and seed; `metrics` the checkpoint's train/test accuracy and loss.

A model's name is derived from its settings (`ZooModel.name`), so a zoo is reproducible
and resumable: `train_zoo` skips every model whose checkpoint already exists (checkpoints
are written atomically, so an existing one is complete) and rewrites zoo.json atomically
after every model.
"""

from __future__ import annotations

import difflib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from ..files import atomic_write
from ..progress import track
from .training_config import TrainingConfig

if TYPE_CHECKING:
    import torch

ZOO_SCHEMA = "manifold-probe/zoo@1"
ZOO_INDEX = "zoo.json"

SETTINGS = (
    "arch",
    "width",
    "depth",
    "epochs",
    "untrained",
    "weight_decay",
    "mixup",
    "label_smoothing",
    "label_noise",
    "train_size",
    "lr",
    "lr_schedule",
    "batch_size",
    "seed",
)
"""The keys of a zoo entry's `settings` (also the sweep table's setting columns)."""


@dataclass(frozen=True)
class ZooModel:
    """One model of a preset: an architecture of the zoo and the options it is trained with."""

    arch: str
    width: int
    depth: int
    epochs: int
    weight_decay: float = TrainingConfig.weight_decay
    mixup: float = 0.0
    label_smoothing: float = 0.0
    label_noise: float = 0.0
    train_size: int | None = None
    batch_size: int = TrainingConfig.batch_size
    seed: int | None = None
    save_every: int | None = None
    lr: float = TrainingConfig.lr
    lr_schedule: str = TrainingConfig.lr_schedule

    def name(self, seed: int) -> str:
        """`<cnn|mlp|small-resnet>-w<width>-d<depth>-e<epochs>[-wd..][-mix..][-ls..][-ln..][-n..][-b..][-lr..]
        [-step|-constant]-s<seed>`.

        Options at their defaults are left out of the name; the model's own `seed`, when set,
        replaces the zoo's. `save_every` is not in the name: it adds checkpoints
        `<name>-epochNNN.pt` of the epochs it saves (see `training.epoch_checkpoint_path`).
        """
        seed = self.seed if self.seed is not None else seed
        parts = [self.arch.removeprefix("digits-"), f"w{self.width}", f"d{self.depth}", f"e{self.epochs}"]
        if self.weight_decay != TrainingConfig.weight_decay:
            parts.append(f"wd{self.weight_decay:g}")
        for tag, value in (("mix", self.mixup), ("ls", self.label_smoothing), ("ln", self.label_noise)):
            if value:
                parts.append(f"{tag}{value:g}")
        if self.train_size is not None:
            parts.append(f"n{self.train_size}")
        if self.batch_size != TrainingConfig.batch_size:
            parts.append(f"b{self.batch_size}")
        if self.lr != TrainingConfig.lr:
            parts.append(f"lr{self.lr:g}")
        if self.lr_schedule != TrainingConfig.lr_schedule:
            parts.append(self.lr_schedule)
        parts.append(f"s{seed}")
        return "-".join(parts)

    def options(self, seed: int) -> dict:
        """Keyword options of `training.train_and_save` for this model (its own seed wins)."""
        return {
            "epochs": self.epochs,
            "weight_decay": self.weight_decay,
            "mixup": self.mixup,
            "label_smoothing": self.label_smoothing,
            "label_noise": self.label_noise,
            "train_size": self.train_size,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "lr_schedule": self.lr_schedule,
            "seed": self.seed if self.seed is not None else seed,
            "save_every": self.save_every,
        }


@dataclass(frozen=True)
class ZooEntry:
    """A model of a trained zoo: `path` absolute; `trained` False when an existing checkpoint was reused."""

    name: str
    path: Path
    family: str
    settings: dict = field(hash=False)
    metrics: dict = field(hash=False)
    trained: bool = True

    def as_dict(self, root: Path) -> dict:
        """The zoo.json form, with `path` relative to the zoo folder `root`."""
        return {
            "name": self.name,
            "path": os.path.relpath(self.path, root),
            "family": self.family,
            "settings": self.settings,
            "metrics": self.metrics,
        }


def _demo() -> tuple[ZooModel, ...]:
    cnn = "digits-cnn"
    return (
        ZooModel(cnn, 16, 3, 12),
        ZooModel(cnn, 16, 3, 12, mixup=0.4),
        ZooModel(cnn, 16, 3, 12, label_smoothing=0.1),
        ZooModel(cnn, 16, 3, 12, weight_decay=0.0),
        ZooModel(cnn, 16, 3, 12, label_noise=0.4),
        ZooModel(cnn, 8, 2, 4),
        ZooModel(cnn, 16, 3, 12, train_size=300),
        ZooModel(cnn, 16, 3, 12, train_size=100),
        ZooModel(cnn, 8, 2, 12, train_size=60, label_noise=0.5),
        ZooModel(cnn, 8, 2, 2),
        ZooModel(cnn, 16, 3, 0),
        ZooModel(cnn, 8, 2, 0),
    )


def _full() -> tuple[ZooModel, ...]:
    shapes = {
        "digits-cnn": ((8, 2), (16, 2), (16, 3), (32, 3)),
        "digits-mlp": ((32, 1), (64, 2), (128, 2), (128, 3)),
    }
    models = []
    for arch, sizes in shapes.items():
        for width, depth in sizes:
            models += [
                ZooModel(arch, width, depth, 15),
                ZooModel(arch, width, depth, 3),
                ZooModel(arch, width, depth, 15, weight_decay=0.0),
                ZooModel(arch, width, depth, 15, mixup=0.4),
                ZooModel(arch, width, depth, 15, label_smoothing=0.1),
                ZooModel(arch, width, depth, 15, label_noise=0.3),
                ZooModel(arch, width, depth, 15, train_size=150),
                ZooModel(arch, width, depth, 0),
            ]
    return tuple(models)


PRESETS = {"demo": _demo(), "full": _full()}
"""Named presets: `demo` (12 small digits-cnn models, test accuracy 10-99 %, 15 s on a loaded
2-core machine) and `full` (64 models, 75 s: 4 shapes of each family x baseline, short
training, no weight decay, mixup, label smoothing, label noise, 150 training points, untrained)."""


def preset_models(preset: str | Sequence[ZooModel]) -> tuple[ZooModel, ...]:
    """The models of a preset name, or the given models themselves (for custom zoos and tests)."""
    if not isinstance(preset, str):
        return tuple(preset)
    if preset not in PRESETS:
        close = difflib.get_close_matches(preset, PRESETS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise InputError(f"unknown zoo preset {preset!r}{hint}: use one of {', '.join(PRESETS)}.")
    return PRESETS[preset]


def _entry(name: str, path: Path, trained: bool) -> ZooEntry:
    """The entry of a written checkpoint, its settings and metrics read back from the file."""
    import torch  # here, not at the top: the command line lists the presets without torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    training, arch_args = checkpoint["training"], checkpoint["arch_args"]
    settings = {key: training.get(key) for key in SETTINGS if key in training}
    settings.update(
        arch=checkpoint["arch"],
        width=arch_args.get("width"),
        depth=arch_args.get("depth"),
        untrained=checkpoint["epoch"] == 0,
    )
    return ZooEntry(
        name=name,
        path=path,
        family=checkpoint["arch"],
        settings={key: settings[key] for key in SETTINGS},
        metrics=dict(checkpoint["metrics"]),
        trained=trained,
    )


def _write_index(root: Path, entries: list[ZooEntry], *, preset: str, seed: int, complete: bool) -> None:
    index = {
        "schema": ZOO_SCHEMA,
        "preset": preset,
        "seed": seed,
        "complete": complete,
        "models": [entry.as_dict(root) for entry in entries],
    }
    with atomic_write(root / ZOO_INDEX) as handle:
        json.dump(index, handle, indent=2)
        handle.write("\n")


def _train_one(model: ZooModel, path: str, seed: int, data: str, device: str) -> None:
    """Train one model of a zoo into `path` (the unit of work of `train_zoo`, in any process)."""
    from .training import FewStepsWarning, train_and_save  # torch: loaded when a zoo is trained

    with warnings.catch_warnings():
        # a zoo starves some models of steps on purpose (short training, small subsets)
        warnings.simplefilter("ignore", FewStepsWarning)
        train_and_save(
            model.arch,
            {"width": model.width, "depth": model.depth},
            out=path,
            data=data,
            device=device,
            **model.options(seed),
        )


def train_zoo(
    out_dir: str | os.PathLike,
    preset: str | Sequence[ZooModel] = "demo",
    *,
    seed: int = 0,
    data: str = "digits",
    device: str | torch.device = "cpu",
    workers: int = 1,
    progress: bool = False,
) -> list[ZooEntry]:
    """Train every model of `preset` on `data` into `out_dir` (skipping existing checkpoints); write zoo.json.

    Every model is trained with the same `seed` unless it names its own (so an untrained copy
    starts from the same weights as its trained twin). `preset` is a name in PRESETS or a
    sequence of ZooModel. Returns the entries in preset order (the epoch checkpoints that
    `save_every` writes are not entries: the sweep reads their settings from the files).

    Each run trains on `training.TRAINING_THREADS` intra-op thread(s) with deterministic kernels,
    so a model is the same whichever process trains it; `workers` > 1 trains that many models at
    once in separate processes (`executors.process_map`), the way to use several cores for these
    small nets (a digits-cnn of width 16, depth 3 trains 12 epochs in 1.1 s on one thread against
    6-8 s on two on a loaded 2-core machine).
    """
    from .executors import process_map

    models = preset_models(preset)
    names = [model.name(seed) for model in models]
    if len(set(names)) != len(names):
        raise InputError("the zoo lists the same model twice; give every model different settings.")
    root = Path(out_dir).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    label = preset if isinstance(preset, str) else "custom"
    paths = [root / f"{name}.pt" for name in names]
    missing = [i for i, path in enumerate(paths) if not path.exists()]
    jobs = [(models[i], str(paths[i]), seed, data, str(device)) for i in missing]
    finished: set[int] = set()
    stream = process_map(_train_one, jobs, workers)
    for position, outcome in track(stream, description="training the zoo", total=len(jobs), enabled=progress):
        if isinstance(outcome, BaseException):
            raise outcome
        finished.add(missing[position])
        done = [i for i in range(len(models)) if i not in missing or i in finished]
        entries = [_entry(names[i], paths[i], i in missing) for i in done]
        _write_index(root, entries, preset=label, seed=seed, complete=len(entries) == len(models))
    entries = [_entry(names[i], paths[i], i in missing) for i in range(len(models))]
    _write_index(root, entries, preset=label, seed=seed, complete=True)
    return entries
