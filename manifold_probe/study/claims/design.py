"""The model zoo of a claims study: which models each claim needs, for each preset.

Every claim compares models that differ in one thing, so the zoo is built from one baseline
(an architecture, width, depth, epochs and batch size that fit the data set) and its
variations; `evidence.py` finds the comparisons again from the checkpoints' own settings:

- seeds of the baseline: the ensembles (Fort et al.), the terminal-phase runs (their epochs
  are saved every `save_every`; Papyan, Han & Donoho) and the deep nets (E & Wojtowytsch);
- untrained twins (epochs 0, same seed and shape): Kaufman & Azencot's untrained profile;
- mixup twins (same seed): Kaufman & Azencot's mixup claim;
- label noise levels and training-set sizes: Fort et al.'s label randomisation and data
  size; with short runs they also spread test accuracy for the curvature-gap correlation;
- one-hidden-layer MLPs of several widths: E & Wojtowytsch's shallow nets.

Presets:

- `tiny`: digits, digits-cnn width 16 and depth 2, cutting planes on 3 classes: a few
  minutes on 2 cores; checks the pipeline end to end (its intervals are wide: few models).
- `small`: a real data set (e.g. Fashion-MNIST) on a 2,000-image training subset,
  digits-cnn width 16, 40 epochs, epochs saved every 8: long enough for the baselines to
  pass into the terminal phase (training error 0.3 % at epoch 32 and 0.05 % at 40 for seed 0;
  at 16 epochs no run got below 4 %, and every terminal-phase claim was inconclusive). Its
  cutting planes are cut to what the claims read (docs/claims.md for the cost estimate):
  3 classes (0, 1, 6: T-shirt/top, Trouser and Shirt on Fashion-MNIST), at most
  `SMALL_PLANE_STEPS` Adam steps per plane, per-epoch planes on one training run, and nested
  ensembles (seeds {0, 1} and {0, 1, 2}): 14 plane jobs instead of 22. The cutting
  dimensions stay log-spaced from 1 (a weakly trained net's Shirt class is hit at every
  d >= 50 of 784: a grid from D/8 would lose its reading).
- `full`: `small` with more seeds, widths and levels, small-resnet beside digits-cnn: a GPU
  or a night.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from ... import registry
from ...errors import InputError
from ..zoo_presets import ZooModel

PRESETS: tuple[str, ...] = ("tiny", "small", "full")

SMALL_PLANE_STEPS = 300
"""The small preset's cap on Adam steps per plane (the measure's default is 3000; see docs/claims.md for
the cost estimate and what the cap leaves out)."""


STOP_AT_HIT = (("stop_at_hit", True),)
"""Every preset stops a plane at its first hit: a hit is final, so no reading changes, and the
planes that hit (most of them, on trained nets) no longer run to the step cap."""

PLANES: dict = {
    k: v for k, v in registry.get("cutting-planes").sweep.options.items() if k not in ("classes", "n_dims")
}
"""Cutting-plane options of a study: the sweep's (the registry's), classes chosen per preset."""
PLANE_DIMS = 7
"""Log-spaced cutting dimensions from 1 to the input dimension."""


@dataclass(frozen=True)
class ClaimsDesign:
    """A study's zoo and how it is measured.

    `n_points`: training points measured per model (a seeded stratified subset);
    `reduction`: applied to every layer before the geometry (`extract.reductions`);
    `curvature_dim`: the curvature measure's d, "twonn" (Kaufman & Azencot's own protocol: each
    layer's rounded TwoNN) by default, since the claims are about the paper's quantity and real
    layers rarely show the clear local spectral gap the default rule needs;
    `curvature_centres`: curvature fitted at a seeded sample of this many of the measured points
    (neighbours from all of them; None: every point): the fits at TwoNN's d = 10-15 cost
    K = 200-400 neighbours per point;
    `plane_classes`: the classes whose manifolds the cutting planes measure ("all" or a tuple),
    on the models Fort et al.'s claims compare (runs, baselines and their ensembles, the
    label-noise and training-size series);
    `plane_dims`: how many log-spaced cutting dimensions from 1 to D;
    `plane_options`: options of `api.cutting_planes` over `PLANES` (e.g. a smaller step cap);
    `plane_runs`: how many training runs get cutting planes at every saved epoch (None: all);
    `nested_ensembles`: ensembles of the first 2, 3, ... baseline seeds only, instead of every
    combination of two or more.
    """

    preset: str
    models: tuple[ZooModel, ...]
    n_points: int
    reduction: str = "none"
    curvature_dim: int | str | None = "twonn"
    curvature_centres: int | None = None
    plane_classes: str | tuple[int, ...] = "all"
    plane_dims: int = PLANE_DIMS
    plane_options: tuple[tuple[str, object], ...] = ()
    plane_runs: int | None = None
    nested_ensembles: bool = False

    @property
    def planes(self) -> dict:
        """The options every cutting-planes job of the study gets (dims apart)."""
        return {**PLANES, **dict(self.plane_options)}


def _variations(
    arch: str,
    width: int,
    depth: int,
    epochs: int,
    *,
    seeds: tuple[int, ...],
    untrained_seeds: tuple[int, ...],
    mixup_seeds: tuple[int, ...],
    label_noise: tuple[float, ...],
    train_sizes: tuple[int, ...],
    short_epochs: tuple[int, ...],
    save_every: int,
    train_size: int | None = None,
    batch_size: int = 128,
) -> list[ZooModel]:
    def model(**changes) -> ZooModel:
        settings = dict(
            arch=arch, width=width, depth=depth, epochs=epochs, train_size=train_size, batch_size=batch_size
        )
        settings.update(changes)
        return ZooModel(**settings)

    models = [model(seed=seed, save_every=save_every) for seed in seeds]
    models += [model(epochs=0, seed=seed) for seed in untrained_seeds]
    models += [model(mixup=0.4, seed=seed) for seed in mixup_seeds]
    models += [model(label_noise=level, seed=seeds[0]) for level in label_noise]
    models += [model(train_size=size, seed=seeds[0]) for size in train_sizes]
    models += [model(epochs=short, seed=seeds[0]) for short in short_epochs]
    return models


def _shallow(widths: tuple[int, ...], epochs: int, *, seed: int, **common) -> list[ZooModel]:
    return [ZooModel("digits-mlp", width, 1, epochs, seed=seed, **common) for width in widths]


def design(preset: str) -> ClaimsDesign:
    """The zoo and measuring settings of `preset` (see the module docstring)."""
    if preset == "tiny":
        models = _variations(
            "digits-cnn", 16, 2, 10,
            seeds=(0, 1), untrained_seeds=(0, 1), mixup_seeds=(0, 1),
            label_noise=(0.5,), train_sizes=(200,), short_epochs=(1,), save_every=3,
        )  # fmt: skip
        models += _shallow((32, 64), 10, seed=0)
        return ClaimsDesign(
            "tiny", tuple(models), n_points=150, plane_classes=(0, 1, 2), plane_options=STOP_AT_HIT
        )
    if preset == "small":
        common = {"train_size": 2000, "batch_size": 64}
        models = _variations(
            "digits-cnn", 16, 3, 40,
            seeds=(0, 1, 2), untrained_seeds=(0, 1, 2), mixup_seeds=(0, 1, 2),
            label_noise=(0.1, 0.3, 0.5), train_sizes=(250, 1000), short_epochs=(1, 3),
            save_every=8, **common,
        )  # fmt: skip
        models += _shallow((64, 256, 1024), 40, seed=0, **common)
        return ClaimsDesign(
            "small", tuple(models), n_points=1000, reduction="project:512", curvature_centres=250,
            plane_classes=(0, 1, 6),
            plane_options=(("steps", SMALL_PLANE_STEPS), *STOP_AT_HIT), plane_runs=1, nested_ensembles=True,
        )  # fmt: skip
    if preset == "full":
        common = {"train_size": 10000, "batch_size": 64}
        models = []
        for arch, width in (("digits-cnn", 32), ("small-resnet", 16)):
            models += _variations(
                arch, width, 3, 30,
                seeds=(0, 1, 2, 3, 4), untrained_seeds=(0, 1, 2, 3, 4), mixup_seeds=(0, 1, 2, 3, 4),
                label_noise=(0.1, 0.2, 0.3, 0.5, 0.7), train_sizes=(250, 500, 1000, 2500, 5000),
                short_epochs=(1, 2, 4, 8), save_every=4, **common,
            )  # fmt: skip
        models += _shallow((64, 256, 1024, 4096), 30, seed=0, **common)
        return ClaimsDesign(
            "full",
            tuple(models),
            n_points=5000,
            reduction="project:512",
            curvature_centres=1000,
            plane_options=STOP_AT_HIT,
        )
    close = difflib.get_close_matches(preset, PRESETS, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise InputError(f"unknown claims preset {preset!r}{hint}: use one of {', '.join(PRESETS)}.")
