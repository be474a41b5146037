"""`extract`: the activations of selected layers over a data set, in one pass, cached on disk.

One forward pass per batch records every selected layer (`hooks.LayerRecorder`); each
layer's reduced output (`reductions`) is copied straight into a preallocated (N, features)
float32 array, allocated when the layer's first batch arrives:

- with the cache on, the array is the cache entry's memmap (`cache.ActivationCache`), and
  the result holds read-only memmaps of the completed entries: layers already in the
  cache are not recomputed, and when all are, no forward pass runs at all;
- with the cache off, layers go to RAM while their total fits `max_memory` (in model
  order); a layer that would not fit goes to a memmap in a temporary directory, removed
  when the result is closed. Nothing is ever truncated.

The model is moved to `device` (and left there) and run in eval mode (every module's
training flag is restored afterwards) under `torch.inference_mode`. Reductions run on that
device; on CUDA each batch's rows travel through pinned staging buffers (batch_size x
features floats per layer, outside `max_memory`) with one synchronisation per batch.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..device import resolve_device
from ..errors import InputError
from ..progress import track
from ..validation import check_free_space, check_positive, count_samples
from .cache import ActivationCache, CacheKey, PendingEntry, default_cache_dir
from .hooks import LayerRecorder, eval_mode
from .reductions import (
    DEFAULT_MAX_MATRIX_BYTES,
    Reduction,
    make_reducer,
    resolve_reductions,
)

LABELS_LAYER = "<labels>"
"""The layer field of the cache key under which a data set's integer labels are stored."""


@dataclass(frozen=True)
class LayerRecord:
    """How one layer's array was made.

    `shape` is the layer's per-sample output shape before reduction, `reduction` the spec
    applied, `n_features` the array's width; `from_cache` says it was read from a complete
    cache entry, `on_disk` that the array is a memmap (cache entry or temporary file).
    """

    name: str
    shape: tuple[int, ...]
    reduction: str
    n_features: int
    from_cache: bool
    on_disk: bool


class Activations(Mapping):
    """Layer name -> (n_points, features) float32 array (ndarray or memmap), in layer order.

    `info[name]` is the layer's `LayerRecord`; `labels` the data set's labels (None when it
    yields none). Close it (or use `with`) to remove temporary files of spilled layers.
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        records: dict[str, LayerRecord],
        labels: np.ndarray | None,
        temp_dir: tempfile.TemporaryDirectory | None = None,
    ):
        self._arrays = arrays
        self.info: Mapping[str, LayerRecord] = MappingProxyType(records)
        self.labels = labels
        self._temp_dir = temp_dir

    def __getitem__(self, name: str) -> np.ndarray:
        return self._arrays[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    @property
    def n_points(self) -> int:
        """Number of samples (rows of every array)."""
        return len(next(iter(self._arrays.values())))

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


class _Storage:
    """Hands out each computed layer's destination array: cache entry, RAM or temp memmap."""

    def __init__(self, cache: ActivationCache | None, scratch_root: Path, max_memory: int | None):
        self.cache = cache
        self.scratch_root = scratch_root
        self.remaining = max_memory
        self.temp_dir: tempfile.TemporaryDirectory | None = None

    def allocate(
        self, key: CacheKey | None, shape: tuple[int, int], info: dict
    ) -> tuple[np.ndarray, PendingEntry | None, bool]:
        """(array to fill, pending cache entry or None, whether the array lives on disk)."""
        if self.cache is not None:
            pending = self.cache.create(key, shape, info)
            return pending.array, pending, True
        n_bytes = math.prod(shape) * 4
        if self.remaining is None or n_bytes <= self.remaining:
            if self.remaining is not None:
                self.remaining -= n_bytes
            return np.empty(shape, dtype=np.float32), None, False
        if self.temp_dir is None:
            self.scratch_root.mkdir(parents=True, exist_ok=True)
            self.temp_dir = tempfile.TemporaryDirectory(prefix="spill-", dir=self.scratch_root)
        folder = Path(self.temp_dir.name)
        check_free_space(folder, n_bytes, f"layer {info['layer']!r}")
        path = folder / f"{len(list(folder.iterdir()))}.npy"
        return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape), None, True


@dataclass(frozen=True)
class _PassSettings:
    """What every layer writer of one pass needs to know."""

    n_points: int
    batch_size: int
    seed: int
    max_matrix_bytes: int


class _LayerWriter:
    """Writes one layer's batches into its destination array, allocated at the first batch.

    A CUDA output goes through a pinned staging buffer with an asynchronous copy, and lands
    in the array at `end_batch()` (after the caller synchronised the stream): that is about
    3x faster than a synchronous copy to pageable memory.
    """

    def __init__(
        self,
        name: str,
        reduction: Reduction,
        key: CacheKey | None,
        settings: _PassSettings,
        storage: _Storage,
    ):
        self.name, self.reduction, self.key = name, reduction, key
        self.settings, self.storage = settings, storage
        self.shape: tuple[int, ...] | None = None
        self.pending: PendingEntry | None = None
        self.staging: torch.Tensor | None = None
        self.staged: tuple[int, int] | None = None

    def write(self, output: torch.Tensor, start: int) -> None:
        shape = tuple(output.shape[1:])
        if self.shape is None:
            self._open(shape, output.device)
        elif shape != self.shape:
            raise InputError(
                f"layer {self.name!r} gave outputs of shape {self.shape} and then {shape}; "
                "give inputs of one size (resize the images)."
            )
        rows = self.reducer(output)
        if rows.device.type != "cuda":
            torch.from_numpy(self.array[start : start + rows.shape[0]]).copy_(rows)
            return
        if self.staging is None:
            size = (self.settings.batch_size, rows.shape[1])
            self.staging = torch.empty(size, dtype=torch.float32, pin_memory=True)
        self.staging[: rows.shape[0]].copy_(rows, non_blocking=True)
        self.staged = (start, rows.shape[0])

    def end_batch(self) -> None:
        """Move a staged CUDA batch into the array (the stream must be synchronised)."""
        if self.staged is not None:
            start, n_rows = self.staged
            torch.from_numpy(self.array[start : start + n_rows]).copy_(self.staging[:n_rows])
            self.staged = None

    def _open(self, shape: tuple[int, ...], device: torch.device) -> None:
        self.shape = shape
        self.reducer = make_reducer(
            self.reduction,
            shape,
            layer=self.name,
            seed=self.settings.seed,
            device=device,
            max_matrix_bytes=self.settings.max_matrix_bytes,
        )
        size = (self.settings.n_points, self.reduction.n_features(shape))
        info = {"layer": self.name, "shape": list(shape)}
        self.array, self.pending, self.on_disk = self.storage.allocate(self.key, size, info)

    def finish(self) -> tuple[np.ndarray, LayerRecord]:
        """The finished array (a read-only memmap when cached) and its record."""
        array = self.array
        if self.pending is not None:
            array = self.pending.commit().array
            self.pending = None
        elif isinstance(array, np.memmap):
            array.flush()
        del self.array
        self.staging = None
        record = LayerRecord(
            self.name, self.shape, self.reduction.spec, array.shape[1], False, self.on_disk
        )
        return array, record

    def abort(self) -> None:
        if self.pending is not None:
            self.pending.abort()
            self.pending = None


def _yields_labels(data) -> bool:
    if isinstance(data, torch.Tensor):
        return False
    first = data[0]
    return isinstance(first, (tuple, list)) and len(first) >= 2


def _batches(data, batch_size: int) -> Iterator[tuple[torch.Tensor, object]]:
    """(inputs, labels or None) per batch, in data order."""
    if isinstance(data, torch.Tensor):
        for start in range(0, len(data), batch_size):
            yield data[start : start + batch_size], None
        return
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=0)
    for item in loader:
        if isinstance(item, (tuple, list)):
            yield item[0], (item[1] if len(item) >= 2 else None)
        else:
            yield item, None


def _label_array(batches: list) -> np.ndarray:
    parts = [b.numpy() if isinstance(b, torch.Tensor) else np.asarray(b) for b in batches]
    return np.concatenate(parts)


def extract(
    model: nn.Module,
    data: Dataset | torch.Tensor | np.ndarray,
    layers: Sequence[str],
    *,
    reduction: str | Reduction | Mapping[str, str] = "none",
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    model_key: str | None = None,
    data_key: str | None = None,
    max_memory: int | None = None,
    seed: int = 0,
    progress: bool = False,
    max_matrix_bytes: int = DEFAULT_MAX_MATRIX_BYTES,
) -> Activations:
    """The activations of `layers` (names from `layers.select_layers`) over `data`.

    `data` is a map-style Dataset yielding `(x, y)` (or `x`) or a tensor / array of inputs
    with the batch first. `reduction` is one spec for all layers or a per-layer plan
    (`reductions.resolve_reductions`); `seed` seeds `project:N`. With `use_cache`, entries
    are keyed by `model_key` (a digest of the weights) and `data_key` (spec, split, number of
    points, seed), both required then. `max_memory` (bytes) bounds the RAM taken by the
    arrays when the cache is off. `max_matrix_bytes` bounds a kept projection matrix.
    """
    layers = list(dict.fromkeys(layers))
    if not layers:
        raise InputError("no layers were selected; name at least one layer.")
    if use_cache and not (model_key and data_key):
        raise ValueError("extract needs model_key and data_key to use the cache.")
    batch_size = check_positive(batch_size, name="batch_size", integer=True)
    if max_memory is not None:
        max_memory = check_positive(max_memory, name="max_memory", integer=True, allow_zero=True)
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    n_points = count_samples(data)
    plan = resolve_reductions(reduction, layers)
    cache = ActivationCache(cache_dir) if use_cache else None

    def key(name: str) -> CacheKey | None:
        if cache is None:
            return None
        return CacheKey(model_key, data_key, name, plan[name].cache_token(seed))

    arrays: dict[str, np.ndarray] = {}
    records: dict[str, LayerRecord] = {}
    labels = None
    has_labels = _yields_labels(data)
    labels_key = CacheKey("-", data_key or "", LABELS_LAYER, "none", "int64")
    if cache is not None:
        for name in layers:
            entry = cache.lookup(key(name))
            if entry is not None and entry.array.shape[0] == n_points:
                arrays[name] = entry.array
                shape = tuple(entry.info.get("shape", ()))
                records[name] = LayerRecord(
                    name, shape, plan[name].spec, entry.array.shape[1], True, True
                )
        if has_labels and (entry := cache.lookup(labels_key)) is not None:
            labels = np.asarray(entry.array)

    todo = [name for name in layers if name not in arrays]
    storage = _Storage(cache, Path(cache_dir or default_cache_dir()).expanduser(), max_memory)
    if todo or (has_labels and labels is None):
        settings = _PassSettings(n_points, batch_size, seed, max_matrix_bytes)
        writers = {
            name: _LayerWriter(name, plan[name], key(name), settings, storage) for name in todo
        }
        try:
            label_batches = _run(model, data, writers, n_points, batch_size, device, progress)
            for name in todo:
                arrays[name], records[name] = writers[name].finish()
        except BaseException:
            for writer in writers.values():
                writer.abort()
            if storage.temp_dir is not None:
                storage.temp_dir.cleanup()
            raise
        if has_labels and labels is None:
            labels = _label_array(label_batches)
            if cache is not None and labels.ndim == 1 and labels.dtype == np.int64:
                pending = cache.create(labels_key, labels.shape)
                pending.array[:] = labels
                pending.commit()

    ordered = {name: arrays[name] for name in layers}
    ordered_records = {name: records[name] for name in layers}
    return Activations(ordered, ordered_records, labels, storage.temp_dir)


def _run(model, data, writers, n_points, batch_size, device, progress) -> list:
    """The pass over the data: forward with capture when layers are to be computed, and the
    labels of every batch (without a forward pass when only labels are missing)."""
    label_batches = []
    start = 0

    def sink(name: str, output: torch.Tensor) -> None:
        writers[name].write(output, start)

    batches = track(
        _batches(data, batch_size),
        description="extracting activations",
        total=-(-n_points // batch_size),
        enabled=progress,
    )
    if not writers:
        for _, labels in batches:
            label_batches.append(labels)
        return label_batches
    device = resolve_device(device)
    model.to(device)
    with torch.inference_mode(), eval_mode(model), LayerRecorder(model, writers, sink) as recorder:
        for inputs, labels in batches:
            if start + len(inputs) > n_points:
                raise InputError(
                    f"the data set yielded more than its length ({n_points}) samples; fix its "
                    "__len__."
                )
            recorder.forward(inputs.to(device))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                for writer in writers.values():
                    writer.end_batch()
            if labels is not None:
                label_batches.append(labels)
            start += len(inputs)
    if start != n_points:
        raise InputError(
            f"the data set yielded {start} samples but its length is {n_points}; fix its __len__."
        )
    return label_batches
