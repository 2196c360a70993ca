"""Precision, recall and F1 at every confidence threshold, and the F1-optimal one.

Detection (at the matching's IoU threshold): because matching is greedy in
score order, the TP set at confidence ``c`` is the full-matching TP set cut at
``c`` (see :mod:`vecexplore.eval.matching`), so one cumulative sum over the
counted (non-ignored) predictions sorted by descending score gives, at every
distinct score ``c``: ``TP(c)``, ``FP(c)`` = counted predictions ≥ c minus
``TP(c)``, ``FN(c) = n_gt − TP(c)``. Per class the same, grouped by predicted
class (TP/FP) and GT class (``n_gt``). No loop over thresholds.

Classification: over the labelled images, a prediction is "accepted" when its
score ≥ c; ``TP`` = accepted and correct, ``FP`` = accepted and wrong,
``FN`` = labelled − TP. So precision = selective accuracy, recall = correct /
labelled, and coverage = accepted / labelled. Per class, grouped by predicted
class and label.

The F1-optimal confidence is the one with the largest F1; ties go to the
highest confidence (fewest predictions for the same F1). F1 values of equal
fractions are bit-equal (integer counts, one correctly rounded division), so
ties are exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vecexplore.eval.outcomes import PredOutcome

if TYPE_CHECKING:
    import pandas as pd

    from vecexplore.eval.matching import Matching


@dataclass(frozen=True, eq=False)
class Curve:
    """One P/R/F1-vs-confidence curve; all arrays (t,), ordered by descending confidence.

    Attributes:
        confidence: float64 distinct scores; the point ``i`` counts predictions
            with score ≥ ``confidence[i]``.
        tp, fp, fn: int64 counts at each point.
        n_pos: number of positives (non-crowd GT / labelled images).
    """

    confidence: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    n_pos: int

    @property
    def precision(self) -> np.ndarray:
        """TP / (TP + FP); always defined (every point has a prediction)."""
        return self.tp / np.maximum(self.tp + self.fp, 1)

    @property
    def recall(self) -> np.ndarray:
        """TP / n_pos; NaN when there are no positives."""
        return self.tp / self.n_pos if self.n_pos else np.full(len(self.tp), np.nan)

    @property
    def f1(self) -> np.ndarray:
        """2TP / (2TP + FP + FN)."""
        return 2 * self.tp / np.maximum(2 * self.tp + self.fp + self.fn, 1)

    @property
    def coverage(self) -> np.ndarray:
        """(TP + FP) / n_pos: share of positives with a prediction at each point (classification)."""
        return (self.tp + self.fp) / self.n_pos if self.n_pos else np.full(len(self.tp), np.nan)

    def optimal(self) -> tuple[float, float]:
        """``(confidence, f1)`` with the largest F1, ties → highest confidence; (NaN, NaN) if empty."""
        if len(self.confidence) == 0:
            return float("nan"), float("nan")
        i = int(np.argmax(self.f1))  # first maximum = highest confidence
        return float(self.confidence[i]), float(self.f1[i])

    def at(self, confidence: float) -> tuple[int, int, int]:
        """``(tp, fp, fn)`` at an arbitrary threshold (the last point with confidence ≥ it)."""
        i = int(np.searchsorted(-self.confidence, -float(confidence), side="right")) - 1
        if i < 0:
            return 0, 0, self.n_pos
        return int(self.tp[i]), int(self.fp[i]), int(self.fn[i])


@dataclass(frozen=True, eq=False)
class Sweep:
    """The overall curve and one curve per class (``per_class[k]`` for class_idx ``k``)."""

    overall: Curve
    per_class: tuple[Curve, ...]

    def optimal(self) -> tuple[float, float]:
        """The overall F1-optimal ``(confidence, f1)``."""
        return self.overall.optimal()

    def optimal_per_class(self) -> tuple[np.ndarray, np.ndarray]:
        """((K,) confidence, (K,) f1) F1-optimal per class; NaN for classes without predictions."""
        pairs = np.array([c.optimal() for c in self.per_class], dtype=np.float64).reshape(-1, 2)
        return pairs[:, 0], pairs[:, 1]

    def to_pandas(self) -> pd.DataFrame:
        """Long table: ``class_idx`` (-1 = overall), confidence, tp, fp, fn, precision, recall, f1."""
        import pandas as pd

        frames = []
        for k, c in [(-1, self.overall), *enumerate(self.per_class)]:
            frames.append(pd.DataFrame({
                "class_idx": np.full(len(c.confidence), k, np.int64), "confidence": c.confidence,
                "tp": c.tp, "fp": c.fp, "fn": c.fn,
                "precision": c.precision, "recall": c.recall, "f1": c.f1,
            }))
        return pd.concat(frames, ignore_index=True)


def sweep_scores(score: np.ndarray, is_tp: np.ndarray, pred_class: np.ndarray, pos_class: np.ndarray,
                 *, num_classes: int) -> Sweep:
    """Curves from counted predictions and positives.

    Args:
        score: (n,) float64 scores of the counted predictions.
        is_tp: (n,) bool, whether each is a true positive (at every threshold it passes).
        pred_class: (n,) int64 class of each prediction.
        pos_class: (p,) int64 class of each positive (GT object / labelled image).
        num_classes: K.
    """
    score = np.asarray(score, np.float64)
    is_tp = np.asarray(is_tp, bool)
    pred_class = np.asarray(pred_class, np.int64)
    n_pos = np.bincount(np.asarray(pos_class, np.int64), minlength=num_classes)
    overall = _curve(score, is_tp, np.zeros(len(score), np.int64), np.array([len(pos_class)]))[0]
    return Sweep(overall=overall, per_class=tuple(_curve(score, is_tp, pred_class, n_pos)))


def detection_sweep(matching: Matching) -> Sweep:
    """The detection sweep at ``matching.iou`` (counted = not ignored by a crowd region)."""
    counted = matching.pred_base != PredOutcome.IGNORED
    pred, gt = matching.pred, matching.gt
    return sweep_scores(pred.score[counted], matching.pred_base[counted] == PredOutcome.TP,
                        pred.class_idx[counted], gt.class_idx[~gt.iscrowd], num_classes=matching.num_classes)


def classification_sweep(*, label: np.ndarray, prediction: np.ndarray, score: np.ndarray,
                         num_classes: int) -> Sweep:
    """The selective-classification sweep over labelled images.

    Args:
        label: (N,) int64 class_idx, -1 = unlabelled (such images are left out).
        prediction: (N,) int64 class_idx, -1 = no prediction (never accepted).
        score: (N,) float64 score of the prediction (NaN without one).
        num_classes: K.
    """
    label = np.asarray(label, np.int64)
    prediction = np.asarray(prediction, np.int64)
    has = (label >= 0) & (prediction >= 0)
    return sweep_scores(np.asarray(score, np.float64)[has], label[has] == prediction[has], prediction[has],
                        label[label >= 0], num_classes=num_classes)


def _group_score_order(score: np.ndarray, group: np.ndarray, k: int) -> np.ndarray:
    """``np.lexsort((-score, group))``: by group, then score descending, ties in input order.

    With the C kernels and scores >= 0, two stable radix passes (O(n); lexsort's merge
    sort took 8 s of 10M predictions): the same order, since both sorts are stable."""
    from vecexplore.eval.native import backend

    if len(score) and backend() == "native" and np.isfinite(score).all() and score.min() >= 0:
        from vecexplore.eval.native import coco_kernels

        kern = coco_kernels()
        order = kern.descending_score_order(np.arange(len(score), dtype=np.int64), score)
        return order if k == 1 else kern.counting_order(order, group, k)
    return np.lexsort((-score, group))


def _curve(score, is_tp, group, n_pos) -> list[Curve]:
    """One curve per group; vectorised: sort by (group, -score), cumsum, keep each score's last row."""
    k = len(n_pos)
    order = _group_score_order(score, group, k)
    s, g, t = score[order], group[order], is_tp[order].astype(np.int64)
    tp_c = np.cumsum(t)
    fp_c = np.cumsum(1 - t)
    start = np.searchsorted(g, np.arange(k), side="left")
    stop = np.searchsorted(g, np.arange(k), side="right")
    base_tp = np.where(start > 0, tp_c[np.maximum(start - 1, 0)], 0) if len(s) else np.zeros(k, np.int64)
    base_fp = np.where(start > 0, fp_c[np.maximum(start - 1, 0)], 0) if len(s) else np.zeros(k, np.int64)
    last = np.r_[(s[1:] != s[:-1]) | (g[1:] != g[:-1]), True] if len(s) else np.zeros(0, bool)
    curves = []
    for j in range(k):
        sel = np.flatnonzero(last[start[j]:stop[j]]) + start[j]
        tp = tp_c[sel] - base_tp[j]
        fp = fp_c[sel] - base_fp[j]
        curves.append(Curve(confidence=s[sel], tp=tp, fp=fp, fn=int(n_pos[j]) - tp, n_pos=int(n_pos[j])))
    return curves
