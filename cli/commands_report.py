"""`mprobe report`: correlations of the sweep's measures with generalization, and the report page.

The science is in manifold_probe.report.{statistics,report}; this module parses options and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .output import console, err_console


def report_command(
    sweep: Annotated[
        Path, typer.Argument(help="Sweep folder (from `mprobe sweep`): table.csv and results/.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for report.json and index.html.")] = Path(
        "report"
    ),
    seed: Annotated[int, typer.Option("--seed", help="Seed for the bootstrap and the permutations.")] = 0,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples for the 95 % intervals.")
    ] = 1000,
    permutations: Annotated[
        int, typer.Option("--permutations", min=0, help="Permutations for the p-values.")
    ] = 1000,
    include_untrained: Annotated[
        bool, typer.Option("--include-untrained", help="Relate untrained models too (left out by default).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    plotlyjs: Annotated[
        str,
        typer.Option(
            "--plotlyjs",
            help="inline (index.html stands alone, about 4.7 MB) or directory (one shared plotly.min.js "
            "beside it).",
        ),
    ] = "directory",
) -> None:
    """Relate each measure of a sweep (curvature gap raw and scaled, last-layer ID, NC1, class-manifold
    dimension) to test accuracy and to the generalization gap: Pearson, Spearman and Kendall tau-b,
    each with a 95 % bootstrap percentile interval and a permutation p-value, over all models and
    within each family. Writes OUT/report.json and the page OUT/index.html.
    """
    from manifold_probe.report.tables import correlation_tables
    from manifold_probe.study.report import build_report, write_report_page

    result = build_report(
        sweep, seed=seed, n_bootstrap=bootstrap, n_perm=permutations, include_untrained=include_untrained,
        progress=not quiet,
    )  # fmt: skip
    summary = result.summary
    for table in correlation_tables(summary["correlation"], title=f"{summary['n_models_used']} models"):
        console.print(table)
    console.print(f"models: {result.params['models']}; green: p < 0.05", highlight=False)
    result.write(out / "report.json")
    page = write_report_page(result, sweep, out / "index.html", plotlyjs=plotlyjs)
    err_console.print(f"wrote {out / 'report.json'}")
    console.print(f"page: {page}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)
