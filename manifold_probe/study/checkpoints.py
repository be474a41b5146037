"""The checkpoints of a sweep: files and folders (with the zoo.json beside them), or the rows of
a manifest for checkpoints the project did not train, each loaded once for its run id.

`run_id` is the checkpoint's stem, "-", and the first 8 hex digits of its weights digest,
so a retrained checkpoint under the same name gets a new folder.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..sources.models import load_model

ZOO_FILE = "zoo.json"

LOAD_OPTIONS = ("arch", "num_classes", "arch_args", "in_channels", "trust_checkpoint")
"""The model options a sweep passes to `load_model` (those that are set), for every checkpoint."""


@dataclass(frozen=True, eq=False)
class SweepCheckpoint:
    """A checkpoint of a sweep: its path, run id, zoo entry (family, settings) and metadata.

    `metadata` is the project checkpoint's metadata (None for other formats); `input_dim`
    the number of input features when the model records its input shape; `load_options` the
    `load_model` options it loads with; `metrics` its accuracies from a manifest;
    `hyper_parameters` the manifest's own columns, which become columns of the table;
    `layers` the manifest's layers for it (None: the sweep's); `reduction` its reduction (None:
    the sweep's); `data_options` its own `load_data` options (`normalize`, `channels`).
    """

    path: str
    run_id: str
    digest: str
    family: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] | None = None
    arch: str | None = None
    arch_args: dict[str, Any] | None = None
    input_dim: int | None = None
    load_options: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    hyper_parameters: tuple[str, ...] = ()
    layers: tuple[str, ...] | None = None
    reduction: str | dict[str, str] | None = None
    data_options: dict[str, Any] = field(default_factory=dict)


def read_zoo(folder: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The entries of `folder/zoo.json` ({name, path, family, settings}) by resolved checkpoint
    path; empty when the folder has no zoo.json. The file is a list of entries or an object
    holding that list under "models" (or "checkpoints"); relative paths are relative to the folder."""
    folder = Path(folder)
    path = folder / ZOO_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"could not read {path}: {exc}.") from None
    if isinstance(data, dict):
        data = data.get("models", data.get("checkpoints", []))
    if not isinstance(data, list):
        raise InputError(f"{path} must list the zoo's checkpoints ({{name, path, family, settings}} each).")
    entries: dict[str, dict[str, Any]] = {}
    for entry in data:
        if not isinstance(entry, dict):
            continue
        location = entry.get("path") or (f"{entry['name']}.pt" if entry.get("name") else None)
        if location:
            target = Path(location) if Path(location).is_absolute() else folder / location
            entries[str(target.resolve())] = entry
    return entries


@dataclass(frozen=True)
class ManifestEntry:
    """One row of a sweep manifest: the checkpoint, how to load it (`load_options`), how to
    measure it (`layers`, `reduction`, `data_options`), its family, accuracies and
    hyper-parameters (every other column). `where` names the row in messages."""

    path: str
    load_options: dict[str, Any] = field(default_factory=dict)
    family: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    layers: tuple[str, ...] | None = None
    reduction: str | dict[str, str] | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    where: str = ""


@dataclass(frozen=True)
class RejectedRow:
    """A manifest row that cannot be run (`where` names it: file and entry number), and why."""

    where: str
    reason: str


_ACCURACY_COLUMNS = {
    "test_acc": "test_accuracy",
    "test_accuracy": "test_accuracy",
    "train_acc": "train_accuracy",
    "train_accuracy": "train_accuracy",
}


def _cell(value: Any) -> Any:
    """A CSV cell as a number when it reads as one, None when empty, else the text."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _manifest_rows(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"could not read the manifest {path}: {exc}.") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"the manifest {path} is not valid JSON ({exc.msg} at line {exc.lineno})."
            ) from None
        if isinstance(data, dict):
            data = data.get("checkpoints", data.get("models"))
        if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
            raise InputError(
                f'the manifest {path} must be a JSON list of objects (or {{"checkpoints": [...]}}), '
                "one per checkpoint with at least its path."
            )
        return data
    if path.suffix.lower() != ".csv":
        raise InputError(f"the manifest {path} must be a .csv or .json file.")
    reader = csv.DictReader(text.splitlines())
    return [{key.strip(): _cell(value) for key, value in row.items() if key} for row in reader]


def _split_layers(layers: list[str] | None) -> tuple[str, ...] | None:
    parts = tuple(part.strip() for item in layers or () for part in item.split(",") if part.strip())
    return parts or None


MANIFEST_OPTIONS = ("arch", "num_classes", "arch_kwargs", "in_channels", "layers", "reduction", "normalize")
"""The columns of a manifest row that say how to load and measure its checkpoint (they win over
the sweep's own options for that row); `arch_args` is read as the older name of `arch_kwargs`."""


def read_manifest(path: str | os.PathLike) -> list[ManifestEntry]:
    """The checkpoints of a sweep manifest, for checkpoints the project did not train; the
    first bad row is an InputError naming it (`read_manifest_rows` keeps the good rows).

    CSV (a header row) or JSON (a list of objects, or {"checkpoints": [...]}), one entry per
    checkpoint: `path` (required; relative to the manifest's folder); how to load it: `arch`
    (e.g. `torchvision:resnet18`, `timm:NAME`), `num_classes`, `arch_kwargs` (an object; in CSV
    its JSON text), `in_channels` (1: a grayscale stem, and image folders read as grayscale);
    how to measure it: `layers` (names or globs, comma-separated, since architectures name
    their layers differently), `reduction` (a spec, or `LAYER=SPEC` items, comma-separated; in
    JSON also a list of them or an object {layer pattern: spec, "default": spec}),
    `normalize` (a recipe name or per-channel means then stds); `family` (the report's
    grouping; default: the arch), `test_acc` and `train_acc` (or `test_accuracy`,
    `train_accuracy`; fractions in [0, 1]); `in_report` (true or false: whether the report
    relates this model; default: trained models only, so `true` keeps an untrained one, e.g.
    the random-init members of a foreign zoo); any other column is a hyper-parameter and
    becomes a column of the sweep table (`depth` as `arch_depth`).

    Example
    -------
    path,arch,num_classes,family,test_acc,train_acc,in_channels,reduction,lr
    r18-a.pt,torchvision:resnet18,10,resnet,0.61,0.93,1,avgpool,0.1
    """
    entries, rejected = read_manifest_rows(path)
    if rejected:
        raise InputError(f"{rejected[0].where}: {rejected[0].reason}")
    return entries


def read_manifest_rows(path: str | os.PathLike) -> tuple[list[ManifestEntry], list[RejectedRow]]:
    """The good rows of a sweep manifest (`read_manifest` documents the columns) and the bad
    ones, each with its reason, so a sweep runs the good rows and reports the others. A
    manifest that cannot be read at all, or that lists nothing, is an InputError."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"manifest not found: {p}.")
    entries, rejected = [], []
    rows = _manifest_rows(p)
    if not rows:
        raise InputError(f"the manifest {p} lists no checkpoint.")
    for number, row in enumerate(rows, start=1):
        where = f"{p} entry {number}"
        try:
            entries.append(_manifest_entry({str(k).strip(): v for k, v in row.items()}, p, where))
        except InputError as exc:
            rejected.append(RejectedRow(where, str(exc)))
    return entries, rejected


def _json_object(value: Any, name: str) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    if not isinstance(value, dict):
        raise InputError(f'{name} must be a JSON object, e.g. {{"image_size": 32}}.')
    return value


def _flag(text: str, name: str) -> bool:
    from ..validation import parse_flag

    try:
        return parse_flag(text, name=name)
    except InputError:
        raise InputError(f"{name} must be true or false, got {text!r}.") from None


def _whole(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be a whole number, got {value!r}.")
    return value


def _manifest_entry(row: dict[str, Any], manifest: Path, where: str) -> ManifestEntry:
    """One manifest row as an entry; a bad cell is an InputError saying which and why."""
    from ..extraction.reductions import parse_reduction_options
    from ..sources.formats.normalize import normalization, parse_normalize

    location = row.pop("path", None)
    if not isinstance(location, str) or not location.strip():
        raise InputError("has no path; every entry names its checkpoint file in `path`.")
    target = Path(location).expanduser()
    target = target if target.is_absolute() else manifest.parent / target
    if not target.is_file():
        raise InputError(f"checkpoint not found: {target}.")
    arch_kwargs, older = row.pop("arch_kwargs", None), row.pop("arch_args", None)
    if arch_kwargs is not None and older is not None:
        raise InputError("gives both arch_kwargs and arch_args (its older name); give arch_kwargs once.")
    arch_kwargs = older if arch_kwargs is None else arch_kwargs
    options: dict[str, Any] = {}
    arch = row.pop("arch", None)
    if arch is not None:
        options["arch"] = str(arch)
    if arch_kwargs is not None:
        options["arch_args"] = _json_object(arch_kwargs, "arch_kwargs")
    for key in ("num_classes", "in_channels"):
        value = row.pop(key, None)
        if value is not None:
            options[key] = _whole(value, key)
    if options.get("in_channels", 1) < 1:
        raise InputError(f"in_channels must be at least 1, got {options['in_channels']}.")
    data_options: dict[str, Any] = {}
    normalize = row.pop("normalize", None)
    if normalize is not None:
        data_options["normalize"] = parse_normalize(str(normalize))
        if data_options["normalize"] != "auto":
            normalization(data_options["normalize"])  # a bad recipe stops this row only
    if options.get("in_channels") is not None:
        data_options["channels"] = options["in_channels"]
    reduction = row.pop("reduction", None)
    if isinstance(reduction, dict):  # JSON: {"blocks.*": "cls", "default": "avgpool"}
        reduction = [spec if key == "default" else f"{key}={spec}" for key, spec in reduction.items()]
    plan = None if reduction is None else parse_reduction_options(
        [str(item) for item in (reduction if isinstance(reduction, list) else [reduction])])  # fmt: skip
    metrics = {}
    for column, metric in _ACCURACY_COLUMNS.items():
        value = row.pop(column, None)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise InputError(f"{column} must be a fraction from 0 to 1, got {value!r}.")
        metrics[metric] = float(value)
    if row.get("in_report") is not None:
        flag = row["in_report"]
        row["in_report"] = flag if isinstance(flag, bool) else _flag(str(flag), "in_report")
    family = row.pop("family", None)
    layers = row.pop("layers", None)
    if isinstance(layers, str):
        layers = [layers]
    if layers is not None and not (isinstance(layers, list) and all(isinstance(x, str) for x in layers)):
        raise InputError(f"layers must be names or globs, comma-separated, got {layers!r}.")
    return ManifestEntry(
        path=str(target.resolve()), load_options=options,
        family=None if family is None else str(family), metrics=metrics,
        settings={k: v for k, v in row.items() if v is not None},
        layers=_split_layers(layers), reduction=plan, data_options=data_options, where=where,
    )  # fmt: skip


def checkpoint_paths(items: Sequence[str | os.PathLike]) -> list[str]:
    """Checkpoint files from files and folders (a folder gives every *.pt in it, sorted)."""
    paths: list[str] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(p.glob("*.pt"))
            if not found:
                raise InputError(f"the folder {p} holds no *.pt checkpoint.")
            paths.extend(str(f) for f in found)
        elif p.is_file():
            paths.append(str(p))
        else:
            raise InputError(f"checkpoint not found: {p}.")
    if not paths:
        raise InputError("give at least one checkpoint (a .pt file or a folder of them).")
    return paths


def describe_checkpoints(
    items: Sequence[str | os.PathLike | SweepCheckpoint | ManifestEntry],
    *,
    load_options: dict[str, Any] | None = None,
    rejected: list[RejectedRow] | None = None,
) -> list[SweepCheckpoint]:
    """Load each checkpoint once (on the CPU) for its run id and metadata, and attach the zoo
    entry from the zoo.json beside it, or the manifest entry it came from. A folder stands for
    every *.pt in it; repeats of the same weights under the same name are dropped.
    `load_options` (`LOAD_OPTIONS`: arch, num_classes, ...) load every checkpoint; a manifest
    entry's own options take precedence. With a `rejected` list, a manifest entry whose model
    does not load is appended there (a `RejectedRow`) and left out; without, it raises."""
    given = {k: v for k, v in (load_options or {}).items() if k in LOAD_OPTIONS and v not in (None, False)}
    zoos: dict[str, dict[str, dict[str, Any]]] = {}
    described: dict[str, SweepCheckpoint] = {}
    known = [item for item in items if isinstance(item, SweepCheckpoint)]
    listed = [item for item in items if isinstance(item, ManifestEntry)]
    files = [item for item in items if not isinstance(item, (SweepCheckpoint, ManifestEntry))]
    for info in known:
        described.setdefault(info.run_id, info)
    entries = [(Path(p).expanduser().resolve(), None) for p in (checkpoint_paths(files) if files else [])]
    entries += [(Path(entry.path), entry) for entry in listed]
    for path, manifest in entries:
        options = {**given, **(manifest.load_options if manifest else {})}
        try:
            loaded = load_model(path, device="cpu", **options)
        except Exception as exc:  # a row that cannot load is reported; the other rows run
            if manifest is None or rejected is None:
                raise
            reason = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
            rejected.append(RejectedRow(manifest.where or str(path), f"the model does not load: {reason}"))
            continue
        if manifest is None:
            folder = str(path.parent)
            if folder not in zoos:
                zoos[folder] = read_zoo(folder)
            entry = zoos[folder].get(str(path), {})
        else:
            entry = {"family": manifest.family, "settings": manifest.settings}
        shape = loaded.input_shape
        info = SweepCheckpoint(
            path=str(path),
            run_id=f"{path.stem}-{loaded.digest[:8]}",
            digest=loaded.digest,
            family=entry.get("family"),
            settings=dict(entry.get("settings") or {}),
            metadata=loaded.checkpoint,
            arch=loaded.arch or options.get("arch"),
            arch_args=loaded.arch_args,
            input_dim=int(np.prod(shape)) if shape else None,
            load_options=options,
            metrics=dict(manifest.metrics) if manifest else {},
            hyper_parameters=tuple(manifest.settings) if manifest else (),
            layers=manifest.layers if manifest else None,
            reduction=manifest.reduction if manifest else None,
            data_options=dict(manifest.data_options) if manifest else {},
        )
        described.setdefault(info.run_id, info)
    return list(described.values())
