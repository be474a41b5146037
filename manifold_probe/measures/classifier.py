"""The classifier a collapse or spectra measure reads, and the layer that holds its inputs.

The classifier (W, b) acts on the penultimate features h. Its metrics (nc2_*_weights,
nc3_self_duality, nc4_ncc_mismatch; for spectra the fisher_* metrics) are attached to the
layer whose array *is* h:
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
zero would fake collapse). Layers are read in slices (a memmap from the activation cache is
never read whole) with float64 accumulators.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import InputError
from ..extraction.activations import Activations
from ..extraction.classifier import ClassifierHead
from ..geometry.collapse import CollapseStatistics
from ..validation import as_classifier, as_collapse_labels, as_points

PENULTIMATE = "penultimate"
"""The name of the added layer holding the classifier's inputs when no selected layer does."""


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
            **({"position": self.head.position} if self.head.position else {}),
        }


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
    if head.position is not None:
        arrays, head = _present_classes(arrays, head)
    rows = np.asarray(inputs[:n_check], dtype=np.float64)
    for layer in reversed(arrays.layers):
        if _same_rows(layer.points[: len(rows)], rows):
            return arrays, ClassifierLayer(head, layer.name)
    name = PENULTIMATE if PENULTIMATE not in arrays else f"<input of {head.name}>"
    with_input = arrays.with_layer(name, inputs, (head.n_features,), before="logits")
    return with_input, ClassifierLayer(head, name)


def _present_classes(arrays: Activations, head: ClassifierHead) -> tuple[Activations, ClassifierHead]:
    """A language model's head restricted to the classes (next tokens) the labels hold, and the
    labels renumbered 0..k-1 in that order: of a vocabulary of thousands a data set holds a few,
    and neural collapse is measured among the classes present (Wu & Papyan 2024)."""
    if arrays.labels is None:
        return arrays, head
    labels = np.asarray(arrays.labels)
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= head.n_classes:
        return arrays, head  # as_collapse_labels says what is wrong with them
    present, renumbered = np.unique(labels, return_inverse=True)
    if len(present) == head.n_classes:
        return arrays, head
    bias = None if head.bias is None else head.bias[present]
    return arrays.with_labels(renumbered), replace(head, weight=head.weight[present], bias=bias)


def classifier_layer(
    acts: Activations, classifier: Any, bias: Any
) -> tuple[Activations, ClassifierLayer | None]:
    """(activations, ClassifierLayer or None) for a measure's `classifier` argument: weights
    given as arrays (bare points), True / None (the model's, captured in the extraction pass;
    None: when there is one), or False (none)."""
    if classifier is not None and classifier is not True and classifier is not False:
        if acts.model is not None:
            raise InputError("weights go with bare points; a model's classifier is its last nn.Linear.",
                             parameter="classifier")  # fmt: skip
        return acts, points_classifier(acts, classifier_from_arrays(classifier, bias))
    if bias is not None:
        raise InputError("needs classifier (the weight it belongs to).", parameter="bias")
    if classifier is False or acts.classifier is None:
        if classifier is True:
            raise InputError("these activations hold no classifier input; extract them with classifier=True.",
                             parameter="classifier")  # fmt: skip
        return acts, None
    return model_classifier(acts)


def _chunk_rows(n_features: int) -> int:
    """Rows per slice: about 64 MB of float64 per slice."""
    return int(np.clip(2**23 // max(n_features, 1), 256, 65536))


def slices(points: np.ndarray, labels: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    step = _chunk_rows(points.shape[1])
    for start in range(0, len(points), step):
        yield points[start : start + step], labels[start : start + step]


def layer_statistics(points: np.ndarray, labels: np.ndarray, n_classes: int) -> CollapseStatistics:
    """The first-pass class statistics of one layer, streamed over slices of its array."""
    stats = CollapseStatistics(n_classes)
    for features, y in slices(points, labels):
        stats.update(features, y)
    return stats


def labels_for(arrays: Activations, classifier: ClassifierLayer | None) -> tuple[np.ndarray, int]:
    """(class indices, number of classes) of the points of `arrays` (see the module docstring)."""
    if not arrays.layers:
        raise InputError("no layers to measure.")
    n_points = arrays.layers[0].points.shape[0]
    return as_collapse_labels(arrays.labels, n_points, classifier.head.n_classes if classifier else None)


def class_summary(y: np.ndarray, n_classes: int, classifier: ClassifierLayer | None) -> dict:
    """The summary every collapse and spectra result starts with: classes, counts, classifier."""
    return {
        "n_classes": n_classes,
        "class_counts": np.bincount(y, minlength=n_classes).tolist(),
        "classifier": classifier.summary() if classifier else None,
    }
