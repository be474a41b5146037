"""The result schema `manifold-probe/result@1`, its JSON writer and reader.

One result file per command run. Layers carry `metrics` (stable snake_case names, see
DESIGN.md), optional `intervals` ([low, high] per metric) and free-form `details`
(quantiles, spectra). Non-finite numbers are written as JSON null. Files are written
atomically (temporary file, then rename), so an earlier result is never half-overwritten.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import InputError
from .files import atomic_write

SCHEMA = "manifold-probe/result@1"


@dataclass
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


@dataclass
class Result:
    """A whole command's result: where the data came from, the parameters, per-layer and per-class parts."""

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
