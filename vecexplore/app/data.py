"""One run's data for the app, loaded once per process and shared by every session.

:func:`load_run_data` opens a run directory, rebuilds its evaluated dataset and
the evaluation at the build's operating point, and precomputes the static
per-image arrays the views need. The result is cached per resolved path, so a
server with many browser sessions holds one copy.

A :class:`RunData` is read-only after loading: every array is non-writeable and
sessions keep their own state (selection, operating point, view options) in
their document. The one mutable part is the per-IoU cache of evaluations, which
is guarded by a lock: a new IoU threshold is matched once, for all sessions.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vecexplore.errors import RunStoreError, VecexploreError
from vecexplore.io.paths import resolve_image_path

log = logging.getLogger(__name__)

#: IoU thresholds offered by the app (the build's own is added when it is not one of them).
IOU_CHOICES: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(arr)
    arr.flags.writeable = False
    return arr


def slugify(name: str) -> str:
    """A URL-safe key: lower-case letters, digits, ``-`` and ``_`` (``run`` if nothing is left)."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-")
    return slug or "run"


@dataclass(frozen=True, eq=False)
class ImageInfo:
    """Static per-image arrays, all (N,) in image_idx order and read-only.

    Attributes:
        image_id: int64 user image ids.
        file_name: object str, as the annotations give it.
        width, height: int64 pixels (0 = unknown).
        x, y: float32 UMAP display coordinates; NaN for images that are not mapped.
        cluster: int64 HDBSCAN cluster, -1 = noise or not mapped.
        readable: bool, the image could be decoded.
        unreadable_reason: object str, "" when readable.
        split: object str, or None when the run has no split column.
        gt_class: int64, detection: the most frequent non-crowd GT class of the
            image (ties: lower class_idx); classification: the label; -1 = none.
        max_score: float64, detection: the image's highest prediction score
            (ignored predictions included); classification: the prediction's
            score; NaN = no prediction.
    """

    image_id: np.ndarray
    file_name: np.ndarray
    width: np.ndarray
    height: np.ndarray
    x: np.ndarray
    y: np.ndarray
    cluster: np.ndarray
    readable: np.ndarray
    unreadable_reason: np.ndarray
    split: np.ndarray | None
    gt_class: np.ndarray
    max_score: np.ndarray

    def __len__(self) -> int:
        return len(self.image_id)

    @property
    def splits(self) -> tuple[str, ...]:
        """The distinct non-empty split names, sorted ("" and None are no split)."""
        if self.split is None:
            return ()
        return tuple(sorted({str(s) for s in self.split if s is not None and str(s) != ""}))


@dataclass(frozen=True, eq=False)
class ObjectIndex:
    """Rows of a Boxes table grouped by image: rows of image i are ``order[start[i]:start[i+1]]``.

    ``order`` keeps input order within an image (stable sort).
    """

    order: np.ndarray
    start: np.ndarray

    @classmethod
    def of(cls, image_idx: np.ndarray, num_images: int) -> ObjectIndex:
        order = np.argsort(image_idx, kind="stable")
        start = np.zeros(num_images + 1, np.int64)
        np.cumsum(np.bincount(image_idx, minlength=num_images), out=start[1:])
        return cls(order=_frozen(order), start=_frozen(start))

    def rows(self, image_idx: int) -> np.ndarray:
        return self.order[self.start[image_idx]:self.start[image_idx + 1]]

    def rows_of(self, image_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows of several images at once: ``(rows, at)`` where ``at[j]`` is the position in
        ``image_idx`` of the image of ``rows[j]``; images in the given order, rows as :meth:`rows`."""
        image_idx = np.asarray(image_idx, np.int64)
        first, count = self.start[image_idx], self.start[image_idx + 1] - self.start[image_idx]
        at = np.repeat(np.arange(len(image_idx), dtype=np.int64), count)
        ends = np.cumsum(count)
        offset = np.arange(int(ends[-1]) if len(ends) else 0, dtype=np.int64) - np.repeat(ends - count, count)
        return self.order[np.repeat(first, count) + offset], at


class RunData:
    """One run, loaded for the app (see module docstring). Build with :func:`load_run_data`.

    Attributes:
        path: the run directory (resolved).
        run: the :class:`~vecexplore.store.Run`.
        key: URL-safe id of the run (the directory name, slugified).
        task: "detection" or "classification".
        dataset: the evaluated :class:`~vecexplore.types.Dataset`.
        thumbs: the run's :class:`~vecexplore.thumbs.ThumbStore`.
        images: :class:`ImageInfo`.
        class_names: (K,) tuple of str in class_idx order.
        clusters: the run's slice table (pandas, ranked worst first at the build's operating point).
        tree: the run's cluster hierarchy (:class:`~vecexplore.mapping.hierarchy.ClusterTree`), None
            for a run built before it was stored (every cluster is then its own slice).
        base: the evaluation at the build's operating point.
        iou_choices: IoU thresholds the app offers (detection), ascending.
        gt_index, pred_index: :class:`ObjectIndex` of ``dataset.gt`` / ``dataset.pred`` (detection).
        pred_row: (N,) int64 row of each image's prediction in ``dataset.pred`` (classification; -1 = none).
        object_map: the object-level map (:class:`~vecexplore.app.objects.ObjectMap`), None for a run
            built without one.
    """

    def __init__(self, path: str | Path, *, key: str | None = None):
        from vecexplore.eval.evaluate import evaluate
        from vecexplore.runcheck import open_run
        from vecexplore.thumbs import ThumbStore

        self.path = Path(path).resolve()
        self.run = open_run(self.path)  # every file checked: a damaged run fails here, not in a session
        self.key = key or slugify(self.path.name)
        self.task = self.run.task
        self.dataset = self.run.dataset()
        self.thumbs = ThumbStore(self.path, num_images=self.dataset.num_images)  # damaged: placeholders
        self.class_names = tuple(str(n) for n in self.dataset.categories.names)
        self.clusters = self.run.clusters
        from vecexplore.analysis.slicing import read_tree

        self.tree = read_tree(self.run)
        config = self.run.manifest.get("config", {})
        self.build_iou = float(config.get("iou") or 0.5)
        build_conf = config.get("confidence")
        if self.task == "detection":
            self.base = evaluate(self.dataset, iou=self.build_iou, confidence=build_conf,
                                 iou_type=config.get("iou_type"))  # None (older runs) = auto
        else:
            self.base = evaluate(self.dataset, confidence=build_conf)
        self.iou_choices = tuple(sorted({*IOU_CHOICES, round(self.build_iou, 4)}))
        self._root = self.run.manifest.get("inputs", {}).get("images_root")
        self._lock = threading.Lock()
        self._coco = None
        self._by_iou: dict[float, Any] = {self.build_iou: self.base}
        n = self.dataset.num_images
        ids = self.dataset.images.image_id
        self._id_order = _frozen(np.argsort(ids, kind="stable"))
        self._ids_sorted = _frozen(ids[self._id_order])
        if self.task == "detection":
            self.gt_index = ObjectIndex.of(self.dataset.gt.image_idx, n)
            self.pred_index = ObjectIndex.of(self.dataset.pred.image_idx, n)
            self.pred_row = None
        else:
            self.gt_index = self.pred_index = None
            row = np.full(n, -1, np.int64)
            row[self.dataset.pred.image_idx] = np.arange(len(self.dataset.pred), dtype=np.int64)
            self.pred_row = _frozen(row)
        self.images = self._image_info()
        from vecexplore.app.objects import load_object_map

        #: The run's object map (:class:`~vecexplore.app.objects.ObjectMap`); None without one.
        self.object_map = load_object_map(self.run, self.dataset)
        self._warm(self.base)
        from vecexplore.compare import is_comparison

        #: A comparison run's model B (:mod:`vecexplore.app.comparison`); None for an ordinary run.
        self.comparison = None
        if is_comparison(self.run):
            from vecexplore.app.comparison import load_comparison

            self.comparison = load_comparison(self)

    # ------------------------------------------------------------- lookups

    @property
    def label_issues(self):
        """The run's label-issue table at the build's operating point (most likely first;
        computed on first use for a run built before it was stored; thread-safe)."""
        with self._lock:
            if "label_issues" not in self.__dict__:
                from vecexplore.analysis.label_issues import image_scores, of_run

                issues = of_run(self.run, ev=self.base)
                self.__dict__["label_issues"] = issues
                self.__dict__["label_issue_scores"] = _frozen(image_scores(issues, self.num_images))
            return self.__dict__["label_issues"]

    @property
    def label_issue_scores(self) -> np.ndarray:
        """(N,) float64 each image's highest label-issue score (0 = none)."""
        self.label_issues  # noqa: B018 - computes both on first use
        return self.__dict__["label_issue_scores"]

    @property
    def words(self):
        """``(probs, vocab, hidden)``: the per-image zero-shot probabilities over the run's vocabulary
        ((N, P), :func:`vecexplore.analysis.words.zero_shot`; None when hidden or not stored), the
        vocabulary, and why the words are hidden (None when shown; computed once, thread-safe)."""
        with self._lock:
            if "words" not in self.__dict__:
                from vecexplore.analysis.words import of_run, zero_shot
                from vecexplore.store.layout import TEXT_EMBEDDINGS

                doc = of_run(self.run)
                if doc is None:
                    value = (None, [], "this run was built before words for clusters were stored: rebuild it")
                elif doc.get("hidden"):
                    value = (None, doc.get("vocabulary") or [], str(doc["hidden"]))
                else:
                    vocab = doc["vocabulary"]
                    text = self.run.array(TEXT_EMBEDDINGS)
                    probs = zero_shot(self.run.embeddings(), text, [v["group"] for v in vocab],
                                      logit_scale=float(doc.get("logit_scale") or 100.0))
                    value = (_frozen(probs), vocab, None)
                self.__dict__["words"] = value
            return self.__dict__["words"]

    @property
    def text_search(self):
        """The run's :class:`~vecexplore.text_search.TextSearch` (shared by every session; its model
        is loaded on the first search). ``text_search.hidden`` says why it is off, or is None."""
        with self._lock:
            if "text_search" not in self.__dict__:
                from vecexplore.text_search import TextSearch

                self.__dict__["text_search"] = TextSearch(self.run)
            return self.__dict__["text_search"]

    def text_similarity(self, phrase: str) -> np.ndarray | None:
        """(N,) similarity of every image to ``phrase``; None for no phrase, or when the search is off
        or fails (the Query tab, which ran the search, shows why)."""
        if not phrase:
            return None
        try:
            return self.text_search.similarity(phrase)
        except VecexploreError:
            return None

    @property
    def num_images(self) -> int:
        return self.dataset.num_images

    @property
    def model(self) -> dict:
        """The manifest's model block (model, weights, random, fallback_reason, ...)."""
        return dict(self.run.manifest.get("model", {}))

    @property
    def coco(self) -> dict:
        """COCO AP/AR of the whole run from metrics.json (detection; independent of the operating point)."""
        return dict(self.run.metrics.get("coco") or {})

    @property
    def coco_segm(self) -> dict | None:
        """COCO segm AP/AR of the whole run from metrics.json; None without masks."""
        segm = self.run.metrics.get("coco_segm")
        return dict(segm) if isinstance(segm, dict) else None

    def coco_metrics(self):
        """The whole run's :class:`~vecexplore.eval.coco.CocoMetrics` (precision / recall arrays as
        pycocotools'), computed once per process on first use (detection only; thread-safe)."""
        with self._lock:
            if self._coco is None:
                from vecexplore.eval.coco import coco_metrics_of

                self._coco = coco_metrics_of(self.dataset)
        return self._coco

    def image_path(self, image_idx: int) -> Path:
        """The image file of ``image_idx`` (resolved against the run's images root)."""
        if not 0 <= image_idx < self.num_images:
            raise IndexError(f"image_idx {image_idx} is not in this run ({self.num_images} images)")
        return resolve_image_path(str(self.images.file_name[image_idx]), self._root)

    def index_of_image_id(self, image_id: int) -> int:
        """The image_idx of a user image id, -1 when the run has no such image."""
        try:
            value = int(image_id)
        except (TypeError, ValueError):
            return -1
        pos = int(np.searchsorted(self._ids_sorted, value))
        if pos < len(self._ids_sorted) and self._ids_sorted[pos] == value:
            return int(self._id_order[pos])
        return -1

    # ------------------------------------------------------------- evaluations

    def evaluation(self, *, iou: float | None = None, confidence: float | None = None):
        """The evaluation at ``(iou, confidence)``; thread-safe.

        A new IoU is matched once (under a lock) and cached for every session; a
        new confidence only re-derives outcomes (~10 ms at 1M predictions). The
        returned evaluation is new and private to the caller.

        Args:
            iou: detection IoU threshold; None = the build's.
            confidence: None = F1-optimal at that IoU (detection) / 0.0 (classification).
        """
        if self.task != "detection":
            return self.base.at(confidence=confidence)
        return self._at_iou(iou).at(confidence=confidence)

    def optimal_confidence(self, iou: float | None = None) -> float:
        """The F1-optimal confidence at ``iou`` (0.0 without predictions)."""
        best, _ = (self._at_iou(iou) if self.task == "detection" else self.base).optimal
        return 0.0 if math.isnan(best) else float(best)

    def _at_iou(self, iou: float | None):
        t = self.build_iou if iou is None else float(iou)
        with self._lock:
            at_iou = self._by_iou.get(t)
            if at_iou is None:
                log.info("matching %s at IoU %.2f", self.key, t)
                at_iou = self.base.at(iou=t)
                self._warm(at_iou)
                self._by_iou[t] = at_iou
        return at_iou

    @staticmethod
    def _warm(ev) -> None:
        # Fill the matching's lazy caches before the object is shared between threads.
        if ev.task == "detection":
            _ = ev.matching.score_prefix
            _ = ev.per_image

    # ------------------------------------------------------------- static arrays

    def _image_info(self) -> ImageInfo:
        df = self.run.images
        n = self.num_images
        if len(df) != n:
            raise RunStoreError(f"{self.path}: images.parquet has {len(df)} rows, the dataset {n}")
        ds = self.dataset
        if self.task == "detection":
            gt = ds.gt
            keep = ~gt.iscrowd
            gt_class = _most_frequent(gt.image_idx[keep], gt.class_idx[keep], n, len(ds.categories))
            max_score = np.full(n, -np.inf)
            np.maximum.at(max_score, ds.pred.image_idx, ds.pred.score)
            max_score[np.isinf(max_score)] = np.nan
        else:
            gt_class = np.full(n, -1, np.int64)
            gt_class[ds.gt.image_idx] = ds.gt.class_idx
            max_score = np.full(n, np.nan)
            max_score[ds.pred.image_idx] = ds.pred.score
        split = df["split"].to_numpy(object) if "split" in df else None
        reason = df["unreadable_reason"].to_numpy(object) if "unreadable_reason" in df else np.full(n, "", object)
        return ImageInfo(
            image_id=_frozen(ds.images.image_id),
            file_name=_frozen(ds.images.file_name),
            width=_frozen(ds.images.width),
            height=_frozen(ds.images.height),
            x=_frozen(df["x"].to_numpy(np.float32)),
            y=_frozen(df["y"].to_numpy(np.float32)),
            cluster=_frozen(df["cluster"].to_numpy(np.int64)),
            readable=_frozen(df["readable"].to_numpy(bool)),
            unreadable_reason=_frozen(np.array([str(r or "") for r in reason], object)),
            split=None if split is None else _frozen(split),
            gt_class=_frozen(gt_class),
            max_score=_frozen(max_score),
        )


def _most_frequent(image_idx: np.ndarray, class_idx: np.ndarray, n: int, k: int) -> np.ndarray:
    """(n,) int64 most frequent class per image (ties: lower class_idx), -1 for none."""
    out = np.full(n, -1, np.int64)
    if len(image_idx) == 0:
        return out
    keys, counts = np.unique(image_idx.astype(np.int64) * max(k, 1) + class_idx, return_counts=True)
    img, cls = keys // max(k, 1), keys % max(k, 1)
    order = np.lexsort((cls, -counts, img))
    first = order[np.r_[True, img[order][1:] != img[order][:-1]]]
    out[img[first]] = cls[first]
    return out


_CACHE: dict[Path, RunData] = {}
_CACHE_LOCK = threading.Lock()
_PATH_LOCKS: dict[Path, threading.Lock] = {}


def load_run_data(path: str | Path) -> RunData:
    """The :class:`RunData` of a run directory, loaded once per process (thread-safe).

    Raises:
        RunStoreError: not a finished run, or a run that cannot be read.
    """
    resolved = Path(path).resolve()
    with _CACHE_LOCK:
        if resolved in _CACHE:
            return _CACHE[resolved]
        lock = _PATH_LOCKS.setdefault(resolved, threading.Lock())
    with lock:
        with _CACHE_LOCK:
            if resolved in _CACHE:
                return _CACHE[resolved]
        data = RunData(resolved)
        with _CACHE_LOCK:
            _CACHE[resolved] = data
    from vecexplore.app import dense

    if dense.is_dense(data.images.x, data.images.y):  # its map aggregates: pay datashader's import and JIT now
        dense.warm_in_background()
    return data


__all__ = ["IOU_CHOICES", "ImageInfo", "ObjectIndex", "RunData", "load_run_data", "slugify"]
