"""`mprobe zoo`: train a reproducible set of digits models (a preset) into a folder, resumably."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from manifold_probe.study.zoo_presets import PRESETS, ZOO_INDEX

from .output import console, err_console


def zoo_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for the checkpoints and zoo.json.")],
    preset: Annotated[
        str, typer.Option("--preset", help=f"Which set of models: {', '.join(PRESETS)}.")
    ] = "demo",
    seed: Annotated[int, typer.Option("--seed", help="Training seed of every model.")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "cpu",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train a zoo of digits models whose test accuracy spreads from chance to ~99 %.

    The models vary width, depth, epochs, weight decay, mixup, label smoothing, label noise
    and training-set size, plus untrained copies. Checkpoints that already exist in --out
    are kept, so an interrupted zoo resumes; --out/zoo.json lists the models.
    """
    from manifold_probe.device import resolve_device
    from manifold_probe.report.tables import zoo_table
    from manifold_probe.study.zoo_presets import train_zoo

    entries = train_zoo(out, preset, seed=seed, device=resolve_device(device), progress=not quiet)
    console.print(zoo_table(entries, title=f"zoo {preset} (seed {seed})"))
    trained = sum(entry.trained for entry in entries)
    err_console.print(f"{trained} trained, {len(entries) - trained} kept; wrote {Path(out) / ZOO_INDEX}")


def register(app: typer.Typer) -> None:
    app.command("zoo")(zoo_command)
