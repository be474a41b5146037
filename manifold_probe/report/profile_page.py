"""Interactive Plotly layer profiles: one panel per metric, one line per result (model).

Pages are self-contained: plotly.js is inlined once, so they open offline. Hover shows
the layer name, its activation shape, the value and the interval when there is one.
"""

from __future__ import annotations

import html
import os

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..files import atomic_write
from ..results import Result


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
    layers, else the relative depth in [0, 1]. `log_y` is True, False or the metrics to
    draw on a log scale.
    """
    names = names or [r.source.get("model") or r.source.get("points") or r.command for r in results]
    metrics = [m for m in metrics if any(m in layer.metrics for r in results for layer in r.layers)]
    by_index = _same_layers(results)
    fig = make_subplots(
        rows=max(len(metrics), 1), cols=1, shared_xaxes=True, subplot_titles=metrics, vertical_spacing=0.08
    )
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    for row, metric in enumerate(metrics, start=1):
        for i, (result, name) in enumerate(zip(results, names, strict=True)):
            layers = [layer for layer in result.layers if metric in layer.metrics]
            x = [layer.index if by_index else layer.depth for layer in layers]
            y = [layer.metrics[metric] for layer in layers]
            low = [layer.intervals.get(metric, [v, v])[0] for layer, v in zip(layers, y, strict=True)]
            high = [layer.intervals.get(metric, [v, v])[1] for layer, v in zip(layers, y, strict=True)]
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
        if log_y is True or (isinstance(log_y, list) and metric in log_y):
            fig.update_yaxes(type="log", row=row, col=1)
    if by_index and results:
        ticks = [layer.index for layer in results[0].layers]
        labels = [layer.name for layer in results[0].layers]
        fig.update_xaxes(tickmode="array", tickvals=ticks, ticktext=labels, tickangle=-45)
    else:
        fig.update_xaxes(title_text="relative depth", row=len(metrics), col=1)
    fig.update_layout(
        title=title, height=max(320, 280 * len(metrics)), template="plotly_white", hovermode="closest"
    )
    return fig


def write_page(path: str | os.PathLike, figures: list[go.Figure], *, title: str, notes: str = "") -> None:
    """A self-contained HTML page of `figures` (plotly.js inlined once), written atomically."""
    parts = []
    for i, fig in enumerate(figures):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0), config={"responsive": True}))
    body = "\n".join(parts)
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:1.5em;} p.notes{color:#444;max-width:60em}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>"
        + (f"<p class='notes'>{html.escape(notes)}</p>" if notes else "")
        + body
        + "</body></html>\n"
    )
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(page)
