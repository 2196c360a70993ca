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
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Literal

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
#: The six disjoint detection error types (TIDE's Dupe, Cls, Loc, Both, Bkg, Missed), in
#: report order: their per-image-table columns (ties of the dominant one go to the first) …
FP_COLUMNS: tuple[str, ...] = tuple(code.label for code in FP_TYPES)
ERROR_TYPES: tuple[str, ...] = (*FP_COLUMNS, "fn_missed")
#: … their short names (the report, ``--json``'s ``error_types`` keys, the app) …
ERROR_TYPE_NAMES: tuple[str, ...] = ("duplicate", "class", "localization", "both", "background", "missed")
#: … and their labels in tables and legends.
ERROR_TYPE_LABELS: tuple[str, ...] = (
    "FP duplicate", "FP wrong class", "FP localization", "FP class + localization", "FP background", "missed",
)
#: Codes below this are counted predictions (TP or an FP type).
COUNTED = int(PredOutcome.IGNORED)
_NP, _NG = len(PredOutcome), len(GtOutcome)
#: The objects table's outcome strings, one list for both kinds ("tp" is shared): a GT code is its
#: index here, a prediction code ``c`` is index 0 for TP and ``c + len(GtOutcome) - 1`` otherwise.
OBJECT_OUTCOMES: tuple[str, ...] = (*(o.label for o in GtOutcome), *(o.label for o in PredOutcome if o != PredOutcome.TP))


def object_outcome_codes(gt_code: np.ndarray, pred_code: np.ndarray) -> np.ndarray:
    """(m + n,) int64 index into :data:`OBJECT_OUTCOMES` of every GT object, then every prediction."""
    p = np.asarray(pred_code, np.int64)
    return np.concatenate([np.asarray(gt_code, np.int64), np.where(p == PredOutcome.TP, 0, p + _NG - 1)])


@dataclass(frozen=True, eq=False)
class ObjectOutcomes:
    """Every object's outcome at one operating point.

    Per-group counts come from the matching's score-sorted prefix (one
    bincount over the predictions ≥ c, plus the few FP-class corrections); the
    per-object code arrays are built only when asked for.

    Attributes:
        matching: the IoU-threshold matching this was derived from.
        confidence: the confidence threshold ``c``; predictions with score < c
            are ``BELOW_THRESHOLD``.
        fp_class: (f,) int64 indices of the matching's step-4 pairs that are
            FP-class at ``c`` (``matching.pair_pred[fp_class]`` consumed
            ``matching.pair_gt[fp_class]``).
    """

    matching: Matching
    confidence: float
    fp_class: np.ndarray
    _memo: dict = field(default_factory=dict, repr=False)

    @property
    def num_images(self) -> int:
        return self.matching.num_images

    @property
    def num_classes(self) -> int:
        return self.matching.num_classes

    @functools.cached_property
    def pred_code(self) -> np.ndarray:
        """(n,) int8 :class:`PredOutcome` per prediction (input order)."""
        mt = self.matching
        code = np.where(mt.pred.score >= self.confidence, mt.pred_base,
                        np.int8(PredOutcome.BELOW_THRESHOLD)).astype(np.int8)
        code[mt.pair_pred[self.fp_class]] = PredOutcome.FP_CLASS
        return code

    @functools.cached_property
    def gt_code(self) -> np.ndarray:
        """(m,) int8 :class:`GtOutcome` per GT (input order)."""
        mt = self.matching
        code = np.where(mt.gt_tp_score >= self.confidence, np.int8(GtOutcome.TP),
                        np.int8(GtOutcome.FN)).astype(np.int8)
        code[mt.pair_gt[self.fp_class]] = GtOutcome.CONFUSED
        code[mt.gt.iscrowd] = GtOutcome.CROWD
        return code

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

    def pred_counts(self, *, by: Literal["image", "class"] = "image", images: np.ndarray | None = None) -> np.ndarray:
        """Prediction counts per group: (N, 8) by image or (K, 8) by class; columns = PredOutcome.

        ``images``: optional (N,) bool mask; only predictions on those images count.
        """
        mt = self.matching
        if images is not None:
            pred = mt.pred
            group = pred.image_idx if by == "image" else pred.class_idx
            return _tally(group, self.pred_code, _NP, _groups(mt, by), images[pred.image_idx])
        if by not in self._memo:
            prefix = mt.score_prefix
            k = prefix.count_at(self.confidence)
            key = (prefix.image_key if by == "image" else prefix.class_key)[:k]
            counts = np.bincount(key, minlength=_groups(mt, by) * _NP).reshape(-1, _NP)
            p = mt.pair_pred[self.fp_class]
            group = (mt.pred.image_idx if by == "image" else mt.pred.class_idx)[p]
            np.subtract.at(counts[:, PredOutcome.FP_DUPLICATE], group, 1)
            np.add.at(counts[:, PredOutcome.FP_CLASS], group, 1)
            counts[:, PredOutcome.BELOW_THRESHOLD] = prefix.total(by) - _row_sum(counts)
            counts.flags.writeable = False
            self._memo[by] = counts
        return self._memo[by]

    def gt_counts(self, *, by: Literal["image", "class"] = "image", images: np.ndarray | None = None) -> np.ndarray:
        """GT counts per group: (N, 4) by image or (K, 4) by class; columns = GtOutcome."""
        mt = self.matching
        if images is not None:
            gt = mt.gt
            group = gt.image_idx if by == "image" else gt.class_idx
            return _tally(group, self.gt_code, _NG, _groups(mt, by), images[gt.image_idx])
        # A TP GT shares its image and class with its TP prediction.
        noncrowd, crowd = mt.score_prefix.gt_total(by)
        tp = self.pred_counts(by=by)[:, PredOutcome.TP]
        g = mt.pair_gt[self.fp_class]
        confused = np.bincount((mt.gt.image_idx if by == "image" else mt.gt.class_idx)[g],
                               minlength=_groups(mt, by))
        return np.stack([tp, noncrowd - tp - confused, confused, crowd], axis=1)


def resolve_outcomes(matching: Matching, *, confidence: float) -> ObjectOutcomes:
    """Every object's outcome at confidence ``c`` (predictions with score < c do not exist).

    Cost: the step-4 kernel over the candidate pairs; everything else is lazy
    (counts: one bincount over the predictions ≥ c; codes: O(n + m)).
    """
    c = float(confidence)
    return ObjectOutcomes(matching=matching, confidence=c, fp_class=matching.fp_class_pairs(c))


def count_columns(pred_counts: np.ndarray, gt_counts: np.ndarray) -> dict[str, np.ndarray]:
    """The integer columns of the per-image table from (rows, 8) and (rows, 4) tallies.

    Works for any grouping (images, classes, totals as a single row).
    """
    P, G = PredOutcome, GtOutcome
    tp = pred_counts[:, P.TP]
    fp = _row_sum(pred_counts[:, P.FP_DUPLICATE:COUNTED])
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
    from vecexplore.rates import precision_recall_f1, ratio

    tp, fp, fn = (np.asarray(a, np.float64) for a in (tp, fp, fn))
    precision, recall, f1 = precision_recall_f1(tp, fp, fn)
    errors = fp + fn
    return {"precision": precision, "recall": recall, "f1": f1, "error_rate": ratio(errors, tp + errors, empty=0.0)}


#: Integer columns of the detection per-image table, in order (after ``image_idx``).
IMAGE_INT_COLUMNS = ("n_gt", "n_pred", "n_ignored", "tp", "fp", *FP_COLUMNS, "fn", "fn_missed")
IMAGE_RATE_COLUMNS = ("precision", "recall", "f1", "error_rate")


def image_table(outcomes: ObjectOutcomes) -> pd.DataFrame:
    """The per-image outcome table (shared contract), one row per image in ImageTable order.

    Columns: ``image_idx, n_gt, n_pred, n_ignored, tp, fp, fp_duplicate,
    fp_class, fp_localization, fp_both, fp_background, fn, fn_missed`` (int64)
    and ``precision, recall, f1, error_rate`` (float64); see :func:`rate_columns`
    for the NaN / 0 rules. This is what the app recomputes on every slider
    move, so it is one compiled pass over the predictions ≥ c and one over the
    images (same arithmetic as :func:`count_columns` / :func:`rate_columns`).
    """
    import pandas as pd

    mt = outcomes.matching
    prefix = mt.score_prefix
    key = prefix.image_key[:prefix.count_at(outcomes.confidence)]
    fp_class_image = mt.pred.image_idx[mt.pair_pred[outcomes.fp_class]]
    ints, rates = _kernel()(key, fp_class_image, prefix.gt_total("image")[0], outcomes.num_images)
    data = {"image_idx": np.arange(outcomes.num_images, dtype=np.int64)}
    data.update(zip(IMAGE_INT_COLUMNS, ints, strict=True))
    data.update(zip(IMAGE_RATE_COLUMNS, rates, strict=True))
    return pd.DataFrame(data, copy=False)


def _image_rows(key, fp_class_image, n_gt, n_images):  # pragma: no cover - compiled by numba
    """Per-image columns from prefix keys ``image * 8 + base code`` and the FP-class images.

    Returns ((12, N) int64 in IMAGE_INT_COLUMNS order, (4, N) float64 in IMAGE_RATE_COLUMNS order).
    """
    counts = np.zeros((n_images, 8), np.int64)
    for i in range(key.shape[0]):
        counts[key[i] // 8, key[i] % 8] += 1
    confused = np.zeros(n_images, np.int64)
    for j in range(fp_class_image.shape[0]):
        img = fp_class_image[j]
        counts[img, 1] -= 1  # FP_DUPLICATE (clarification (b) default) → FP_CLASS
        counts[img, 2] += 1
        confused[img] += 1
    ints = np.empty((12, n_images), np.int64)
    rates = np.empty((4, n_images), np.float64)
    for n in range(n_images):
        tp = counts[n, 0]
        fp = counts[n, 1] + counts[n, 2] + counts[n, 3] + counts[n, 4] + counts[n, 5]
        fn = n_gt[n] - tp
        ints[0, n] = n_gt[n]
        ints[1, n] = tp + fp
        ints[2, n] = counts[n, 6]
        ints[3, n] = tp
        ints[4, n] = fp
        for c in range(5):
            ints[5 + c, n] = counts[n, 1 + c]
        ints[10, n] = fn
        ints[11, n] = fn - confused[n]
        ftp, ffp, ffn = float(tp), float(fp), float(fn)
        rates[0, n] = ftp / (ftp + ffp) if tp + fp > 0 else np.nan
        rates[1, n] = ftp / (ftp + ffn) if tp + fn > 0 else np.nan
        rates[2, n] = 2.0 * ftp / (2.0 * ftp + ffp + ffn) if 2 * tp + fp + fn > 0 else np.nan
        rates[3, n] = (ffp + ffn) / (ftp + ffp + ffn) if tp + fp + fn > 0 else 0.0
    return ints, rates


@functools.cache
def _kernel():
    import numba

    return numba.njit(cache=True, nogil=True)(_image_rows)


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
    codes = object_outcome_codes(outcomes.gt_code, outcomes.pred_code)
    outcome = pd.Categorical.from_codes(codes, categories=list(OBJECT_OUTCOMES))
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


def _row_sum(a: np.ndarray) -> np.ndarray:
    # einsum is ~4x faster than .sum(axis=1) over a few columns of many rows.
    return np.einsum("ij->i", a)


def _groups(mt: Matching, by: str) -> int:
    if by not in ("image", "class"):
        raise ValueError(f"by must be 'image' or 'class', got {by!r}")
    return mt.num_images if by == "image" else mt.num_classes


def _tally(group: np.ndarray, code, ncode: int, ngroup: int, mask) -> np.ndarray:
    key = group * ncode + code
    if mask is not None:
        key = key[mask]
    return np.bincount(key, minlength=ngroup * ncode).reshape(ngroup, ncode).astype(np.int64, copy=False)
