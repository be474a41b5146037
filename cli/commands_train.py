"""`mprobe train`: train a built-in model on built-in (or local) data and save mprobe's checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from manifold_probe.study.training_config import TrainingConfig

from .output import console, err_console


def train_command(
    out: Annotated[Path, typer.Option("--out", help="Where to write the checkpoint (.pt).")],
    arch: Annotated[
        str, typer.Option("--arch", help="digits-cnn, digits-mlp, small-resnet or torchvision:NAME.")
    ] = "digits-cnn",
    width: Annotated[
        int | None,
        typer.Option("--width", help="Channels (cnn) or units (mlp) per block.", show_default="32"),
    ] = None,
    depth: Annotated[
        int | None,
        typer.Option("--depth", help="Number of blocks (conv blocks or hidden layers).", show_default="3"),
    ] = None,
    data: Annotated[
        str, typer.Option("--data", help="Training data spec (see `mprobe id --help`).")
    ] = "digits",
    epochs: Annotated[
        int, typer.Option("--epochs", help="Training epochs (0: save the untrained network).")
    ] = TrainingConfig.epochs,
    lr: Annotated[
        float, typer.Option("--lr", help="Peak learning rate (SGD with Nesterov momentum).")
    ] = TrainingConfig.lr,
    lr_schedule: Annotated[
        str,
        typer.Option(
            "--lr-schedule",
            help="cosine (lr to 0), step (lr/10 at 1/3 and 2/3 of training, Papyan, Han & Donoho 2020) "
            "or constant.",
        ),
    ] = TrainingConfig.lr_schedule,
    weight_decay: Annotated[
        float, typer.Option("--weight-decay", help="L2 weight decay.")
    ] = TrainingConfig.weight_decay,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Mini-batch size.")
    ] = TrainingConfig.batch_size,
    mixup: Annotated[
        float, typer.Option("--mixup", help="Mixup alpha: lam ~ Beta(alpha, alpha) per batch (0: off).")
    ] = TrainingConfig.mixup,
    label_smoothing: Annotated[
        float, typer.Option("--label-smoothing", help="Label smoothing eps of the cross-entropy, 0-1.")
    ] = TrainingConfig.label_smoothing,
    label_noise: Annotated[
        float,
        typer.Option(
            "--label-noise",
            help="Fraction of training labels replaced by a random other class (fixed by --seed).",
        ),
    ] = TrainingConfig.label_noise,
    train_size: Annotated[
        int | None,
        typer.Option(
            "--train-size",
            help="Train on a seeded stratified subset of this many points.",
            show_default="the whole training split",
        ),
    ] = None,
    save_every: Annotated[
        int | None,
        typer.Option(
            "--save-every",
            help="Also save every N-th epoch beside --out as <stem>-epochNNN.pt.",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed: same seed, same weights (on the CPU).")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "cpu",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train a built-in model (default digits-cnn on the built-in digits) and save its checkpoint.

    The checkpoint holds the architecture and its arguments, the weights, the data spec and
    split seed, and train/test accuracy and loss; `--model` of every command reads it.
    """
    from manifold_probe.device import resolve_device
    from manifold_probe.study.training import train_and_save

    arch_args = {key: value for key, value in (("width", width), ("depth", depth)) if value is not None}
    run = train_and_save(
        arch,
        arch_args,
        out=out,
        save_every=save_every,
        data=data,
        epochs=epochs,
        lr=lr,
        lr_schedule=lr_schedule,
        weight_decay=weight_decay,
        batch_size=batch_size,
        mixup=mixup,
        label_smoothing=label_smoothing,
        label_noise=label_noise,
        train_size=train_size,
        seed=seed,
        device=resolve_device(device),
        progress=not quiet,
    )
    m = run.metrics
    test = f", test accuracy {m['test_accuracy']:.4f}" if m.get("test_accuracy") is not None else ""
    if "train_accuracy_clean" in m:
        test = f" (true labels {m['train_accuracy_clean']:.4f}){test}"
    console.print(
        f"{arch} {run.arch_args}: train accuracy {m['train_accuracy']:.4f}{test} after {run.epoch} epochs"
    )
    err_console.print(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
