"""Match detections to ground truth once per IoU threshold.

The object outcomes of DESIGN.md ("Object outcomes at an operating point") are
computed here for *all* predictions at one IoU threshold ``t``; the confidence
threshold is applied afterwards by :mod:`vecexplore.eval.outcomes` without
re-matching. Per image, predictions are processed in score order (stable sort
by descending score, ties by input order — pycocotools' rule):

1. **TP**: per class, greedily, a prediction takes the unmatched non-crowd GT
   of its class with the highest IoU ≥ t (ties → the lower GT index, i.e.
   input order).
2. **FP-duplicate**: its best same-class non-crowd IoU ≥ t is to an
   already-matched GT (``match`` = that best GT).
3. **ignored**: otherwise, IoU ≥ t (crowd IoU: the union is the prediction's
   own area, as pycocotools) with a crowd GT of its class. Step 2 comes first,
   so a second detection of a matched object inside a crowd region is a
   duplicate here, where pycocotools would ignore it.
4. **FP-class**: a class-agnostic pass, in score order, over what is left: the
   prediction consumes the unmatched, unconsumed non-crowd GT of another class
   with the highest IoU ≥ t (ties → lower GT index).
5. **FP-localization** if its best same-class non-crowd IoU is in [0.1, t),
   else **FP-both** if its best other-class non-crowd IoU is in [0.1, t), else
   **FP-background** (TIDE's Loc / Both / Bkg). Crowd GT play no part here.
6. GT that are neither matched nor consumed are **FN** (misses).

Clarifications agreed by the team:

(a) Threshold semantics. Predictions below the confidence threshold ``c`` do
    not exist. Because steps 1–2 are greedy in score order, the predictions ≥ c
    are a prefix of the processing order, so the TP / duplicate decisions at
    ``c`` are exactly those of the full matching restricted to scores ≥ c: a GT
    is matched at ``c`` iff its full-matching TP has score ≥ c. Steps 3 and 5
    are geometric, hence threshold-invariant. Step 4 does depend on ``c``
    (which GT are still unmatched, which were consumed by higher-scored
    FP-class predictions): the candidate (prediction, other-class GT, IoU ≥ t)
    pairs are stored once here and :meth:`Matching.fp_class_pairs` re-runs
    only that small greedy pass for a given ``c``.
(b) A prediction left after steps 1–3 whose IoU ≥ t is only with other-class
    GT that are all matched or consumed is an **FP-duplicate** (it fires on an
    object that is already accounted for), not FP-background. Its ``match`` is
    the best such GT; the confusion matrix puts it in the background row like
    every duplicate. In :attr:`Matching.pred_base` these predictions carry the
    duplicate code; at a given ``c`` the ones that win a GT in step 4 become
    FP-class.

Matching needs IoU only between objects of the same image; it is computed pair
by pair with the same arithmetic as :func:`vecexplore.eval.iou.box_iou`
(bit-identical): for box IoU by one loop in the C extension, else (segm, or the
numba backend: the reference) in bounded NumPy chunks. The two greedy passes are
small kernels: the C extension's (``vecexplore._native``), or numba's as the
fallback and reference (see :mod:`vecexplore.eval.native`).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np

from vecexplore.errors import ConfigError, ValidationError
from vecexplore.eval.iou import pair_iou
from vecexplore.eval.native import stable_order
from vecexplore.eval.operating_point import check_iou
from vecexplore.eval.outcomes import PredOutcome
from vecexplore.types import Boxes

log = logging.getLogger(__name__)

#: TIDE's background threshold: below this IoU an object is not "near" another.
ERROR_IOU = 0.1
_PAIR_CHUNK = 2_000_000


@dataclass(frozen=True, eq=False)
class Matching:
    """All predictions matched to ground truth at one IoU threshold, for every confidence.

    Row indices below are positions in ``gt`` / ``pred`` (input order), not ids.

    Attributes:
        gt, pred: the objects matched (``pred.score`` set).
        num_images, num_classes: sizes of the image table and the categories.
        iou: the IoU threshold ``t``.
        order: (n,) int64 prediction rows in processing order (image, score
            descending, input order).
        pred_base: (n,) int8 :class:`PredOutcome` at confidence 0 except that
            step-4 candidates carry ``FP_DUPLICATE`` (clarification (b)); never
            ``FP_CLASS`` or ``BELOW_THRESHOLD``.
        pred_match: (n,) int64 GT row for TP / duplicate predictions, -1 otherwise.
        pred_match_iou: (n,) float64 IoU with ``pred_match``, NaN if none.
        gt_tp_pred: (m,) int64 prediction row that matches each GT as TP, -1 if none.
        gt_tp_score: (m,) float64 that prediction's score, -inf if none.
        pair_pred, pair_gt: (q,) int64 step-4 candidates (prediction left after
            steps 1–3, non-crowd GT of another class, IoU ≥ t), in processing
            order, then IoU descending, then GT row.
        pair_iou: (q,) float64 their IoU.
    """

    gt: Boxes
    pred: Boxes
    num_images: int
    num_classes: int
    iou: float
    order: np.ndarray
    pred_base: np.ndarray
    pred_match: np.ndarray
    pred_match_iou: np.ndarray
    gt_tp_pred: np.ndarray
    gt_tp_score: np.ndarray
    pair_pred: np.ndarray
    pair_gt: np.ndarray
    pair_iou: np.ndarray

    def __post_init__(self):
        # Per-pair copies keep the step-4 kernel's reads sequential; pair GT are
        # renumbered densely so its "consumed" buffer is only as large as needed.
        uniq, dense = np.unique(self.pair_gt, return_inverse=True)
        object.__setattr__(self, "_pair_score", self.pred.score[self.pair_pred])
        object.__setattr__(self, "_pair_gt_tp_score", self.gt_tp_score[self.pair_gt])
        object.__setattr__(self, "_pair_gt_dense", dense.astype(np.int64).reshape(-1))
        object.__setattr__(self, "_num_pair_gt", len(uniq))

    @functools.cached_property
    def score_prefix(self) -> ScorePrefix:
        """The predictions in descending score order, for counting at any confidence."""
        return ScorePrefix(self)

    def fp_class_pairs(self, confidence: float) -> np.ndarray:
        """Step 4 at confidence ``c``: the candidate pairs that become FP-class.

        Returns:
            (f,) int64 indices into ``pair_pred`` / ``pair_gt`` / ``pair_iou``,
            increasing; each prediction and each GT occurs at most once.
        """
        if len(self.pair_pred) == 0:
            return np.zeros(0, np.int64)
        _, step4 = _kernels()
        assigned = step4(self.pair_pred, self._pair_gt_dense, self._pair_score,
                         self._pair_gt_tp_score, float(confidence), self._num_pair_gt)
        return np.flatnonzero(assigned)


class ScorePrefix:
    """Predictions sorted by descending score (stable), with per-group keys.

    The predictions with score ≥ c are the first :meth:`count_at` of this
    order, so per-group outcome counts at ``c`` are one bincount over a prefix
    of ``image_key`` / ``class_key`` (``group * 8 + pred_base``), no mask.
    """

    def __init__(self, matching: Matching):
        pred, gt = matching.pred, matching.gt
        order = stable_order((pred.score, None))  # = np.argsort(-score, kind="stable")
        self._neg_score = -pred.score[order]
        base = matching.pred_base[order].astype(np.int64)
        self.image_key = pred.image_idx[order] * len(PredOutcome) + base
        self.class_key = pred.class_idx[order] * len(PredOutcome) + base
        sizes = {"image": matching.num_images, "class": matching.num_classes}
        self._pred_total = {
            "image": np.bincount(pred.image_idx, minlength=sizes["image"]),
            "class": np.bincount(pred.class_idx, minlength=sizes["class"]),
        }
        self._gt_total = {
            by: (np.bincount(col[~gt.iscrowd], minlength=sizes[by]), np.bincount(col[gt.iscrowd], minlength=sizes[by]))
            for by, col in (("image", gt.image_idx), ("class", gt.class_idx))
        }

    def count_at(self, confidence: float) -> int:
        """Number of predictions with score ≥ ``confidence``."""
        return int(np.searchsorted(self._neg_score, -float(confidence), side="right"))

    def total(self, by: str) -> np.ndarray:
        """(G,) int64 predictions per image / class."""
        return self._pred_total[by]

    def gt_total(self, by: str) -> tuple[np.ndarray, np.ndarray]:
        """((G,) non-crowd, (G,) crowd) GT per image / class."""
        return self._gt_total[by]


def match_detections(gt: Boxes, pred: Boxes, *, iou: float, num_images: int,
                     num_classes: int, iou_type: str = "bbox") -> Matching:
    """Match every prediction at IoU threshold ``iou`` (see the module docstring).

    Args:
        gt: ground truth (``iscrowd`` honoured).
        pred: predictions with scores.
        iou: IoU threshold in (0, 1]; a pair matches when IoU ≥ ``iou``.
        num_images: rows in the image table.
        num_classes: number of categories.
        iou_type: ``"bbox"`` (box IoU) or ``"segm"`` (mask IoU of ``Boxes.rle``,
            pycocotools' ``maskUtils.iou``; see :mod:`vecexplore.eval.segm`).
    """
    iou = check_iou(iou)
    if iou_type not in ("bbox", "segm"):
        raise ConfigError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    if iou_type == "segm" and (gt.rle is None or pred.rle is None):
        raise ConfigError("iou_type 'segm' needs masks on both the ground truth and the predictions")
    if not pred.is_prediction:
        raise ValidationError("match_detections: predictions must carry scores")
    n, m = len(pred), len(gt)
    order = stable_order((pred.score, None), (pred.image_idx, num_images))  # by image, then score descending
    same, crowd_hit, other, near_same, near_other = _candidate_pairs(gt, pred, order, iou, num_images, iou_type)

    # Steps 1–2: same-class non-crowd pairs with IoU ≥ t, best IoU first.
    s_pos, s_gt, s_iou = same
    srt = stable_order((s_gt, m), (s_iou, None), (s_pos, n))  # = np.lexsort((s_gt, -s_iou, s_pos))
    s_pos, s_gt, s_iou = s_pos[srt], s_gt[srt], s_iou[srt]
    step1, _ = _kernels()
    status = step1(s_pos, s_gt, m) if len(s_pos) else np.zeros(0, np.int8)

    tp_rows, dup_rows = order[s_pos[status == 1]], order[s_pos[status == 2]]
    taken = crowd_hit.copy()
    taken[tp_rows] = taken[dup_rows] = True

    base = np.full(n, PredOutcome.FP_BACKGROUND, np.int8)
    base[near_other] = PredOutcome.FP_BOTH
    base[near_same] = PredOutcome.FP_LOCALIZATION
    match = np.full(n, -1, np.int64)
    match_iou = np.full(n, np.nan)

    # Step 4 candidates: other-class pairs of the predictions left after steps 1–3.
    # Clarification (b): they default to duplicate (match = best such GT); at each
    # confidence, step 4 turns the ones that win a GT into FP-class.
    o_pos, o_gt, o_iou = other
    srt = stable_order((o_gt, m), (o_iou, None), (o_pos, n))
    o_pred, o_gt, o_iou = order[o_pos[srt]], o_gt[srt], o_iou[srt]
    keep = ~taken[o_pred]
    o_pred, o_gt, o_iou = o_pred[keep], o_gt[keep], o_iou[keep]
    first = np.r_[True, o_pred[1:] != o_pred[:-1]] if len(o_pred) else np.zeros(0, bool)
    base[o_pred[first]] = PredOutcome.FP_DUPLICATE
    match[o_pred[first]] = o_gt[first]
    match_iou[o_pred[first]] = o_iou[first]

    base[crowd_hit] = PredOutcome.IGNORED
    for code, sel in ((PredOutcome.FP_DUPLICATE, status == 2), (PredOutcome.TP, status == 1)):
        rows = order[s_pos[sel]]
        base[rows] = code
        match[rows] = s_gt[sel]
        match_iou[rows] = s_iou[sel]

    gt_tp_pred = np.full(m, -1, np.int64)
    gt_tp_pred[match[tp_rows]] = tp_rows
    gt_tp_score = np.full(m, -np.inf)
    gt_tp_score[match[tp_rows]] = pred.score[tp_rows]
    log.debug("matched %d predictions to %d GT at IoU %.2f: %d TP, %d step-4 pairs",
              n, m, iou, len(tp_rows), len(o_pred))
    return Matching(gt=gt, pred=pred, num_images=int(num_images), num_classes=int(num_classes),
                    iou=iou, order=order, pred_base=base, pred_match=match, pred_match_iou=match_iou,
                    gt_tp_pred=gt_tp_pred, gt_tp_score=gt_tp_score, pair_pred=o_pred,
                    pair_gt=o_gt, pair_iou=o_iou)


def _candidate_pairs(gt: Boxes, pred: Boxes, order: np.ndarray, t: float, num_images: int,
                     iou_type: str = "bbox"):
    """Every (prediction, GT) pair of the same image with an IoU that matters.

    Returns the same-class non-crowd pairs with IoU ≥ t as (processing position,
    GT row, IoU); a per-prediction flag "IoU ≥ t with a same-class crowd GT";
    the other-class non-crowd pairs with IoU ≥ t (position, GT row, IoU); and
    per-prediction flags "some same-class / other-class non-crowd IoU ≥ 0.1".
    """
    n = len(pred)
    gt_order = np.argsort(gt.image_idx, kind="stable")
    gcount = np.bincount(gt.image_idx, minlength=num_images)
    gstart = np.cumsum(gcount) - gcount
    lo = min(t, ERROR_IOU)
    native = _pair_kernel() if iou_type == "bbox" else None
    if native is not None:  # the same loop in C, unchunked (same pairs, same order, same bits)
        return native(order, pred.image_idx, pred.class_idx, pred.xywh, gt_order, gstart, gcount, gt.class_idx,
                      gt.xywh, gt.iscrowd, t, lo, ERROR_IOU)
    per_pos = gcount[pred.image_idx[order]] if n else np.zeros(0, np.int64)
    cum = np.cumsum(per_pos)
    crowd_hit = np.zeros(n, bool)
    near_same = np.zeros(n, bool)
    near_other = np.zeros(n, bool)
    same, other = [], []
    a = 0
    while a < n:
        done = cum[a - 1] if a else 0
        b = max(int(np.searchsorted(cum, done + _PAIR_CHUNK, side="right")), a + 1)
        cnt = per_pos[a:b]
        total = int(cnt.sum())
        if total:
            pos = np.repeat(np.arange(a, b), cnt)
            offs = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            p = order[pos]
            g = gt_order[gstart[pred.image_idx[p]] + offs]
            crowd = gt.iscrowd[g]
            if iou_type == "segm":  # segm hook: mask IoU, one pycocotools call per image
                from vecexplore.eval.segm import pair_mask_iou

                v = pair_mask_iou(pred.rle, gt.rle, p, g, crowd, pred.image_idx[p])
            else:
                v = pair_iou(pred.xywh[p], gt.xywh[g], crowd)
            keep = v >= lo
            pos, p, g, v, crowd = pos[keep], p[keep], g[keep], v[keep], crowd[keep]
            is_same = pred.class_idx[p] == gt.class_idx[g]
            hit = v >= t
            near = v >= ERROR_IOU
            sel = is_same & ~crowd & hit
            same.append((pos[sel], g[sel], v[sel]))
            crowd_hit[p[is_same & crowd & hit]] = True
            sel = ~is_same & ~crowd & hit
            other.append((pos[sel], g[sel], v[sel]))
            near_same[p[is_same & ~crowd & near]] = True
            near_other[p[~is_same & ~crowd & near]] = True
        a = b
    return _concat(same), crowd_hit, _concat(other), near_same, near_other


def _concat(parts):
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return tuple(np.concatenate(col) for col in zip(*parts, strict=True))


def _step1(pair_pos, pair_gt, num_gt):  # pragma: no cover - compiled by numba
    """Steps 1–2 over same-class pairs grouped by prediction, best IoU first.

    Returns (q,) int8: 1 on the pair a prediction takes as TP, 2 on the first
    (best) pair of a prediction whose GT are all taken (duplicate), 0 elsewhere.
    """
    q = pair_pos.shape[0]
    matched = np.zeros(num_gt, np.bool_)
    status = np.zeros(q, np.int8)
    i = 0
    while i < q:
        p = pair_pos[i]
        j = i
        found = -1
        while j < q and pair_pos[j] == p:
            if found < 0 and not matched[pair_gt[j]]:
                found = j
            j += 1
        if found >= 0:
            matched[pair_gt[found]] = True
            status[found] = 1
        else:
            status[i] = 2
        i = j
    return status


def _step4(pair_pred, pair_gt, pair_score, pair_gt_tp_score, confidence, num_gt):  # pragma: no cover
    """Step 4 at one confidence: greedy over candidate pairs in processing order.

    A pair is skipped when its prediction is below ``confidence`` or already
    assigned, or its GT is matched at ``confidence`` (TP score ≥ it) or consumed.
    """
    q = pair_pred.shape[0]
    consumed = np.zeros(num_gt, np.bool_)
    assigned = np.zeros(q, np.bool_)
    done = -1
    for i in range(q):
        p = pair_pred[i]
        if p == done or pair_score[i] < confidence:
            continue
        g = pair_gt[i]
        if consumed[g] or pair_gt_tp_score[i] >= confidence:
            continue
        consumed[g] = True
        assigned[i] = True
        done = p
    return assigned


def _pair_kernel():
    """The C candidate-pair loop, or None (numba backend: the Python loop above runs)."""
    from vecexplore.eval.native import pair_kernel

    return pair_kernel()


def _kernels():
    """``(step1, step4)``: the C extension's, or numba's (see :mod:`vecexplore.eval.native`)."""
    from vecexplore.eval.native import matching_kernels

    return matching_kernels()


@functools.cache
def _numba_kernels():
    import numba

    return numba.njit(cache=True, nogil=True)(_step1), numba.njit(cache=True, nogil=True)(_step4)
