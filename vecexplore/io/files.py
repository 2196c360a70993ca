"""Opening input files safely: regular files only, and input files up to a size limit.

A FIFO, socket or device given where a file is expected would block its reader
forever (a FIFO without a writer) or stream without end (``--gt /dev/zero``). So
every file vecexplore reads is ``stat``-ed first, and anything but a regular file
is refused before ``open()`` is ever called on it; the file is then opened
non-blocking and checked again on the open descriptor, so a file swapped for a
FIFO in between is refused too, never waited on.

Annotation and prediction files (JSON, CSV, YAML, label and list text files) are
also refused, before a byte is read, above :func:`max_input_bytes`:
:data:`DEFAULT_MAX_INPUT_MB` (4096 MB, 1 MB = 2^20 bytes) unless the environment
variable ``VECEXPLORE_MAX_INPUT_MB`` says otherwise. For scale: COCO train2017's
``instances`` file is 450 MB and a results file of 10 million predictions about
1.5 GB; parsing JSON takes several times the file's size in memory. Image files
have no byte limit: their decoding is bounded by the pixel limits of
:mod:`vecexplore.io.images`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from vecexplore.errors import ConfigError, InputError

DEFAULT_MAX_INPUT_MB = 4096
MAX_INPUT_ENV = "VECEXPLORE_MAX_INPUT_MB"
_MB = 1 << 20

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def max_input_bytes() -> int:
    """The size limit of annotation and prediction files, in bytes (see the module doc).

    Raises:
        ConfigError: ``VECEXPLORE_MAX_INPUT_MB`` is set but not a positive number.
    """
    raw = os.environ.get(MAX_INPUT_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_INPUT_MB * _MB
    try:
        mb = float(raw)
    except ValueError:
        mb = float("nan")
    if not mb > 0 or mb == float("inf"):
        raise ConfigError(f"{MAX_INPUT_ENV} must be a positive number of megabytes, got {raw!r}")
    return int(mb * _MB)


def not_regular(mode: int, *, what: str = "a file") -> str | None:
    """None for a regular file's ``st_mode``, else why it is refused (a short reason).

    ``what`` (with its article) names the expected thing in the directory case:
    ``"is a directory, not an image file"``.
    """
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return f"is a directory, not {what}"
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    return f"not a regular file ({kind})"


def check_regular(path: str | Path, *, what: str = "a file", max_bytes: int | None = None) -> os.stat_result:
    """``stat`` ``path`` (following links) and refuse anything but a regular file.

    Never opens the file.

    Raises:
        InputError: missing ("file not found"), not a regular file, larger than
            ``max_bytes`` (when given), or not stat-able; ``detail`` is the short reason.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except OSError as exc:
        raise InputError(_os_reason(exc), path=path) from None
    _refuse(st, path, what, max_bytes)
    return st


def open_regular(path: str | Path, *, what: str = "a file", max_bytes: int | None = None) -> BinaryIO:
    """Open a regular file for reading in binary mode, refusing everything else
    (see :func:`check_regular`) without blocking on a FIFO.

    Returns:
        A buffered binary file object; the caller closes it.

    Raises:
        InputError: as :func:`check_regular`, or the file cannot be opened
            ("permission denied", …).
    """
    check_regular(path, what=what, max_bytes=max_bytes)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise InputError(_os_reason(exc), path=path) from None
    try:
        _refuse(os.fstat(fd), path, what, max_bytes)  # the file opened is the file checked
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _refuse(st: os.stat_result, path, what: str, max_bytes: int | None) -> None:
    reason = not_regular(st.st_mode, what=what)
    if reason is not None:
        raise InputError(reason, path=path)
    if max_bytes is not None and st.st_size > max_bytes:
        raise InputError(
            f"is {st.st_size / _MB:,.1f} MB, above the {max_bytes / _MB:,.1f} MB limit for input files; "
            f"set {MAX_INPUT_ENV} (in MB) to raise it",
            path=path,
        )


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return f"cannot read: {exc.strerror or exc}"
