"""`mprobe claims`: the five papers' claims re-tested on a zoo, with a verdict each."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from manifold_probe.study.claims.design import PRESETS

from .output import console, err_console


def claims_command(
    data: Annotated[
        str, typer.Option("--data", help="Data spec to train and measure on: digits, fashion-mnist, ...")
    ] = "digits",
    preset: Annotated[
        str, typer.Option("--preset", help=f"Zoo size: {', '.join(PRESETS)} (manifold_probe.claims.design).")
    ] = "tiny",
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the zoo, the sweep and the findings.")
    ] = Path("claims-out"),
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", help="Training and sweep processes (default: 2).", min=1, show_default=False
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of training, test points, planes, permutations.")
    ] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "cpu",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Test the claims of the five papers on a zoo trained on --data: one verdict per claim.

    Trains the preset's zoo (baselines, seeds, untrained and mixup twins, label noise,
    training-set sizes, saved epochs, one-hidden-layer MLPs), runs every probe on every
    checkpoint on its points and tests each claim over training runs (exact tests, Holm's
    correction): effect, 95 % interval, verdict (equivalent to no effect / supported /
    contradicted / inconclusive) and robustness across designs. Writes --out/claims.json and
    --out/index.html; every stage is resumable. See docs/claims.md.
    """
    from manifold_probe.device import resolve_device
    from manifold_probe.study.claims.study import run_claims

    outcome = run_claims(
        out, data=data, preset=preset, seed=seed, workers=workers, device=str(resolve_device(device)),
        progress=not quiet,
    )  # fmt: skip
    from rich.table import Table

    table = Table(title=f"claims on {data} (preset {preset})")
    for column in ("claim", "effect", "95 % interval", "runs", "verdict", "robustness"):
        table.add_column(column)
    for f in outcome.findings:
        interval = "-" if f.interval is None else f"[{f.interval[0]:.3g}, {f.interval[1]:.3g}]"
        value = "-" if f.value is None else f"{f.value:.3g}"
        verdict = f.verdict + (f": {f.reason}" if f.reason else "")
        table.add_row(f.claim, value, interval, str(f.n), verdict, f.robustness)
    console.print(table)
    err_console.print(f"preset {preset}: {outcome.result.source['purpose']}")
    err_console.print(f"wrote {outcome.json_path} and {outcome.page_path}")


def register(app: typer.Typer) -> None:
    app.command("claims")(claims_command)
