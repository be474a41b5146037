"""`mprobe demo`: the main job on the built-in data (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from manifold_probe.study.demo import DEMO_MEASURES, DEMO_POINTS, run_demo

from .output import console, err_console


def demo_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for the zoo, the sweep and the report.")] = Path(
        "demo-out"
    ),
    n_points: Annotated[
        int, typer.Option("--n-points", help="Training points measured per model.", min=50)
    ] = DEMO_POINTS,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Sweep processes (default: up to 2).", min=1, show_default=False),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for training, subsets and statistics.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train the demo zoo of digits models, measure every layer of each, and report.

    Does the curvature gap between the last two layers predict test accuracy (Kaufman &
    Azencot 2023), and how do intrinsic dimension and neural collapse relate? Writes
    --out/zoo, --out/sweep and --out/report/index.html; a second run reuses all of it.
    """
    from manifold_probe.report.tables import correlation_tables

    demo = run_demo(out, seed=seed, n_points=n_points, workers=workers, progress=not quiet)
    console.print(
        f"{len(demo.zoo)} models, measures {', '.join(DEMO_MEASURES)}: {len(demo.sweep.done)} tasks run, "
        f"{demo.sweep.skipped} reused, {len(demo.sweep.failed)} failed"
    )
    for table in correlation_tables(demo.report.summary["correlation"], title="all trained models"):
        console.print(table)
    err_console.print(f"page: {demo.page}")
    if demo.sweep.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
