"""``evaluate(dataset)``: everything about one model on one dataset, at one operating point.

An :class:`Evaluation` bundles the matching (detection, once per IoU
threshold), the object and per-image outcomes, the confusion matrix, the
confidence sweep and the metrics at an operating point. ``at(confidence=...)``
re-derives the outcomes at another confidence without re-matching (the app
calls it on every slider move); ``at(iou=...)`` matches once for that IoU and
caches the matching, shared by every evaluation derived from the same call.
COCO AP/AR (independent of the operating point) is computed on first use and
shared likewise.

Default operating point: detection uses the F1-optimal confidence of the sweep
at the chosen IoU (0.0 when nothing is predicted); classification uses 0.0
(every prediction accepted, so the metrics equal scikit-learn's on the user's
files; see :mod:`vecexplore.eval.classification`).
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from vecexplore.errors import ConfigError
from vecexplore.eval import classification as cls_mod
from vecexplore.eval.confusion import ConfusionMatrix
from vecexplore.eval.matching import Matching, match_detections
from vecexplore.eval.operating_point import check_confidence, check_iou
from vecexplore.eval.outcomes import (
    ERROR_TYPE_NAMES,
    FP_TYPES,
    ObjectOutcomes,
    count_columns,
    image_table,
    objects_table,
    rate_columns,
    resolve_outcomes,
)
from vecexplore.eval.sweep import Sweep, classification_sweep, detection_sweep
from vecexplore.types import Dataset

if TYPE_CHECKING:
    import pandas as pd

    from vecexplore.eval.coco import CocoMetrics

log = logging.getLogger(__name__)

IouType = Literal["bbox", "segm"]
IOU_TYPES: tuple[str, ...] = ("bbox", "segm")
#: What every output says when ``--clip`` clipped the boxes (no pycocotools-equality claim then).
CLIPPED_NOTE = "on boxes clipped to the image border (--clip): not pycocotools' numbers"

#: JSON names of the error types (``error_types`` object), FP types then misses.


def evaluate(dataset: Dataset, *, iou: float = 0.5, confidence: float | None = None,
             iou_type: IouType | None = None) -> Evaluation:
    """Evaluate ``dataset.pred`` against ``dataset.gt``.

    Args:
        dataset: a detection or classification dataset.
        iou: the IoU threshold of the operating point (detection only).
        confidence: the confidence threshold; None = the default (F1-optimal
            for detection, 0.0 for classification).
        iou_type: the overlap the object outcomes use (detection): ``"bbox"``
            (box IoU) or ``"segm"`` (mask IoU); None = ``"segm"`` when ground truth
            and predictions carry masks, else ``"bbox"``.

    Returns:
        :class:`DetectionEvaluation` or :class:`ClassificationEvaluation`.
    """
    if dataset.task == "classification":
        if iou != 0.5:
            raise ConfigError("--iou applies to detection only; this is a classification dataset")
        arrays = cls_mod.image_arrays(num_images=dataset.num_images, gt=dataset.gt, pred=dataset.pred)
        sweep = classification_sweep(label=arrays["label"], prediction=arrays["prediction"],
                                     score=arrays["score"], num_classes=len(dataset.categories))
        return ClassificationEvaluation._build(dataset, arrays, sweep, confidence)
    from vecexplore.eval.segm import has_masks

    masks = has_masks(dataset)
    if iou_type is None:
        iou_type = "segm" if masks else "bbox"
    if iou_type not in IOU_TYPES:
        raise ConfigError(f"--iou-type must be one of {', '.join(IOU_TYPES)}, got {iou_type!r}")
    if iou_type == "segm" and not masks:
        raise ConfigError("--iou-type segm needs masks ('segmentation') on both the ground truth and the predictions")
    return DetectionEvaluation._build(dataset, iou, confidence, {"iou_type": iou_type})



@dataclass(frozen=True, eq=False)
class Evaluation:
    """What both tasks share.

    Attributes:
        dataset: the evaluated dataset.
        confidence_is_default: True when no confidence was given (F1-optimal
            for detection, 0.0 for classification).

    Every subclass has ``confidence`` (the operating point's confidence threshold)
    and ``sweep`` (P/R/F1 vs confidence, overall and per class).
    """

    dataset: Dataset
    confidence_is_default: bool

    @property
    def task(self) -> str:
        return self.dataset.task

    @property
    def optimal(self) -> tuple[float, float]:
        """The sweep's F1-optimal ``(confidence, f1)`` (NaN, NaN without predictions)."""
        return self.sweep.optimal()

    @property
    def class_names(self) -> list[str]:
        return [str(n) for n in self.dataset.categories.names]


@dataclass(frozen=True, eq=False)
class DetectionEvaluation(Evaluation):
    """A detection evaluation at one IoU and confidence threshold.

    Nothing is computed until it is asked for: the matching and the sweep at
    :attr:`iou` (shared by every evaluation derived from the same call), the
    default confidence, the outcomes, and the COCO metrics, each on first use.
    So ``evaluate(ds).coco`` costs only the COCO evaluation.

    Attributes:
        iou: the IoU threshold.
        requested_confidence: the confidence asked for (None = the default).
    """

    iou: float = 0.5
    requested_confidence: float | None = None
    _shared: dict = field(default_factory=dict, repr=False)

    @classmethod
    def _build(cls, dataset: Dataset, iou: float, confidence: float | None, shared: dict) -> DetectionEvaluation:
        c = None if confidence is None else check_confidence(confidence)
        return cls(dataset=dataset, confidence_is_default=confidence is None, iou=check_iou(iou),
                   requested_confidence=c, _shared=shared)

    def _matched(self) -> tuple[Matching, Sweep]:
        """The matching at :attr:`iou` and its sweep, computed once per IoU for the whole call."""
        if self.iou not in self._shared:
            ds = self.dataset
            matching = match_detections(ds.gt, ds.pred, iou=self.iou, num_images=ds.num_images,
                                        num_classes=len(ds.categories), iou_type=self.iou_type)
            self._shared[self.iou] = (matching, detection_sweep(matching))
        return self._shared[self.iou]

    @property
    def matching(self) -> Matching:
        """The matching at :attr:`iou` (confidence-free), with :attr:`iou_type` overlaps."""
        return self._matched()[0]

    @property
    def sweep(self) -> Sweep:
        """P/R/F1 vs confidence at :attr:`iou`, overall and per class."""
        return self._matched()[1]

    @functools.cached_property
    def confidence(self) -> float:
        """The operating point's confidence: the one asked for, else the sweep's F1-optimal
        confidence (0.0 when nothing is predicted)."""
        if self.requested_confidence is not None:
            return self.requested_confidence
        best, _ = self.sweep.optimal()
        return 0.0 if math.isnan(best) else best

    @functools.cached_property
    def outcomes(self) -> ObjectOutcomes:
        """Every object's outcome at the operating point."""
        return resolve_outcomes(self.matching, confidence=self.confidence)

    def at(self, *, confidence: float | None = None, iou: float | None = None) -> DetectionEvaluation:
        """The evaluation at another operating point; None confidence = F1-optimal at that IoU.

        Same IoU: only the outcomes are re-derived (no re-matching).
        """
        return self._build(self.dataset, self.iou if iou is None else iou, confidence, self._shared)

    @property
    def iou_type(self) -> str:
        """``"bbox"`` or ``"segm"``: the overlap of the object outcomes and confusion matrix."""
        return self._shared.get("iou_type", "bbox")

    @property
    def coco_segm(self) -> CocoMetrics | None:
        """COCO mask AP/AR (pycocotools segm-equal), None without masks; computed once."""
        if "coco_segm" not in self._shared:
            from vecexplore.eval.segm import segm_metrics_of

            self._shared["coco_segm"] = segm_metrics_of(self.dataset)
        return self._shared["coco_segm"]

    @functools.cached_property
    def per_image(self) -> pd.DataFrame:
        """The per-image outcome table (see :func:`vecexplore.eval.outcomes.image_table`)."""
        return image_table(self.outcomes)

    @functools.cached_property
    def objects(self) -> pd.DataFrame:
        """The objects table (see :func:`vecexplore.eval.outcomes.objects_table`)."""
        return objects_table(self.outcomes)

    @functools.cached_property
    def confusion(self) -> ConfusionMatrix:
        """(K+1) × (K+1) confusion matrix with a background row and column."""
        return ConfusionMatrix.from_outcomes(self.outcomes, names=self.class_names)

    def confusion_of(self, images: np.ndarray) -> ConfusionMatrix:
        """The confusion matrix of a subset of images ((N,) bool mask or image_idx array)."""
        return ConfusionMatrix.from_outcomes(self.outcomes, names=self.class_names, images=images)

    @property
    def coco(self) -> CocoMetrics:
        """COCO AP/AR (pycocotools-equal), computed once per :func:`evaluate` call."""
        if "coco" not in self._shared:
            from vecexplore.eval.coco import coco_metrics_of

            self._shared["coco"] = coco_metrics_of(self.dataset)
        return self._shared["coco"]

    @functools.cached_property
    def class_columns(self) -> dict[str, np.ndarray]:
        """:attr:`class_table`'s columns as (K,) arrays (no pandas: the report and
        ``--json`` use these, so ``vecexplore evaluate`` never imports pandas)."""
        cats = self.dataset.categories
        cols = count_columns(self.outcomes.pred_counts(by="class"), self.outcomes.gt_counts(by="class"))
        data = {"class_idx": np.arange(len(cats), dtype=np.int64), "category_id": cats.ids,
                "name": self.class_names, **cols}
        data.update(rate_columns(cols["tp"], cols["fp"], cols["fn"]))
        return data

    def class_columns_with_ap(self) -> dict[str, np.ndarray]:
        """:attr:`class_columns` plus ``AP`` and ``AP50`` (NaN for classes without GT), and
        ``segm_AP``/``segm_AP50`` when the inputs carry masks."""
        cols = {**self.class_columns, "AP": self.coco.per_class_ap, "AP50": self.coco.per_class_ap50}
        if self.coco_segm is not None:
            cols.update(segm_AP=self.coco_segm.per_class_ap, segm_AP50=self.coco_segm.per_class_ap50)
        return cols

    @functools.cached_property
    def class_table(self) -> pd.DataFrame:
        """One row per class at the operating point.

        Columns: ``class_idx, category_id, name, n_gt, n_pred, n_ignored, tp, fp,
        fp_*, fn, fn_missed, precision, recall, f1, error_rate``; add AP / AP50
        with :meth:`with_ap`.
        """
        import pandas as pd

        return pd.DataFrame(self.class_columns)

    def with_ap(self) -> pd.DataFrame:
        """:attr:`class_table` plus ``AP`` and ``AP50`` (NaN for classes without GT)."""
        tab = self.class_table.copy()
        tab["AP"] = self.coco.per_class_ap
        tab["AP50"] = self.coco.per_class_ap50
        if self.coco_segm is not None:
            tab["segm_AP"] = self.coco_segm.per_class_ap
            tab["segm_AP50"] = self.coco_segm.per_class_ap50
        return tab

    @functools.cached_property
    def totals(self) -> dict[str, float]:
        """Dataset-level counts and rates at the operating point (keys as the per-image table)."""
        pc = self.outcomes.pred_counts(by="class").sum(axis=0, keepdims=True)
        gc = self.outcomes.gt_counts(by="class").sum(axis=0, keepdims=True)
        cols = count_columns(pc, gc)
        cols.update(rate_columns(cols["tp"], cols["fp"], cols["fn"]))
        return {k: (int(v[0]) if v.dtype.kind == "i" else float(v[0])) for k, v in cols.items()}

    @property
    def error_types(self) -> dict[str, int]:
        """Counts of each FP type and of pure misses (``ERROR_TYPE_NAMES``)."""
        t = self.totals
        counts = {key: t[code.label] for key, code in zip(ERROR_TYPE_NAMES[:-1], FP_TYPES, strict=True)}
        return {**counts, "missed": t["fn_missed"]}

    def to_json_dict(self) -> dict[str, Any]:
        """The ``--json`` document (keys exactly as the evaluation issue specifies; NaN → null)."""
        c = self.class_columns_with_ap()
        segm = self.coco_segm
        per_class = [
            {"category_id": int(c["category_id"][k]), "name": str(c["name"][k]), "AP": _num(c["AP"][k]),
             "AP50": _num(c["AP50"][k]),
             **({"segm_AP": _num(c["segm_AP"][k]), "segm_AP50": _num(c["segm_AP50"][k])} if segm is not None else {}),
             "precision": _num(c["precision"][k]), "recall": _num(c["recall"][k]),
             "f1": _num(c["f1"][k]), "tp": int(c["tp"][k]), "fp": int(c["fp"][k]), "fn": int(c["fn"][k])}
            for k in range(len(c["class_idx"]))
        ]
        t = self.totals
        best_c, best_f1 = self.optimal
        doc = {
            "task": "detection",
            # "as_given": the COCO numbers are pycocotools'; "clipped" (--clip): they are not.
            "boxes": "clipped" if self.dataset.boxes_clipped else "as_given",
            "coco": {k: _num(v) for k, v in self.coco.as_dict().items()},
            **({"coco_segm": {k: _num(v) for k, v in segm.as_dict().items()}} if segm is not None else {}),
            "per_class": per_class,
            "operating_point": {"iou": self.iou,
                                **({"iou_type": self.iou_type} if segm is not None else {}),  # a choice only with masks
                                "confidence": self.confidence, "precision": _num(t["precision"]),
                                "recall": _num(t["recall"]), "f1": _num(t["f1"])},
            "optimal_confidence": {"confidence": _num(best_c), "f1": _num(best_f1)},
            "error_types": self.error_types,
            "confusion_matrix": _matrix_json(self.confusion),
        }
        if self.dataset.boxes_clipped:
            doc["coco_note"] = CLIPPED_NOTE
        return doc


@dataclass(frozen=True, eq=False)
class ClassificationEvaluation(Evaluation):
    """A classification evaluation at one confidence threshold.

    Attributes:
        arrays: dense per-image ``label``, ``prediction`` (before the threshold),
            ``score``, ``margin`` (see :func:`vecexplore.eval.classification.image_arrays`).
        metrics: scikit-learn-equal metrics over the labelled images with an
            accepted prediction.
        accepted: (N,) int64 prediction at the threshold (-1 = none / abstained).
        confidence: the confidence threshold.
        sweep: P/R/F1 vs confidence, overall and per class.
    """

    confidence: float = 0.0
    sweep: Sweep | None = None
    arrays: dict = field(default_factory=dict, repr=False)
    metrics: cls_mod.ClassificationMetrics | None = None
    accepted: np.ndarray | None = None

    @classmethod
    def _build(cls, dataset: Dataset, arrays: dict, sweep: Sweep, confidence: float | None):
        default = confidence is None
        c = 0.0 if default else check_confidence(confidence)
        accepted = cls_mod.accepted_prediction(arrays["prediction"], arrays["score"], c)
        label = arrays["label"]
        use = (label >= 0) & (accepted >= 0)
        scores = None
        if dataset.pred.scores is not None:
            full = np.zeros((dataset.num_images, len(dataset.categories)))
            full[dataset.pred.image_idx] = dataset.pred.scores
            scores = full[use]
        metrics = cls_mod.classification_metrics(y_true=label[use], y_pred=accepted[use],
                                                 num_classes=len(dataset.categories), y_score=scores)
        return cls(dataset=dataset, confidence=c, confidence_is_default=default, sweep=sweep, arrays=arrays,
                   metrics=metrics, accepted=accepted)

    def at(self, *, confidence: float | None = None, iou: float | None = None) -> ClassificationEvaluation:
        """The evaluation at another confidence (None = 0.0)."""
        if iou is not None:
            raise ConfigError("iou applies to detection only; this is a classification dataset")
        return self._build(self.dataset, self.arrays, self.sweep, confidence)

    @functools.cached_property
    def per_image(self) -> pd.DataFrame:
        """The classification per-image table at the threshold."""
        return cls_mod.image_table(self.arrays, confidence=self.confidence)

    @functools.cached_property
    def confusion(self) -> ConfusionMatrix:
        """K × K confusion matrix over labelled images with an accepted prediction."""
        return ConfusionMatrix.from_labels(label=self.arrays["label"], prediction=self.accepted,
                                           names=self.class_names, image_id=self.dataset.images.image_id)

    def confusion_of(self, images: np.ndarray) -> ConfusionMatrix:
        return self.confusion.subset(images)

    @property
    def coverage(self) -> tuple[int, int]:
        """(labelled images with an accepted prediction, labelled images)."""
        return self.metrics.n, int((self.arrays["label"] >= 0).sum())

    def to_json_dict(self) -> dict[str, Any]:
        """The ``--json`` document for classification (NaN → null)."""
        m, cats = self.metrics, self.dataset.categories
        per_class = [
            {"category_id": int(cats.ids[k]), "name": str(cats.names[k]), "precision": _num(m.precision[k]),
             "recall": _num(m.recall[k]), "f1": _num(m.f1[k]), "support": int(m.support[k])}
            for k in range(len(cats))
        ]
        return {
            "task": "classification",
            "accuracy": _num(m.accuracy),
            "per_class": per_class,
            "macro": {k: _num(v) for k, v in m.macro.items()},
            "weighted": {k: _num(v) for k, v in m.weighted.items()},
            "confusion_matrix": _matrix_json(self.confusion),
        }


def _num(v) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


def _matrix_json(cm: ConfusionMatrix) -> dict[str, Any]:
    return {"labels": list(cm.labels), "matrix": cm.counts.tolist()}
