"""The data behind the model-quality panels, recomputed at any operating point.

Every function takes an evaluation ``ev`` (from :func:`vecexplore.eval.evaluate.evaluate`,
at any IoU / confidence, e.g. ``ev.at(confidence=...)`` on a slider move) and an
optional selection ``image_idx``: an (n,) int array of image_idx or an (N,) bool
mask; None = every image. Only objects on the selected images count.

Functions that need properties also take ``run``: a :class:`~vecexplore.store.Run`
or a :class:`RunTables` (the same tables before they are written). Its rows must
line up with ``ev.dataset``: ``images`` in image_idx order, ``objects`` = every GT
row then every prediction row in input order (the run-store contract), which is
what ``evaluate(run.dataset())`` gives.

Cost: counts are bincounts over the per-object outcome codes, selections are
masks, curves reuse one cached score order, so each call is a few vectorised
passes over the objects (see ``benchmarks/bench_quality.py``); only
:func:`property_importance` (a k-NN mutual-information estimate) is slower and
subsamples large inputs.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from vecexplore.analysis.bins import (
    BinTable,
    image_property_bins,
    object_property_bins,
    quantile_edges,
)
from vecexplore.analysis.importance import Importance, rank_properties
from vecexplore.errors import ConfigError, ValidationError
from vecexplore.eval.outcomes import COUNTED, FP_TYPES, GtOutcome, PredOutcome
from vecexplore.properties import IMAGE_PROPERTIES, OBJECT_PROPERTIES
from vecexplore.rates import ratio
from vecexplore.types import selection_mask

if TYPE_CHECKING:
    import pandas as pd

    from vecexplore.eval.sweep import Curve

#: Bars of the detection class chart: GT outcomes, then false positives by type.
DETECTION_KINDS = ("tp", "misclassified", "missed", *(f"{c.label}" for c in FP_TYPES))
#: Bars of the classification class chart (per label, plus wrong predictions *as* the class).
CLASSIFICATION_KINDS = ("correct", "misclassified", "no_prediction", "fp")


class RunTables(NamedTuple):
    """A run's tables before they are written (the build's "analyse" stage uses this).

    Attributes:
        images: the images table (run-store layout, image_idx order).
        objects: the objects table (detection), None for classification.
    """

    images: pd.DataFrame
    objects: pd.DataFrame | None = None


# ---------------------------------------------------------------- selections and alignment

_CACHE: dict = {}


def cached(owner, key, compute):
    """``compute()`` memoised per live ``owner`` (a run table) and ``key``.

    Run-wide numbers that no slider or selection moves (decile thresholds,
    GT-based bin edges) are computed once per table; the entry goes when the
    table is garbage-collected.
    """
    slot = (id(owner), key)
    hit = _CACHE.get(slot)
    if hit is not None and hit[0]() is owner:
        return hit[1]
    value = compute()
    _CACHE[slot] = (weakref.ref(owner, lambda _, slot=slot: _CACHE.pop(slot, None)), value)
    return value


def _images(run, ev) -> pd.DataFrame:
    images = run.images
    if len(images) != ev.dataset.num_images:
        raise ValidationError(f"run has {len(images)} images but the evaluation {ev.dataset.num_images}")
    return images


def _objects(run, ev) -> pd.DataFrame:
    objects = run.objects
    m, n = len(ev.dataset.gt), len(ev.dataset.pred)
    if objects is None or len(objects) != m + n:
        got = "no" if objects is None else len(objects)
        raise ValidationError(f"run has {got} object rows but the evaluation {m} GT + {n} predictions")
    return objects


def image_values(images: pd.DataFrame, prop: str) -> np.ndarray:
    """(N,) float64 values of an image property; NaN where unknown (size 0 = unknown)."""
    if prop not in images.columns:
        raise ConfigError(f"unknown image property {prop!r}; the run has {_known(images.columns, IMAGE_PROPERTIES)}")
    v = images[prop].to_numpy(np.float64)
    if prop in ("width", "height"):
        v = np.where(v > 0, v, np.nan)
    return v


def _known(columns, props) -> list[str]:
    return [p for p in props if p in columns]


def image_properties_of(run, task: str) -> list[str]:
    """The image properties the run stores (``n_objects`` only for detection)."""
    props = _known(run.images.columns, IMAGE_PROPERTIES)
    return [p for p in props if task == "detection" or p != "n_objects"]


# ---------------------------------------------------------------- performance by class


@dataclass(frozen=True, eq=False)
class ClassPerformance:
    """Per-class outcome counts at the evaluation's operating point, for a selection.

    Attributes:
        table: one row per class (class_idx order). Detection columns:
            ``class_idx, name, n_gt, tp, misclassified`` (GT consumed by a
            prediction of another class), ``missed`` (GT found by nothing),
            ``fn`` (= misclassified + missed, the contract's FN), ``fp`` and its
            types ``fp_duplicate, fp_class`` (predicted as this class on a GT of
            another), ``fp_localization, fp_both, fp_background``, ``precision,
            recall``. Classification: ``class_idx, name, n`` (labelled images),
            ``correct, misclassified, no_prediction`` (below the threshold),
            ``fp`` (other classes' images predicted as this one), ``accuracy``
            (correct / n), ``precision``. Rates are NaN where undefined.
        confused_as: (K, K) int64, rows = GT class, columns = predicted class:
            how often a GT of class i was taken for class j (off-diagonal only).
    """

    table: pd.DataFrame
    confused_as: np.ndarray
    _ev: object
    _mask: np.ndarray | None

    def images_for(self, class_idx: int, kind: str, *, other: int | None = None) -> np.ndarray:
        """Sorted image_idx of the images behind one bar (a click on it selects them).

        Args:
            class_idx: the class of the bar.
            kind: a column of :attr:`table` among :data:`DETECTION_KINDS`, ``"fn"``,
                ``"fp"`` (detection) or :data:`CLASSIFICATION_KINDS` and ``"fn"`` (not
                correct: misclassified or no prediction) (classification);
                ``"confused_as"`` with ``other`` = the predicted class for one
                cell of :attr:`confused_as`.
        """
        k = len(self.table)
        if not 0 <= class_idx < k:
            raise ConfigError(f"class_idx {class_idx} is outside [0, {k})")
        ev = self._ev
        if ev.task == "detection":
            images = _detection_images(ev, class_idx, kind, other)
        else:
            images = _classification_images(ev, class_idx, kind, other)
        if self._mask is not None:
            images = images[self._mask[images]]
        return images


def class_performance(ev, image_idx=None) -> ClassPerformance:
    """Correct / misclassified / missed / false positives per class (see :class:`ClassPerformance`)."""
    import pandas as pd

    names = ev.class_names
    k = len(names)
    mask = selection_mask(image_idx, ev.dataset.num_images)
    if ev.task == "detection":
        out = ev.outcomes
        pc = out.pred_counts(by="class", images=mask)
        gc = out.gt_counts(by="class", images=mask)
        tp = pc[:, PredOutcome.TP]
        fp_types = {c.label: pc[:, c] for c in FP_TYPES}
        fp = sum(fp_types.values())
        miscls, missed = gc[:, GtOutcome.CONFUSED], gc[:, GtOutcome.FN]
        n_gt = gc[:, GtOutcome.TP] + missed + miscls
        mt = out.matching
        p, g = mt.pair_pred[out.fp_class], mt.pair_gt[out.fp_class]
        if mask is not None:
            keep = mask[mt.pred.image_idx[p]]
            p, g = p[keep], g[keep]
        confused = np.bincount(mt.gt.class_idx[g] * k + mt.pred.class_idx[p], minlength=k * k).reshape(k, k)
        table = pd.DataFrame({
            "class_idx": np.arange(k), "name": names, "n_gt": n_gt, "tp": tp, "misclassified": miscls,
            "missed": missed, "fn": miscls + missed, "fp": fp, **fp_types,
            "precision": ratio(tp, tp + fp), "recall": ratio(tp, n_gt),
        })
    else:
        label, accepted = ev.arrays["label"], ev.accepted
        use = label >= 0 if mask is None else (label >= 0) & mask
        lab, acc = label[use], accepted[use]
        n = np.bincount(lab, minlength=k)
        correct = np.bincount(lab[acc == lab], minlength=k)
        no_pred = np.bincount(lab[acc < 0], minlength=k)
        wrong = (acc >= 0) & (acc != lab)
        confused = np.bincount(lab[wrong] * k + acc[wrong], minlength=k * k).reshape(k, k)
        fp = confused.sum(axis=0)
        table = pd.DataFrame({
            "class_idx": np.arange(k), "name": names, "n": n, "correct": correct,
            "misclassified": confused.sum(axis=1), "no_prediction": no_pred, "fp": fp,
            "accuracy": ratio(correct, n), "precision": ratio(correct, correct + fp),
        })
    return ClassPerformance(table=table, confused_as=confused.astype(np.int64), _ev=ev, _mask=mask)


_GT_KINDS = {"tp": (GtOutcome.TP,), "misclassified": (GtOutcome.CONFUSED,), "missed": (GtOutcome.FN,),
             "fn": (GtOutcome.FN, GtOutcome.CONFUSED)}
_PRED_KINDS = {c.label: (c,) for c in FP_TYPES} | {"fp": FP_TYPES}


def _detection_images(ev, class_idx: int, kind: str, other: int | None) -> np.ndarray:
    out = ev.outcomes
    mt = out.matching
    if kind == "confused_as":
        if other is None:
            raise ConfigError("kind 'confused_as' needs other= (the predicted class)")
        p, g = mt.pair_pred[out.fp_class], mt.pair_gt[out.fp_class]
        sel = (mt.gt.class_idx[g] == class_idx) & (mt.pred.class_idx[p] == other)
        return np.unique(mt.gt.image_idx[g[sel]])
    if kind in _GT_KINDS:
        objs, codes = mt.gt, out.gt_code
        wanted = _GT_KINDS[kind]
    elif kind in _PRED_KINDS:
        objs, codes = mt.pred, out.pred_code
        wanted = _PRED_KINDS[kind]
    else:
        raise ConfigError(f"unknown bar kind {kind!r}; choose one of {[*_GT_KINDS, *_PRED_KINDS, 'confused_as']}")
    sel = (objs.class_idx == class_idx) & np.isin(codes, np.array(wanted, np.int8))
    return np.unique(objs.image_idx[sel])


def _classification_images(ev, class_idx: int, kind: str, other: int | None) -> np.ndarray:
    label, acc = ev.arrays["label"], ev.accepted
    if kind == "correct":
        sel = (label == class_idx) & (acc == class_idx)
    elif kind == "misclassified":
        sel = (label == class_idx) & (acc >= 0) & (acc != class_idx)
    elif kind == "no_prediction":
        sel = (label == class_idx) & (acc < 0)
    elif kind == "fn":
        sel = (label == class_idx) & (acc != class_idx)
    elif kind == "fp":
        sel = (acc == class_idx) & (label >= 0) & (label != class_idx)
    elif kind == "confused_as":
        if other is None:
            raise ConfigError("kind 'confused_as' needs other= (the predicted class)")
        sel = (label == class_idx) & (acc == other) & (other != class_idx)
    else:
        raise ConfigError(f"unknown bar kind {kind!r}; choose one of {[*CLASSIFICATION_KINDS, 'fn', 'confused_as']}")
    return np.flatnonzero(sel).astype(np.int64)


# ---------------------------------------------------------------- performance by property


class ObjectArrays(NamedTuple):
    """Per-object arrays at the operating point (detection), aligned with ``ev.dataset``."""

    gt_keep: np.ndarray  # (m,) bool: non-crowd GT
    gt_missed: np.ndarray  # (m,) bool: not matched as TP (missed or misclassified)
    pred_tp: np.ndarray  # (n,) bool
    pred_counted: np.ndarray  # (n,) bool: above the threshold and not ignored


def object_arrays(ev) -> ObjectArrays:
    out = ev.outcomes
    gt_code, pred_code = out.gt_code, out.pred_code
    return ObjectArrays(gt_code != GtOutcome.CROWD, (gt_code == GtOutcome.FN) | (gt_code == GtOutcome.CONFUSED),
                        pred_code == PredOutcome.TP, pred_code < COUNTED)


def property_performance(run, ev, prop: str, *, image_idx=None, n_bins: int = 10,
                         edges: np.ndarray | None = None) -> BinTable:
    """Precision and FN rate (detection) or accuracy (classification) per quantile bin of ``prop``.

    An image property (:data:`~vecexplore.properties.IMAGE_PROPERTIES`, or any
    numeric column of the images table) bins images; an object property
    (:data:`~vecexplore.properties.OBJECT_PROPERTIES`, detection only) bins GT
    objects (FN rate) and counted predictions (precision) on edges that are
    quantiles of the GT values, and each bin selects the images of its objects. With a selection, the bins are quantiles of the
    selection's values; ``overall`` is always the whole run's rate (the reference
    line). ``image_idx`` of each bin is in the run's image_idx. ``edges`` fixes the
    bins instead (e.g. the whole run's members of bins that a selection's quantiles drew).
    """
    n = ev.dataset.num_images
    mask = selection_mask(image_idx, n)
    if prop in OBJECT_PROPERTIES:
        if ev.task != "detection":
            raise ConfigError(f"{prop!r} is an object property; this is a classification run")
        return _object_bins(run, ev, prop, mask, n_bins, edges)
    values = image_values(_images(run, ev), prop)
    per_image = ev.per_image
    rows = None if mask is None else np.flatnonzero(mask)
    if rows is not None:
        values, per_image = values[rows], per_image.iloc[rows]
    bt = image_property_bins(values, per_image, task=ev.task, prop=prop, n_bins=n_bins, edges=edges)
    members = bt.image_idx if rows is None else [rows[m] for m in bt.image_idx]
    return BinTable(bt.prop, bt.edges, bt.count, bt.rate, overall_rates(ev), members)


def _object_bins(run, ev, prop: str, mask, n_bins: int, fixed: np.ndarray | None = None) -> BinTable:
    objects = _objects(run, ev)
    m = len(ev.dataset.gt)
    values = objects[prop].to_numpy(np.float64)
    gt, pred = ev.dataset.gt, ev.dataset.pred
    oa = object_arrays(ev)
    g_sel, p_sel = oa.gt_keep, oa.pred_counted
    if mask is not None:
        g_sel = g_sel & mask[gt.image_idx]
        p_sel = p_sel & mask[pred.image_idx]
    g_rows, p_rows = np.flatnonzero(g_sel), np.flatnonzero(p_sel)
    # Edges: quantiles of the (selected) non-crowd GT, which no confidence move changes.
    if fixed is not None:
        edges = np.asarray(fixed, np.float64)
    elif mask is None:
        edges = cached(objects, ("gt_edges", prop, n_bins), lambda: quantile_edges(values[:m][oa.gt_keep], n_bins))
    else:
        edges = quantile_edges(values[:m][g_rows], n_bins)
    bt = object_property_bins(
        values[:m][g_rows], oa.gt_missed[g_rows], gt.image_idx[g_rows],
        values[m:][p_rows], oa.pred_tp[p_rows], np.ones(len(p_rows), bool), pred.image_idx[p_rows],
        prop=prop, n_bins=n_bins, edges=edges,
    )
    return BinTable(bt.prop, bt.edges, bt.count, bt.rate, overall_rates(ev), bt.image_idx)


def overall_rates(ev) -> dict[str, float]:
    """The whole run's reference rates: detection ``precision`` and ``fn_rate``; classification ``accuracy``."""
    if ev.task == "detection":
        t = ev.totals
        return {"precision": t["precision"], "fn_rate": t["fn"] / t["n_gt"] if t["n_gt"] else float("nan")}
    label, correct = ev.arrays["label"] >= 0, ev.per_image["correct"].to_numpy(bool)
    return {"accuracy": float(correct[label].mean()) if label.any() else float("nan")}


def property_importance(run, ev, *, image_idx=None, seed: int = 0) -> list[Importance]:
    """Every stored property ranked by how strongly it predicts errors (strongest first).

    Image properties are scored against the per-image ``error_rate``
    (classification: 1 − correct, labelled images only), object properties
    against whether each non-crowd GT object was not found (missed or
    misclassified). Mutual information ranks; Spearman gives the direction.
    Inputs over :data:`vecexplore.analysis.importance.MAX_SAMPLES` are
    subsampled with ``seed``.
    """
    images = _images(run, ev)
    mask = selection_mask(image_idx, ev.dataset.num_images)
    error = ev.per_image["error_rate"].to_numpy(np.float64).copy()
    if ev.task == "classification":
        error[ev.arrays["label"] < 0] = np.nan
    rows = np.arange(len(error)) if mask is None else np.flatnonzero(mask)
    image_props = {p: image_values(images, p)[rows] for p in image_properties_of(run, ev.task)}
    object_props, missed = None, None
    if ev.task == "detection":
        objects = _objects(run, ev)
        m = len(ev.dataset.gt)
        oa = object_arrays(ev)
        keep = oa.gt_keep if mask is None else oa.gt_keep & mask[ev.dataset.gt.image_idx]
        object_props = {p: objects[p].to_numpy(np.float64)[:m][keep]
                        for p in OBJECT_PROPERTIES if p in objects.columns}
        missed = oa.gt_missed[keep]
    return rank_properties(image_props, error[rows], object_props, missed, seed=seed)


# ---------------------------------------------------------------- P/R/F1 vs confidence for a selection

_ORDER_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _score_order(key, score: np.ndarray) -> np.ndarray:
    """Descending-score order of ``score``, cached per matching / evaluation (weakly)."""
    order = _ORDER_CACHE.get(key)
    if order is None or len(order) != len(score):
        order = np.argsort(-score, kind="stable")
        _ORDER_CACHE[key] = order
    return order


def sweep_for(ev, image_idx=None, *, class_idx: int | None = None) -> Curve:
    """Precision, recall and F1 against confidence for a selection (and optionally one class).

    The same definitions as :mod:`vecexplore.eval.sweep` (detection: counted =
    not ignored by a crowd region, positives = non-crowd GT; classification:
    selective accuracy over labelled images), restricted to the objects on the
    selected images. With no selection and no class it equals
    ``ev.sweep.overall``; with a class, ``ev.sweep.per_class[class_idx]``.
    Cost: one mask and one cumulative sum over the predictions (the score order
    is sorted once per matching and cached).
    """
    from vecexplore.eval.sweep import Curve

    mask = selection_mask(image_idx, ev.dataset.num_images)
    if ev.task == "detection":
        mt = ev.matching
        pred, gt = mt.pred, mt.gt
        order = _score_order(mt, pred.score)
        keep = mt.pred_base[order] != PredOutcome.IGNORED
        pos = ~gt.iscrowd
        if mask is not None:
            keep &= mask[pred.image_idx[order]]
            pos = pos & mask[gt.image_idx]
        if class_idx is not None:
            keep &= pred.class_idx[order] == class_idx
            pos = pos & (gt.class_idx == class_idx)
        rows = order[keep]
        score, is_tp = pred.score[rows], mt.pred_base[rows] == PredOutcome.TP
        n_pos = int(pos.sum())
    else:
        label, prediction, raw = ev.arrays["label"], ev.arrays["prediction"], ev.arrays["score"]
        has = (label >= 0) & (prediction >= 0)
        pos = label >= 0
        if mask is not None:
            has, pos = has & mask, pos & mask
        if class_idx is not None:
            has, pos = has & (prediction == class_idx), pos & (label == class_idx)
        rows = np.flatnonzero(has)
        rows = rows[np.argsort(-raw[rows], kind="stable")]  # N images: sorting each call is cheap
        score, is_tp = raw[rows], label[rows] == prediction[rows]
        n_pos = int(pos.sum())
    tp = np.cumsum(is_tp, dtype=np.int64)
    fp = np.arange(1, len(tp) + 1, dtype=np.int64) - tp
    last = np.r_[score[1:] != score[:-1], True] if len(score) else np.zeros(0, bool)
    return Curve(confidence=score[last], tp=tp[last], fp=fp[last], fn=n_pos - tp[last], n_pos=n_pos)
