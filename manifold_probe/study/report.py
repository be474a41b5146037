"""From a sweep folder to the report: correlations of each measure with generalization, and its page.

A sweep folder SWEEP holds `SWEEP/table.csv` (one row per checkpoint: its settings, its train
and test accuracy, and the columns of each measure) and `SWEEP/results/<run_id>/<measure>.json`
(one `Result` per checkpoint and measure). The report relates every measure column present (the
sweep columns of the registry's measures: `measure_columns`) to every target (`TARGETS`: test
accuracy and the generalization gap, train accuracy - test accuracy) with Pearson, Spearman and
Kendall tau-b, each with a bootstrap percentile interval and a permutation p-value
(`report.statistics`), over all models and within each architecture family. The question is
Kaufman & Azencot's (2023): does the curvature gap between the last two layers predict test
accuracy?

Untrained models are left out by default: their extreme measures (untrained nets' curvature is
orders of magnitude off) and chance-level accuracy would make any measure look predictive. A
manifest says otherwise per model with its `in_report` column (a foreign zoo whose random-init
members are part of the question). A coefficient from fewer than `statistics.MIN_RELIABLE_N`
models, or with a degenerate interval, carries a `warning` (JSON, tables and page).
"""

from __future__ import annotations

import csv
import html
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from .. import registry
from ..errors import InputError
from ..progress import track
from ..report.profile_page import write_page
from ..report.statistics import METHODS, correlation_warning, correlations, linear_fit
from ..results import Result, read_result
from ..validation import parse_flag


def measure_columns() -> tuple[str, ...]:
    """Every sweep-table column a measure adds (the registry's `SweepSpec.columns`): curvature's
    first (the report's question), then the others in the registry's order."""
    ordered = sorted(registry.measures(), key=lambda m: m.name != "curvature")
    return tuple(column.name for m in ordered if m.sweep for column in m.sweep.columns)


MEASURES = measure_columns()
"""The measure columns of the built-in measures (`measure_columns()` also has plugins')."""
TARGETS = ("test_accuracy", "generalization_gap")
REQUIRED_COLUMNS = ("run_id", "family", "untrained", "train_accuracy", "test_accuracy")
SETTINGS = (
    "arch", "width", "arch_depth", "epochs", "weight_decay", "mixup", "label_smoothing", "label_noise",
    "train_size", "seed",
)  # fmt: skip
PROFILE_MEASURES = ("id", "curvature", "collapse")  # the measures whose per-layer profiles the page draws
TARGET_RANGES = {"test_accuracy": (0.0, 1.0), "generalization_gap": (-1.0, 1.0)}
"""The values each target can take: bands and fitted lines are clipped to them on the page."""
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


@dataclass(frozen=True)
class SweepRow:
    """One checkpoint of the sweep table: the raw cells, and the parsed numbers it is judged by."""

    cells: dict[str, str]
    untrained: bool

    @property
    def run_id(self) -> str:
        return self.cells["run_id"]

    @property
    def family(self) -> str:
        return self.cells.get("family") or "unknown"

    @property
    def mixup(self) -> bool:
        value = _number(self.cells.get("mixup", ""))
        return math.isfinite(value) and value > 0

    @property
    def kind(self) -> str:
        """How the checkpoint was made, in words, from its own settings: untrained, mixup,
        label noise p, N training points, otherwise trained (never a guessed "baseline")."""
        if self.untrained:
            return "untrained"
        parts = []
        if self.mixup:
            parts.append(f"mixup {self.cells['mixup']}")
        noise = _number(self.cells.get("label_noise", ""))
        if math.isfinite(noise) and noise > 0:
            parts.append(f"label noise {noise:g}")
        size = _number(self.cells.get("train_size", ""))
        if math.isfinite(size) and size > 0:
            parts.append(f"{size:g} training points")
        return ", ".join(parts) or "trained"

    @property
    def in_report(self) -> bool | None:
        """The manifest's say on relating this model (its `in_report` cell), None when it has none."""
        cell = self.cells.get("in_report", "").strip()
        return None if not cell else parse_flag(cell, name=f"table.csv {self.run_id}: in_report")

    def related(self, include_untrained: bool) -> bool:
        """Whether the report relates this model: all with `include_untrained`, else as the
        manifest says (`in_report`), else the trained ones."""
        if include_untrained:
            return True
        return self.in_report if self.in_report is not None else not self.untrained

    @property
    def label(self) -> str:
        """A short name for the model on a figure: its run id without the digest suffix."""
        stem, _, digest = self.run_id.rpartition("-")
        return stem if stem and len(digest) == 8 else self.run_id

    def number(self, column: str) -> float:
        """The column as a float; NaN when empty or absent. The gap is derived when its cell is empty."""
        value = _number(self.cells.get(column, ""))
        if column == "generalization_gap" and not math.isfinite(value):
            value = self.number("train_accuracy") - self.number("test_accuracy")
        return value


def _number(text: str) -> float:
    try:
        return float(text) if text.strip() else math.nan
    except ValueError:
        return math.nan


def read_sweep_table(sweep_dir: str | os.PathLike) -> tuple[list[SweepRow], list[str]]:
    """The rows of SWEEP/table.csv and its column names (read with the csv module)."""
    path = Path(sweep_dir).expanduser() / "table.csv"
    if not path.is_file():
        raise InputError(f"no sweep table at {path}; run `mprobe sweep ... --out {sweep_dir}` first.")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise InputError(f"{path} lacks the column(s) {', '.join(missing)}; is it a sweep table?")
        rows = [
            SweepRow(
                {k: (v or "") for k, v in cells.items() if k is not None},
                parse_flag(cells["untrained"] or "", name=f"table.csv row {i}: untrained"),
            )
            for i, cells in enumerate(reader, start=2)
        ]
    if not rows:
        raise InputError(f"{path} has no rows; the sweep has not finished any checkpoint yet.")
    return rows, columns


def _relate(rows: list[SweepRow], measures: list[str], *, seed: int, n_bootstrap: int, n_perm: int) -> dict:
    """{<measure>_vs_<target>: {method: {value, interval, p_value, n}}} over `rows`."""
    out: dict[str, Any] = {}
    for measure in measures:
        x = np.array([row.number(measure) for row in rows])
        for target in TARGETS:
            y = np.array([row.number(target) for row in rows])
            found = correlations(x, y, seed=seed, n_bootstrap=n_bootstrap, n_perm=n_perm)
            out[f"{measure}_vs_{target}"] = {m: found[m].to_dict() for m in METHODS}
    return out


def build_report(
    sweep_dir: str | os.PathLike,
    *,
    seed: int = 0,
    n_bootstrap: int = 1000,
    n_perm: int = 1000,
    include_untrained: bool = False,
    progress: bool = False,
) -> Result:
    """The report Result (command "report") of a sweep folder.

    summary.correlation.<measure>_vs_<target>.<pearson|spearman|kendall>.{value, interval, p_value, n}
    over the models used, and summary.correlation_by_family.<family>.<same keys> within each
    family. Value, interval and p-value are None when fewer than 3 models have both numbers.
    """
    rows, columns = read_sweep_table(sweep_dir)
    used = [row for row in rows if row.related(include_untrained)]
    if not used:
        raise InputError(
            f"the sweep in {sweep_dir} has only untrained models; add --include-untrained to relate them."
        )
    kept = sum(row.untrained for row in used)
    measures = [m for m in measure_columns() if m in columns]
    families = sorted({row.family for row in used})
    groups = [("all", used)] + [(f, [row for row in used if row.family == f]) for f in families]
    computed = {
        name: _relate(group, measures, seed=seed, n_bootstrap=n_bootstrap, n_perm=n_perm)
        for name, group in track(groups, description="correlations", enabled=progress)
    }
    return Result(
        command="report",
        source={"sweep": str(sweep_dir), "table": "table.csv", "n_models": len(rows)},
        params={
            "seed": seed,
            "n_boot": n_bootstrap,
            "n_perm": n_perm,
            "include_untrained": include_untrained,
            "models": "trained and untrained"
            if include_untrained
            else (
                f"trained, and {kept} untrained the manifest keeps (in_report)"
                if kept
                else "trained only (untrained left out)"
            ),
            "measures": measures,
            "targets": list(TARGETS),
            "interval": "95 % bootstrap percentile interval, (x, y) pairs resampled",
            "p_value": "two-sided permutation test, (count + 1) / (n_perm + 1)",
        },
        summary={
            "n_models_used": len(used),
            "n_untrained_left_out": sum(row.untrained and row not in used for row in rows),
            "families": {f: sum(row.family == f for row in used) for f in families},
            "correlation": computed["all"],
            "correlation_by_family": {f: computed[f] for f in families},
        },
    )


# ---------------------------------------------------------------------------------------------
# the page


def _hover(row: SweepRow) -> str:
    settings = "<br>".join(
        f"{key} = {html.escape(row.cells[key])}" for key in SETTINGS if row.cells.get(key, "") != ""
    )
    return (
        f"<b>{html.escape(row.run_id)}</b> ({html.escape(row.family)}"
        f"{', untrained' if row.untrained else ''})<br>{settings}"
        f"<br>train accuracy = {row.number('train_accuracy'):.4f}"
        f"<br>test accuracy = {row.number('test_accuracy'):.4f}"
    )


def _colours(families: list[str]) -> dict[str, str]:
    return {f: PALETTE[i % len(PALETTE)] for i, f in enumerate(families)}


def scatter_figure(result: Result, rows: list[SweepRow], *, target: str = "test_accuracy") -> go.Figure:
    """Each measure against `target`, one point per model coloured by family, the least-squares
    line with its 95 % bootstrap band clipped to the target's range (`TARGET_RANGES`: an
    accuracy band stays in [0, 1]); a dropdown picks the measure (the raw curvature gap first)."""
    params = result.params
    used = [row for row in rows if row.related(params["include_untrained"])]
    families = sorted({row.family for row in rows})
    colour = _colours(families)
    fig = go.Figure()
    buttons, spans = [], []
    for measure in params["measures"]:
        start = len(fig.data)
        for family in families:
            group = [r for r in used if r.family == family and math.isfinite(r.number(measure))]
            if not group:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[r.number(measure) for r in group],
                    y=[r.number(target) for r in group],
                    mode="markers+text",
                    name=family,
                    text=[r.label for r in group],
                    textposition="top center",
                    textfont={"size": 10, "color": "#444"},
                    marker={
                        "color": colour[family],
                        "size": 10,
                        "symbol": ["circle-open" if r.untrained else "circle" for r in group],
                        "line": {
                            "width": 1.5,
                            "color": [colour[family] if r.untrained else "#333" for r in group],
                        },
                    },
                    hovertext=[_hover(r) for r in group],
                    hoverinfo="text",
                )
            )
        x = np.array([r.number(measure) for r in used])
        y = np.array([r.number(target) for r in used])
        fit = linear_fit(x, y, seed=params["seed"], n_bootstrap=params["n_boot"])
        if fit is not None:
            low, high = TARGET_RANGES.get(target, (-np.inf, np.inf))
            band_x = np.concatenate([fit.grid, fit.grid[::-1]])
            band_y = np.clip(np.concatenate([fit.high, fit.low[::-1]]), low, high)
            fig.add_trace(
                go.Scatter(x=band_x, y=band_y, fill="toself", fillcolor="rgba(80,80,80,0.15)",
                           line={"width": 0}, hoverinfo="skip", name="95 % bootstrap band")
            )  # fmt: skip
            fig.add_trace(
                go.Scatter(x=fit.grid, y=np.clip(fit.intercept + fit.slope * fit.grid, low, high),
                           mode="lines",
                           line={"color": "#333", "width": 2},
                           name=f"least squares: slope {fit.slope:.3g}", hoverinfo="name")
            )  # fmt: skip
        spans.append((start, len(fig.data)))
        rho = result.summary["correlation"][f"{measure}_vs_{target}"]["spearman"]
        warning = rho.get("warning")
        label = (
            "insufficient data"
            if rho["value"] is None
            else f"Spearman {rho['value']:.3f}, p {rho['p_value']:.2g}" + (f"; {warning}" if warning else "")
        )
        buttons.append((measure, f"{measure} against {target} ({label}, n = {rho['n']})"))
    total = len(fig.data)
    menu = []
    for (measure, title), (start, stop) in zip(buttons, spans, strict=True):
        visible = [start <= i < stop for i in range(total)]
        layout = {"title.text": title, "xaxis.title.text": measure}
        menu.append({"label": measure, "method": "update", "args": [{"visible": visible}, layout]})
    if menu:
        first_visible, first_title = menu[0]["args"][0]["visible"], buttons[0][1]
        for trace, shown in zip(fig.data, first_visible, strict=True):
            trace.visible = shown
        fig.update_layout(title=first_title, xaxis_title=buttons[0][0])
    fig.update_layout(
        updatemenus=[{"buttons": menu, "direction": "down", "x": 1.0, "xanchor": "right", "y": 1.15,
                      "yanchor": "top", "showactive": True}] if menu else [],
        yaxis_title=f"{target.replace('_', ' ')} (fraction)",
        height=560,
        template="plotly_white",
        hovermode="closest",
        margin={"t": 110},
    )  # fmt: skip
    return fig


def _curvature_protocol(profiles: list[tuple[SweepRow, Result]]) -> str:
    """A sentence naming how the sweep's curvature results chose d ("" without any)."""
    dims = sorted({str(r.params.get("dim")) for _, r in profiles if r.command == "curvature"})
    if not dims:
        return ""
    names = {"twonn": "each layer's rounded TwoNN (Kaufman & Azencot's protocol)",
             "None": "each layer's local spectral gap (no value without a clear gap)"}  # fmt: skip
    return " Curvature: d = " + "; ".join(names.get(d, d) for d in dims) + "."


def load_profiles(sweep_dir: str | os.PathLike, rows: list[SweepRow]) -> list[tuple[SweepRow, Result]]:
    """The per-layer results SWEEP/results/<run_id>/<measure>.json that exist and read back, for
    every row (a damaged one is skipped with a warning)."""
    base = Path(sweep_dir).expanduser() / "results"
    found = []
    for row in rows:
        for measure in PROFILE_MEASURES:
            path = base / row.run_id / f"{measure}.json"
            if path.is_file():
                try:
                    found.append((row, read_result(path)))
                except InputError as exc:  # a damaged result counts as missing
                    warnings.warn(f"skipping {exc}", stacklevel=2)
    return found


def profile_figure(profiles: list[tuple[SweepRow, Result]]) -> go.Figure:
    """Every per-layer metric against relative depth, all models overlaid, a dropdown for the metric.

    Colour: family. Line style: solid = trained, dash = trained with mixup, dot = untrained; the
    legend says how each was made (`SweepRow.kind`).
    """
    metrics: list[str] = []
    for _, result in profiles:
        for layer in result.layers:
            metrics.extend(m for m in layer.metrics if m not in metrics)
    colour = _colours(sorted({row.family for row, _ in profiles}))
    fig = go.Figure()
    spans = []
    for metric in metrics:
        start = len(fig.data)
        drawn: set[str] = set()  # a metric two measures both report (id_twonn) is drawn once per model
        for row, result in profiles:
            layers = [layer for layer in result.layers if layer.metrics.get(metric) is not None]
            if not layers or row.run_id in drawn:
                continue
            drawn.add(row.run_id)
            dash = "dot" if row.untrained else ("dash" if row.mixup else "solid")
            kind = row.kind
            fig.add_trace(
                go.Scatter(
                    x=[layer.depth for layer in layers],
                    y=[layer.metrics[metric] for layer in layers],
                    mode="lines+markers",
                    name=f"{row.run_id} ({kind})",
                    line={"color": colour[row.family], "dash": dash, "width": 1.5},
                    marker={"size": 5},
                    hovertext=[
                        f"<b>{html.escape(row.run_id)}</b> ({html.escape(row.family)}, {kind})"
                        f"<br>{html.escape(layer.name)}<br>{metric} = {layer.metrics[metric]:.4g}"
                        for layer in layers
                    ],
                    hoverinfo="text",
                )
            )
        spans.append((start, len(fig.data)))
    total = len(fig.data)
    menu = [
        {"label": metric, "method": "update",
         "args": [{"visible": [start <= i < stop for i in range(total)]},
                  {"title.text": f"{metric} by layer, all models", "yaxis.title.text": metric}]}
        for metric, (start, stop) in zip(metrics, spans, strict=True)
    ]  # fmt: skip
    if menu:
        for trace, shown in zip(fig.data, menu[0]["args"][0]["visible"], strict=True):
            trace.visible = shown
        fig.update_layout(title=f"{metrics[0]} by layer, all models", yaxis_title=metrics[0])
    fig.update_layout(
        updatemenus=[{"buttons": menu, "direction": "down", "x": 1.0, "xanchor": "right", "y": 1.15,
                      "yanchor": "top", "showactive": True}] if menu else [],
        xaxis_title="relative depth (0 = first measured layer, 1 = logits)",
        height=600,
        template="plotly_white",
        hovermode="closest",
        margin={"t": 110},
    )  # fmt: skip
    return fig


def _cell(entry: dict[str, Any]) -> str:
    if entry["value"] is None:
        return f"<td class='na'>insufficient (n = {entry['n']})</td>"
    interval = entry["interval"]
    text = f"<b>{entry['value']:+.3f}</b>"
    if interval is not None:
        text += f" [{interval[0]:+.3f}, {interval[1]:+.3f}]"
    if entry["p_value"] is not None:
        text += f"<br><span class='p'>p = {entry['p_value']:.2g}, n = {entry['n']}</span>"
    warning = entry.get("warning") or correlation_warning(entry["value"], interval, entry["n"])
    if warning:
        text += f"<br><span class='warn'>&#9888; {html.escape(warning)}</span>"
    strong = entry["p_value"] is not None and entry["p_value"] < 0.05
    return f"<td{' class=sig' if strong else ''}>{text}</td>"


def correlation_table_html(correlation: dict[str, dict], *, caption: str) -> str:
    """An HTML table: one row per <measure>_vs_<target>, one column per coefficient (value [interval], p)."""
    head = "".join(f"<th>{m}</th>" for m in METHODS)
    body = "".join(
        f"<tr><th class='row'>{html.escape(key)}</th>{''.join(_cell(entry[m]) for m in METHODS)}</tr>"
        for key, entry in correlation.items()
    )
    return f"<table><caption>{html.escape(caption)}</caption><tr><th></th>{head}</tr>{body}</table>"


_STYLE = (
    "body{font-family:sans-serif;margin:1.5em;max-width:1300px} p.notes{color:#444;max-width:62em}"
    "table{border-collapse:collapse;margin:1em 0;font-size:14px} caption{text-align:left;font-weight:bold;"
    "padding:.4em 0} td,th{border:1px solid #ccc;padding:.35em .6em;text-align:right} th.row{text-align:left}"
    " td.sig{background:#eef6ee} td.na{color:#999} span.p{color:#555;font-size:12px}"
    " span.warn{color:#a15c00;font-size:12px}"
)


def write_report_page(
    result: Result, sweep_dir: str | os.PathLike, out_html: str | os.PathLike, *, plotlyjs: str = "directory"
) -> Path:
    """The report page (no network; plotly.js in one shared plotly.min.js beside it, or inline
    with `plotlyjs="inline"`), written atomically.

    The measure-versus-test-accuracy and measure-versus-generalization-gap scatters, the layer
    profiles of all models, and the correlation tables (all models, then each family).
    """
    rows, _ = read_sweep_table(sweep_dir)
    params = result.params
    figures = [scatter_figure(result, rows), scatter_figure(result, rows, target="generalization_gap")]
    profiles = load_profiles(sweep_dir, rows)
    if profiles:
        figures.append(profile_figure(profiles))
    summary = result.summary
    tables = [
        correlation_table_html(summary["correlation"], caption=f"All {summary['n_models_used']} models")
    ]
    tables += [
        correlation_table_html(table, caption=f"Family {family} ({summary['families'][family]} models)")
        for family, table in summary["correlation_by_family"].items()
    ]
    notes = (
        f"{summary['n_models_used']} models of {result.source['n_models']} in {result.source['sweep']} "
        f"({params['models']}). Each cell: coefficient [{params['interval']}]; p: {params['p_value']} "
        f"({params['n_perm']} permutations, {params['n_boot']} resamples, seed {params['seed']}); green: "
        "p < 0.05. Scatter: filled circles trained, open circles untrained; hover for each checkpoint's "
        "settings. Profiles: solid = trained, dashed = mixup, dotted = untrained; colour = family."
        + _curvature_protocol(profiles)
    )
    title = "mprobe report: geometry against generalization"
    parts = [
        *figures[:2],
        *(["<h2>Layer profiles</h2>", figures[2]] if profiles else ["<p>No per-layer results found.</p>"]),
        "<h2>Correlations</h2>",
        *tables,
    ]
    return write_page(out_html, parts, title=title, notes=notes, style=_STYLE, plotlyjs=plotlyjs)
