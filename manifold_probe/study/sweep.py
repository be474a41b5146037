"""Sweeps: the probes over many checkpoints, resumable, on local processes or a Ray cluster,
and the table with one row per checkpoint that the report stage reads.

Layout of a sweep folder SWEEP:

    SWEEP/results/<run_id>/<probe>.json        one Result per checkpoint and probe
    SWEEP/results/<run_id>/<probe>.error.txt   the traceback of a task that failed
    SWEEP/cache/                               the activation cache shared by all tasks
    SWEEP/table.csv, SWEEP/table.parquet       one row per checkpoint (Parquet when pyarrow imports)
    SWEEP/layers.csv, SWEEP/layers.parquet     the long form: one row per checkpoint, probe, layer
                                               and metric (run_id, checkpoint, family, probe, layer,
                                               depth, metric, value, low, high)

Checkpoints are files and folders (every *.pt, with the family and settings of a zoo.json
beside them), or the rows of a manifest (`read_manifest`: CSV or JSON with path, arch,
family, test and train accuracy and any hyper-parameters) for checkpoints the project did
not train. The model options of the measuring commands (`arch`, `num_classes`, `arch_args`,
`trust_checkpoint`, `layers`, `reduction`) apply to every checkpoint; a manifest row's own
arch, num_classes, arch_args and layers take precedence for that row.

`run_id` is the checkpoint's stem, "-", and the first 8 hex digits of its weights digest,
so a retrained checkpoint under the same name gets a new folder.

One task per (checkpoint, probe). A task writes its result atomically (`Result.write`:
temporary file, then rename), so no result file is ever half-written; a task whose result
file exists and reads back as a result of its probe is skipped, so a killed sweep
restarted redoes only what is missing; a result file that does not read back (damaged,
not a JSON object, another probe's) counts as missing and is recomputed with a warning.
Leftover temporary files of a killed task are removed when that task runs again. Probes
of one checkpoint share one extraction through the activation cache (tasks are queued
probe by probe, so the first probe of a checkpoint has usually cached its activations
before the next one starts; two concurrent extractions of the same key are safe, see
`extract.cache`).

Executors: `local` runs the tasks in a process pool (spawn context; torch limited to one
thread per worker; each worker imports torch and the API once and then runs task after
task, so start-up is paid per worker, not per task (`TaskOutcome.worker_pid` says which
process ran a task); each worker exits within a second of its parent's death, even a
`kill -9`) or, with one worker, in this process; `ray` sends the same task
function to a Ray cluster (the sweep folder must be on a file system every node sees).
Both give the same results.

Per-probe options are fixed for sweeps (the CLI commands expose more):
- `id`: TwoNN, MLE (k = 20), PCA 90 % and participation ratio; no bootstrap.
- `curvature`: kNN neighbourhoods, default K, 200 bootstrap resamples; d per layer from
  the spectral gap, or the sweep's `curvature_dim` (an integer, or "twonn" for the paper's
  protocol) and `curvature_centres` (fit at a seeded sample of that many points per layer).
  A finished curvature result measured with other values of these is redone.
- `collapse`: NC metrics of every layer; the classifier's metrics on its input layer.
- `spectra`: covariance spectra of every layer, the Fisher split on the classifier's input
  layer (the command's defaults).
- `cutting-planes`: every class, 7 log-spaced cutting dimensions from 1 to the input
  dimension, 3 planes per dimension optimised until their loss plateaus (the command's cap
  of 3000 steps), 100 bootstrap resamples (the command's defaults are about 14 dimensions and
  5 planes; `measures.registry` holds these options).
"""

from __future__ import annotations

import contextlib
import csv
import json
import multiprocessing
import os
import threading
import time
import traceback
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..extraction.reductions import parse_reduction
from ..files import atomic_save, atomic_write
from ..measures.registry import MEASURES, SWEEP_PROBES
from ..probes.critical_dimension import default_dims
from ..progress import track
from ..results import Result, read_result
from ..sources.models import load_model
from ..validation import check_curvature_dim, check_positive, check_sweep_options

PROBES: tuple[str, ...] = SWEEP_PROBES
"""The probes a sweep runs (`registry.MEASURES`); each result's `command` is the probe's name."""
EXECUTORS: tuple[str, ...] = ("local", "ray")

CUTTING_PLANE_DIMS = 7
"""How many log-spaced cutting dimensions a sweep's cutting-planes probe tries."""

ZOO_FILE = "zoo.json"
TABLE_CSV = "table.csv"
TABLE_PARQUET = "table.parquet"
LAYERS_CSV = "layers.csv"
LAYERS_PARQUET = "layers.parquet"

LAYER_COLUMN_TYPES: dict[str, str] = {
    "run_id": "string",
    "checkpoint": "string",
    "family": "string",
    "probe": "string",
    "layer": "string",
    "depth": "float",
    "metric": "string",
    "value": "float",
    "low": "float",
    "high": "float",
    "status": "string",
}
"""The long-form table's columns and types: one row per (checkpoint, probe, layer, metric), with
the layer's status (`Result.to_frame`); for cutting planes `layer` names the target
(`class 3`), `depth` is empty and `status` is the target's reading status."""

LOAD_OPTIONS = ("arch", "num_classes", "arch_args", "in_channels", "trust_checkpoint")
"""The model options a sweep passes to `load_model` (those that are set), for every checkpoint."""

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
    "depth": "int",
    "weight_decay": "float",
    "mixup": "float",
    "label_smoothing": "float",
    "label_noise": "float",
    "train_size": "int",
    "seed": "int",
    "train_accuracy": "float",
    "test_accuracy": "float",
    "generalization_gap": "float",
}
"""The table's fixed columns, in order, and their types."""

MEASURE_COLUMNS: dict[str, tuple[str, ...]] = {
    "curvature": ("curvature_gap", "curvature_gap_scaled", "curvature_sff_gap", "curvature_sff_gap_scaled"),
    "id": ("last_layer_id_twonn",),
    "collapse": ("nc1_penultimate",),
    "spectra": ("n_outliers_penultimate",),
    "cutting-planes": ("mean_manifold_dim",),
}
"""The measure columns of each probe (present when some checkpoint has that probe's result)."""


# --- checkpoints -----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SweepCheckpoint:
    """A checkpoint of a sweep: its path, run id, zoo entry (family, settings) and metadata.

    `metadata` is the project checkpoint's metadata (None for other formats); `input_dim`
    the number of input features when the model records its input shape; `load_options` the
    `load_model` options it loads with; `metrics` its accuracies from a manifest;
    `hyper_parameters` the manifest's own columns, which become columns of the table;
    `layers` the manifest's layers for it (None: the sweep's).
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
    """One row of a sweep manifest: the checkpoint, how to load it, its family, accuracies and
    hyper-parameters (every other column)."""

    path: str
    load_options: dict[str, Any] = field(default_factory=dict)
    family: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    layers: tuple[str, ...] | None = None


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


def read_manifest(path: str | os.PathLike) -> list[ManifestEntry]:
    """The checkpoints of a sweep manifest, for checkpoints the project did not train.

    CSV (a header row) or JSON (a list of objects, or {"checkpoints": [...]}), one entry per
    checkpoint: `path` (required; relative to the manifest's folder), `arch` (e.g.
    `torchvision:resnet18`), `num_classes`, `arch_args` (an object; in CSV its JSON text),
    `family` (the report's grouping; default: the arch), `test_acc` and `train_acc` (or
    `test_accuracy`, `train_accuracy`; fractions in [0, 1]), `layers` (names or globs,
    comma-separated: the layers of this checkpoint, since architectures name them
    differently); any other column is a hyper-parameter and becomes a column of the sweep
    table. Bad rows are InputErrors naming the row.

    Example
    -------
    path,arch,num_classes,family,test_acc,train_acc,lr
    r18-a.pt,torchvision:resnet18,10,resnet,0.61,0.93,0.1
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"manifest not found: {p}.")
    entries = []
    for number, row in enumerate(_manifest_rows(p), start=1):
        where = f"{p} entry {number}"
        row = {str(k).strip(): v for k, v in row.items()}
        location = row.pop("path", None)
        if not isinstance(location, str) or not location.strip():
            raise InputError(f"{where} has no path; every entry names its checkpoint file in `path`.")
        target = Path(location).expanduser()
        target = target if target.is_absolute() else p.parent / target
        if not target.is_file():
            raise InputError(f"{where}: checkpoint not found: {target}.")
        options: dict[str, Any] = {}
        for key in ("arch", "num_classes", "arch_args"):
            value = row.pop(key, None)
            if value is not None:
                options[key] = value
        if isinstance(options.get("arch_args"), str):
            try:
                options["arch_args"] = json.loads(options["arch_args"])
            except json.JSONDecodeError:
                options["arch_args"] = None
        if "arch_args" in options and not isinstance(options["arch_args"], dict):
            raise InputError(f'{where}: arch_args must be a JSON object, e.g. {{"image_size": 32}}.')
        if "num_classes" in options and (isinstance(options["num_classes"], bool)
                                         or not isinstance(options["num_classes"], int)):  # fmt: skip
            raise InputError(f"{where}: num_classes must be a whole number, got {options['num_classes']!r}.")
        metrics = {}
        for column, metric in _ACCURACY_COLUMNS.items():
            value = row.pop(column, None)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise InputError(f"{where}: {column} must be a fraction from 0 to 1, got {value!r}.")
            metrics[metric] = float(value)
        family = row.pop("family", None)
        layers = row.pop("layers", None)
        if isinstance(layers, str):
            layers = [layers]
        if layers is not None and not (isinstance(layers, list) and all(isinstance(x, str) for x in layers)):
            raise InputError(f"{where}: layers must be names or globs, comma-separated, got {layers!r}.")
        entries.append(
            ManifestEntry(
                path=str(target.resolve()), load_options=options,
                family=None if family is None else str(family), metrics=metrics,
                settings={k: v for k, v in row.items() if v is not None},
                layers=_split_layers(layers),
            )
        )  # fmt: skip
    if not entries:
        raise InputError(f"the manifest {p} lists no checkpoint.")
    return entries


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
) -> list[SweepCheckpoint]:
    """Load each checkpoint once (on the CPU) for its run id and metadata, and attach the zoo
    entry from the zoo.json beside it, or the manifest entry it came from. A folder stands for
    every *.pt in it; repeats of the same weights under the same name are dropped.
    `load_options` (`LOAD_OPTIONS`: arch, num_classes, ...) load every checkpoint; a manifest
    entry's own options take precedence."""
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
        loaded = load_model(path, device="cpu", **options)
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
        )
        described.setdefault(info.run_id, info)
    return list(described.values())


# --- tasks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepTask:
    """One probe on one checkpoint: everything a worker process needs, as plain values."""

    checkpoint: str
    run_id: str
    probe: str
    result_path: str
    data: str = "digits"
    n_points: int | None = None
    seed: int = 0
    device: str = "cpu"
    cache_dir: str | None = None
    input_dim: int | None = None
    torch_threads: int | None = None
    reduction: str | dict[str, str] = "auto"
    layers: tuple[str, ...] | None = None
    load_options: dict[str, Any] = field(default_factory=dict)
    curvature_dim: int | str | None = None
    curvature_centres: int | None = None

    @property
    def error_path(self) -> Path:
        """Where a failure's traceback goes: `<probe>.error.txt` beside the result."""
        return Path(self.result_path).with_name(f"{self.probe}.error.txt")


@dataclass(frozen=True)
class TaskOutcome:
    """What became of a task: status `done` or `failed` (with the error's last line), and the
    process that ran it (0 when its worker died)."""

    run_id: str
    probe: str
    status: str
    seconds: float = 0.0
    error: str | None = None
    worker_pid: int = 0


def _measure(task: SweepTask) -> Result:
    """The probe of `task` through the Python API, with the sweep's fixed options
    (`registry.MEASURES[probe].sweep_options`) and the model options of the sweep (its
    `load_options`, `layers`, `reduction`), on the train split's seeded subset."""
    from .. import api

    model = api.load_model(task.checkpoint, device=task.device, **task.load_options)
    data = api.load_data(task.data, split="train", n_points=task.n_points, seed=task.seed)
    options = dict(MEASURES[task.probe].sweep_options)
    if task.probe == "cutting-planes":
        options["dims"] = tuple(default_dims(task.input_dim, CUTTING_PLANE_DIMS)) if task.input_dim else None
    else:
        options["cache"] = task.cache_dir or True
        options["reduction"] = task.reduction
        if task.layers:
            options["layers"] = list(task.layers)
        if task.probe != "collapse":
            options["seed"] = task.seed
        if task.probe == "curvature":
            options["dim"] = task.curvature_dim
            options["n_centres"] = task.curvature_centres
    return MEASURES[task.probe](model, data, **options)


def _remove_temporaries(path: Path) -> None:
    """Temporary files a killed writer of `path` left behind (`files.atomic_write` names them)."""
    for stray in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            stray.unlink()


def _write_error(task: SweepTask, text: str) -> None:
    with atomic_write(task.error_path, "w", encoding="utf-8") as handle:
        handle.write(text)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


def run_task(task: SweepTask) -> TaskOutcome:
    """Run one probe on one checkpoint and write its result atomically; on an error write the
    traceback to `<probe>.error.txt` instead and return a failed outcome (never raises for a
    failing probe). Used as is by both executors."""
    start = time.perf_counter()
    if task.torch_threads:
        import torch

        torch.set_num_threads(task.torch_threads)
    path = Path(task.result_path)
    _remove_temporaries(path)
    try:
        result = _measure(task)
        result.source["run_id"] = task.run_id
        result.write(path)
    except Exception:
        text = traceback.format_exc()
        _write_error(task, text)
        seconds = time.perf_counter() - start
        return TaskOutcome(task.run_id, task.probe, "failed", seconds, _last_line(text), os.getpid())
    task.error_path.unlink(missing_ok=True)
    return TaskOutcome(task.run_id, task.probe, "done", time.perf_counter() - start, worker_pid=os.getpid())


def _failure(task: SweepTask, exc: BaseException) -> TaskOutcome:
    """A task whose worker died or could not be reached: recorded like a failing probe."""
    text = "".join(traceback.format_exception_only(type(exc), exc))  # the worker's traceback is lost
    _write_error(task, text)
    return TaskOutcome(task.run_id, task.probe, "failed", 0.0, _last_line(text) or type(exc).__name__)


def result_complete(path: str | os.PathLike, probe: str, params: dict[str, Any] | None = None) -> bool:
    """Whether `path` holds a finished result of `probe` (it exists and reads back), measured
    with `params` (each given parameter equal to the result's own)."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        result = read_result(p)
    except (InputError, KeyError, TypeError, UnicodeDecodeError, OSError):
        return False
    return result.command == probe and all(result.params.get(k) == v for k, v in (params or {}).items())


# --- executors -------------------------------------------------------------------------


PARENT_CHECK_SECONDS = 0.5
"""How often a local worker checks that the sweep that started it is still alive."""


def _watch_parent(parent_pid: int) -> None:
    """Pool initializer: a daemon thread ends this worker as soon as its parent is gone.

    A parent killed with SIGKILL cannot stop its pool, and its workers would be re-parented
    (to PID 1) and keep computing and writing. The thread polls `os.getppid()`; when it is
    no longer `parent_pid` the worker exits at once (`os._exit`, whatever the main thread
    is doing). Its unfinished result is never written: results are renamed into place only
    when complete.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def _run_local(tasks: list[SweepTask], workers: int) -> Iterator[TaskOutcome]:
    if workers == 1:
        for task in tasks:
            yield run_task(task)
        return
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)),
        mp_context=context,
        initializer=_watch_parent,
        initargs=(os.getpid(),),
    )
    try:
        futures = {pool.submit(run_task, task): task for task in tasks}
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:  # the worker process died (BrokenProcessPool)
                yield _failure(futures[future], exc)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_ray(tasks: list[SweepTask], workers: int | None, address: str | None) -> Iterator[TaskOutcome]:
    try:
        import ray
    except ImportError:
        raise InputError(
            "--executor ray needs Ray: install it with pip install 'manifold-probe[ray]'."
        ) from None
    started = not ray.is_initialized()
    if started:
        if address is None:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        else:
            try:
                ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            except Exception as exc:  # unreachable, refused, or asking for a token (ConnectionError)
                reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
                raise InputError(
                    f"could not join the Ray cluster at --address {address}: "
                    f"{type(exc).__name__}: {reason[:200]} (check the address, and that this "
                    "machine may connect: a cluster with token authentication needs its token "
                    "in RAY_AUTH_TOKEN)."
                ) from None
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(run_task)
        pending = {remote.remote(task): task for task in tasks}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                task = pending.pop(ref)
                try:
                    yield ray.get(ref)
                except Exception as exc:  # the task's worker died or the cluster went away
                    yield _failure(task, exc)
    finally:
        if started:
            ray.shutdown()


# --- the sweep -------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepSummary:
    """What a sweep did: tasks done (run now), skipped (already complete), failed; the table."""

    out_dir: Path
    checkpoints: int
    done: tuple[TaskOutcome, ...]
    skipped: int
    failed: tuple[TaskOutcome, ...]
    table_csv: Path
    table_parquet: Path | None
    layers_csv: Path | None = None
    layers_parquet: Path | None = None

    @property
    def executed(self) -> int:
        """Tasks run by this sweep (done or failed)."""
        return len(self.done) + len(self.failed)


def run_sweep(
    checkpoints: Sequence[str | os.PathLike | SweepCheckpoint | ManifestEntry] = (),
    probes: Sequence[str] = ("id", "curvature"),
    out_dir: str | os.PathLike = "sweep",
    *,
    manifest: str | os.PathLike | None = None,
    data: str = "digits",
    n_points: int | None = None,
    seed: int = 0,
    reduction: str | dict[str, str] = "auto",
    layers: Sequence[str] | None = None,
    arch: str | None = None,
    num_classes: int | None = None,
    arch_args: dict[str, Any] | None = None,
    trust_checkpoint: bool = False,
    curvature_dim: int | str | None = None,
    curvature_centres: int | None = None,
    device: str = "cpu",
    executor: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    progress: bool = False,
) -> SweepSummary:
    """Run every probe on every checkpoint into `out_dir`, skipping finished tasks, then
    write the table and its long form (see the module docstring). Failing tasks are recorded
    and reported in the summary; the others go on.

    checkpoints: files, folders, and with `manifest` (a CSV or JSON file, `read_manifest`)
    also the manifest's checkpoints. `arch`, `num_classes`, `arch_args`, `trust_checkpoint`
    load every checkpoint (a manifest row's own arch, num_classes, arch_args, layers win), as for
    the measuring commands. `layers` (names or globs; None: the default layers) and
    `reduction` (a spec of `extraction.reductions`, e.g. `avgpool` or `project:512`, or a
    dict {layer pattern: spec, "default": spec}) apply to every extracted layer; cutting
    planes work on the inputs. `curvature_dim` is the curvature probe's `dim` (None: each
    layer's spectral gap; "twonn": the paper's protocol; an integer), `curvature_centres` its
    `n_centres` (None: every point).
    """
    chosen = check_sweep_options(probes, executor, workers, known_probes=PROBES, executors=EXECUTORS)
    for spec in reduction.values() if isinstance(reduction, dict) else [reduction]:
        parse_reduction(spec)  # a bad spec stops here, not in every task
    curvature_dim = check_curvature_dim(curvature_dim)
    if curvature_centres is not None:
        check_positive(curvature_centres, name="curvature_centres", integer=True)
    curvature_params = {"dim": curvature_dim, "n_centres": curvature_centres}
    out = Path(out_dir).expanduser().resolve()
    items = list(checkpoints) + (read_manifest(manifest) if manifest is not None else [])
    if not items:
        raise InputError("give at least one checkpoint (a .pt file or a folder of them) or a --manifest.")
    load_options = {"arch": arch, "num_classes": num_classes, "arch_args": arch_args,
                    "trust_checkpoint": trust_checkpoint}  # fmt: skip
    infos = describe_checkpoints(items, load_options=load_options)
    if not infos:
        raise InputError("give at least one checkpoint (a .pt file or a folder of them).")
    if executor == "local":
        workers = workers or max(1, min(2, os.cpu_count() or 1))
    threads = 1 if executor == "ray" or (workers or 1) > 1 else None
    tasks: list[SweepTask] = []
    skipped = 0
    for probe in chosen:  # probe by probe: one checkpoint's probes rarely run at the same time
        for info in infos:
            path = out / "results" / info.run_id / f"{probe}.json"
            if result_complete(path, probe, curvature_params if probe == "curvature" else None):
                skipped += 1
                continue
            if path.exists():
                warnings.warn(f"{path} is not a complete {probe} result; recomputing it.", stacklevel=2)
            path.parent.mkdir(parents=True, exist_ok=True)
            tasks.append(
                SweepTask(
                    checkpoint=info.path, run_id=info.run_id, probe=probe, result_path=str(path),
                    data=data, n_points=n_points, seed=seed, device=device, cache_dir=str(out / "cache"),
                    input_dim=info.input_dim, torch_threads=threads, reduction=reduction,
                    layers=info.layers or (tuple(layers) if layers else None), load_options=info.load_options,
                    curvature_dim=curvature_dim, curvature_centres=curvature_centres,
                )
            )  # fmt: skip
    outcomes: list[TaskOutcome] = []
    if tasks:
        stream = _run_local(tasks, workers) if executor == "local" else _run_ray(tasks, workers, ray_address)
        outcomes.extend(track(stream, description="sweep", total=len(tasks), enabled=progress))
    csv_path, parquet_path = write_table(collect_table(out, infos), out)
    layers_csv, layers_parquet = write_layer_table(collect_layer_table(out, infos), out)
    return SweepSummary(
        out_dir=out,
        checkpoints=len(infos),
        done=tuple(o for o in outcomes if o.status == "done"),
        skipped=skipped,
        failed=tuple(o for o in outcomes if o.status == "failed"),
        table_csv=csv_path,
        table_parquet=parquet_path,
        layers_csv=layers_csv,
        layers_parquet=layers_parquet,
    )


# --- the table -------------------------------------------------------------------------


def _read(results: Path, probe: str) -> Result | None:
    path = results / f"{probe}.json"
    if not path.is_file():
        return None
    try:
        result = read_result(path)
    except (InputError, KeyError, TypeError, UnicodeDecodeError, OSError):
        return None
    return result if result.command == probe else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if np.isfinite(value) else None


def _measures(results: Path) -> dict[str, dict[str, float | None]]:
    """The measure columns of every probe whose result is in `results`, by probe."""
    found: dict[str, dict[str, float | None]] = {}
    curvature = _read(results, "curvature")
    if curvature is not None:
        found["curvature"] = {c: _number(curvature.summary.get(c)) for c in MEASURE_COLUMNS["curvature"]}
    ids = _read(results, "id")
    if ids is not None:
        last = ids.layers[-1].metrics.get("id_twonn") if ids.layers else None
        found["id"] = {"last_layer_id_twonn": _number(last)}
    penultimate = (
        ("collapse", "nc1", "nc1_penultimate"),
        ("spectra", "n_outliers", "n_outliers_penultimate"),
    )
    for probe, metric, column in penultimate:
        result = _read(results, probe)
        if result is not None:
            layer = classifier_layer(result)
            found[probe] = {column: _number(layer.metrics.get(metric)) if layer else None}
    planes = _read(results, "cutting-planes")
    if planes is not None:
        found["cutting-planes"] = {"mean_manifold_dim": _number(planes.summary.get("mean_manifold_dim"))}
    return found


def classifier_layer(result: Result):
    """The layer of a collapse or spectra result that feeds the classifier (None if not found)."""
    name = (result.summary.get("classifier") or {}).get("layer")
    return next((entry for entry in result.layers if entry.name == name), None)


def _arch(info: SweepCheckpoint) -> str | None:
    return (info.metadata or {}).get("arch") or info.arch


def _family(info: SweepCheckpoint) -> str | None:
    """The checkpoint's family in the tables and the report: its zoo's or manifest's, else its arch."""
    return info.family or _arch(info)


def _row(info: SweepCheckpoint, measures: dict[str, dict[str, float | None]]) -> dict[str, Any]:
    meta = info.metadata or {}
    training = dict(meta.get("training") or {})
    arch_args = dict(meta.get("arch_args") or info.arch_args or {})
    settings = {**SETTING_DEFAULTS, **info.settings, **{k: v for k, v in training.items() if v is not None}}
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
        "depth": arch_args.get("depth", settings.get("depth")),
        "weight_decay": settings.get("weight_decay"),
        "mixup": settings.get("mixup"),
        "label_smoothing": settings.get("label_smoothing"),
        "label_noise": settings.get("label_noise"),
        "train_size": settings.get("train_size"),
        "seed": meta.get("seed", settings.get("seed")),
        "train_accuracy": train_acc,
        "test_accuracy": test_acc,
        "generalization_gap": None if train_acc is None or test_acc is None else train_acc - test_acc,
    }
    row.update({name: info.settings.get(name) for name in info.hyper_parameters if name not in row})
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
    """One row per checkpoint: its settings and metrics, and the measure columns of every probe
    that has a result for some checkpoint (None where a checkpoint lacks it). Columns: `COLUMN_TYPES`,
    the manifest's own hyper-parameter columns, then `MEASURE_COLUMNS` in the order id,
    curvature, collapse, cutting-planes."""
    results = Path(sweep_dir).expanduser() / "results"
    infos = describe_checkpoints(checkpoints)
    measured = [_measures(results / info.run_id) for info in infos]
    probes = [p for p in PROBES if any(p in m for m in measured)]
    extra = list(dict.fromkeys(h for info in infos for h in info.hyper_parameters if h not in COLUMN_TYPES))
    columns = list(COLUMN_TYPES) + extra + [c for p in probes for c in MEASURE_COLUMNS[p]]
    raw = [_row(info, measures) for info, measures in zip(infos, measured, strict=True)]
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
    """The long form of a sweep: one row per checkpoint, probe, layer and metric, with the
    layer's relative depth and the metric's interval (`LAYER_COLUMN_TYPES`); from every result
    in the sweep folder, probes in `PROBES` order. A skipped layer has no metrics, so no rows;
    for cutting planes `layer` is the target (`class 3`) and `depth` is None."""
    results = Path(sweep_dir).expanduser() / "results"
    rows = []
    for info in describe_checkpoints(checkpoints):
        family = _family(info)
        for probe in PROBES:
            result = _read(results / info.run_id, probe)
            if result is None:
                continue
            depth = {layer.name: layer.depth for layer in result.layers}
            for part, metric, value, low, high, status in result.to_frame().itertuples(index=False):
                rows.append({
                    "run_id": info.run_id, "checkpoint": info.path, "family": family, "probe": probe,
                    "layer": part, "depth": depth.get(part), "metric": metric,
                    "value": _number(value), "low": _number(low), "high": _number(high), "status": status,
                })  # fmt: skip
    return rows
