"""A bounded, restricted unpickler for pickled data files (the CIFAR batches).

The pickle format can run code (any callable named by GLOBAL) and can describe objects far
larger than the file: a list whose two items are the same list, nested 30 deep, is a few
hundred bytes on disk and 2**30 elements once anything walks it. `ArrayUnpickler` closes
both doors:

- only NumPy arrays, dtypes, lists, dicts, tuples, strings, bytes and numbers can be
  rebuilt (GLOBAL admits `numpy.ndarray`, `numpy.dtype` and NumPy's own array and scalar
  reconstructors, nothing else);
- a memo reference (GET, BINGET, LONG_BINGET) may repeat an immutable leaf (a string, a
  number, a dtype, an allowed callable, a tuple of such leaves) but never a container
  (list, dict, set, array, or a tuple holding one), so the object tree has no shared
  branches and its size is bounded by the file's;
- every element put into a container is counted as it is built, and the load stops once
  the count exceeds the number of bytes in the file (each element costs at least one byte
  of the stream without shared references).

It runs on the pure-Python unpickler (`pickle._Unpickler`), whose opcode table can be
wrapped; CIFAR batches are a handful of large byte strings and lists of 10,000-50,000
small items, which it reads in well under a second.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from ...errors import InputError

_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_SCALAR = np.float64(0).__reduce__()[0]
_ALLOWED = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_module, "_reconstruct")] = _RECONSTRUCT
    _ALLOWED[(_module, "scalar")] = _SCALAR
del _module

_LEAVES = (str, bytes, int, float, complex, bool, type(None), np.dtype, np.generic)
_CALLABLES = tuple(_ALLOWED.values())


def _is_leaf(value) -> bool:
    """Whether `value` may be referenced twice: immutable and holding no container."""
    if isinstance(value, tuple):
        return all(isinstance(item, _LEAVES) for item in value)
    return isinstance(value, _LEAVES) or any(value is c for c in _CALLABLES)


class ArrayUnpickler(pickle._Unpickler):
    """Rebuilds NumPy arrays, lists, dicts and strings, refusing code, shared containers and
    more than `max_elements` container elements (see the module docstring)."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, *, max_elements: int, **kwargs):
        super().__init__(file, **kwargs)
        self.max_elements = max_elements
        self.elements = 0

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def _count(self, n: int) -> None:
        self.elements += n
        if self.elements > self.max_elements:
            raise pickle.UnpicklingError(
                f"more than {self.max_elements} elements, more than a file of this size can hold"
            )


def _checked_get(load):
    """A memo-reference opcode that refuses to repeat a container."""

    def get(self):
        load(self)
        if not _is_leaf(self.stack[-1]):
            kind = type(self.stack[-1]).__name__
            raise pickle.UnpicklingError(
                f"a shared reference to a {kind} (refused: it can expand without bound)"
            )

    return get


def _counted(load, size):
    """A container-building opcode that first counts the `size(self)` elements it adds."""

    def counted(self):
        self._count(size(self))
        load(self)

    return counted


def _install() -> None:
    d, base = ArrayUnpickler.dispatch, pickle._Unpickler
    for opcode, load in (
        (pickle.GET, base.load_get),
        (pickle.BINGET, base.load_binget),
        (pickle.LONG_BINGET, base.load_long_binget),
    ):
        d[opcode[0]] = _checked_get(load)
    marked = lambda self: len(self.stack)  # noqa: E731 - items since the MARK
    pairs = lambda self: len(self.stack) // 2  # noqa: E731
    for opcode, load, size in (
        (pickle.APPEND, base.load_append, lambda self: 1),
        (pickle.APPENDS, base.load_appends, marked),
        (pickle.SETITEM, base.load_setitem, lambda self: 1),
        (pickle.SETITEMS, base.load_setitems, pairs),
        (pickle.ADDITEMS, base.load_additems, marked),
        (pickle.LIST, base.load_list, marked),
        (pickle.DICT, base.load_dict, pairs),
        (pickle.TUPLE, base.load_tuple, marked),
        (pickle.FROZENSET, base.load_frozenset, marked),
        (pickle.TUPLE1, base.load_tuple1, lambda self: 1),
        (pickle.TUPLE2, base.load_tuple2, lambda self: 2),
        (pickle.TUPLE3, base.load_tuple3, lambda self: 3),
    ):
        d[opcode[0]] = _counted(load, size)


_install()


def read_array_pickle(path: str | os.PathLike) -> object:
    """The object pickled in `path`, rebuilt by `ArrayUnpickler` (Python 2 strings as latin-1).

    Raises InputError with one line naming the file for anything it refuses or cannot read.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            return ArrayUnpickler(handle, max_elements=size, encoding="latin1").load()
    except MemoryError:
        raise InputError(f"could not read {path}: it describes more data than fits in memory.") from None
    except Exception as exc:
        raise InputError(f"could not read {path}: {exc}") from None
