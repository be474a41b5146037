"""Figures for a paper: several results overlaid on shared axes (`plot`, `Result.plot`), and any
Plotly figure written as HTML, SVG, PDF or PNG (`write_figure`, `write_figures`).

`plot` draws one panel per metric against the layers, one line per result: x is each layer's
relative depth (results of different depths line up) or its name (a categorical axis in network
order, the union of the results' layers). A layer that was not measured is never drawn like a
measured one: a value the estimator did not vouch for (`cannot_tell`, `uncertain_dimension`, ...)
is a hollow marker off the line, and a layer with no value (`skipped`, `no_manifold_scale`,
`not_measurable`) an x on the panel's floor, its status and reason in the hover
(`profile_page.layer_profile_figure`). Size and fonts are set here, in pixels and points.

Static formats go through headless Chromium (`browser`), offline, with no extra package: the
figure is drawn by the plotly.js the page library ships, exported by Plotly's own `toImage` (SVG,
PNG), and a PDF is Chromium's print of the SVG (vector, text kept as text). Without Chromium,
SVG, PDF and PNG stop with one line saying so; HTML always works.
"""

from __future__ import annotations

import base64
import html
import os
import re
import tempfile
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import plotly.graph_objects as go

from ..errors import InputError
from ..files import atomic_write
from ..results import Result
from .profile_page import X_MODES, layer_profile_figure, write_page

FORMATS = ("html", "svg", "pdf", "png")
"""The formats a figure is written in: an interactive page, or a static file for a paper."""

DEFAULT_WIDTH = 900
DEFAULT_HEIGHT = 520


def check_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """`formats` (a list, or comma-separated text such as "svg,pdf") as a tuple of known formats.

    >>> check_formats("svg, pdf")
    ('svg', 'pdf')
    """
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    chosen = tuple(
        dict.fromkeys(str(item).strip().lower().lstrip(".") for item in items if str(item).strip())
    )
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        given = ", ".join(unknown) or "(none)"
        raise InputError(f"unknown format {given}: choose from {', '.join(FORMATS)}.", parameter="formats")
    return chosen


def plot(
    results: Result | Sequence[Result],
    *,
    metrics: Sequence[str] | None = None,
    x: str = "auto",
    names: Sequence[str] | None = None,
    log_y: bool | Sequence[str] = False,
    title: str | None = None,
    width: int | None = None,
    height: int | None = None,
    font_size: float | None = None,
) -> go.Figure:
    """Several results overlaid on shared axes: one panel per metric, one line per result.

    results: one `Result` or several (of any per-layer measure; a metric is drawn for every
    result that has it). metrics: the metrics to draw (default: every metric the results hold,
    the measure's own first). x: `depth` (relative depth, 0 first layer, 1 last), `name` (the
    layer names, in network order) or `auto` (names when every result has the same layers,
    else depth). names: the legend's name of each result (default: its model's). log_y: True,
    or the metrics to draw on a log axis (a metric spanning more than two decades gets one
    anyway). width, height (pixels) and font_size (points) size the figure for a paper.

    Example
    -------
    >>> trained, untrained = mp.intrinsic_dimension(acts), mp.intrinsic_dimension(mp.extract(
    ...     mp.load_model("untrained.pt"), data))
    >>> fig = plot([trained, untrained], metrics=["id_twonn"], x="depth", names=["trained", "untrained"])
    >>> [trace.name for trace in fig.data if trace.showlegend]
    ['trained', 'untrained']
    """
    from .. import registry

    results = [results] if isinstance(results, Result) else list(results)
    if not results or not all(isinstance(r, Result) for r in results):
        raise InputError("give one or more results (Result objects, or result files read with "
                         "mp.read_result).", parameter="results")  # fmt: skip
    if x not in X_MODES:
        raise InputError(f"must be one of {', '.join(X_MODES)}, got {x!r}.", parameter="x")
    if names is not None and len(names) != len(results):
        raise InputError(f"give one name per result ({len(results)}), got {len(names)}.", parameter="names")
    found = list(dict.fromkeys(m for r in results for layer in r.layers for m in layer.metrics))
    if metrics is None:
        known = [m for r in results if r.command in _measure_names() for m in registry.get(r.command).metrics]
        metrics = [m for m in dict.fromkeys(known) if m in found] + [m for m in found if m not in known]
    else:
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        missing = [m for m in metrics if m not in found]
        if missing:
            have = ", ".join(found) or "none"
            raise InputError(
                f"no result has the metric {missing[0]!r} (they have {have}).", parameter="metrics"
            )
    if not metrics:
        raise InputError("the results have no per-layer metric to draw.", parameter="results")
    if title is None:
        title = ", ".join(dict.fromkeys(r.command for r in results)) + " by layer"
    log = log_y if isinstance(log_y, bool) else list(log_y)
    fig = layer_profile_figure(results, list(metrics), names=list(names) if names else None, log_y=log,
                               title=title, x=x)  # fmt: skip
    return style_figure(fig, width=width, height=height, font_size=font_size)


def _measure_names() -> set[str]:
    from .. import registry

    return {m.name for m in registry.measures()}


def style_figure(
    figure: go.Figure, *, width: int | None = None, height: int | None = None, font_size: float | None = None
) -> go.Figure:
    """Set a figure's size (pixels) and font size (points) in place and return it; None keeps one."""
    for value, name in ((width, "width"), (height, "height"), (font_size, "font_size")):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
        ):
            raise InputError(f"must be a positive number, got {value!r}.", parameter=name)
    if width is not None:
        figure.update_layout(width=int(width), autosize=False)
    if height is not None:
        figure.update_layout(height=int(height), autosize=False)
    if font_size is not None:
        figure.update_layout(font={"size": font_size})
        figure.update_annotations(font_size=font_size * 1.1)  # the panel titles
    return figure


# ---------------------------------------------------------------------------------------------
# writing


def _size(figure: go.Figure) -> tuple[int, int]:
    layout = figure.layout
    return int(layout.width or DEFAULT_WIDTH), int(layout.height or DEFAULT_HEIGHT)


_OUT = re.compile(r'<pre id="mprobe-out">(.*?)</pre>', re.S)


def _export_with_chromium(figure: go.Figure, image_format: str, *, scale: float) -> bytes:
    """The figure as SVG or PNG bytes, drawn and exported by plotly.js in headless Chromium."""
    from plotly.offline import get_plotlyjs

    from .browser import find_chromium, run_chromium

    if find_chromium() is None:
        raise InputError(
            f"writing {image_format.upper()} needs Chromium (install chromium, or set MPROBE_CHROMIUM); "
            "--format html needs nothing."
        )
    width, height = _size(figure)
    options = {"format": image_format, "width": width, "height": height, "scale": scale}
    script = (
        f"var spec = {figure.to_json()};"
        "Plotly.newPlot('fig', spec.data, spec.layout, {staticPlot: true})"
        f".then(function (gd) {{ return Plotly.toImage(gd, {_json(options)}); }})"
        ".then(function (url) { document.getElementById('mprobe-out').textContent = url; },"
        " function (e) { document.getElementById('mprobe-out').textContent = 'error: ' + e; });"
    )
    with tempfile.TemporaryDirectory(prefix="mprobe-figure-") as folder:
        Path(folder, "plotly.min.js").write_text(get_plotlyjs(), encoding="utf-8")
        page = Path(folder, "figure.html")
        page.write_text(
            "<!DOCTYPE html><html><head><meta charset='utf-8'><script src='plotly.min.js'></script></head>"
            f"<body><div id='fig'></div><pre id=\"mprobe-out\"></pre><script>{script}</script></body></html>",
            encoding="utf-8",
        )
        dom = run_chromium(page, ["--dump-dom"])
    found = _OUT.search(dom)
    url = html.unescape(found.group(1)) if found else ""
    if not url.startswith("data:"):
        raise RuntimeError(
            f"plotly.js could not export the figure as {image_format}: {url[:200] or 'no output'}"
        )
    header, _, payload = url.partition(",")
    return base64.b64decode(payload) if header.endswith(";base64") else urllib.parse.unquote(payload).encode()


def _json(value) -> str:
    import json

    return json.dumps(value)


def _pdf_from_svg(svg: bytes, width: int, height: int) -> bytes:
    """A one-page PDF of exactly the figure's size: Chromium's print of a page holding the SVG."""
    from .browser import run_chromium

    style = f"@page{{size:{width}px {height}px;margin:0}}html,body{{margin:0;padding:0}}svg{{display:block}}"
    with tempfile.TemporaryDirectory(prefix="mprobe-figure-") as folder:
        page = Path(folder, "figure.html")
        head = f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{style}</style></head>"
        page.write_text(f"{head}<body>{svg.decode('utf-8')}</body></html>", encoding="utf-8")
        out = Path(folder, "figure.pdf")
        run_chromium(page, ["--no-pdf-header-footer", "--print-to-pdf-no-header", f"--print-to-pdf={out}"])
        if not out.is_file():
            raise RuntimeError("chromium wrote no PDF")
        return out.read_bytes()


def write_figure(
    figure: go.Figure,
    path: str | os.PathLike,
    *,
    format: str | None = None,
    scale: float = 2.0,
    title: str = "",
    plotlyjs: str = "inline",
) -> Path:
    """Write `figure` to `path` as HTML (an interactive page), SVG, PDF (vector) or PNG (at
    `scale` times the figure's pixel size), atomically; the format is `format`, else the
    path's suffix. Returns the path.

    Example
    -------
    >>> path = write_figure(plot(mp.intrinsic_dimension(acts)), "id.html")
    >>> path.name
    'id.html'
    """
    target = Path(path)
    (chosen,) = check_formats(format or target.suffix or "?")
    if chosen == "html":
        return write_page(target, [figure], title=title or (figure.layout.title.text or "mprobe figure"),
                          plotlyjs=plotlyjs)  # fmt: skip
    if chosen == "pdf":
        content = _pdf_from_svg(_export_with_chromium(figure, "svg", scale=1), *_size(figure))
    else:
        content = _export_with_chromium(figure, chosen, scale=scale)
    with atomic_write(target, "wb") as handle:
        handle.write(content)
    return target


def figure_paths(path: str | os.PathLike, count: int, formats: Sequence[str]) -> list[list[Path]]:
    """Where the figures of a page go: for each of `count` figures, one path per format; an
    HTML page is `path` itself (all figures on it), a static figure `STEM.EXT`, or `STEM.N.EXT`
    (N from 1) when the page has several.

    >>> [[str(p) for p in paths] for paths in figure_paths("out/id.html", 2, ["svg"])]
    [['out/id.1.svg'], ['out/id.2.svg']]
    """
    base = Path(path)
    stem = base.with_suffix("") if base.suffix.lower() in {f".{f}" for f in FORMATS} else base
    static = [f for f in formats if f != "html"]
    return [
        [stem.with_name(f"{stem.name}{'' if count == 1 else f'.{i}'}.{f}") for f in static]
        for i in range(1, count + 1)
    ]


def write_figures(
    figures: Sequence[go.Figure], path: str | os.PathLike, formats: str | Sequence[str], *, scale: float = 2.0
) -> list[Path]:
    """Each figure of a page in each static format of `formats` (`figure_paths` names the files;
    "html" is left to the page writer). Returns the paths written."""
    chosen = check_formats(formats)
    written = []
    for figure, paths in zip(figures, figure_paths(path, len(figures), chosen), strict=True):
        for target in paths:
            written.append(write_figure(figure, target, scale=scale))
    return written
