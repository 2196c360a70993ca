"""What colours the scatter: one float value per image for each colour-by mode (pure, Bokeh-free).

Every mode gives one ``(N,) float32`` column, so a mode change or a slider move
re-sends one binary column and nothing else. Continuous modes map the value
through a linear colour map between ``low`` and ``high``; categorical modes
give integer codes ``0..F-1`` (drawn with an F-colour palette over
``[-0.5, F - 0.5]``) named by ``factors``. NaN = no value (drawn grey).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vecexplore.app.state import ImageOutcomes
from vecexplore.eval.outcomes import ERROR_TYPE_NAMES

DETECTION_MODES: tuple[tuple[str, str], ...] = (
    ("error_rate", "Error rate"), ("fp", "False positives"), ("fn", "False negatives"),
    ("error_type", "Dominant error type"), ("cluster", "Cluster"), ("gt_class", "GT class"),
    ("pred_class", "Predicted class"), ("confidence", "Confidence (max score)"),
    ("label_issue", "Label-issue score"), ("unreadable", "Unreadable"),
)  # fmt: skip
CLASSIFICATION_MODES: tuple[tuple[str, str], ...] = (
    ("correct", "Correct / incorrect"), ("cluster", "Cluster"), ("gt_class", "GT class"),
    ("pred_class", "Predicted class"), ("confidence", "Confidence (score)"),
    ("label_issue", "Label-issue score"), ("unreadable", "Unreadable"),
)  # fmt: skip

#: Modes whose values change with the operating point.
DYNAMIC_MODES = frozenset({"error_rate", "fp", "fn", "error_type", "pred_class", "confidence", "correct"})


#: The mode a comparison run adds (``vecexplore compare``): fixed / regressed / both wrong / both right.
CHANGE_MODE: tuple[str, str] = ("change", "Change A → B")


#: The mode a run with trained weights adds: similarity to the phrase of the last text search.
TEXT_MODE: tuple[str, str] = ("text", "Similarity to the phrase")


def modes(task: str, *, comparison: bool = False, text: bool = False) -> tuple[tuple[str, str], ...]:
    """(value, label) of the colour-by modes of a task, the default first (a comparison run adds
    "change"; a run whose text search is on, :mod:`vecexplore.text_search`, adds "text")."""
    base = DETECTION_MODES if task == "detection" else CLASSIFICATION_MODES
    return (*base, *((CHANGE_MODE,) if comparison else ()), *((TEXT_MODE,) if text else ()))


@dataclass(frozen=True, eq=False)
class Colouring:
    """One colour-by mode's values.

    Attributes:
        mode: the mode.
        title: what the colour bar says.
        values: (N,) float32; categorical: codes 0..F-1; NaN = no value.
        categorical: codes (True) or a continuous value (False).
        factors: (F,) names of the codes (categorical), () otherwise.
        low, high: the colour map's range.
        palette: "error" (good → bad), "sequential" or "categorical".
    """

    mode: str
    title: str
    values: np.ndarray
    categorical: bool
    factors: tuple[str, ...]
    low: float
    high: float
    palette: str


def dominant_pred_class(image_idx: np.ndarray, class_idx: np.ndarray, counted: np.ndarray,
                        num_images: int, num_classes: int) -> np.ndarray:
    """(N,) int64 most frequent class among an image's counted predictions (ties: lower class), -1 = none.

    Args:
        image_idx, class_idx: (n,) per prediction.
        counted: (n,) bool, the prediction exists at the operating point (≥ confidence, not ignored).
    """
    out = np.full(num_images, -1, np.int64)
    k = max(int(num_classes), 1)
    img, cls = np.asarray(image_idx)[counted], np.asarray(class_idx)[counted]
    if img.size == 0:
        return out
    keys, counts = np.unique(img.astype(np.int64) * k + cls, return_counts=True)
    ki, kc = keys // k, keys % k
    order = np.lexsort((kc, -counts, ki))
    first = order[np.r_[True, ki[order][1:] != ki[order][:-1]]]
    out[ki[first]] = kc[first]
    return out


def _codes(codes: np.ndarray) -> np.ndarray:
    codes = np.asarray(codes)
    return np.where(codes >= 0, codes, np.nan).astype(np.float32)


def colour_values(mode: str, *, outcomes: ImageOutcomes, cluster: np.ndarray, gt_class: np.ndarray,
                  readable: np.ndarray, score: np.ndarray, class_names: Sequence[str],
                  pred_class: np.ndarray | None = None, label_issue: np.ndarray | None = None,
                  comparison=None, text: np.ndarray | None = None) -> Colouring:
    """The colour column of ``mode`` (see :data:`DETECTION_MODES` / :data:`CLASSIFICATION_MODES`).

    Args:
        outcomes: per-image outcomes at the operating point.
        cluster: (N,) int64 cluster (-1 = noise → NaN).
        gt_class: (N,) int64 image's GT class (-1 = none → NaN).
        readable: (N,) bool.
        score: (N,) float64 confidence at the operating point (NaN = none).
        class_names: (K,) names.
        pred_class: (N,) int64 predicted class at the operating point (-1 = none);
            required for "pred_class" (detection: :func:`dominant_pred_class`;
            classification: ``outcomes.prediction`` is used when None).
        label_issue: (N,) float64 the image's highest label-issue score (0 = none), required
            for "label_issue" (:func:`vecexplore.analysis.label_issues.image_scores`; the build's
            operating point, so it does not follow the slider).
        comparison: the run's :class:`~vecexplore.app.comparison.Comparison`; required for "change".
        text: (N,) similarity to the session's phrase (NaN = no embedding) for "text"; None = no
            phrase yet (every point grey). The colour map spans the 1st to 99th percentile.
    """
    names = tuple(str(n) for n in class_names)
    if mode == "error_rate":
        return Colouring(mode, "Error rate", outcomes.error_rate.astype(np.float32), False, (), 0.0, 1.0, "error")
    if mode in ("fp", "fn"):
        v = (outcomes.fp if mode == "fp" else outcomes.fn).astype(np.float32)
        top = float(max(1.0, np.percentile(v, 99.5) if v.size else 1.0))
        title = "False positives" if mode == "fp" else "False negatives"
        return Colouring(mode, title, v, False, (), 0.0, top, "error")
    if mode == "error_type":
        types = ("none", *ERROR_TYPE_NAMES)
        return Colouring(mode, "Dominant error", (outcomes.error_type + 1).astype(np.float32), True, types,
                         -0.5, len(types) - 0.5, "error_type")
    if mode == "correct":
        label, pred = outcomes.label, outcomes.prediction
        codes = np.where(outcomes.correct, 0, np.where(pred >= 0, 1, 2))
        codes = np.where(label < 0, 3, codes)
        factors = ("correct", "incorrect", "no prediction", "unlabelled")
        return Colouring(mode, "Outcome", codes.astype(np.float32), True, factors, -0.5, 3.5, "correct")
    if mode == "cluster":
        n = int(cluster.max()) + 1 if cluster.size and cluster.max() >= 0 else 0
        return Colouring(mode, "Cluster (grey = noise)", _codes(cluster), True, tuple(str(i) for i in range(n)),
                         -0.5, n - 0.5, "categorical")
    if mode in ("gt_class", "pred_class"):
        if mode == "gt_class":
            codes, title = gt_class, "GT class"
        else:
            codes = outcomes.prediction if pred_class is None else pred_class
            if codes is None:
                raise ValueError("pred_class colouring needs the predicted class per image")
            title = "Predicted class"
        return Colouring(mode, f"{title} (grey = none)", _codes(codes), True, names, -0.5, len(names) - 0.5,
                         "categorical")
    if mode == "confidence":
        return Colouring(mode, "Confidence", np.asarray(score, np.float32), False, (), 0.0, 1.0, "sequential")
    if mode == "label_issue":
        if label_issue is None:
            raise ValueError("label_issue colouring needs the label-issue score per image")
        return Colouring(mode, "Label-issue score (how likely the GT is wrong)", np.asarray(label_issue, np.float32),
                         False, (), 0.0, 1.0, "error")
    if mode == "unreadable":
        return Colouring(mode, "Readable", (~np.asarray(readable, bool)).astype(np.float32), True,
                         ("readable", "unreadable"), -0.5, 1.5, "readable")
    if mode == "text":
        if text is None:
            return Colouring(mode, "Similarity to the phrase (search one in the Query tab)",
                             np.full(len(readable), np.nan, np.float32), False, (), 0.0, 1.0, "sequential")
        v = np.asarray(text, np.float32)
        finite = v[np.isfinite(v)]
        low, high = (float(np.percentile(finite, 1)), float(np.percentile(finite, 99))) if finite.size else (0.0, 1.0)
        return Colouring(mode, "Similarity to the phrase (cosine)", v, False, (), low, max(high, low + 1e-6),
                         "sequential")
    if mode == "change":
        if comparison is None:
            raise ValueError("change colouring needs a comparison run")
        from vecexplore.app.comparison import change_colouring

        return change_colouring(comparison)
    raise ValueError(f"unknown colour mode {mode!r}")


def confidence_at(max_score: np.ndarray, confidence: float) -> np.ndarray:
    """(N,) float64 the image's score where it is ≥ ``confidence`` (it exists at the operating point), else NaN."""
    s = np.asarray(max_score, np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(s >= confidence, s, np.nan)


def pack_outcomes(outcomes: ImageOutcomes) -> np.ndarray:
    """(N,) uint32 the hover reads: detection TP | FP << 10 | FN << 20 (each saturated at 1023);
    classification (label + 1) | (prediction + 1) << 16 (0 = none)."""
    if outcomes.task == "detection":
        tp, fp, fn = (np.minimum(a, 1023).astype(np.uint32) for a in (outcomes.tp, outcomes.fp, outcomes.fn))
        return tp | (fp << np.uint32(10)) | (fn << np.uint32(20))
    label = (outcomes.label + 1).astype(np.uint32)
    pred = (outcomes.prediction + 1).astype(np.uint32)
    return label | (pred << np.uint32(16))


__all__ = [
    "CLASSIFICATION_MODES", "DETECTION_MODES", "DYNAMIC_MODES", "Colouring", "colour_values",
    "confidence_at", "dominant_pred_class", "modes", "pack_outcomes",
]  # fmt: skip
