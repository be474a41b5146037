"""Printing results and writing their files, for every command (the tables and pages
themselves are in manifold_probe.report)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from manifold_probe.results import Result

console = Console()
err_console = Console(stderr=True)


def print_result(result: Result, *, title: str | None = None) -> None:
    """Every terminal table of `result` (`report.tables.result_tables`)."""
    from manifold_probe.report.tables import result_tables

    for table in result_tables(result):
        if title is not None:
            table.title = title
            title = None
        console.print(table)


def write_outputs(
    result: Result,
    json_path: Path | None,
    html_path: Path | None = None,
    *,
    results: Sequence[Result] | None = None,
    names: Sequence[str] | None = None,
    log_scale: bool = False,
    plotlyjs: str = "inline",
) -> None:
    """Write the JSON of `result` and the page of `results` (default: `result` alone, plotly.js
    `plotlyjs`: inline or directory) if asked for, and say where."""
    if json_path is not None:
        result.write(json_path)
        err_console.print(f"wrote {json_path}")
    if html_path is not None:
        from manifold_probe.report.pages import write_result_page

        write_result_page(html_path, list(results or [result]), names=names, log_scale=log_scale,
                          plotlyjs=plotlyjs)  # fmt: skip
        err_console.print(f"wrote {html_path}")
