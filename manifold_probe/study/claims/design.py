"""The model zoo of a claims study: which models each claim needs, for each preset.

The training run is the unit of every claim (`verdicts.py`), so each condition is trained with
several seeds (six or more: the sign-flip test's 95 % interval needs six runs; eight for the
primary claims to pass Holm's correction). Every claim
compares runs that differ in one thing; `evidence.py` finds the comparisons again from the
checkpoints' own settings:

- CNN baselines (digits-cnn, a penultimate layer of `width` channels, several times the number
  of classes): trained with Papyan, Han & Donoho's step schedule (lr/10 at 1/3 and 2/3 of the
  run) for many epochs past zero training error, epochs saved every `save_every`: the
  terminal-phase claims, Papyan's spectra, Kaufman & Azencot's profile;
- their untrained twins (epochs 0, same seed) and mixup twins (same seed): Kaufman & Azencot;
- CNN runs with label noise and a smaller training set (a few seeds): a spread of test
  accuracy for the curvature-gap and Fisher-ratio correlations across runs;
- small-resnet baselines: a second architecture for Kaufman & Azencot's profile;
- MLPs (digits-mlp) with one and with three hidden layers of the same width and seeds:
  E & Wojtowytsch's shallow-against-deep comparison (their setting is a fully connected net);
  the deep MLPs also carry Fort et al.'s cutting planes (widths, label noise, training-set
  sizes, saved epochs, and disjoint seed pairs as ensembles), because a plane costs one
  forward and backward pass per step and an MLP's are the cheapest (Fort et al. used CNNs
  and ResNets: docs/claims.md notes the departure).

Presets:

- `tiny`: a pipeline check on any data (tests use `digits`): few seeds and epochs, every
  claim runs and most are inconclusive by design; the result says so (`ClaimsDesign.purpose`).
- `small`: eight seeds per condition (four for the label-noise and training-size series) on a
  1,000-image training subset (Fashion-MNIST); CNNs of width 32 trained 45 epochs at lr 0.05
  (lr/10 from epoch 15, lr/100 from 30, saved every 9: on Fashion-MNIST they reach zero training
  error near epoch 18, so the terminal phase spans about 27 epochs at a rate that is not near 0),
  MLPs of width 256 trained 90 epochs at lr 0.1 (saved every 15): what
  `mprobe claims --data fashion-mnist --preset small` runs, timed in the README. Eight runs is what
  the pre-registered primary claims need (`verdicts.PRIMARY_CLAIMS`): the sign-flip test's smallest
  two-sided p, 2 / 2^8, is below Holm's first threshold 0.05 / 6.
- `full`: ten seeds per condition, wider nets and more epochs on 10,000 images: a GPU or a night.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from ... import registry
from ...errors import InputError
from ..zoo_presets import ZooModel

PRESETS: tuple[str, ...] = ("tiny", "small", "full")

SMALL_PLANE_STEPS = 1000
SMALL_PLANE_LR = 0.2
"""The small preset's cap on Adam steps per plane and its step size (the measure's defaults are 3000
and 0.05). On a trained Fashion-MNIST MLP (width 256, three hidden layers) planes at lr 0.05 capped at
300 steps left every target unconverged, and at 3000 steps one of three (8.8 s a job); at lr 0.2 with
1000 steps the same targets crossed or lay below the range, with the same critical dimensions (3.1 s)."""


SMALL_PERTURB_IMAGES = 10
"""Test images whose 1,023 perturbed copies give the small preset's curvature (Kaufman & Azencot
used 5,000 training images; the cost is one forward pass and one fit per copy set and layer, about a
second per image for the CNN on one core)."""

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

    `purpose`: what the preset's verdicts are good for (`tiny` is a pipeline check, said in
    the result); `n_points`: the shared test points every model is compared on (id, kNN
    curvature, collapse and spectra as a second design, the start points of the cutting planes);
    collapse and spectra are measured on each model's own training images (its whole subset);
    `perturb_images`: test images whose perturbation neighbourhoods (Kaufman & Azencot)
    give the primary curvature, `perturb_copies` of their 1,023 copies (None: all);
    `curvature_centres`: the kNN curvature's seeded sample of fit centres (None: every point);
    `plane_classes`, `plane_dims`, `plane_options`: the cutting planes (classes, log-spaced
    dimensions from 1 to D, options over `PLANES`); `plane_runs`: how many MLP runs get cutting
    planes at every saved epoch; `test_point_design`: measure collapse and spectra on the shared
    test points too (a second design for the robustness row; it doubles their cost).
    """

    preset: str
    purpose: str
    models: tuple[ZooModel, ...]
    n_points: int
    perturb_images: int
    perturb_copies: int | None = None
    curvature_dim: int | str | None = "twonn"
    curvature_centres: int | None = None
    plane_classes: str | tuple[int, ...] = "all"
    plane_dims: int = PLANE_DIMS
    plane_options: tuple[tuple[str, object], ...] = ()
    plane_runs: int | None = None
    test_point_design: bool = True

    @property
    def planes(self) -> dict:
        """The options every cutting-planes job of the study gets (dims apart)."""
        return {**PLANES, **dict(self.plane_options)}


@dataclass(frozen=True)
class ZooSizes:
    """The sizes of a preset's zoo (`zoo_models`): seeds per condition (`variant_seeds` for the CNN
    label-noise and training-size variants), widths, epochs, saved-epoch intervals, the series'
    levels, the training subset, the batch size and the learning rates of the convolutional nets and
    of the MLPs."""

    seeds: int
    variant_seeds: int
    cnn_width: int
    resnet_width: int
    mlp_width: int
    mlp_widths: tuple[int, ...]
    epochs: int
    resnet_epochs: int
    mlp_epochs: int
    save_every: int
    mlp_save_every: int
    label_noise: tuple[float, ...]
    train_sizes: tuple[int, ...]
    train_size: int
    batch_size: int = 64
    conv_lr: float = 0.1
    mlp_lr: float = 0.1


def zoo_models(z: ZooSizes) -> list[ZooModel]:
    """The models of one preset (module docstring): CNN baselines with saved epochs, their
    untrained and mixup twins and variants, small-resnet baselines, one- and three-hidden-layer
    MLPs (twice the seeds for the deep ones: the ensembles' disjoint pairs) and the MLP series."""
    seeds = tuple(range(z.seeds))
    common = {"train_size": z.train_size, "batch_size": z.batch_size, "lr_schedule": "step"}
    conv = {**common, "lr": z.conv_lr}
    cnn = {"arch": "digits-cnn", "width": z.cnn_width, "depth": 3, "epochs": z.epochs, **conv}
    mlp = {"arch": "digits-mlp", "width": z.mlp_width, "depth": 3, "epochs": z.mlp_epochs, **common,
           "lr": z.mlp_lr}  # fmt: skip
    models = [ZooModel(**cnn, seed=s, save_every=z.save_every) for s in seeds]
    models += [ZooModel(**{**cnn, "epochs": 0}, seed=s) for s in seeds]
    models += [ZooModel(**cnn, mixup=0.4, seed=s) for s in seeds]
    variants = seeds[: z.variant_seeds]
    models += [ZooModel(**cnn, label_noise=level, seed=s) for level in z.label_noise for s in variants]
    models += [ZooModel(**{**cnn, "train_size": n}, seed=s) for n in z.train_sizes for s in variants]
    models += [ZooModel("small-resnet", z.resnet_width, 2, z.resnet_epochs, seed=s, **conv) for s in seeds]
    models += [ZooModel(**{**mlp, "depth": 1}, seed=s) for s in seeds]
    models += [ZooModel(**mlp, seed=s, save_every=z.mlp_save_every) for s in range(2 * z.seeds)]
    models += [ZooModel(**{**mlp, "width": w}, seed=s) for w in z.mlp_widths for s in seeds]
    models += [ZooModel(**mlp, label_noise=level, seed=s) for level in z.label_noise for s in variants]
    models += [ZooModel(**{**mlp, "train_size": n}, seed=s) for n in z.train_sizes for s in variants]
    return models


def design(preset: str) -> ClaimsDesign:
    """The zoo and measuring settings of `preset` (see the module docstring)."""
    if preset == "tiny":
        sizes = ZooSizes(seeds=2, variant_seeds=1, cnn_width=16, resnet_width=4, mlp_width=32,
                         mlp_widths=(64,), epochs=6, resnet_epochs=2, mlp_epochs=6, save_every=2,
                         mlp_save_every=3, label_noise=(0.5,), train_sizes=(300,),
                         train_size=600)  # fmt: skip
        return ClaimsDesign(
            "tiny", "a pipeline check: two seeds per condition cannot decide a claim (eight are needed)",
            tuple(zoo_models(sizes)), n_points=150, perturb_images=4, plane_classes=(0, 1),
            plane_dims=4, plane_options=(("steps", 100), *STOP_AT_HIT), plane_runs=1,
        )  # fmt: skip
    if preset == "small":
        sizes = ZooSizes(seeds=8, variant_seeds=4, cnn_width=32, resnet_width=8, mlp_width=256,
                         mlp_widths=(64,), epochs=45, resnet_epochs=15, mlp_epochs=90, save_every=9,
                         mlp_save_every=15, label_noise=(0.2, 0.4), train_sizes=(500,), train_size=1000,
                         conv_lr=0.05)  # fmt: skip
        return ClaimsDesign(
            "small", "a test of the claims on small nets: eight runs per condition (four for the label-noise "
            "and training-size series)", tuple(zoo_models(sizes)),
            n_points=500, perturb_images=SMALL_PERTURB_IMAGES, curvature_centres=100,
            plane_classes=(0, 1, 6), plane_runs=8,
            plane_options=(("steps", SMALL_PLANE_STEPS), ("lr", SMALL_PLANE_LR), *STOP_AT_HIT),
        )  # fmt: skip
    if preset == "full":
        sizes = ZooSizes(seeds=10, variant_seeds=5, cnn_width=64, resnet_width=16, mlp_width=512,
                         mlp_widths=(128, 2048), epochs=150, resnet_epochs=60, mlp_epochs=150,
                         save_every=10, mlp_save_every=30, label_noise=(0.1, 0.2, 0.4),
                         train_sizes=(1000, 3000), train_size=10000)  # fmt: skip
        return ClaimsDesign(
            "full", "a test of the claims: ten runs per condition", tuple(zoo_models(sizes)), n_points=5000,
            perturb_images=200, curvature_centres=1000, plane_options=STOP_AT_HIT, plane_runs=10,
        )  # fmt: skip
    close = difflib.get_close_matches(preset, PRESETS, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise InputError(f"unknown claims preset {preset!r}{hint}: use one of {', '.join(PRESETS)}.")
