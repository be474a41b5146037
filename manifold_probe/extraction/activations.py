"""`Activations`: the one type every measure reads, layer name -> (N, features) array.

It holds the labels, where the arrays came from (`source`), the model and data they came
from, and the inputs of modules captured in the same pass (`module_inputs`: the classifier's
input). The forward pass that fills it is `extraction.engine.extract`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from ..validation import as_labels


@dataclass(frozen=True)
class LayerRecord:
    """How one layer's array was made.

    `shape` is the layer's per-sample output shape before reduction, `reduction` the spec
    applied, `n_features` the array's width; `from_cache` says it was read from a complete
    cache entry, `on_disk` that the array is a memmap (cache entry or temporary file);
    `layout` is a spatial map's `channels_first` or `channels_last` ("" for other kinds);
    `refused` is why the layer could not be reduced as asked (then it has no array).
    """

    name: str
    shape: tuple[int, ...]
    reduction: str
    n_features: int
    from_cache: bool
    on_disk: bool
    layout: str = ""
    refused: str = ""


@dataclass(frozen=True)
class LayerArray:
    """One layer's activations as points (N, features) and its per-sample output shape."""

    name: str
    points: np.ndarray
    shape: tuple[int, ...]


class Activations(Mapping):
    """Layer name -> (n_points, features) float32 array (ndarray or memmap), in layer order.

    `info[name]` is the layer's `LayerRecord`; `labels` the data set's labels (None when it
    yields none); `source` says where the arrays came from (it goes into every result);
    `model` (a `LoadedModel`) and `data` (a `LabelledData`) are set when they came from a
    model, for measures that run the model again (perturbed curvature, the classifier);
    `module_inputs[path]` is the input of the module at `path` captured in the same pass
    (the classifier's input), `classifier` that classifier's weights (`ClassifierHead`).
    Close it (or use `with`) to remove temporary files of spilled layers.

    Example
    -------
    >>> acts = mp.extract(model, data, layers="block*")
    >>> {name: array.shape for name, array in acts.items()}
    {'block1': (300, 128), 'block2': (300, 32)}
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        records: dict[str, LayerRecord],
        labels: np.ndarray | None,
        temp_dir: tempfile.TemporaryDirectory | None = None,
        *,
        source: Mapping[str, Any] | None = None,
        model: Any = None,
        data: Any = None,
        module_inputs: Mapping[str, np.ndarray] | None = None,
        classifier: Any = None,
    ):
        self._arrays = arrays
        self.info: Mapping[str, LayerRecord] = MappingProxyType(records)
        self.labels = labels
        self._temp_dir = temp_dir
        self.source: Mapping[str, Any] = MappingProxyType(dict(source or {}))
        self.model = model
        self.data = data
        self.module_inputs: Mapping[str, np.ndarray] = MappingProxyType(dict(module_inputs or {}))
        self.classifier = classifier

    @property
    def layers(self) -> list[LayerArray]:
        """The layers in order, each as a `LayerArray` (name, points, per-sample shape)."""
        return [LayerArray(name, array, tuple(self.info[name].shape)) for name, array in self._arrays.items()]

    @property
    def refused(self) -> dict[str, str]:
        """Layers that could not be reduced as asked (no array), each with the reason, in
        layer order among `info` (`cls` on a sequence that has no class token)."""
        return {name: record.refused for name, record in self.info.items() if record.refused}

    def with_labels(self, labels) -> Activations:
        """A new Activations with these labels (one per point); this one is left as it is."""
        return Activations(
            dict(self._arrays), dict(self.info), as_labels(labels, self.n_points), source=self.source,
            model=self.model, data=self.data, module_inputs=self.module_inputs, classifier=self.classifier,
        )  # fmt: skip

    def with_layer(self, name: str, array: np.ndarray, shape: tuple[int, ...], *, before: str | None = None):
        """A new Activations with one more layer (inserted before the layer `before` when it is
        present, else last); this one is left as it is and keeps owning its temporary files."""
        arrays, records = {}, {}
        on_disk = isinstance(array, np.memmap)
        record = LayerRecord(name, tuple(shape), "none", int(array.shape[1]), False, on_disk)
        for key, value in self.info.items():
            if key == before:
                arrays[name], records[name] = array, record
            if key in self._arrays:
                arrays[key] = self._arrays[key]
            records[key] = value
        if name not in arrays:
            arrays[name], records[name] = array, record
        return Activations(
            arrays, records, self.labels, source=self.source, model=self.model, data=self.data,
            module_inputs=self.module_inputs, classifier=self.classifier,
        )  # fmt: skip

    def __getitem__(self, name: str) -> np.ndarray:
        return self._arrays[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    @property
    def n_points(self) -> int:
        """Number of samples (rows of every array)."""
        if not self._arrays:  # every layer refused: the labels still count the points
            return 0 if self.labels is None else len(self.labels)
        return len(next(iter(self._arrays.values())))

    def __repr__(self) -> str:
        if not self._arrays:
            return "<Activations: no layers>"
        shown = ", ".join(f"{name} {array.shape[1]}" for name, array in list(self._arrays.items())[:4])
        more = f", ... ({len(self)} layers)" if len(self) > 4 else ""
        labels = "" if self.labels is None else f", labels ({len(np.unique(self.labels))} classes)"
        origin = self.source.get("model_description") or self.source.get("points") or "arrays"
        return f"<Activations of {origin}: {self.n_points} points; features {shown}{more}{labels}>"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{name}</td><td>{'x'.join(map(str, self.info[name].shape))}</td>"
            f"<td>{self.info[name].reduction}</td><td>{array.shape[1]}</td></tr>"
            for name, array in self._arrays.items()
        )
        return (
            f"<p><b>Activations</b>: {self.n_points if self._arrays else 0} points"
            f"{'' if self.labels is None else ', with labels'}</p><table><tr><th>layer</th>"
            f"<th>output shape</th><th>reduction</th><th>features</th></tr>{rows}</table>"
        )

    def close(self) -> None:
        """Drop the arrays and remove temporary files (cache entries stay)."""
        self._arrays.clear()
        if self._temp_dir is not None:
            self._temp_dir.cleanup()
            self._temp_dir = None

    def __enter__(self) -> Activations:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
