"""Classification metrics equal to scikit-learn's, and the per-image table.

:func:`classification_metrics` reproduces, on the arrays it is given:

* ``accuracy_score``;
* ``precision_recall_fscore_support(..., zero_division=0)`` per class for every
  class (``labels = range(K)``; classes absent from both arrays get zeros), and
  its ``average="macro"`` / ``"weighted"`` with scikit-learn's default
  ``labels=None``: macro is the plain mean over the classes that occur in the
  labels *or* the predictions (a class nobody predicted or labelled does not
  drag the average to 0); weighted is weighted by support;
* ``confusion_matrix(..., labels=range(K))``;
* ``top_k_accuracy_score(..., labels=range(K))`` for ``k < K`` when per-class
  scores exist and K ≥ 3 (ties: among equal scores the higher class index
  ranks first, as scikit-learn's reversed mergesort);
* ``roc_auc_score`` for two classes with per-class scores (class 1 positive,
  its score column); NaN when only one class is labelled.

Operating point. A prediction whose score is below the confidence threshold
counts as "no prediction" (abstain): not correct. The metrics above are then
taken over the labelled images with an accepted prediction. The default
threshold is 0, so every prediction is accepted and the numbers equal what a
user gets from scikit-learn on their own files; the sweep's F1-optimal
threshold is reported, but not applied by default, because a classifier is
usually deployed without a reject option and accuracy at threshold 0 is the
number people compare.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from vecexplore.errors import ValidationError
from vecexplore.rates import ratio

if TYPE_CHECKING:
    import pandas as pd

    from vecexplore.types import Labels


@dataclass(frozen=True, eq=False)
class ClassificationMetrics:
    """scikit-learn-equal metrics over ``n`` (label, prediction) pairs.

    Attributes:
        n: number of pairs.
        accuracy: float (NaN when n == 0).
        precision, recall, f1: (K,) float64 per class (0 where undefined).
        support: (K,) int64 labels per class.
        macro, weighted: ``{"precision", "recall", "f1"}`` averages.
        confusion: (K, K) int64, rows = label, columns = prediction.
        top_k: ``{k: accuracy}`` for ``k < K`` (only with per-class scores and K ≥ 3).
        roc_auc: two classes with per-class scores, else None; NaN if one class only.
    """

    n: int
    accuracy: float
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    macro: dict[str, float]
    weighted: dict[str, float]
    confusion: np.ndarray
    top_k: dict[int, float] = field(default_factory=dict)
    roc_auc: float | None = None


def classification_metrics(*, y_true: np.ndarray, y_pred: np.ndarray, num_classes: int,
                           y_score: np.ndarray | None = None, top_k: tuple[int, ...] = (1, 3, 5)
                           ) -> ClassificationMetrics:
    """Metrics of predictions ``y_pred`` against labels ``y_true``.

    Args:
        y_true, y_pred: (n,) int64 class_idx in [0, K).
        num_classes: K.
        y_score: optional (n, K) float64 per-class scores (columns in class_idx order).
        top_k: the k of top-k accuracy (those ≥ K are skipped).
    """
    y_true = np.asarray(y_true, np.int64)
    y_pred = np.asarray(y_pred, np.int64)
    k = int(num_classes)
    n = len(y_true)
    if len(y_pred) != n:
        raise ValidationError(f"classification metrics: {n} labels but {len(y_pred)} predictions")
    for name, arr in (("labels", y_true), ("predictions", y_pred)):
        if n and (arr.min() < 0 or arr.max() >= k):
            raise ValidationError(f"classification metrics: {name} must be in [0, {k})")
    cm = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k).astype(np.int64)
    tp = np.diag(cm).astype(np.float64)
    pred_sum = cm.sum(axis=0).astype(np.float64)
    true_sum = cm.sum(axis=1).astype(np.float64)
    precision = _divide(tp, pred_sum)
    recall = _divide(tp, true_sum)
    f1 = _divide(2 * tp, true_sum + pred_sum)  # scikit-learn's (1+β²)tp / (β²·true + pred)
    present = (true_sum > 0) | (pred_sum > 0)
    macro = {name: float(v[present].mean()) if present.any() else 0.0
             for name, v in (("precision", precision), ("recall", recall), ("f1", f1))}
    weighted = {name: float(np.average(v, weights=true_sum)) if true_sum.sum() else 0.0
                for name, v in (("precision", precision), ("recall", recall), ("f1", f1))}
    top, auc = {}, None
    if y_score is not None:
        y_score = np.asarray(y_score, np.float64)
        if y_score.shape != (n, k):
            raise ValidationError(f"classification metrics: scores must have shape ({n}, {k}), got {y_score.shape}")
        if k >= 3 and n:
            ranked = np.argsort(y_score, axis=1, kind="mergesort")[:, ::-1]
            top = {int(j): float((ranked[:, :j] == y_true[:, None]).any(axis=1).mean()) for j in top_k if j < k}
        if k == 2:
            auc = binary_roc_auc(y_true == 1, y_score[:, 1])
    return ClassificationMetrics(
        n=n, accuracy=float((y_true == y_pred).mean()) if n else float("nan"),
        precision=precision, recall=recall, f1=f1, support=true_sum.astype(np.int64),
        macro=macro, weighted=weighted, confusion=cm, top_k=top, roc_auc=auc)


def binary_roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U with tied ranks averaged); NaN if one class only."""
    positive = np.asarray(positive, bool)
    score = np.asarray(score, np.float64)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    avg_rank = (starts + ends + 1) / 2.0  # 1-based mean rank of each tie group
    ranks = np.empty(len(s))
    ranks[order] = np.repeat(avg_rank, ends - starts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` of a binary score, as scikit-learn's
    ``roc_curve(..., drop_intermediate=False)``: one point per distinct score, highest first,
    after a first point (0, 0) at threshold +inf. Empty arrays when one class is missing."""
    positive = np.asarray(positive, bool)
    score = np.asarray(score, np.float64)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    order = np.argsort(-score, kind="mergesort")
    s, y = score[order], positive[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]  # the last index of each distinct score
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    return (np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos], np.r_[np.inf, s[last]])


def reliability(confidence: np.ndarray, correct: np.ndarray, *, n_bins: int = 10) -> dict[str, np.ndarray | float]:
    """A reliability diagram of top-label confidences and the expected calibration error.

    Bins are ``n_bins`` equal-width intervals of [0, 1], assigned as scikit-learn's
    ``calibration_curve(strategy="uniform")`` does (so its ``prob_true`` / ``prob_pred`` are
    this ``accuracy`` / ``confidence`` on the non-empty bins).

    Returns:
        ``edges`` (n_bins + 1,), and per bin ``count`` int64, ``accuracy`` and ``confidence``
        (mean; NaN in an empty bin); ``ece`` = Σ count / n · |accuracy − confidence| and ``mce``
        (the largest gap) over the non-empty bins (NaN without data).
    """
    conf = np.asarray(confidence, np.float64)
    ok = np.asarray(correct, bool)
    if conf.shape != ok.shape:
        raise ValidationError(f"reliability: confidence {conf.shape} and correct {ok.shape} differ")
    if n_bins < 1:
        raise ValidationError(f"reliability: n_bins must be >= 1, got {n_bins}")
    edges = np.linspace(0.0, 1.0 + 1e-8, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], conf)
    count = np.bincount(ids, minlength=n_bins)
    total_conf = np.bincount(ids, weights=conf, minlength=n_bins)
    total_ok = np.bincount(ids, weights=ok.astype(np.float64), minlength=n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.where(count > 0, total_ok / np.maximum(count, 1), np.nan)
        mean_conf = np.where(count > 0, total_conf / np.maximum(count, 1), np.nan)
    gap = np.abs(acc - mean_conf)
    n = int(count.sum())
    nonempty = count > 0
    ece = float((count[nonempty] * gap[nonempty]).sum() / n) if n else float("nan")
    mce = float(gap[nonempty].max()) if n else float("nan")
    return {"edges": np.linspace(0.0, 1.0, n_bins + 1), "count": count.astype(np.int64), "accuracy": acc,
            "confidence": mean_conf, "ece": ece, "mce": mce}


def image_arrays(*, num_images: int, gt: Labels, pred: Labels) -> dict[str, np.ndarray]:
    """Dense per-image arrays: ``label``, ``prediction`` (before any threshold), ``score``, ``margin``.

    Returns (N,) arrays: label / prediction int64 (-1 = none), score / margin
    float64 (NaN = none; margin = top-1 minus top-2 per-class score, NaN
    without per-class scores or with a single class).
    """
    label = np.full(num_images, -1, np.int64)
    label[gt.image_idx] = gt.class_idx
    prediction = np.full(num_images, -1, np.int64)
    prediction[pred.image_idx] = pred.class_idx
    score = np.full(num_images, np.nan)
    score[pred.image_idx] = pred.score
    margin = np.full(num_images, np.nan)
    if pred.scores is not None and pred.scores.shape[1] >= 2:
        top2 = np.sort(pred.scores, axis=1)[:, -2:]
        margin[pred.image_idx] = top2[:, 1] - top2[:, 0]
    return {"label": label, "prediction": prediction, "score": score, "margin": margin}


def accepted_prediction(prediction: np.ndarray, score: np.ndarray, confidence: float) -> np.ndarray:
    """(N,) int64 prediction at a threshold: -1 where none or score < ``confidence``."""
    with np.errstate(invalid="ignore"):
        return np.where((prediction >= 0) & (score >= confidence), prediction, -1)


def image_table(arrays: dict[str, np.ndarray], *, confidence: float) -> pd.DataFrame:
    """The classification per-image table (shared contract) at ``confidence``.

    Columns: ``image_idx, label, prediction`` (int64, -1 = none / below the
    threshold), ``score, margin`` (float64, NaN = none), ``correct`` (bool),
    ``error_rate`` (float64, 1 - correct).
    """
    import pandas as pd

    label = arrays["label"]
    prediction = accepted_prediction(arrays["prediction"], arrays["score"], confidence)
    correct = (label >= 0) & (prediction == label)
    return pd.DataFrame({
        "image_idx": np.arange(len(label), dtype=np.int64), "label": label, "prediction": prediction,
        "score": arrays["score"], "margin": arrays["margin"], "correct": correct,
        "error_rate": 1.0 - correct.astype(np.float64),
    })


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return ratio(num, den, empty=0.0)  # scikit-learn's zero_division=0
