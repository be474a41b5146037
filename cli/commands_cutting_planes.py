"""`mprobe cutting-planes`: class-manifold dimension by random cutting planes (Fort et al. 2022).

The science is in manifold_probe.probes.cutting_planes and manifold_probe.profiles.cutting_planes;
this module parses options, prints the table and draws the success curves.
"""

from __future__ import annotations

import math
import time
from typing import Annotated

import plotly.graph_objects as go
import typer
from plotly.subplots import make_subplots
from rich.table import Table

from manifold_probe.errors import InputError
from manifold_probe.pipeline import DataSelection, ModelSpec
from manifold_probe.profiles.cutting_planes import (
    CAVEATS,
    HIT_DEFINITION,
    CuttingPlaneOptions,
    cutting_planes_profile,
    success_curve_points,
)
from manifold_probe.report.profile_page import write_page
from manifold_probe.results import Result
from manifold_probe.validation import check_dims

from .options import (
    Arch,
    Data,
    Device,
    HtmlOut,
    JsonOut,
    NPoints,
    NumClasses,
    Quiet,
    Seed,
    Split,
    TrustCheckpoint,
)
from .output import _format, console, err_console, write_outputs

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

SPARK = "·▁▂▃▄▅▆▇█"


def _hits_cell(entry: dict) -> str:
    """Hit fraction per d, compact: one bar character per swept d, then (up to 6 dims) the counts."""
    records = entry["success"]
    bars = "".join(SPARK[round(r["hit_fraction"] * (len(SPARK) - 1))] for r in records)
    if len(records) > 6:
        return bars
    return f"{bars} {' '.join(str(r['hits']) for r in records)}"


def _target_name(entry: dict) -> str:
    target = entry["class"]
    return "{" + ", ".join(map(str, target)) + "}" if isinstance(target, list) else str(target)


def _dim(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def _with_interval(value, low, high) -> str:
    return f"{_dim(value)} [{_dim(low)}, {_dim(high)}]"


def class_table(result: Result) -> Table:
    """One row per target: d* [interval], D - d* [interval], status, hits per d (bars and counts)."""
    dims = result.params["dims"]
    planes = result.params["planes"]
    input_dim = result.summary["input_dim"]
    table = Table(
        title=f"class-manifold dimension by cutting planes (D = {input_dim})",
        caption=f"hits per d: share of {planes} planes that hit, · none to █ all; "
        f"d = {', '.join(map(str, dims))}",
        header_style="bold",
    )
    table.add_column("class", style="cyan", no_wrap=True)
    table.add_column("d* [95 %]", justify="right", no_wrap=True)
    table.add_column("D - d* [95 %]", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("hits per d", no_wrap=True)
    for entry in result.classes:
        table.add_row(
            _target_name(entry),
            _with_interval(entry["critical_dim"], *entry["critical_dim_interval"]),
            _with_interval(entry["manifold_dim"], *entry["manifold_dim_interval"]),
            entry["critical_dim_status"],
            _hits_cell(entry),
        )
    return table


def success_figure(result: Result) -> go.Figure:
    """One panel per target: hit fraction against d (log axis), the fitted sigmoid, d* and its interval."""
    entries = result.classes
    cols = min(len(entries), 5)
    rows = math.ceil(len(entries) / cols)
    titles = []
    for entry in entries:
        dim = entry["manifold_dim"]
        text = f"class {_target_name(entry)}: " + (
            f"D - d* = {dim:.1f}" if dim is not None else entry["critical_dim_status"]
        )
        titles.append(text)
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=titles, shared_yaxes=True,
        horizontal_spacing=0.04, vertical_spacing=min(0.15, 0.6 / rows),
    )  # fmt: skip
    colours = {"hits": "#1f77b4", "fit": "#d62728", "prob": "#7f7f7f", "star": "#2ca02c"}
    for i, entry in enumerate(entries):
        row, col = i // cols + 1, i % cols + 1
        first = i == 0
        dims = [record["dim"] for record in entry["success"]]
        fractions = [record["hit_fraction"] for record in entry["success"]]
        hover = [
            f"d = {r['dim']}<br>{r['hits']} of {r['planes']} planes hit"
            f"<br>mean max p = {r['mean_max_prob']:.3f}"
            for r in entry["success"]
        ]
        fig.add_trace(
            go.Scatter(
                x=dims, y=fractions, mode="markers", name="hit fraction", legendgroup="hits",
                showlegend=first, marker={"color": colours["hits"], "size": 8},
                hovertext=hover, hoverinfo="text",
            ),
            row=row, col=col,
        )  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=dims, y=[r["mean_max_prob"] for r in entry["success"]], mode="lines",
                name="mean max target probability", legendgroup="prob", showlegend=first,
                line={"color": colours["prob"], "dash": "dot", "width": 1},
            ),
            row=row, col=col,
        )  # fmt: skip
        grid, curve = success_curve_points(entry)
        if grid:
            fig.add_trace(
                go.Scatter(
                    x=grid, y=curve, mode="lines", name="fitted sigmoid in ln d", legendgroup="fit",
                    showlegend=first, line={"color": colours["fit"]}, hoverinfo="skip",
                ),
                row=row, col=col,
            )  # fmt: skip
        low, high = entry["critical_dim_interval"]
        if low is not None and high is not None:
            fig.add_trace(
                go.Scatter(
                    x=[low, high, high, low, low], y=[0, 0, 1, 1, 0], mode="lines", fill="toself",
                    fillcolor="rgba(44,160,44,0.15)", line={"width": 0}, name="95 % interval of d*",
                    legendgroup="interval", showlegend=first, hoverinfo="skip",
                ),
                row=row, col=col,
            )  # fmt: skip
        star = entry["critical_dim"]
        if star is not None:
            fig.add_trace(
                go.Scatter(
                    x=[star, star], y=[0, 1], mode="lines", name="d* (fit crosses 0.5)",
                    legendgroup="star", showlegend=first,
                    line={"color": colours["star"], "dash": "dash"},
                    hovertext=f"d* = {star:.2f}, D - d* = {entry['manifold_dim']:.2f}", hoverinfo="text",
                ),
                row=row, col=col,
            )  # fmt: skip
    fig.update_xaxes(type="log", title_text="cutting dimension d")
    fig.update_yaxes(range=[-0.05, 1.05])
    fig.update_yaxes(title_text="fraction of planes that hit", col=1)
    fig.update_layout(
        title=f"Success curves (D = {result.summary['input_dim']}, {result.params['planes']} planes per d)",
        height=max(380, 330 * rows), template="plotly_white", hovermode="closest",
    )  # fmt: skip
    return fig


def dimension_figure(result: Result) -> go.Figure:
    """Class-manifold dimension D - d* per target with its interval (targets that crossed)."""
    entries = [e for e in result.classes if e["manifold_dim"] is not None]
    values = [e["manifold_dim"] for e in entries]
    lows = [e["manifold_dim_interval"][0] for e in entries]
    highs = [e["manifold_dim_interval"][1] for e in entries]
    fig = go.Figure(
        go.Bar(
            x=[_target_name(e) for e in entries],
            y=values,
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [0 if h is None else h - v for h, v in zip(highs, values, strict=True)],
                "arrayminus": [0 if lo is None else v - lo for lo, v in zip(lows, values, strict=True)],
            },
            marker={"color": "#1f77b4"},
        )
    )
    fig.update_layout(
        title=f"Class-manifold dimension D - d* (D = {result.summary['input_dim']})",
        xaxis_title="class", yaxis_title="D - d*", template="plotly_white", height=360,
        xaxis={"type": "category"},
    )  # fmt: skip
    return fig


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
    offset: Offset = "data",
    bootstrap: Bootstrap = 200,
    arch: Arch = None,
    num_classes: NumClasses = None,
    trust_checkpoint: TrustCheckpoint = False,
    split: Split = "train",
    n_points: NPoints = None,
    seed: Seed = 0,
    device: Device = "auto",
    json: JsonOut = None,
    html: HtmlOut = None,
    quiet: Quiet = False,
) -> None:
    """Dimension of each class manifold by random affine cutting planes (see HELP)."""
    if not model:
        raise InputError("give --model (repeat it for an ensemble).")
    options = CuttingPlaneOptions(
        dims=None if dims is None else tuple(check_dims(dims)),  # checked against D once the data load
        planes=planes,
        steps=steps,
        lr=lr,
        patience=patience,
        batch=batch,
        orthonormal=orthonormal,
        offset=offset,
        n_bootstrap=bootstrap,
    )
    specs = [ModelSpec(path, arch, num_classes, trust_checkpoint) for path in model]
    start = time.perf_counter()
    result = cutting_planes_profile(
        specs,
        DataSelection(data, split, n_points, seed),
        classes=classes,
        as_set=as_set,
        options=options,
        device=device,
        progress=not quiet,
    )
    elapsed = time.perf_counter() - start
    console.print(class_table(result))
    summary = result.summary
    mean = summary["mean_manifold_dim"]
    console.print(
        f"mean class-manifold dimension {_format(mean)} over {summary['n_crossed']} of "
        f"{summary['n_targets']} targets that crossed 0.5 (D = {summary['input_dim']}, "
        f"{len(specs)} model{'s' if len(specs) > 1 else ''}); {elapsed:.1f} s",
        highlight=False,
    )
    write_outputs(result, json)
    if html is not None:
        notes = (
            f"{HIT_DEFINITION}. Caveats: {CAVEATS}. "
            f"Models: {result.source['model']}; data: {data} ({split})."
        )
        if "ensemble_limitation" in summary:
            notes += f" Ensemble: {summary['ensemble_limitation']}."
        write_page(html, [success_figure(result), dimension_figure(result)], title="mprobe cutting-planes",
                   notes=notes)  # fmt: skip
        err_console.print(f"wrote {html}")


def register(app: typer.Typer) -> None:
    app.command("cutting-planes", help=HELP)(cutting_planes_command)
