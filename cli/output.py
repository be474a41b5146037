"""Terminal tables and result files for every command."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from manifold_probe.results import Result

console = Console()
err_console = Console(stderr=True)


def _format(value) -> str:
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
    the `details` fields asked for (e.g. a status)."""
    table = Table(title=title or None, header_style="bold")
    table.add_column("layer", style="cyan")
    table.add_column("shape")
    shown = [m for m in metrics if any(m in layer.metrics for layer in result.layers)]
    for metric in shown:
        table.add_column(metric, justify="right")
    extra = [d for d in details if any(d in layer.details for layer in result.layers)]
    for name in extra:
        table.add_column(name)
    for layer in result.layers:
        shape = "x".join(str(s) for s in (layer.shape or [layer.ambient_dim]))
        cells = []
        for metric in shown:
            text = _format(layer.metrics.get(metric))
            if metric in layer.intervals:
                low, high = layer.intervals[metric]
                text += f" [{_format(low)}, {_format(high)}]"
            cells.append(text)
        cells += [str(layer.details.get(name, "")) for name in extra]
        table.add_row(layer.name, shape, *cells)
    return table


def print_layers(
    result: Result, metrics: list[str], *, title: str = "", details: tuple[str, ...] = ()
) -> None:
    console.print(layer_table(result, metrics, title=title, details=details))


def write_outputs(result: Result, json_path: Path | None) -> None:
    """Write the JSON result if asked for, and say where."""
    if json_path is not None:
        result.write(json_path)
        err_console.print(f"wrote {json_path}")
