"""Sweeps: the probes over many checkpoints, resumable, on local processes or a Ray cluster,
and the table with one row per checkpoint that the report stage reads.

Layout of a sweep folder SWEEP:

    SWEEP/results/<run_id>/<probe>.json        one Result per checkpoint and probe
    SWEEP/results/<run_id>/<probe>.error.txt   the traceback of a task that failed
    SWEEP/cache/                               the activation cache shared by all tasks
    SWEEP/table.csv, SWEEP/table.parquet       one row per checkpoint (Parquet when pyarrow imports)

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
- `curvature`: kNN neighbourhoods, default K, 200 bootstrap resamples.
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
from ..validation import check_sweep_options

PROBES: tuple[str, ...] = SWEEP_PROBES
"""The probes a sweep runs (`registry.MEASURES`); each result's `command` is the probe's name."""
EXECUTORS: tuple[str, ...] = ("local", "ray")

CUTTING_PLANE_DIMS = 7
"""How many log-spaced cutting dimensions a sweep's cutting-planes probe tries."""

ZOO_FILE = "zoo.json"
TABLE_CSV = "table.csv"
TABLE_PARQUET = "table.parquet"

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
    the number of input features when the model records its input shape.
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


def describe_checkpoints(items: Sequence[str | os.PathLike | SweepCheckpoint]) -> list[SweepCheckpoint]:
    """Load each checkpoint once (on the CPU) for its run id and metadata, and attach the zoo
    entry from the zoo.json beside it. A folder stands for every *.pt in it; repeats of the
    same weights under the same name are dropped."""
    zoos: dict[str, dict[str, dict[str, Any]]] = {}
    described: dict[str, SweepCheckpoint] = {}
    known = [item for item in items if isinstance(item, SweepCheckpoint)]
    paths = (
        checkpoint_paths([item for item in items if not isinstance(item, SweepCheckpoint)])
        if len(known) < len(items)
        else []
    )
    for info in known:
        described.setdefault(info.run_id, info)
    for item in paths:
        path = Path(item).expanduser().resolve()
        loaded = load_model(path, device="cpu")
        folder = str(path.parent)
        if folder not in zoos:
            zoos[folder] = read_zoo(folder)
        entry = zoos[folder].get(str(path), {})
        shape = loaded.input_shape
        info = SweepCheckpoint(
            path=str(path),
            run_id=f"{path.stem}-{loaded.digest[:8]}",
            digest=loaded.digest,
            family=entry.get("family"),
            settings=dict(entry.get("settings") or {}),
            metadata=loaded.checkpoint,
            arch=loaded.arch,
            arch_args=loaded.arch_args,
            input_dim=int(np.prod(shape)) if shape else None,
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
    reduction: str = "none"

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
    (`registry.MEASURES[probe].sweep_options`), on the train split's seeded subset."""
    from .. import api

    model = api.load_model(task.checkpoint, device=task.device)
    data = api.load_data(task.data, split="train", n_points=task.n_points, seed=task.seed)
    options = dict(MEASURES[task.probe].sweep_options)
    if task.probe == "cutting-planes":
        options["dims"] = tuple(default_dims(task.input_dim, CUTTING_PLANE_DIMS)) if task.input_dim else None
    else:
        options["cache"] = task.cache_dir or True
        options["reduction"] = task.reduction
        if task.probe != "collapse":
            options["seed"] = task.seed
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


def result_complete(path: str | os.PathLike, probe: str) -> bool:
    """Whether `path` holds a finished result of `probe` (it exists and reads back)."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        return read_result(p).command == probe
    except (InputError, KeyError, TypeError, UnicodeDecodeError, OSError):
        return False


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

    @property
    def executed(self) -> int:
        """Tasks run by this sweep (done or failed)."""
        return len(self.done) + len(self.failed)


def run_sweep(
    checkpoints: Sequence[str | os.PathLike | SweepCheckpoint],
    probes: Sequence[str] = ("id", "curvature"),
    out_dir: str | os.PathLike = "sweep",
    *,
    data: str = "digits",
    n_points: int | None = None,
    seed: int = 0,
    reduction: str = "none",
    device: str = "cpu",
    executor: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    progress: bool = False,
) -> SweepSummary:
    """Run every probe on every checkpoint into `out_dir`, skipping finished tasks, then
    write the table (see the module docstring). Failing tasks are recorded and reported in
    the summary; the others go on. `reduction` applies to every extracted layer (a spec of
    `extraction.reductions`, e.g. `avgpool` or `project:512`; cutting planes work on the inputs)."""
    chosen = check_sweep_options(probes, executor, workers, known_probes=PROBES, executors=EXECUTORS)
    parse_reduction(reduction)  # a bad spec stops here, not in every task
    out = Path(out_dir).expanduser().resolve()
    infos = describe_checkpoints(checkpoints)
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
            if result_complete(path, probe):
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
                )
            )  # fmt: skip
    outcomes: list[TaskOutcome] = []
    if tasks:
        stream = _run_local(tasks, workers) if executor == "local" else _run_ray(tasks, workers, ray_address)
        outcomes.extend(track(stream, description="sweep", total=len(tasks), enabled=progress))
    csv_path, parquet_path = write_table(collect_table(out, infos), out)
    return SweepSummary(
        out_dir=out,
        checkpoints=len(infos),
        done=tuple(o for o in outcomes if o.status == "done"),
        skipped=skipped,
        failed=tuple(o for o in outcomes if o.status == "failed"),
        table_csv=csv_path,
        table_parquet=parquet_path,
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


def _row(info: SweepCheckpoint, measures: dict[str, dict[str, float | None]]) -> dict[str, Any]:
    meta = info.metadata or {}
    training = dict(meta.get("training") or {})
    arch_args = dict(meta.get("arch_args") or info.arch_args or {})
    settings = {**SETTING_DEFAULTS, **info.settings, **{k: v for k, v in training.items() if v is not None}}
    metrics = meta.get("metrics") or {}
    epoch = meta.get("epoch", settings.get("epochs"))
    arch = meta.get("arch") or info.arch
    train_acc, test_acc = _number(metrics.get("train_accuracy")), _number(metrics.get("test_accuracy"))
    row: dict[str, Any] = {
        "run_id": info.run_id,
        "checkpoint": info.path,
        "family": info.family or arch,
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
    then `MEASURE_COLUMNS` in the order id, curvature, collapse, cutting-planes."""
    results = Path(sweep_dir).expanduser() / "results"
    infos = describe_checkpoints(checkpoints)
    measured = [_measures(results / info.run_id) for info in infos]
    probes = [p for p in PROBES if any(p in m for m in measured)]
    columns = list(COLUMN_TYPES) + [c for p in probes for c in MEASURE_COLUMNS[p]]
    rows = []
    for info, measures in zip(infos, measured, strict=True):
        row = _row(info, measures)
        rows.append({c: _typed(row.get(c), COLUMN_TYPES.get(c, "float")) for c in columns})
    return rows


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
    csv_path = out / TABLE_CSV
    with atomic_write(csv_path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
    if not parquet_available():
        return csv_path, None
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"string": pa.string(), "bool": pa.bool_(), "int": pa.int64(), "float": pa.float64()}
    schema = pa.schema([(c, types[COLUMN_TYPES.get(c, "float")]) for c in columns])
    table = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows], schema=schema)
    parquet_path = out / TABLE_PARQUET
    atomic_save(parquet_path, lambda tmp: pq.write_table(table, tmp))
    return csv_path, parquet_path
