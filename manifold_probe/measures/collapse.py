"""Neural collapse over every layer (`mp.collapse`, `mprobe collapse`; Papyan, Han & Donoho 2020).

Per layer, the metrics of `geometry.collapse` (nc1, nc1_trace_ratio, cdnv, the NC2 metrics of
the class means, etf_distance), streamed over slices of the layer's array with float64
accumulators. Intermediate layers carry the same metrics as the last one, so NC1 and the ETF
distance show how collapse builds up with depth ("intermediate neural collapse", Rangamani
et al., ICML 2023). The classifier's metrics (nc2_*_weights, nc3_self_duality,
nc4_ncc_mismatch) go on the layer that feeds it (`measures.classifier`).

Training dynamics. `collapse_series(results)` turns one result per checkpoint into one
result: `layers` are those of the last checkpoint (by epoch, else by name), and
`summary.checkpoints` lists every checkpoint with its epoch, train/test accuracy, the
metrics of the classifier's layer and every layer's metrics, from which the page draws
metric-versus-epoch curves (Papyan et al. see NC emerge in the terminal phase of training).
Checkpoints with identical weights (the final `run.pt` and its last `run-epochNNN.pt`) are
kept once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..extraction.activations import Activations
from ..results import Result
from ..validation import check_seed, check_widths
from .classifier import ClassifierLayer, class_summary, classifier_layer, labels_for, layer_statistics, slices
from .layers import layer_result, measure_layers
from .sources import as_activations

COLLAPSE_MAX_FEATURES = 16384
"""Widest layer for collapse: the pooled within-class scatter is p x p float64 (2 GiB here)."""


def collapse(
    source: Any,
    data: Any = None,
    *,
    labels: Any = None,
    classifier: Any = None,
    bias: Any = None,
    seed: int = 0,
    device: str | None = None,
    max_memory: int | None = None,
    progress: bool = False,
    **extract_options: Any,
) -> Result:
    """Neural collapse (Papyan, Han & Donoho 2020) of every layer (docs/methods.md#neural-collapse).

    Parameters
    ----------
    source : activations, a bare (N, p) array of features (give `labels`), or a model
        (then give `data`).
    data : the model's data (its labels, or give `labels`).
    labels : class labels, for bare features, for activations of data without labels, or to
        replace the data's own.
    classifier : for bare features, the classifier's weight W (C, p), adding the NC2
        weight metrics, NC3 and NC4; with a model its last nn.Linear, captured in the same
        pass (None: when there is one; False: not at all).
    bias : the classifier's bias b (C,), with `classifier`.
    seed : the extraction's seed (`project:N` reductions); the metrics themselves are exact.
    device : where the model runs for the extraction (the metrics are float64 on the CPU).
    max_memory : with a model, bytes of RAM for the activations (`extract`).
    progress : show progress bars.
    **extract_options : passed to `extract` with a model.

    Returns
    -------
    A `Result`: per layer `nc1`, `nc1_trace_ratio`, `cdnv`, `etf_distance`, `nc2_*_means`;
    on the classifier's layer also `nc2_*_weights`, `nc3_self_duality`, `nc4_ncc_mismatch`.

    Example
    -------
    >>> import numpy as np, manifold_probe as mp
    >>> means = np.eye(3) * 10  # three far-apart classes, tight within
    >>> y = np.repeat([0, 1, 2], 50)
    >>> h = means[y] + np.random.default_rng(0).normal(scale=0.1, size=(150, 3))
    >>> mp.collapse(h, labels=y).metrics["points"]["nc1"] < 1e-3
    True
    """
    acts, head = _features(source, data, labels, classifier, bias, seed, device, max_memory, extract_options)
    return collapse_profile(acts, head, progress=progress)


def _features(source, data, labels, classifier, bias, seed, device, max_memory, extract_options):
    """(activations, ClassifierLayer or None) for collapse and spectra."""
    seed = check_seed(seed)
    if data is not None:  # a model: the extraction takes the seed and the device
        extract_options = {**extract_options, "seed": seed, "device": device}
    acts = as_activations(source, data, labels=labels, min_points=4,
                          classifier=None if classifier is None else bool(classifier is True),
                          max_memory=max_memory, extract_options=extract_options)  # fmt: skip
    return classifier_layer(acts, classifier, bias)


def collapse_profile(
    arrays: Activations,
    classifier: ClassifierLayer | None = None,
    *,
    max_features: int = COLLAPSE_MAX_FEATURES,
    progress: bool = False,
) -> Result:
    """The NC metrics of every layer, plus the classifier metrics
    on the classifier's layer (nc4 takes a second pass over that layer). A model's layer that
    cannot be measured (constant, wider than `max_features`) is `skipped` with its reason."""
    y, n_classes = labels_for(arrays, classifier)

    def measure(layer, index, n):
        check_widths([layer], max_features, "collapse")
        stats = layer_statistics(layer.points, y, n_classes)
        details = {}
        with np.errstate(divide="ignore", invalid="ignore"):
            if classifier is not None and layer.name == classifier.layer:
                head = classifier.head
                ncc = stats.ncc_mismatch(head.weight, head.bias)
                for features, _ in slices(layer.points, y):
                    ncc.update(features)
                measured = stats.result(head.weight, ncc=ncc)
                details["classifier"] = classifier.summary()
            else:
                measured = stats.result()
        return layer_result(layer, index, n, metrics=measured.metrics, details=details)

    layers = measure_layers(arrays, measure, description="neural collapse", progress=progress)
    return Result(command="collapse", source=arrays.source, params={"max_features": max_features},
                  layers=layers, summary=class_summary(y, n_classes, classifier))  # fmt: skip


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
