"""The findings page of a claims study: the verdict table and the figures each claim rests on.

Opens offline: plotly.js in one shared plotly.min.js beside the page (or inline), written atomically.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ...report.profile_page import write_page
from ...results import Result
from .evidence import ModelRecord, Study
from .verdicts import manifold_dim

_COLOURS = {"supported": "#1b7837", "not supported": "#b2182b", "inconclusive": "#7f7f7f"}
_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1200px}"
    "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
    ".notes{color:#444;font-size:0.9em}"
)


def _number(value) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.3g}"


def _table(findings: list[dict]) -> str:
    rows = []
    for f in findings:
        interval = f["interval"]
        shown = "-" if interval is None else f"[{_number(interval[0])}, {_number(interval[1])}]"
        colour = _COLOURS[f["verdict"]]
        rows.append(
            "<tr>"
            f"<td>{html.escape(f['paper'])}</td><td><b>{html.escape(f['claim'])}</b><br>"
            f"{html.escape(f['statement'])}</td><td>{html.escape(f['statistic'])}</td>"
            f"<td>{html.escape(f['prediction'])}</td><td>{_number(f['value'])}</td><td>{shown}</td>"
            f"<td>{f['n']}</td><td style='color:{colour}'><b>{html.escape(f['verdict'])}</b>"
            f"<br>{html.escape(f['reason'])}</td></tr>"
        )
    head = (
        "<tr><th>paper</th><th>claim</th><th>statistic</th><th>predicted</th><th>value</th>"
        "<th>95 % interval</th><th>n</th><th>verdict</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _label(record: ModelRecord) -> str:
    parts = [f"{record.arch} w{record.width} d{record.depth} seed {record.seed}"]
    if not record.trained:
        parts.append("untrained")
    if record.mixup:
        parts.append(f"mixup {record.mixup:g}")
    if record.label_noise:
        parts.append(f"label noise {record.label_noise:g}")
    return ", ".join(parts)


def _profiles_figure(study: Study) -> go.Figure:
    fig = go.Figure()
    styles = {"baseline": "solid", "mixup": "dash", "untrained": "dot"}
    for record in study.finals:
        kind = "untrained" if not record.trained else "mixup" if record.mixup else None
        if kind is None and not study.is_baseline(record):
            continue
        kind = kind or "baseline"
        layers = record.layers("curvature")
        values = record.metric_profile("curvature", "mapc_scaled")
        if not layers:
            continue
        fig.add_trace(
            go.Scatter(
                x=[layer.depth for layer in layers], y=np.where(values > 0, values, np.nan),
                text=[layer.name for layer in layers], mode="lines+markers", name=_label(record),
                line={"dash": styles[kind]}, legendgroup=kind,
            )
        )  # fmt: skip
    fig.update_layout(
        title="Curvature profiles (Kaufman & Azencot): solid baseline, dashed mixup, dotted untrained",
        xaxis_title="relative depth (first block 0, logits 1; hover for the layer)",
        yaxis_title="scaled MAPC (dimensionless)", yaxis_type="log", height=450,
    )  # fmt: skip
    return fig


def _gap_figure(study: Study) -> go.Figure:
    trained = study.trained
    fig = go.Figure(
        go.Scatter(
            x=[r.test_accuracy for r in trained],
            y=[r.summary("curvature", "curvature_gap") for r in trained],
            mode="markers", text=[_label(r) for r in trained], name="trained models",
        )
    )  # fmt: skip
    fig.update_layout(
        title="Curvature gap (last minus penultimate layer, raw MAPC) against test accuracy",
        xaxis_title="test accuracy", yaxis_title="curvature gap (1 / activation units)", height=400,
    )  # fmt: skip
    return fig


def _training_figure(study: Study) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("NC1, penultimate layer", "class-manifold dimension"),
                        horizontal_spacing=0.12)  # fmt: skip
    palette = plotly.colors.qualitative.Plotly
    for index, (name, members) in enumerate(study.runs().items()):
        epochs = [m.epoch for m in members]
        nc1 = [m.classifier_metric("collapse", "nc1") for m in members]
        line = {"color": palette[index % len(palette)]}
        fig.add_trace(
            go.Scatter(x=epochs, y=nc1, mode="lines+markers", name=name, legendgroup=name, line=line), 1, 1
        )
        fig.add_trace(
            go.Scatter(x=epochs, y=[manifold_dim(m) for m in members], mode="lines+markers", name=name,
                       legendgroup=name, showlegend=False, line=line),
            1, 2,
        )  # fmt: skip
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="NC1 (dimensionless)", type="log", row=1, col=1)
    fig.update_yaxes(title_text="mean class-manifold dimension", row=1, col=2)
    fig.update_layout(title="Over training (Papyan, Han & Donoho; Fort et al.)", height=420)
    return fig


def _fort_figure(study: Study, ensembles: list[list[float]]) -> go.Figure:
    fig = make_subplots(rows=1, cols=3, subplot_titles=("label noise", "training-set size", "ensemble size"),
                        horizontal_spacing=0.08)  # fmt: skip
    for col, attribute in ((1, "label_noise"), (2, "train_size")):
        members = study.series(attribute)
        fig.add_trace(
            go.Scatter(x=[getattr(r, attribute) for r in members], y=[manifold_dim(r) for r in members],
                       mode="markers", text=[_label(r) for r in members], showlegend=False),
            1, col,
        )  # fmt: skip
    if ensembles:
        fig.add_trace(
            go.Scatter(x=[size for size, _ in ensembles], y=[dim for _, dim in ensembles], mode="markers",
                       showlegend=False),
            1, 3,
        )  # fmt: skip
    fig.update_xaxes(title_text="fraction of labels replaced", row=1, col=1)
    fig.update_xaxes(title_text="training points", type="log", row=1, col=2)
    fig.update_xaxes(title_text="members", dtick=1, row=1, col=3)
    fig.update_yaxes(title_text="mean class-manifold dimension", row=1, col=1)
    fig.update_layout(title="Class-manifold dimension by cutting planes (Fort et al.)", height=400)
    return fig


def write_findings_page(
    result: Result,
    study: Study,
    path: str | os.PathLike,
    *,
    ensembles: list | None = None,
    plotlyjs: str = "directory",
) -> Path:
    """Write the findings page of a `claims` result to `path` and return the path (plotly.js in
    a shared plotly.min.js beside it, or inline with `plotlyjs="inline"`)."""
    summary = result.summary
    source = result.source
    figures = [_profiles_figure(study), _gap_figure(study), _training_figure(study),
               _fort_figure(study, ensembles or [])]  # fmt: skip
    counts = ", ".join(f"{n} {verdict}" for verdict, n in summary["verdicts"].items())
    title = f"mprobe claims: the five papers re-tested on {source['data']} (preset {source['preset']})"
    notes = (
        f"{source['n_models']} models ({source['n_checkpoints']} checkpoints with saved epochs), "
        f"{result.params['n_points']} training points measured per model, reduction "
        f"{result.params['reduction']}, seed {source['seed']}. Verdicts: {counts}. A claim is supported when "
        "the 95 % bootstrap interval of its statistic lies on the predicted side, not supported when it "
        "lies on the other side or within the margin of no effect, inconclusive otherwise "
        "(see docs/claims.md)."
    )
    parts = ["<h2>Findings</h2>", _table(summary["findings"]), "<h2>Evidence</h2>", *figures]
    return write_page(path, parts, title=title, notes=notes, style=_STYLE, plotlyjs=plotlyjs)
