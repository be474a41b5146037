"""Printing results and writing their files, for every command (the tables and pages
themselves are in manifold_probe.report)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:
    from manifold_probe.results import Result

WIDTH_OFF_TERMINAL = 200
"""Columns of a table printed to a file or a pipe (a terminal's own width is used on a terminal):
rich's default of 80 would cut the cells (`curv…`, `0.02…`)."""

console = Console(width=None if sys.stdout.isatty() else WIDTH_OFF_TERMINAL)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else WIDTH_OFF_TERMINAL)


NOTHING_MEASURED = 3
"""Exit code of a measuring command when no layer could be measured (the result is written)."""


def print_result(result: Result, *, title: str | None = None) -> None:
    """Every terminal table of `result` (`report.tables.result_tables`), then one line per
    layer that has a status with a reason (skipped, not measurable, cannot tell)."""
    from manifold_probe.report.tables import result_tables

    for table in result_tables(result):
        if title is not None:
            table.title = title
            title = None
        console.print(table)
    for layer in result.layers:
        if layer.reason:
            err_console.print(
                f"{layer.name}: {layer.status}: {layer.reason}", highlight=False, soft_wrap=True
            )


def exit_if_nothing_measured(result: Result) -> None:
    """After the result is written: exit with NOTHING_MEASURED when it has layers and none of
    them could be measured (every one skipped or not measurable)."""
    from manifold_probe.measures.layers import nothing_measured

    if nothing_measured(result):
        err_console.print(
            f"[red]error:[/red] no layer could be measured (the reasons are above and in the result); "
            f"exit code {NOTHING_MEASURED}.",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
        raise typer.Exit(NOTHING_MEASURED)


def write_outputs(
    result: Result,
    json_path: Path | None,
    html_path: Path | None = None,
    *,
    results: Sequence[Result] | None = None,
    names: Sequence[str] | None = None,
    log_scale: bool = False,
    plotlyjs: str = "inline",
    formats: str = "html",
) -> None:
    """Write the JSON of `result` and the page of `results` (default: `result` alone, plotly.js
    `plotlyjs`: inline or directory) if asked for, in each of `formats` (html: the page; svg,
    pdf, png: each of its figures beside it, `report.figures.write_figures`), and say where."""
    from manifold_probe.errors import InputError
    from manifold_probe.report.figures import check_formats

    chosen = check_formats(formats)
    if html_path is None and chosen != ("html",):
        raise InputError("needs --html PATH: the page's name, beside which the figures are written.",
                         parameter="formats")  # fmt: skip
    if json_path is not None:
        result.write(json_path)
        err_console.print(f"wrote {json_path}")
    if html_path is None:
        return
    shown = list(results or [result])
    if "html" in chosen:
        from manifold_probe.report.pages import write_result_page

        write_result_page(html_path, shown, names=names, log_scale=log_scale, plotlyjs=plotlyjs)
        err_console.print(f"wrote {html_path}")
    if any(kind != "html" for kind in chosen):
        from manifold_probe.report.figures import write_figures
        from manifold_probe.report.pages import result_figures

        figures, _, _ = result_figures(shown, names=names, log_scale=log_scale)
        for path in write_figures(figures, html_path, chosen):
            err_console.print(f"wrote {path}", highlight=False, soft_wrap=True)
