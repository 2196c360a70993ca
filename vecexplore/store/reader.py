"""Reading a run: :class:`Run` opens a finished one and names any file it cannot read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vecexplore.errors import RunStoreError
from vecexplore.store.layout import (
    CATEGORIES,
    CLUSTERS,
    EMBEDDINGS,
    IMAGES,
    MANIFEST,
    METRICS,
    OBJECTS,
    SCHEMA_VERSION,
    table_file,
)
from vecexplore.types import TASKS

#: The hint every message about a damaged run ends with.
REBUILD_HINT = "rebuild with --force"


def broken_file(path: str | Path, what: str) -> RunStoreError:
    """The error for a damaged file of a run: ``<path>: <what>; rebuild with --force``."""
    return RunStoreError(f"{path}: {what}; {REBUILD_HINT}")


class Run:
    """A finished run, opened read-only. Tables load lazily and are cached.

    Any file that cannot be read or parsed raises :class:`RunStoreError` naming
    it (``<file>: <what is wrong>; rebuild with --force``), never a parser's own
    exception. Opening checks the manifest only; :func:`vecexplore.runcheck.validate_run`
    checks the rest.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not self.path.is_dir():
            raise RunStoreError(f"{self.path}: no such run directory")
        if not manifest_path.exists():
            raise RunStoreError(f"{self.path}: not a finished vecexplore run (no {MANIFEST})")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # ValueError: bad JSON or bad UTF-8
            raise broken_file(manifest_path, f"unreadable manifest: {exc}") from None
        if not isinstance(manifest, dict):
            raise broken_file(manifest_path, f"unreadable manifest: a JSON {json_kind(manifest)}, not an object")
        self.manifest = manifest
        version = manifest.get("schema_version")
        if version != SCHEMA_VERSION:
            raise broken_file(manifest_path, f"run schema version {version!r}, this vecexplore reads {SCHEMA_VERSION}")
        if manifest.get("task") not in TASKS:
            raise broken_file(manifest_path, f"task is {manifest.get('task')!r}, not one of {', '.join(TASKS)}")
        self._cache: dict[str, Any] = {}

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def boxes_clipped(self) -> bool | None:
        """Whether the build clipped boxes crossing the image border (``--clip``).

        None when the manifest does not say: runs built before the choice was
        recorded (their builds clipped by default), and classification runs.
        """
        value = self.manifest.get("config", {}).get("clip")
        return value if isinstance(value, bool) else None

    def table(self, name: str):
        """``images``, ``objects`` or ``clusters`` as a pandas DataFrame."""
        if name not in self._cache:
            import pandas as pd

            path = self.path / table_file(name)
            if not path.exists():
                raise broken_file(path, "missing")
            try:
                self._cache[name] = pd.read_parquet(path)
            except Exception as exc:  # pyarrow raises many types for a damaged file; all mean the same
                raise broken_file(path, f"unreadable parquet table ({_reason(exc)})") from None
        return self._cache[name]

    @property
    def images(self):
        return self.table(IMAGES)

    @property
    def objects(self):
        return self.table(OBJECTS)

    @property
    def clusters(self):
        return self.table(CLUSTERS)

    def json(self, name: str) -> Any:
        """The parsed JSON document ``name`` of the run (cached)."""
        if name not in self._cache:
            path = self.path / name
            if not path.exists():
                raise broken_file(path, "missing")
            try:
                self._cache[name] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise broken_file(path, f"invalid JSON ({exc})") from None
        return self._cache[name]

    @property
    def metrics(self) -> dict:
        return self.json(METRICS)

    @property
    def categories(self) -> list[dict]:
        return self.json(CATEGORIES)

    @property
    def near_duplicates(self):
        """The near-duplicate pairs, most similar first (:mod:`vecexplore.analysis.duplicates`;
        empty for a run built before they were stored)."""
        from vecexplore.analysis.duplicates import of_run

        return of_run(self)[0]

    @property
    def leakage(self) -> dict | None:
        """The split leakage and the metrics with and without the leaking images
        (:mod:`vecexplore.analysis.duplicates`; None for a run built before they were stored)."""
        from vecexplore.analysis.duplicates import of_run

        return of_run(self)[1]

    @property
    def words(self) -> dict | None:
        """The words for clusters (``words.json``: ``hidden`` — why there are none, with random
        weights —, the vocabulary and each slice's words; :mod:`vecexplore.analysis.words`), or None
        for a run built before them."""
        from vecexplore.analysis.words import of_run

        return of_run(self)

    def embeddings(self, *, mmap: bool = True) -> np.ndarray:
        """(N, D) float32, memory-mapped by default."""
        return self.array(EMBEDDINGS, mmap=mmap)

    def array(self, name: str, *, mmap: bool = False) -> np.ndarray:
        """The ``.npy`` file ``name`` of the run (no pickles)."""
        path = self.path / name
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except FileNotFoundError:
            raise broken_file(path, "missing") from None
        except (OSError, ValueError, EOFError) as exc:  # truncated, not .npy, object arrays
            raise broken_file(path, f"unreadable array ({_reason(exc)})") from None

    def dataset(self):
        """Rebuild the evaluated :class:`~vecexplore.types.Dataset` from the run's tables.

        Object rows are stored in input order, so tie-breaks (and therefore every
        metric) are the same as on the original files.
        """
        if "dataset" not in self._cache:
            from vecexplore.errors import ValidationError
            from vecexplore.store.tables import dataset_of

            try:
                self._cache["dataset"] = dataset_of(self)
            except RunStoreError:
                raise
            except (ValidationError, KeyError, TypeError, ValueError, IndexError) as exc:
                raise RunStoreError(
                    f"{self.path}: its tables do not make a valid dataset ({_reason(exc)}); {REBUILD_HINT}"
                ) from None
        return self._cache["dataset"]


def json_kind(value: Any) -> str:
    """The JSON type of a parsed value: object, array, string, boolean, null or number."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
