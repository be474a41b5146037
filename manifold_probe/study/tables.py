"""The tables of a sweep: one row per checkpoint (`table.csv`, `table.parquet`) and the long
form, one row per checkpoint, measure, layer and metric (`layers.csv`, `layers.parquet`).

The measure columns of the table come from each measure's registry entry (`SweepSpec.columns`);
a checkpoint's settings and accuracies from its metadata, its zoo entry or its manifest row.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import registry
from ..errors import InputError
from ..files import atomic_save, atomic_write
from ..results import Result, read_result
from .checkpoints import SweepCheckpoint, describe_checkpoints

TABLE_CSV = "table.csv"
TABLE_PARQUET = "table.parquet"
LAYERS_CSV = "layers.csv"
LAYERS_PARQUET = "layers.parquet"

LAYER_COLUMN_TYPES: dict[str, str] = {
    "run_id": "string",
    "checkpoint": "string",
    "family": "string",
    "measure": "string",
    "layer": "string",
    "depth": "float",
    "metric": "string",
    "value": "float",
    "low": "float",
    "high": "float",
    "status": "string",
}
"""The long-form table's columns and types: one row per (checkpoint, measure, layer, metric), with
the layer's status (`Result.to_frame`); for cutting planes `layer` names the target
(`class 3`), `depth` is empty and `status` is the target's reading status."""

SETTING_DEFAULTS: dict[str, Any] = {
    "mixup": 0.0,
    "label_smoothing": 0.0,
    "label_noise": 0.0,
    "train_size": None,
}
"""Training settings a checkpoint may lack, and what they mean when absent (train_size None: all)."""

COLUMN_TYPES: dict[str, str] = {
    "run_id": "string",
    "checkpoint": "string",
    "family": "string",
    "arch": "string",
    "untrained": "bool",
    "epochs": "int",
    "width": "int",
    "arch_depth": "int",
    "weight_decay": "float",
    "mixup": "float",
    "label_smoothing": "float",
    "label_noise": "float",
    "train_size": "int",
    "seed": "int",
    "train_accuracy": "float",
    "test_accuracy": "float",
    "generalization_gap": "float",
    "in_report": "bool",
}
"""The table's known columns, in order, and their types. `arch_depth` is the architecture's
depth setting (blocks or hidden layers; `depth` in layers.csv and the results is a layer's
relative position); `in_report` a manifest's say on whether the report relates the model. A
column no checkpoint has a value for is left out of the table (`REQUIRED_COLUMNS` excepted)."""

REQUIRED_COLUMNS = ("run_id", "checkpoint", "family", "arch", "untrained", "train_accuracy", "test_accuracy",
                    "generalization_gap")  # fmt: skip
"""The columns every sweep table has, even empty (the report reads them)."""


def measure_columns(name: str) -> tuple[str, ...]:
    """The table columns the measure `name` adds (its registry entry's sweep columns)."""
    spec = registry.get(name).sweep
    return tuple(column.name for column in spec.columns) if spec else ()


def _read(results: Path, measure: str) -> Result | None:
    path = results / f"{measure}.json"
    if not path.is_file():
        return None
    try:
        result = read_result(path)
    except (InputError, KeyError, TypeError, UnicodeDecodeError, OSError):
        return None
    return result if result.command == measure else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if np.isfinite(value) else None


def _measures(results: Path) -> dict[str, dict[str, float | None]]:
    """The table columns of every measure whose result is in `results`, by measure (each
    measure's registry entry says which columns it adds and where they are read)."""
    found: dict[str, dict[str, float | None]] = {}
    for name in registry.sweep_measures():
        result = _read(results, name)
        if result is not None:
            found[name] = {
                column.name: _number(column.read(result)) for column in registry.get(name).sweep.columns
            }
    return found


def _arch(info: SweepCheckpoint) -> str | None:
    return (info.metadata or {}).get("arch") or info.arch


def _family(info: SweepCheckpoint) -> str | None:
    """The checkpoint's family in the tables and the report: its zoo's or manifest's, else its arch."""
    return info.family or _arch(info)


def _row(info: SweepCheckpoint, measures: dict[str, dict[str, float | None]]) -> dict[str, Any]:
    meta = info.metadata or {}
    training = dict(meta.get("training") or {})
    arch_args = dict(meta.get("arch_args") or info.arch_args or {})
    defaults = SETTING_DEFAULTS if "training" in meta else {}  # only mprobe's own training has these settings
    settings = {**defaults, **info.settings, **{k: v for k, v in training.items() if v is not None}}
    metrics = meta.get("metrics") or info.metrics
    epoch = meta.get("epoch", settings.get("epochs"))
    arch = _arch(info)
    train_acc, test_acc = _number(metrics.get("train_accuracy")), _number(metrics.get("test_accuracy"))
    row: dict[str, Any] = {
        "run_id": info.run_id,
        "checkpoint": info.path,
        "family": _family(info),
        "arch": arch,
        "untrained": None if epoch is None else int(epoch) == 0,
        "epochs": epoch,
        "width": arch_args.get("width", settings.get("width")),
        "arch_depth": arch_args.get("depth", settings.get("depth")),
        "weight_decay": settings.get("weight_decay"),
        "mixup": settings.get("mixup"),
        "label_smoothing": settings.get("label_smoothing"),
        "label_noise": settings.get("label_noise"),
        "train_size": settings.get("train_size"),
        "seed": meta.get("seed", settings.get("seed")),
        "train_accuracy": train_acc,
        "test_accuracy": test_acc,
        "generalization_gap": None if train_acc is None or test_acc is None else train_acc - test_acc,
        "in_report": info.settings.get("in_report"),
    }
    row.update({name: info.settings.get(name) for name in info.hyper_parameters if name not in row})
    row.pop("depth", None)  # a manifest's `depth` column is the architecture's: arch_depth
    for values in measures.values():
        row.update(values)
    return row


def _typed(value: Any, kind: str) -> Any:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    if kind == "string":
        return str(value)
    if kind == "bool":
        return bool(value)
    if kind == "int":
        return int(value) if float(value) == int(value) else None
    return float(value)


def collect_table(
    sweep_dir: str | os.PathLike, checkpoints: Sequence[str | os.PathLike | SweepCheckpoint]
) -> list[dict[str, Any]]:
    """One row per checkpoint: its settings and metrics, and the measure columns of every measure
    that has a result for some checkpoint (None where a checkpoint lacks it). Columns: those of
    `COLUMN_TYPES` some checkpoint has (all of `REQUIRED_COLUMNS`), the manifest's own
    hyper-parameter columns, then each measure's columns (`measure_columns`) in the registry's
    order. Training settings default (`SETTING_DEFAULTS`: mixup 0, ...) only for mprobe's own
    checkpoints; a manifest's checkpoint has the settings its row gives."""
    results = Path(sweep_dir).expanduser() / "results"
    infos = describe_checkpoints(checkpoints)
    measured = [_measures(results / info.run_id) for info in infos]
    names = [m for m in registry.sweep_measures() if any(m in found for found in measured)]
    extra = list(dict.fromkeys(h for info in infos for h in info.hyper_parameters
                               if h not in COLUMN_TYPES and h != "depth"))  # fmt: skip
    raw = [_row(info, measures) for info, measures in zip(infos, measured, strict=True)]
    known = [c for c in COLUMN_TYPES if c in REQUIRED_COLUMNS or any(row.get(c) is not None for row in raw)]
    columns = known + extra + [c for m in names for c in measure_columns(m)]
    types = {**{c: _column_type([row.get(c) for row in raw]) for c in extra}, **COLUMN_TYPES}
    return [{c: _typed(row.get(c), types.get(c, "float")) for c in columns} for row in raw]


def _column_type(values: list[Any]) -> str:
    """The type of a manifest's own column: float when every value is a number, else string."""
    numbers = all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values)
    return "float" if numbers else "string"


def parquet_available() -> bool:
    """Whether pyarrow imports (the table is then also written as Parquet)."""
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def write_table(rows: list[dict[str, Any]], sweep_dir: str | os.PathLike) -> tuple[Path, Path | None]:
    """Write `table.csv` (always; None as an empty cell) and `table.parquet` (when pyarrow
    imports) into `sweep_dir`, atomically; returns their paths (Parquet None when not written)."""
    out = Path(sweep_dir).expanduser()
    columns = list(rows[0]) if rows else list(COLUMN_TYPES)
    types = {c: COLUMN_TYPES.get(c) or _column_type([row.get(c) for row in rows]) for c in columns}
    return _write_tables(rows, columns, types, out / TABLE_CSV, out / TABLE_PARQUET)


def write_layer_table(rows: list[dict[str, Any]], sweep_dir: str | os.PathLike) -> tuple[Path, Path | None]:
    """Write the long form `layers.csv` (and `layers.parquet` when pyarrow imports) into
    `sweep_dir`, atomically; returns their paths (Parquet None when not written)."""
    out = Path(sweep_dir).expanduser()
    columns = list(LAYER_COLUMN_TYPES)
    return _write_tables(rows, columns, LAYER_COLUMN_TYPES, out / LAYERS_CSV, out / LAYERS_PARQUET)


def _write_tables(
    rows: list[dict[str, Any]], columns: list[str], types: dict[str, str], csv_path: Path, parquet_path: Path
) -> tuple[Path, Path | None]:
    with atomic_write(csv_path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
    if not parquet_available():
        return csv_path, None
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = {"string": pa.string(), "bool": pa.bool_(), "int": pa.int64(), "float": pa.float64()}
    schema = pa.schema([(c, arrow[types.get(c, "float")]) for c in columns])
    table = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows], schema=schema)
    atomic_save(parquet_path, lambda tmp: pq.write_table(table, tmp))
    return csv_path, parquet_path


def collect_layer_table(
    sweep_dir: str | os.PathLike, checkpoints: Sequence[str | os.PathLike | SweepCheckpoint]
) -> list[dict[str, Any]]:
    """The long form of a sweep: one row per checkpoint, measure, layer and metric, with the
    layer's relative depth and the metric's interval (`LAYER_COLUMN_TYPES`); from every result
    in the sweep folder, measures in the registry's order. A skipped layer has no metrics, so no rows;
    for cutting planes `layer` is the target (`class 3`) and `depth` is None."""
    results = Path(sweep_dir).expanduser() / "results"
    rows = []
    for info in describe_checkpoints(checkpoints):
        family = _family(info)
        for measure in registry.sweep_measures():
            result = _read(results / info.run_id, measure)
            if result is None:
                continue
            for part, depth, metric, value, low, high, status in result.to_frame().itertuples(index=False):
                rows.append({
                    "run_id": info.run_id, "checkpoint": info.path, "family": family, "measure": measure,
                    "layer": str(part), "depth": _number(depth), "metric": metric,
                    "value": _number(value), "low": _number(low), "high": _number(high), "status": status,
                })  # fmt: skip
    return rows
