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


GENERIC_STEMS = ("model", "pytorch_model", "weights")
"""File stems that say nothing of the model (`save_pretrained` writes model.safetensors): the
folder names it instead."""


def model_label(source: Mapping) -> str:
    """A readable name for a result's model in legends: the checkpoint's file stem, with its
    architecture and epoch when the checkpoint records them (e.g. 'cnn-w32 (digits-cnn, epoch 3)');
    a point cloud's file stem otherwise.

    >>> model_label({"model": "/runs/zoo/cnn-w32.pt", "checkpoint": {"arch": "digits-cnn", "epoch": 3}})
    'cnn-w32 (digits-cnn, epoch 3)'
    >>> model_label({"model": "/models/vit-fm/model.safetensors"})
    'vit-fm'
    """
    path = source.get("model") or source.get("points")
    if not path:
        return "points"
    name = Path(str(path)).stem
    if name in GENERIC_STEMS and Path(str(path)).parent.name:  # a Hugging Face folder's weights file
        name = Path(str(path)).parent.name
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
    """Tick values for a log axis over the finite positive `values`, at least three of them and
    never crowded: powers of ten when at least four fall in the range, else 1-2-5 steps when
    three do, else 1..9 steps.

    >>> log_ticks([0.3, 4.0])
    [0.5, 1.0, 2.0]
    >>> log_ticks([2.0, 300.0])
    [2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0]
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(v) and v > 0]
    if not finite:
        return []
    low, high = min(finite), max(finite)
    decades = range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
    for mantissas, enough in (((1,), 4), ((1, 2, 5), 3), (tuple(range(1, 10)), 3)):
        steps = [float(f"{m * 10.0**k:.6g}") for k in decades for m in mantissas]
        ticks = [t for t in steps if low <= t <= high]
        if len(ticks) >= enough:
            return ticks
    if high == low:
        return [float(f"{low:.3g}")]
    # a range narrower than the 1..9 steps: evenly spaced round values (1, 2 or 5 times a power of ten)
    raw = (high - low) / 4
    step = min(m * 10.0 ** math.floor(math.log10(raw)) for m in (1, 2, 5, 10)
               if m * 10.0 ** math.floor(math.log10(raw)) >= raw)  # fmt: skip
    first = math.ceil(low / step)
    return [float(f"{k * step:.6g}") for k in range(first, math.floor(high / step) + 1)]


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


X_MODES = ("auto", "depth", "name")
"""What a layer profile's x axis shows: `depth` (relative, 0 first layer, 1 last), `name` (the
layer names in network order) or `auto` (names when every result has the same layers, else depth)."""

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def _layer_order(results: list[Result]) -> list[str]:
    """Every result's layer names merged in network order: a name the order lacks goes just
    before the next of its result's names that the order has (at the end when none follows).

    >>> a = Result("id", {}, {}, layers=[{"name": n, "index": i, "depth": 0, "ambient_dim": 1, "n_points": 1}
    ...                                  for i, n in enumerate(["block1", "pool", "logits"])])
    >>> b = Result("id", {}, {}, layers=[{"name": n, "index": i, "depth": 0, "ambient_dim": 1, "n_points": 1}
    ...                                  for i, n in enumerate(["stem", "pool", "head", "logits"])])
    >>> _layer_order([a, b])
    ['block1', 'stem', 'pool', 'head', 'logits']
    """
    order: list[str] = []
    for result in results:
        pending: list[str] = []
        for layer in result.layers:
            if layer.name in order:
                at = order.index(layer.name)
                order[at:at] = pending
                pending = []
            elif layer.name not in pending:
                pending.append(layer.name)
        order += pending
    return order


def _status_text(layer) -> str:
    return f"{layer.status}" + (f": {html.escape(layer.reason)}" if layer.reason else "")


def layer_profile_figure(
    results: list[Result],
    metrics: list[str],
    *,
    names: list[str] | None = None,
    log_y: bool | list[str] = False,
    title: str = "",
    x: str = "auto",
) -> go.Figure:
    """One subplot per metric against the layers; a trace per result.

    `x` (`X_MODES`): the layer names (every panel labelled, in network order) or the relative
    depth in [0, 1]; `auto` takes names when all results share their layers. Each y axis is
    titled with its metric's unit (`axis_title`); a metric no layer has a finite value of gets
    no panel, and the title says so. `log_y` is True, False or the metrics to draw on a log
    scale; any other metric whose values span more than two decades (`spans_decades`, e.g. an
    untrained model beside a trained one) is drawn on a log scale too, with `log_ticks`.
    Legends name models by `model_label`.

    Only readings (`LayerResult.measured`) are joined by the line. A value of a layer without a
    reading (`cannot_tell`, `uncertain_dimension`, ...) is a hollow marker off the line; a
    layer with no value because it was not measured (`skipped`, `no_manifold_scale`,
    `not_measurable`) is an x on the panel's floor; the hover gives the status and reason.
    """
    names = names or [model_label(r.source) if r.source else r.command for r in results]
    present = [m for m in metrics if any(m in layer.metrics for r in results for layer in r.layers)]
    metrics = [m for m in present if any(_finite(lr.metrics.get(m)) for r in results for lr in r.layers)]
    empty = [m for m in present if m not in metrics]  # no layer has a number: no empty panel
    if empty:
        title += f" (no layer has a value of {', '.join(empty)}: not drawn)"
    by_name = x == "name" or (x == "auto" and _same_layers(results))
    order = _layer_order(results) if by_name else []
    longest = max((len(name) for name in order), default=0)
    rows = max(len(metrics), 1)
    labels = 6 * min(longest, 40) if by_name else 0  # room for the slanted layer names under each panel
    height = max(340, (300 + labels) * rows)
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, subplot_titles=metrics,
                        vertical_spacing=min(0.3 / rows, (60 + labels) / height))  # fmt: skip
    legend: set[str] = set()  # each entry once, on the first panel where it has points
    for row, metric in enumerate(metrics, start=1):
        drawn, intervals, floors = [], [], []
        for i, (result, name) in enumerate(zip(results, names, strict=True)):
            colour = PALETTE[i % len(PALETTE)]
            with_value = [layer for layer in result.layers if _finite(layer.metrics.get(metric))]
            measured = [layer for layer in with_value if layer.measured]
            unvouched = [layer for layer in with_value if not layer.measured]
            without = [layer for layer in result.layers if not layer.measured and layer not in with_value]

            def where(layers):
                return [layer.name if by_name else layer.depth for layer in layers]

            y = [float(layer.metrics[metric]) for layer in measured]
            bounds = [layer.intervals.get(metric, [v, v]) for layer, v in zip(measured, y, strict=True)]
            low = [_number(lo) for lo, _ in bounds]
            high = [_number(hi) for _, hi in bounds]
            drawn += y + [float(layer.metrics[metric]) for layer in unvouched]
            intervals += [*low, *high]
            has_interval = any(metric in layer.intervals for layer in measured)
            hover = [
                f"<b>{html.escape(layer.name)}</b><br>shape {tuple(layer.shape or [layer.ambient_dim])}"
                f"<br>{metric} = {v:.4g}"
                + (f"<br>interval [{lo:.4g}, {hi:.4g}]" if metric in layer.intervals else "")
                for layer, v, lo, hi in zip(measured, y, low, high, strict=True)
            ]
            fig.add_trace(
                go.Scatter(
                    x=where(measured), y=y, mode="lines+markers", name=name, legendgroup=name,
                    showlegend=_first(legend, name, measured), line={"color": colour},
                    marker={"color": colour},
                    hovertext=hover, hoverinfo="text",
                    error_y=(
                        {"type": "data", "symmetric": False,
                         "array": [h - v for h, v in zip(high, y, strict=True)],
                         "arrayminus": [v - lo for v, lo in zip(y, low, strict=True)]}
                        if has_interval else None
                    ),
                ),
                row=row, col=1,
            )  # fmt: skip
            if unvouched:
                fig.add_trace(
                    go.Scatter(
                        x=where(unvouched), y=[float(layer.metrics[metric]) for layer in unvouched],
                        mode="markers", name=f"{name}: value not vouched for", legendgroup=name,
                        showlegend=_first(legend, f"{name}: value not vouched for", unvouched),
                        marker={"color": colour, "symbol": "circle-open", "size": 10, "line": {"width": 2}},
                        hovertext=[f"<b>{html.escape(layer.name)}</b><br>{metric} = "
                                   f"{float(layer.metrics[metric]):.4g}<br>{_status_text(layer)}"
                                   for layer in unvouched],
                        hoverinfo="text",
                    ),
                    row=row, col=1,
                )  # fmt: skip
            if without:
                floors.append((name, colour, without))
        forced = log_y is True or (isinstance(log_y, list) and metric in log_y)
        logarithmic = forced or spans_decades(drawn)
        finite = [v for v in [*drawn, *intervals] if _finite(v) and (v > 0 or not logarithmic)]
        floor = min(finite) if finite else 0.0
        for name, colour, layers in floors:
            fig.add_trace(
                go.Scatter(
                    x=[layer.name if by_name else layer.depth for layer in layers], y=[floor] * len(layers),
                    mode="markers", name="not measured (no value)", legendgroup="not measured",
                    showlegend=_first(legend, "not measured (no value)", layers),
                    marker={"color": colour, "symbol": "x-thin-open", "size": 11, "line": {"width": 2}},
                    hovertext=[f"<b>{html.escape(layer.name)}</b> ({html.escape(name)})<br>no {metric}: "
                               f"{_status_text(layer)}" for layer in layers],
                    hoverinfo="text",
                ),
                row=row, col=1,
            )  # fmt: skip
        fig.update_yaxes(
            title_text=axis_title(metric) + (", log scale" if logarithmic else ""),
            **(log_axis([*drawn, *intervals]) if logarithmic else {}),
            row=row,
            col=1,
        )
    if by_name:
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=order, tickangle=-45,
                         showticklabels=True, automargin=True)  # fmt: skip
        fig.update_xaxes(title_text="layer", row=len(metrics), col=1)
    else:
        fig.update_xaxes(showticklabels=True, range=[-0.03, 1.03])
        fig.update_xaxes(title_text="relative depth (0 = first layer, 1 = last)", row=len(metrics), col=1)
    fig.update_layout(title=title, height=height, template="plotly_white", hovermode="closest")
    return fig


def _first(shown: set[str], entry: str, points: list) -> bool:
    """Whether a trace named `entry` with these `points` is the first to show that legend entry."""
    if not points or entry in shown:
        return False
    shown.add(entry)
    return True


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
