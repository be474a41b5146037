"""Terminal tables of results (rich), shared by the command line and notebooks.

`layer_table` shows any per-layer result; `result_tables` gives every table of one result
(per command: the classifier's metrics of `collapse`, the Fisher block of `spectra`, the
per-class table of `cutting-planes`, the epoch table of a collapse series).
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from ..profiles.collapse import CLASSIFIER_METRICS, COLLAPSE_METRICS, FISHER_METRICS, SPECTRA_METRICS
from ..profiles.curvature import CURVATURE_METRICS
from ..results import Result


def format_value(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}" if abs(value) < 100 else f"{value:.1f}"
        return f"{value:.3e}"
    return str(value)


def layer_table(result: Result, metrics: list[str], *, title: str = "") -> Table:
    """One row per layer: name, activation shape, then each metric (with its interval if any)."""
    table = Table(title=title or None, header_style="bold")
    table.add_column("layer", style="cyan")
    table.add_column("shape")
    shown = [m for m in metrics if any(m in layer.metrics for layer in result.layers)]
    for metric in shown:
        table.add_column(metric, justify="right")
    for layer in result.layers:
        shape = "x".join(str(s) for s in (layer.shape or [layer.ambient_dim]))
        cells = []
        for metric in shown:
            text = format_value(layer.metrics.get(metric))
            if metric in layer.intervals:
                low, high = layer.intervals[metric]
                text += f" [{format_value(low)}, {format_value(high)}]"
            cells.append(text)
        table.add_row(layer.name, shape, *cells)
    return table


def classifier_layer(result: Result):
    """The layer result the classifier acts on (None without a classifier)."""
    name = (result.summary.get("classifier") or {}).get("layer")
    return next((layer for layer in result.layers if layer.name == name), None)


def metric_table(title: str, layer, metrics) -> Table:
    table = Table(title=title, header_style="bold")
    table.add_column("metric", style="cyan")
    table.add_column("value", justify="right")
    for metric in metrics:
        if metric in layer.metrics:
            table.add_row(metric, format_value(layer.metrics[metric]))
    return table


def collapse_tables(result: Result) -> list[Table]:
    """The per-layer table, the classifier's metrics and, for several checkpoints, an epoch table."""
    tables = [
        layer_table(result, list(COLLAPSE_METRICS[:4]), title="neural collapse by layer"),
        layer_table(result, list(COLLAPSE_METRICS[4:]), title="NC2: the class means by layer"),
    ]
    layer = classifier_layer(result)
    if layer is not None:
        module = result.summary["classifier"]["module"]
        tables.append(metric_table(f"classifier {module} on layer {layer.name}", layer, CLASSIFIER_METRICS))
    checkpoints = result.summary.get("checkpoints") or []
    if len(checkpoints) > 1:
        table = Table(title="over training (the classifier's layer)", header_style="bold")
        columns = ["nc1", "etf_distance", "nc3_self_duality", "nc4_ncc_mismatch"]
        for name in ("epoch", "train acc", "test acc", *columns, "checkpoint"):
            table.add_column(name, justify="left" if name == "checkpoint" else "right")
        for entry in checkpoints:
            table.add_row(
                format_value(entry["epoch"]),
                format_value(entry["train_accuracy"]),
                format_value(entry["test_accuracy"]),
                *(format_value(entry["metrics"].get(m)) for m in columns),
                Path(str(entry["model"])).name,
            )
        tables.append(table)
    return tables


def spectra_tables(result: Result) -> list[Table]:
    """The per-layer spectra table and, on the classifier's layer, the Fisher block's metrics."""
    tables = [layer_table(result, list(SPECTRA_METRICS), title="class/cross-class spectra by layer")]
    layer = classifier_layer(result)
    if layer is not None and "fisher_n_outliers" in layer.metrics:
        title = f"Fisher block of the classifier on layer {layer.name}"
        tables.append(metric_table(title, layer, FISHER_METRICS))
    return tables


SPARK = "·▁▂▃▄▅▆▇█"


def _hits_cell(entry: dict) -> str:
    """Hit fraction per d, compact: one bar character per swept d, then (up to 6 dims) the counts."""
    records = entry["success"]
    bars = "".join(SPARK[round(r["hit_fraction"] * (len(SPARK) - 1))] for r in records)
    if len(records) > 6:
        return bars
    return f"{bars} {' '.join(str(r['hits']) for r in records)}"


def target_name(entry: dict) -> str:
    target = entry["class"]
    return "{" + ", ".join(map(str, target)) + "}" if isinstance(target, list) else str(target)


def _dim(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def _with_interval(value, low, high) -> str:
    return f"{_dim(value)} [{_dim(low)}, {_dim(high)}]"


def class_table(result: Result) -> Table:
    """One row per target: d* [interval], D - d* [interval], status, hits per d (bars and counts)."""
    dims = result.params["dims"]
    planes = result.params["planes"]
    input_dim = result.summary["input_dim"]
    table = Table(
        title=f"class-manifold dimension by cutting planes (D = {input_dim})",
        caption=f"hits per d: share of {planes} planes that hit, · none to █ all; "
        f"d = {', '.join(map(str, dims))}",
        header_style="bold",
    )
    table.add_column("class", style="cyan", no_wrap=True)
    table.add_column("d* [95 %]", justify="right", no_wrap=True)
    table.add_column("D - d* [95 %]", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("hits per d", no_wrap=True)
    for entry in result.classes:
        table.add_row(
            target_name(entry),
            _with_interval(entry["critical_dim"], *entry["critical_dim_interval"]),
            _with_interval(entry["manifold_dim"], *entry["manifold_dim_interval"]),
            entry["critical_dim_status"],
            _hits_cell(entry),
        )
    return table




def result_tables(result: Result) -> list[Table]:
    """Every terminal table of one result, by its command."""
    if result.command == "collapse":
        return collapse_tables(result)
    if result.command == "spectra":
        return spectra_tables(result)
    if result.command == "cutting-planes":
        return [class_table(result)]
    if result.command == "curvature":
        return [layer_table(result, [*CURVATURE_METRICS, "id_twonn"], title="curvature by layer")]
    metrics = list(dict.fromkeys(k for layer in result.layers for k in layer.metrics))
    return [layer_table(result, metrics, title="intrinsic dimension by layer")]
