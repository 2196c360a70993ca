"""Object and per-image outcomes of a detector at one operating point.

An operating point is an IoU threshold (fixed by the :class:`Matching`) and a
confidence threshold ``c``. :func:`resolve_outcomes` derives every object's
outcome at ``c`` from a matching computed once per IoU threshold: TP,
duplicate, ignored and Loc/Both/Bkg come from precomputed arrays, and only the
small FP-class pass (step 4) is re-run (see :mod:`vecexplore.eval.matching` for
the definitions and the two team clarifications). Per-image counts are
bincounts over those arrays, so moving a confidence slider costs a few
vectorised passes, never a re-match.

Counting rules (DESIGN.md): crowd GT never count in ``n_gt`` or FN; ignored
predictions (they hit a crowd region) and predictions below ``c`` are not
counted in ``n_pred``, FP or the confusion matrix; a GT consumed by an FP-class
prediction ("confused") still counts in ``fn`` (recall) but not in
``fn_missed``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from vecexplore.eval.matching import Matching


class PredOutcome(IntEnum):
    """Outcome of one prediction; ``.label`` is the objects-table string."""

    TP = 0
    FP_DUPLICATE = 1
    FP_CLASS = 2
    FP_LOCALIZATION = 3
    FP_BOTH = 4
    FP_BACKGROUND = 5
    IGNORED = 6
    BELOW_THRESHOLD = 7

    @property
    def label(self) -> str:
        return self.name.lower()


class GtOutcome(IntEnum):
    """Outcome of one ground-truth object; ``.label`` is the objects-table string."""

    TP = 0
    FN = 1
    CONFUSED = 2
    CROWD = 3

    @property
    def label(self) -> str:
        return self.name.lower()


#: The five false-positive types, in report order.
FP_TYPES: tuple[PredOutcome, ...] = (
    PredOutcome.FP_DUPLICATE, PredOutcome.FP_CLASS, PredOutcome.FP_LOCALIZATION,
    PredOutcome.FP_BOTH, PredOutcome.FP_BACKGROUND,
)
#: Codes below this are counted predictions (TP or an FP type).
COUNTED = int(PredOutcome.IGNORED)
_NP, _NG = len(PredOutcome), len(GtOutcome)


@dataclass(frozen=True, eq=False)
class ObjectOutcomes:
    """Every object's outcome at one operating point.

    Attributes:
        matching: the IoU-threshold matching this was derived from.
        confidence: the confidence threshold ``c``; predictions with score < c
            are ``BELOW_THRESHOLD``.
        pred_code: (n,) int8 :class:`PredOutcome` per prediction (input order).
        gt_code: (m,) int8 :class:`GtOutcome` per GT (input order).
        fp_class: (f,) int64 indices of the matching's step-4 pairs that are
            FP-class at ``c`` (``matching.pair_pred[fp_class]`` consumed
            ``matching.pair_gt[fp_class]``).
    """

    matching: Matching
    confidence: float
    pred_code: np.ndarray
    gt_code: np.ndarray
    fp_class: np.ndarray

    @property
    def num_images(self) -> int:
        return self.matching.num_images

    @property
    def num_classes(self) -> int:
        return self.matching.num_classes

    @functools.cached_property
    def pred_match(self) -> tuple[np.ndarray, np.ndarray]:
        """((n,) int64 GT row, (n,) float64 IoU) for TP / duplicate / FP-class, else (-1, NaN)."""
        mt = self.matching
        keep = (self.pred_code == PredOutcome.TP) | (self.pred_code == PredOutcome.FP_DUPLICATE)
        row = np.where(keep, mt.pred_match, -1)
        iou = np.where(keep, mt.pred_match_iou, np.nan)
        p = mt.pair_pred[self.fp_class]
        row[p] = mt.pair_gt[self.fp_class]
        iou[p] = mt.pair_iou[self.fp_class]
        return row, iou

    @functools.cached_property
    def gt_match(self) -> tuple[np.ndarray, np.ndarray]:
        """((m,) int64 prediction row, (m,) float64 IoU) for matched / confused GT, else (-1, NaN)."""
        mt = self.matching
        tp = self.gt_code == GtOutcome.TP
        row = np.where(tp, mt.gt_tp_pred, -1)
        iou = np.full(len(row), np.nan)
        iou[tp] = mt.pred_match_iou[mt.gt_tp_pred[tp]]
        g = mt.pair_gt[self.fp_class]
        row[g] = mt.pair_pred[self.fp_class]
        iou[g] = mt.pair_iou[self.fp_class]
        return row, iou

    def pred_counts(self, *, by: str = "image", images: np.ndarray | None = None) -> np.ndarray:
        """Prediction counts per ``by`` ("image" → (N, 8), "class" → (K, 8)), columns = PredOutcome.

        ``images``: optional (N,) bool mask; only predictions on those images count.
        """
        pred = self.matching.pred
        return _tally(pred.image_idx if by == "image" else pred.class_idx, self.pred_code, _NP,
                      self.num_images if by == "image" else self.num_classes,
                      None if images is None else images[pred.image_idx])

    def gt_counts(self, *, by: str = "image", images: np.ndarray | None = None) -> np.ndarray:
        """GT counts per ``by`` ("image" → (N, 4), "class" → (K, 4)), columns = GtOutcome."""
        gt = self.matching.gt
        return _tally(gt.image_idx if by == "image" else gt.class_idx, self.gt_code, _NG,
                      self.num_images if by == "image" else self.num_classes,
                      None if images is None else images[gt.image_idx])


def resolve_outcomes(matching: Matching, *, confidence: float) -> ObjectOutcomes:
    """Every object's outcome at confidence ``c`` (predictions with score < c do not exist).

    Cost: O(n + m) vectorised plus the step-4 kernel over the candidate pairs.
    """
    c = float(confidence)
    mt = matching
    active = mt.pred.score >= c
    pred_code = np.where(active, mt.pred_base, np.int8(PredOutcome.BELOW_THRESHOLD)).astype(np.int8)
    fp_class = mt.fp_class_pairs(c)
    pred_code[mt.pair_pred[fp_class]] = PredOutcome.FP_CLASS
    gt_code = np.where(mt.gt_tp_score >= c, np.int8(GtOutcome.TP), np.int8(GtOutcome.FN)).astype(np.int8)
    gt_code[mt.pair_gt[fp_class]] = GtOutcome.CONFUSED
    gt_code[mt.gt.iscrowd] = GtOutcome.CROWD
    return ObjectOutcomes(matching=mt, confidence=c, pred_code=pred_code, gt_code=gt_code,
                          fp_class=fp_class)


def count_columns(pred_counts: np.ndarray, gt_counts: np.ndarray) -> dict[str, np.ndarray]:
    """The integer columns of the per-image table from (rows, 8) and (rows, 4) tallies.

    Works for any grouping (images, classes, totals as a single row).
    """
    P, G = PredOutcome, GtOutcome
    tp = pred_counts[:, P.TP]
    fp = pred_counts[:, P.FP_DUPLICATE:COUNTED].sum(axis=1)
    n_gt = gt_counts[:, G.TP] + gt_counts[:, G.FN] + gt_counts[:, G.CONFUSED]
    fn = n_gt - tp
    return {
        "n_gt": n_gt, "n_pred": tp + fp, "n_ignored": pred_counts[:, P.IGNORED],
        "tp": tp, "fp": fp,
        **{code.label: pred_counts[:, code] for code in FP_TYPES},
        "fn": fn, "fn_missed": gt_counts[:, G.FN],
    }


def rate_columns(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> dict[str, np.ndarray]:
    """precision, recall, f1, error_rate (float64) with the contract's NaN / 0 rules."""
    tp, fp, fn = (np.asarray(a, np.float64) for a in (tp, fp, fn))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        recall = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
        error_rate = np.where(tp + fp + fn > 0, (fp + fn) / (tp + fp + fn), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "error_rate": error_rate}


def image_table(outcomes: ObjectOutcomes) -> pd.DataFrame:
    """The per-image outcome table (shared contract), one row per image in ImageTable order.

    Columns: ``image_idx, n_gt, n_pred, n_ignored, tp, fp, fp_duplicate,
    fp_class, fp_localization, fp_both, fp_background, fn, fn_missed`` (int64)
    and ``precision, recall, f1, error_rate`` (float64).
    """
    import pandas as pd

    cols = count_columns(outcomes.pred_counts(by="image"), outcomes.gt_counts(by="image"))
    data = {"image_idx": np.arange(outcomes.num_images, dtype=np.int64)}
    data.update(cols)
    data.update(rate_columns(cols["tp"], cols["fp"], cols["fn"]))
    return pd.DataFrame(data, copy=False)


def objects_table(outcomes: ObjectOutcomes) -> pd.DataFrame:
    """The objects table (shared contract): every GT row, then every prediction row.

    Columns: ``object_id, kind ("gt" | "pred"), image_idx, class_idx, score
    (NaN for GT), outcome, match_object_id (-1 if none), match_iou (NaN if
    none), match_class_idx (-1 if none)``. ``kind`` and ``outcome`` are pandas
    categoricals (compare them with strings as usual).
    """
    import pandas as pd

    mt = outcomes.matching
    gt, pred = mt.gt, mt.pred
    g_row, g_iou = outcomes.gt_match
    p_row, p_iou = outcomes.pred_match
    m, n = len(gt), len(pred)

    def other(ids, classes, rows):
        has = rows >= 0
        safe = np.where(has, rows, 0)
        if len(ids) == 0:
            return np.full(len(rows), -1, np.int64), np.full(len(rows), -1, np.int64)
        return np.where(has, ids[safe], -1), np.where(has, classes[safe], -1)

    g_mid, g_mcls = other(pred.object_id, pred.class_idx, g_row)
    p_mid, p_mcls = other(gt.object_id, gt.class_idx, p_row)
    # One category list for both kinds: "tp" is shared, the rest are distinct.
    labels = [o.label for o in GtOutcome] + [o.label for o in PredOutcome][1:]
    p_codes = outcomes.pred_code.astype(np.int64)
    p_codes = np.where(p_codes == PredOutcome.TP, 0, p_codes + _NG - 1)
    outcome = pd.Categorical.from_codes(np.concatenate([outcomes.gt_code, p_codes]), categories=labels)
    return pd.DataFrame({
        "object_id": np.concatenate([gt.object_id, pred.object_id]),
        "kind": pd.Categorical.from_codes(np.r_[np.zeros(m, np.int8), np.ones(n, np.int8)],
                                          categories=["gt", "pred"]),
        "image_idx": np.concatenate([gt.image_idx, pred.image_idx]),
        "class_idx": np.concatenate([gt.class_idx, pred.class_idx]),
        "score": np.concatenate([np.full(m, np.nan), pred.score]),
        "outcome": outcome,
        "match_object_id": np.concatenate([g_mid, p_mid]).astype(np.int64),
        "match_iou": np.concatenate([g_iou, p_iou]),
        "match_class_idx": np.concatenate([g_mcls, p_mcls]).astype(np.int64),
    })


def _tally(group: np.ndarray, code: np.ndarray, ncode: int, ngroup: int, mask) -> np.ndarray:
    key = group * ncode + code
    if mask is not None:
        key = key[mask]
    return np.bincount(key, minlength=ngroup * ncode).reshape(ngroup, ncode).astype(np.int64, copy=False)
