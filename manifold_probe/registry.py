"""The registry of measures: one entry owns everything about a measure outside its estimator.

A `Measure` names its command (the `command` of its results), its API function (`mp.<name>`),
its metrics, its terminal tables and its page (builders, or the generic per-layer ones), what
a sweep runs it with and which columns it adds to the sweep table, and the help and options of
its command. The Python API (`mp.<function>`), `Result.to_html`, the tables, the sweep and the
command line look measures up here; nothing else dispatches on a measure's name.

References to code are `"module:attribute"` strings, imported on first use, so importing the
registry is light (no numpy, no torch) and it depends on nothing it points to.

Adding a measure is its estimator (in `geometry/`), its measure module (the API function, and
any table or page builder of its own) and one `register(Measure(...))` here; docs/architecture.md.

Example
-------
>>> from manifold_probe import registry
>>> [m.name for m in registry.measures()][:3]
['id', 'curvature', 'multiscale']
>>> registry.get("curvature").metrics[:2]
('mapc', 'curvature_sff')
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import metric_names as names
from .errors import InputError


def resolve(reference: str) -> Any:
    """The object a `"module:attribute"` reference names."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class SweepColumn:
    """A column of the sweep table, read from each checkpoint's result of the measure:
    `where` is `summary` (the summary's `key`), `last_layer` (the last layer's metric `key`)
    or `classifier_layer` (metric `key` of the layer that feeds the classifier)."""

    name: str
    where: str
    key: str

    def read(self, result) -> Any:
        if self.where == "summary":
            return result.summary.get(self.key)
        if self.where == "last_layer":
            return result.layers[-1].metrics.get(self.key) if result.layers else None
        if self.where == "classifier_layer":
            layer_name = (result.summary.get("classifier") or {}).get("layer")
            layer = next((layer for layer in result.layers if layer.name == layer_name), None)
            return layer.metrics.get(self.key) if layer is not None else None
        raise ValueError(f"unknown column source {self.where!r}")


@dataclass(frozen=True)
class SweepSpec:
    """How a sweep runs a measure: its fixed `options`, whether the extraction options
    (cache, layers, reduction, seed) apply (`extracts`), and the `columns` it adds to the
    table. Options a sweep sets for a run (`run_sweep(measure_options=...)`) are checked
    against a finished result's params: one measured otherwise is redone."""

    options: Mapping[str, Any] = field(default_factory=dict)
    columns: tuple[SweepColumn, ...] = ()
    extracts: bool = True


@dataclass(frozen=True)
class Option:
    """One option of a measure's command that the command line builds for it (the shared
    source options come on top): the API `parameter`, its `help`, the Python `type` (int,
    float, str, bool; `list` for a comma-separated list of strings), the command-line
    `flag` (default `--parameter-with-dashes`) and, for numbers, a `minimum`."""

    parameter: str
    help: str
    type: type = str
    default: Any = None
    flag: str | None = None
    minimum: float | None = None

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.parameter.replace("_", "-")


@dataclass(frozen=True)
class Measure:
    """A measure. `name` is its command and its results' `command`; `function` its API
    function (`"module:function"`, public as `mp.<function>`); `description` one line (the
    command list, page titles); `help` the command's help; `metrics` the names it reports
    (`metric_names`); `tables` and `figures` builders (`"module:function"`: result -> list of
    rich Tables; (results, names, log_scale) -> (figures, title, notes)), None for the generic
    per-layer table and profile over `metrics`; `table_details` the details fields the generic
    table shows; `log_metrics` the metrics the generic page draws on a log axis; `sweep` how a
    sweep runs it (None: not in sweeps); `options` its own command-line options when the
    command line builds its command (a measure with a hand-written command leaves it empty);
    `needs_labels` says it compares classes; `compares` that it compares two representations
    (its function takes `other=`, and its command a `--compare` checkpoint)."""

    name: str
    function: str
    description: str
    metrics: tuple[str, ...]
    help: str = ""
    tables: str | None = None
    figures: str | None = None
    table_details: tuple[str, ...] = ()
    log_metrics: tuple[str, ...] = ()
    sweep: SweepSpec | None = None
    options: tuple[Option, ...] = ()
    needs_labels: bool = False
    compares: bool = False

    @property
    def api_name(self) -> str:
        """The name of its function in the Python API (`mp.<api_name>`)."""
        return self.function.partition(":")[2]

    def __call__(self, *args: Any, **options: Any):
        """Compute the measure (its API function with these arguments)."""
        return resolve(self.function)(*args, **options)

    def result_tables(self, result) -> list:
        """Every terminal table of `result` (a `Result` of this measure)."""
        if self.tables is not None:
            return resolve(self.tables)(result)
        return resolve("manifold_probe.report.tables:measure_tables")(result, self)

    def result_figures(
        self, results: Sequence, *, names: Sequence[str] | None = None, log_scale: bool = False
    ):
        """(figures, title, notes) of the page of `results` of this measure."""
        if self.figures is not None:
            return resolve(self.figures)(results, names=names, log_scale=log_scale)
        return resolve("manifold_probe.report.pages:measure_figures")(
            results, self, names=names, log_scale=log_scale
        )


_MEASURES: dict[str, Measure] = {}


def register(measure: Measure, *, replace: bool = False) -> Measure:
    """Add a measure (a plugin's, or a test's); its name must be new unless `replace`."""
    if measure.name in _MEASURES and not replace:
        raise ValueError(f"a measure called {measure.name!r} is registered already")
    _MEASURES[measure.name] = measure
    return measure


def unregister(name: str) -> None:
    """Remove a measure (a test's own, after the test)."""
    _MEASURES.pop(name, None)


def measures() -> list[Measure]:
    """Every measure, in the order the command line and a sweep list them."""
    return list(_MEASURES.values())


def get(name: str) -> Measure:
    """The measure called `name` (an InputError naming the known ones otherwise)."""
    try:
        return _MEASURES[name]
    except KeyError:
        raise InputError(f"unknown measure {name!r}; the measures are {', '.join(_MEASURES)}.") from None


def by_api_name(api_name: str) -> Measure | None:
    """The measure whose API function is `mp.<api_name>`, or None."""
    return next((m for m in _MEASURES.values() if m.api_name == api_name), None)


def sweep_measures() -> tuple[str, ...]:
    """The names of the measures a sweep can run."""
    return tuple(m.name for m in _MEASURES.values() if m.sweep is not None)


def run(name: str, *args: Any, **options: Any):
    """Compute the measure called `name` with these arguments."""
    return get(name)(*args, **options)


def write_page(path, results: Sequence, *, names: Sequence[str] | None = None, log_scale: bool = False,
               plotlyjs: str = "inline"):  # fmt: skip
    """Write the page of `results` (of one measure) with the measure's figures; returns the path."""
    results = list(results)
    if not results:
        raise InputError("give at least one result to draw.")
    figures, title, notes = get(results[0].command).result_figures(results, names=names, log_scale=log_scale)
    write: Callable = resolve("manifold_probe.report.profile_page:write_page")
    return write(path, figures, title=title, notes=notes, plotlyjs=plotlyjs)


def plot(results: Sequence, **options):
    """The overlay figure of `results` (`report.figures.plot`): what `Result.plot` draws, bound
    here late so that `results` never imports the report package."""
    draw: Callable = resolve("manifold_probe.report.figures:plot")
    return draw(results, **options)


# --- the measures --------------------------------------------------------------------------

register(Measure(
    name="id",
    function="manifold_probe.measures.intrinsic_dimension:intrinsic_dimension",
    description="intrinsic dimension of every layer",
    help="Intrinsic dimension of every layer (TwoNN, MLE, PCA, scikit-dimension estimators).\n\n"
    "One kNN graph per layer (exact distances) feeds every estimator. Give --model and --data for a "
    "network's layers, or --points for any embedding array.",
    metrics=names.ID_METRICS,
    sweep=SweepSpec(
        options={"methods": ("twonn", "mle", "pca"), "n_bootstrap": 0},
        columns=(SweepColumn("last_layer_id_twonn", "last_layer", "id_twonn"),),
    ),
    options=(
        Option("methods", "Estimators, comma-separated: twonn, mle, pca (PCA 90 % and participation "
               "ratio), or any scikit-dimension estimator: corrint, danco, ess, fishers, gride, knn, lpca, "
               "mada, mind_ml, mom, tle, ph.", type=list, default=("twonn", "mle", "pca"), flag="--method"),
        Option("n_bootstrap", "Bootstrap resamples for 95 % intervals (0: none).", type=int, default=0,
               flag="--bootstrap", minimum=0),
        Option("knn_backend", "Exact neighbour search: torch (CPU/GPU) or faiss (the optional extra "
               "manifold-probe[faiss]).", default="torch"),
        Option("neighbours", "Neighbour graph: exact, or hnsw (approximate, for N above about 100,000; "
               "faiss's HNSW index from the extra manifold-probe[faiss]); its recall, measured on 1,000 "
               "seeded rows against an exact search, is reported per layer as knn_recall.", default="exact"),
    ),
    table_details=("knn_recall",),
))  # fmt: skip

register(Measure(
    name="curvature",
    function="manifold_probe.measures.curvature:curvature",
    description="principal curvature of every layer",
    metrics=names.CURVATURE_TABLE_METRICS,
    tables="manifold_probe.report.tables:curvature_tables",
    figures="manifold_probe.report.pages:curvature_figures",
    table_details=("dim",),
    sweep=SweepSpec(
        options={"n_bootstrap": 200},
        columns=(
            *(SweepColumn(key, "summary", key)
              for key in ("curvature_gap", "curvature_gap_scaled", "curvature_sff_gap",
                          "curvature_sff_gap_scaled")),
            *(SweepColumn(f"last_layer_{key}", "last_layer", key)
              for key in ("curvature_sff", "curvature_sff_null", "curvature_p_value", "mapc_null",
                          "mapc_p_value")),
        ),
    ),
))  # fmt: skip

register(Measure(
    name="multiscale",
    function="manifold_probe.measures.multiscale:multiscale",
    description="multiscale profile of every layer",
    help="The multiscale profile of every layer (Little, Maggioni & Rosasco 2017): local singular values "
    "against radius, the scale-dependent dimension d(r), each direction's growth exponent (1 tangent, 2 "
    "bending, 0 noise), the share of neighbours in the centre's class, and the manifold scale window where "
    "the layer looks like a manifold (the range the curvature measure fits in); no window: window_dim NaN "
    "and a reason saying what the profile shows instead.",
    metrics=names.MULTISCALE_METRICS,
    figures="manifold_probe.report.pages:multiscale_figures",
    sweep=SweepSpec(columns=(SweepColumn("last_layer_window_dim", "last_layer", "window_dim"),)),
    options=(
        Option("n_anchors", "Anchor points whose neighbourhoods are analysed (a seeded sample).", type=int,
               default=200, flag="--anchors", minimum=4),
        Option("denoise", "Project wide layers on their components above the noise edge first.", type=bool,
               default=True),
    ),
))  # fmt: skip

register(Measure(
    name="collapse",
    function="manifold_probe.measures.collapse:collapse",
    description="neural collapse of every layer",
    metrics=(*names.COLLAPSE_METRICS, *names.CLASSIFIER_METRICS),
    tables="manifold_probe.report.tables:collapse_tables",
    figures="manifold_probe.report.pages:collapse_figures",
    sweep=SweepSpec(columns=(SweepColumn("nc1_penultimate", "classifier_layer", "nc1"),)),
    needs_labels=True,
))  # fmt: skip

register(Measure(
    name="spectra",
    function="manifold_probe.measures.spectra:spectra",
    description="class/cross-class spectra of every layer",
    metrics=(*names.SPECTRA_METRICS, *names.FISHER_METRICS),
    tables="manifold_probe.report.tables:spectra_tables",
    figures="manifold_probe.report.pages:spectra_figures",
    sweep=SweepSpec(columns=(SweepColumn("n_outliers_penultimate", "classifier_layer", "n_outliers"),)),
    needs_labels=True,
))  # fmt: skip

register(Measure(
    name="cutting-planes",
    function="manifold_probe.measures.cutting_planes:cutting_planes",
    description="class-manifold dimension by random cutting planes",
    metrics=names.CLASS_MANIFOLD_METRICS,
    tables="manifold_probe.report.tables:cutting_planes_tables",
    figures="manifold_probe.report.pages:cutting_planes_figures",
    sweep=SweepSpec(
        options={"classes": "all", "planes": 3, "n_bootstrap": 100, "n_dims": 7},
        columns=(SweepColumn("mean_manifold_dim", "summary", "mean_manifold_dim"),),
        extracts=False,
    ),
    needs_labels=True,
))  # fmt: skip

register(Measure(
    name="family-curvature",
    function="manifold_probe.measures.family_curvature:family_curvature",
    description="exact curvature of a smooth input family's image in every layer",
    help="Exact curvature of the image of a smooth input family (the plane through three images, a "
    "rotated and scaled image, a translated one, a great circle) in every layer, differentiated through "
    "the model (`mprobe curvature --family SPEC`).",
    metrics=names.FAMILY_METRICS,
    figures="manifold_probe.report.pages:family_figures",
    table_details=("regime",),
))  # fmt: skip

register(Measure(
    name="similarity",
    function="manifold_probe.measures.similarity:similarity",
    description="representation similarity between layers",
    help="Representation similarity between the layers of one model, or of two (--compare): linear "
    "CKA (biased and debiased), RBF CKA, orthogonal Procrustes / angular shape distance, SVCCA, RSA; a "
    "layers x layers matrix per method, with bootstrap intervals (docs/similarity.md).",
    metrics=names.SIMILARITY_METRICS,
    figures="manifold_probe.report.pages:similarity_figures",
    options=(
        Option("methods", "Methods, comma-separated: linear_cka, linear_cka_debiased, rbf_cka, "
               "rbf_cka_debiased, procrustes, angular_shape, svcca, rsa.", type=list,
               default=("linear_cka", "linear_cka_debiased", "rbf_cka", "procrustes", "svcca"),
               flag="--method"),
        Option("n_bootstrap", "Resamples of the points for 95 % intervals (0: none).", type=int, default=0,
               flag="--bootstrap", minimum=0),
    ),
    compares=True,
))  # fmt: skip
