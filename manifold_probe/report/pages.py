"""The pages of results: the figures of each measure (the builders its registry entry names,
or the generic per-layer profile `measure_figures`), and `write_result_page`, which
`Result.to_html` and every command's `--html` use (through `registry.write_page`).

Pages open offline (plotly.js inlined once, or shared beside the page: see
`profile_page.write_page`). Axes carry their units, legends the models' names, tables and
panels the data set's class names (`source.class_names`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import registry
from ..geometry.spectra import rounding_level
from ..measures.cutting_planes import CAVEATS, HIT_DEFINITION, success_curve_points
from ..metric_names import (
    CLASSIFIER_METRICS,
    COLLAPSE_METRICS,
    CURVATURE_TABLE_METRICS,
    FAMILY_METRICS,
    SPECTRA_METRICS,
)
from ..results import Result
from .profile_page import axis_title, layer_profile_figure, log_axis, model_label
from .tables import classifier_layer, format_value, target_name

UNSPLIT_DATA = ("npz:", "arrays:", "dict")
"""Data specs with no train/test split of their own: a page names no split for them."""


def source_notes(result: Result) -> str:
    """The source of a result in words: model (or points), data, split and sample count, reduction.

    >>> source_notes(Result("id", {"model": "runs/a.pt", "data": "digits", "split": "train",
    ...                           "n_points": 1346}, {}))
    'model a; data digits, train split, 1346 samples'
    >>> source_notes(Result("id", {"model": "vit/model.safetensors", "data": "npz:x.npz", "split": "train",
    ...                           "n_points": 60}, {}))
    'model vit; data npz:x.npz, 60 samples'
    """
    source = result.source
    parts = [f"model {model_label(source)}" if source.get("model") else f"points {model_label(source)}"]
    if source.get("data"):
        where = f"data {source['data']}"
        if source.get("split") and not str(source["data"]).startswith(UNSPLIT_DATA):
            where += f", {source['split']} split"
        if source.get("n_points"):
            where += f", {source['n_points']} samples"
        parts.append(where)
    if source.get("reduction") not in (None, "none"):
        parts.append(f"reduction {source['reduction']}")
    return "; ".join(parts)


def collapse_notes(result: Result) -> str:
    """One line under the title of a collapse or spectra page: the source, the classes, the classifier."""
    summary = result.summary
    parts = [source_notes(result)]
    names = result.source.get("class_names")
    count = f"{summary.get('n_classes')} classes"
    parts.append(f"{count} ({', '.join(map(str, names))})" if names else count)
    classifier = summary.get("classifier")
    if classifier:
        parts.append(f"classifier {classifier['module']} on layer {classifier['layer'] or '(the input)'}")
    return "; ".join(parts) + "."


def curvature_notes(result: Result) -> str:
    """The neighbourhood kind and its parameters, then the source: the subtitle of a curvature page."""
    params = result.params
    if params.get("neighbourhood") == "perturb":
        copies = params.get("n_copies", "all")
        kind = (
            f"perturb neighbourhoods (each image's own copies: top {params.get('n_top')} singular values "
            f"per channel, the smallest {params.get('n_toggle')} switched on and off, {copies} copies)"
        )
    else:
        ks = sorted({layer.details["k"] for layer in result.layers if layer.details.get("k")})
        k_text = (
            f"K = {params['k']}"
            if params.get("k")
            else ("K = " + ", ".join(map(str, ks)) + " by layer" if ks else "K by layer")
        )
        kind = f"knn neighbourhoods ({k_text})"
    dims = sorted({layer.details["dim"] for layer in result.layers if layer.details.get("dim")})
    if params.get("dim") == "twonn":
        dim_text = "d = " + ", ".join(map(str, dims)) + " (each layer's TwoNN rounded: the paper's protocol)"
    elif params.get("dim"):
        dim_text = f"d = {params['dim']}"
    else:
        window = "d = " + ", ".join(map(str, dims)) + " (each layer's manifold scale window)"
        dim_text = window if dims else "d by layer"
    gap = result.summary.get("curvature_gap_definition", "")
    return f"{kind}, tangent dimension {dim_text}; {source_notes(result)}." + (f" {gap}" if gap else "")


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
    fig.update_layout(title=f"the classifier's layer: {layer.name}", height=160 + 30 * len(shown))
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


def _epoch_axis(fig: go.Figure, epochs: list, row: int) -> None:
    """Whole epochs on the x axis (no 0.5 steps): a tick per epoch up to 20 of them."""
    span = max(epochs) - min(epochs) if epochs else 0
    fig.update_xaxes(tickformat="d", dtick=1 if span <= 20 else None, title_text="epoch", row=row, col=1)


def epoch_figure(checkpoints: list[dict]) -> go.Figure:
    """Metric versus epoch: accuracy (when the checkpoints record it), NC1 and ETF distance of
    every layer (one line each), then the classifier layer's NC2-NC4 (Papyan et al.'s figures 2-7)."""
    x = [e["epoch"] if e["epoch"] is not None else i for i, e in enumerate(checkpoints)]
    metrics = [m for m in EPOCH_METRICS[2:] if any(m in e["metrics"] for e in checkpoints)]
    accuracies = [
        (key, colour, [e.get(key) for e in checkpoints])
        for key, colour in (("train_accuracy", "#1f77b4"), ("test_accuracy", "#d62728"))
        if any(e.get(key) is not None for e in checkpoints)
    ]
    titles = (["accuracy"] if accuracies else []) + ["nc1 by layer (log)", "etf_distance by layer", *metrics]
    height = 230 * len(titles)
    fig = make_subplots(
        rows=len(titles), cols=1, shared_xaxes=True, subplot_titles=titles,
        vertical_spacing=min(0.1, 70 / height),
    )  # fmt: skip
    for key, colour, values in accuracies:
        fig.add_trace(go.Scatter(x=x, y=values, name=key, mode="lines+markers", line={"color": colour}), 1, 1)
    if accuracies:
        fig.update_yaxes(title_text="accuracy (fraction)", range=[0, 1.02], row=1, col=1)
    first = 2 if accuracies else 1
    layer_names = list(dict.fromkeys(name for e in checkpoints for name in e["layers"]))
    palette = ["#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#d62728"]
    for i, name in enumerate(layer_names):
        colour = palette[i % len(palette)]
        for row, metric in ((first, "nc1"), (first + 1, "etf_distance")):
            values = [e["layers"].get(name, {}).get(metric) for e in checkpoints]
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=_positive(values) if metric == "nc1" else values,
                    name=name,
                    legendgroup=name,
                    showlegend=row == first,
                    mode="lines+markers",
                    line={"color": colour},
                ),
                row,
                1,
            )
    nc1_values = [v for e in checkpoints for layer in e["layers"].values() for v in [layer.get("nc1")]]
    fig.update_yaxes(**log_axis(nc1_values), title_text=axis_title("nc1"), row=first, col=1)
    fig.update_yaxes(title_text=axis_title("etf_distance"), row=first + 1, col=1)
    for row, metric in enumerate(metrics, start=first + 2):
        values = [e["metrics"].get(metric) for e in checkpoints]
        fig.add_trace(
            go.Scatter(
                x=x, y=values, name=metric, showlegend=False, mode="lines+markers", line={"color": "#333"}
            ),
            row,
            1,
        )
        fig.update_yaxes(title_text=axis_title(metric), row=row, col=1)
    _epoch_axis(fig, x, len(titles))
    fig.update_layout(title="Neural collapse over training", height=height, template="plotly_white")
    return fig


def collapse_figures(results: Sequence[Result], *, names=None, log_scale: bool = False):
    """(figures, title, notes): metric versus layer, the classifier's metrics, and metric versus
    epoch (several checkpoints)."""
    result = results[0]
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
    return figures, "mprobe collapse", collapse_notes(result)


def numerical_zero(values, size: int | None = None) -> float:
    """The level at or below which eigenvalues are rounding noise: `rounding_level` of the
    largest |value| for a matrix of `size` (default: the number of values given)."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0
    return rounding_level(float(np.max(np.abs(finite))), size or finite.size)


def _eigen_trace(values, name, colour, *, floor=0.0, offset=0, mode="markers", showlegend=True, group=None):
    values = np.asarray(values, dtype=float)
    keep = values > floor  # a log axis has no room for zero or rounding-level eigenvalues
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


def _dropped(floor: float, *spectra) -> int:
    return int(sum(np.sum(np.asarray(s, dtype=float) <= floor) for s in spectra))


def spectra_figure(result: Result) -> go.Figure:
    """One log-scale panel per layer: the covariance eigenvalues, the class-mean outliers above
    the within-class bulk edge in red, the between- and within-class spectra, the bulk edge.
    Eigenvalues at or below numerical zero (`numerical_zero` of the layer's covariance) are
    left out, and each panel's title counts them."""
    layers = [layer for layer in result.layers if "spectra" in layer.details]
    floors = [numerical_zero(layer.details["spectra"]["total"], layer.ambient_dim) for layer in layers]
    titles = []
    for layer, floor in zip(layers, floors, strict=True):
        spectra = layer.details["spectra"]
        dropped = _dropped(floor, spectra["total"], spectra["within"], spectra["between"])
        titles.append(
            f"{layer.name}: {int(layer.metrics.get('n_outliers', 0))} outliers"
            + (f" ({dropped} eigenvalues below numerical zero {floor:.1e} not drawn)" if dropped else "")
        )
    height = max(360, 320 * len(layers))
    fig = make_subplots(
        rows=max(len(layers), 1), cols=1, subplot_titles=titles, vertical_spacing=min(0.2, 90 / height)
    )
    for row, (layer, floor) in enumerate(zip(layers, floors, strict=True), start=1):
        spectra = layer.details["spectra"]
        total = np.asarray(spectra["total"], dtype=float)
        n_out = int(layer.metrics.get("n_outliers", 0))
        first = row == 1
        fig.add_trace(_eigen_trace(spectra["within"], "within-class (bulk)", "#aaaaaa", floor=floor,
                                   mode="lines", showlegend=first), row, 1)  # fmt: skip
        fig.add_trace(_eigen_trace(spectra["between"], "between-class (class means)", "#2ca02c", floor=floor,
                                   showlegend=first), row, 1)  # fmt: skip
        fig.add_trace(_eigen_trace(total[n_out:], "covariance: bulk", "#1f77b4", floor=floor, offset=n_out,
                                   showlegend=first), row, 1)  # fmt: skip
        fig.add_trace(
            _eigen_trace(total[:n_out], "covariance: outliers", "#d62728", floor=floor, showlegend=first),
            row, 1,
        )  # fmt: skip
        if spectra["bulk_edge"] > 0:
            fig.add_hline(y=spectra["bulk_edge"], line_dash="dash", line_color="#888", row=row, col=1)
        shown = [v for part in ("total", "within", "between") for v in spectra[part] if v > floor]
        fig.update_yaxes(**log_axis(shown), title_text="eigenvalue (activation unit^2)", row=row, col=1)
        fig.update_xaxes(title_text="eigenvalue index" if row == len(layers) else None, row=row, col=1)
    fig.update_layout(
        title="Covariance spectra (log scale; dashed: the within-class bulk edge)",
        height=height,
        template="plotly_white",
    )
    return fig


def fisher_figure(layer) -> go.Figure:
    """The Fisher block's eigenvalues (log scale) with its class-mean outliers (G1, C of them),
    the cross-class mini-bulk (G2), the same-class part (G0) and the within-class bulk edge;
    eigenvalues at or below numerical zero are left out (the title counts them)."""
    fisher = layer.details["fisher"]
    floor = numerical_zero(fisher["total"])
    parts = ("total", "class_means", "cross_class", "same_class", "within_class")
    dropped = _dropped(floor, *(fisher[part] for part in parts))
    fig = go.Figure()
    fig.add_trace(
        _eigen_trace(fisher["total"], "G (whole block)", "#1f77b4", floor=floor, mode="lines+markers")
    )
    fig.add_trace(_eigen_trace(fisher["class_means"], "G1 class means (outliers)", "#d62728", floor=floor))
    fig.add_trace(_eigen_trace(fisher["cross_class"], "G2 cross-class (mini-bulk)", "#ff7f0e", floor=floor))
    fig.add_trace(_eigen_trace(fisher["same_class"], "G0 same class", "#9467bd", floor=floor))
    fig.add_trace(_eigen_trace(fisher["within_class"], "within-class (top)", "#7f7f7f", floor=floor))
    if fisher["bulk_edge"] > 0:
        fig.add_hline(y=fisher["bulk_edge"], line_dash="dash", line_color="#888")
    shown = [v for part in parts for v in fisher[part] if v > floor]
    fig.update_yaxes(**log_axis(shown), title_text="eigenvalue (log)")
    fig.update_xaxes(title_text="eigenvalue index")
    where = layer.name or "the classifier's input"
    fig.update_layout(
        title=f"Fisher block of the classifier on {where} ({fisher['n_points']} samples; "
        "dashed: the within-class bulk edge"
        + (f"; {dropped} eigenvalues below numerical zero {floor:.1e} not drawn" if dropped else "")
        + ")",
        height=480,
        template="plotly_white",
    )
    return fig


def success_figure(result: Result) -> go.Figure:
    """One panel per target: hit fraction against d (log axis), the fitted sigmoid, d* and its interval."""
    entries = result.classes
    class_names = result.source.get("class_names")
    cols = min(len(entries), 5)
    rows = math.ceil(len(entries) / cols)
    titles = []
    for entry in entries:
        dim = entry.manifold_dim
        name = target_name(entry, class_names)
        text = f"{name if class_names else 'class ' + name}<br>" + (
            f"D - d* = {dim:.1f}" if dim is not None else entry.status
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
        dims = [record.dim for record in entry.success]
        fractions = [record.hit_fraction for record in entry.success]
        hover = [
            f"d = {r.dim}<br>{r.hits} of {r.planes} planes hit<br>mean max p = {r.mean_max_prob:.3f}"
            for r in entry.success
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
                x=dims, y=[r.mean_max_prob for r in entry.success], mode="lines",
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
        low, high = entry.critical_dim_interval
        if low is not None and high is not None:
            fig.add_trace(
                go.Scatter(
                    x=[low, high, high, low, low], y=[0, 0, 1, 1, 0], mode="lines", fill="toself",
                    fillcolor="rgba(44,160,44,0.15)", line={"width": 0}, name="95 % interval of d*",
                    legendgroup="interval", showlegend=first, hoverinfo="skip",
                ),
                row=row, col=col,
            )  # fmt: skip
        star = entry.critical_dim
        if star is not None:
            fig.add_trace(
                go.Scatter(
                    x=[star, star], y=[0, 1], mode="lines", name="d* (fit crosses 0.5)",
                    legendgroup="star", showlegend=first,
                    line={"color": colours["star"], "dash": "dash"},
                    hovertext=f"d* = {star:.2f}, D - d* = {entry.manifold_dim:.2f}", hoverinfo="text",
                ),
                row=row, col=col,
            )  # fmt: skip
    fig.update_xaxes(**log_axis(result.params["dims"]), title_text="cutting dimension d")
    fig.update_yaxes(range=[-0.05, 1.05])
    fig.update_yaxes(title_text="fraction of planes that hit", col=1)
    fig.update_annotations(font_size=12)
    fig.update_layout(
        title=f"Success curves (D = {result.summary['input_dim']}, {result.params['planes']} planes per d)",
        height=max(380, 330 * rows), template="plotly_white", hovermode="closest",
    )  # fmt: skip
    return fig


def dimension_figure(result: Result) -> go.Figure:
    """Class-manifold dimension D - d* per target with its interval (targets that crossed)."""
    entries = [e for e in result.classes if e.manifold_dim is not None]
    values = [e.manifold_dim for e in entries]
    lows = [e.manifold_dim_interval[0] for e in entries]
    highs = [e.manifold_dim_interval[1] for e in entries]
    fig = go.Figure(
        go.Bar(
            x=[target_name(e, result.source.get("class_names")) for e in entries],
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
        xaxis_title="class", yaxis_title="D - d* (dimensions)", template="plotly_white", height=360,
        xaxis={"type": "category"},
    )  # fmt: skip
    return fig


def spectra_figures(results: Sequence[Result], *, names=None, log_scale: bool = False):
    """(figures, title, notes): metric versus layer, every layer's covariance spectra, and the
    classifier's Fisher block."""
    result = results[0]
    figures = [
        layer_profile_figure([result], list(SPECTRA_METRICS), log_y=["outlier_bulk_ratio"],
                             title="Spectra metrics by layer"),
        spectra_figure(result),
    ]  # fmt: skip
    layer = classifier_layer(result)
    if layer is not None and "fisher" in layer.details:
        figures.append(fisher_figure(layer))
    return figures, "mprobe spectra", collapse_notes(result)


def curvature_figures(results: Sequence[Result], *, names=None, log_scale: bool = False):
    """(figures, title, notes): the curvature profile of one or several results (one line per
    model), raw and scale-free, with the d each layer was fitted at."""
    result = results[0]
    metrics = list(CURVATURE_TABLE_METRICS[:4]) + ["id_twonn"]
    neighbourhood = result.params.get("neighbourhood", "knn")
    title = f"Curvature by layer ({neighbourhood} neighbourhoods)"
    if any(
        "curvature_sff_null" in layer.metrics or "mapc_null" in layer.metrics
        for r in results
        for layer in r.layers
    ):
        metrics += [m for m in ("curvature_sff_null", "curvature_p_value", "mapc_null", "mapc_p_value")
                    if any(m in layer.metrics for r in results for layer in r.layers)]  # fmt: skip
    log_y = metrics[:4] if log_scale else False
    figures = [layer_profile_figure(list(results), metrics, names=names, log_y=log_y, title=title)]
    profiles = profile_figure(result)
    if profiles is not None:
        figures.append(profiles)
    return figures, "mprobe curvature", curvature_notes(result)


def cutting_planes_figures(results: Sequence[Result], *, names=None, log_scale: bool = False):
    """(figures, title, notes): the success curves of every target and the class-manifold dimensions."""
    result = results[0]
    models = result.source.get("models") or [result.source]
    notes = (
        f"{HIT_DEFINITION}. Caveats: {CAVEATS}. "
        f"Models: {', '.join(model_label(m) for m in models)}; "
        f"data: {result.source['data']} ({result.source['split']})."
    )
    if "ensemble_limitation" in result.summary:
        notes += f" Ensemble: {result.summary['ensemble_limitation']}."
    figures = [success_figure(result)]
    if any(entry.manifold_dim is not None for entry in result.classes):
        figures.append(dimension_figure(result))
    else:  # an empty bar chart would say nothing
        notes += " No target crossed 0.5 within the swept d: no class-manifold dimension to draw."
    return figures, "mprobe cutting-planes", notes


def family_figures(results: Sequence[Result], *, names=None, log_scale: bool = True):
    """(figures, title, notes): the exact curvature profile of an input family through one or
    several models (one line each), the sampled estimate beside it (with its interval and a
    hollow marker where the estimator did not vouch for its value), and the family's inputs."""
    result = results[0]
    labels = list(names) if names is not None else [model_label(r.source) for r in results]
    found = {m for r in results for layer in r.layers for m in layer.metrics}
    metrics = [m for m in FAMILY_METRICS if m in found and m != "sampled_curvature_sff"]
    log_y = [m for m in metrics if m != "curvature_sff_scaled"]
    title = f"Exact curvature of the family {result.params.get('family')}"
    figure = layer_profile_figure(list(results), metrics, names=labels, log_y=log_y, title=title)
    for r, label in zip(results, labels, strict=True):
        _add_sampled(figure, r, label)
    figures = [figure]
    if result.summary.get("preview_inputs"):
        figures.append(family_inputs_figure(result))
    family = result.summary.get("family") or {}
    regimes = sorted({str(layer.details.get("regime")) for r in results for layer in r.layers})
    notes = (
        f"{family.get('description', result.params.get('family'))}; {result.params.get('n_theta')} "
        f"values of theta; second derivatives: {', '.join(regimes)} (piecewise-linear layers: finite "
        f"differences at step {result.params.get('fd_step')} of each parameter's range). "
        f"{source_notes(result)}."
    )
    return figures, "mprobe curvature --family", notes


def _add_sampled(figure: go.Figure, result: Result, label: str) -> None:
    """The sampled estimate of each layer on the first panel: its value and interval, a filled
    diamond where the estimator measured it, a hollow one where it did not vouch for it."""
    sampled = [layer for layer in result.layers if "sampled_curvature_sff" in layer.metrics]
    if not sampled:
        return
    values = [layer.metrics["sampled_curvature_sff"] for layer in sampled]
    bounds = [layer.intervals.get("sampled_curvature_sff") or (None, None) for layer in sampled]
    statuses = [(layer.details.get("sampled") or {}).get("status") for layer in sampled]
    above = [0 if h is None or v is None else h - v for (_, h), v in zip(bounds, values, strict=True)]
    below = [0 if lo is None or v is None else v - lo for (lo, _), v in zip(bounds, values, strict=True)]
    figure.add_trace(
        go.Scatter(
            x=[layer.name for layer in sampled], y=values, mode="markers", name=f"{label}: sampled estimate",
            marker={"size": 10, "symbol": ["diamond" if s == "measured" else "diamond-open"
                                           for s in statuses]},
            error_y={"type": "data", "symmetric": False, "array": above, "arrayminus": below},
            hovertext=[f"{layer.name}: sampled estimate, {s}"
                       for layer, s in zip(sampled, statuses, strict=True)],
        ),
        row=1,
        col=1,
    )  # fmt: skip


def family_inputs_figure(result: Result) -> go.Figure:
    """The family's inputs at a few values of theta (the images that were bent), as heatmaps
    (the channel mean of an image; a vector drawn as one row)."""
    images = [np.asarray(x, dtype=float) for x in result.summary["preview_inputs"]]
    thetas = result.summary.get("preview_theta") or [[] for _ in images]
    cols = min(3, len(images))
    rows = math.ceil(len(images) / cols)
    titles = ["theta = (" + ", ".join(f"{t:.2g}" for t in theta) + ")" for theta in thetas]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.03,
                        vertical_spacing=0.08)  # fmt: skip
    for i, image in enumerate(images):
        plane = image.mean(axis=0) if image.ndim == 3 else np.atleast_2d(image.reshape(-1))
        fig.add_trace(go.Heatmap(z=plane[::-1], colorscale="gray", showscale=False),
                      row=i // cols + 1, col=i % cols + 1)  # fmt: skip
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(title="The family's inputs (what was bent)", height=260 * rows, template="plotly_white")
    return fig


def similarity_figures(results: Sequence[Result], *, names=None, log_scale: bool = False):
    """(figures, title, notes): one heatmap per method, rows the layers of the first
    representation and columns those of the second (or of the same one), the interval in the hover;
    then each layer's similarity to its counterpart against depth."""
    result = results[0]
    summary = result.summary
    rows, cols = summary["rows"], summary["columns"]
    figures = []
    for method, matrix in summary["matrices"].items():
        values = np.array(
            [[np.nan if v is None else v for v in row] for row in matrix["values"]], dtype=float
        )
        hover = [
            [f"{rows[i]} vs {cols[j]}: {values[i, j]:.4g}" for j in range(len(cols))]
            for i in range(len(rows))
        ]
        if "low" in matrix:
            low, high = (
                np.array([[np.nan if v is None else v for v in r] for r in matrix[k]])
                for k in ("low", "high")
            )
            hover = [[f"{hover[i][j]} [{low[i, j]:.3g}, {high[i, j]:.3g}]" for j in range(len(cols))]
                     for i in range(len(rows))]  # fmt: skip
        larger = (summary.get("larger_is_more_similar") or {}).get(method, True)
        fig = go.Figure(go.Heatmap(z=values, x=cols, y=rows, hovertext=hover, hoverinfo="text",
                                   colorscale="Viridis" if larger else "Viridis_r",
                                   colorbar={"title": method}))  # fmt: skip
        other = (
            "the same model"
            if result.params.get("within_one_model")
            else model_label(result.source.get("other", {}))
        )
        fig.update_layout(
            title=f"{method} ({'larger' if larger else 'smaller'} is more similar)",
            xaxis_title=f"layer of {other}", yaxis_title=f"layer of {model_label(result.source)}",
            yaxis={"autorange": "reversed", "type": "category"}, xaxis={"type": "category"},
            height=max(360, 40 * len(rows) + 160), template="plotly_white",
        )  # fmt: skip
        figures.append(fig)
    notes = f"pairs per layer: {summary.get('pairing')}. {source_notes(result)}."
    return figures, "mprobe similarity", notes


def profile_figure(result: Result) -> go.Figure | None:
    """One row per layer with a multiscale profile (`details["profile"]`): the local singular
    values against radius (log-log; the tangent directions in blue, the rest grey, the noise floor
    dashed, the window shaded) and d(r) (with the share of neighbours in the centre's class)."""
    layers = [layer for layer in result.layers if (layer.details.get("profile") or {}).get("ks")]
    if not layers:
        return None
    titles = []
    for layer in layers:
        profile = layer.details["profile"]
        window = profile.get("window")
        text = (
            (
                f"window K {window['k'][0]}-{window['k'][1]}, d = {window['dim']}"
                f"{', bending' if window['curved'] else ', flat'}"
            )
            if window
            else "no manifold scale window"
        )
        titles += [f"{layer.name}: local singular values ({text})", f"{layer.name}: d(r)"]
    height = max(360, 300 * len(layers))
    fig = make_subplots(rows=len(layers), cols=2, subplot_titles=titles, horizontal_spacing=0.08,
                        vertical_spacing=min(0.2, 80 / height))  # fmt: skip
    for row, layer in enumerate(layers, start=1):
        profile = layer.details["profile"]
        radii = np.asarray(profile["radii"], dtype=float)
        values = np.array(
            [[np.nan if v is None else v for v in r] for r in profile["singular_values"]], dtype=float
        )
        dims = np.asarray(profile["dims"], dtype=int)
        first = row == 1
        tangent = int((profile.get("window") or {}).get("dim") or dims.max(initial=0))
        for i in range(min(values.shape[1], 12)):
            colour = "#1f77b4" if i < tangent else "#9c9c9c"
            fig.add_trace(go.Scatter(x=radii, y=values[:, i], mode="lines+markers", marker={"size": 4},
                                     line={"color": colour, "width": 1.5 if i < tangent else 1},
                                     name="tangent directions" if i < tangent else "further directions",
                                     legendgroup="tan" if i < tangent else "rest",
                                     showlegend=first and i in (0, tangent),
                                     hovertext=[f"direction {i + 1}, K = {k}" for k in profile["ks"]],
                                     hoverinfo="text+y"), row, 1)  # fmt: skip
        floor = np.asarray(profile["noise_floor"], dtype=float)
        if np.any(floor > 0):
            fig.add_trace(
                go.Scatter(
                    x=radii,
                    y=floor,
                    mode="lines",
                    line={"dash": "dash", "color": "#d62728"},
                    name="noise floor",
                    legendgroup="floor",
                    showlegend=first,
                ),
                row,
                1,
            )
        fig.add_trace(
            go.Scatter(
                x=radii,
                y=dims,
                mode="lines+markers",
                line={"color": "#2ca02c"},
                name="d(r)",
                legendgroup="d",
                showlegend=first,
                hovertext=[f"K = {k}" for k in profile["ks"]],
                hoverinfo="text+y",
            ),
            row,
            2,
        )
        agreement = profile.get("class_agreement")
        if agreement:
            fig.add_trace(
                go.Scatter(
                    x=radii,
                    y=np.asarray(agreement) * max(1, dims.max(initial=1)),
                    mode="lines",
                    line={"color": "#ff7f0e", "dash": "dot"},
                    legendgroup="class",
                    name="share of neighbours in the class (x max d)",
                    showlegend=first,
                ),
                row,
                2,
            )
        window = profile.get("window")
        for col in (1, 2):
            if window:
                fig.add_vrect(
                    x0=window["radius"][0],
                    x1=window["radius"][1],
                    fillcolor="rgba(44,160,44,0.12)",
                    line_width=0,
                    row=row,
                    col=col,
                )
            fig.update_xaxes(type="log", title_text="neighbourhood radius r" if row == len(layers) else None,
                             row=row, col=col)  # fmt: skip
        fig.update_yaxes(type="log", title_text="singular value", row=row, col=1)
        fig.update_yaxes(title_text="dimensions", rangemode="tozero", row=row, col=2)
    fig.update_layout(title="Multiscale profiles (shaded: the manifold scale window)", height=height,
                      template="plotly_white")  # fmt: skip
    return fig


def multiscale_figures(results: Sequence[Result], *, names=None, log_scale: bool = False):
    """(figures, title, notes): the window's d against depth, then every layer's profile."""
    result = results[0]
    metrics = ["window_dim", "window_bending", "scale_dim_small", "scale_dim_large"]
    if any("class_agreement_small" in layer.metrics for layer in result.layers):
        metrics += ["class_agreement_small", "class_agreement_large"]
    figures = [layer_profile_figure(list(results), metrics, names=names, title="Multiscale profile by layer")]
    figure = profile_figure(result)
    if figure is not None:
        figures.append(figure)
    notes = (
        "d(r): the directions before the first clear gap in the local spectra; "
        f"exponent: d log sigma / d log r (1 tangent, 2 bending, 0 noise). {source_notes(result)}."
    )
    return figures, "mprobe multiscale", notes


def measure_figures(
    results: Sequence[Result], measure: registry.Measure, *, names=None, log_scale: bool = False
):
    """(figures, title, notes) of the generic page of a per-layer measure: every metric the
    results hold (the measure's own first) against layer, one line per result."""
    found = dict.fromkeys(k for r in results for layer in r.layers for k in layer.metrics)
    metrics = [m for m in measure.metrics if m in found] + [m for m in found if m not in measure.metrics]
    log_y = [m for m in metrics if m in measure.log_metrics or log_scale]
    title = measure.description[0].upper() + measure.description[1:]
    figure = layer_profile_figure(list(results), metrics, names=names, log_y=log_y or False, title=title)
    return [figure], f"mprobe {measure.name}", "; ".join(source_notes(r) for r in results) + "."


def result_figures(
    results: Sequence[Result], *, names: Sequence[str] | None = None, log_scale: bool = False
) -> tuple[list[go.Figure], str, str]:
    """(figures, title, notes) of the page of one result, or of several results of the same
    measure drawn together (`names` label their lines), from the measure's registry entry."""
    return registry.get(results[0].command).result_figures(results, names=names, log_scale=log_scale)


def write_result_page(
    path: str | os.PathLike,
    results: Sequence[Result],
    *,
    names: Sequence[str] | None = None,
    log_scale: bool = False,
    plotlyjs: str = "inline",
) -> Path:
    """Write the page of `results` (see `result_figures`) atomically; `plotlyjs` "inline" (the
    page stands alone) or "directory" (a shared plotly.min.js beside it)."""
    return registry.write_page(path, results, names=names, log_scale=log_scale, plotlyjs=plotlyjs)
