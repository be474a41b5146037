"""`mprobe demo`: the main job on the built-in data (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from manifold_probe.demo import run_demo

from .output import console, err_console, print_layers


def demo_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for checkpoints, results and pages.")] = Path(
        "demo-out"
    ),
    seed: Annotated[int, typer.Option("--seed", help="Seed for training and measuring.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train the built-in digits-cnn (reused when already in --out), then measure its layers.

    Writes the checkpoint, the JSON results and an interactive page into --out and prints
    the layer profile. A second run reuses the checkpoint and the activation cache.
    """
    demo = run_demo(out, seed=seed, progress=not quiet)
    for result, title in demo.results:
        print_layers(result, demo.metrics[result.command], title=title)
    console.print(f"checkpoint: {demo.checkpoint}  (test accuracy {demo.test_accuracy:.4f})")
    err_console.print(f"page: {demo.page}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
