"""`mprobe sweep`: the measures over many checkpoints, resumable, and one table of them all.

The work is in manifold_probe.study.sweep; this module parses options and prints the summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from manifold_probe import registry

from .options import (
    Arch,
    ArchArgs,
    BatchSize,
    Data,
    Device,
    InChannels,
    InputShape,
    Layers,
    Layout,
    MaxMemory,
    Normalize,
    NPoints,
    NumClasses,
    Quiet,
    Reduction,
    Seed,
    Split,
    TrustCheckpoint,
    parse_arch_args,
    parse_memory,
    parse_normalize,
    split_list,
)
from .output import console, err_console

Checkpoints = Annotated[
    list[Path] | None,
    typer.Argument(
        help="Checkpoints (.pt), or folders: every *.pt in a folder, with the family and settings of "
        "its zoo.json when present. Optional with --manifest.",
        show_default=False,
    ),
]
Manifest = Annotated[
    Path | None,
    typer.Option(
        "--manifest",
        help="CSV or JSON listing checkpoints the project did not train: path, arch, num_classes, "
        "arch_kwargs, in_channels, layers, reduction, normalize (each row's own win), family, test_acc, "
        "train_acc, and any hyper-parameters as further columns. A bad row is reported, the others run.",
        show_default=False,
    ),
]
Measures = Annotated[
    list[str] | None,
    typer.Option(
        "--measures",
        "--probes",
        help=f"Measures, comma-separated: {', '.join(registry.sweep_measures())} (the options each runs "
        "with: manifold_probe.study.sweep). --probes is the old name of this option.",
        show_default="id,curvature",
    ),
]
Out = Annotated[
    Path,
    typer.Option(
        "--out",
        help="Sweep folder: results/<run_id>/<measure>.json, cache/, table.csv, table.parquet. Finished "
        "results there are kept and skipped.",
    ),
]
CurvatureDim = Annotated[
    str | None,
    typer.Option(
        "--curvature-dim",
        help="The curvature measure's d: an integer, or 'twonn' for each layer's rounded TwoNN (Kaufman & "
        "Azencot's protocol). Default: each layer's spectral gap (no value where there is no clear gap).",
        show_default="spectral gap",
    ),
]
CurvatureCentres = Annotated[
    int | None,
    typer.Option(
        "--curvature-centres",
        help="The curvature measure fits at a seeded sample of this many points per layer (neighbours from "
        "all points).",
        min=1,
        show_default="every point",
    ),
]
Executor = Annotated[
    str,
    typer.Option(
        "--executor",
        help="local (a process pool on this machine) or ray (a Ray cluster; pip install "
        "'manifold-probe[ray]').",
    ),
]
Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        help="Parallel tasks: local processes (default min(2, CPUs); 1 runs in this process), or the CPUs "
        "of a local Ray cluster.",
        min=1,
        show_default=False,
    ),
]
Address = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="With --executor ray: the cluster's address (e.g. auto or ray://head:10001); default: start "
        "a local cluster. The --out folder must be visible to every node.",
        show_default=False,
    ),
]


def sweep_command(
    checkpoints: Checkpoints = None,
    out: Out = Path("sweep"),
    measures: Measures = None,
    manifest: Manifest = None,
    arch: Arch = None,
    arch_args: ArchArgs = None,
    num_classes: NumClasses = None,
    in_channels: InChannels = None,
    trust_checkpoint: TrustCheckpoint = False,
    layers: Layers = None,
    reduction: Reduction = None,
    layout: Layout = None,
    curvature_dim: CurvatureDim = None,
    curvature_centres: CurvatureCentres = None,
    data: Data = "digits",
    split: Split = "train",
    n_points: NPoints = None,
    normalize: Normalize = None,
    input_shape: InputShape = None,
    batch_size: BatchSize = 256,
    max_memory: MaxMemory = None,
    seed: Seed = 0,
    device: Device = "cpu",
    executor: Executor = "local",
    workers: Workers = None,
    address: Address = None,
    quiet: Quiet = False,
) -> None:
    """Run measures over many checkpoints: one result per checkpoint and measure, and a table.

    Resumable: a task whose result file exists is skipped, so a killed sweep run again redoes
    only what is missing; results are written atomically. A failing task is recorded in
    results/<run_id>/<measure>.error.txt and the others go on; the command then exits with 1.
    The model options (--arch, --arch-kwargs, --num-classes, --in-channels, --trust-checkpoint,
    --layers, --reduction, --layout) and the data options (--data, --split, --n-points, --normalize,
    --input-shape, --seed, --batch-size, --max-memory) are those of the measuring commands; a
    --manifest row's own arch, num_classes, arch_kwargs, in_channels, layers, reduction and
    normalize win for that row. A layer pattern or LAYER=SPEC reduction that names no layer of a
    checkpoint is left out for it (a note says so); a manifest row that cannot run is reported
    and the other rows run (exit code 1).
    Writes table.csv (one row per checkpoint) and layers.csv (one row per checkpoint, measure,
    layer and metric).
    """
    from manifold_probe.extraction.layouts import parse_layout_options
    from manifold_probe.extraction.reductions import parse_reduction_options
    from manifold_probe.report.tables import sweep_table
    from manifold_probe.study.sweep import run_sweep

    curvature = {"dim": curvature_dim, "n_centres": curvature_centres}
    summary = run_sweep(
        [str(path) for path in checkpoints or []],
        split_list(measures, parameter="measures") or ("id", "curvature"),
        out,
        manifest=manifest,
        arch=arch,
        arch_args=parse_arch_args(arch_args),
        num_classes=num_classes,
        in_channels=in_channels,
        trust_checkpoint=trust_checkpoint,
        layers=split_list(layers, parameter="layers"),
        reduction=parse_reduction_options(reduction or ["auto"]),
        layout=parse_layout_options(layout or ["auto"]),
        measure_options={"curvature": curvature},
        data=data,
        split=split,
        n_points=n_points,
        normalize=parse_normalize(normalize),
        input_shape=input_shape,
        batch_size=batch_size,
        max_memory=parse_memory(max_memory),
        seed=seed,
        device=device,
        executor=executor,
        workers=workers,
        ray_address=address,
        progress=not quiet,
    )
    console.print(sweep_table(summary))
    for row in summary.rejected:
        err_console.print(f"[red]not run:[/red] {row.where}: {row.reason}", highlight=False, soft_wrap=True)
    for outcome in summary.done:
        for note in outcome.notes:
            err_console.print(f"note: {outcome.run_id} {outcome.measure}: {note}", highlight=False,
                              soft_wrap=True)  # fmt: skip
    for failure in summary.failed:
        err_console.print(
            f"[red]failed:[/red] {failure.run_id} {failure.measure}: {failure.error} (see "
            f"{summary.out_dir / 'results' / failure.run_id / f'{failure.measure}.error.txt'})",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"table: {summary.table_csv}", highlight=False, soft_wrap=True)
    for path in (summary.table_parquet, summary.layers_csv, summary.layers_parquet):
        if path is not None:
            console.print(f"table: {path}", highlight=False, soft_wrap=True)
    if summary.failed or summary.rejected:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep_command)
