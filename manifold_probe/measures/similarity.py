"""Layers x layers similarity matrices, within one model or across two, with bootstrap intervals.

`similarity_matrices` runs the estimators of `geometry.similarity` on every pair of layers of
two `Activations` of the same points (or of one, against itself) and returns plain arrays:
entry [i, j] of a method's matrix compares layer i of the first with layer j of the second.
Within one model the matrices are symmetric and each unordered pair is computed once. With
`n_bootstrap`, every entry gets a percentile interval from the same seeded resamples of the
points (`geometry.similarity.resample_counts`), so the intervals of all pairs are comparable.
Formulas and advice: docs/similarity.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from ..errors import InputError
from ..extraction.activations import Activations
from ..geometry.similarity import (
    SIMILARITY_METHODS,
    bootstrap_interval,
    representation_similarity,
    similarity_method,
)
from ..progress import track
from ..results import Result
from ..validation import check_positive, check_seed
from .layers import layer_result
from .sources import as_activations

DEFAULT_METHODS = ("linear_cka", "linear_cka_debiased", "rbf_cka", "procrustes", "svcca")
LEVEL = 0.95
DATA_KEYS = ("data", "split", "seed")
"""What a source made by `load_data` says about its points: equal on both sides, or an error."""


@dataclass(frozen=True)
class SimilarityMatrices:
    """The similarity of every layer of A (rows) with every layer of B (columns), per method.

    `values[method]` is a (len(layers_a), len(layers_b)) float array (NaN where a layer has no
    spread, so the similarity is undefined); `low[method]` and `high[method]` its `level`
    bootstrap interval, both empty without bootstrap. For procrustes and angular_shape (the
    distances) smaller means more similar (`larger_is_more_similar`). `within_one_model`: B is A.
    """

    layers_a: tuple[str, ...]
    layers_b: tuple[str, ...]
    methods: tuple[str, ...]
    values: dict[str, np.ndarray]
    low: dict[str, np.ndarray]
    high: dict[str, np.ndarray]
    n_points: int
    n_bootstrap: int
    level: float
    seed: int
    within_one_model: bool

    @property
    def larger_is_more_similar(self) -> dict[str, bool]:
        return {method: SIMILARITY_METHODS[method].larger_is_more_similar for method in self.methods}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: lists of lists, NaN as None."""

        def rows(matrix: np.ndarray) -> list[list[float | None]]:
            return [[float(v) if np.isfinite(v) else None for v in row] for row in matrix]

        out: dict[str, Any] = {
            "layers_a": list(self.layers_a),
            "layers_b": list(self.layers_b),
            "methods": list(self.methods),
            "larger_is_more_similar": self.larger_is_more_similar,
            "n_points": self.n_points,
            "n_bootstrap": self.n_bootstrap,
            "level": self.level,
            "seed": self.seed,
            "within_one_model": self.within_one_model,
            "values": {method: rows(self.values[method]) for method in self.methods},
        }
        if self.n_bootstrap:
            out["intervals"] = {
                method: {"low": rows(self.low[method]), "high": rows(self.high[method])}
                for method in self.methods
            }
        return out


def check_same_points(acts_a: Activations, acts_b: Activations) -> None:
    """Raise an InputError unless both activations can hold the same points in the same order:
    the same number of rows, the same labels when both have labels, and the same data set,
    split and seed when both came from `load_data`."""
    if acts_a.n_points != acts_b.n_points:
        raise InputError(
            f"the two activations hold {acts_a.n_points} and {acts_b.n_points} points; a similarity "
            "compares the same points in the same order, so extract both from the same data."
        )
    source_a, source_b = acts_a.source, acts_b.source
    if "split" in source_a and "split" in source_b:
        for key in DATA_KEYS:
            if source_a.get(key) != source_b.get(key):
                raise InputError(
                    f"the two activations come from different data ({key} {source_a.get(key)!r} and "
                    f"{source_b.get(key)!r}); extract both from the same points, in the same order."
                )
    if acts_a.labels is not None and acts_b.labels is not None:
        if not np.array_equal(np.asarray(acts_a.labels), np.asarray(acts_b.labels)):
            raise InputError(
                "the two activations have different labels row by row, so they do not hold the same "
                "points in the same order; extract both from the same data."
            )


def _check_methods(methods: Sequence[str], n_points: int) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(m.strip().lower() for m in methods if m.strip()))
    if not names:
        raise InputError(f"no similarity method given; choose from {', '.join(SIMILARITY_METHODS)}.")
    for name in names:
        least = similarity_method(name).min_points
        if n_points < least:
            raise InputError(f"the activations hold {n_points} points; {name} needs at least {least}.")
    return names


def similarity_matrices(
    acts_a: Activations,
    acts_b: Activations | None = None,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    n_bootstrap: int = 0,
    seed: int = 0,
    progress: bool = False,
) -> SimilarityMatrices:
    """Every method of `methods` (names of `geometry.similarity.SIMILARITY_METHODS`) on every
    pair (layer of acts_a, layer of acts_b); acts_b None compares acts_a's layers with each other.

    Both must hold the same points in the same order (`check_same_points`). n_bootstrap > 0
    adds 95 % percentile intervals from n_bootstrap resamples of the points, seeded by `seed`,
    shared by all pairs and methods. Each pair costs what its estimators cost (docs/similarity.md);
    the bootstrap multiplies that by n_bootstrap.

    >>> import torch, manifold_probe as mp
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> acts = mp.extract(model, torch.randn(64, 4))
    >>> found = similarity_matrices(acts, methods=("linear_cka", "procrustes"), n_bootstrap=50)
    >>> found.layers_a, found.values["linear_cka"].shape
    (('1', 'logits'), (2, 2))
    >>> cka, low, high = (part["linear_cka"][0, 1] for part in (found.values, found.low, found.high))
    >>> bool(low <= cka <= high)
    True
    """
    n_bootstrap = check_positive(n_bootstrap, name="n_bootstrap", integer=True, allow_zero=True)
    seed = check_seed(seed, name="seed")
    if acts_b is not None:
        check_same_points(acts_a, acts_b)
    methods = _check_methods(methods, acts_a.n_points)
    layers_a = acts_a.layers
    layers_b = layers_a if acts_b is None else acts_b.layers
    shape = (len(layers_a), len(layers_b))
    values = {m: np.full(shape, np.nan) for m in methods}
    low = {m: np.full(shape, np.nan) for m in methods} if n_bootstrap else {}
    high = {m: np.full(shape, np.nan) for m in methods} if n_bootstrap else {}
    pairs = [(i, j) for i in range(shape[0]) for j in range(shape[1]) if acts_b is not None or j >= i]
    for i, j in track(pairs, description="similarity", enabled=progress):
        x, y = layers_a[i].points, layers_b[j].points
        cells = [(i, j), (j, i)] if acts_b is None else [(i, j)]
        for method in methods:
            entries: tuple[tuple[dict[str, np.ndarray], float], ...]
            if n_bootstrap:
                found = bootstrap_interval(x, y, method, n_bootstrap=n_bootstrap, level=LEVEL, seed=seed)
                entries = ((values, found.value), (low, found.low), (high, found.high))
            else:
                entries = ((values, representation_similarity(x, y, method)),)
            for matrices, number in entries:
                for cell in cells:
                    matrices[method][cell] = number
    return SimilarityMatrices(
        layers_a=tuple(layer.name for layer in layers_a),
        layers_b=tuple(layer.name for layer in layers_b),
        methods=methods,
        values=values,
        low=low,
        high=high,
        n_points=acts_a.n_points,
        n_bootstrap=n_bootstrap,
        level=LEVEL,
        seed=seed,
        within_one_model=acts_b is None,
    )


def similarity(
    source: Any,
    data: Any = None,
    *,
    other: Any = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    n_bootstrap: int = 0,
    seed: int = 0,
    device: str | None = None,
    max_memory: int | None = None,
    progress: bool = False,
    **extract_options: Any,
) -> Result:
    """Representation similarity between the layers of one model, or of two (docs/similarity.md).

    Parameters
    ----------
    source : activations, a bare (N, D) array, or a model (then give `data`).
    data : the model's data; or, when `source` is activations or an array, the second
        representation (`mp.similarity(acts_a, acts_b)`).
    other : the second representation: activations, an array of the same points, or a second
        model (extracted with the same data and options). None compares `source`'s layers with
        each other.
    methods : `linear_cka`, `linear_cka_debiased`, `rbf_cka`, `rbf_cka_debiased`, `procrustes`,
        `angular_shape`, `svcca`, `rsa` (`geometry.similarity`).
    n_bootstrap : resamples of the points for 95 % percentile intervals (0: none).
    seed : seeds the resamples (and `project:N` reductions).
    device, max_memory : for the extraction of a model.
    progress : show progress bars.
    **extract_options : passed to `extract` with a model (layers, reduction, ...).

    Returns
    -------
    A `Result` (command `similarity`): `summary["matrices"][method]` the layers x layers matrix
    (rows the layers of `source`, columns those of `other`) with its intervals; per layer the
    similarity to its counterpart in `other` (the layer of the same name, else of the same
    relative depth), or, within one model, to the last layer.

    Example
    -------
    >>> import numpy as np, manifold_probe as mp
    >>> x = np.random.default_rng(0).normal(size=(200, 6))
    >>> q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(6, 6)))
    >>> round(mp.similarity(x, other=x @ q, methods=("linear_cka",)).metrics["points"]["linear_cka"], 6)
    1.0
    """
    seed = check_seed(seed)
    if other is None and isinstance(data, (Activations, np.ndarray)) and not isinstance(source, nn.Module):
        data, other = None, data  # mp.similarity(acts_a, acts_b)
    with_model = {**extract_options, "seed": seed, "device": device}
    acts_a = as_activations(source, data, max_memory=max_memory,
                            extract_options=with_model if data is not None else extract_options)  # fmt: skip
    acts_b = None
    if isinstance(other, nn.Module):
        other_data = acts_a.data if acts_a.data is not None else data
        acts_b = as_activations(other, other_data, max_memory=max_memory, extract_options=with_model)
    elif other is not None:
        acts_b = as_activations(other)
    found = similarity_matrices(acts_a, acts_b, methods=methods, n_bootstrap=n_bootstrap, seed=seed,
                                progress=progress)  # fmt: skip
    partner = _partners(found)
    layers = []
    n = len(acts_a.layers)
    for i, layer in enumerate(acts_a.layers):
        j = partner[i]
        metrics = {m: float(found.values[m][i, j]) for m in found.methods}
        intervals = (
            {m: (float(found.low[m][i, j]), float(found.high[m][i, j])) for m in found.methods}
            if found.low
            else {}
        )
        details = {
            "compared_with": found.layers_b[j],
            "rows": {m: found.values[m][i].tolist() for m in found.methods},
        }
        layers.append(layer_result(layer, i, n, metrics=metrics, intervals=intervals, details=details))
    source_info = dict(acts_a.source)
    if acts_b is not None:
        source_info["other"] = dict(acts_b.source)
    params = {"methods": list(found.methods), "n_bootstrap": n_bootstrap, "seed": seed,
              "within_one_model": found.within_one_model}  # fmt: skip
    plain = found.to_dict()
    matrices = {
        m: {"values": plain["values"][m], **(plain.get("intervals", {}).get(m) or {})} for m in found.methods
    }
    summary = {
        "rows": list(found.layers_a), "columns": list(found.layers_b), "matrices": matrices,
        "larger_is_more_similar": found.larger_is_more_similar, "level": found.level,
        "pairing": "same name, else same relative depth" if acts_b is not None else "each layer and the last",
    }  # fmt: skip
    return Result(command="similarity", source=source_info, params=params, layers=layers, summary=summary)


def _partners(found: SimilarityMatrices) -> list[int]:
    """For each row layer, the column it is summarised against (see `similarity`)."""
    if found.within_one_model:
        return [len(found.layers_b) - 1] * len(found.layers_a)
    index = {name: j for j, name in enumerate(found.layers_b)}
    rows, cols = len(found.layers_a), len(found.layers_b)
    return [
        index.get(name, round(i * (cols - 1) / (rows - 1)) if rows > 1 else cols - 1)
        for i, name in enumerate(found.layers_a)
    ]
