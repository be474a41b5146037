"""Class/cross-class spectra over every layer (`mp.spectra`, `mprobe spectra`; Papyan 2020).

Per layer, the covariance spectra of `geometry.spectra` (the total, between- and within-class
eigenvalues, the outliers above the within-class bulk edge), streamed over slices with float64
accumulators; on the layer that feeds the classifier (`measures.classifier`) also the split of
the classifier's Fisher block into class means, cross-class and within-class parts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..extraction.activations import Activations
from ..geometry.spectra import covariance_spectra_from_statistics, fisher_spectra
from ..results import Result
from ..sources.data import stratified_subset
from ..validation import check_count, check_widths
from .classifier import ClassifierLayer, class_summary, labels_for, layer_statistics
from .collapse import _features
from .layers import layer_result, measure_layers

SPECTRA_MAX_FEATURES = 4096
"""Widest layer for spectra: two p x p eigendecompositions (about 20 s each at p = 4096)."""

SPECTRUM_VALUES = 200
"""Eigenvalues kept per spectrum in the JSON details (the largest ones)."""

FISHER_POINTS = 2000
"""Samples of the stratified subset on which the last layer's Fisher block is computed."""


def spectra(
    source: Any,
    data: Any = None,
    *,
    labels: Any = None,
    classifier: Any = None,
    bias: Any = None,
    n_values: int = SPECTRUM_VALUES,
    fisher_points: int = FISHER_POINTS,
    seed: int = 0,
    device: str | None = None,
    max_memory: int | None = None,
    progress: bool = False,
    **extract_options: Any,
) -> Result:
    """Class/cross-class spectra (Papyan 2020) of every layer (docs/methods.md#spectra).

    Parameters
    ----------
    source, data, labels, classifier, bias, device, max_memory : as for `collapse`.
    n_values : largest eigenvalues kept per spectrum in `details`.
    fisher_points : samples of the stratified seeded subset for the classifier's Fisher block.
    seed : seeds that subset (and the extraction's `project:N` reductions).
    progress : show progress bars.
    **extract_options : passed to `extract` with a model.

    Returns
    -------
    A `Result`: per layer `n_outliers`, `outlier_variance_share`, ...; on the classifier's
    layer the `fisher_*` split; eigenvalues in `details[layer]["spectra"]`.

    Example
    -------
    >>> import numpy as np, manifold_probe as mp
    >>> y = np.repeat(np.arange(4), 100)
    >>> h = np.eye(20)[y] * 5 + np.random.default_rng(0).normal(size=(400, 20))
    >>> int(mp.spectra(h, labels=y).metrics["points"]["n_outliers"])  # the 4 class means, less one
    3
    """
    n_values = check_count(n_values, name="n_values", minimum=1)
    fisher_points = check_count(fisher_points, name="fisher_points", minimum=2)
    acts, head = _features(source, data, labels, classifier, bias, seed, device, max_memory, extract_options)
    return spectra_profile(acts, head, n_values=n_values, fisher_points=fisher_points, seed=seed,
                           progress=progress)  # fmt: skip


def _top(values: np.ndarray, n: int) -> list[float]:
    return [float(v) for v in values[:n]]


def spectra_profile(
    arrays: Activations,
    classifier: ClassifierLayer | None = None,
    *,
    n_values: int = SPECTRUM_VALUES,
    fisher_points: int = FISHER_POINTS,
    seed: int = 0,
    max_features: int = SPECTRA_MAX_FEATURES,
    progress: bool = False,
) -> Result:
    """Per layer the covariance spectra metrics, and the
    eigenvalues (the top `n_values` of each spectrum) in `details["spectra"]`; on the
    classifier's layer the Fisher block split (`fisher_*` metrics, eigenvalues in
    `details["fisher"]`) on a stratified seeded subset of at most `fisher_points` samples.
    A model's layer that cannot be measured (constant, too wide) is `skipped` with its reason.
    """
    y, n_classes = labels_for(arrays, classifier)
    params = {
        "n_values": n_values,
        "fisher_points": fisher_points,
        "seed": seed,
        "max_features": max_features,
    }

    def measure(layer, index, n):
        check_widths([layer], max_features, "spectra")
        stats = layer_statistics(layer.points, y, n_classes)
        with np.errstate(divide="ignore", invalid="ignore"):
            spectra = covariance_spectra_from_statistics(stats)
        metrics, details = dict(spectra.metrics), {}
        details["spectra"] = {
            "total": _top(spectra.total, n_values),
            "within": _top(spectra.within, n_values),
            "between": _top(spectra.between, n_values),
            "bulk_edge": float(spectra.within[0]),
            "n_eigenvalues": int(len(spectra.total)),
            "truncated_to": n_values,
            "note": f"the largest {n_values} eigenvalues of each spectrum, descending",
        }
        if classifier is not None and layer.name == classifier.layer:
            fisher_metrics, fisher_details = _fisher(
                layer.points, y, classifier, fisher_points, seed, n_values
            )
            metrics.update(fisher_metrics)
            details.update(fisher_details)
        return layer_result(layer, index, n, metrics=metrics, details=details)

    layers = measure_layers(arrays, measure, description="spectra", progress=progress)
    return Result(command="spectra", source=arrays.source, params=params, layers=layers,
                  summary=class_summary(y, n_classes, classifier))  # fmt: skip


def _fisher(points, y, classifier: ClassifierLayer, n_points: int, seed, n_values) -> tuple[dict, dict]:
    """(metrics, details) of the classifier's Fisher block on a stratified seeded subset."""
    chosen = stratified_subset(y, min(n_points, len(y)), seed)
    head = classifier.head
    with np.errstate(divide="ignore", invalid="ignore"):
        fisher = fisher_spectra(
            np.asarray(points[chosen], dtype=np.float64), y[chosen], head.weight, head.bias, seed=seed
        )
    details = {
        "fisher": {
            "n_points": int(len(chosen)),
            "total": _top(fisher.total, n_values),
            "same_class": _top(fisher.same_class, n_values),
            "class_means": _top(fisher.class_means, n_values),
            "cross_class": _top(fisher.cross_class, n_values),
            "within_class": _top(fisher.within_class, n_values),
            "traces": dict(fisher.traces),
            "bulk_edge": float(fisher.within_class[0]),
            "note": "Gauss-Newton block of the classifier's weights and bias on a stratified subset; "
            f"at most {n_values} eigenvalues per part, descending",
        },
        "classifier": classifier.summary(),
    }
    return dict(fisher.metrics), details
