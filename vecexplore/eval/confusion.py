"""Confusion matrices whose cells know their images and objects.

Rows = ground-truth class, columns = predicted class. Detection matrices have a
last ``background`` row and column (K+1 × K+1):

* TP → (c, c); FP-class → (GT class c, predicted class c');
* FN (a pure miss, ``fn_missed``) → (c, background). A GT consumed by an
  FP-class prediction lives in that FP-class cell, not also in (c, background);
* every other counted FP (duplicate, localization, both, background) →
  (background, c');
* ignored and below-threshold predictions and crowd GT are nowhere;
  (background, background) is always 0.

So row k sums to the non-crowd GT of class k and column k to the counted
(non-ignored, ≥ confidence) predictions of class k. Classification matrices are
plain K × K over the images that have both a label and an accepted prediction
(scikit-learn's ``confusion_matrix`` with ``labels = all classes``).

Counts come from bincounts over outcome codes. Which objects sit in a cell is
derived on demand from per-object cell codes with masks (FiftyOne's
``tabulate_ids`` idea), so building a matrix on every slider move stays cheap
and a click on a cell still finds its images. ``subset(images)`` gives the
matrix of any subset of images (a cluster, a selection).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np

from vecexplore.errors import ConfigError, ValidationError
from vecexplore.eval.outcomes import COUNTED, GtOutcome, ObjectOutcomes, PredOutcome
from vecexplore.types import selection_mask

if TYPE_CHECKING:
    import pandas as pd

BACKGROUND = "background"


class CellObjects(NamedTuple):
    """Object ids in one cell: ``gt`` = annotation ids, ``pred`` = prediction ids (int64).

    Detection: a TP / FP-class cell holds its predictions and the GT they
    matched or consumed; an FN cell holds GT only; a background-row cell holds
    predictions only. Classification: both are the image ids of the cell.
    """

    gt: np.ndarray
    pred: np.ndarray


class _Entries(NamedTuple):
    image_idx: np.ndarray  # (e,) int64
    object_id: np.ndarray  # (e,) int64
    is_pred: np.ndarray  # (e,) bool
    cell: np.ndarray  # (e,) int64, row * L + col


@dataclass(frozen=True, eq=False)
class ConfusionMatrix:
    """A confusion matrix over a set of images.

    Attributes:
        labels: (L,) row and column names; detection: class names then ``"background"``.
        counts: (L, L) int64; rows = ground truth, columns = prediction.
        has_background: True for detection matrices (last row/column = background).
        num_images: rows in the image table that ``images`` masks refer to.
    """

    labels: tuple[str, ...]
    counts: np.ndarray
    has_background: bool
    num_images: int
    _entries_fn: object  # () -> _Entries over all images
    _mask: np.ndarray | None = None

    @classmethod
    def from_outcomes(cls, outcomes: ObjectOutcomes, *, names: Sequence[str],
                      images: np.ndarray | None = None) -> ConfusionMatrix:
        """The detection matrix at the outcomes' operating point.

        Args:
            outcomes: object outcomes at one IoU and confidence threshold.
            names: (K,) class names in class_idx order.
            images: optional (N,) bool mask or image_idx array: only these images count.
        """
        k = outcomes.num_classes
        if len(names) != k:
            raise ValidationError(f"confusion matrix: {len(names)} names for {k} classes")
        mask = selection_mask(images, outcomes.num_images)
        mt = outcomes.matching
        pc = outcomes.pred_counts(by="class", images=mask)
        gc = outcomes.gt_counts(by="class", images=mask)
        counts = np.zeros((k + 1, k + 1), np.int64)
        idx = np.arange(k)
        counts[idx, idx] = pc[:, PredOutcome.TP]
        counts[k, :k] = pc[:, [PredOutcome.FP_DUPLICATE, PredOutcome.FP_LOCALIZATION,
                               PredOutcome.FP_BOTH, PredOutcome.FP_BACKGROUND]].sum(axis=1)
        counts[:k, k] = gc[:, GtOutcome.FN]
        p, g = mt.pair_pred[outcomes.fp_class], mt.pair_gt[outcomes.fp_class]
        if mask is not None:
            keep = mask[mt.pred.image_idx[p]]
            p, g = p[keep], g[keep]
        cells = mt.gt.class_idx[g] * (k + 1) + mt.pred.class_idx[p]
        counts += np.bincount(cells, minlength=(k + 1) ** 2).reshape(k + 1, k + 1)
        return cls(labels=(*map(str, names), BACKGROUND), counts=counts, has_background=True,
                   num_images=outcomes.num_images,
                   _entries_fn=functools.partial(_detection_entries, outcomes), _mask=mask)

    @classmethod
    def from_labels(cls, *, label: np.ndarray, prediction: np.ndarray, names: Sequence[str],
                    image_id: np.ndarray | None = None, images: np.ndarray | None = None) -> ConfusionMatrix:
        """The classification matrix: one entry per image with a label and a prediction.

        Args:
            label: (N,) int64 class_idx per image, -1 = no label.
            prediction: (N,) int64 class_idx per image, -1 = none / abstained.
            names: (K,) class names.
            image_id: (N,) int64 user image ids (for ``cell_objects``); default image_idx.
            images: optional (N,) bool mask or image_idx array.
        """
        label = np.asarray(label, np.int64)
        prediction = np.asarray(prediction, np.int64)
        n, k = len(label), len(names)
        if len(prediction) != n:
            raise ValidationError(f"confusion matrix: {n} labels but {len(prediction)} predictions")
        image_id = np.arange(n, dtype=np.int64) if image_id is None else np.asarray(image_id, np.int64)
        mask = selection_mask(images, n)
        ok = (label >= 0) & (prediction >= 0)
        if mask is not None:
            ok &= mask
        counts = np.bincount(label[ok] * k + prediction[ok], minlength=k * k).reshape(k, k)
        return cls(labels=tuple(map(str, names)), counts=counts.astype(np.int64), has_background=False,
                   num_images=n,
                   _entries_fn=functools.partial(_label_entries, label, prediction, image_id, k), _mask=mask)

    def subset(self, images: np.ndarray) -> ConfusionMatrix:
        """The matrix of a subset of images (a bool mask (N,) or image_idx array), within this one's."""
        mask = selection_mask(images, self.num_images)
        if self._mask is not None:
            mask = mask & self._mask
        e = self._entries
        keep = mask[e.image_idx] & self._counted(e)
        counts = np.bincount(e.cell[keep], minlength=len(self.labels) ** 2).reshape(self.counts.shape)
        return ConfusionMatrix(labels=self.labels, counts=counts.astype(np.int64), has_background=self.has_background,
                               num_images=self.num_images, _entries_fn=self._entries_fn, _mask=mask)

    def normalized(self, axis: Literal["gt", "pred"] = "gt") -> np.ndarray:
        """(L, L) float64 counts divided by their row ("gt") or column ("pred") sums; empty → 0."""
        if axis not in ("gt", "pred"):
            raise ConfigError(f"normalized: axis must be 'gt' or 'pred', got {axis!r}")
        total = self.counts.sum(axis=1 if axis == "gt" else 0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(total > 0, self.counts / np.where(total > 0, total, 1), 0.0)

    def cell_images(self, i: int, j: int) -> np.ndarray:
        """(c,) int64 sorted image_idx of the images with an object in cell (i, j)."""
        e, sel = self._cell(i, j)
        return np.unique(e.image_idx[sel])

    def cell_image_counts(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image_idx, count)``: the sorted images with an object in cell (i, j) and how many each has."""
        e, sel = self._cell(i, j)
        images, counts = np.unique(e.image_idx[sel], return_counts=True)
        return images.astype(np.int64), counts.astype(np.int64)

    def cell_objects(self, i: int, j: int) -> CellObjects:
        """The ids of the objects in cell (i, j) (see :class:`CellObjects`), in input order."""
        e, sel = self._cell(i, j)
        return CellObjects(gt=e.object_id[sel & ~e.is_pred], pred=e.object_id[sel & e.is_pred])

    def top_confusions(self, n: int = 10) -> list[tuple[int, int, int]]:
        """Up to ``n`` off-diagonal non-zero cells as (row, col, count), largest first (ties: row, col)."""
        c = self.counts.copy()
        np.fill_diagonal(c, 0)
        rows, cols = np.nonzero(c)
        order = np.lexsort((cols, rows, -c[rows, cols]))[:n]
        return [(int(rows[o]), int(cols[o]), int(c[rows[o], cols[o]])) for o in order]

    def to_pandas(self, normalize: Literal["gt", "pred"] | None = None) -> pd.DataFrame:
        """The matrix as a DataFrame: index = GT labels ("gt"), columns = predicted labels ("pred")."""
        import pandas as pd

        values = self.counts if normalize is None else self.normalized(normalize)
        return pd.DataFrame(values, index=pd.Index(self.labels, name="gt"),
                            columns=pd.Index(self.labels, name="pred"))

    @functools.cached_property
    def _entries(self) -> _Entries:
        return self._entries_fn()

    def _counted(self, e: _Entries) -> np.ndarray:
        if not self.has_background:
            return e.is_pred  # each image appears twice (as "gt" and "pred"); count it once
        # GT count only as misses (last column); a matched or confused GT is
        # counted through its prediction.
        last = len(self.labels) - 1
        return e.is_pred | (e.cell % len(self.labels) == last)

    def _cell(self, i: int, j: int) -> tuple[_Entries, np.ndarray]:
        size = len(self.labels)
        if not (0 <= i < size and 0 <= j < size):
            raise ConfigError(f"confusion matrix cell ({i}, {j}) is outside {size} × {size}")
        e = self._entries
        sel = e.cell == i * size + j
        if self._mask is not None:
            sel &= self._mask[e.image_idx]
        return e, sel


def _detection_entries(outcomes: ObjectOutcomes) -> _Entries:
    mt = outcomes.matching
    k = outcomes.num_classes
    size = k + 1
    gt, pred = mt.gt, mt.pred
    p_row, _ = outcomes.pred_match
    counted = outcomes.pred_code < COUNTED
    in_cell = counted & ((outcomes.pred_code == PredOutcome.TP) | (outcomes.pred_code == PredOutcome.FP_CLASS))
    row = np.where(in_cell, gt.class_idx[np.where(in_cell, p_row, 0)] if len(gt) else k, k)
    p_cell = np.where(counted, row * size + pred.class_idx, -1)
    g_pred, _ = outcomes.gt_match
    code = outcomes.gt_code
    matched = (code == GtOutcome.TP) | (code == GtOutcome.CONFUSED)
    col = np.where(matched, pred.class_idx[np.where(matched, g_pred, 0)] if len(pred) else k, k)
    g_cell = np.where(code == GtOutcome.CROWD, -1, gt.class_idx * size + col)
    pk, gk = p_cell >= 0, g_cell >= 0
    return _Entries(
        image_idx=np.concatenate([gt.image_idx[gk], pred.image_idx[pk]]),
        object_id=np.concatenate([gt.object_id[gk], pred.object_id[pk]]),
        is_pred=np.r_[np.zeros(int(gk.sum()), bool), np.ones(int(pk.sum()), bool)],
        cell=np.concatenate([g_cell[gk], p_cell[pk]]).astype(np.int64),
    )


def _label_entries(label: np.ndarray, prediction: np.ndarray, image_id: np.ndarray, k: int) -> _Entries:
    ok = np.flatnonzero((label >= 0) & (prediction >= 0))
    # Each image is both the "gt" and the "pred" object of its cell.
    idx = np.r_[ok, ok]
    return _Entries(image_idx=idx, object_id=image_id[idx],
                    is_pred=np.r_[np.zeros(len(ok), bool), np.ones(len(ok), bool)],
                    cell=(label[idx] * k + prediction[idx]).astype(np.int64))
