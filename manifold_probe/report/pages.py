"""The pages of results: the figures of each measure, and `write_result_page`, which
`Result.to_html` and every command's `--html` use.

Pages are self-contained (plotly.js inlined once; see `profile_page.write_page`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..measures.collapse import CLASSIFIER_METRICS, COLLAPSE_METRICS, SPECTRA_METRICS
from ..measures.cutting_planes import CAVEATS, HIT_DEFINITION, success_curve_points
from ..results import Result
from .profile_page import layer_profile_figure, write_page
from .tables import classifier_layer, format_value, target_name


def collapse_notes(result: Result) -> str:
    """One line under the title of a collapse or spectra page: the source, the classes, the classifier."""
    summary = result.summary
    parts = [f"source: {result.source.get('model') or result.source.get('points')}"]
    if result.source.get("split"):
        parts.append(f"split {result.source['split']}, {result.source.get('n_points')} samples")
    parts.append(f"{summary.get('n_classes')} classes")
    classifier = summary.get("classifier")
    if classifier:
        parts.append(f"classifier {classifier['module']} on layer {classifier['layer']}")
    return "; ".join(parts) + "."


def _classifier_table_figure(result: Result) -> go.Figure | None:
    layer = classifier_layer(result)
    if layer is None:
        return None
    shown = [m for m in (*COLLAPSE_METRICS, *CLASSIFIER_METRICS) if m in layer.metrics]
    fig = go.Figure(
        go.Table(
            header={"values": ["metric", "value"]},
            cells={"values": [shown, [format_value(layer.metrics[m]) for m in shown]]},
        )
    )
    fig.update_layout(title=f"the classifier's layer: {layer.name}", height=60 + 28 * len(shown))
    return fig


EPOCH_METRICS = (
    "nc1",
    "etf_distance",
    "nc2_equinorm_means",
    "nc2_equinorm_weights",
    "nc2_equiangular_means",
    "nc2_equiangular_weights",
    "nc2_max_angle_means",
    "nc2_max_angle_weights",
    "nc3_self_duality",
    "nc4_ncc_mismatch",
)


def _positive(values):
    return [v if v is not None and np.isfinite(v) and v > 0 else None for v in values]


def epoch_figure(checkpoints: list[dict]) -> go.Figure:
    """Metric versus epoch: accuracy, NC1 and ETF distance of every layer (one line each), then
    the classifier layer's NC2-NC4 (Papyan et al.'s figures 2-7)."""
    x = [e["epoch"] if e["epoch"] is not None else i for i, e in enumerate(checkpoints)]
    metrics = [m for m in EPOCH_METRICS[2:] if any(m in e["metrics"] for e in checkpoints)]
    titles = ["accuracy", "nc1 by layer (log)", "etf_distance by layer", *metrics]
    fig = make_subplots(
        rows=len(titles), cols=1, shared_xaxes=True, subplot_titles=titles, vertical_spacing=0.03
    )
    for key, colour in (("train_accuracy", "#1f77b4"), ("test_accuracy", "#d62728")):
        values = [e.get(key) for e in checkpoints]
        if any(v is not None for v in values):
            fig.add_trace(
                go.Scatter(x=x, y=values, name=key, mode="lines+markers", line={"color": colour}), 1, 1
            )
    layer_names = list(dict.fromkeys(name for e in checkpoints for name in e["layers"]))
    palette = ["#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#d62728"]
    for i, name in enumerate(layer_names):
        colour = palette[i % len(palette)]
        for row, metric in ((2, "nc1"), (3, "etf_distance")):
            values = [e["layers"].get(name, {}).get(metric) for e in checkpoints]
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=_positive(values) if metric == "nc1" else values,
                    name=name,
                    legendgroup=name,
                    showlegend=row == 2,
                    mode="lines+markers",
                    line={"color": colour},
                ),
                row,
                1,
            )
    fig.update_yaxes(type="log", row=2, col=1)
    for row, metric in enumerate(metrics, start=4):
        values = [e["metrics"].get(metric) for e in checkpoints]
        fig.add_trace(
            go.Scatter(
                x=x, y=values, name=metric, showlegend=False, mode="lines+markers", line={"color": "#333"}
            ),
            row,
            1,
        )
    fig.update_xaxes(title_text="epoch", row=len(titles), col=1)
    fig.update_layout(
        title="Neural collapse over training", height=230 * len(titles), template="plotly_white"
    )
    return fig


def collapse_figures(result: Result) -> list[go.Figure]:
    """Metric versus layer, the classifier's metrics, and metric versus epoch (several checkpoints)."""
    figures = [
        layer_profile_figure(
            [result], list(COLLAPSE_METRICS), log_y=["nc1", "nc1_trace_ratio", "cdnv"],
            title="Neural collapse by layer",
        )
    ]  # fmt: skip
    table = _classifier_table_figure(result)
    if table is not None:
        figures.append(table)
    checkpoints = result.summary.get("checkpoints") or []
    if len(checkpoints) > 1:
        figures.append(epoch_figure(checkpoints))
    return figures


def _eigen_trace(values, name, colour, *, offset=0, mode="markers", showlegend=True, group=None):
    values = np.asarray(values, dtype=float)
    keep = values > 0  # a log axis has no room for zero (or rounding-negative) eigenvalues
    index = np.arange(1, len(values) + 1) + offset
    return go.Scatter(
        x=index[keep],
        y=values[keep],
        name=name,
        mode=mode,
        marker={"color": colour, "size": 6},
        line={"color": colour},
        legendgroup=group or name,
        showlegend=showlegend,
    )


def spectra_figure(result: Result) -> go.Figure:
    """One log-scale panel per layer: the covariance eigenvalues, the class-mean outliers above
    the within-class bulk edge in red, the between- and within-class spectra, the bulk edge."""
    layers = [layer for layer in result.layers if "spectra" in layer.details]
    titles = [f"{layer.name}: {int(layer.metrics.get('n_outliers', 0))} outliers" for layer in layers]
    fig = make_subplots(rows=max(len(layers), 1), cols=1, subplot_titles=titles, vertical_spacing=0.04)
    for row, layer in enumerate(layers, start=1):
        spectra = layer.details["spectra"]
        total = np.asarray(spectra["total"], dtype=float)
        n_out = int(layer.metrics.get("n_outliers", 0))
        first = row == 1
        fig.add_trace(_eigen_trace(spectra["within"], "within-class (bulk)", "#aaaaaa", mode="lines",
                                   showlegend=first), row, 1)  # fmt: skip
        fig.add_trace(_eigen_trace(spectra["between"], "between-class (class means)", "#2ca02c",
                                   showlegend=first), row, 1)  # fmt: skip
        fig.add_trace(_eigen_trace(total[n_out:], "covariance: bulk", "#1f77b4", offset=n_out,
                                   showlegend=first), row, 1)  # fmt: skip
        fig.add_trace(
            _eigen_trace(total[:n_out], "covariance: outliers", "#d62728", showlegend=first), row, 1
        )
        if spectra["bulk_edge"] > 0:
            fig.add_hline(y=spectra["bulk_edge"], line_dash="dash", line_color="#888", row=row, col=1)
        fig.update_yaxes(type="log", row=row, col=1)
    fig.update_xaxes(title_text="eigenvalue index", row=max(len(layers), 1), col=1)
    fig.update_layout(
        title="Covariance spectra (log scale; dashed: the within-class bulk edge)",
        height=max(360, 300 * len(layers)),
        template="plotly_white",
    )
    return fig


def fisher_figure(layer) -> go.Figure:
    """The Fisher block's eigenvalues (log scale) with its class-mean outliers (G1, C of them),
    the cross-class mini-bulk (G2), the same-class part (G0) and the within-class bulk edge."""
    fisher = layer.details["fisher"]
    fig = go.Figure()
    fig.add_trace(_eigen_trace(fisher["total"], "G (whole block)", "#1f77b4", mode="lines+markers"))
    fig.add_trace(_eigen_trace(fisher["class_means"], "G1 class means (outliers)", "#d62728"))
    fig.add_trace(_eigen_trace(fisher["cross_class"], "G2 cross-class (mini-bulk)", "#ff7f0e"))
    fig.add_trace(_eigen_trace(fisher["same_class"], "G0 same class", "#9467bd"))
    fig.add_trace(_eigen_trace(fisher["within_class"], "within-class (top)", "#7f7f7f"))
    if fisher["bulk_edge"] > 0:
        fig.add_hline(y=fisher["bulk_edge"], line_dash="dash", line_color="#888")
    fig.update_yaxes(type="log", title_text="eigenvalue")
    fig.update_xaxes(title_text="index")
    fig.update_layout(
        title=f"Fisher block of the classifier on {layer.name} ({fisher['n_points']} samples; "
        "dashed: the within-class bulk edge)",
        height=480,
        template="plotly_white",
    )
    return fig


def success_figure(result: Result) -> go.Figure:
    """One panel per target: hit fraction against d (log axis), the fitted sigmoid, d* and its interval."""
    entries = result.classes
    cols = min(len(entries), 5)
    rows = math.ceil(len(entries) / cols)
    titles = []
    for entry in entries:
        dim = entry["manifold_dim"]
        text = f"class {target_name(entry)}: " + (
            f"D - d* = {dim:.1f}" if dim is not None else entry["critical_dim_status"]
        )
        titles.append(text)
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=titles, shared_yaxes=True,
        horizontal_spacing=0.04, vertical_spacing=min(0.15, 0.6 / rows),
    )  # fmt: skip
    colours = {"hits": "#1f77b4", "fit": "#d62728", "prob": "#7f7f7f", "star": "#2ca02c"}
    for i, entry in enumerate(entries):
        row, col = i // cols + 1, i % cols + 1
        first = i == 0
        dims = [record["dim"] for record in entry["success"]]
        fractions = [record["hit_fraction"] for record in entry["success"]]
        hover = [
            f"d = {r['dim']}<br>{r['hits']} of {r['planes']} planes hit"
            f"<br>mean max p = {r['mean_max_prob']:.3f}"
            for r in entry["success"]
        ]
        fig.add_trace(
            go.Scatter(
                x=dims, y=fractions, mode="markers", name="hit fraction", legendgroup="hits",
                showlegend=first, marker={"color": colours["hits"], "size": 8},
                hovertext=hover, hoverinfo="text",
            ),
            row=row, col=col,
        )  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=dims, y=[r["mean_max_prob"] for r in entry["success"]], mode="lines",
                name="mean max target probability", legendgroup="prob", showlegend=first,
                line={"color": colours["prob"], "dash": "dot", "width": 1},
            ),
            row=row, col=col,
        )  # fmt: skip
        grid, curve = success_curve_points(entry)
        if grid:
            fig.add_trace(
                go.Scatter(
                    x=grid, y=curve, mode="lines", name="fitted sigmoid in ln d", legendgroup="fit",
                    showlegend=first, line={"color": colours["fit"]}, hoverinfo="skip",
                ),
                row=row, col=col,
            )  # fmt: skip
        low, high = entry["critical_dim_interval"]
        if low is not None and high is not None:
            fig.add_trace(
                go.Scatter(
                    x=[low, high, high, low, low], y=[0, 0, 1, 1, 0], mode="lines", fill="toself",
                    fillcolor="rgba(44,160,44,0.15)", line={"width": 0}, name="95 % interval of d*",
                    legendgroup="interval", showlegend=first, hoverinfo="skip",
                ),
                row=row, col=col,
            )  # fmt: skip
        star = entry["critical_dim"]
        if star is not None:
            fig.add_trace(
                go.Scatter(
                    x=[star, star], y=[0, 1], mode="lines", name="d* (fit crosses 0.5)",
                    legendgroup="star", showlegend=first,
                    line={"color": colours["star"], "dash": "dash"},
                    hovertext=f"d* = {star:.2f}, D - d* = {entry['manifold_dim']:.2f}", hoverinfo="text",
                ),
                row=row, col=col,
            )  # fmt: skip
    fig.update_xaxes(type="log", title_text="cutting dimension d")
    fig.update_yaxes(range=[-0.05, 1.05])
    fig.update_yaxes(title_text="fraction of planes that hit", col=1)
    fig.update_layout(
        title=f"Success curves (D = {result.summary['input_dim']}, {result.params['planes']} planes per d)",
        height=max(380, 330 * rows), template="plotly_white", hovermode="closest",
    )  # fmt: skip
    return fig


def dimension_figure(result: Result) -> go.Figure:
    """Class-manifold dimension D - d* per target with its interval (targets that crossed)."""
    entries = [e for e in result.classes if e["manifold_dim"] is not None]
    values = [e["manifold_dim"] for e in entries]
    lows = [e["manifold_dim_interval"][0] for e in entries]
    highs = [e["manifold_dim_interval"][1] for e in entries]
    fig = go.Figure(
        go.Bar(
            x=[target_name(e) for e in entries],
            y=values,
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [0 if h is None else h - v for h, v in zip(highs, values, strict=True)],
                "arrayminus": [0 if lo is None else v - lo for lo, v in zip(lows, values, strict=True)],
            },
            marker={"color": "#1f77b4"},
        )
    )
    fig.update_layout(
        title=f"Class-manifold dimension D - d* (D = {result.summary['input_dim']})",
        xaxis_title="class", yaxis_title="D - d*", template="plotly_white", height=360,
        xaxis={"type": "category"},
    )  # fmt: skip
    return fig




CURVATURE_FIGURE_METRICS = ["mapc", "curvature_sff", "mapc_scaled", "curvature_sff_scaled", "id_twonn"]


def spectra_figures(result: Result) -> list[go.Figure]:
    """Metric versus layer, every layer's covariance spectra, and the classifier's Fisher block."""
    figures = [
        layer_profile_figure([result], list(SPECTRA_METRICS), log_y=["outlier_bulk_ratio"],
                             title="Spectra metrics by layer"),
        spectra_figure(result),
    ]  # fmt: skip
    layer = classifier_layer(result)
    if layer is not None and "fisher" in layer.details:
        figures.append(fisher_figure(layer))
    return figures


def result_figures(
    results: Sequence[Result], *, names: Sequence[str] | None = None, log_scale: bool = False
) -> tuple[list[go.Figure], str, str]:
    """(figures, title, notes) of the page of one result, or of several results of the same
    command drawn together (curvature or intrinsic dimension of several models: `names`
    label their lines)."""
    result = results[0]
    command = result.command
    names = list(names) if names is not None else None
    if command == "id":
        metrics = list(dict.fromkeys(k for r in results for layer in r.layers for k in layer.metrics))
        title = "Intrinsic dimension by layer"
        figure = layer_profile_figure(list(results), metrics, names=names, title=title)
        return [figure], "mprobe id", f"source: {result.source}"
    if command == "curvature":
        scaled = CURVATURE_FIGURE_METRICS[:4] if log_scale else False
        figure = layer_profile_figure(list(results), CURVATURE_FIGURE_METRICS, names=names, log_y=scaled,
                                      title="Curvature by layer")  # fmt: skip
        return [figure], "mprobe curvature", result.summary.get("curvature_gap_definition", "")
    if command == "collapse":
        return collapse_figures(result), "mprobe collapse", collapse_notes(result)
    if command == "spectra":
        return spectra_figures(result), "mprobe spectra", collapse_notes(result)
    if command == "cutting-planes":
        notes = (
            f"{HIT_DEFINITION}. Caveats: {CAVEATS}. "
            f"Models: {result.source['model']}; data: {result.source['data']} ({result.source['split']})."
        )
        if "ensemble_limitation" in result.summary:
            notes += f" Ensemble: {result.summary['ensemble_limitation']}."
        return [success_figure(result), dimension_figure(result)], "mprobe cutting-planes", notes
    raise ValueError(f"no page for results of {command!r}")


def write_result_page(
    path: str | os.PathLike,
    results: Sequence[Result],
    *,
    names: Sequence[str] | None = None,
    log_scale: bool = False,
) -> None:
    """Write the self-contained page of `results` (see `result_figures`) atomically."""
    figures, title, notes = result_figures(results, names=names, log_scale=log_scale)
    write_page(path, figures, title=title, notes=notes)
