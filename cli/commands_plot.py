"""`mprobe plot`: several result files overlaid on shared axes, written as a figure for a paper.

The figure is `manifold_probe.report.figures.plot` (`Result.plot`); this module parses options,
reads the files and writes the figure in each format asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import split_list
from .output import err_console


def plot_command(
    results: Annotated[
        list[Path], typer.Argument(help="Result files (--json of any per-layer measure) to overlay.")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="The figure file; its suffix is the format (.svg, .pdf, .png, .html) "
            "unless --format is given.",
        ),
    ],
    formats: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Formats, comma-separated (html, svg, pdf, png): one file each, --out with that suffix.",
            show_default="the suffix of --out",
        ),
    ] = None,
    metrics: Annotated[
        list[str] | None,
        typer.Option(
            "--metrics",
            help="Metrics to draw, one panel each (repeat or comma-separate).",
            show_default="every metric of the results",
        ),
    ] = None,
    x: Annotated[
        str,
        typer.Option(
            "--x",
            help="x axis: depth (relative, 0 to 1), name (layer names), or auto "
            "(names when every result has the same layers).",
        ),
    ] = "auto",
    names: Annotated[
        list[str] | None,
        typer.Option(
            "--names",
            help="Legend name of each result, in order (comma-separated).",
            show_default="each result's model",
        ),
    ] = None,
    log_y: Annotated[
        list[str] | None, typer.Option("--log-y", help="Metrics to draw on a log axis.", show_default=False)
    ] = None,
    title: Annotated[str | None, typer.Option("--title", help="Figure title.", show_default=False)] = None,
    width: Annotated[int | None, typer.Option("--width", min=100, help="Width in pixels.")] = 900,
    height: Annotated[
        int | None, typer.Option("--height", min=100, help="Height in pixels.", show_default="by panels")
    ] = None,
    font_size: Annotated[float | None, typer.Option("--font-size", min=1, help="Font size in points.")] = 14,
    scale: Annotated[float, typer.Option("--scale", min=0.1, help="PNG pixels per figure pixel.")] = 2.0,
) -> None:
    """Overlay several results on shared axes (one panel per metric, one line per result) and
    write the figure as SVG, PDF, PNG or an HTML page. Values not measured (cannot_tell,
    no_manifold_scale, skipped, ...) are marked as such, not drawn like measured ones.
    """
    import manifold_probe as mp
    from manifold_probe.report.figures import check_formats

    chosen = check_formats(formats or out.suffix or "?")
    loaded = [mp.read_result(path) for path in results]
    figure = mp.plot(
        loaded, metrics=split_list(metrics, parameter="metrics"), x=x,
        names=split_list(names, parameter="names"), log_y=list(split_list(log_y, parameter="log_y") or []),
        title=title, width=width, height=height, font_size=font_size,
    )  # fmt: skip
    for kind in chosen:
        path = out if formats is None else out.with_suffix(f".{kind}")
        mp.write_figure(figure, path, format=kind, scale=scale)
        err_console.print(f"wrote {path}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("plot")(plot_command)
