"""The result schema `manifold-probe/result@1`, its JSON writer and reader.

One result file per command run. Layers carry `metrics` (stable snake_case names, listed
in docs/methods.md), optional `intervals` ([low, high] per metric) and free-form `details`
(quantiles, spectra). Non-finite numbers are written as JSON null. Files are written
atomically (temporary file, then rename), so an earlier result is never half-overwritten.

Every measure of the Python API returns a `Result`, and every `Result` has one interface:
`metrics`, `intervals` and `details` (keyed by layer, or by target class for cutting planes),
`to_frame()` (a pandas DataFrame with the columns layer, metric, value, low, high, status),
`to_dict()`, `write(path)` (the JSON) and `to_html(path)` (a self-contained Plotly page).
Results are frozen: their fields cannot be reassigned.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import InputError
from .files import atomic_write

SCHEMA = "manifold-probe/result@1"


@dataclass(frozen=True)
class LayerResult:
    """One layer's measurements. `depth` is the relative depth index / (n_layers - 1) in [0, 1]."""

    name: str
    index: int
    depth: float
    ambient_dim: int
    n_points: int
    metrics: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, list[float]] = field(default_factory=dict)
    shape: list[int] | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    """A whole measure's result: where the data came from, the parameters, per-layer and per-class parts.

    Example
    -------
    >>> r = mp.intrinsic_dimension(np.random.default_rng(0).normal(size=(500, 3)), methods=("twonn",))
    >>> r.metrics["points"]["id_twonn"]  # about 3
    >>> r.to_frame().columns.tolist()
    ['layer', 'metric', 'value', 'low', 'high']
    """

    command: str
    source: dict[str, Any]
    params: dict[str, Any]
    layers: list[LayerResult] = field(default_factory=list)
    classes: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA
    version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        order = ["schema", "command", "version", "source", "params", "layers", "classes", "summary"]
        return {key: _plain(d[key]) for key in order}

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        """Layer name (or target class for cutting planes) -> metric name -> value."""
        return {part: {m: value for m, value, _, _ in rows} for part, (_, rows) in self._parts().items()}

    @property
    def intervals(self) -> dict[str, dict[str, list[float]]]:
        """Layer name (or target class) -> metric name -> [low, high], for metrics that have one."""
        return {
            part: {m: [low, high] for m, _, low, high in rows if low is not None or high is not None}
            for part, (_, rows) in self._parts().items()
        }

    @property
    def details(self) -> dict[str, dict[str, Any]]:
        """Layer name (or target class) -> the free-form details (spectra, quantiles, success curves)."""
        if self.classes:
            names = self.source.get("class_names")
            return {class_label(entry, names): dict(entry) for entry in self.classes}
        return {layer.name: dict(layer.details) for layer in self.layers}

    def _parts(self) -> dict[str, tuple[str, list[tuple[str, Any, Any, Any]]]]:
        """(status, [(metric, value, low, high), ...]) of every layer, or of every target class."""
        parts: dict[str, tuple[str, list[tuple[str, Any, Any, Any]]]] = {}
        for layer in self.layers:
            parts[layer.name] = (
                layer.details.get("status", "measured"),
                [
                    (name, value, *(layer.intervals.get(name) or (None, None)))
                    for name, value in layer.metrics.items()
                ],
            )
        for entry in self.classes:
            rows = []
            for name in CLASS_METRICS:
                if name in entry:
                    low, high = entry.get(f"{name}_interval") or (None, None)
                    rows.append((name, entry[name], low, high))
            parts[class_label(entry, self.source.get("class_names"))] = (
                entry.get("critical_dim_status", ""),
                rows,
            )
        return parts

    def to_frame(self):
        """The measurements as a pandas DataFrame: one row per (layer, metric), the columns
        `layer, metric, value, low, high, status` (low and high NaN where there is no interval;
        `status` the layer's: measured, cannot_tell, uncertain_dimension, not_measurable, with
        the reason in `layer(name).details`; a skipped layer has no metrics and no rows). For
        cutting planes `layer` names the target class, e.g. `class 3`, or `class 1 (Trouser)`
        when the data set names its classes, and `status` is its `critical_dim_status`.

        Example
        -------
        >>> r.to_frame().pivot(index="layer", columns="metric", values="value")
        """
        import pandas as pd

        rows = [
            (part, name, _number(value), _number(low), _number(high), status)
            for part, (status, entries) in self._parts().items()
            for name, value, low, high in entries
        ]
        return pd.DataFrame(rows, columns=["layer", "metric", "value", "low", "high", "status"])

    def to_html(self, path: str | os.PathLike) -> Path:
        """Write a self-contained interactive page (Plotly, opens offline) of this result;
        returns the path."""
        from .report.pages import write_result_page

        write_result_page(path, [self])
        return Path(path)

    def layer(self, name: str) -> LayerResult:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def write(self, path: str | os.PathLike) -> Path:
        """Write the JSON atomically; returns the path."""
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False)
        with atomic_write(path, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        return Path(path)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        if d.get("schema") != SCHEMA:
            raise InputError(f"not a {SCHEMA} file (schema field is {d.get('schema')!r}).")
        layers = [LayerResult(**layer) for layer in d.get("layers", [])]
        return cls(
            command=d["command"],
            source=d.get("source", {}),
            params=d.get("params", {}),
            layers=layers,
            classes=d.get("classes", []),
            summary=d.get("summary", {}),
            version=d.get("version", "unknown"),
        )


def read_result(path: str | os.PathLike) -> Result:
    """Read a result file written by `Result.write`."""
    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"result file not found: {p}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{p} is not valid JSON ({exc.msg} at line {exc.lineno}).") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"could not read result file {p}: {exc}.") from None
    if not isinstance(d, dict):
        raise InputError(f"{p} holds a JSON {type(d).__name__}, not a result (a JSON object).")
    try:
        return Result.from_dict(d)
    except (KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{p} is not a complete {SCHEMA} result ({type(exc).__name__}: {exc}).") from None


CLASS_METRICS = ("critical_dim", "manifold_dim")
"""The per-class numbers of a cutting-planes result that `metrics` and `to_frame` show."""


def class_name(label: Any, class_names: Sequence[str] | None = None) -> str | None:
    """The data set's name of class `label` (`source.class_names`), or None when it has none.

    >>> class_name(1, ["T-shirt/top", "Trouser"]), class_name(1, None)
    ('Trouser', None)
    """
    if class_names and isinstance(label, int) and 0 <= label < len(class_names):
        return str(class_names[label])
    return None


def class_label(entry: dict[str, Any], class_names: Sequence[str] | None = None) -> str:
    """How a cutting-planes target is named in `metrics` and `to_frame`: `class 3`, `set {3, 5}`,
    with the data set's class names when it has them: `class 1 (Trouser)`, `set {0 T-shirt/top, 6 Shirt}`."""
    target = entry.get("class")
    if isinstance(target, (list, tuple)):
        members = (f"{c} {name}" if (name := class_name(c, class_names)) else str(c) for c in target)
        return "set {" + ", ".join(members) + "}"
    name = class_name(target, class_names)
    return f"class {target} ({name})" if name else f"class {target}"


def _number(value: Any) -> float:
    """A metric value as a float (None and non-numbers as NaN) for the DataFrame."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _plain(value: Any) -> Any:
    """Numpy scalars and arrays to plain Python; NaN and Inf to None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    return value
