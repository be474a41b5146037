"""The on-disk activation cache: one `.npy` file per (model, data, layer, reduction, dtype).

Layout under the cache directory (default: the user cache directory of `manifold-probe`):
`activations/<d0d1>/<digest>.npy` holds the array and `<digest>.json` beside it the key,
the shape, the dtype, the SHA-256 of the array's bytes, caller information (such as the
layer's output shape) and an HMAC-SHA256 of all of that. The digest is a SHA-256 of the key
written as canonical JSON; keys name the data by `content_fingerprint`: a SHA-256 of the
bytes of the data file, or of every file of a data folder, so data replaced by other data
of the same size and modification time (`cp -p`, `rsync -a`, `tar x`) gets new entries.

An entry is complete when its sidecar exists, names the same key, carries an HMAC made with
this user's cache key (`cache_key`: 32 random bytes in the user's configuration folder,
outside every cache folder, created on first use readable by this user only), and the
`.npy` has the shape, dtype and content digest the sidecar states; every lookup checks all of
it. An entry whose array is missing, truncated, unreadable or holds other bytes, or whose
sidecar was rewritten without the key (tampered with, damaged on disk, or written by another
user into a shared folder) is a miss with a warning: the caller recomputes it and writes it
again. Writing keeps entries complete whatever happens:

1. the array is written into a memmap with a unique name `<digest>.<host>-<pid>-<random>.partial`;
2. it is flushed, then renamed to `<digest>.npy` (atomic);
3. the sidecar is written last, itself atomically (`files.atomic_write`).

A process killed before step 3 leaves no sidecar (or an old one for an identical array),
so its work is never read; the next run recomputes. Concurrent writers of the same key
write different partial files and each rename a complete array of the same content, so
they cannot corrupt each other. Leftover partial files of dead processes on this host are
removed when the same key is written again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import os
import secrets
import socket
import stat
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import platformdirs

from ..errors import InputError
from ..files import atomic_write
from ..validation import check_free_space

CACHE_FORMAT = 3
"""Bumped when the meaning of cached arrays changes, so old entries stop matching
(2: sidecars hold the array's content digest; 3: data keyed by content, sidecars signed)."""

_DIGEST_BLOCK = 2**24  # bytes of an array (or a data file) hashed at a time

KEY_FILE = "cache-key"
"""The file of the user's cache key, in `config_dir()`."""


_DIGESTS: dict[tuple, str] = {}
"""Digests of file versions read in this process: (path, size, mtime, ctime, inode) -> SHA-256."""

SETTLED_NS = 3 * 10**9
"""How old a file's status change must be before its digest is remembered: file systems stamp
times coarsely (a few ms; whole seconds on some), so a file rewritten just after it was hashed
could show the same times (git's "racily clean" files); such a file is hashed again."""


def file_digest(path: str | os.PathLike, info: os.stat_result | None = None) -> str:
    """SHA-256 hex digest of a file's bytes, read in blocks (memory: one block), once per process
    and version of the file (`info`: its status, when the caller has it). The version includes
    the status change time, which no copying tool can restore (cp -p, rsync -a and tar x set
    only the modification time)."""
    info = info or os.stat(path)
    version = (str(path), info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)
    if version in _DIGESTS:
        return _DIGESTS[version]
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_DIGEST_BLOCK):
            sha.update(block)
    if time.time_ns() - info.st_ctime_ns > SETTLED_NS:
        if len(_DIGESTS) > 100_000:
            _DIGESTS.clear()
        _DIGESTS[version] = sha.hexdigest()
    return sha.hexdigest()


def _files(root: Path) -> Iterator[tuple[str, str]]:
    """(path relative to `root`, full path) of every file under `root`, in sorted order, links
    followed, each folder visited once (a link back to a folder above is not followed again)."""
    seen = set()
    prefix = len(str(root)) + 1
    for folder, dirs, names in os.walk(root, followlinks=True):
        here = os.stat(folder)
        if (here.st_dev, here.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((here.st_dev, here.st_ino))
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(folder, name)
            yield full[prefix:], full


def content_fingerprint(path: str | os.PathLike) -> str:
    """What the cache keys name a data file or folder by: its resolved path and a SHA-256 of
    its bytes, or for a folder of every file under it (relative path, size and the file's own
    SHA-256, in sorted order). Each file is read once per process and version (`file_digest`);
    replacing any file by other bytes changes the fingerprint, whatever its size and times. A
    path that does not exist gives its path alone."""
    root = Path(path).expanduser().resolve()
    if root.is_file():
        return f"{root}|sha256:{file_digest(root)}"
    if not root.is_dir():
        return str(root)
    sha = hashlib.sha256()
    for relative, full in _files(root):
        with contextlib.suppress(OSError):  # a file removed meanwhile, a dangling link
            info = os.stat(full)
            if stat.S_ISREG(info.st_mode):
                sha.update(f"{relative}\0{info.st_size}\0{file_digest(full, info)}\n".encode())
    return f"{root}|tree-sha256:{sha.hexdigest()}"


def array_digest(array: np.ndarray) -> str:
    """SHA-256 hex digest of an array's bytes in C order (read block by block)."""
    sha = hashlib.sha256()
    flat = array.reshape(-1)
    step = max(1, _DIGEST_BLOCK // max(array.itemsize, 1))
    for start in range(0, flat.size, step):
        sha.update(np.ascontiguousarray(flat[start : start + step]).tobytes())
    return sha.hexdigest()


def default_cache_dir() -> Path:
    """The user cache directory of manifold-probe (platformdirs)."""
    return Path(platformdirs.user_cache_dir("manifold-probe"))


def config_dir() -> Path:
    """The user configuration folder of manifold-probe: $MPROBE_CONFIG_DIR, else platformdirs'."""
    given = os.environ.get("MPROBE_CONFIG_DIR")
    return Path(given).expanduser() if given else Path(platformdirs.user_config_dir("manifold-probe"))


def cache_key() -> bytes:
    """This user's key for signing cache entries (32 random bytes in `config_dir()/cache-key`,
    hex), created on first use with permissions 0600: kept outside every cache folder, so
    whoever can rewrite a cache entry and its sidecar (a shared sweep folder) cannot sign it."""
    path = config_dir() / KEY_FILE
    return _read_key(str(path))


@functools.lru_cache(maxsize=8)
def _read_key(path_text: str) -> bytes:
    path = Path(path_text)
    try:
        if not path.exists():
            _create_key(path)
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.warn(f"{path} is readable by other users; chmod 600 it.", stacklevel=4)
        key = bytes.fromhex(path.read_text().strip())
    except OSError as exc:
        raise InputError(
            f"cannot read or create the cache key {path} ({exc.strerror}); set MPROBE_CONFIG_DIR to a "
            "folder of your own, or pass --no-cache."
        ) from None
    except ValueError:
        raise InputError(f"the cache key {path} is damaged; delete it (the cache is then rebuilt).") from None
    if len(key) < 16:
        raise InputError(f"the cache key {path} is too short; delete it (the cache is then rebuilt).")
    return key


def _create_key(path: Path) -> None:
    """Write a new random key to `path` unless one appears meanwhile: written whole to a private
    temporary file first, then linked into place (so no process ever reads half a key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        with contextlib.suppress(FileExistsError):  # another process made it first: keep theirs
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def sign(key: bytes, sidecar: dict) -> str:
    """HMAC-SHA256 of a sidecar (all its fields but `hmac`, as canonical JSON) under `key`."""
    fields = {name: value for name, value in sidecar.items() if name != "hmac"}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class CacheKey:
    """What identifies a cached array.

    `model` is a digest of the weights and `data` a description of the inputs (spec, split,
    number of points, seed), both given by the caller; `reduction` is the reduction's cache
    token (its spec, plus the seed for a projection).
    """

    model: str
    data: str
    layer: str
    reduction: str
    dtype: str = "float32"

    def as_dict(self) -> dict:
        """The key as stored in the sidecar (with the cache format)."""
        return {"format": CACHE_FORMAT, **asdict(self)}

    def digest(self) -> str:
        """The SHA-256 of the key's canonical JSON, in hex (the entry's file name)."""
        text = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """A complete entry: the array (a read-only memmap) and the caller's information."""

    array: np.memmap
    info: dict


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ActivationCache:
    """Arrays stored under `root/activations`, looked up and written by `CacheKey`."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.key = cache_key()
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.directory = self.root / "activations"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(
                f"cannot create the cache directory {self.directory} ({exc.strerror}); "
                "pass another --cache-dir or --no-cache."
            ) from None
        if not os.access(self.directory, os.W_OK):
            raise InputError(
                f"the cache directory {self.directory} is not writable; "
                "pass another --cache-dir or --no-cache."
            )

    def _paths(self, key: CacheKey) -> tuple[Path, Path]:
        digest = key.digest()
        folder = self.directory / digest[:2]
        return folder / f"{digest}.npy", folder / f"{digest}.json"

    def lookup(self, key: CacheKey) -> CacheEntry | None:
        """The complete entry for `key`, or None: missing or half-written (silently), or
        damaged: a sidecar without this user's signature, an array that does not match its
        sidecar's shape, dtype or content digest (with a warning; the caller recomputes and
        rewrites it)."""
        array_path, sidecar_path = self._paths(key)
        try:
            sidecar = json.loads(sidecar_path.read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        if not isinstance(sidecar, dict) or sidecar.get("key") != key.as_dict():
            return None
        if not hmac.compare_digest(str(sidecar.get("hmac", "")), sign(self.key, sidecar)):
            return self._damaged(
                array_path, "its sidecar is not signed with this user's cache key (rewritten, or written by "
                "another user)"
            )  # fmt: skip
        try:
            array = np.load(array_path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            return self._damaged(array_path, f"unreadable ({exc})")
        if list(array.shape) != sidecar.get("shape") or str(array.dtype) != key.dtype:
            return self._damaged(array_path, f"shape {array.shape} or dtype {array.dtype} differs")
        if array_digest(array) != sidecar.get("sha256"):
            return self._damaged(array_path, "its content does not match the digest written with it")
        return CacheEntry(array, sidecar.get("info", {}))

    @staticmethod
    def _damaged(array_path: Path, why: str) -> None:
        warnings.warn(f"ignoring damaged cache entry {array_path}: {why}; recomputing it.", stacklevel=3)
        return None

    def create(self, key: CacheKey, shape: tuple[int, ...], info: dict | None = None) -> PendingEntry:
        """Start writing the entry for `key`: fill `.array`, then `commit()` (or `abort()`)."""
        array_path, _ = self._paths(key)
        array_path.parent.mkdir(parents=True, exist_ok=True)
        self._remove_dead_partials(array_path.parent, key.digest())
        n_bytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(key.dtype).itemsize
        check_free_space(array_path.parent, n_bytes, f"layer {key.layer!r}")
        return PendingEntry(self, key, tuple(shape), info or {})

    def _remove_dead_partials(self, folder: Path, digest: str) -> None:
        host = socket.gethostname()
        for partial in folder.glob(f"{digest}.*.partial"):
            owner = partial.name[len(digest) + 1 : -len(".partial")]
            parts = owner.rsplit("-", 2)
            if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
                continue
            if not _pid_alive(int(parts[1])):
                with contextlib.suppress(FileNotFoundError):
                    partial.unlink()


class PendingEntry:
    """An entry being written: `.array` is a writable memmap in a unique partial file."""

    def __init__(self, cache: ActivationCache, key: CacheKey, shape: tuple[int, ...], info: dict):
        self.cache, self.key, self.shape, self.info = cache, key, shape, info
        self.array_path, self.sidecar_path = cache._paths(key)
        owner = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self.partial_path = self.array_path.with_name(f"{key.digest()}.{owner}.partial")
        self.array = np.lib.format.open_memmap(
            self.partial_path, mode="w+", dtype=np.dtype(key.dtype), shape=shape
        )

    def commit(self) -> CacheEntry:
        """Flush, rename into place, write the sidecar (with the content digest); return the
        entry, read-only."""
        self.array.flush()
        digest = array_digest(self.array)
        del self.array
        os.replace(self.partial_path, self.array_path)
        sidecar = {
            "key": self.key.as_dict(),
            "shape": list(self.shape),
            "sha256": digest,
            "info": self.info,
        }
        sidecar["hmac"] = sign(self.cache.key, sidecar)
        with atomic_write(self.sidecar_path, "w") as handle:
            json.dump(sidecar, handle, indent=1)
        array = np.load(self.array_path, mmap_mode="r", allow_pickle=False)
        return CacheEntry(array, self.info)

    def abort(self) -> None:
        """Drop the partial file (after an error); the cache is left as it was."""
        self.__dict__.pop("array", None)
        with contextlib.suppress(FileNotFoundError):
            self.partial_path.unlink()
