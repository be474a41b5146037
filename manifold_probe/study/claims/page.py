"""The findings page of a claims study: the verdict table, a forest plot of every claim, each
claim's per-run evidence with its interval, the robustness row, and the curves behind them.

Opens offline: plotly.js in one shared plotly.min.js beside the page (or inline), written atomically.
The forest plot is also written as SVG and PDF beside the page (`FOREST_FILES`, drawn by plotly.js
in headless Chromium: `report.figures.write_figure`) when Chromium is found; without it the page
says so.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path

import numpy as np
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ...report.profile_page import write_page
from ...results import Result
from .evidence import ModelRecord, Study
from .verdicts import CNN, MLP, TPT_ERROR

_COLOURS = {
    "supported": "#1b7837",
    "contradicted": "#b2182b",
    "equivalent to no effect": "#2166ac",
    "inconclusive": "#7f7f7f",
}
_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1300px}"
    "table{border-collapse:collapse;margin:1em 0;font-size:0.85em}"
    "td,th{border:1px solid #ccc;padding:4px 6px;text-align:left;vertical-align:top}"
    ".notes{color:#444;font-size:0.9em}"
)
FOREST_FILES = ("forest.svg", "forest.pdf")
_CONDITIONS = ("baseline", "untrained", "mixup", "label noise", "smaller training set", "other")
_SYMBOLS = dict(zip(_CONDITIONS, ("circle", "x", "diamond", "triangle-up", "square", "cross"), strict=True))
_PALETTE = plotly.colors.qualitative.Plotly


def _number(value) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.3g}"


def _interval(interval) -> str:
    return "-" if interval is None else f"[{_number(interval[0])}, {_number(interval[1])}]"


def _table(findings: list[dict]) -> str:
    rows = []
    for f in findings:
        colour = _COLOURS[f["verdict"]]
        designs = "<br>".join(
            f"{html.escape(name)}: <span style='color:{_COLOURS[d['verdict']]}'>"
            f"{html.escape(d['verdict'])}</span>"
            f" {_number(d['value'])} {_interval(d['interval'])}"
            for name, d in f["designs"].items()
        )
        rows.append(
            "<tr>"
            f"<td>{html.escape(f['paper'])}</td><td><b>{html.escape(f['claim'])}</b> "
            f"<small>({html.escape(f.get('family', ''))})</small><br>"
            f"{html.escape(f['statement'])}</td><td>{html.escape(f['statistic'])}</td>"
            f"<td>{html.escape(f['prediction'])}<br><small>{html.escape(f['margin_source'])}</small></td>"
            f"<td>{_number(f['value'])}</td><td>{_interval(f['interval'])}</td>"
            f"<td>{_number(f['p_value'])} / {_number(f['p_adjusted'])}</td><td>{f['n']}</td>"
            f"<td style='color:{colour}'><b>{html.escape(f['verdict'])}</b><br>"
            f"{html.escape(f['reason'])}</td>"
            f"<td><b>{html.escape(f['robustness'])}</b><br>{designs}</td></tr>"
        )
    head = (
        "<tr><th>paper</th><th>claim</th><th>statistic (unit: the training run)</th><th>predicted; margin "
        "source</th><th>effect</th><th>95 % interval</th><th>p / Holm p</th><th>runs</th><th>verdict</th>"
        "<th>robustness (verdict per design)</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def forest_figure(findings: list[dict]) -> go.Figure:
    """Every claim's effect and 95 % interval in units of its margin (effect / margin), so claims in
    decades, correlations and counts share one axis; the band [-1, 1] is the margin of no effect.
    Hover gives the raw numbers."""
    fig = go.Figure()
    labels = [f["claim"] for f in findings][::-1]
    fig.add_vrect(x0=-1, x1=1, fillcolor="#dddddd", opacity=0.5, line_width=0)
    for f in findings:
        if f["value"] is None:
            continue
        margin = f["margin"]
        low, high = f["interval"] if f["interval"] is not None else (f["value"], f["value"])
        scaled = f["value"] / margin
        fig.add_trace(
            go.Scatter(
                x=[scaled],
                y=[f["claim"]],
                mode="markers",
                marker={
                    "color": _COLOURS[f["verdict"]],
                    "size": 10,
                    "symbol": "circle" if f["robustness"] != "not robust" else "circle-open",
                },
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [high / margin - scaled],
                    "arrayminus": [scaled - low / margin],
                },
                name=f["verdict"],
                legendgroup=f["verdict"],
                showlegend=False,
                hovertext=f"{f['claim']}: {f['value']:.3g} {_interval(f['interval'])}, margin {margin:g}; "
                f"{f['verdict']} ({f['robustness']})",
            )
        )
    for verdict, colour in _COLOURS.items():
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", marker={"color": colour}, name=verdict))
    fig.update_layout(
        title="Every claim: effect and 95 % interval over runs, in units of its margin (grey: no effect; "
        "open marker: not robust)",
        xaxis_title="effect / margin",
        height=120 + 24 * len(findings),
        yaxis={"categoryorder": "array", "categoryarray": labels, "tickfont": {"size": 11}},
        margin={"l": 170},
    )
    return fig


def evidence_figure(findings: list[dict]) -> go.Figure:
    """Each claim's per-run evidence: the per-run effects with their mean and 95 % interval, or the
    (x, y) pair of every run for a correlation."""
    shown = [f for f in findings if f["details"].get("per_run")]
    cols = 4
    rows = max(1, math.ceil(len(shown) / cols))
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[f["claim"] for f in shown],
        vertical_spacing=0.35 / rows + 0.02,
        horizontal_spacing=0.06,
    )
    for index, f in enumerate(shown):
        row, col = index // cols + 1, index % cols + 1
        data = f["details"]["per_run"]
        colour = _COLOURS[f["verdict"]]
        if data and isinstance(data[0], (list, tuple)):  # a correlation: (x, y) per run
            fig.add_trace(
                go.Scatter(x=data[0], y=data[1], mode="markers", marker={"color": colour}, showlegend=False),
                row,
                col,
            )
        else:
            values = [v for v in data if v is not None and np.isfinite(v)]
            fig.add_trace(
                go.Scatter(
                    x=[0.0] * len(values),
                    y=values,
                    mode="markers",
                    showlegend=False,
                    marker={"color": colour, "opacity": 0.6},
                ),
                row,
                col,
            )
            if f["value"] is not None:
                low, high = f["interval"] if f["interval"] is not None else (f["value"], f["value"])
                fig.add_trace(
                    go.Scatter(
                        x=[1.0],
                        y=[f["value"]],
                        mode="markers",
                        showlegend=False,
                        marker={"color": "black", "symbol": "diamond"},
                        error_y={
                            "type": "data",
                            "symmetric": False,
                            "array": [high - f["value"]],
                            "arrayminus": [f["value"] - low],
                        },
                    ),
                    row,
                    col,
                )
            fig.add_hrect(
                y0=-f["margin"],
                y1=f["margin"],
                fillcolor="#dddddd",
                opacity=0.5,
                line_width=0,
                row=row,
                col=col,
            )
            fig.update_xaxes(
                tickvals=[0, 1], ticktext=["runs", "mean, 95 %"], range=[-0.6, 1.6], row=row, col=col
            )
    fig.update_annotations(font_size=11)
    fig.update_layout(
        title="Each claim's evidence: one point per training run (grey band: the margin)", height=260 * rows
    )
    return fig


def condition(record: ModelRecord, study: Study) -> str:
    """The condition a final model stands for, its marker on the page (`_SYMBOLS`)."""
    if not record.trained:
        return "untrained"
    if record.mixup:
        return "mixup"
    if record.label_noise:
        return "label noise"
    if study.is_baseline(record):
        return "baseline"
    full = study.full_size
    return "smaller training set" if full and (record.train_size or full) < full else "other"


def _arch_colour(record: ModelRecord) -> str:
    names = (CNN, "small-resnet", MLP)
    return _PALETTE[names.index(record.arch) if record.arch in names else len(names)]


def _profiles_figure(study: Study, key: str, title: str) -> go.Figure:
    fig = go.Figure()
    seen = set()
    for record in study.finals:
        layers = record.layers(key)
        if not layers or record.arch == MLP:
            continue
        kind = condition(record, study)
        profile = record.metric_profile(key, "mapc")
        group = f"{record.arch}, {kind}"
        fig.add_trace(
            go.Scatter(
                x=[layer.depth for layer in layers],
                y=np.where(profile > 0, profile, np.nan),
                text=[layer.name for layer in layers],
                mode="lines+markers",
                name=group,
                legendgroup=group,
                showlegend=group not in seen,
                line={"dash": "dot" if kind == "untrained" else "solid"},
                marker={"symbol": _SYMBOLS.get(kind, "cross"), "color": _arch_colour(record)},
                opacity=0.7,
            )
        )
        seen.add(group)
    fig.update_layout(
        title=title,
        xaxis_title="relative depth (first layer 0, logits 1; hover: the layer)",
        yaxis_title="raw MAPC (1 / activation units)",
        yaxis_type="log",
        height=450,
    )
    return fig


def _gap_figure(study: Study) -> go.Figure:
    fig = go.Figure()
    trained = [r for r in study.trained if r.arch == CNN]
    for kind in _CONDITIONS:
        members = [r for r in trained if condition(r, study) == kind]
        if members:
            fig.add_trace(
                go.Scatter(
                    x=[r.test_accuracy for r in members],
                    y=[r.summary("curvature", "curvature_gap") for r in members],
                    mode="markers",
                    name=kind,
                    marker={"symbol": _SYMBOLS[kind], "size": 9},
                    text=[r.name for r in members],
                )
            )
    fig.update_layout(
        title="ka-gap-accuracy: curvature gap (perturbation neighbourhoods, raw MAPC) against test accuracy",
        xaxis_title="test accuracy",
        yaxis_title="curvature gap (1 / activation units)",
        height=400,
    )
    return fig


def _training_figure(study: Study) -> go.Figure:
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(
            "NC1, penultimate layer (own training images)",
            "class-manifold dimension (MLP runs)",
        ),
        horizontal_spacing=0.12,
    )
    for index, (name, members) in enumerate(study.runs().items()):
        epochs = [m.epoch for m in members]
        line = {"color": _PALETTE[index % len(_PALETTE)]}
        if members[-1].arch == CNN:
            nc1 = [m.classifier_metric("collapse", "nc1") for m in members]
            fig.add_trace(go.Scatter(x=epochs, y=nc1, mode="lines+markers", name=name, line=line), 1, 1)
            start = next((m.epoch for m in members if (m.train_accuracy or 0) >= 1 - TPT_ERROR), None)
            if start is not None:
                fig.add_vline(x=start, line={"dash": "dot", "color": line["color"]}, row=1, col=1)
        else:
            dims = [m.summary("cutting-planes", "mean_manifold_dim") for m in members]
            fig.add_trace(go.Scatter(x=epochs, y=dims, mode="lines+markers", name=name, line=line), 1, 2)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="NC1 (log scale)", type="log", row=1, col=1)
    fig.update_yaxes(title_text="mean class-manifold dimension", row=1, col=2)
    fig.update_layout(
        title="Over training: dotted lines mark where each CNN run's terminal phase starts "
        f"(training error at most {TPT_ERROR:.1%})",
        height=450,
    )
    return fig


def write_forest_files(fig: go.Figure, folder: Path) -> list[Path]:
    """The forest plot as SVG and PDF beside the page when Chromium is found (else nothing)."""
    from ...report.browser import find_chromium
    from ...report.figures import write_figure

    if find_chromium() is None:
        return []
    return [write_figure(fig, folder / name) for name in FOREST_FILES]


def write_findings_page(
    result: Result, study: Study, path: str | os.PathLike, *, plotlyjs: str = "directory"
) -> Path:
    """Write the findings page of a `claims` result to `path` and return the path (plotly.js in
    a shared plotly.min.js beside it, or inline with `plotlyjs="inline"`)."""
    summary = result.summary
    source = result.source
    findings = summary["findings"]
    forest = forest_figure(findings)
    exported = write_forest_files(forest, Path(path).parent)
    figures = [
        forest,
        evidence_figure(findings),
        _profiles_figure(
            study, "curvature", "Curvature profiles, perturbation neighbourhoods (Kaufman & Azencot)"
        ),
        _profiles_figure(study, "curvature-knn", "Curvature profiles, kNN neighbourhoods (second design)"),
        _gap_figure(study),
        _training_figure(study),
    ]
    counts = ", ".join(f"{n} {verdict}" for verdict, n in summary["verdicts"].items())
    title = f"mprobe claims: the five papers re-tested on {source['data']} (preset {source['preset']})"
    points = "; ".join(f"{k}: {v}" for k, v in source["points"].items())
    export = (
        f"The forest plot is also in {', '.join(p.name for p in exported)}."
        if exported
        else "SVG/PDF export of the forest plot needs Chromium (install chromium, or set MPROBE_CHROMIUM), "
        "which was not found here."
    )
    notes = (
        f"Preset {source['preset']}: {source['purpose']}. {source['n_models']} models "
        f"({source['n_checkpoints']} checkpoints with saved epochs), seed {source['seed']}. "
        f"Points: {points}. Verdicts: {counts}. Each claim is decided over training runs (sign-flip or "
        "permutation tests, Holm's correction within each family: the six pre-registered primary claims, "
        "and the secondary ones): equivalent to no effect when the 90 % "
        "interval lies inside the margin, supported or contradicted when the Holm-adjusted p is below "
        "0.05, inconclusive otherwise; "
        f"not robust when another reasonable design decides differently (docs/claims.md). {export}"
    )
    parts = ["<h2>Findings</h2>", _table(findings), "<h2>Evidence</h2>", *figures]
    return write_page(path, parts, title=title, notes=notes, style=_STYLE, plotlyjs=plotlyjs)
