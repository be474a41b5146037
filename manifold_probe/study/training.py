"""Training a classifier from the zoo (or torchvision) on a data spec, and saving the checkpoint.

The recipe: cross-entropy, SGD with Nesterov momentum 0.9 and weight decay on every
parameter, the learning rate following `lr_schedule` over all steps (one step per batch: a
cosine from `lr` to 0 by default, or Papyan, Han & Donoho's steps, or constant; see
`TrainingConfig`), batches drawn by a seeded `torch.randperm` each epoch. The defaults (15 epochs, batch 128,
lr 0.1, weight decay 5e-4) train `digits-cnn` (width 32, depth 3) on `digits` to 98.7-99.6 %
test accuracy (seeds 0-4) in 2-6 s on one CPU thread.

Reproducibility: the model's initial weights (and dropout, where an architecture has it)
come from torch's global RNG, so training runs inside `torch.random.fork_rng` after
`torch.manual_seed(seed)`; the caller's global RNG state is restored afterwards. Batch order
comes from its own `torch.Generator` seeded with `seed`. Every run trains with
`torch.use_deterministic_algorithms(True)` on `TRAINING_THREADS` intra-op CPU thread(s) (both
restored afterwards), and checkpoints are serialised in memory before they are written, so the
archive does not carry the temporary file's random name: the same seed, data, torch build and
CPU instruction set give the same checkpoint byte for byte (`tests/test_training_determinism.py`
trains twice in fresh processes). What may differ on another machine: float sums in oneDNN/MKL
kernels chosen for another instruction set (AVX2 against AVX-512) can round differently in the
last bit, and SGD can grow such differences over many epochs; on CUDA, deterministic kernels
also need `CUBLAS_WORKSPACE_CONFIG=:4096:8` (without it torch only warns).

`TrainingConfig` holds every hyper-parameter, including the regularisers and data
perturbations that spread a model zoo's test accuracy (see `TrainingConfig` for the formulas):

- `mixup` (Zhang, Cisse, Dauphin & Lopez-Paz, "mixup: Beyond empirical risk minimization",
  ICLR 2018): each batch is mixed with a permutation of itself, x = lam x_i + (1 - lam) x_j
  and the one-hot targets likewise, lam ~ Beta(alpha, alpha), one lam per batch as in the
  paper's code; 0 is off.
- `label_smoothing`: torch's `cross_entropy(..., label_smoothing=eps)` (Szegedy et al. 2016):
  the target becomes (1 - eps) onehot + eps / C.
- `label_noise`: a fraction of the training labels replaced once, before training, by a
  uniformly drawn *other* class (Zhang, Bengio, Hardt, Recht & Vinyals 2017); fixed by the seed.
- `train_size`: a seeded stratified subset of the training split (`sources.data.stratified_subset`).

Evaluation: the checkpoint's `metrics` use the whole training subset and the whole test split.
The per-epoch `history` records the training batches' running loss and accuracy and the test
metrics on a stratified subset of at most `EPOCH_TEST_POINTS` test points (seed 0, the same
every epoch; `test_points` in each row): on Fashion-MNIST the full 10,000-image test pass
each epoch cost more than the epoch's training on a 2,000-image subset.

`train` and `train_and_save` take these (and every other `TrainingConfig` field) as keyword
`**options`, so the list of hyper-parameters lives in one place.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..device import resolve_device
from ..errors import InputError
from ..progress import track
from ..sources import zoo
from ..sources.checkpoint import make_checkpoint, save_checkpoint
from ..sources.data import LabelledData, has_test_split, load_data
from ..validation import check_positive
from .training_config import TrainingConfig

_EVAL_BATCH = 512

FEW_STEPS = 100
"""A run with fewer optimiser steps than this in all gets a `FewStepsWarning`."""

TRAINING_THREADS = 1
"""Intra-op CPU threads of every training run: a fixed count, so that float sums are split the same
way on every machine (and these small nets train faster on one thread than on two)."""


def learning_rate_factor(schedule: str, step: int, total_steps: int) -> float:
    """The learning rate at optimiser step `step` (0-based) of `total_steps`, as a fraction of
    `lr` (the formulas: `TrainingConfig.lr_schedule`)."""
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
    if schedule == "step":
        return 0.1 ** sum(3 * step >= k * total_steps for k in (1, 2))
    return 1.0


@contextlib.contextmanager
def deterministic(device: torch.device, threads: int = TRAINING_THREADS):
    """Deterministic kernels on a fixed number of intra-op threads for the block; the caller's
    settings come back afterwards. On CUDA a kernel without a deterministic version warns
    instead of raising (it also needs CUBLAS_WORKSPACE_CONFIG, which only the caller can set)."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    was_threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(was_threads)
        torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)


class FewStepsWarning(UserWarning):
    """A training run takes so few SGD steps that it rarely reaches a trained network."""


@dataclass(frozen=True, eq=False)
class TrainingRun:
    """A trained model and how it got there (at the end of training or at a snapshot epoch).

    `arch_args` are all of the architecture's arguments (as filled in from the data);
    `metrics` holds train/test accuracy and loss measured in eval mode (test ones are None
    without a test split); `history` one dict per epoch so far.
    """

    module: nn.Module
    config: TrainingConfig
    arch_args: dict
    metrics: dict
    history: list[dict]
    epoch: int
    split_seed: int

    def checkpoint(self) -> dict:
        """The project checkpoint of this run (see sources/checkpoint.py)."""
        return make_checkpoint(
            arch=self.config.arch,
            arch_args=self.arch_args,
            state_dict=self.module.state_dict(),
            data=self.config.data,
            split_seed=self.split_seed,
            seed=self.config.seed,
            metrics=self.metrics,
            epoch=self.epoch,
            training=self.config.as_dict(),
            history=self.history,
        )


def _arch_args_for(config: TrainingConfig, data: LabelledData) -> dict:
    """The architecture's arguments, with the input shape and class count taken from the data."""
    given = dict(config.arch_args)
    if config.arch in zoo.ARCHITECTURES:
        shape = data.input_shape
        if len(shape) != 3 or shape[1] != shape[2]:
            raise InputError(
                f"{config.arch} takes square images (channels, size, size), but {data.spec} "
                f"has inputs of shape {shape}."
            )
        given.setdefault("in_channels", shape[0])
        given.setdefault("input_size", shape[1])
    given.setdefault("num_classes", data.num_classes)
    full = zoo.architecture_args(config.arch, given)
    if full["num_classes"] < data.num_classes:
        raise InputError(
            f"num_classes={full['num_classes']} but {data.spec} has {data.num_classes} classes; "
            "leave num_classes out to take it from the data."
        )
    return full


EPOCH_TEST_POINTS = 2000
"""The most test points the per-epoch history is evaluated on (a stratified subset, seed 0)."""


@torch.no_grad()
def evaluate(module: nn.Module, data: LabelledData, device: torch.device) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `module` in eval mode on all of `data`."""
    module.eval()
    total_loss, correct = 0.0, 0
    for x, y in data.batches(_EVAL_BATCH):
        x, y = x.to(device), y.to(device)
        logits = module(x)
        total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(dim=1) == y).sum())
    return total_loss / data.n_points, correct / data.n_points


@dataclass(frozen=True, eq=False)
class TrainingData:
    """What a run trains and evaluates on.

    `fitted` is the training set with the labels the network is fitted to (noisy under
    `label_noise`); `clean` the same points with their true labels (the same object without
    noise); `test` the test split, or None when the data set has none; `epoch_test` the
    per-epoch history's subset of it (at most `EPOCH_TEST_POINTS`; `test` itself when
    smaller). The noise lives in `fitted.labels`, which `batches` yields; items read from
    `fitted.dataset` directly keep their true labels.
    """

    fitted: LabelledData
    clean: LabelledData
    test: LabelledData | None
    epoch_test: LabelledData | None = None


def noisy_labels(labels: np.ndarray, fraction: float, num_classes: int, seed) -> np.ndarray:
    """A copy of `labels` with round(fraction * n) of them replaced by a uniform other class.

    The replaced positions are a uniform draw without replacement; each new label is
    (y + k) mod C with k uniform in 1..C-1, so it always differs from y and is uniform over
    the other C - 1 classes. `seed` seeds `np.random.default_rng`.
    """
    labels = np.asarray(labels)
    count = int(round(fraction * len(labels)))
    if count == 0:
        return labels.copy()
    if num_classes < 2:
        raise InputError("label_noise needs at least 2 classes.")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(labels), size=count, replace=False)
    noisy = labels.copy()
    noisy[chosen] = (labels[chosen] + rng.integers(1, num_classes, size=count)) % num_classes
    return noisy


def _metrics(module: nn.Module, data: TrainingData, device) -> dict:
    """Train/test accuracy and loss in eval mode (train against the fitted labels; see TrainingConfig)."""
    train_loss, train_accuracy = evaluate(module, data.fitted, device)
    test_loss, test_accuracy = evaluate(module, data.test, device) if data.test is not None else (None, None)
    metrics = {
        "train_accuracy": train_accuracy,
        "test_accuracy": test_accuracy,
        "train_loss": train_loss,
        "test_loss": test_loss,
    }
    if data.clean is not data.fitted:
        metrics["train_accuracy_clean"] = evaluate(module, data.clean, device)[1]
    return metrics


def _streams(seed: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
    """Independent seeds for (label noise, mixup), both derived from the training seed."""
    noise, mix = np.random.SeedSequence(seed).spawn(2)
    return noise, mix


def training_data(config: TrainingConfig) -> TrainingData:
    """The (subset of the) training split, its noisy labels if asked for, and the test split."""
    clean = load_data(config.data, split="train", n_points=config.train_size, seed=config.seed)
    test = load_data(config.data, split="test") if has_test_split(config.data) else None
    epoch_test = test
    if test is not None and test.n_points > EPOCH_TEST_POINTS:
        epoch_test = load_data(config.data, split="test", n_points=EPOCH_TEST_POINTS, seed=0)
    fitted = clean
    if config.label_noise > 0:
        labels = noisy_labels(clean.labels, config.label_noise, clean.num_classes, _streams(config.seed)[0])
        fitted = replace(clean, labels=labels)
    return TrainingData(fitted=fitted, clean=clean, test=test, epoch_test=epoch_test)


def _mix(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mixup of one batch: (mixed inputs, soft targets, the label with the larger weight)."""
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(len(y))).to(y.device)
    onehot = F.one_hot(y, num_classes).to(x.dtype)
    mixed_x = lam * x + (1.0 - lam) * x[perm]
    targets = lam * onehot + (1.0 - lam) * onehot[perm]
    return mixed_x, targets, y if lam >= 0.5 else y[perm]


def _train_step(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    config: TrainingConfig,
    num_classes: int,
    mix_rng: np.random.Generator,
) -> tuple[float, int]:
    """One SGD step on a batch; returns (summed loss, number correct) for the running means.

    Under mixup the loss is the cross-entropy to the mixed soft targets and the running
    accuracy counts the label with the larger mixing weight.
    """
    targets, scored = y, y
    if config.mixup > 0:
        x, targets, scored = _mix(x, y, num_classes, config.mixup, mix_rng)
    logits = module(x)
    loss = F.cross_entropy(logits, targets, label_smoothing=config.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach()) * len(y), int((logits.detach().argmax(dim=1) == scored).sum())


def fit(
    config: TrainingConfig,
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
    snapshot_every: int | None = None,
    on_snapshot: Callable[[TrainingRun], None] | None = None,
) -> TrainingRun:
    """Train a model as `config` says and return it with its metrics and per-epoch history.

    Every `snapshot_every` epochs (if given) `on_snapshot` receives the run as it stands; its
    `module` is the one still being trained, so the callback must use it (or copy it) at once.
    """
    torch_device = resolve_device(device)
    if snapshot_every is not None:
        snapshot_every = check_positive(snapshot_every, name="save_every", integer=True)
    data = training_data(config)
    train_data = data.fitted
    if train_data.n_points < 2:
        raise InputError(
            f"{config.data} has {train_data.n_points} training point(s); training needs 2 or more."
        )
    config = replace(config, train_size=train_data.n_points)  # the checkpoint records the number used
    arch_args = _arch_args_for(config, train_data)
    cuda = [torch_device.index or 0] if torch_device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), deterministic(torch_device):
        torch.manual_seed(config.seed)
        module = zoo.build_model(config.arch, **arch_args).to(torch_device)
        optimizer = torch.optim.SGD(
            module.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.momentum > 0,
            weight_decay=config.weight_decay,
        )
        # BatchNorm cannot train on a batch of one: drop a last batch of a single example.
        drop_last = train_data.n_points % config.batch_size == 1
        steps_per_epoch = (
            train_data.n_points // config.batch_size
            if drop_last
            else math.ceil(train_data.n_points / config.batch_size)
        )
        total_steps = max(1, steps_per_epoch * config.epochs)
        if 0 < steps_per_epoch * config.epochs < FEW_STEPS:
            warnings.warn(
                f"{config.arch} on {train_data.n_points} training points in batches of "
                f"{config.batch_size} takes {steps_per_epoch} optimiser step(s) per epoch, "
                f"{steps_per_epoch * config.epochs} in all (fewer than {FEW_STEPS}); lower "
                "batch_size or raise epochs to train the network further.",
                FewStepsWarning,
                stacklevel=3,
            )
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: learning_rate_factor(config.lr_schedule, step, total_steps)
        )
        order = torch.Generator().manual_seed(config.seed)
        mix_rng = np.random.default_rng(_streams(config.seed)[1])
        history: list[dict] = []

        def snapshot(epoch: int) -> TrainingRun:
            return TrainingRun(
                module=module,
                config=config,
                arch_args=arch_args,
                metrics=_metrics(module, data, torch_device),
                history=list(history),
                epoch=epoch,
                split_seed=train_data.split_seed,
            )

        run = snapshot(0) if config.epochs == 0 else None  # the untrained network
        epochs = range(1, config.epochs + 1)
        for epoch in track(epochs, description=f"training {config.arch}", enabled=progress):
            module.train()
            lr_at_start = optimizer.param_groups[0]["lr"]
            loss_sum, correct, seen = 0.0, 0, 0
            for x, y in train_data.batches(
                config.batch_size, shuffle=True, generator=order, drop_last=drop_last
            ):
                batch_loss, batch_correct = _train_step(
                    module,
                    optimizer,
                    x.to(torch_device),
                    y.to(torch_device),
                    config=config,
                    num_classes=arch_args["num_classes"],
                    mix_rng=mix_rng,
                )
                schedule.step()
                loss_sum += batch_loss
                correct += batch_correct
                seen += len(y)
            test_loss, test_accuracy = (None, None)
            if data.epoch_test is not None:
                test_loss, test_accuracy = evaluate(module, data.epoch_test, torch_device)
            history.append(
                {
                    "epoch": epoch,
                    "lr": lr_at_start,
                    "train_loss": loss_sum / seen,
                    "train_accuracy": correct / seen,
                    "test_loss": test_loss,
                    "test_accuracy": test_accuracy,
                    "test_points": data.epoch_test.n_points if data.epoch_test is not None else 0,
                }
            )
            snapshot_due = bool(snapshot_every and on_snapshot and epoch % snapshot_every == 0)
            if snapshot_due or epoch == config.epochs:
                run = snapshot(epoch)
                if snapshot_due:
                    on_snapshot(run)
    module.eval()
    return run


def _config(arch: str, arch_args: Mapping | None, options: Mapping[str, Any]) -> TrainingConfig:
    return TrainingConfig(arch=arch, arch_args=dict(arch_args or {}), **options)


def train(
    arch: str = "digits-cnn",
    arch_args: Mapping | None = None,
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
    **options: Any,
) -> tuple[nn.Module, dict, list[dict]]:
    """Train `arch` on `data`; returns (module in eval mode, final metrics, per-epoch history).

    `options` are `TrainingConfig` fields (data, epochs, batch_size, lr, momentum,
    weight_decay, mixup, label_smoothing, label_noise, train_size, seed), each defaulting
    to the field's default; an unknown name is a TypeError.
    """
    run = fit(_config(arch, arch_args, options), device=device, progress=progress)
    return run.module, run.metrics, run.history


def epoch_checkpoint_path(out: str | os.PathLike, epoch: int) -> Path:
    """Where `save_every` puts the checkpoint of `epoch`: `<out stem>-epochNNN.pt` beside out."""
    out = Path(out)
    return out.with_name(f"{out.stem}-epoch{epoch:03d}.pt")


def train_and_save(
    arch: str = "digits-cnn",
    arch_args: Mapping | None = None,
    *,
    out: str | os.PathLike,
    save_every: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    **options: Any,
) -> TrainingRun:
    """Train as `train` does (same `**options`) and write the project checkpoint to `out`.

    With `save_every=N`, the checkpoint of every N-th epoch is also written beside `out`
    (see `epoch_checkpoint_path`). Returns the finished run.
    """
    out = Path(out)

    def save_snapshot(run: TrainingRun) -> None:
        save_checkpoint(epoch_checkpoint_path(out, run.epoch), run.checkpoint())

    run = fit(
        _config(arch, arch_args, options),
        device=device,
        progress=progress,
        snapshot_every=save_every,
        on_snapshot=save_snapshot,
    )
    save_checkpoint(out, run.checkpoint())
    return run
