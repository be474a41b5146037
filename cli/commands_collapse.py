"""`mprobe collapse` and `mprobe spectra`: neural collapse and class/cross-class spectra per layer.

The science is in manifold_probe.geometry.{collapse,spectra} and manifold_probe.measures.collapse,
the tables and pages in manifold_probe.report; this module parses options, expands checkpoint
globs, calls the Python API and prints.
"""

from __future__ import annotations

import glob
import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from manifold_probe.errors import InputError

from .options import Formats, HtmlOut, JsonOut, PlotlyJs, SourceArgs, is_named_arch, source_options
from .output import err_console, exit_if_nothing_measured, print_result, write_outputs

Models = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        help="Checkpoint (see `mprobe id --help`). Repeat it, or give a quoted glob ('run-epoch*.pt'), "
        "to follow collapse over training: one entry per checkpoint, sorted by epoch.",
        show_default=False,
    ),
]
ClassifierFile = Annotated[
    Path | None,
    typer.Option(
        "--classifier",
        help="With --points: the last layer's weight W (.npy, classes x features); adds nc2_*_weights, "
        "nc3 and nc4 (spectra: the Fisher block).",
        show_default=False,
    ),
]
BiasFile = Annotated[
    Path | None,
    typer.Option("--bias", help="With --classifier: its bias b (.npy, length classes).", show_default=False),
]
FisherPoints = Annotated[
    int | None,
    typer.Option(
        "--fisher-points",
        help="Samples (a stratified seeded subset) for the last layer's Fisher block.",
        min=2,
        show_default="2000",
    ),
]
NValues = Annotated[
    int | None,
    typer.Option(
        "--n-values", help="Largest eigenvalues per spectrum kept in the JSON.", min=1, show_default="200"
    ),
]


# --- options ---------------------------------------------------------------------------


def expand_models(values: list[str]) -> list[str]:
    """Checkpoint paths from repeated --model values, each a path or a glob (expanded here, so
    a quoted pattern works), duplicates dropped; the profile orders them by epoch."""
    paths: list[str] = []
    for value in values:
        pattern = os.path.expanduser(value)
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise InputError(f"no checkpoint matches {value!r}; check the pattern.", parameter="model")
            paths.extend(matches)
        else:
            paths.append(value)
    unique = {}
    for path in paths:
        unique.setdefault(os.path.realpath(path), path)
    return list(unique.values())


def _check_points_options(source: SourceArgs, classifier: Path | None, bias: Path | None) -> None:
    if bias is not None and classifier is None:
        raise InputError("--bias needs --classifier (the weight it belongs to).")
    if source.points is None and classifier is not None:
        raise InputError(
            "--classifier goes with --points; with --model the classifier is the model's last nn.Linear."
        )
    if source.points is not None and source.labels is None:
        raise InputError("--points needs --labels: neural collapse compares classes.")


def _points_classifier(classifier: Path | None, bias: Path | None):
    """(W, b) arrays of --classifier and --bias (None, None without them)."""
    from manifold_probe.measures.sources import load_array  # the arrays of --classifier and --bias

    if classifier is None:
        return None, None
    weight = load_array(str(classifier), "classifier file")
    return weight, (load_array(str(bias), "bias file") if bias is not None else None)


# --- mprobe collapse -------------------------------------------------------------------


@source_options(models=Models)
def collapse_command(
    classifier: ClassifierFile = None,
    bias: BiasFile = None,
    json: JsonOut = None,
    html: HtmlOut = None,
    plotlyjs: PlotlyJs = "inline",
    formats: Formats = "html",
    *,
    source: SourceArgs,
    models: list[str] | None,
) -> None:
    """Neural collapse (Papyan, Han & Donoho 2020) of every layer: NC1, CDNV, NC2, ETF distance.

    On the layer feeding the classifier (the model's last nn.Linear, or --classifier with
    --points) also nc2_*_weights, nc3_self_duality and nc4_ncc_mismatch. Measured on the
    whole train split by default, streamed in float64. Several --model checkpoints (or a
    quoted glob) give each metric against epoch.
    """
    if models and source.points is not None:
        raise InputError("give either --model (with --data) or --points, not both.")
    if not models and source.points is None and not is_named_arch(source.arch):
        raise InputError("give either --model (with --data), --arch timm:NAME/hf:FOLDER, or --points.")
    _check_points_options(source, classifier, bias)
    import manifold_probe as mp
    from manifold_probe.measures.collapse import collapse_series

    progress = not source.quiet
    if source.points is not None:
        weight, offsets = _points_classifier(classifier, bias)
        with source.load(min_points=4) as arrays:
            result = mp.collapse(arrays, classifier=weight, bias=offsets, progress=progress)
    else:
        paths = expand_models(models) if models else [None]  # None: the model --arch names
        results = []
        for number, path in enumerate(paths, start=1):
            if len(paths) > 1 and progress:
                err_console.print(f"checkpoint {number}/{len(paths)}: {path}", highlight=False)
            one = replace(source, model=path)
            with one.load(classifier=True) as arrays:
                results.append(mp.collapse(arrays, classifier=True, progress=progress))
        result = collapse_series(results)
    print_result(result)
    write_outputs(result, json, html, plotlyjs=plotlyjs, formats=formats)
    exit_if_nothing_measured(result)


# --- mprobe spectra --------------------------------------------------------------------


@source_options
def spectra_command(
    classifier: ClassifierFile = None,
    bias: BiasFile = None,
    fisher_points: FisherPoints = None,
    n_values: NValues = None,
    json: JsonOut = None,
    html: HtmlOut = None,
    plotlyjs: PlotlyJs = "inline",
    formats: Formats = "html",
    *,
    source: SourceArgs,
) -> None:
    """Class/cross-class spectra (Papyan 2020) of every layer's features, and of the last
    layer's Fisher (Gauss-Newton) block split into class means, cross-class and within-class.

    Per layer: the eigenvalues of the feature covariance and of its between- and within-class
    parts, the outliers above the within-class bulk and their share of the variance. On the
    classifier's layer the Fisher block on a stratified subset of --fisher-points samples.
    The JSON keeps the largest --n-values eigenvalues of each spectrum.
    """
    import manifold_probe as mp

    _check_points_options(source, classifier, bias)
    weight, offsets = _points_classifier(classifier, bias)
    given = {"n_values": n_values, "fisher_points": fisher_points}  # None: the library's default
    with source.load(min_points=4, classifier=source.points is None) as arrays:
        result = mp.spectra(
            arrays, classifier=weight if source.points is not None else True, bias=offsets,
            seed=source.seed, progress=not source.quiet, **{k: v for k, v in given.items() if v is not None},
        )  # fmt: skip
    print_result(result)
    write_outputs(result, json, html, plotlyjs=plotlyjs, formats=formats)
    exit_if_nothing_measured(result)


def register_collapse(app: typer.Typer) -> None:
    app.command("collapse")(collapse_command)


def register_spectra(app: typer.Typer) -> None:
    app.command("spectra")(spectra_command)
