"""The result schema `manifold-probe/result@1`: immutable, typed results, their JSON writer and reader.

Every measure returns a `Result`, built once and never changed afterwards: its mappings are
read-only (`FrozenMap`), its lists are tuples, and its parts are typed:

- `LayerResult`: one layer's `metrics` (stable snake_case names, docs/methods.md),
  `intervals` ((low, high) per metric), free-form `details`, and its `status` and `reason`
  (the `STATUSES` vocabulary: why a layer has no number, or why a number is NaN);
- `ClassResult`: one target of a cutting-planes result (a class, or a set of classes).

One interface for every measure: `metrics`, `intervals` and `details` (keyed by layer, or
by target for cutting planes), `to_frame()` (a pandas DataFrame), `to_dict()`,
`write(path)` (the JSON), `to_html(path)` (a self-contained Plotly page), a short
`repr`, and an HTML table in notebooks. `concat(results)` puts several results in one frame.

Non-finite numbers are written as JSON null. Files are written atomically (temporary file,
then rename), so an earlier result is never half-overwritten. Files written before layers
had their own `status` and `reason` (they were in `details`) read back the same way.

Example
-------
>>> import numpy as np, manifold_probe as mp
>>> r = mp.intrinsic_dimension(np.random.default_rng(0).normal(size=(500, 3)), methods=("twonn",))
>>> round(r.metrics["points"]["id_twonn"])
3
>>> r.to_frame().columns.tolist()
['layer', 'depth', 'metric', 'value', 'low', 'high', 'status']
"""

from __future__ import annotations

import importlib
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import InputError
from .files import atomic_write

SCHEMA = "manifold-probe/result@1"

# --- statuses ----------------------------------------------------------------------------

MEASURED = "measured"
SKIPPED = "skipped"
NOT_MEASURABLE = "not_measurable"
CANNOT_TELL = "cannot_tell"
UNCERTAIN_DIMENSION = "uncertain_dimension"
NO_MANIFOLD_SCALE = "no_manifold_scale"
PAPER_PROTOCOL = "paper_protocol"
STATUSES = (
    MEASURED,
    SKIPPED,
    NOT_MEASURABLE,
    CANNOT_TELL,
    UNCERTAIN_DIMENSION,
    NO_MANIFOLD_SCALE,
    PAPER_PROTOCOL,
)
"""What a layer's `status` may say:
- `measured`: its numbers stand;
- `skipped`: it could not be measured at all (constant activations, an estimator refused
  it); no metrics, `reason` says why;
- `not_measurable`: the measure cannot run on it (too few points for the fit's dimension);
  its metrics are NaN, `reason` says why;
- `cannot_tell` (curvature): measured, but the number that could not be trusted is NaN;
- `uncertain_dimension` (curvature, `perturb` neighbourhoods): no tangent dimension could be
  read, so no curvature;
- `no_manifold_scale` (curvature): the layer's multiscale profile has no scale at which it looks
  like a manifold, so no curvature; the profile in the details is the evidence;
- `paper_protocol` (curvature, `dim="twonn"`): Kaufman & Azencot's fit at d = round(TwoNN),
  printed with its matched null, not a statement that the layer is a manifold at that scale.
Measures may add their own statuses (documented with the measure)."""

NOT_MEASURED = (SKIPPED, NOT_MEASURABLE, CANNOT_TELL, UNCERTAIN_DIMENSION, NO_MANIFOLD_SCALE)
"""Statuses of a layer whose measure gave it no reading (a command exits 3 when every layer has
one of them)."""


# --- immutable containers ----------------------------------------------------------------


class FrozenMap(Mapping):
    """A read-only mapping (a dict that cannot be changed after it is made).

    Equal to a dict with the same items; pickles and copies; `freeze` makes nested ones.

    >>> m = FrozenMap({"a": 1})
    >>> m == {"a": 1}, m["a"]
    (True, 1)
    >>> m["b"] = 2
    Traceback (most recent call last):
    ...
    TypeError: 'FrozenMap' object does not support item assignment
    """

    __slots__ = ("_items",)
    _items: dict

    def __init__(self, items: Mapping | Iterable = ()):
        object.__setattr__(self, "_items", dict(items))

    def __getitem__(self, key):
        return self._items[key]

    def __iter__(self) -> Iterator:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return repr(self._items)

    def __setattr__(self, name, value):
        raise AttributeError("a FrozenMap cannot be changed")

    def __reduce__(self):
        return (FrozenMap, (self._items,))

    def __or__(self, other: Mapping) -> FrozenMap:
        """A new FrozenMap with `other`'s items added (or replacing these)."""
        return FrozenMap({**self._items, **other})


class FrozenList(tuple):
    """A read-only list: a tuple that compares equal to a list with the same items (a result read
    back from JSON holds lists), and shows as a list.

    >>> FrozenList([1, 2]) == [1, 2] == FrozenList([1, 2])
    True
    """

    __slots__ = ()

    def __eq__(self, other):
        if isinstance(other, (list, tuple)):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __ne__(self, other):
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = tuple.__hash__

    def __repr__(self) -> str:
        return repr(list(self))


def freeze(value: Any) -> Any:
    """`value` made immutable, recursively: dicts to `FrozenMap`, lists and tuples to
    `FrozenList`, numpy arrays to read-only copies; everything else as it is."""
    if isinstance(value, FrozenMap):
        return value
    if isinstance(value, Mapping):
        return FrozenMap({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)) and not isinstance(value, FrozenList):
        return FrozenList(freeze(v) for v in value)
    if isinstance(value, np.ndarray):
        copy = np.array(value)
        copy.flags.writeable = False
        return copy
    return value


def _set_frozen(obj: Any, names: Sequence[str]) -> None:
    for name in names:
        object.__setattr__(obj, name, freeze(getattr(obj, name)))


# --- the parts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerResult:
    """One layer's measurements.

    `depth` is the layer's relative position, index / (n_layers - 1) in [0, 1]; `shape` its
    per-sample output shape; `status` and `reason` say whether it was measured and why not
    (`STATUSES`); `intervals[metric]` is (low, high).
    """

    name: str
    index: int
    depth: float
    ambient_dim: int
    n_points: int
    metrics: Mapping[str, float] = field(default_factory=FrozenMap)
    intervals: Mapping[str, tuple[float, float]] = field(default_factory=FrozenMap)
    shape: tuple[int, ...] | None = None
    details: Mapping[str, Any] = field(default_factory=FrozenMap)
    status: str = MEASURED
    reason: str = ""

    def __post_init__(self) -> None:
        _set_frozen(self, ("metrics", "intervals", "shape", "details"))

    @property
    def measured(self) -> bool:
        """Whether the layer has a reading (its status is not one of `NOT_MEASURED`)."""
        return self.status not in NOT_MEASURED

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "index": self.index, "depth": self.depth, "ambient_dim": self.ambient_dim,
            "n_points": self.n_points, "status": self.status, "reason": self.reason,
            "metrics": self.metrics, "intervals": self.intervals, "shape": self.shape,
            "details": self.details,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LayerResult:
        """A layer from its JSON; older files kept `status` and `reason` in `details`."""
        d = dict(d)
        details = dict(d.pop("details", None) or {})
        status = d.pop("status", None) or details.pop("status", None) or MEASURED
        reason = d.pop("reason", None) or details.pop("reason", None) or ""
        known = {f.name for f in fields(cls)}
        return cls(
            **{k: v for k, v in d.items() if k in known}, details=details, status=status, reason=reason
        )


@dataclass(frozen=True)
class SuccessRecord:
    """One cutting dimension of a cutting-planes target: how many of its planes hit."""

    dim: int
    planes: int
    hits: int
    unconverged: int
    mean_max_prob: float
    max_probs: tuple[float, ...]
    hit_fraction: float
    steps: tuple[int, ...]

    def __post_init__(self) -> None:
        _set_frozen(self, ("max_probs", "steps"))


@dataclass(frozen=True)
class ClassResult:
    """One target of a cutting-planes result (Fort et al. 2022): a class, or a set of classes.

    `critical_dim` is d*, where the fitted success curve crosses 0.5 (None when it does not
    cross: `status` says why), `manifold_dim` the class-manifold dimension D - d*;
    `critical_dim_empirical` the smallest swept d whose hit fraction reached 0.5; `fit` the
    sigmoid's parameters; `success` one `SuccessRecord` per swept d.
    """

    target: int | tuple[int, ...]
    input_dim: int | None
    critical_dim: float | None
    critical_dim_interval: Sequence[float | None]
    critical_dim_empirical: float | None
    status: str
    manifold_dim: float | None
    manifold_dim_interval: Sequence[float | None]
    confidence: float
    fit: Mapping[str, float] | None
    unconverged_planes: int
    success: tuple[SuccessRecord, ...] = ()

    def __post_init__(self) -> None:
        _set_frozen(self, ("target", "critical_dim_interval", "manifold_dim_interval", "fit"))
        object.__setattr__(self, "success", tuple(self.success))

    @property
    def classes(self) -> tuple[int, ...]:
        """The target's classes (one for a single class)."""
        return self.target if isinstance(self.target, tuple) else (self.target,)

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": list(self.target) if isinstance(self.target, tuple) else self.target,
            "input_dim": self.input_dim,
            "critical_dim": self.critical_dim,
            "critical_dim_interval": self.critical_dim_interval,
            "critical_dim_empirical": self.critical_dim_empirical,
            "critical_dim_status": self.status,
            "manifold_dim": self.manifold_dim,
            "manifold_dim_interval": self.manifold_dim_interval,
            "confidence": self.confidence,
            "fit": self.fit,
            "unconverged_planes": self.unconverged_planes,
            "success": [
                {"dim": s.dim, "planes": s.planes, "hits": s.hits, "unconverged": s.unconverged,
                 "mean_max_prob": s.mean_max_prob, "max_probs": s.max_probs, "hit_fraction": s.hit_fraction,
                 "steps": s.steps}
                for s in self.success
            ],
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClassResult:
        target = d["class"]
        return cls(
            target=tuple(target) if isinstance(target, list) else target,
            input_dim=d.get("input_dim"),
            critical_dim=d.get("critical_dim"),
            critical_dim_interval=tuple(d.get("critical_dim_interval") or (None, None)),
            critical_dim_empirical=d.get("critical_dim_empirical"),
            status=d.get("critical_dim_status", ""),
            manifold_dim=d.get("manifold_dim"),
            manifold_dim_interval=tuple(d.get("manifold_dim_interval") or (None, None)),
            confidence=d.get("confidence", 0.95),
            fit=d.get("fit"),
            unconverged_planes=d.get("unconverged_planes", 0),
            success=tuple(
                SuccessRecord(
                    dim=s["dim"],
                    planes=s["planes"],
                    hits=s["hits"],
                    unconverged=s.get("unconverged", 0),
                    mean_max_prob=s.get("mean_max_prob", math.nan),
                    max_probs=tuple(s.get("max_probs", ())),
                    hit_fraction=s.get("hit_fraction", s["hits"] / max(s["planes"], 1)),
                    steps=tuple(s.get("steps", ())),
                )  # fmt: skip
                for s in d.get("success", ())
            ),
        )


CLASS_METRICS = ("critical_dim", "manifold_dim")
"""The per-target numbers of a cutting-planes result that `metrics` and `to_frame` show."""


# --- the result --------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """A whole measure's result: where the data came from, the parameters, per-layer and
    per-class parts, and the summary. Immutable: use `with_source` / `with_summary` (or
    `dataclasses.replace`) for a changed copy. Layers and classes may be given as their JSON
    form (dicts), as a result file holds them.
    """

    command: str
    source: Mapping[str, Any]
    params: Mapping[str, Any]
    layers: Sequence[LayerResult] = ()
    classes: Sequence[ClassResult] = ()
    summary: Mapping[str, Any] = field(default_factory=FrozenMap)
    schema: str = SCHEMA
    version: str = __version__

    def __post_init__(self) -> None:
        _set_frozen(self, ("source", "params", "summary"))
        layers = (LayerResult.from_dict(x) if isinstance(x, Mapping) else x for x in self.layers)
        classes = (ClassResult.from_dict(x) if isinstance(x, Mapping) else x for x in self.classes)
        object.__setattr__(self, "layers", tuple(layers))
        object.__setattr__(self, "classes", tuple(classes))

    # changed copies
    def with_source(self, **items: Any) -> Result:
        """A copy whose source has these items added (e.g. a sweep's run_id)."""
        return replace(self, source={**self.source, **items})

    def with_summary(self, **items: Any) -> Result:
        """A copy whose summary has these items added."""
        return replace(self, summary={**self.summary, **items})

    # views
    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        """Layer name (or target, `class 3`) -> metric name -> value."""
        return {part: {m: value for m, value, _, _ in rows} for part, (_, rows) in self._parts().items()}

    @property
    def intervals(self) -> dict[str, dict[str, tuple[float, float]]]:
        """Layer name (or target) -> metric name -> (low, high), for metrics that have one."""
        return {
            part: {m: (low, high) for m, _, low, high in rows if low is not None or high is not None}
            for part, (_, rows) in self._parts().items()
        }

    @property
    def details(self) -> dict[str, Mapping[str, Any]]:
        """Layer name (or target) -> the free-form details (spectra, quantiles, success curves)."""
        if self.classes:
            names = self.source.get("class_names")
            return {class_label(entry, names): FrozenMap(entry.to_dict()) for entry in self.classes}
        return {layer.name: layer.details for layer in self.layers}

    @property
    def statuses(self) -> dict[str, str]:
        """Layer name (or target) -> its status."""
        return {part: status for part, (status, _) in self._parts().items()}

    def layer(self, name: str) -> LayerResult:
        """The layer called `name` (a KeyError naming the layers there are otherwise)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"{name!r} (the layers are {[layer.name for layer in self.layers]})")

    def _parts(self) -> dict[str, tuple[str, list[tuple[str, Any, Any, Any]]]]:
        """(status, [(metric, value, low, high), ...]) of every layer, or of every target."""
        parts: dict[str, tuple[str, list[tuple[str, Any, Any, Any]]]] = {}
        for layer in self.layers:
            rows = [
                (name, value, *(layer.intervals.get(name) or (None, None)))
                for name, value in layer.metrics.items()
            ]
            parts[layer.name] = (layer.status, rows)
        names = self.source.get("class_names")
        for entry in self.classes:
            rows = [
                ("critical_dim", entry.critical_dim, *entry.critical_dim_interval),
                ("manifold_dim", entry.manifold_dim, *entry.manifold_dim_interval),
            ]
            parts[class_label(entry, names)] = (entry.status, rows)
        return parts

    def to_frame(self):
        """The measurements as a tidy pandas DataFrame, one row per (layer, metric).

        Columns `layer, depth, metric, value, low, high, status`: `layer` is an ordered
        categorical in the network's order (so `pivot` keeps it), `depth` the layer's relative
        position in [0, 1], low and high NaN where there is no interval, `status` the layer's
        (`STATUSES`; the reason is `result.layer(name).reason`). A skipped layer has no
        metrics and so no rows. For cutting planes `layer` names the target (`class 3`, or
        `class 1 (Trouser)` when the data names its classes), `depth` is NaN and `status` is
        the reading's status.

        Example
        -------
        >>> r = mp.intrinsic_dimension(acts, methods=("twonn", "pca"))
        >>> table = r.to_frame().pivot(index="layer", columns="metric", values="value")
        >>> list(table.index), list(table.columns)  # the layers in network order
        (['block1', 'block2', 'pool', 'logits'], ['id_pca90', 'id_twonn', 'participation_ratio'])
        """
        import pandas as pd

        depth = {layer.name: float(layer.depth) for layer in self.layers}
        parts = self._parts()
        rows = [
            (part, depth.get(part, math.nan), name, _number(value), _number(low), _number(high), status)
            for part, (status, entries) in parts.items()
            for name, value, low, high in entries
        ]
        frame = pd.DataFrame(rows, columns=["layer", "depth", "metric", "value", "low", "high", "status"])
        frame["layer"] = pd.Categorical(frame["layer"], categories=list(parts), ordered=True)
        return frame

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: plain Python, NaN and Inf as None."""
        return _plain(
            {
                "schema": self.schema, "command": self.command, "version": self.version,
                "source": self.source, "params": self.params,
                "layers": [layer.to_dict() for layer in self.layers],
                "classes": [entry.to_dict() for entry in self.classes], "summary": self.summary,
            }
        )  # fmt: skip

    def write(self, path: str | os.PathLike) -> Path:
        """Write the JSON atomically; returns the path."""
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False)
        with atomic_write(path, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        return Path(path)

    def to_html(self, path: str | os.PathLike, **options: Any) -> Path:
        """Write a self-contained interactive page (Plotly, opens offline) of this result;
        returns the path. The measure's page comes from the registry (`registry.write_page`)."""
        return importlib.import_module("manifold_probe.registry").write_page(path, [self], **options)

    def plot(self, *others: Result, **options: Any):
        """A Plotly figure of this result and `others` overlaid on shared axes: one panel per
        metric, one line per result, x the layer's relative depth or name; values not measured
        are marked as such (drawn through `registry.plot`, as `to_html`; `report.figures.plot`
        takes `metrics`, `x`, `names`, `log_y`, `title`, `width`, `height`, `font_size`). Save it
        with `mp.write_figure(fig, "fig.pdf")`.

        Example
        -------
        >>> fig = mp.intrinsic_dimension(acts).plot(metrics=["id_twonn"], width=600, font_size=14)
        >>> fig.layout.width, fig.layout.font.size
        (600, 14)
        """
        return importlib.import_module("manifold_probe.registry").plot([self, *others], **options)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Result:
        if d.get("schema") != SCHEMA:
            raise InputError(f"not a {SCHEMA} file (schema field is {d.get('schema')!r}).")
        return cls(
            command=d["command"],
            source=d.get("source") or {},
            params=d.get("params") or {},
            layers=tuple(LayerResult.from_dict(layer) for layer in d.get("layers") or ()),
            classes=tuple(ClassResult.from_dict(entry) for entry in d.get("classes") or ()),
            summary=d.get("summary") or {},
            version=d.get("version", "unknown"),
        )

    # notebooks
    def __repr__(self) -> str:
        parts = [p for p in (self.layers or self.classes)]
        kind = "layers" if self.layers else "targets"
        metrics = list(dict.fromkeys(m for values in self.metrics.values() for m in values))
        shown = ", ".join(metrics[:6]) + (", ..." if len(metrics) > 6 else "")
        statuses: dict[str, int] = {}
        for status in self.statuses.values():
            statuses[status] = statuses.get(status, 0) + 1
        counted = ", ".join(f"{n} {s}" for s, n in statuses.items())
        return (
            f"<Result {self.command}: {len(parts)} {kind} ({counted}); metrics {shown or '-'}; "
            f"{source_text(self.source)}>"
        )

    def _repr_html_(self) -> str:
        frame = self.to_frame()
        title = f"<p><b>mprobe {self.command}</b>: {source_text(self.source)}</p>"
        if frame.empty:
            return title + "<p>no measurements</p>"
        table = frame.pivot_table(index="layer", columns="metric", values="value", observed=True, sort=False)
        table = table.reindex(columns=list(dict.fromkeys(frame["metric"])))
        table.insert(0, "status", [self.statuses.get(str(name), "") for name in table.index])
        return title + table.to_html(float_format=lambda v: f"{v:.4g}", na_rep="nan")


def concat(results: Sequence[Result], names: Sequence[str] | None = None):
    """Several results as one tidy DataFrame: `to_frame()` of each with the columns
    `result` (its name: `names`, else the model or points it measured), `command`, and the
    layer as plain text (categories of different models do not mix).

    Example
    -------
    >>> untrained = mp.load_model("untrained.pt")
    >>> results = [mp.intrinsic_dimension(m, data, methods=("twonn",)) for m in (model, untrained)]
    >>> frame = mp.concat(results, names=["trained", "untrained"])
    >>> frame.pivot_table(index=["result", "depth"], columns="metric", values="value").shape
    (8, 1)
    """
    import pandas as pd

    results = list(results)
    if names is not None and len(names) != len(results):
        raise InputError(f"give one name per result ({len(results)}), got {len(names)}.", parameter="names")
    labels = list(names) if names is not None else [source_text(r.source, short=True) for r in results]
    frames = []
    for label, result in zip(labels, results, strict=True):
        frame = result.to_frame()
        frame["layer"] = frame["layer"].astype(str)
        frame.insert(0, "command", result.command)
        frame.insert(0, "result", label)
        frames.append(frame)
    columns = ["result", "command", "layer", "depth", "metric", "value", "low", "high", "status"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


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
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise InputError(f"{p} is not a complete {SCHEMA} result ({type(exc).__name__}: {exc}).") from None


# --- names -------------------------------------------------------------------------------


def source_text(source: Mapping[str, Any], *, short: bool = False) -> str:
    """Where a result's numbers came from, in a few words: the model (its file's stem) or the
    points, and the data with its size; `short` gives only the model or points.

    >>> source_text({"model": "runs/a.pt", "data": "digits", "n_points": 500})
    'model a, data digits (500 points)'
    """
    model = source.get("model")
    what = Path(str(model)).stem if model and str(model).endswith((".pt", ".pt2", ".pth")) else model
    head = f"model {what}" if model else f"points {source.get('points', 'array')}"
    if short:
        return str(what or source.get("points", "points"))
    data = source.get("data")
    if data:
        return f"{head}, data {data} ({source.get('n_points')} points)"
    return f"{head} ({source.get('n_points')} points)" if source.get("n_points") else head


def class_name(label: Any, class_names: Sequence[str] | None = None) -> str | None:
    """The data set's name of class `label` (`source.class_names`), or None when it has none.

    >>> class_name(1, ["T-shirt/top", "Trouser"]), class_name(1, None)
    ('Trouser', None)
    """
    if class_names and isinstance(label, int) and 0 <= label < len(class_names):
        return str(class_names[label])
    return None


def class_label(entry: ClassResult, class_names: Sequence[str] | None = None) -> str:
    """How a cutting-planes target is named in `metrics` and `to_frame`: `class 3`, `set {3, 5}`,
    with the data set's class names when it has them: `class 1 (Trouser)`, `set {0 T-shirt/top, 6 Shirt}`."""
    target = entry.target
    if isinstance(target, tuple):
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
    """Mappings, tuples, numpy scalars and arrays to plain Python; NaN and Inf to None."""
    if isinstance(value, Mapping):
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
