"""Sweeps: the measures over many checkpoints, resumable, on local processes or a Ray cluster,
and the table with one row per checkpoint that the report stage reads.

The work is split by concern: `checkpoints` (files, zoos, manifests), `tasks` (one measure on
one checkpoint), `executors` (local processes, Ray), `tables` (the tables); this module runs
them together (`run_sweep`).

Layout of a sweep folder SWEEP:

    SWEEP/results/<run_id>/<measure>.json        one Result per checkpoint and measure
    SWEEP/results/<run_id>/<measure>.error.txt   the traceback of a task that failed
    SWEEP/cache/                                 the activation cache shared by all tasks
    SWEEP/table.csv, SWEEP/table.parquet         one row per checkpoint (Parquet when pyarrow imports)
    SWEEP/layers.csv, SWEEP/layers.parquet       the long form: one row per checkpoint, measure,
                                                 layer and metric (run_id, checkpoint, family,
                                                 measure, layer, depth, metric, value, low, high,
                                                 status)

Checkpoints are files and folders (every *.pt, with the family and settings of a zoo.json
beside them), or the rows of a manifest (`checkpoints.read_manifest`: CSV or JSON with path,
arch, family, test and train accuracy and any hyper-parameters) for checkpoints the project
did not train. The model and data options of the measuring commands (`arch`, `num_classes`,
`arch_args`, `in_channels`, `trust_checkpoint`, `layers`, `reduction`, `normalize`, ...) apply
to every checkpoint; a manifest row's own arch, num_classes, arch_kwargs, in_channels, layers,
reduction and normalize take precedence for that row. A layer pattern (or `LAYER=SPEC`
reduction) that names no layer of one architecture is left out for that checkpoint with a note
(`tasks.fit_layers_to_model`); a manifest row that cannot run is reported and the others run.

One task per (checkpoint, measure) (`tasks`). A task whose result file exists and reads back
as a result of its measure (measured with the sweep's `measure_options`) is skipped, so a
killed sweep restarted redoes only what is missing; a result file that does not read back
(damaged, not a JSON object, another measure's) counts as missing and is recomputed with a
warning. Leftover temporary files of a killed task are removed when that task runs again.
Measures of one checkpoint share one extraction through the activation cache (tasks are
queued measure by measure, so the first measure of a checkpoint has usually cached its
activations before the next one starts; two concurrent extractions of the same key are safe,
see `extraction.cache`).

The options a sweep runs each measure with are in its registry entry (`registry.SweepSpec`):
- `id`: TwoNN, MLE (k = 20), PCA 90 % and participation ratio; no bootstrap.
- `curvature`: kNN neighbourhoods, default K, 200 bootstrap resamples; d per layer from the
  spectral gap, or `measure_options={"curvature": {"dim": "twonn", "n_centres": 250}}`.
- `collapse`: NC metrics of every layer; the classifier's metrics on its input layer.
- `spectra`: covariance spectra of every layer, the Fisher split on the classifier's input
  layer (the command's defaults).
- `cutting-planes`: every class, 7 log-spaced cutting dimensions from 1 to the input
  dimension, 3 planes per dimension optimised until their loss plateaus (the command's cap
  of 3000 steps), 100 bootstrap resamples (the command's defaults are about 14 dimensions and
  5 planes).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import registry
from ..errors import InputError
from ..extraction.layouts import parse_layout
from ..extraction.reductions import parse_reduction
from ..progress import track
from ..validation import check_curvature_dim, check_free_space, check_positive, check_sweep_options
from .checkpoints import ManifestEntry, RejectedRow, SweepCheckpoint, describe_checkpoints, read_manifest_rows
from .executors import EXECUTORS, run_local, run_ray
from .tables import collect_layer_table, collect_table, write_layer_table, write_table
from .tasks import SweepTask, TaskOutcome, result_complete

SWEEP_MIN_FREE = 64 * 2**20
"""Free space a sweep asks of its folder before it starts: on a full disk every task would
fail in turn (each layer's cache entry checks its own size again)."""


@dataclass(frozen=True)
class SweepSummary:
    """What a sweep did: tasks done (run now), skipped (already complete), failed; manifest rows
    `rejected` (not run, with the reason); the table. Each done task's `notes` say what was left
    out for its checkpoint (a layer pattern its architecture lacks)."""

    out_dir: Path
    checkpoints: int
    done: tuple[TaskOutcome, ...]
    skipped: int
    failed: tuple[TaskOutcome, ...]
    table_csv: Path
    table_parquet: Path | None
    layers_csv: Path | None = None
    layers_parquet: Path | None = None
    rejected: tuple[RejectedRow, ...] = ()

    @property
    def executed(self) -> int:
        """Tasks run by this sweep (done or failed)."""
        return len(self.done) + len(self.failed)


def run_sweep(
    checkpoints: Sequence[str | os.PathLike | SweepCheckpoint | ManifestEntry] = (),
    measures: Sequence[str] = ("id", "curvature"),
    out_dir: str | os.PathLike = "sweep",
    *,
    manifest: str | os.PathLike | None = None,
    data: str = "digits",
    split: str = "train",
    n_points: int | None = None,
    seed: int = 0,
    reduction: str | dict[str, str] = "auto",
    layout: str | dict[str, str] = "auto",
    layers: Sequence[str] | None = None,
    arch: str | None = None,
    num_classes: int | None = None,
    arch_args: dict[str, Any] | None = None,
    in_channels: int | None = None,
    trust_checkpoint: bool = False,
    normalize: str | tuple | None = None,
    input_shape: Sequence[int] | str | None = None,
    batch_size: int = 256,
    max_memory: int | None = None,
    measure_options: Mapping[str, Mapping[str, Any]] | None = None,
    device: str = "cpu",
    executor: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    progress: bool = False,
) -> SweepSummary:
    """Run every measure on every checkpoint into `out_dir`, skipping finished tasks, then
    write the table and its long form (see the module docstring). Failing tasks are recorded
    and reported in the summary; the others go on.

    checkpoints: files, folders, and with `manifest` (a CSV or JSON file, `read_manifest`)
    also the manifest's checkpoints; a manifest row that cannot run (a bad cell, a model that
    does not load) is reported in `SweepSummary.rejected` and the other rows run. `arch`,
    `num_classes`, `arch_args`, `in_channels`, `trust_checkpoint` load every checkpoint (a
    manifest row's own arch, num_classes, arch_kwargs, in_channels, layers, reduction,
    normalize win for that row), as for the measuring commands. `layers` (names or globs; None:
    the default layers) and `reduction` (a spec of `extraction.reductions`, e.g. `avgpool` or
    `project:512`, or a dict {layer pattern: spec, "default": spec}) and `layout` (`auto`,
    `channels_first`, `channels_last`, or such a dict: what `avgpool` averages) apply to every
    extracted layer; a pattern or per-layer reduction that names no layer of one architecture is left
    out for that checkpoint (the task's `notes` and the result's `source.left_out` say so);
    cutting planes work on the inputs. `data`, `split`, `n_points`, `seed`, `normalize`,
    `input_shape` (and `in_channels` for image folders) choose the points every checkpoint is
    measured on; `batch_size` and `max_memory` bound the extraction, as for the measuring
    commands. `measure_options` maps a measure's name to options of its own on top of its
    registry sweep options, e.g. `{"curvature": {"dim": "twonn", "n_centres": 250}}`; a
    finished result measured with other values of those options is redone.

    Example
    -------
    >>> from manifold_probe.study.sweep import run_sweep
    >>> summary = run_sweep(["ckpt.pt", "untrained.pt"], ["id"], "sweep", n_points=200, workers=1)
    >>> len(summary.done), len(summary.failed), summary.rejected
    (2, 0, ())
    """
    chosen = check_sweep_options(measures, executor, workers, known_measures=registry.sweep_measures(),
                                 executors=EXECUTORS)  # fmt: skip
    for spec in reduction.values() if isinstance(reduction, dict) else [reduction]:
        parse_reduction(spec)  # a bad spec stops here, not in every task
    for value in layout.values() if isinstance(layout, dict) else [layout]:
        parse_layout(value)
    if split not in ("train", "test"):
        raise InputError(f"must be train or test, got {split!r}.", parameter="split")
    own = {name: dict(options) for name, options in (measure_options or {}).items()}
    for name in own:
        registry.get(name)  # an unknown measure stops here
    if "curvature" in own:
        own["curvature"]["dim"] = check_curvature_dim(own["curvature"].get("dim"))
        if own["curvature"].get("n_centres") is not None:
            check_positive(own["curvature"]["n_centres"], name="n_centres", integer=True)
    out = Path(out_dir).expanduser().resolve()
    check_positive(batch_size, name="batch_size", integer=True)
    if max_memory is not None:
        check_positive(max_memory, name="max_memory", integer=True)
    rejected: list[RejectedRow] = []
    listed: list[ManifestEntry] = []
    if manifest is not None:
        listed, rejected = read_manifest_rows(manifest)
    items = list(checkpoints) + listed
    if not items and not rejected:
        raise InputError("give at least one checkpoint (a .pt file or a folder of them) or a manifest.")
    load_options = {"arch": arch, "num_classes": num_classes, "arch_args": arch_args,
                    "in_channels": in_channels, "trust_checkpoint": trust_checkpoint}  # fmt: skip
    infos = describe_checkpoints(items, load_options=load_options, rejected=rejected)
    if not infos:
        reasons = "; ".join(f"{row.where}: {row.reason}" for row in rejected[:3])
        raise InputError(f"no checkpoint can be run ({reasons})." if rejected else
                         "give at least one checkpoint (a .pt file or a folder of them).")  # fmt: skip
    folder_data = data.startswith("imagefolder:")
    extract_options: dict[str, Any] = {"batch_size": batch_size}
    if max_memory is not None:
        extract_options["max_memory"] = max_memory
    out.mkdir(parents=True, exist_ok=True)
    check_free_space(out, SWEEP_MIN_FREE, "a sweep", "free some space, or give another --out.")
    if executor == "local":
        workers = workers or max(1, min(2, os.cpu_count() or 1))
    threads = 1 if executor == "ray" or (workers or 1) > 1 else None
    tasks: list[SweepTask] = []
    skipped = 0
    for name in chosen:  # measure by measure: one checkpoint's measures rarely run at the same time
        for info in infos:
            path = out / "results" / info.run_id / f"{name}.json"
            if result_complete(path, name, own.get(name)):
                skipped += 1
                continue
            if path.exists():
                warnings.warn(f"{path} is not a complete {name} result; recomputing it.", stacklevel=2)
            path.parent.mkdir(parents=True, exist_ok=True)
            data_options = {"normalize": normalize, "input_shape": input_shape,
                            "channels": in_channels, **info.data_options}  # fmt: skip
            if not folder_data:
                data_options.pop("channels")
            tasks.append(
                SweepTask(
                    checkpoint=info.path, run_id=info.run_id, measure=name, result_path=str(path),
                    data=data, split=split, n_points=n_points, seed=seed, device=device,
                    cache_dir=str(out / "cache"), torch_threads=threads,
                    reduction=reduction if info.reduction is None else info.reduction, layout=layout,
                    layers=info.layers or (tuple(layers) if layers else None), load_options=info.load_options,
                    data_options={k: v for k, v in data_options.items() if v is not None},
                    extract_options=extract_options, options=own.get(name, {}),
                )
            )  # fmt: skip
    outcomes: list[TaskOutcome] = []
    if tasks:
        stream = run_local(tasks, workers) if executor == "local" else run_ray(tasks, workers, ray_address)
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
        rejected=tuple(rejected),
    )
