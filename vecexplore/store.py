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
      clusters.parquet  one row per cluster, ranked worst first
      embeddings.npy    (N, D) float32, L2-normalised, zero rows for unreadable images
      metrics.json      the evaluation (``vecexplore evaluate --json`` schema + sweep)
      analysis.json     property importance and per-cluster descriptions
      recommendations.json  ranked findings, each with the image_idx it selects
      thumbs.bin/.npy   packed 160 px JPEG thumbnails (see :mod:`vecexplore.thumbs`)
      class_scores.npy  classification only, when the predictions carry per-class scores
      exports/          files exported from the app (``vecexplore serve``)

A build writes into ``RUN.partial-<random>`` beside ``RUN`` and renames it into
place only when every file is complete, so a directory named ``RUN`` with a
manifest is always a finished run and an interrupted build leaves nothing that
looks finished. Single files are also written temp-then-rename.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from vecexplore.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text, json_safe
from vecexplore.errors import RunStoreError

__all__ = [
    "MANIFEST",
    "SCHEMA_VERSION",
    "Run",
    "RunWriter",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "json_safe",
    "write_run",
]

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
TABLES = ("images", "objects", "clusters")


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
        np.save(self.tmp_dir / name, np.ascontiguousarray(array), allow_pickle=False)

    def path(self, name: str) -> Path:
        """A path inside the run being written (for stages that write their own files)."""
        return self.tmp_dir / name


@contextmanager
def write_run(out: str | Path, *, force: bool = False) -> Iterator[RunWriter]:
    """Write a run atomically.

    Yields a :class:`RunWriter` on a temp directory beside ``out``. The caller
    writes every file and finally the manifest via ``writer.write_json(MANIFEST, ...)``;
    on normal exit the directory is renamed to ``out`` (replacing an existing run
    only when ``force``). On an exception the temp directory is removed and
    ``out`` is untouched.

    Raises:
        RunStoreError: ``out`` exists and ``force`` is False, or it is not a run
            (a non-empty directory without a manifest is never replaced).
    """
    out = Path(out)
    if out.exists():
        if not force:
            raise RunStoreError(f"{out}: already exists; pass --force to replace it")
        if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).exists():
            raise RunStoreError(f"{out}: exists and is not a vecexplore run; refusing to replace it")
        if not out.is_dir():
            raise RunStoreError(f"{out}: exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out)
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.partial-", dir=out.parent))
    writer = RunWriter(tmp, out)
    try:
        yield writer
        if not (tmp / MANIFEST).exists():
            raise RunStoreError(f"{out}: internal error: run written without a manifest")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{out.name}.old-", dir=out.parent))
            os.replace(out, old / "run")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove_stale_partials(out: Path) -> None:
    """Remove ``out.partial-*`` directories left by killed builds (never ``out`` itself)."""
    for stale in out.parent.glob(f"{out.name}.partial-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


# ---------------------------------------------------------------- reading a run


class Run:
    """A finished run, opened read-only. Tables load lazily and are cached."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not self.path.is_dir():
            raise RunStoreError(f"{self.path}: no such run directory")
        if not manifest_path.exists():
            raise RunStoreError(f"{self.path}: not a finished vecexplore run (no {MANIFEST})")
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise RunStoreError(f"{manifest_path}: unreadable manifest: {exc}") from None
        version = self.manifest.get("schema_version")
        if version != SCHEMA_VERSION:
            raise RunStoreError(
                f"{self.path}: run schema version {version!r}, this vecexplore reads {SCHEMA_VERSION}; rebuild the run"
            )
        self._cache: dict[str, Any] = {}

    @property
    def task(self) -> str:
        return self.manifest["task"]

    def table(self, name: str):
        """``images``, ``objects`` or ``clusters`` as a pandas DataFrame."""
        if name not in self._cache:
            import pandas as pd

            path = self.path / f"{name}.parquet"
            if not path.exists():
                raise RunStoreError(f"{self.path}: missing {path.name}")
            self._cache[name] = pd.read_parquet(path)
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
        if name not in self._cache:
            path = self.path / name
            if not path.exists():
                raise RunStoreError(f"{self.path}: missing {name}")
            self._cache[name] = json.loads(path.read_text())
        return self._cache[name]

    @property
    def metrics(self) -> dict:
        return self.json("metrics.json")

    @property
    def categories(self) -> list[dict]:
        return self.json("categories.json")

    def embeddings(self, *, mmap: bool = True) -> np.ndarray:
        """(N, D) float32, memory-mapped by default."""
        return np.load(self.path / "embeddings.npy", mmap_mode="r" if mmap else None)

    def dataset(self):
        """Rebuild the evaluated :class:`~vecexplore.types.Dataset` from the run's tables.

        Object rows are stored in input order, so tie-breaks (and therefore every
        metric) are the same as on the original files.
        """
        if "dataset" in self._cache:
            return self._cache["dataset"]
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
                )

            gt = boxes(obj[obj["kind"] == "gt"], False)
            pred = boxes(obj[obj["kind"] == "pred"], True)
        else:
            has_gt = images["gt_class_idx"].to_numpy() >= 0
            has_pred = images["pred_class_idx"].to_numpy() >= 0
            idx = np.arange(len(images))
            scores_path = self.path / "class_scores.npy"
            scores = np.load(scores_path)[has_pred] if scores_path.exists() else None
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
        )
        self._cache["dataset"] = ds
        return ds
