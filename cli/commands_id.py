"""`mprobe id`: the intrinsic-dimension profile of a model's layers, or of one point cloud."""

from __future__ import annotations

from typing import Annotated

import typer

from .options import HtmlOut, JsonOut, PlotlyJs, SourceArgs, source_options, split_list
from .output import exit_if_nothing_measured, print_result, write_outputs

Method = Annotated[
    list[str] | None,
    typer.Option(
        "--method",
        help="Estimators, comma-separated: twonn, mle, pca (PCA 90 % and participation ratio), or any "
        "scikit-dimension estimator: corrint, danco, ess, fishers, gride, knn, lpca, mada, mind_ml, "
        "mom, tle, ph.",
        show_default="twonn,mle,pca",
    ),
]
Bootstrap = Annotated[
    int, typer.Option("--bootstrap", help="Bootstrap resamples for 95 % intervals (0: none).", min=0)
]


KnnBackend = Annotated[
    str,
    typer.Option(
        "--knn-backend",
        help="Exact neighbour search: torch (CPU/GPU) or faiss (optional extra manifold-probe[faiss]).",
    ),
]


@source_options
def id_command(
    method: Method = None,
    bootstrap: Bootstrap = 0,
    knn_backend: KnnBackend = "torch",
    json: JsonOut = None,
    html: HtmlOut = None,
    plotlyjs: PlotlyJs = "inline",
    *,
    source: SourceArgs,
) -> None:
    """Intrinsic dimension of every layer (TwoNN, MLE, PCA, scikit-dimension estimators).

    One kNN graph per layer (exact distances) feeds every estimator. Give --model and --data
    for a network's layers, or --points for any embedding array.
    """
    import manifold_probe as mp

    methods = split_list(method) or ("twonn", "mle", "pca")
    with source.load(min_points=4) as arrays:
        result = mp.intrinsic_dimension(
            arrays, methods=methods, n_bootstrap=bootstrap, seed=source.seed, device=source.device,
            knn_backend=knn_backend, progress=not source.quiet,
        )  # fmt: skip
    print_result(result)
    write_outputs(result, json, html, plotlyjs=plotlyjs)
    exit_if_nothing_measured(result)


def register(app: typer.Typer) -> None:
    app.command("id")(id_command)
