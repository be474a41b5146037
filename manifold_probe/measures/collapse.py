"""Neural collapse and class/cross-class spectra over every layer: the results of
`mprobe collapse` and `mprobe spectra`.

Per layer, the metrics of `geometry.collapse` (nc1, nc1_trace_ratio, cdnv, the NC2 metrics of
the class means, etf_distance) or of `geometry.spectra` (covariance spectra), streamed over
slices of the layer's array (a memmap from the activation cache is never read whole) with
float64 accumulators. Intermediate layers carry the same metrics as the last one, so NC1 and
the ETF distance show how collapse builds up with depth ("intermediate neural collapse",
Rangamani et al., ICML 2023).

Where the classifier metrics go. The classifier (W, b) acts on the penultimate features h.
Its metrics (nc2_*_weights, nc3_self_duality, nc4_ncc_mismatch; for spectra the fisher_*
metrics) are attached to the layer whose array *is* h:
- with a model, the layer whose rows equal the inputs of the model's last nn.Linear on the
  first samples (for the built-in nets `pool` of digits-cnn and the last `hiddenK` of
  digits-mlp, for torchvision ResNets `avgpool`), so no layer is measured twice;
- when no selected layer is that input (`layers` left it out, a projection reduced it, or
  the model applies an operation between its last block and the head), the input, captured
  with a forward pre-hook in the same pass as the layers (`Activations.module_inputs`), is
  added as a layer named `penultimate`, just before `logits`;
- with bare points and a classifier given as arrays, the one layer `points`.
`summary.classifier` names the Linear and that layer (`{"module", "layer", "n_classes",
"n_features", "bias"}`).

Labels. Without a classifier the classes are the sorted distinct labels; with one, labels
are class indices 0..C-1 (row c of W is class c). Every class needs at least 2 samples
(an InputError otherwise: a single sample has no within-class spread, and counting it as
zero would fake collapse). Unbalanced classes follow `geometry.collapse`'s conventions
(mu_G is the mean of the class means; Sigma_W pools over samples).

Training dynamics. `collapse_series(results)` turns one result per checkpoint into one
result: `layers` are those of the last checkpoint (by epoch, else by name), and
`summary.checkpoints` lists every checkpoint with its epoch, train/test accuracy, the
metrics of the classifier's layer and every layer's metrics, from which the page draws
metric-versus-epoch curves (Papyan et al. see NC emerge in the terminal phase of training).
Checkpoints with identical weights (the final `run.pt` and its last `run-epochNNN.pt`) are
kept once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..errors import InputError
from ..extraction.activations import Activations
from ..extraction.classifier import ClassifierHead
from ..geometry.collapse import CollapseStatistics
from ..geometry.spectra import covariance_spectra_from_statistics, fisher_spectra
from ..results import LayerResult, Result
from ..sources.data import stratified_subset
from ..validation import as_classifier, as_collapse_labels, as_points, check_widths
from .layers import layer_result, measure_layers

PENULTIMATE = "penultimate"
"""The name of the added layer holding the classifier's inputs when no selected layer does."""

COLLAPSE_MAX_FEATURES = 16384
"""Widest layer for collapse: the pooled within-class scatter is p x p float64 (2 GiB here)."""

SPECTRA_MAX_FEATURES = 4096
"""Widest layer for spectra: two p x p eigendecompositions (about 20 s each at p = 4096)."""

SPECTRUM_VALUES = 200
"""Eigenvalues kept per spectrum in the JSON details (the largest ones)."""

FISHER_POINTS = 2000
"""Samples of the stratified subset on which the last layer's Fisher block is computed."""

COLLAPSE_METRICS = (
    "nc1",
    "nc1_trace_ratio",
    "cdnv",
    "etf_distance",
    "nc2_equinorm_means",
    "nc2_equiangular_means",
    "nc2_max_angle_means",
)
CLASSIFIER_METRICS = (
    "nc2_equinorm_weights",
    "nc2_equiangular_weights",
    "nc2_max_angle_weights",
    "nc3_self_duality",
    "nc4_ncc_mismatch",
)
SPECTRA_METRICS = (
    "n_outliers",
    "outlier_variance_share",
    "between_variance_share",
    "outlier_bulk_ratio",
    "class_means_abs_cos",
)
FISHER_METRICS = (
    "fisher_n_outliers",
    "fisher_outlier_bulk_ratio",
    "fisher_same_class_share",
    "fisher_class_means_share",
    "fisher_cross_class_share",
    "fisher_within_class_share",
)


@dataclass(frozen=True, eq=False)
class ClassifierLayer:
    """A classifier and the name of the layer (of a Activations) that holds its inputs."""

    head: ClassifierHead
    layer: str

    def summary(self) -> dict:
        return {
            "module": self.head.name,
            "layer": self.layer,
            "n_classes": self.head.n_classes,
            "n_features": self.head.n_features,
            "bias": self.head.bias is not None,
        }


# --- finding the classifier ------------------------------------------------------------


def classifier_from_arrays(weight, bias=None, *, name: str = "classifier") -> ClassifierHead:
    """A ClassifierHead from a (C, p) weight array and an optional (C,) bias."""
    weights = as_points(weight, name=f"classifier ({name})", min_points=2)
    w, b = as_classifier(weights, bias, n_classes=weights.shape[0], n_features=weights.shape[1])
    return ClassifierHead(name, w, b if bias is not None else None)


def points_classifier(arrays: Activations, head: ClassifierHead) -> ClassifierLayer:
    """A classifier given as arrays with bare points: it acts on the one layer `points`."""
    layer = arrays.layers[-1]
    if layer.points.shape[1] != head.n_features:
        raise InputError(
            f"the classifier has shape ({head.n_classes}, {head.n_features}) but the points have "
            f"{layer.points.shape[1]} features; give W of shape (classes, {layer.points.shape[1]})."
        )
    return ClassifierLayer(head, layer.name)


def _same_rows(stored: np.ndarray, rows: np.ndarray) -> bool:
    """Whether a layer's stored rows are the classifier's inputs (equal to a relative 1e-3 of
    the rows' scale: a layer stored after a reduction is not)."""
    if stored.shape != rows.shape:
        return False
    stored = np.asarray(stored, dtype=np.float64)
    scale = max(float(np.abs(rows).max()), 1e-12)
    return bool(np.allclose(stored, rows, rtol=1e-3, atol=1e-3 * scale))


def model_classifier(arrays: Activations, *, n_check: int = 16) -> tuple[Activations, ClassifierLayer]:
    """The classifier of the model `arrays` came from, and the layer holding its inputs.

    The classifier (`arrays.classifier`, the last nn.Linear called) and its inputs
    (`arrays.module_inputs`) were captured in the extraction pass (`pipeline.model_activations`
    with `classifier=True`). The layer is the last one whose first `n_check` rows equal those
    inputs; if none does, the inputs become a layer named `penultimate` just before `logits`,
    in a new Activations returned with it (`arrays` itself is not changed).
    """
    head = arrays.classifier
    if head is None or head.name not in arrays.module_inputs:
        raise InputError(
            "these activations hold no classifier input: extract them from the model with "
            "classifier=True (the model needs an nn.Linear head)."
        )
    inputs = arrays.module_inputs[head.name]
    rows = np.asarray(inputs[:n_check], dtype=np.float64)
    for layer in reversed(arrays.layers):
        if _same_rows(layer.points[: len(rows)], rows):
            return arrays, ClassifierLayer(head, layer.name)
    name = PENULTIMATE if PENULTIMATE not in arrays else f"<input of {head.name}>"
    with_input = arrays.with_layer(name, inputs, (head.n_features,), before="logits")
    return with_input, ClassifierLayer(head, name)


# --- labels and streaming --------------------------------------------------------------


def _chunk_rows(n_features: int) -> int:
    """Rows per slice: about 64 MB of float64 per slice."""
    return int(np.clip(2**23 // max(n_features, 1), 256, 65536))


def _slices(points: np.ndarray, labels: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    step = _chunk_rows(points.shape[1])
    for start in range(0, len(points), step):
        yield points[start : start + step], labels[start : start + step]


def layer_statistics(points: np.ndarray, labels: np.ndarray, n_classes: int) -> CollapseStatistics:
    """The first-pass class statistics of one layer, streamed over slices of its array."""
    stats = CollapseStatistics(n_classes)
    for features, y in _slices(points, labels):
        stats.update(features, y)
    return stats


def _labels_for(arrays: Activations, classifier: ClassifierLayer | None) -> tuple[np.ndarray, int]:
    if not arrays.layers:
        raise InputError("no layers to measure.")
    n_points = arrays.layers[0].points.shape[0]
    return as_collapse_labels(arrays.labels, n_points, classifier.head.n_classes if classifier else None)


def _new_result(command: str, arrays: Activations, params: dict, classifier, y, n_classes) -> Result:
    summary = {
        "n_classes": n_classes,
        "class_counts": np.bincount(y, minlength=n_classes).tolist(),
        "classifier": classifier.summary() if classifier else None,
    }
    return Result(command=command, source=dict(arrays.source), params=params, summary=summary)


# --- the profiles ----------------------------------------------------------------------


def collapse_profile(
    arrays: Activations,
    classifier: ClassifierLayer | None = None,
    *,
    max_features: int = COLLAPSE_MAX_FEATURES,
    progress: bool = False,
) -> Result:
    """Result of `mprobe collapse`: the NC metrics of every layer, plus the classifier metrics
    on the classifier's layer (nc4 takes a second pass over that layer). A model's layer that
    cannot be measured (constant, wider than `max_features`) is `skipped` with its reason."""
    y, n_classes = _labels_for(arrays, classifier)
    result = _new_result("collapse", arrays, {"max_features": max_features}, classifier, y, n_classes)

    def measure(layer, index, n):
        check_widths([layer], max_features, "collapse")
        entry = layer_result(layer, index, n)
        stats = layer_statistics(layer.points, y, n_classes)
        with np.errstate(divide="ignore", invalid="ignore"):
            if classifier is not None and layer.name == classifier.layer:
                head = classifier.head
                ncc = stats.ncc_mismatch(head.weight, head.bias)
                for features, _ in _slices(layer.points, y):
                    ncc.update(features)
                measured = stats.result(head.weight, ncc=ncc)
                entry.details["classifier"] = classifier.summary()
            else:
                measured = stats.result()
        entry.metrics.update(measured.metrics)
        return entry

    result.layers.extend(measure_layers(arrays, measure, description="neural collapse", progress=progress))
    return result


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
    """Result of `mprobe spectra`: per layer the covariance spectra metrics, and the
    eigenvalues (the top `n_values` of each spectrum) in `details["spectra"]`; on the
    classifier's layer the Fisher block split (`fisher_*` metrics, eigenvalues in
    `details["fisher"]`) on a stratified seeded subset of at most `fisher_points` samples.
    A model's layer that cannot be measured (constant, too wide) is `skipped` with its reason.
    """
    y, n_classes = _labels_for(arrays, classifier)
    params = {
        "n_values": n_values,
        "fisher_points": fisher_points,
        "seed": seed,
        "max_features": max_features,
    }
    result = _new_result("spectra", arrays, params, classifier, y, n_classes)

    def measure(layer, index, n):
        check_widths([layer], max_features, "spectra")
        entry = layer_result(layer, index, n)
        stats = layer_statistics(layer.points, y, n_classes)
        with np.errstate(divide="ignore", invalid="ignore"):
            spectra = covariance_spectra_from_statistics(stats)
        entry.metrics.update(spectra.metrics)
        entry.details["spectra"] = {
            "total": _top(spectra.total, n_values),
            "within": _top(spectra.within, n_values),
            "between": _top(spectra.between, n_values),
            "bulk_edge": float(spectra.within[0]),
            "n_eigenvalues": int(len(spectra.total)),
            "truncated_to": n_values,
            "note": f"the largest {n_values} eigenvalues of each spectrum, descending",
        }
        if classifier is not None and layer.name == classifier.layer:
            entry.metrics.update(_fisher(entry, layer.points, y, classifier, fisher_points, seed, n_values))
        return entry

    result.layers.extend(measure_layers(arrays, measure, description="spectra", progress=progress))
    return result


def _fisher(entry: LayerResult, points, y, classifier: ClassifierLayer, n_points: int, seed, n_values):
    chosen = stratified_subset(y, min(n_points, len(y)), seed)
    head = classifier.head
    with np.errstate(divide="ignore", invalid="ignore"):
        fisher = fisher_spectra(
            np.asarray(points[chosen], dtype=np.float64), y[chosen], head.weight, head.bias, seed=seed
        )
    entry.details["fisher"] = {
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
    }
    entry.details["classifier"] = classifier.summary()
    return fisher.metrics


# --- training dynamics -----------------------------------------------------------------


def checkpoint_entry(result: Result) -> dict:
    """One entry of `summary.checkpoints` from the result of one checkpoint."""
    checkpoint = result.source.get("checkpoint") or {}
    metrics = checkpoint.get("metrics") or {}
    layer_name = (result.summary.get("classifier") or {}).get("layer")
    layers = {layer.name: dict(layer.metrics) for layer in result.layers}
    return {
        "model": result.source.get("model"),
        "epoch": checkpoint.get("epoch"),
        "train_accuracy": metrics.get("train_accuracy"),
        "test_accuracy": metrics.get("test_accuracy"),
        "weights_digest": result.source.get("weights_digest"),
        "layer": layer_name,
        "metrics": dict(layers.get(layer_name, {})) if layer_name else {},
        "layers": layers,
    }


def _order(result: Result) -> tuple:
    epoch = (result.source.get("checkpoint") or {}).get("epoch")
    name = str(result.source.get("model"))
    return (0, epoch, name) if isinstance(epoch, int) else (1, 0, name)


def collapse_series(results: Sequence[Result]) -> Result:
    """One result for several checkpoints (see the module docstring): the per-layer results of
    the last checkpoint and `summary.checkpoints`, sorted by epoch (else by file name)."""
    if not results:
        raise ValueError("collapse_series needs at least one result")
    ordered, seen = [], set()
    for result in sorted(results, key=_order):
        digest = result.source.get("weights_digest")
        if digest is not None and digest in seen:
            continue
        seen.add(digest)
        ordered.append(result)
    last = ordered[-1]
    source = dict(last.source)
    source["models"] = [r.source.get("model") for r in ordered]
    summary = dict(last.summary)
    summary["checkpoints"] = [checkpoint_entry(r) for r in ordered]
    return replace(last, source=source, summary=summary)
