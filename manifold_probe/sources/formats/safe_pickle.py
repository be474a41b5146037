"""A bounded, restricted unpickler for pickled data files (the CIFAR batches).

The pickle format can run code (any callable named by GLOBAL) and can describe objects far
larger than the file: a list whose two items are the same list, nested 30 deep, is a few
hundred bytes on disk and 2**30 elements once anything walks it; one 1 MiB byte string
referenced 3,000 times is 1 MiB on disk and 3 GB once the references are copied into an
array; a length field can announce a terabyte. `ArrayUnpickler` closes these doors:

- only NumPy arrays of numbers, numeric dtypes, lists, dicts, tuples, strings, bytes and
  numbers can be rebuilt: GLOBAL admits `numpy.ndarray` (as an argument only), `numpy.dtype`
  and NumPy's array and scalar reconstructors; an array is rebuilt empty and then filled
  from exactly as many bytes as its shape and dtype need;
- a memo reference (GET, BINGET, LONG_BINGET) or DUP may repeat an immutable leaf (a string,
  a number, a dtype, a tuple of such leaves) but never a container (list, dict, set, array,
  or a tuple holding one), so the object tree has no shared branches;
- containers nest at most `MAX_DEPTH` deep (deeper trees cannot be CIFAR batches, and walking
  them overflows NumPy's and Python's stacks);
- every object is charged what it takes in memory as it is built (`sys.getsizeof`, and a
  repeated leaf its whole size again, since whoever reads the tree may copy each
  reference), and the load stops once the total passes `validation.expansion_limit` of the
  file's size (16 times the file, at least 64 MiB); no read may ask for more bytes than the
  file holds.

It runs on the pure-Python unpickler (`pickle._Unpickler`), whose opcode table can be
wrapped; CIFAR batches are a handful of large byte strings and lists of 10,000-50,000
small items, which it reads in well under a second.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...validation import EXPANSION, SMALL_FILE_ALLOWANCE, expansion_limit

MAX_DEPTH = 16
"""How deep containers may nest (a CIFAR batch: a dict of lists, 2 deep)."""

_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_SCALAR = np.float64(0).__reduce__()[0]
_NUMERIC_KINDS = "biufc"
_CONTAINERS = (list, dict, set, frozenset, tuple, np.ndarray)


def _numeric(dtype) -> np.dtype:
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_KINDS or dtype.itemsize > 16:
        raise pickle.UnpicklingError(f"refusing an array of {dtype} (only numbers are read)")
    return dtype


def _dtype(spec, align=False, copy=True) -> np.dtype:
    """`numpy.dtype` as a pickle calls it, for numeric types only."""
    if not isinstance(spec, str):
        raise pickle.UnpicklingError(f"refusing a dtype built from {type(spec).__name__}")
    return _numeric(np.dtype(spec, bool(align), bool(copy)))


def _reconstruct(cls, shape, typecode) -> np.ndarray:
    """NumPy's array reconstructor as its pickles call it: an empty ndarray, filled by BUILD."""
    if cls is not np.ndarray or tuple(shape) != (0,):
        raise pickle.UnpicklingError("refusing an array that is not rebuilt empty and then filled")
    return _RECONSTRUCT(np.ndarray, (0,), typecode)


def _scalar(dtype, data):
    """NumPy's scalar reconstructor, for numeric dtypes and exactly their bytes."""
    _numeric(dtype)
    if not isinstance(data, (bytes, str)) or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError("refusing a scalar whose bytes do not match its dtype")
    return _SCALAR(dtype, data)


_GLOBALS = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): _dtype}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _GLOBALS[(_module, "_reconstruct")] = _reconstruct
    _GLOBALS[(_module, "scalar")] = _scalar
del _module
_CALLABLES = (_dtype, _reconstruct, _scalar)
_LEAVES = (str, bytes, int, float, complex, bool, type(None), np.dtype, np.generic)


def _is_leaf(value) -> bool:
    """Whether `value` may be referenced twice: immutable and holding no container."""
    if isinstance(value, tuple):
        return all(isinstance(item, _LEAVES) for item in value)
    return isinstance(value, _LEAVES) or value is np.ndarray or any(value is c for c in _CALLABLES)


def _deep_size(value) -> int:
    """Bytes a leaf takes, its items' included for a tuple."""
    items = value if isinstance(value, tuple) else ()
    return sys.getsizeof(value) + sum(sys.getsizeof(item) for item in items)


class _BoundedFile:
    """A binary file whose reads may not ask for more bytes than the file holds (a length
    field announcing a terabyte is refused before anything of that size is allocated)."""

    def __init__(self, handle, size: int):
        self.handle, self.size = handle, size
        self.readline = handle.readline

    def read(self, n: int = -1) -> bytes:
        if n is not None and n > self.size:
            raise pickle.UnpicklingError(f"a field of {n} bytes in a file of {self.size}")
        return self.handle.read(n)


class ArrayUnpickler(pickle._Unpickler):
    """Rebuilds NumPy arrays, lists, dicts and strings, refusing code, shared containers,
    nesting deeper than MAX_DEPTH and more than `max_bytes` of objects (module docstring)."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, *, max_bytes: int, size: int | None = None, **kwargs):
        super().__init__(file if size is None else _BoundedFile(file, size), **kwargs)
        self.max_bytes = max_bytes
        self.file_size = max_bytes if size is None else size
        self.charged = 0
        self.depths: dict[int, tuple[object, int]] = {}  # id -> (container, depth): kept alive

    def find_class(self, module: str, name: str):
        if (module, name) in _GLOBALS:
            return _GLOBALS[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def charge(self, n_bytes: int) -> None:
        """Count `n_bytes` more of objects built; refuse past `max_bytes`."""
        self.charged += n_bytes
        if self.charged > self.max_bytes:
            raise pickle.UnpicklingError(
                f"it describes more than {self.max_bytes:,} bytes of objects, more than a file of its "
                f"size may ({EXPANSION} times its size, at least {SMALL_FILE_ALLOWANCE // 2**20} MiB)"
            )

    def depth(self, value) -> int:
        """How deep containers nest in `value` (0 for a leaf, 1 for a container of leaves)."""
        if _is_leaf(value) or not isinstance(value, _CONTAINERS):
            return 0
        return self.depths.get(id(value), (None, 1))[1]

    def deepen(self, container, items) -> None:
        """Record that `items` went into `container`; refuse nesting past MAX_DEPTH."""
        depth = max([self.depth(container)] + [1 + self.depth(item) for item in items])
        if depth > MAX_DEPTH:
            raise pickle.UnpicklingError(f"containers nested more than {MAX_DEPTH} deep")
        self.depths[id(container)] = (container, depth)


def _refuse(what: str):
    def refuse(self):
        raise pickle.UnpicklingError(f"refusing {what}")

    return refuse


def _members(container) -> list:
    return [*container.keys(), *container.values()] if isinstance(container, dict) else list(container)


def _pushes(load):
    """An opcode that pushes one new object: charge it; for a container built from the items
    on the stack (LIST, TUPLE, DICT, ...), record its depth."""

    def pushes(self):
        load(self)
        top = self.stack[-1]
        self.charge(sys.getsizeof(top))
        if isinstance(top, (list, tuple, dict, set, frozenset)) and top:
            self.deepen(top, _members(top))

    return pushes


def _references(load):
    """A memo reference or DUP: only a leaf may be repeated, charged its whole size again."""

    def references(self):
        load(self)
        top = self.stack[-1]
        if not _is_leaf(top):
            kind = type(top).__name__
            raise pickle.UnpicklingError(
                f"a shared reference to a {kind} (refused: it can expand without bound)"
            )
        self.charge(_deep_size(top))

    return references


def _grows(load, target, added):
    """An opcode that adds items to a container already built (APPEND, SETITEMS, ...): charge
    the container's growth and record its depth."""

    def grows(self):
        container, items = target(self), added(self)
        before = sys.getsizeof(container)
        load(self)
        self.charge(max(0, sys.getsizeof(container) - before))
        self.deepen(container, items)

    return grows


def _load_build(self):
    """BUILD, for NumPy objects only: a dtype's state, or an empty array filled with exactly
    the bytes its shape and numeric dtype need."""
    state, inst = self.stack[-1], self.stack[-2]
    if isinstance(inst, np.ndarray):
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[4], (bytes, str))):
            raise pickle.UnpicklingError("refusing an array state that is not shape, dtype and bytes")
        _, shape, dtype, _, raw = state
        if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise pickle.UnpicklingError(f"refusing an array of shape {shape!r}")
        count = 1
        for n in shape:
            count *= n
        if count * _numeric(dtype).itemsize != len(raw):
            raise pickle.UnpicklingError(
                f"an array of shape {shape} and dtype {dtype} stored in {len(raw)} bytes"
            )
    elif not isinstance(inst, np.dtype):
        raise pickle.UnpicklingError(f"refusing to set the state of a {type(inst).__name__}")
    before = sys.getsizeof(inst)
    pickle._Unpickler.load_build(self)
    if isinstance(inst, np.dtype):
        _numeric(inst)
    self.charge(max(0, sys.getsizeof(inst) - before))


def _load_reduce(self):
    """REDUCE, for the checked NumPy reconstructors only."""
    func = self.stack[-2]
    if not any(func is allowed for allowed in _CALLABLES):
        raise pickle.UnpicklingError(f"refusing to call {getattr(func, '__name__', type(func).__name__)}")
    _pushes(pickle._Unpickler.load_reduce)(self)


def _load_bytearray8(self):
    """BYTEARRAY8, its length checked against the file before the array is allocated."""
    (length,) = struct.unpack("<Q", self.read(8))
    if length > self.file_size:
        raise pickle.UnpicklingError(f"a field of {length} bytes in a file of {self.file_size}")
    self.charge(length)
    buffer = bytearray(length)
    self.readinto(buffer)
    self.append(buffer)


def _install() -> None:
    d, base = ArrayUnpickler.dispatch, pickle._Unpickler
    plain = {pickle.MARK, pickle.STOP, pickle.POP, pickle.POP_MARK, pickle.PUT, pickle.BINPUT,
             pickle.LONG_BINPUT, pickle.MEMOIZE, pickle.PROTO, pickle.FRAME}  # fmt: skip
    for opcode, load in base.dispatch.items():
        if bytes([opcode]) not in plain:
            d[opcode] = _pushes(load)
    for opcode in (pickle.GET, pickle.BINGET, pickle.LONG_BINGET, pickle.DUP):
        d[opcode[0]] = _references(base.dispatch[opcode[0]])
    last = lambda self: self.stack[-1]  # noqa: E731
    below = lambda n: lambda self: self.stack[-n]  # noqa: E731
    marked = lambda self: self.metastack[-1][-1]  # noqa: E731 - the container below the MARK
    for opcode, target, added in (
        (pickle.APPEND, below(2), lambda self: [last(self)]),
        (pickle.APPENDS, marked, lambda self: list(self.stack)),
        (pickle.SETITEM, below(3), lambda self: self.stack[-2:]),
        (pickle.SETITEMS, marked, lambda self: list(self.stack)),
        (pickle.ADDITEMS, marked, lambda self: list(self.stack)),
    ):
        d[opcode[0]] = _grows(base.dispatch[opcode[0]], target, added)
    d[pickle.BUILD[0]] = _load_build
    d[pickle.REDUCE[0]] = _load_reduce
    d[pickle.BYTEARRAY8[0]] = _load_bytearray8
    for opcode, what in (
        (pickle.NEWOBJ, "NEWOBJ (a class instantiated)"),
        (pickle.NEWOBJ_EX, "NEWOBJ_EX (a class instantiated)"),
        (pickle.OBJ, "OBJ (a class instantiated)"),
        (pickle.INST, "INST (a class instantiated)"),
        (pickle.PERSID, "a persistent id"),
        (pickle.BINPERSID, "a persistent id"),
        (pickle.EXT1, "an extension code"),
        (pickle.EXT2, "an extension code"),
        (pickle.EXT4, "an extension code"),
        (pickle.NEXT_BUFFER, "an out-of-band buffer"),
        (pickle.READONLY_BUFFER, "an out-of-band buffer"),
    ):
        d[opcode[0]] = _refuse(what)


_install()


def read_array_pickle(path: str | os.PathLike) -> object:
    """The object pickled in `path`, rebuilt by `ArrayUnpickler` (Python 2 strings as latin-1).

    Raises InputError with one line naming the file for anything it refuses or cannot read.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            unpickler = ArrayUnpickler(handle, max_bytes=expansion_limit(size), size=size, encoding="latin1")
            return unpickler.load()
    except MemoryError:
        raise InputError(f"could not read {path}: it describes more data than fits in memory.") from None
    except RecursionError:
        raise InputError(f"could not read {path}: its objects are nested too deep.") from None
    except Exception as exc:
        raise InputError(f"could not read {path}: {exc}") from None
