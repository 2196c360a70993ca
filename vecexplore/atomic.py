"""Atomic file writes (temp file in the same folder, fsync, rename), JSON that stays
valid, and a full disk reported as a clear error.

A reader never sees a half-written file: either the old content or the new.

Files and directories are created with mode ``0o666`` / ``0o777`` and left to
the kernel to reduce by the user's umask (and default ACLs), exactly as a plain
``open()`` / ``mkdir()`` would: under umask 022 a run is readable by others,
under 077 by its owner only. (``tempfile.mkstemp``/``mkdtemp`` would make every
file 0600 and every directory 0700 whatever the umask.)

A write that fails because the file system is full (ENOSPC) or the quota is
spent (EDQUOT) raises :class:`~vecexplore.errors.DiskFullError` naming the
target and about how many bytes it needed; its temp file is removed.
"""

from __future__ import annotations

import errno
import io
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from vecexplore.errors import DiskFullError

_QUOTA = getattr(errno, "EDQUOT", None)
_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, _QUOTA) if e is not None)
_TRIES = 100


# ---------------------------------------------------------------- full disks


def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError that means "no space left" or "quota exceeded".

    Most carry the errno; pyarrow puts it in the message too, and a short
    ``fwrite`` (numpy's ``tofile``) arrives as "N requested and M written" with
    none, which is why :func:`atomic_write_array` never lets numpy use ``fwrite``.
    """
    if not isinstance(exc, OSError):
        return False
    if exc.errno in _FULL_ERRNOS:
        return True
    text = str(exc).lower()
    return any(f"[errno {e}]" in text or os.strerror(e).lower() in text for e in _FULL_ERRNOS)


def _is_quota(exc: OSError) -> bool:
    return _QUOTA is not None and (exc.errno == _QUOTA or f"[errno {_QUOTA}]" in str(exc).lower())


def as_disk_full(
    exc: BaseException, path: str | Path, needed: int | Callable[[], int | None] | None = None
) -> DiskFullError | None:
    """The :class:`DiskFullError` about ``path`` that ``exc`` amounts to, or None when
    ``exc`` is not about a full disk. ``exc`` may be a full-disk ``OSError`` or a
    :class:`DiskFullError` about a file inside ``path`` (whose quota flag is kept).

    Args:
        needed: bytes the write needs, or a function computing them (called only
            when ``exc`` is a full disk), or None when unknown.
    """
    if isinstance(exc, DiskFullError):
        quota = exc.quota
    elif is_disk_full(exc):
        quota = _is_quota(exc)
    else:
        return None
    return DiskFullError(path, needed() if callable(needed) else needed, quota=quota)


@contextmanager
def disk_full_error(path: str | Path, needed: int | Callable[[], int | None] | None = None) -> Iterator[None]:
    """Turn a full-disk ``OSError`` raised inside into :class:`DiskFullError` about ``path``
    (see :func:`as_disk_full` for ``needed``).

    A :class:`DiskFullError` raised inside passes through unchanged (it already
    names what was being written); every other exception too.
    """
    try:
        yield
    except DiskFullError:
        raise
    except OSError as exc:
        full = as_disk_full(exc, path, needed)
        if full is None:
            raise
        raise full from exc


class _SizeSink(io.RawIOBase):
    """A seekable file that keeps nothing and counts how long the file would be."""

    def __init__(self):
        self.pos = 0
        self.size = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        self.pos += n
        self.size = max(self.size, self.pos)
        return n

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos


def written_size(write: Callable[[IO[bytes]], None]) -> int | None:
    """How many bytes ``write(fileobj)`` writes, measured by running it on a sink
    that keeps nothing; None when ``write`` cannot run on a sink."""
    sink = _SizeSink()
    try:
        write(sink)
    except Exception:  # any writer that needs a real file: the size stays unknown
        return None
    return sink.size


# ---------------------------------------------------------------- creating with the umask


def _unique(parent: Path, prefix: str, suffix: str, create: Callable[[Path], Any]):
    for _ in range(_TRIES):
        candidate = parent / f"{prefix}{os.urandom(4).hex()}{suffix}"  # secrets.token_hex, without importing random
        try:
            return candidate, create(candidate)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary name {prefix}*{suffix}", str(parent))


def make_unique_dir(parent: str | Path, prefix: str) -> Path:
    """Create and return ``parent/<prefix><random>``, mode 0o777 less the umask."""
    path, _ = _unique(Path(parent), prefix, "", lambda p: os.mkdir(p, 0o777))
    return path


def _open_temp(path: Path) -> tuple[int, Path]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    tmp, fd = _unique(path.parent, f".{path.name}.", ".tmp", lambda p: os.open(p, flags, 0o666))
    return fd, tmp


# ---------------------------------------------------------------- atomic writes


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None], *, size: int | None = None) -> None:
    """Call ``write(fileobj)`` on a temp file beside ``path``, then rename it to ``path``.

    Args:
        size: bytes ``write`` writes, when known; it only sizes the full-disk
            message (otherwise ``write`` is measured on a sink after the failure).

    Raises:
        DiskFullError: the file system or quota is full; ``path`` is untouched
            and no temp file is left.
    """
    path = Path(path)
    with disk_full_error(path, size if size is not None else lambda: written_size(write)):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _open_temp(path)
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda fh: fh.write(data), size=len(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON; NaN/inf are refused (pass it through :func:`json_safe`)."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default, allow_nan=False) + "\n")


class _WritesOnly:
    """A file seen through ``write`` alone. numpy writes a real file with ``fwrite``,
    whose failure it reports without the errno; through this it calls ``write``."""

    def __init__(self, fh: IO[bytes]):
        self._fh = fh

    def write(self, data) -> int:
        return self._fh.write(data)


def atomic_write_array(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` atomically (no pickles)."""
    array = np.ascontiguousarray(array)
    header = 128  # the .npy header is padded to a multiple of 64 bytes; 128 covers any shape
    atomic_write(path, lambda fh: np.save(_WritesOnly(fh), array, allow_pickle=False), size=array.nbytes + header)


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def json_safe(obj: Any) -> Any:
    """Replace NaN/inf floats (anywhere in nested lists/dicts) by None so JSON stays valid."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    return obj
