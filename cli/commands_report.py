"""`mprobe report`: correlations of the sweep's measures with generalization, and the report page.

The science is in manifold_probe.report.{statistics,report}; this module parses options and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from .output import console, err_console


def _cell(entry: dict) -> str:
    if entry["value"] is None:
        return f"[dim]insufficient\n(n = {entry['n']})[/dim]"
    text = f"{entry['value']:+.3f}"
    if entry["interval"] is not None:
        text += f"\n[{entry['interval'][0]:+.2f}, {entry['interval'][1]:+.2f}]"
    if entry["p_value"] is not None:
        text += f"\np = {entry['p_value']:.2g}"
    significant = entry["p_value"] is not None and entry["p_value"] < 0.05
    return f"[green]{escape(text)}[/green]" if significant else escape(text)


def correlation_tables(correlation: dict, *, title: str) -> list[Table]:
    """One table per target, one row per measure; each coefficient as value, [95 % interval], p-value."""
    from manifold_probe.report.report import TARGETS
    from manifold_probe.report.statistics import METHODS

    tables = []
    for target in TARGETS:
        table = Table(title=f"{title}: against {target}", header_style="bold", show_lines=True)
        table.add_column("measure", style="cyan", no_wrap=True)
        for method in METHODS:
            table.add_column(method, justify="right", no_wrap=True)
        for key, entry in correlation.items():
            measure, _, against = key.partition("_vs_")
            if against == target:
                table.add_row(measure, *(_cell(entry[m]) for m in METHODS))
        tables.append(table)
    return tables


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
) -> None:
    """Relate each measure of a sweep (curvature gap raw and scaled, last-layer ID, NC1, class-manifold
    dimension) to test accuracy and to the generalization gap: Pearson, Spearman and Kendall tau-b,
    each with a 95 % bootstrap percentile interval and a permutation p-value, over all models and
    within each family. Writes OUT/report.json and the page OUT/index.html.
    """
    from manifold_probe.report.report import build_report, write_report_page

    result = build_report(
        sweep, seed=seed, n_boot=bootstrap, n_perm=permutations, include_untrained=include_untrained,
        progress=not quiet,
    )  # fmt: skip
    summary = result.summary
    for table in correlation_tables(summary["correlation"], title=f"{summary['n_models_used']} models"):
        console.print(table)
    console.print(f"models: {result.params['models']}; green: p < 0.05", highlight=False)
    result.write(out / "report.json")
    page = write_report_page(result, sweep, out / "index.html")
    err_console.print(f"wrote {out / 'report.json'}")
    console.print(f"page: {page}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)
