"""Who owns a ``RUN.partial-*`` work directory while a build writes it.

A build holds an exclusive ``flock`` on :data:`LOCK_NAME` inside its partial
directory for its whole life; the kernel drops the lock when the process ends,
however it ends (``kill -9`` included), so "can I take the lock?" is exactly
"is its builder gone?". The file also holds ``"<pid> <host>"``, read only on
file systems without ``flock``. The lock file is created under a temp name,
locked, then renamed to :data:`LOCK_NAME`, so nobody ever sees it unlocked
while its builder lives; it is unlinked (still locked) just before the partial
directory is renamed into the finished run, so a run never contains it.

:func:`is_abandoned` is what another build's cleanup asks before removing a
partial directory.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: only the pid marker
    fcntl = None

log = logging.getLogger(__name__)

LOCK_NAME = ".vecexplore-build.lock"
#: A partial directory without a lock file is left alone while it changed this recently: its
#: build may be between creating the directory and its lock. Older ones are leftovers (of a
#: build killed in that instant, or of a vecexplore without locks).
GRACE_SECONDS = 300.0
_UNSUPPORTED = {errno.ENOLCK, errno.EINVAL, errno.EBADF, getattr(errno, "EOPNOTSUPP", -1), getattr(errno, "ENOTSUP", -1)}


def _try_lock(fd: int) -> bool | None:
    """Take an exclusive lock without waiting: True taken, False held by another, None unsupported."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            return None
        raise
    return True


def _marker() -> bytes:
    return f"{os.getpid()} {socket.gethostname()}\n".encode()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


class BuildLock:
    """The lock of one partial directory, held from :meth:`acquire` to :meth:`release`."""

    def __init__(self, fd: int, path: Path):
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, directory: str | Path) -> BuildLock:
        """Create and lock ``directory/LOCK_NAME`` (the directory must be new and ours)."""
        directory = Path(directory)
        staging = directory / f"{LOCK_NAME}.{os.getpid()}.tmp"
        fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            if _try_lock(fd) is None:
                log.debug("%s: no flock on this file system; the pid marker guards the build", directory)
            os.write(fd, _marker())
            os.replace(staging, directory / LOCK_NAME)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, directory / LOCK_NAME)

    def detach(self) -> None:
        """Remove the lock file but keep the lock (just before the directory becomes the run)."""
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def is_abandoned(directory: str | Path) -> bool:
    """True when ``directory`` (a partial run) has no living builder and may be removed.

    Never True for a directory whose lock is held, or whose marker names a live
    process of this host, or another host's when ``flock`` is unavailable.
    """
    directory = Path(directory)
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        try:
            age = time.time() - directory.stat().st_mtime
        except OSError:
            return False
        return age > GRACE_SECONDS
    except OSError:
        return False
    try:
        state = _try_lock(fd)
        if state is not None:
            return state  # True: we took it, so its builder is gone
        os.lseek(fd, 0, os.SEEK_SET)
        pid, _, host = os.read(fd, 512).decode(errors="replace").strip().partition(" ")
        if host != socket.gethostname() or not pid.isdigit():
            return False  # another machine's build (or unreadable): never ours to judge
        return not _pid_alive(int(pid))
    finally:
        os.close(fd)  # releases the lock we may have taken; the caller removes the directory


__all__ = ["GRACE_SECONDS", "LOCK_NAME", "BuildLock", "is_abandoned"]
