"""Writing files so that a crash never leaves one half-written, whatever lies at the path.

Every file the project writes (results, checkpoints, pages, cache entries, tables) goes
through `atomic_write` or `atomic_save`. What happens depends on what is at the path:

- nothing, or a regular file: the content lands in a temporary file beside the target, is
  flushed to disk, and only then renamed over the target (`os.replace` is atomic on POSIX).
  An earlier file at the same path stays untouched until the new one is complete.
- a symbolic link: it is followed (to the end of a chain) and its target is replaced
  atomically as above; the link itself stays a link. A dangling link creates its target.
- `-`: the content goes to standard output.
- a character device (`/dev/null`, `/dev/stdout`, a terminal) or a FIFO: written in place,
  as the shell's `>` would, since a device or a pipe cannot be replaced by a file without
  breaking it (`/dev/full` then reports "No space left on device").
- a block device, a socket or a directory: refused with one line (an `InputError`).

Any operating-system error on the way (read-only file system, full disk, a path under a
file, no permission) becomes an `InputError` that names the path: one line, exit code 2.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import InputError

STDOUT = "-"
"""The output path that means standard output."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(tmp: str, target: Path) -> None:
    """Give the temporary file the permissions a plainly created file would have, then rename."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, target)


def _write_error(path, exc: OSError) -> InputError:
    reason = exc.strerror or str(exc)
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
    return InputError(f"cannot write {path}: {reason}{where}.")


def output_kind(path: str | os.PathLike) -> tuple[str, Path]:
    """How a write to `path` proceeds, and the path actually written.

    Returns ("stdout", path) for `-`, ("replace", target) for a regular file or a new path
    (symbolic links resolved to their final target), ("in place", path) for a character
    device or a FIFO. Raises InputError for a directory, a block device or a socket.
    """
    if str(path) == STDOUT:
        return "stdout", Path(STDOUT)
    target = Path(os.path.realpath(Path(path).expanduser()))
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return "replace", target
    except OSError as exc:
        raise _write_error(path, exc) from None
    if stat.S_ISREG(mode):
        return "replace", target
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return "in place", target
    what = (
        "a directory"
        if stat.S_ISDIR(mode)
        else ("a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file")
    )
    raise InputError(f"cannot write {path}: it is {what}; give a file name.")


def _stdout(mode: str) -> IO:
    return sys.stdout.buffer if "b" in mode else sys.stdout


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator[IO]:
    """A handle to write `path` through (see the module docstring for what lies at the path).

    For a regular file: a temporary file beside it, renamed to `path` on success and
    deleted on error, so `path` is either the old or the complete new content.
    """
    kind, target = output_kind(path)
    if kind == "stdout":
        handle = _stdout(mode)
        yield handle
        handle.flush()
        return
    if kind == "in place":
        try:
            with open(target, mode, **open_kwargs) as handle:
                yield handle
        except OSError as exc:
            raise _write_error(path, exc) from None
        return
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _publish(tmp, target)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from None
        raise


def _free_bytes(folder: str | os.PathLike) -> int | None:
    try:
        info = os.statvfs(folder)
    except OSError:
        return None
    return info.f_bavail * info.f_frsize


def atomic_save(path: str | os.PathLike, write) -> None:
    """Call `write(tmp_path)` for a writer that wants a path (torch.save, np.save), then publish
    the file as `atomic_write` does (rename; or copy to stdout, a device or a FIFO).

    A writer that fails because the disk filled up (torch.save reports that as a bare
    RuntimeError) gives an InputError naming `path`.
    """
    kind, target = output_kind(path)
    folder = target.parent if kind == "replace" else None  # elsewhere: the system's temp folder
    tmp = None
    try:
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=None if folder is None else folder
        )
        os.close(fd)
        try:
            write(tmp)
        except RuntimeError:
            free = _free_bytes(os.path.dirname(tmp))
            if free is not None and free < 2**20:
                raise OSError(28, os.strerror(28)) from None
            raise
        if kind == "replace":
            _publish(tmp, target)
            return
        with open(tmp, "rb") as source:
            if kind == "stdout":
                shutil.copyfileobj(source, _stdout("wb"))
                _stdout("wb").flush()
            else:
                with open(target, "wb") as sink:
                    shutil.copyfileobj(source, sink)
    except OSError as exc:
        raise _write_error(path, exc) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
