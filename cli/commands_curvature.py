"""`mprobe curvature`: the principal-curvature profile of a model's layers, or of one point cloud."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from .options import Formats, HtmlOut, JsonOut, PlotlyJs, SourceArgs, parse_memory, source_options, split_list
from .output import console, exit_if_nothing_measured, print_result, write_outputs

DEFAULT_POINTS = 5000
"""Without --n-points, curvature measures a seeded, class-stratified subset of at most this many
samples: the kNN graph costs N^2 D (Fashion-MNIST's 60,000 training images through a 25,088-wide
first block: about 1e14 operations, hours on 2 cores), while 5,000 points give the scale ladder
its full range (K up to 400 = N / 4 needs 1,600) and the curvature fit hundreds of neighbourhoods
per class."""

NEIGHBOURHOOD_HELP = (
    "knn: each point's K nearest neighbours in the layer itself (works for any layer and for --points). "
    "perturb: the paper's construction for image models: each image's channels are rebuilt from their top "
    "singular values with the smallest of them switched on and off, the perturbed copies go through the "
    "model, and a point's neighbourhood in every layer is its own copies (the same input neighbourhood "
    "in every layer)."
)


@source_options
def curvature_command(
    neighbourhood: Annotated[str, typer.Option("--neighbourhood", help=NEIGHBOURHOOD_HELP)] = "knn",
    dim: Annotated[
        str | None,
        typer.Option(
            "--dim",
            help="Tangent dimension d: an integer, or 'twonn' for each layer's rounded TwoNN estimate "
            "(Kaufman & Azencot's protocol, marked in the result). Default: each layer's, from the gap "
            "in its local PCA spectra at the fit's neighbourhood size; no value where there is no "
            "clear gap.",
            show_default="spectral gap",
        ),
    ] = None,
    k: Annotated[
        int | None,
        typer.Option(
            "--k",
            help="Neighbours per point (knn). Default 3 p, p = 1 + d + d(d+1)/2 unknowns of the quadratic "
            "fit; K must exceed d + d(d+1)/2.",
            min=2,
        ),
    ] = None,
    n_centres: Annotated[
        int | None,
        typer.Option(
            "--centres",
            help="knn: fit at a seeded sample of this many points per layer (neighbours from all points); "
            "the layer's averages are then means over the sample, at that fraction of the cost.",
            min=1,
            show_default="every point",
        ),
    ] = None,
    n_top: Annotated[
        int, typer.Option("--n-top", help="perturb: singular values kept per channel.", min=2)
    ] = 22,
    n_toggle: Annotated[
        int,
        typer.Option("--n-toggle", help="perturb: the smallest kept singular values switched on/off.", min=1),
    ] = 10,
    n_copies: Annotated[
        int | None,
        typer.Option(
            "--copies",
            help="perturb: a seeded subset of the 2^n_toggle - 1 patterns.",
            min=1,
            show_default="all",
        ),
    ] = None,
    n_bootstrap: Annotated[
        int, typer.Option("--bootstrap", help="Bootstrap resamples of the points for intervals.", min=1)
    ] = 1000,
    n_null: Annotated[
        int,
        typer.Option(
            "--null-draws",
            help="Gaussian draws with each layer's covariance (and, with labels, the class-conditional "
            "mixture) that the same estimator runs on: the matched null beside every curvature (0: none).",
            min=0,
        ),
    ] = 19,
    denoise: Annotated[
        bool,
        typer.Option(
            "--denoise/--no-denoise",
            help="Project wide layers on their principal components above the noise edge before the "
            "profile and the fit (recorded in the result).",
        ),
    ] = True,
    compare: Annotated[
        list[Path] | None,
        typer.Option(
            "--compare",
            help="More checkpoints measured the same way and drawn on the same page (e.g. an untrained "
            "copy); their JSON goes beside --json as <stem>.<checkpoint stem>.json.",
            show_default=False,
        ),
    ] = None,
    log_scale: Annotated[
        bool, typer.Option("--log-scale", help="Curvature axes on a log scale in the page.")
    ] = False,
    family: Annotated[
        str | None,
        typer.Option(
            "--family",
            help="Exact curvature instead of the sampled estimate: the image of a smooth input family, "
            "differentiated through the model. plane:I,J,K (the plane through data points I, J, K), "
            "rotate-scale:I, translate:I (image I moved smoothly), circle[:Q] (a great circle, Poole et "
            "al.).",
            show_default=False,
        ),
    ] = None,
    family_points: Annotated[
        int | None,
        typer.Option(
            "--family-points",
            help="--family: about this many values of theta on a grid.",
            min=4,
            show_default="1024",
        ),
    ] = None,
    second_derivative: Annotated[
        str,
        typer.Option(
            "--second-derivative",
            help="--family: auto (finite differences where the model is "
            "piecewise linear), autodiff or finite-difference.",
        ),
    ] = "auto",
    fd_step: Annotated[
        float,
        typer.Option(
            "--fd-step",
            help="--family: the finite-difference step, a fraction of each parameter's "
            "range (the scale at which a ReLU net's kinks are smoothed).",
            min=0.0,
        ),
    ] = 0.01,
    compare_sampled: Annotated[
        bool,
        typer.Option(
            "--compare-sampled",
            help="--family: also run the sampled estimator on each layer's image "
            "points, beside the exact value (its interval and status).",
        ),
    ] = False,
    json: JsonOut = None,
    html: HtmlOut = None,
    plotlyjs: PlotlyJs = "inline",
    formats: Formats = "html",
    *,
    source: SourceArgs,
) -> None:
    """Principal curvature of every layer's data manifold (Kaufman & Azencot 2023; Li 2017).

    Each layer is measured only inside its manifold scale window (the multiscale profile: the
    range of radii where it looks like a d-manifold), after denoising, with guards and a matched
    null. Per layer: curvature_sff (the second-fundamental-form norm, noise-corrected), mapc
    (the paper's mean absolute principal curvature), their dimensionless _scaled forms,
    signal_to_noise, the null's mean, the excess over it and the p-value, and the status:
    measured (a flat window reads 0 with an upper bound), no_manifold_scale (no window: no
    number, the profile on the page shows why), cannot_tell (reason printed), paper_protocol
    (--dim twonn: Kaufman & Azencot's fit at d = rounded TwoNN, beside its null),
    not_measurable or skipped. Exit code 3 when no layer has a reading (the result is written
    first). The summary holds the curvature gap, last minus penultimate layer (NaN unless both
    have a reading). Without --n-points, a seeded subset of at most 5,000 samples is measured.
    """
    if neighbourhood not in ("knn", "perturb"):
        raise typer.BadParameter("use knn or perturb", param_hint="--neighbourhood")
    if n_centres is not None and neighbourhood != "knn":
        raise typer.BadParameter("--centres is for knn neighbourhoods", param_hint="--centres")
    if compare and source.model is None:
        raise typer.BadParameter("--compare needs --model", param_hint="--compare")
    import manifold_probe as mp
    from manifold_probe.validation import check_curvature_dim

    if family is not None:
        options = {"family": family, "n_grid": family_points, "second_derivative": second_derivative,
                   "fd_step": fd_step, "compare_sampled": compare_sampled,
                   "n_bootstrap": n_bootstrap}  # fmt: skip
        return _family_command(source, compare, options, json, html, plotlyjs, formats)

    dim = check_curvature_dim(dim)  # a bad --dim stops before the data loads
    source = dataclasses.replace(source, default_points=DEFAULT_POINTS)
    sources = [source] + [dataclasses.replace(source, model=str(path)) for path in compare or []]
    results = []
    for src in sources:
        with src.load(min_points=4) as arrays:
            result = mp.curvature(
                arrays, neighbourhood=neighbourhood, dim=dim, k=k, n_bootstrap=n_bootstrap, n_top=n_top,
                n_toggle=n_toggle, n_copies=n_copies, seed=src.seed, device=src.device,
                max_memory=parse_memory(src.max_memory), n_centres=n_centres, n_null=n_null, denoise=denoise,
                progress=not src.quiet,
            )  # fmt: skip
        results.append(result)
        print_result(result, title=f"curvature by layer: {src.model or src.points}")
        if dim == "twonn":
            console.print("d = each layer's TwoNN estimate rounded (Kaufman & Azencot's protocol), "
                          "not read from its local spectra")  # fmt: skip
        if "curvature_gap" in result.summary:
            gaps = {"mapc": "curvature_gap", "mapc_scaled": "curvature_gap_scaled",
                    "curvature_sff_scaled": "curvature_sff_gap_scaled"}  # fmt: skip
            console.print("curvature gap (last - penultimate): " + ", ".join(
                f"{name} {_gap_text(result.summary[key])}" for name, key in gaps.items()
            ))  # fmt: skip
    write_outputs(
        results[0], json, html, results=results, log_scale=log_scale, plotlyjs=plotlyjs, formats=formats
    )
    if json is not None:
        for src, result in zip(sources[1:], results[1:], strict=True):
            write_outputs(result, json.with_name(f"{json.stem}.{Path(src.model).stem}.json"))
    exit_if_nothing_measured(results[0])


def _family_command(source: SourceArgs, compare, options: dict, json, html, plotlyjs, formats) -> None:
    """`mprobe curvature --family SPEC`: the exact curvature of each model's image of the family."""
    import manifold_probe as mp

    if source.points is not None:
        raise typer.BadParameter(
            "--family needs --model: the family is pushed through it", param_hint="--family"
        )
    sources = [source] + [dataclasses.replace(source, model=str(path)) for path in compare or []]
    results = []
    for src in sources:
        model = src.load_model()
        data = src.load_data(model)
        result = mp.family_curvature(
            model, data, layers=split_list(src.layers, parameter="layers"), reduction=src.reduction or "auto",
            seed=src.seed, device=src.device, max_memory=parse_memory(src.max_memory), progress=not src.quiet,
            **options,
        )  # fmt: skip
        results.append(result)
        print_result(result, title=f"exact curvature of {options['family']}: {src.model or src.arch}")
    write_outputs(results[0], json, html, results=results, plotlyjs=plotlyjs, formats=formats)
    if json is not None:
        for src, result in zip(sources[1:], results[1:], strict=True):
            write_outputs(result, json.with_name(f"{json.stem}.{Path(src.model).stem}.json"))


def _gap_text(value: float) -> str:
    """A gap as printed: its value, or "cannot tell" when an end layer has no value (NaN)."""
    return "cannot tell" if value != value else f"{value:.4g}"


def register(app: typer.Typer) -> None:
    app.command("curvature")(curvature_command)
