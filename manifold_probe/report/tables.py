"""Terminal tables of results (rich), shared by the command line and notebooks.

`layer_table` shows any per-layer result and `measure_tables` is the generic table of a
measure (its registry entry's metrics); `result_tables` gives every table of one result, from
the measure's registry entry (the classifier's metrics of `collapse`, the Fisher block of
`spectra`, the per-class table of `cutting-planes`, the epoch table of a collapse series).
The tables of the study (`layers_table`, `zoo_table`, `sweep_table`, `correlation_tables`) are
here too: the command line only prints them.
"""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.table import Table

from .. import registry
from ..metric_names import (
    CLASSIFIER_METRICS,
    COLLAPSE_METRICS,
    CURVATURE_TABLE_METRICS,
    FISHER_METRICS,
    SPECTRA_METRICS,
)
from ..results import ClassResult, Result, class_name


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


def layer_table(
    result: Result, metrics: list[str], *, title: str = "", details: tuple[str, ...] = ()
) -> Table:
    """One row per layer: name, activation shape, each metric (with its interval if any), then
    the `details` fields asked for and, when any layer is not plainly measured, its status."""
    table = Table(title=title or None, header_style="bold")
    table.add_column("layer", style="cyan", overflow="fold")  # full names: blocks differ at the end
    table.add_column("shape")
    shown = [m for m in metrics if any(m in layer.metrics for layer in result.layers)]
    for metric in shown:
        table.add_column(metric, justify="right")
    extra = [d for d in dict.fromkeys(details) if any(d in layer.details for layer in result.layers)]
    for name in extra:
        table.add_column(name)
    with_status = any(layer.status != "measured" for layer in result.layers) or "status" in details
    if with_status:
        table.add_column("status")
    for layer in result.layers:
        shape = "x".join(str(s) for s in (layer.shape or [layer.ambient_dim]))
        cells = []
        for metric in shown:
            text = format_value(layer.metrics.get(metric))
            if metric in layer.intervals:
                low, high = layer.intervals[metric]
                text += f" [{format_value(low)}, {format_value(high)}]"
            cells.append(text)
        cells += [str(layer.details.get(name, "")) for name in extra]
        cells += [layer.status] if with_status else []
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


def _hits_cell(entry: ClassResult) -> str:
    """Hit fraction per d, compact: one bar character per swept d, then (up to 6 dims) the counts."""
    records = entry.success
    bars = "".join(SPARK[round(r.hit_fraction * (len(SPARK) - 1))] for r in records)
    if len(records) > 6:
        return bars
    return f"{bars} {' '.join(str(r.hits) for r in records)}"


def target_name(entry: ClassResult, class_names=None) -> str:
    """The target of a cutting-planes entry, one class or a set of classes in braces, by the
    data set's class names when it has them (`source.class_names`), else by label."""
    target = entry.target
    if isinstance(target, tuple):
        return "{" + ", ".join(class_name(c, class_names) or str(c) for c in target) + "}"
    return class_name(target, class_names) or str(target)


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
            target_name(entry, result.source.get("class_names")),
            _with_interval(entry.critical_dim, *entry.critical_dim_interval),
            _with_interval(entry.manifold_dim, *entry.manifold_dim_interval),
            entry.status,
            _hits_cell(entry),
        )
    return table


def cutting_planes_tables(result: Result) -> list[Table]:
    """The per-target table of a cutting-planes result."""
    return [class_table(result)]


def curvature_tables(result: Result) -> list[Table]:
    """The per-layer curvature table, with each layer's d and status."""
    metrics = [
        *CURVATURE_TABLE_METRICS,
        "curvature_sff_null",
        "curvature_p_value",
        "mapc_null",
        "mapc_p_value",
    ]
    return [layer_table(result, metrics, title="curvature by layer", details=("dim", "status"))]


def measure_tables(result: Result, measure: registry.Measure) -> list[Table]:
    """The generic table of a per-layer measure: its metrics (every metric the result holds,
    the measure's own first) and its `table_details`."""
    found = dict.fromkeys(k for layer in result.layers for k in layer.metrics)
    metrics = [m for m in measure.metrics if m in found] + [m for m in found if m not in measure.metrics]
    return [layer_table(result, metrics, title=f"{measure.description}", details=measure.table_details)]


def result_tables(result: Result) -> list[Table]:
    """Every terminal table of one result, from its measure's registry entry."""
    return registry.get(result.command).result_tables(result)


def layers_table(layers, *, title: str, defaults_only: bool = False) -> Table:
    """The layers of a model (`api.list_layers`): name, module type, output shape, kind
    (vector, token sequence, spatial map), a spatial map's layout (channels_first: C x H x W,
    channels_last: H x W x C), features, whether it is a default layer."""
    table = Table(title=title, header_style="bold")
    table.add_column("layer", style="cyan", overflow="fold")
    for column in ("module", "output shape", "kind", "layout", "features", "default"):
        table.add_column(column)
    for layer in layers:
        if not defaults_only or layer.default:
            shape = "x".join(str(s) for s in layer.output_shape)
            table.add_row(layer.name, layer.module_type, shape, layer.kind, getattr(layer, "layout", ""),
                          str(layer.n_features), "yes" if layer.default else "")  # fmt: skip
    return table


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def zoo_table(entries, *, title: str) -> Table:
    """The models of a zoo (`zoo_presets.ZooEntry`): family, train and test accuracy, gap."""
    table = Table(title=title, header_style="bold")
    table.add_column("model", style="cyan", overflow="fold")
    table.add_column("family")
    for column in ("train acc %", "test acc %", "gap"):
        table.add_column(column, justify="right")
    table.add_column("")
    for entry in entries:
        train, test = entry.metrics.get("train_accuracy"), entry.metrics.get("test_accuracy")
        gap = "-" if train is None or test is None else f"{100 * (train - test):.1f}"
        table.add_row(entry.name, entry.family, _percent(train), _percent(test), gap,
                      "trained" if entry.trained else "kept")  # fmt: skip
    return table


def sweep_table(summary) -> Table:
    """How many tasks of a sweep (`sweep.SweepSummary`) were done, skipped and failed, and how
    many manifest rows were not run (when any)."""
    table = Table(title=f"sweep of {summary.checkpoints} checkpoints", header_style="bold")
    rejected = len(getattr(summary, "rejected", ()))
    for name in ("done", "skipped", "failed", *(["rows not run"] if rejected else [])):
        table.add_column(name, justify="right")
    counts = [len(summary.done), summary.skipped, len(summary.failed), *([rejected] if rejected else [])]
    table.add_row(*map(str, counts))
    return table


def _correlation_cell(entry: dict) -> str:
    if entry["value"] is None:
        return f"[dim]insufficient\n(n = {entry['n']})[/dim]"
    text = f"{entry['value']:+.3f}"
    if entry["interval"] is not None:
        text += f"\n[{entry['interval'][0]:+.2f}, {entry['interval'][1]:+.2f}]"
    if entry["p_value"] is not None:
        text += f"\np = {entry['p_value']:.2g}"
    significant = entry["p_value"] is not None and entry["p_value"] < 0.05
    cell = f"[green]{escape(text)}[/green]" if significant else escape(text)
    warning = _warning(entry)
    return cell + (f"\n[yellow]! {escape(warning)}[/yellow]" if warning else "")


def _warning(entry: dict) -> str | None:
    """The entry's warning (`statistics.correlation_warning`), also for reports written before it."""
    from .statistics import correlation_warning

    return entry.get("warning") or correlation_warning(entry["value"], entry["interval"], entry["n"])


def correlation_tables(correlation: dict, *, title: str) -> list[Table]:
    """One table per target, one row per measure; each coefficient as value, [95 % interval], p-value."""
    from ..study.report import TARGETS
    from .statistics import METHODS

    tables = []
    for target in TARGETS:
        table = Table(title=f"{title}: against {target}", header_style="bold", show_lines=True)
        table.add_column("measure", style="cyan", no_wrap=True)
        for method in METHODS:
            table.add_column(method, justify="right", max_width=34)
        for key, entry in correlation.items():
            measure, _, against = key.partition("_vs_")
            if against == target:
                table.add_row(measure, *(_correlation_cell(entry[m]) for m in METHODS))
        tables.append(table)
    return tables
