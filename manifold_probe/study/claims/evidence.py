"""What a claims study measured, one record per checkpoint, and the comparisons the claims need.

A `ModelRecord` holds a checkpoint's settings (from the checkpoint itself: the project's
checkpoints record every training option), its accuracy and the results of every probe
that the sweep wrote for it. The comparisons are found from the settings alone, so they
hold for any zoo trained with `zoo_presets.ZooModel` (see `design.py`):

- the *baseline* of a model: same architecture, width, depth, batch size and seed, epochs
  as its own, and no perturbation (mixup, label smoothing, label noise or a smaller subset
  than the study's);
- a *run*: a trained model and the checkpoints of its earlier epochs (`<name>-epochNNN.pt`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...results import LayerResult, Result

PERTURBATIONS: tuple[str, ...] = ("mixup", "label_smoothing", "label_noise")


@dataclass(frozen=True, eq=False)
class ModelRecord:
    """One checkpoint of the study: its settings, accuracies and probe results.

    `name` is the checkpoint's file stem; `run` the stem of its run's final checkpoint (its
    own stem for a final checkpoint); `epoch` the epoch it was saved at and `epochs` the run's
    total; `results` maps a probe name to its Result.
    """

    name: str
    run: str
    arch: str
    width: int | None
    depth: int | None
    seed: int
    epoch: int
    epochs: int
    batch_size: int | None
    train_size: int | None
    mixup: float
    label_smoothing: float
    label_noise: float
    train_accuracy: float | None
    test_accuracy: float | None
    results: dict[str, Result] = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return self.epoch > 0

    @property
    def final(self) -> bool:
        """The last checkpoint of its run (not an earlier epoch's snapshot)."""
        return self.name == self.run

    @property
    def shape(self) -> tuple:
        """What makes two models the same network: architecture, width, depth."""
        return (self.arch, self.width, self.depth)

    @property
    def perturbed(self) -> bool:
        return any(getattr(self, name) for name in PERTURBATIONS)

    def layers(self, probe: str) -> list[LayerResult]:
        result = self.results.get(probe)
        return list(result.layers) if result is not None else []

    def metric_profile(self, probe: str, metric: str) -> np.ndarray:
        """The metric of every layer of the probe's result, in model order (NaN where missing)."""
        return np.array([_number(layer.metrics.get(metric)) for layer in self.layers(probe)], dtype=float)

    def classifier_metric(self, probe: str, metric: str) -> float:
        """The metric on the layer that feeds the classifier (collapse and spectra results)."""
        result = self.results.get(probe)
        if result is None:
            return math.nan
        name = (result.summary.get("classifier") or {}).get("layer")
        for layer in result.layers:
            if layer.name == name:
                return _number(layer.metrics.get(metric))
        return math.nan

    def summary(self, probe: str, key: str) -> float:
        result = self.results.get(probe)
        return math.nan if result is None else _number(result.summary.get(key))


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def record_from_checkpoint(name: str, metadata: dict[str, Any], results: dict[str, Result]) -> ModelRecord:
    """A record from a project checkpoint's metadata (`sources.checkpoint`) and its results."""
    training = dict(metadata.get("training") or {})
    arch_args = dict(metadata.get("arch_args") or {})
    metrics = dict(metadata.get("metrics") or {})
    epochs = int(training.get("epochs", metadata.get("epoch", 0)))
    epoch = int(metadata.get("epoch", epochs))
    stem, _, suffix = name.rpartition("-epoch")
    run = stem if stem and suffix.isdigit() else name  # `<run>-epochNNN.pt`: training.epoch_checkpoint_path
    return ModelRecord(
        name=name,
        run=run,
        arch=str(metadata.get("arch")),
        width=arch_args.get("width"),
        depth=arch_args.get("depth"),
        seed=int(training.get("seed", metadata.get("seed", 0))),
        epoch=epoch,
        epochs=epochs,
        batch_size=training.get("batch_size"),
        train_size=training.get("train_size"),
        mixup=float(training.get("mixup") or 0.0),
        label_smoothing=float(training.get("label_smoothing") or 0.0),
        label_noise=float(training.get("label_noise") or 0.0),
        train_accuracy=metrics.get("train_accuracy"),
        test_accuracy=metrics.get("test_accuracy"),
        results=results,
    )


@dataclass(frozen=True)
class Study:
    """All records of a study, with the comparisons the claims are tested on."""

    records: tuple[ModelRecord, ...]

    @property
    def finals(self) -> list[ModelRecord]:
        return [r for r in self.records if r.final]

    @property
    def trained(self) -> list[ModelRecord]:
        """Final checkpoints of trained runs."""
        return [r for r in self.finals if r.trained]

    @property
    def full_size(self) -> int | None:
        """The study's training-set size: the largest any model used."""
        sizes = [r.train_size for r in self.finals if r.train_size is not None]
        return max(sizes) if sizes else None

    def is_baseline(self, record: ModelRecord) -> bool:
        """Trained, unperturbed, on the full training subset, at the most common epoch count of its shape."""
        if not record.trained or record.perturbed or record.train_size != self.full_size:
            return False
        counts = [r.epochs for r in self.finals if r.shape == record.shape and r.trained]
        return record.epochs == max(set(counts), key=lambda e: (counts.count(e), e))

    def baselines(self) -> list[ModelRecord]:
        return [r for r in self.finals if self.is_baseline(r)]

    def baseline_of(self, record: ModelRecord) -> ModelRecord | None:
        """The baseline with the shape, seed and batch size of `record` (None if the zoo has none)."""
        for other in self.baselines():
            if (other.shape, other.seed, other.batch_size) == (record.shape, record.seed, record.batch_size):
                return other
        return None

    def twins(self, select) -> list[tuple[ModelRecord, ModelRecord]]:
        """(baseline, model) pairs for every final model that `select` accepts and that has a baseline."""
        pairs = []
        for record in self.finals:
            if select(record):
                base = self.baseline_of(record)
                if base is not None and base is not record:
                    pairs.append((base, record))
        return pairs

    def runs(self) -> dict[str, list[ModelRecord]]:
        """Each baseline run with saved epochs: its checkpoints in epoch order, one per epoch (the
        final checkpoint stands for a snapshot saved at the last epoch)."""
        out = {}
        for base in self.baselines():
            by_epoch = {r.epoch: r for r in self.records if r.run == base.name and not r.final}
            by_epoch[base.epoch] = base
            if len(by_epoch) > 1:
                out[base.name] = [by_epoch[e] for e in sorted(by_epoch)]
        return out

    def series(self, attribute: str, arch: str | None = None) -> list[ModelRecord]:
        """Baselines and the final models that differ from their baseline only in `attribute`
        (`label_noise` or `train_size`), all of the shape with most such models (of `arch`, when
        given: the architecture is chosen before the shape, so that another architecture's series
        of as many models cannot take its place)."""
        variants = [
            record
            for record in self.finals
            if record.trained
            and (arch is None or record.arch == arch)
            and (base := self.baseline_of(record)) is not None
            and _differs_only_in(record, base, attribute)
        ]
        if not variants:
            return []
        shapes = [r.shape for r in variants]
        shape = max(sorted(set(shapes), key=str), key=shapes.count)  # a tie: the same shape in every process
        return [r for r in self.baselines() if r.shape == shape] + [r for r in variants if r.shape == shape]


def _differs_only_in(record: ModelRecord, base: ModelRecord, attribute: str) -> bool:
    keys = ("shape", "seed", "epochs", "batch_size", "train_size", *PERTURBATIONS)
    differing = [k for k in keys if getattr(record, k) != getattr(base, k)]
    return differing == [attribute]


def group_by(records: Iterable[ModelRecord], key) -> dict[Any, list[ModelRecord]]:
    groups: dict[Any, list[ModelRecord]] = {}
    for record in records:
        groups.setdefault(key(record), []).append(record)
    return groups


def finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array)]
