"""One task of a sweep (one measure on one checkpoint), run the same way by every executor.

A task writes its result atomically (`Result.write`: temporary file, then rename), so no result
file is ever half-written; on an error it writes the traceback to `<measure>.error.txt` beside
it instead. The measure runs through the registry (`registry.get(name)`) with its sweep options
(`SweepSpec.options`), the sweep's own options for it (`measure_options`), and, for measures
that read layers (`SweepSpec.extracts`), the sweep's layers, reduction, cache and seed.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import registry
from ..errors import InputError
from ..files import atomic_write
from ..results import Result, read_result


@dataclass(frozen=True)
class SweepTask:
    """One measure on one checkpoint: everything a worker process needs, as plain values.
    `measure` is the measure's registry name; `options` the sweep's own options for it
    (`run_sweep(measure_options=...)`), on top of its registry sweep options; `data_options`
    go to `load_data` (normalize, input_shape, channels), `extract_options` to the measure of a
    measure that reads layers (batch_size, max_memory)."""

    checkpoint: str
    run_id: str
    measure: str
    result_path: str
    data: str = "digits"
    split: str = "train"
    n_points: int | None = None
    seed: int = 0
    device: str = "cpu"
    cache_dir: str | None = None
    torch_threads: int | None = None
    reduction: str | dict[str, str] = "auto"
    layout: str | dict[str, str] = "auto"
    layers: tuple[str, ...] | None = None
    load_options: dict[str, Any] = field(default_factory=dict)
    data_options: dict[str, Any] = field(default_factory=dict)
    extract_options: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def error_path(self) -> Path:
        """Where a failure's traceback goes: `<measure>.error.txt` beside the result."""
        return Path(self.result_path).with_name(f"{self.measure}.error.txt")


@dataclass(frozen=True)
class TaskOutcome:
    """What became of a task: status `done` or `failed` (with the error's last line), the
    process that ran it (0 when its worker died), and `notes`: what was left out for this
    checkpoint and why (a layer pattern or a per-layer reduction that names none of its layers)."""

    run_id: str
    measure: str
    status: str
    seconds: float = 0.0
    error: str | None = None
    worker_pid: int = 0
    notes: tuple[str, ...] = ()


def fit_layers_to_model(
    model: Any, data: Any, layers: tuple[str, ...] | None, reduction: str | dict[str, str]
) -> tuple[tuple[str, ...] | None, str | dict[str, str], tuple[str, ...]]:
    """The sweep's layer patterns and per-layer reductions that apply to this model, and a note
    for each one left out: a sweep over several architectures names layers each of them lacks
    (`blocks.*` in a ViT, `layer*` in a ResNet). Patterns that match nothing are dropped (an
    InputError when none is left); a `LAYER=SPEC` reduction whose key matches none of the
    chosen layers is dropped."""
    from .. import api
    from ..extraction.patterns import layer_matches

    infos = api.list_layers(model, data)
    names = [info.name for info in infos]
    notes = []
    chosen = [info.name for info in infos if info.default]
    if layers:
        kept = tuple(p for p in layers if any(layer_matches(name, p) for name in names))
        if not kept:
            raise InputError(
                f"none of the layer patterns {', '.join(layers)} matches a layer of this model "
                f"(it has {', '.join(names[:6])}{', ...' if len(names) > 6 else ''})."
            )
        notes += [f"layer pattern {p!r} matches no layer of this model: left out for this checkpoint"
                  for p in layers if p not in kept]  # fmt: skip
        layers = kept
        chosen = [name for name in names if any(layer_matches(name, p) for p in kept)]
    if isinstance(reduction, dict):
        unused = [k for k in reduction if k != "default" and not any(layer_matches(n, k) for n in chosen)]
        notes += [f"reduction {k}={reduction[k]} matches none of this model's chosen layers: left out "
                  "for this checkpoint" for k in unused]  # fmt: skip
        plan = {k: v for k, v in reduction.items() if k not in unused}
        reduction = plan.get("default", "auto") if set(plan) <= {"default"} else plan
    return layers, reduction, tuple(notes)


def _measure(task: SweepTask) -> tuple[Result, tuple[str, ...]]:
    """The measure of `task` through the registry, with its sweep options (`SweepSpec.options`),
    the sweep's options for it (`task.options`) and, for measures that read layers, the
    sweep's layers and reduction (those that apply to this model: `fit_layers_to_model`), layout,
    cache and seed, on the split's seeded subset; and the notes on what was left out."""
    from .. import api

    measure = registry.get(task.measure)
    model = api.load_model(task.checkpoint, device=task.device, **task.load_options)
    data = api.load_data(task.data, split=task.split, n_points=task.n_points, seed=task.seed,
                         model=model, **task.data_options)  # fmt: skip
    options = {**measure.sweep.options, **task.options}
    notes: tuple[str, ...] = ()
    if measure.sweep.extracts:
        layers, reduction, notes = fit_layers_to_model(model, data, task.layers, task.reduction)
        options.update(cache=task.cache_dir or True, reduction=reduction, seed=task.seed)
        if task.layout != "auto":
            options["layout"] = task.layout
        options.update(task.extract_options)
        if layers:
            options["layers"] = list(layers)
    accepted = inspect.signature(registry.resolve(measure.function)).parameters
    if "seed" not in accepted and not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        options.pop("seed", None)
    result = measure(model, data, **options)
    if notes:
        result = result.with_source(left_out=list(notes))
    return result, notes


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
    """Run one measure on one checkpoint and write its result atomically; on an error write the
    traceback to `<measure>.error.txt` instead and return a failed outcome (never raises for a
    failing measure). Used as is by both executors."""
    start = time.perf_counter()
    if task.torch_threads:
        import torch

        torch.set_num_threads(task.torch_threads)
    path = Path(task.result_path)
    _remove_temporaries(path)
    try:
        result, notes = _measure(task)
        result.with_source(run_id=task.run_id).write(path)
    except Exception:
        text = traceback.format_exc()
        _write_error(task, text)
        seconds = time.perf_counter() - start
        return TaskOutcome(task.run_id, task.measure, "failed", seconds, _last_line(text), os.getpid())
    task.error_path.unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    return TaskOutcome(task.run_id, task.measure, "done", seconds, worker_pid=os.getpid(), notes=notes)


def failure(task: SweepTask, exc: BaseException) -> TaskOutcome:
    """A task whose worker died or could not be reached: recorded like a failing measure."""
    text = "".join(traceback.format_exception_only(type(exc), exc))  # the worker's traceback is lost
    _write_error(task, text)
    return TaskOutcome(task.run_id, task.measure, "failed", 0.0, _last_line(text) or type(exc).__name__)


def result_complete(path: str | os.PathLike, measure: str, params: dict[str, Any] | None = None) -> bool:
    """Whether `path` holds a finished result of `measure` (it exists and reads back), measured
    with `params` (each given parameter equal to the result's own)."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        result = read_result(p)
    except (InputError, KeyError, TypeError, UnicodeDecodeError, OSError):
        return False
    return result.command == measure and all(result.params.get(k) == v for k, v in (params or {}).items())
