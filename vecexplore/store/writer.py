"""Writing a run: into ``RUN.partial-<random>``, renamed into place when complete (see :mod:`vecexplore.store`)."""

from __future__ import annotations

import functools
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from vecexplore.atomic import (
    as_disk_full,
    atomic_write_array,
    atomic_write_json,
    disk_full_error,
    json_safe,
    make_unique_dir,
)
from vecexplore.buildlock import BuildLock, is_abandoned
from vecexplore.errors import DiskFullError, RunStoreError
from vecexplore.store.layout import MANIFEST, PARTIAL, table_file

log = logging.getLogger(__name__)


class RunWriter:
    """Collects a run's files in a temp directory; :meth:`commit` moves it into place."""

    def __init__(self, tmp_dir: Path, final_dir: Path):
        self.tmp_dir = tmp_dir
        self.final_dir = final_dir

    def write_table(self, name: str, df) -> None:
        """Write a pandas DataFrame as ``name.parquet`` (pyarrow)."""
        df.to_parquet(self.tmp_dir / table_file(name), index=False)

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.tmp_dir / name, json_safe(obj))

    def write_array(self, name: str, array: np.ndarray) -> None:
        atomic_write_array(self.tmp_dir / name, array)

    def path(self, name: str) -> Path:
        """A path inside the run being written (for stages that write their own files)."""
        return self.tmp_dir / name


@contextmanager
def write_run(out: str | Path, *, force: bool = False, size_hint: int | None = None) -> Iterator[RunWriter]:
    """Write a run atomically.

    Yields a :class:`RunWriter` on a temp directory ``out.partial-<random>``
    beside ``out``, locked for this process (see :mod:`vecexplore.buildlock`).
    The caller writes every file and finally the manifest via
    ``writer.write_json(MANIFEST, ...)``; on normal exit the directory is
    renamed to ``out`` (replacing an existing run only when ``force``). On an
    exception the temp directory is removed and ``out`` is untouched.

    Args:
        size_hint: about how many bytes the whole run takes (see
            :func:`estimate_run_bytes`); sizes the message when the disk fills.

    Raises:
        RunStoreError: ``out`` exists and ``force`` is False, or it is not a run
            (a non-empty directory without a manifest is never replaced).
        DiskFullError: the file system (or quota) filled up while writing; the
            message names ``out`` and the larger of ``size_hint`` and what was
            written before plus what the failed file needed.
    """
    out = Path(out)
    if out.exists():
        if not force:
            raise RunStoreError(f"{out}: already exists; pass --force to replace it")
        if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).exists():
            raise RunStoreError(f"{out}: exists and is not a vecexplore run; refusing to replace it")
        if not out.is_dir():
            raise RunStoreError(f"{out}: exists and is not a directory")
    with disk_full_error(out, size_hint):
        out.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(out)
        tmp = make_unique_dir(out.parent, f"{out.name}{PARTIAL}")
        try:
            lock = BuildLock.acquire(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    writer = RunWriter(tmp, out)
    try:
        try:
            yield writer
            if not (tmp / MANIFEST).exists():
                raise RunStoreError(f"{out}: internal error: run written without a manifest")
            lock.detach()
            if out.exists():
                old = make_unique_dir(out.parent, f"{out.name}.old-")
                os.replace(out, old / "run")
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out)
        except BaseException as exc:
            # A full disk is the run's problem, whichever of its files hit it: name the run.
            full = as_disk_full(exc, out, functools.partial(_needed, tmp, exc, size_hint))
            if full is not None:
                raise full from exc
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        lock.release()


def _needed(tmp: Path, exc: BaseException, size_hint: int | None) -> int:
    """Bytes the run needs, for the full-disk message: the estimate, or at least what was
    written before the failure plus what the failing file needed (when it said)."""
    failed = exc.needed if isinstance(exc, DiskFullError) and exc.needed else 0
    done = sum(f.stat().st_size for f in tmp.iterdir() if f.is_file()) if tmp.is_dir() else 0
    return max(size_hint or 0, done + failed)


def estimate_run_bytes(*, n_images: int, dim: int, n_objects: int = 0, n_classes: int = 0) -> int:
    """About how many bytes a run of these sizes takes on disk (for the full-disk message).

    Embeddings are exact (``n_images * dim * 4``); thumbnails (~8 kB each), the
    table rows (~0.4 kB per image, ~0.2 kB per object) and the JSON documents
    (~1 MB plus the per-class curves) are generous averages of demo and COCO runs.
    """
    return int(
        n_images * dim * 4
        + n_images * (8_000 + 400 + (8 * n_classes))
        + n_objects * 200
        + 1_000_000 + n_classes * 40_000
    )


def _remove_stale_partials(out: Path) -> None:
    """Remove ``out.partial-*`` directories whose build is gone (see :func:`~vecexplore.buildlock.is_abandoned`).

    Names are compared literally: a run named ``exp[1]`` is not a pattern and
    never matches ``exp1.partial-*``. A live build's directory is never touched.
    """
    prefix = f"{out.name}{PARTIAL}"
    with os.scandir(out.parent) as entries:
        stale = [Path(e.path) for e in entries if e.name.startswith(prefix) and e.is_dir(follow_symlinks=False)]
    for path in stale:
        if is_abandoned(path):
            log.info("removing %s, left by a build that is no longer running", path)
            shutil.rmtree(path, ignore_errors=True)
