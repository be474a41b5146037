"""Interactive Plotly layer profiles (one panel per metric, one line per model) and the page
writer every page of the project uses (`write_page`).

Pages open offline. `plotlyjs="inline"` puts plotly.js (about 4.7 MB) in the page itself;
`plotlyjs="directory"` writes one shared `plotly.min.js` beside the page and references it, so
a folder of pages costs the library once. Every page records a script error in the attribute
`data-script-error` of its <html> element (the browser check of the tests reads it). Hover
shows the layer name, its activation shape, the value and the interval when there is one.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import InputError
from ..files import atomic_write
from ..results import Result

PLOTLYJS_MODES = ("inline", "directory")
PLOTLYJS_FILE = "plotly.min.js"

METRIC_AXES = {
    "mapc": "mapc (1 / activation unit)",
    "curvature_sff": "SFF norm (1 / activation unit)",
    "mapc_scaled": "mapc x radius (dimensionless)",
    "curvature_sff_scaled": "SFF x radius (dimensionless)",
    "signal_to_noise": "signal / noise (ratio)",
    "participation_ratio": "participation ratio (dimensions)",
    "nc1": "tr(S_W S_B+) / C (ratio)",
    "nc1_trace_ratio": "tr S_W / tr S_B (ratio)",
    "cdnv": "CDNV (ratio)",
    "etf_distance": "distance to a simplex ETF",
    "n_outliers": "outliers (count)",
    "outlier_variance_share": "share of variance",
    "between_variance_share": "share of variance",
    "outlier_bulk_ratio": "smallest outlier / bulk edge (ratio)",
    "class_means_abs_cos": "mean |cos| (0-1)",
}
"""The y-axis title of each metric, with its unit; `axis_title` covers the families."""


def axis_title(metric: str) -> str:
    """The y-axis title of `metric`: its name and unit (intrinsic dimensions count dimensions,
    NC2 metrics are coefficients of variation or cosines, dimensionless)."""
    if metric in METRIC_AXES:
        return METRIC_AXES[metric]
    if metric.startswith("id_"):
        return f"{metric[3:]} intrinsic dimension (dimensions)"
    if metric.startswith(("nc2_", "nc3_", "nc4_")):
        return f"{metric} (dimensionless)"
    return metric


def model_label(source: Mapping) -> str:
    """A readable name for a result's model in legends: the checkpoint's file stem, with its
    architecture and epoch when the checkpoint records them (e.g. 'cnn-w32 (digits-cnn, epoch 3)');
    a point cloud's file stem otherwise.

    >>> model_label({"model": "/runs/zoo/cnn-w32.pt", "checkpoint": {"arch": "digits-cnn", "epoch": 3}})
    'cnn-w32 (digits-cnn, epoch 3)'
    """
    path = source.get("model") or source.get("points")
    if not path:
        return "points"
    name = Path(str(path)).stem
    checkpoint = source.get("checkpoint") or {}
    extra = [str(checkpoint["arch"])] if checkpoint.get("arch") else []
    if checkpoint.get("epoch") is not None:
        extra.append(f"epoch {checkpoint['epoch']}")
    return f"{name} ({', '.join(extra)})" if extra else name


def spans_decades(values, decades: float = 2.0) -> bool:
    """True when the finite values are all positive and the largest exceeds the smallest by
    more than `decades` powers of ten: a linear axis would squash the small ones."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if len(finite) < 2 or min(finite) <= 0:
        return False
    return math.log10(max(finite) / min(finite)) > decades


def log_ticks(values) -> list[float]:
    """Tick values for a log axis over the finite positive `values` that never crowd: powers of
    ten when at least three fall in the range, else 1-2-5 steps when two do, else 1..9 steps.

    >>> log_ticks([0.3, 4.0])
    [0.5, 1.0, 2.0]
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(v) and v > 0]
    if not finite:
        return []
    low, high = min(finite), max(finite)
    decades = range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
    for mantissas, enough in (((1,), 3), ((1, 2, 5), 2), (tuple(range(1, 10)), 0)):
        steps = [float(f"{m * 10.0**k:.6g}") for k in decades for m in mantissas]
        ticks = [t for t in steps if low <= t <= high]
        if len(ticks) >= max(enough, 1):
            return ticks
    return [float(f"{low:.2g}")]


def log_axis(values) -> dict:
    """Layout of a log axis over `values`: type log and `log_ticks` labelled compactly."""
    ticks = log_ticks(values)
    return (
        {"type": "log", "tickvals": ticks, "ticktext": [f"{t:g}" for t in ticks]}
        if ticks
        else {"type": "log"}
    )


def _same_layers(results: list[Result]) -> bool:
    names = [tuple(layer.name for layer in r.layers) for r in results]
    return all(n == names[0] for n in names)


def layer_profile_figure(
    results: list[Result],
    metrics: list[str],
    *,
    names: list[str] | None = None,
    log_y: bool | list[str] = False,
    title: str = "",
) -> go.Figure:
    """One subplot per metric against the layers; a trace per result.

    The x axis is the layer index labelled with layer names when all results share their
    layers, else the relative depth in [0, 1]. Each y axis is titled with its metric's unit
    (`axis_title`); a metric no layer has a finite value of gets no panel, and the title says
    so. `log_y` is True, False or the metrics to draw on a log scale; any other
    metric whose values span more than two decades (`spans_decades`, e.g. an untrained model
    beside a trained one) is drawn on a log scale too. Legends name models by `model_label`.
    """
    names = names or [model_label(r.source) if r.source else r.command for r in results]
    present = [m for m in metrics if any(m in layer.metrics for r in results for layer in r.layers)]
    metrics = [m for m in present if any(_finite(lr.metrics.get(m)) for r in results for lr in r.layers)]
    empty = [m for m in present if m not in metrics]  # no layer has a number: no empty panel
    if empty:
        title += f" (no layer has a value of {', '.join(empty)}: not drawn)"
    by_index = _same_layers(results)
    fig = make_subplots(
        rows=max(len(metrics), 1), cols=1, shared_xaxes=True, subplot_titles=metrics, vertical_spacing=0.08
    )
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    for row, metric in enumerate(metrics, start=1):
        drawn, intervals = [], []
        for i, (result, name) in enumerate(zip(results, names, strict=True)):
            layers = [layer for layer in result.layers if metric in layer.metrics]
            x = [layer.index if by_index else layer.depth for layer in layers]
            y = [_number(layer.metrics[metric]) for layer in layers]  # None (from JSON) -> NaN
            bounds = [layer.intervals.get(metric, [v, v]) for layer, v in zip(layers, y, strict=True)]
            low = [_number(lo) for lo, _ in bounds]
            high = [_number(hi) for _, hi in bounds]
            drawn += y
            intervals += [*low, *high]
            has_interval = any(metric in layer.intervals for layer in layers)
            hover = [
                f"<b>{html.escape(layer.name)}</b><br>shape {tuple(layer.shape or [layer.ambient_dim])}"
                f"<br>{metric} = {v:.4g}"
                + (f"<br>interval [{lo:.4g}, {hi:.4g}]" if metric in layer.intervals else "")
                for layer, v, lo, hi in zip(layers, y, low, high, strict=True)
            ]
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    showlegend=row == 1,
                    line={"color": palette[i % len(palette)]},
                    hovertext=hover,
                    hoverinfo="text",
                    error_y=(
                        {
                            "type": "data",
                            "symmetric": False,
                            "array": [h - v for h, v in zip(high, y, strict=True)],
                            "arrayminus": [v - lo for v, lo in zip(y, low, strict=True)],
                        }
                        if has_interval
                        else None
                    ),
                ),
                row=row,
                col=1,
            )
        forced = log_y is True or (isinstance(log_y, list) and metric in log_y)
        logarithmic = forced or spans_decades(drawn)
        fig.update_yaxes(
            title_text=axis_title(metric) + (", log scale" if logarithmic else ""),
            **(log_axis([*drawn, *intervals]) if logarithmic else {}),
            row=row,
            col=1,
        )
    if by_index and results:
        ticks = [layer.index for layer in results[0].layers]
        labels = [layer.name for layer in results[0].layers]
        fig.update_xaxes(tickmode="array", tickvals=ticks, ticktext=labels, tickangle=-45)
        fig.update_xaxes(title_text="layer", row=len(metrics), col=1)
    else:
        fig.update_xaxes(title_text="relative depth (0 = first layer, 1 = last)", row=len(metrics), col=1)
    fig.update_layout(
        title=title, height=max(320, 280 * len(metrics)), template="plotly_white", hovermode="closest"
    )
    return fig


def _number(value) -> float:
    return math.nan if value is None else float(value)


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


PAGE_STYLE = "body{font-family:sans-serif;margin:1.5em;} p.notes{color:#444;max-width:60em}"

_ERROR_FLAG = (
    "<script>window.addEventListener('error',function(e){document.documentElement.setAttribute("
    "'data-script-error',String(e.message||e.type||'error'))},true);</script>"
)


def _shared_plotlyjs(page: Path) -> bool:
    """Write plotly.min.js beside `page` unless an identical copy is there; False when the page
    does not go to a regular file (standard output, a device): it then gets plotly.js inline."""
    from plotly.offline import get_plotlyjs

    from ..files import output_kind

    kind, target = output_kind(page)
    if kind != "replace":
        return False
    library = get_plotlyjs()
    shared = target.parent / PLOTLYJS_FILE
    try:
        same = shared.is_file() and shared.read_text(encoding="utf-8") == library
    except (OSError, UnicodeDecodeError):
        same = False
    if not same:
        with atomic_write(shared, "w", encoding="utf-8") as handle:
            handle.write(library)
    return True


def write_page(
    path: str | os.PathLike,
    parts: Sequence[go.Figure | str],
    *,
    title: str,
    notes: str = "",
    style: str = PAGE_STYLE,
    plotlyjs: str = "inline",
) -> Path:
    """Write an HTML page of `parts` (Plotly figures, or HTML fragments put in as they are)
    atomically and return its path.

    `plotlyjs`: "inline" (the page stands alone) or "directory" (one shared plotly.min.js beside
    the page; see the module docstring).
    """
    if plotlyjs not in PLOTLYJS_MODES:
        raise InputError(f"--plotlyjs must be inline or directory, got {plotlyjs!r}.")
    shared = plotlyjs == "directory" and _shared_plotlyjs(Path(path))
    head = f"<script src='{PLOTLYJS_FILE}' charset='utf-8'></script>" if shared else ""
    body, inlined = [], shared
    for part in parts:
        if isinstance(part, str):
            body.append(part)
            continue
        body.append(part.to_html(full_html=False, include_plotlyjs=not inlined, config={"responsive": True}))
        inlined = True
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"{_ERROR_FLAG}<title>{html.escape(title)}</title><style>{style}</style>{head}"
        f"</head><body><h1>{html.escape(title)}</h1>"
        + (f"<p class='notes'>{html.escape(notes)}</p>" if notes else "")
        + "\n".join(body)
        + "</body></html>\n"
    )
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(page)
    return Path(path)
