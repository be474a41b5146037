"""`mprobe collapse` and `mprobe spectra`: neural collapse and class/cross-class spectra per layer.

The science is in manifold_probe.geometry.{collapse,spectra} and manifold_probe.profiles.collapse;
this module parses options, expands checkpoint globs, prints tables and draws the pages.
"""

from __future__ import annotations

import glob
import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import numpy as np
import plotly.graph_objects as go
import typer
from plotly.subplots import make_subplots
from rich.table import Table

from manifold_probe.errors import InputError
from manifold_probe.pipeline import DataSelection, LayerArrays, data_key, load_array
from manifold_probe.profiles.collapse import (
    CLASSIFIER_METRICS,
    COLLAPSE_METRICS,
    FISHER_METRICS,
    FISHER_POINTS,
    SPECTRA_METRICS,
    SPECTRUM_VALUES,
    ClassifierLayer,
    classifier_from_arrays,
    collapse_profile,
    collapse_series,
    model_classifier,
    points_classifier,
    spectra_profile,
)
from manifold_probe.report.profile_page import layer_profile_figure, write_page
from manifold_probe.results import Result

from .options import HtmlOut, JsonOut, SourceArgs, source_options
from .output import _format, console, err_console, print_layers, write_outputs

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
    int,
    typer.Option(
        "--fisher-points",
        help="Samples (a stratified seeded subset) for the last layer's Fisher block.",
        min=2,
    ),
]
NValues = Annotated[
    int,
    typer.Option("--n-values", help="Largest eigenvalues per spectrum kept in the JSON.", min=1),
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
                raise InputError(f"no checkpoint matches --model {value!r}; check the pattern.")
            paths.extend(matches)
        else:
            paths.append(value)
    unique = {}
    for path in paths:
        unique.setdefault(os.path.realpath(path), path)
    return list(unique.values())


def _data_key_of(source: SourceArgs) -> str:
    return data_key(DataSelection(source.data, source.split, source.n_points, source.seed))


def _check_points_options(source: SourceArgs, classifier: Path | None, bias: Path | None) -> None:
    if bias is not None and classifier is None:
        raise InputError("--bias needs --classifier (the weight it belongs to).")
    if source.points is None and classifier is not None:
        raise InputError(
            "--classifier goes with --points; with --model the classifier is the model's last nn.Linear."
        )
    if source.points is not None and source.labels is None:
        raise InputError("--points needs --labels: neural collapse compares classes.")


def _points_classifier(arrays: LayerArrays, classifier: Path | None, bias: Path | None):
    if classifier is None:
        return None
    weight = load_array(str(classifier), "classifier file")
    offsets = load_array(str(bias), "bias file") if bias is not None else None
    head = classifier_from_arrays(weight, offsets, name=Path(classifier).name)
    return points_classifier(arrays, head)


def _model_classifier(arrays: LayerArrays, source: SourceArgs) -> ClassifierLayer:
    return model_classifier(
        arrays,
        data_key=_data_key_of(source),
        batch_size=source.batch_size,
        device=source.device,
        cache_dir=str(source.cache_dir) if source.cache_dir else None,
        use_cache=not source.no_cache,
        progress=not source.quiet,
    )


# --- mprobe collapse -------------------------------------------------------------------


@source_options(models=Models)
def collapse_command(
    classifier: ClassifierFile = None,
    bias: BiasFile = None,
    json: JsonOut = None,
    html: HtmlOut = None,
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
    if not models and source.points is None:
        raise InputError("give either --model (with --data) or --points.")
    _check_points_options(source, classifier, bias)
    progress = not source.quiet
    if source.points is not None:
        with source.load(min_points=4) as arrays:
            layer = _points_classifier(arrays, classifier, bias)
            result = collapse_profile(arrays, layer, progress=progress)
    else:
        paths = expand_models(models)
        results = []
        for number, path in enumerate(paths, start=1):
            if len(paths) > 1 and progress:
                err_console.print(f"checkpoint {number}/{len(paths)}: {path}", highlight=False)
            one = replace(source, model=path)
            with one.load() as arrays:
                layer = _model_classifier(arrays, one)
                results.append(collapse_profile(arrays, layer, progress=progress))
        result = collapse_series(results)
    print_collapse(result)
    write_outputs(result, json)
    if html is not None:
        write_page(html, collapse_figures(result), title="mprobe collapse", notes=_notes(result))
        err_console.print(f"wrote {html}")


def _classifier_layer(result: Result):
    name = (result.summary.get("classifier") or {}).get("layer")
    return next((layer for layer in result.layers if layer.name == name), None)


def _metric_table(title: str, layer, metrics) -> Table:
    table = Table(title=title, header_style="bold")
    table.add_column("metric", style="cyan")
    table.add_column("value", justify="right")
    for metric in metrics:
        if metric in layer.metrics:
            table.add_row(metric, _format(layer.metrics[metric]))
    return table


def print_collapse(result: Result) -> None:
    """The per-layer table, the classifier's metrics and, for several checkpoints, an epoch table."""
    print_layers(result, list(COLLAPSE_METRICS[:4]), title="neural collapse by layer")
    print_layers(result, list(COLLAPSE_METRICS[4:]), title="NC2: the class means by layer")
    layer = _classifier_layer(result)
    if layer is not None:
        module = result.summary["classifier"]["module"]
        console.print(_metric_table(f"classifier {module} on layer {layer.name}", layer, CLASSIFIER_METRICS))
    checkpoints = result.summary.get("checkpoints") or []
    if len(checkpoints) > 1:
        table = Table(title="over training (the classifier's layer)", header_style="bold")
        columns = ["nc1", "etf_distance", "nc3_self_duality", "nc4_ncc_mismatch"]
        for name in ("epoch", "train acc", "test acc", *columns, "checkpoint"):
            table.add_column(name, justify="left" if name == "checkpoint" else "right")
        for entry in checkpoints:
            table.add_row(
                _format(entry["epoch"]),
                _format(entry["train_accuracy"]),
                _format(entry["test_accuracy"]),
                *(_format(entry["metrics"].get(m)) for m in columns),
                Path(str(entry["model"])).name,
            )
        console.print(table)


def _notes(result: Result) -> str:
    summary = result.summary
    parts = [f"source: {result.source.get('model') or result.source.get('points')}"]
    if result.source.get("split"):
        parts.append(f"split {result.source['split']}, {result.source.get('n_points')} samples")
    parts.append(f"{summary.get('n_classes')} classes")
    classifier = summary.get("classifier")
    if classifier:
        parts.append(f"classifier {classifier['module']} on layer {classifier['layer']}")
    return "; ".join(parts) + "."


def _classifier_table_figure(result: Result) -> go.Figure | None:
    layer = _classifier_layer(result)
    if layer is None:
        return None
    shown = [m for m in (*COLLAPSE_METRICS, *CLASSIFIER_METRICS) if m in layer.metrics]
    fig = go.Figure(
        go.Table(
            header={"values": ["metric", "value"]},
            cells={"values": [shown, [_format(layer.metrics[m]) for m in shown]]},
        )
    )
    fig.update_layout(title=f"the classifier's layer: {layer.name}", height=60 + 28 * len(shown))
    return fig


EPOCH_METRICS = (
    "nc1",
    "etf_distance",
    "nc2_equinorm_means",
    "nc2_equinorm_weights",
    "nc2_equiangular_means",
    "nc2_equiangular_weights",
    "nc2_max_angle_means",
    "nc2_max_angle_weights",
    "nc3_self_duality",
    "nc4_ncc_mismatch",
)


def _positive(values):
    return [v if v is not None and np.isfinite(v) and v > 0 else None for v in values]


def epoch_figure(checkpoints: list[dict]) -> go.Figure:
    """Metric versus epoch: accuracy, NC1 and ETF distance of every layer (one line each), then
    the classifier layer's NC2-NC4 (Papyan et al.'s figures 2-7)."""
    x = [e["epoch"] if e["epoch"] is not None else i for i, e in enumerate(checkpoints)]
    metrics = [m for m in EPOCH_METRICS[2:] if any(m in e["metrics"] for e in checkpoints)]
    titles = ["accuracy", "nc1 by layer (log)", "etf_distance by layer", *metrics]
    fig = make_subplots(
        rows=len(titles), cols=1, shared_xaxes=True, subplot_titles=titles, vertical_spacing=0.03
    )
    for key, colour in (("train_accuracy", "#1f77b4"), ("test_accuracy", "#d62728")):
        values = [e.get(key) for e in checkpoints]
        if any(v is not None for v in values):
            fig.add_trace(
                go.Scatter(x=x, y=values, name=key, mode="lines+markers", line={"color": colour}), 1, 1
            )
    layer_names = list(dict.fromkeys(name for e in checkpoints for name in e["layers"]))
    palette = ["#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#d62728"]
    for i, name in enumerate(layer_names):
        colour = palette[i % len(palette)]
        for row, metric in ((2, "nc1"), (3, "etf_distance")):
            values = [e["layers"].get(name, {}).get(metric) for e in checkpoints]
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=_positive(values) if metric == "nc1" else values,
                    name=name,
                    legendgroup=name,
                    showlegend=row == 2,
                    mode="lines+markers",
                    line={"color": colour},
                ),
                row,
                1,
            )
    fig.update_yaxes(type="log", row=2, col=1)
    for row, metric in enumerate(metrics, start=4):
        values = [e["metrics"].get(metric) for e in checkpoints]
        fig.add_trace(
            go.Scatter(
                x=x, y=values, name=metric, showlegend=False, mode="lines+markers", line={"color": "#333"}
            ),
            row,
            1,
        )
    fig.update_xaxes(title_text="epoch", row=len(titles), col=1)
    fig.update_layout(
        title="Neural collapse over training", height=230 * len(titles), template="plotly_white"
    )
    return fig


def collapse_figures(result: Result) -> list[go.Figure]:
    """Metric versus layer, the classifier's metrics, and metric versus epoch (several checkpoints)."""
    figures = [
        layer_profile_figure(
            [result], list(COLLAPSE_METRICS), log_y=["nc1", "nc1_trace_ratio", "cdnv"],
            title="Neural collapse by layer",
        )
    ]  # fmt: skip
    table = _classifier_table_figure(result)
    if table is not None:
        figures.append(table)
    checkpoints = result.summary.get("checkpoints") or []
    if len(checkpoints) > 1:
        figures.append(epoch_figure(checkpoints))
    return figures


# --- mprobe spectra --------------------------------------------------------------------


@source_options
def spectra_command(
    classifier: ClassifierFile = None,
    bias: BiasFile = None,
    fisher_points: FisherPoints = FISHER_POINTS,
    n_values: NValues = SPECTRUM_VALUES,
    json: JsonOut = None,
    html: HtmlOut = None,
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
    _check_points_options(source, classifier, bias)
    progress = not source.quiet
    with source.load(min_points=4) as arrays:
        if source.points is not None:
            layer = _points_classifier(arrays, classifier, bias)
        else:
            layer = _model_classifier(arrays, source)
        result = spectra_profile(
            arrays, layer, n_values=n_values, fisher_points=fisher_points, seed=source.seed, progress=progress
        )
    print_layers(result, list(SPECTRA_METRICS), title="class/cross-class spectra by layer")
    fisher_layer = _classifier_layer(result)
    if fisher_layer is not None and "fisher_n_outliers" in fisher_layer.metrics:
        console.print(
            _metric_table(f"Fisher block of the classifier on layer {fisher_layer.name}", fisher_layer,
                          FISHER_METRICS)
        )  # fmt: skip
    write_outputs(result, json)
    if html is not None:
        figures = [
            layer_profile_figure([result], list(SPECTRA_METRICS), log_y=["outlier_bulk_ratio"],
                                 title="Spectra metrics by layer"),
            spectra_figure(result),
        ]  # fmt: skip
        if fisher_layer is not None and "fisher" in fisher_layer.details:
            figures.append(fisher_figure(fisher_layer))
        write_page(html, figures, title="mprobe spectra", notes=_notes(result))
        err_console.print(f"wrote {html}")


def _eigen_trace(values, name, colour, *, offset=0, mode="markers", showlegend=True, group=None):
    values = np.asarray(values, dtype=float)
    keep = values > 0  # a log axis has no room for zero (or rounding-negative) eigenvalues
    index = np.arange(1, len(values) + 1) + offset
    return go.Scatter(
        x=index[keep],
        y=values[keep],
        name=name,
        mode=mode,
        marker={"color": colour, "size": 6},
        line={"color": colour},
        legendgroup=group or name,
        showlegend=showlegend,
    )


def spectra_figure(result: Result) -> go.Figure:
    """One log-scale panel per layer: the covariance eigenvalues, the class-mean outliers above
    the within-class bulk edge in red, the between- and within-class spectra, the bulk edge."""
    layers = [layer for layer in result.layers if "spectra" in layer.details]
    titles = [f"{layer.name}: {int(layer.metrics.get('n_outliers', 0))} outliers" for layer in layers]
    fig = make_subplots(rows=max(len(layers), 1), cols=1, subplot_titles=titles, vertical_spacing=0.04)
    for row, layer in enumerate(layers, start=1):
        spectra = layer.details["spectra"]
        total = np.asarray(spectra["total"], dtype=float)
        n_out = int(layer.metrics.get("n_outliers", 0))
        first = row == 1
        fig.add_trace(_eigen_trace(spectra["within"], "within-class (bulk)", "#aaaaaa", mode="lines",
                                   showlegend=first), row, 1)  # fmt: skip
        fig.add_trace(_eigen_trace(spectra["between"], "between-class (class means)", "#2ca02c",
                                   showlegend=first), row, 1)  # fmt: skip
        fig.add_trace(_eigen_trace(total[n_out:], "covariance: bulk", "#1f77b4", offset=n_out,
                                   showlegend=first), row, 1)  # fmt: skip
        fig.add_trace(
            _eigen_trace(total[:n_out], "covariance: outliers", "#d62728", showlegend=first), row, 1
        )
        if spectra["bulk_edge"] > 0:
            fig.add_hline(y=spectra["bulk_edge"], line_dash="dash", line_color="#888", row=row, col=1)
        fig.update_yaxes(type="log", row=row, col=1)
    fig.update_xaxes(title_text="eigenvalue index", row=max(len(layers), 1), col=1)
    fig.update_layout(
        title="Covariance spectra (log scale; dashed: the within-class bulk edge)",
        height=max(360, 300 * len(layers)),
        template="plotly_white",
    )
    return fig


def fisher_figure(layer) -> go.Figure:
    """The Fisher block's eigenvalues (log scale) with its class-mean outliers (G1, C of them),
    the cross-class mini-bulk (G2), the same-class part (G0) and the within-class bulk edge."""
    fisher = layer.details["fisher"]
    fig = go.Figure()
    fig.add_trace(_eigen_trace(fisher["total"], "G (whole block)", "#1f77b4", mode="lines+markers"))
    fig.add_trace(_eigen_trace(fisher["class_means"], "G1 class means (outliers)", "#d62728"))
    fig.add_trace(_eigen_trace(fisher["cross_class"], "G2 cross-class (mini-bulk)", "#ff7f0e"))
    fig.add_trace(_eigen_trace(fisher["same_class"], "G0 same class", "#9467bd"))
    fig.add_trace(_eigen_trace(fisher["within_class"], "within-class (top)", "#7f7f7f"))
    if fisher["bulk_edge"] > 0:
        fig.add_hline(y=fisher["bulk_edge"], line_dash="dash", line_color="#888")
    fig.update_yaxes(type="log", title_text="eigenvalue")
    fig.update_xaxes(title_text="index")
    fig.update_layout(
        title=f"Fisher block of the classifier on {layer.name} ({fisher['n_points']} samples; "
        "dashed: the within-class bulk edge)",
        height=480,
        template="plotly_white",
    )
    return fig


def register(app: typer.Typer) -> None:
    app.command("collapse")(collapse_command)
    app.command("spectra")(spectra_command)
