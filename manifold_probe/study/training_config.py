"""The hyper-parameters of a training run (`TrainingConfig`), apart from the training code so
that reading them (the command line's defaults, the zoo presets) does not import torch.
The recipe itself is in `training`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import InputError

LR_SCHEDULES: tuple[str, ...] = ("cosine", "step", "constant")
"""The learning-rate schedules of a training run (`TrainingConfig.lr_schedule`)."""


@dataclass(frozen=True)
class TrainingConfig:
    """The hyper-parameters of one training run (stored as the checkpoint's "training").

    - `mixup`: alpha of mixup's Beta(alpha, alpha) (0: off). Per batch, lam ~ Beta(alpha, alpha)
      and a permutation pi of the batch give inputs lam x + (1 - lam) x[pi] and targets
      lam onehot(y) + (1 - lam) onehot(y[pi]); the cross-entropy takes the soft targets.
      lam and pi come from `np.random.default_rng` seeded from `seed` (a stream of its own, so
      the batch order is the same as without mixup).
    - `label_smoothing`: eps of `F.cross_entropy(..., label_smoothing=eps)`, in [0, 1].
    - `label_noise`: the fraction p in [0, 1] of training labels replaced, once before training,
      by a uniformly drawn other class (`noisy_labels`; round(p n) labels, chosen by the seed).
      Train accuracy and loss in the metrics and history are measured against these noisy
      labels, the ones the network was fitted to, so train minus test accuracy is the
      generalization gap of what was learnt (Zhang et al. 2017); with noise the metrics also
      hold `train_accuracy_clean`, the accuracy on the true labels.
    - `train_size`: the number of training points, a stratified subset of the training split
      drawn with `np.random.default_rng(seed)` (`sources.data.stratified_subset`); None: the
      whole split. A finished run's config (and so the checkpoint) records the number used.
    - `lr_schedule`: the learning rate over the run's S optimiser steps, step s = 0..S-1
      (`LR_SCHEDULES`): `cosine` lr (1 + cos(pi s / S)) / 2, from lr towards 0; `step` lr, lr/10
      from s >= S/3 and lr/100 from s >= 2S/3 (Papyan, Han & Donoho 2020, "Prevalence of neural
      collapse during the terminal phase of deep learning training", PNAS: 350 epochs, the rate
      divided by 10 at one third and two thirds of training), so the terminal phase runs at a rate
      that is not near 0; `constant` lr throughout.
    """

    arch: str = "digits-cnn"
    arch_args: Mapping[str, Any] = field(default_factory=dict)
    data: str = "digits"
    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    mixup: float = 0.0
    label_smoothing: float = 0.0
    label_noise: float = 0.0
    train_size: int | None = None
    lr_schedule: str = "cosine"
    seed: int = 0

    def __post_init__(self) -> None:
        from ..validation import check_fraction, check_positive, check_seed  # numpy: when a config is made

        object.__setattr__(self, "arch_args", dict(self.arch_args))
        check_positive(self.epochs, name="epochs", integer=True, allow_zero=True)  # 0: untrained
        check_positive(self.batch_size, name="batch_size", integer=True)
        check_positive(self.lr, name="lr")
        check_positive(self.momentum, name="momentum", allow_zero=True)
        check_positive(self.weight_decay, name="weight_decay", allow_zero=True)
        if self.momentum >= 1:
            raise InputError(f"momentum must be below 1, got {self.momentum}.")
        check_positive(self.mixup, name="mixup", allow_zero=True)
        check_fraction(self.label_smoothing, name="label_smoothing")
        check_fraction(self.label_noise, name="label_noise")
        if self.train_size is not None:
            check_positive(self.train_size, name="train_size", integer=True)
        check_seed(self.seed, name="seed")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(
                f"must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}.",
                parameter="lr_schedule",
            )

    def as_dict(self) -> dict:
        """The hyper-parameters as plain types."""
        return asdict(self)
