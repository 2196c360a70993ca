"""COCO detection metrics, equal to pycocotools ``COCOeval(gt, dt, "bbox")``.

Our own implementation (NumPy + compiled kernels: the C extension, or the numba
reference in :mod:`vecexplore.eval.coco_kernels`; see :mod:`vecexplore.eval.native`);
pycocotools is only the test oracle. The numbers reproduce pycocotools to the
last bit on any valid input, including its quirks:

* images are visited in ascending image *id* order (``params.imgIds`` is
  sorted), and equal scores are tied first by that order, then by input order
  within an image (pycocotools' mergesort over the concatenated detections);
* per (image, class), detections are sorted by score (stable) and cut to
  ``max_dets[-1]`` before anything else;
* ground truth order within an image is input order (a detection equally close
  to two ground truths takes the later one);
* a ground truth with annotation id 0 can be matched, but its match is recorded
  as "0 = unmatched", so the detection counts as a false positive (or is ignored
  if that ground truth is ignored) — pycocotools does this, so we do too;
* area ranges use the ground truth's ``area`` field and a prediction's
  ``Boxes.area`` — ``w * h``, or the mask area for mask-only results (what
  ``loadRes`` sets), both ends inclusive.

Example::

    m = coco_metrics(gt=ds.gt, pred=ds.pred, num_classes=len(ds.categories),
                     image_ids=ds.images.image_id)
    m.as_dict()["AP"], m.per_class_ap, m.pr_curve(3, iou=0.5)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from vecexplore.errors import ConfigError, ValidationError
from vecexplore.types import Boxes, Dataset

log = logging.getLogger(__name__)

STAT_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl",
                               "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
AREA_LABELS: tuple[str, ...] = ("all", "small", "medium", "large")
AreaLabel = Literal["all", "small", "medium", "large"]


def _linspace_thresholds(lo: float, hi: float, step: float) -> tuple[float, ...]:
    # pycocotools' construction; np.arange would give slightly different floats
    values = np.linspace(lo, hi, int(np.round((hi - lo) / step)) + 1, endpoint=True)
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class CocoParams:
    """Evaluation parameters, pycocotools' ``Params(iouType="bbox")`` by default.

    Attributes:
        iou_thresholds: (T,) IoU thresholds, each in [0, 1]; default 0.50:0.05:0.95.
        recall_thresholds: (R,) ascending recall thresholds in [0, 1]; default 0:0.01:1.
        max_dets: three strictly increasing detection caps per image; default (1, 10, 100).
            ``stats[0]`` uses the literal 100 as pycocotools does.
        area_ranges: four ``(lo, hi)`` area ranges (inclusive) for "all", "small",
            "medium", "large"; default ``[0, 1e10], [0, 32²], [32², 96²], [96², 1e10]``.
    """

    iou_thresholds: tuple[float, ...] = field(default_factory=lambda: _linspace_thresholds(0.5, 0.95, 0.05))
    recall_thresholds: tuple[float, ...] = field(default_factory=lambda: _linspace_thresholds(0.0, 1.0, 0.01))
    max_dets: tuple[int, ...] = (1, 10, 100)
    area_ranges: tuple[tuple[float, float], ...] = (
        (0.0**2, 1e5**2), (0.0**2, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e5**2))

    def __post_init__(self):
        iou = tuple(float(v) for v in np.asarray(self.iou_thresholds, np.float64).ravel())
        rec = tuple(float(v) for v in np.asarray(self.recall_thresholds, np.float64).ravel())
        dets = tuple(int(v) for v in self.max_dets)
        areas = tuple((float(lo), float(hi)) for lo, hi in self.area_ranges)
        if not iou or not all(0.0 <= v <= 1.0 for v in iou):
            raise ConfigError(f"iou_thresholds: need at least one value, each in [0, 1]; got {iou}")
        if not rec or not all(0.0 <= v <= 1.0 for v in rec) or bool((np.diff(rec) < 0).any()):
            raise ConfigError(f"recall_thresholds: need ascending values in [0, 1]; got {rec}")
        if len(dets) != 3 or dets[0] < 1 or not dets[0] < dets[1] < dets[2]:
            raise ConfigError(f"max_dets: need three strictly increasing positive integers; got {dets}")
        if len(areas) != 4 or any(not lo <= hi for lo, hi in areas):
            raise ConfigError(f"area_ranges: need four (lo, hi) pairs with lo <= hi for {AREA_LABELS}; got {areas}")
        object.__setattr__(self, "iou_thresholds", iou)
        object.__setattr__(self, "recall_thresholds", rec)
        object.__setattr__(self, "max_dets", dets)
        object.__setattr__(self, "area_ranges", areas)

    def cache_key(self) -> str:
        """A short stable hash of the parameters."""
        import hashlib  # here: loading OpenSSL is not worth it for `evaluate`, which never asks

        return hashlib.sha1(repr(self).encode()).hexdigest()[:12]

    def iou_index(self, iou: float) -> int:
        """Index of an IoU threshold (matched to 1e-9); ConfigError if absent."""
        hits = np.flatnonzero(np.abs(np.asarray(self.iou_thresholds) - iou) < 1e-9)
        if hits.size == 0:
            raise ConfigError(f"iou={iou} is not one of the evaluated IoU thresholds {self.iou_thresholds}")
        return int(hits[0])

    def max_dets_index(self, max_dets: int) -> int:
        if max_dets not in self.max_dets:
            raise ConfigError(f"max_dets={max_dets} is not one of {self.max_dets}")
        return self.max_dets.index(max_dets)


def _area_index(area: str) -> int:
    if area not in AREA_LABELS:
        raise ConfigError(f"area={area!r}: must be one of {AREA_LABELS}")
    return AREA_LABELS.index(area)


@dataclass(frozen=True, eq=False)
class CocoMetrics:
    """The result of :func:`coco_metrics`; arrays laid out as pycocotools' ``COCOeval.eval``.

    Axes: T = IoU thresholds, R = recall thresholds, K = classes (``class_idx``
    order), A = area ranges (all, small, medium, large), M = ``max_dets``.
    ``-1`` marks settings without ground truth (pycocotools' sentinel).

    Attributes:
        params: the parameters used.
        stats: (12,) float64, pycocotools' ``COCOeval.stats`` in :data:`STAT_NAMES` order
            (-1 where nothing is defined).
        precision: (T, R, K, A, M) float64 interpolated precision.
        recall: (T, K, A, M) float64 maximum recall.
        scores: (T, R, K, A, M) float64, the score at which each precision is reached.
        per_class_ap: (K,) float64 AP@[.5:.95] (area all, largest ``max_dets``);
            NaN for a class without ground truth (pycocotools has -1 there).
        per_class_ap50: (K,) float64 AP at IoU 0.5, NaN likewise (and NaN for
            every class if 0.5 is not an evaluated threshold).
        num_gt: (K, A) int64 non-ignored (non-crowd, in-range) ground truth per class.
    """

    params: CocoParams
    stats: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    per_class_ap: np.ndarray
    per_class_ap50: np.ndarray
    num_gt: np.ndarray

    def as_dict(self) -> dict[str, float]:
        """``{"AP": ..., "AP50": ..., ..., "ARl": ...}`` (-1 where undefined)."""
        return {name: float(v) for name, v in zip(STAT_NAMES, self.stats, strict=True)}

    def pr_curve(self, class_idx: int | None = None, *, iou: float = 0.5, area: AreaLabel = "all",
                 max_dets: int = 100) -> tuple[np.ndarray, np.ndarray]:
        """Interpolated precision at every recall threshold.

        Args:
            class_idx: a class, or None for the mean over classes with ground
                truth in this area range.
            iou: one of ``params.iou_thresholds``.
            area: area-range label.
            max_dets: one of ``params.max_dets``.

        Returns:
            ``(recall_thresholds (R,), precision (R,))`` float64; precision is NaN
            where undefined (no ground truth for the class / for any class).
        """
        t = self.params.iou_index(iou)
        a = _area_index(area)
        m = self.params.max_dets_index(max_dets)
        rec = np.asarray(self.params.recall_thresholds, np.float64)
        block = self.precision[t, :, :, a, m]  # (R, K)
        if class_idx is not None:
            k = int(class_idx)
            if not 0 <= k < block.shape[1]:
                raise ConfigError(f"class_idx={class_idx} is out of range (< {block.shape[1]})")
            col = block[:, k]
            return rec, (np.full(len(rec), np.nan) if (col <= -1).all() else col.copy())
        have = (block > -1).all(axis=0)
        if not have.any():
            return rec, np.full(len(rec), np.nan)
        return rec, block[:, have].mean(axis=1)


def per_class_columns(m: CocoMetrics) -> dict[str, np.ndarray]:
    """Per class (K,) float64, as pycocotools summarizes one class: ``AP`` (IoU 0.50:0.95), ``AP50``,
    ``AP75`` (NaN when that IoU is not evaluated), ``AR100`` (recall at the largest max_dets, mean
    over IoU); area "all", NaN for a class without ground truth."""
    n_k = m.precision.shape[2]
    out = {"AP": m.per_class_ap, "AP50": m.per_class_ap50}
    iou = np.asarray(m.params.iou_thresholds)
    t75 = np.flatnonzero(np.isclose(iou, 0.75))
    out["AP75"] = _mean_defined(m.precision[t75[0], :, :, 0, -1]) if t75.size else np.full(n_k, np.nan)
    out["AR100"] = _mean_defined(m.recall[:, :, 0, -1])
    return out


def _rank_of_images(num_images: int, image_ids) -> np.ndarray:
    """(N,) int64 position of each image in ascending-id order (pycocotools' imgIds)."""
    if image_ids is None:
        return np.arange(num_images, dtype=np.int64)
    ids = np.asarray(image_ids)
    if ids.shape != (num_images,):
        raise ValidationError(f"image_ids: expected shape ({num_images},), got {ids.shape}")
    order = np.argsort(ids, kind="stable")
    if num_images > 1 and (ids[order[1:]] == ids[order[:-1]]).any():
        dup = ids[order[1:]][ids[order[1:]] == ids[order[:-1]]]
        raise ValidationError(f"image_ids: duplicate ids {dup[:10].tolist()}")
    rank = np.empty(num_images, np.int64)
    rank[order] = np.arange(num_images)
    return rank


def _check_boxes(name: str, boxes: Boxes, *, prediction: bool, num_images: int, num_classes: int) -> None:
    if not isinstance(boxes, Boxes):
        raise ValidationError(f"{name}: expected Boxes, got {type(boxes).__name__}")
    if boxes.is_prediction != prediction:
        raise ValidationError(f"{name}: {'predictions need' if prediction else 'ground truth must not have'} scores")
    for field_name, upper in (("image_idx", num_images), ("class_idx", num_classes)):
        arr = getattr(boxes, field_name)
        if arr.size and arr.max() >= upper:
            pos = int(np.argmax(arr >= upper))
            raise ValidationError(f"{name}.{field_name}: {int(arr[pos])} (object id {int(boxes.object_id[pos])}) "
                                  f"is out of range (< {upper})")


def _outside(area: np.ndarray, ranges: tuple[tuple[float, float], ...]) -> np.ndarray:
    """(A, n) bool: ``area < lo or area > hi`` per range (pycocotools' test, NaN-safe the same way)."""
    return np.stack([(area < lo) | (area > hi) for lo, hi in ranges]) if len(area) else np.zeros((len(ranges), 0), bool)


def coco_metrics(gt: Boxes, pred: Boxes, *, num_images: int, num_classes: int,
                 image_ids: np.ndarray | None = None, params: CocoParams = CocoParams()) -> CocoMetrics:
    """COCO bbox metrics of ``pred`` against ``gt``, equal to pycocotools.

    Every image ``0..num_images-1`` and every class ``0..num_classes-1`` takes part
    (pycocotools evaluates all images and categories of the ground-truth file).

    Args:
        gt: ground truth (no scores); ``iscrowd`` and ``area`` are used.
        pred: predictions; their order is the results-file order (the tie-break).
        num_images: number of images (rows of the image table).
        num_classes: number of classes (rows of the category table).
        image_ids: (num_images,) unique image ids, e.g. ``ImageTable.image_id``.
            pycocotools visits images by ascending id, which decides ties between
            equal scores in different images. None: ids are ``0..num_images-1``.
        params: evaluation parameters.

    Returns:
        :class:`CocoMetrics`.

    Raises:
        ValidationError: inconsistent inputs (indices out of range, duplicate ids).
    """
    from vecexplore.eval.native import coco_kernels

    kern = coco_kernels()

    def match(g_ord, g_key, g_crowd, g_ignore, p_ord, p_key, p_outside, iou_thr):
        return kern.match_groups(g_key, p_key, gt.xywh[g_ord], g_crowd, g_ignore, gt.object_id[g_ord] != 0,
                                 pred.xywh[p_ord], p_outside, iou_thr)

    return evaluate_groups(gt, pred, num_images=num_images, num_classes=num_classes, image_ids=image_ids,
                           params=params, kern=kern, match=match, what="coco_metrics")


def evaluate_groups(gt: Boxes, pred: Boxes, *, num_images: int, num_classes: int, image_ids: np.ndarray | None,
                    params: CocoParams, kern, match, what: str, check=None) -> CocoMetrics:
    """pycocotools' evaluate + accumulate with the per-group matching given: the grouping,
    ordering, ``maxDets`` cut and accumulation that bbox (:func:`coco_metrics`) and segm
    (:func:`vecexplore.eval.segm.segm_metrics`) share.

    ``match(g_ord, g_key, g_crowd, g_ignore, p_ord, p_key, p_outside, iou_thr)`` returns the
    (n_dt, A, T) matching state of the grouped detections; ``kern`` is the kernel module
    (ordering and accumulation); ``check`` runs after the box checks.
    """
    if num_classes < 0 or num_images < 0:
        raise ValidationError(f"num_images={num_images}, num_classes={num_classes}: must be >= 0")
    _check_boxes("gt", gt, prediction=False, num_images=num_images, num_classes=num_classes)
    _check_boxes("pred", pred, prediction=True, num_images=num_images, num_classes=num_classes)
    if check is not None:
        check()
    rank = _rank_of_images(num_images, image_ids)
    iou_thr = np.asarray(params.iou_thresholds, np.float64)
    rec_thr = np.asarray(params.recall_thresholds, np.float64)
    max_dets = np.asarray(params.max_dets, np.int64)
    n_t, n_r, n_k, n_a, n_m = len(iou_thr), len(rec_thr), num_classes, len(params.area_ranges), len(max_dets)
    stride = max(num_images, 1)

    # Ground truth grouped by (class, image rank), input order inside a group (stable LSD passes).
    g_rank = rank[gt.image_idx]
    g_ord = kern.counting_order(np.arange(len(gt), dtype=np.int64), g_rank, stride)
    g_ord = kern.counting_order(g_ord, gt.class_idx.copy(), max(n_k, 1))  # writable: one numba signature
    g_key = gt.class_idx[g_ord] * stride + g_rank[g_ord]
    g_crowd = gt.iscrowd[g_ord]
    g_ignore = _outside(gt.area[g_ord], params.area_ranges) | g_crowd[None, :]
    num_gt = np.zeros((n_k, n_a), np.int64)
    for a in range(n_a):
        num_gt[:, a] = np.bincount(gt.class_idx[g_ord][~g_ignore[a]], minlength=n_k)[:n_k]

    # Predictions grouped the same way, score descending (stable) inside a group, cut to max_dets[-1].
    p_rank = rank[pred.image_idx]
    p_ord = kern.descending_score_order(np.arange(len(pred), dtype=np.int64), pred.score.copy())
    p_ord = kern.counting_order(p_ord, p_rank, stride)
    p_ord = kern.counting_order(p_ord, pred.class_idx.copy(), max(n_k, 1))
    p_key = pred.class_idx[p_ord] * stride + p_rank[p_ord]
    starts = np.flatnonzero(np.r_[True, p_key[1:] != p_key[:-1]]) if len(p_key) else np.zeros(0, np.int64)
    rank_in_image = np.arange(len(p_key)) - np.repeat(starts, np.diff(np.r_[starts, len(p_key)]))
    keep = rank_in_image < max_dets[-1]
    if not keep.all():
        p_ord, p_key, rank_in_image = p_ord[keep], p_key[keep], rank_in_image[keep]
    # area: w*h, or the mask area (pycocotools' loadRes)
    state = match(g_ord, g_key, g_crowd, g_ignore, p_ord, p_key, _outside(pred.area[p_ord], params.area_ranges),
                  iou_thr)

    # Accumulation order: class, then score descending; ties keep (image rank, rank in image).
    d_score = pred.score[p_ord]
    d_class = pred.class_idx[p_ord]
    acc = kern.descending_score_order(np.arange(len(p_ord), dtype=np.int64), d_score)
    acc = kern.counting_order(acc, d_class, max(n_k, 1))
    class_start = np.searchsorted(d_class[acc], np.arange(n_k + 1), side="left").astype(np.int64)
    precision = np.full((n_t, n_r, n_k, n_a, n_m), -1.0)
    recall = np.full((n_t, n_k, n_a, n_m), -1.0)
    scores = np.full((n_t, n_r, n_k, n_a, n_m), -1.0)
    kern.accumulate(class_start, acc, state, rank_in_image[acc], d_score[acc],
                    num_gt, rec_thr, max_dets, precision, recall, scores)
    log.debug("%s: %d images, %d classes, %d gt, %d predictions (%d within max_dets)",
              what, num_images, num_classes, len(gt), len(pred), len(p_ord))
    return _finish(params, precision, recall, scores, num_gt)


def coco_metrics_of(dataset: Dataset, *, params: CocoParams = CocoParams()) -> CocoMetrics:
    """:func:`coco_metrics` of a detection :class:`Dataset` (image ids from its image table)."""
    if dataset.task != "detection":
        raise ValidationError(f"coco_metrics_of: needs a detection dataset, got task {dataset.task!r}")
    return coco_metrics(dataset.gt, dataset.pred, num_images=dataset.num_images,
                        num_classes=len(dataset.categories), image_ids=dataset.images.image_id, params=params)


def _summarize(params: CocoParams, precision, recall, *, ap: bool, iou: float | None = None,
               area: str = "all", max_dets: int = 100) -> float:
    """pycocotools ``summarize._summarize``: mean over entries > -1, else -1."""
    iou_thr = np.asarray(params.iou_thresholds)
    aind = [i for i, lbl in enumerate(AREA_LABELS) if lbl == area]
    mind = [i for i, m in enumerate(params.max_dets) if m == max_dets]
    s = precision if ap else recall
    if iou is not None:
        s = s[np.where(iou == iou_thr)[0]]
    s = s[:, :, :, aind, mind] if ap else s[:, :, aind, mind]
    return -1.0 if len(s[s > -1]) == 0 else float(np.mean(s[s > -1]))


def _mean_defined(block: np.ndarray) -> np.ndarray:
    """Mean over axis 0 of the entries > -1 per column; NaN where none."""
    out = np.full(block.shape[1], np.nan)
    for k in range(block.shape[1]):
        col = block[:, k]
        col = col[col > -1]
        if col.size:
            out[k] = np.mean(col)
    return out


def _finish(params: CocoParams, precision, recall, scores, num_gt) -> CocoMetrics:
    m3 = params.max_dets[2]
    specs = [  # (ap, iou, area, max_dets) exactly as pycocotools' _summarizeDets
        (True, None, "all", 100), (True, 0.5, "all", m3), (True, 0.75, "all", m3),
        (True, None, "small", m3), (True, None, "medium", m3), (True, None, "large", m3),
        (False, None, "all", params.max_dets[0]), (False, None, "all", params.max_dets[1]),
        (False, None, "all", m3), (False, None, "small", m3), (False, None, "medium", m3),
        (False, None, "large", m3),
    ]
    stats = np.array([_summarize(params, precision, recall, ap=ap, iou=iou, area=area, max_dets=md)
                      for ap, iou, area, md in specs])
    n_t, n_r, n_k = precision.shape[:3]
    per_class_ap = _mean_defined(precision[:, :, :, 0, -1].reshape(n_t * n_r, n_k))
    t50 = np.flatnonzero(np.asarray(params.iou_thresholds) == 0.5)
    per_class_ap50 = (_mean_defined(precision[t50[0], :, :, 0, -1]) if t50.size else np.full(n_k, np.nan))
    for arr in (stats, precision, recall, scores, per_class_ap, per_class_ap50, num_gt):
        arr.flags.writeable = False
    return CocoMetrics(params=params, stats=stats, precision=precision, recall=recall, scores=scores,
                       per_class_ap=per_class_ap, per_class_ap50=per_class_ap50, num_gt=num_gt)
