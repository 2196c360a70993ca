"""The run store: one directory per build, written atomically.

Layout (schema version :data:`SCHEMA_VERSION`)::

    RUN/
      manifest.json     schema version, inputs with content hashes, configs,
                        model/weights, package versions, stage timings, counts
      categories.json   [{"id", "name"}] in class_idx order
      images.parquet    one row per image (image_idx order): ids, path, size, split,
                        per-image outcomes at the build's operating point, x/y,
                        cluster, readability, properties
      objects.parquet   one row per GT and prediction (boxes, score, outcome, match)
      clusters.parquet  one row per failure slice, ranked worst first (``members``: its
                        HDBSCAN clusters; several when siblings that fail alike merged)
      cluster_tree.parquet  the clusters' ancestors in HDBSCAN's condensed tree (node,
                        parent, size, lambda_birth; nodes 0..K-1 = clusters), so slices can
                        be re-chosen at any operating point (:mod:`vecexplore.mapping.hierarchy`)
      embeddings.npy    (N, D) float32, L2-normalised, zero rows for unreadable images
      metrics.json      the evaluation (``vecexplore evaluate --json`` schema + sweep)
      analysis.json     property importance and per-cluster descriptions
      recommendations.json  ranked findings, each with the image_idx it selects
      label_issues.parquet  one row per suspected label error, most likely first (kind, score,
                        annotation; :mod:`vecexplore.analysis.label_issues`); optional: older
                        runs compute it when read
      near_duplicates.parquet  near-duplicate image pairs, most similar first; optional
      leakage.json      images of other splits with a near duplicate in the train split, and the
                        metrics with and without them (:mod:`vecexplore.analysis.duplicates`);
                        optional: older runs have neither
      words.json        CLIP's words for each slice, or why they are hidden (random weights)
      text_embeddings.npy  (P, D) the vocabulary's text embeddings (trained weights only)
      thumbs.bin/.npy   packed 160 px JPEG thumbnails (see :mod:`vecexplore.thumbs`)
      class_scores.npy  classification only, when the predictions carry per-class scores
      exports/          files exported from the app (``vecexplore serve``)

A build writes into ``RUN.partial-<random>`` beside ``RUN`` and renames it into
place only when every file is complete, so a directory named ``RUN`` with a
manifest is always a finished run and an interrupted build leaves nothing that
looks finished. Single files are also written temp-then-rename. The partial
directory is locked by its build (:mod:`vecexplore.buildlock`): a later build
removes only partials whose builder is gone. Files and directories get the
user's umask, as plain ``open``/``mkdir`` would give them (:mod:`vecexplore.atomic`).

Reading: :class:`Run` opens a finished run and turns any unreadable file into
:class:`~vecexplore.errors.RunStoreError` naming it; :func:`vecexplore.runcheck.open_run`
also checks every file up front (``info``, ``export`` and ``serve`` use it).
"""

from __future__ import annotations

import functools
import json
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
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    disk_full_error,
    json_safe,
    make_unique_dir,
)
from vecexplore.buildlock import BuildLock, is_abandoned
from vecexplore.errors import DiskFullError, RunStoreError
from vecexplore.types import TASKS

log = logging.getLogger(__name__)

__all__ = [
    "MANIFEST",
    "SCHEMA_VERSION",
    "Run",
    "RunWriter",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "broken_file",
    "estimate_run_bytes",
    "json_safe",
    "write_run",
]

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
#: Infix of the work directory of a build in progress: ``RUN.partial-<random>``.
PARTIAL = ".partial-"
#: The hint every message about a damaged run ends with.
REBUILD_HINT = "rebuild with --force"


def broken_file(path: str | Path, what: str) -> RunStoreError:
    """The error for a damaged file of a run: ``<path>: <what>; rebuild with --force``."""
    return RunStoreError(f"{path}: {what}; {REBUILD_HINT}")


# ---------------------------------------------------------------- writing a run


class RunWriter:
    """Collects a run's files in a temp directory; :meth:`commit` moves it into place."""

    def __init__(self, tmp_dir: Path, final_dir: Path):
        self.tmp_dir = tmp_dir
        self.final_dir = final_dir

    def write_table(self, name: str, df) -> None:
        """Write a pandas DataFrame as ``name.parquet`` (pyarrow)."""
        df.to_parquet(self.tmp_dir / f"{name}.parquet", index=False)

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


# ---------------------------------------------------------------- reading a run


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

            path = self.path / f"{name}.parquet"
            if not path.exists():
                raise broken_file(path, "missing")
            try:
                self._cache[name] = pd.read_parquet(path)
            except Exception as exc:  # pyarrow raises many types for a damaged file; all mean the same
                raise broken_file(path, f"unreadable parquet table ({_reason(exc)})") from None
        return self._cache[name]

    @property
    def images(self):
        return self.table("images")

    @property
    def objects(self):
        return self.table("objects")

    @property
    def clusters(self):
        return self.table("clusters")

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
        return self.json("metrics.json")

    @property
    def categories(self) -> list[dict]:
        return self.json("categories.json")

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
        return self.array("embeddings.npy", mmap=mmap)

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

            try:
                self._cache["dataset"] = self._dataset()
            except RunStoreError:
                raise
            except (ValidationError, KeyError, TypeError, ValueError, IndexError) as exc:
                raise RunStoreError(
                    f"{self.path}: its tables do not make a valid dataset ({_reason(exc)}); {REBUILD_HINT}"
                ) from None
        return self._cache["dataset"]

    def _dataset(self):
        from vecexplore.types import Boxes, Categories, Dataset, ImageTable, Labels

        images = self.images
        table = ImageTable(
            image_id=images["image_id"].to_numpy(),
            file_name=images["file_name"].to_numpy(object),
            width=images["width"].to_numpy(),
            height=images["height"].to_numpy(),
            split=images["split"].to_numpy(object) if "split" in images else None,
        )
        cats = Categories(
            ids=np.array([c["id"] for c in self.categories], np.int64),
            names=np.array([c["name"] for c in self.categories], object),
        )
        if self.task == "detection":
            obj = self.objects

            def boxes(rows, predictions: bool):
                return Boxes(
                    image_idx=rows["image_idx"].to_numpy(),
                    class_idx=rows["class_idx"].to_numpy(),
                    xywh=rows[["x", "y", "w", "h"]].to_numpy(np.float64),
                    object_id=rows["object_id"].to_numpy(),
                    score=rows["score"].to_numpy(np.float64) if predictions else None,
                    iscrowd=rows["iscrowd"].to_numpy(bool),
                    area=rows["area"].to_numpy(np.float64),
                    rle=_masks(rows, table),
                )

            gt = boxes(obj[obj["kind"] == "gt"], False)
            pred = boxes(obj[obj["kind"] == "pred"], True)
        else:
            has_gt = images["gt_class_idx"].to_numpy() >= 0
            has_pred = images["pred_class_idx"].to_numpy() >= 0
            idx = np.arange(len(images))
            scores_path = self.path / "class_scores.npy"
            scores = self.array(scores_path.name)[has_pred] if scores_path.exists() else None
            gt = Labels(image_idx=idx[has_gt], class_idx=images["gt_class_idx"].to_numpy()[has_gt])
            pred = Labels(
                image_idx=idx[has_pred],
                class_idx=images["pred_class_idx"].to_numpy()[has_pred],
                score=images["pred_score"].to_numpy(np.float64)[has_pred],
                scores=scores,
            )
        inputs = self.manifest.get("inputs", {})
        ds = Dataset(
            task=self.task,
            images=table,
            categories=cats,
            gt=gt,
            pred=pred,
            images_root=inputs.get("images_root"),
            boxes_clipped=self.boxes_clipped is True,
        )
        return ds


def _masks(rows, images) -> np.ndarray | None:
    """The objects' compressed RLEs from ``mask_counts`` (None unless every row has one)."""
    if "mask_counts" not in rows or len(rows) == 0 or rows["mask_counts"].isna().any():
        return None
    idx = rows["image_idx"].to_numpy()
    h, w = images.height[idx].tolist(), images.width[idx].tolist()
    out = np.empty(len(rows), object)
    out[:] = [{"size": [hi, wi], "counts": bytes(c)} for hi, wi, c in zip(h, w, rows["mask_counts"], strict=True)]
    return out


def json_kind(value: Any) -> str:
    """The JSON type of a parsed value: object, array, string, boolean, null or number."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
