"""`mprobe cutting-planes`: class-manifold dimension by random cutting planes (Fort et al. 2022).

The science is in manifold_probe.probes.cutting_planes and manifold_probe.measures.cutting_planes,
the table and the success curves in manifold_probe.report; this module parses options, calls
the Python API and prints.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from manifold_probe.errors import InputError

from .options import (
    Arch,
    Data,
    Device,
    Formats,
    HtmlOut,
    JsonOut,
    NPoints,
    NumClasses,
    PlotlyJs,
    Quiet,
    Seed,
    Split,
    TrustCheckpoint,
)
from .output import console, print_result, write_outputs

Models = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        help="Checkpoint (see `mprobe id --help`). Repeat it for an ensemble: the members' averaged "
        "probability is the criterion, which probes the intersection of their class manifolds.",
        show_default=False,
    ),
]
Classes = Annotated[
    str,
    typer.Option(
        "--class",
        help="all (every class separately), one class (3), or a comma list (3,5): each separately, "
        "or with --set one set.",
    ),
]
AsSet = Annotated[
    bool,
    typer.Option(
        "--set",
        help="Treat the --class list as one set Y: planes aim at the low-confidence boundary between "
        "its classes (soft target 1/|Y| each).",
    ),
]
Dims = Annotated[
    str | None,
    typer.Option(
        "--dims",
        help="Cutting dimensions d, comma-separated (e.g. 8,16,32), each from 1 to the input dimension D.",
        show_default="about 14 log-spaced values from 1 to D",
    ),
]
Planes = Annotated[int, typer.Option("--planes", help="Random planes per cutting dimension and target.")]
Steps = Annotated[
    int,
    typer.Option("--steps", help="Most Adam steps per plane (a cap: planes stop when their loss plateaus)."),
]
Lr = Annotated[float, typer.Option("--lr", help="Adam learning rate on the plane coordinates.")]
Patience = Annotated[
    int,
    typer.Option("--patience", help="Stop a plane early when its loss has not improved for this many steps."),
]
Batch = Annotated[int, typer.Option("--batch", help="Planes optimised together in one forward pass.")]
StopAtHit = Annotated[
    bool,
    typer.Option(
        "--stop-at-hit",
        help="Stop each plane at its first hit (p >= 0.5): the same readings in fewer steps; a hit "
        "plane's recorded max probability is then its first score above 0.5.",
    ),
]
Orthonormal = Annotated[
    bool,
    typer.Option(
        "--orthonormal",
        help="Orthonormalise each plane's Gaussian basis (same span; the reference uses unit-length rows).",
    ),
]
Offset = Annotated[
    str,
    typer.Option(
        "--offset",
        help="Where planes start: data (a point of another class from the chosen split) or noise "
        "(Gaussian with the data's per-feature mean and std).",
    ),
]
Bootstrap = Annotated[
    int, typer.Option("--bootstrap", help="Bootstrap resamples of the planes for the 95 % interval of d*.")
]

HELP = "\n\n".join(
    [
        "Dimension of each class manifold by random affine cutting planes (Fort et al. 2022).",
        "A class manifold is the input region the model assigns to a class with high confidence. Random "
        "affine planes of dimension d start at a data point of another class (x = x0 + theta M, M random "
        "with unit-length Gaussian rows); Adam moves theta to raise the class's probability. A plane HITS "
        "when the class probability reaches 0.5 somewhere on its trajectory (for a --set Y: every class of "
        "Y reaches half its share 1/|Y|; for an ensemble: the members' averaged probability). The hit "
        "fraction rises with d; d* is where a sigmoid in ln d crosses 0.5, and the class-manifold "
        "dimension is D - d* (D: the input dimension).",
        "Caveats: the model runs in eval mode (the reference used batch statistics). Inputs on the planes "
        "are not clipped to the data range (neither are the reference's), so a plane may reach a class "
        "far outside the data. Run-to-run variation of d* can be large (Fort et al. report up to 2x): "
        "compare models with the same --seed, --dims and --planes. An ensemble's criterion is the averaged "
        "probability, so a plane deep inside one member's class counts even where another member disagrees.",
    ]
)


def cutting_planes_command(
    model: Models = None,
    data: Data = "digits",
    classes: Classes = "all",
    as_set: AsSet = False,
    dims: Dims = None,
    planes: Planes = 5,
    steps: Steps = 3000,
    lr: Lr = 0.05,
    patience: Patience = 20,
    batch: Batch = 512,
    orthonormal: Orthonormal = False,
    stop_at_hit: StopAtHit = False,
    offset: Offset = "data",
    n_bootstrap: Bootstrap = 200,
    arch: Arch = None,
    num_classes: NumClasses = None,
    trust_checkpoint: TrustCheckpoint = False,
    split: Split = "train",
    n_points: NPoints = None,
    seed: Seed = 0,
    device: Device = "auto",
    json: JsonOut = None,
    html: HtmlOut = None,
    plotlyjs: PlotlyJs = "inline",
    formats: Formats = "html",
    quiet: Quiet = False,
) -> None:
    """Dimension of each class manifold by random affine cutting planes (see HELP)."""
    if not model:
        raise InputError("give a checkpoint (repeat it for an ensemble).", parameter="model")
    import manifold_probe as mp
    from manifold_probe.report.tables import format_value
    from manifold_probe.validation import check_dims

    chosen = None if dims is None else tuple(check_dims(dims))  # checked against D once the data load
    models = [
        mp.load_model(
            path, arch=arch, num_classes=num_classes, trust_checkpoint=trust_checkpoint, device=device
        )
        for path in model
    ]
    data = mp.load_data(data, split=split, n_points=n_points, seed=seed)
    start = time.perf_counter()
    result = mp.cutting_planes(
        models, data, classes=classes, as_set=as_set, dims=chosen, planes=planes, steps=steps, lr=lr,
        patience=patience, batch=batch, orthonormal=orthonormal, stop_at_hit=stop_at_hit, offset=offset,
        n_bootstrap=n_bootstrap, progress=not quiet,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    print_result(result)
    summary = result.summary
    console.print(
        f"mean class-manifold dimension {format_value(summary['mean_manifold_dim'])} over "
        f"{summary['n_crossed']} of {summary['n_targets']} targets that crossed 0.5 "
        f"(D = {summary['input_dim']}, {len(models)} model{'s' if len(models) > 1 else ''}); {elapsed:.1f} s",
        highlight=False,
    )
    write_outputs(result, json, html, plotlyjs=plotlyjs, formats=formats)


def register(app: typer.Typer) -> None:
    app.command("cutting-planes", help=HELP)(cutting_planes_command)
