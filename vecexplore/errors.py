"""Every user-facing failure is a :class:`VecexploreError`.

The CLI turns these into ``error: <message>`` on stderr and exit code 2; anything
else that escapes is a bug. Messages name the file, the record (index or id) and
what is wrong, so a user can fix their input without reading our code.
"""

from __future__ import annotations

import math
from pathlib import Path


class VecexploreError(Exception):
    """Base class of every error a user can cause and fix."""


class InputError(VecexploreError):
    """An input file is missing, unreadable or malformed.

    Args:
        message: what is wrong.
        path: the file at fault, if any; prefixed to the message.
        record: the record at fault (an index like ``annotations[12]`` or an id),
            if any; named after the path.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, record: str | None = None):
        self.path = None if path is None else Path(path)
        self.record = record
        self.detail = message
        where = []
        if path is not None:
            where.append(str(path))
        if record is not None:
            where.append(record)
        prefix = ": ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class MissingImagesError(InputError):
    """Images named by the annotations are not on disk (all of them are listed)."""

    def __init__(self, missing: list[str], *, root: str | Path | None, shown: int = 20):
        self.missing = list(missing)
        head = ", ".join(self.missing[:shown])
        more = f" … and {len(self.missing) - shown} more" if len(self.missing) > shown else ""
        where = f" under {root}" if root is not None else ""
        super().__init__(f"{len(self.missing)} image(s) named by the annotations are missing{where}: {head}{more}")


class OutsideRootError(InputError):
    """Image paths resolve (symlinks followed) outside the images root; all are listed.

    Args:
        outside: ``(file name as given, resolved path)`` of each such image.
        root: the images root they were resolved against.
    """

    def __init__(self, outside: list[tuple[str, str]], *, root: str | Path, shown: int = 20):
        self.outside = [name for name, _ in outside]
        head = ", ".join(name if name == real else f"{name} (-> {real})" for name, real in outside[:shown])
        more = f" … and {len(outside) - shown} more" if len(outside) > shown else ""
        super().__init__(
            f"{len(outside)} image path(s) resolve outside the images root {root}: {head}{more}. "
            "Pass --images with a folder that holds every image, or --allow-outside-root to read them anyway"
        )


class ValidationError(VecexploreError):
    """A data-model object was built with inconsistent or ill-typed fields."""


class ConfigError(VecexploreError):
    """A configuration value (CLI option or config field) is out of range or inconsistent."""


class WeightsError(VecexploreError):
    """Model weights could not be loaded (offline, missing file, wrong architecture)."""


class RunStoreError(VecexploreError):
    """A run directory is missing, incomplete, or from an incompatible schema version."""


class CompareError(VecexploreError):
    """Two runs cannot be compared: they differ in task, classes, images or ground truth."""


class DiskFullError(VecexploreError):
    """A write failed because the file system is full (ENOSPC) or the user's quota is spent (EDQUOT).

    Args:
        path: what was being written (a file, a run directory, an export folder,
            the embedding cache).
        needed: about how many bytes the write needs in all (an estimate; see
            the caller), or None when unknown.
        quota: the quota, not the device, ran out.
    """

    def __init__(self, path: str | Path, needed: int | None = None, *, quota: bool = False):
        self.path = Path(path)
        self.needed = needed
        self.quota = quota
        what = "disk quota exceeded" if quota else "no space left on device"
        size = f" (needs about {format_megabytes(needed)} MB)" if needed is not None else ""
        super().__init__(f"{self.path}: {what}{size}")

    def with_needed(self, needed: int, path: str | Path | None = None) -> DiskFullError:
        """The same error about ``path`` (default: the same path), needing ``needed`` bytes."""
        return DiskFullError(self.path if path is None else path, needed, quota=self.quota)


def format_megabytes(n_bytes: int) -> str:
    """``n_bytes`` in MB (10**6 bytes), rounded up: ``0.1`` at least, one decimal under 10, else whole."""
    tenths = max(1, math.ceil(max(n_bytes, 0) / 1e5))
    return f"{tenths / 10:.1f}" if tenths < 100 else str(math.ceil(tenths / 10))
