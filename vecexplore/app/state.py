"""The app's selection and view state, and every number a view shows: pure, Bokeh-free.

One session has one :class:`SessionState`. Every way of choosing images — a
lasso, box or tap in the scatter, a confusion-matrix cell, a cluster row, the
"unreadable" button — sets the same *pick* (a sorted ``image_idx`` array); the
class and split filters restrict the images that count (the *universe*). The
**selection** is ``pick ∩ universe``:

* nothing picked, no filter → no selection (``None``: views show the whole run);
* nothing picked, a filter → every image that passes the filter;
* a pick → the picked images that pass the filter.

At the object level (a run with an object map, :mod:`vecexplore.app.objects`) a
pick can also name *objects*: ``objects`` holds the picked rows of the objects
table and ``pick`` the images they are on, so every image view (header, matrix
of the selection, export) keeps working on the images of an object selection.

The functions below derive what each view shows from the state and from the
evaluation at the session's operating point; the Bokeh side only copies their
results into sources. All arrays are NumPy, (N,) in image_idx order unless
stated otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from vecexplore.eval.outcomes import (
    ERROR_TYPE_NAMES,
    ERROR_TYPES,
    FP_TYPES,
    GtOutcome,
    rate_columns,
)
from vecexplore.rates import precision_recall_f1

SortKey = Literal["error", "confidence_desc", "confidence_asc", "text"]
SORT_KEYS: tuple[str, ...] = ("error", "confidence_desc", "confidence_asc", "text")
MatrixMode = Literal["raw", "row"]
MatrixScope = Literal["selection", "run"]
SelectMode = Literal["replace", "add", "intersect", "subtract"]
Level = Literal["images", "objects"]
LEVELS: tuple[str, ...] = ("images", "objects")
SELECT_MODES: tuple[str, ...] = ("replace", "add", "intersect", "subtract")
PER_PAGE = 24
#: Selections remembered for back / forward.
HISTORY = 50

#: Detection error types per image (dominant one colours the scatter), ties → first.


@dataclass(frozen=True)
class Focus:
    """Which objects explain why an image is in the selection (the gallery draws those boxes).

    Codes are :class:`~vecexplore.eval.outcomes.GtOutcome` / ``PredOutcome`` values;
    a class of None means any class.
    """

    gt: frozenset[int] = frozenset()
    pred: frozenset[int] = frozenset()
    gt_class: int | None = None
    pred_class: int | None = None


#: Every error: missed and confused GT, every false-positive type.
ALL_ERRORS = Focus(gt=frozenset({int(GtOutcome.FN), int(GtOutcome.CONFUSED)}), pred=frozenset(int(t) for t in FP_TYPES))


@dataclass(frozen=True, eq=False)
class Entry:
    """One selection of the history: the pick (None = nothing picked), how it was made, its focus,
    the marks of the elements that made it, and the picked objects (None = an image pick)."""

    pick: np.ndarray | None
    how: str = ""
    focus: Focus = ALL_ERRORS
    marks: tuple[tuple[str, object], ...] = ()
    objects: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Export:
    """What the last export did: ``text`` (plain) and, on success, the written ``path`` and the
    ``url`` it downloads from. ``images`` is the selection it exported: once the selection
    differs, the page says the new selection is not exported yet."""

    text: str
    images: np.ndarray | None
    error: bool = False
    path: str = ""
    url: str = ""
    serial: int = 0


@dataclass(frozen=True, eq=False)
class SessionState:
    """Everything one browser session has chosen. Immutable; use :func:`dataclasses.replace`.

    Attributes:
        num_images: N, the run's image count (constant; a subtraction from "everything" needs it).
        iou, confidence: the operating point.
        pick: sorted unique int64 image_idx the user picked; None = nothing picked. An empty
            array is a real, empty selection (an intersection that left nothing), never "all".
        pick_how: what made the pick ("lasso", "cluster 3", "cell cat → dog", ...).
        focus: the objects that explain the pick (:class:`Focus`).
        marks: ``(view name, element)`` of what made the pick (a matrix cell index, a cluster id,
            a class-bar segment), so that view keeps it outlined; several after an add.
        select_mode: how a new pick combines with the current one (a shift-click always adds).
        history, history_pos: the selections made so far (:class:`Entry`), and which is current.
        classes: class_idx filter (empty = every class).
        splits: split filter (empty = every split).
        colour: the scatter's colour-by mode (see :mod:`vecexplore.app.colouring`).
        matrix_mode: "raw" counts or "row"-normalised.
        matrix_scope: "selection" (the matrix of the selection) or "run" (the whole run's).
        sort: gallery order; page: gallery page (0-based; clamped where it is shown).
        phrase: the last text search ("" = none): the "text" gallery order and colour-by mode use it.
        gallery_shape: (columns, rows) of thumbnails a gallery page shows (it follows the panel's size).
        detail: image_idx in the detail view, -1 = none.
        tab: index of the visible analysis tab; views of hidden tabs catch up when shown.
        curve_scope: the P/R/F1 curve of the "selection" (the whole run when nothing is
            selected) or of the whole "run".
        curve_class: class_idx of the curve, -1 = every class.
        bar_classes: class_idx shown in the performance-by-class chart; empty = the classes
            with the most errors.
        pr_classes: class_idx of the PR curves; empty = the classes with the most ground truth.
        prop: the property of the performance-by-property chart; "" = the view's default.
        export: the last export (:class:`Export`), or None.
        detail_model: a comparison run's detail view draws model "a"'s or model "b"'s predictions.
        level: "images" or "objects": what the scatter, the gallery and the slice table show
            (objects only for a run with an object map).
        objects: sorted unique int64 rows of the objects table the user picked (an object
            selection; ``pick`` is then their images); None = the pick is of images (or nothing).
        object_image: (M,) int64 image_idx of every objects-table row (constant, read-only; None
            for a run without an object map): what turns an object pick into its images.
        detail_object: the objects-table row highlighted in the detail view, -1 = none.
    """

    iou: float
    confidence: float
    num_images: int = 0
    pick: np.ndarray | None = None
    pick_how: str = ""
    focus: Focus = ALL_ERRORS
    marks: tuple[tuple[str, object], ...] = ()
    select_mode: SelectMode = "replace"
    history: tuple[Entry, ...] = (Entry(None),)
    history_pos: int = 0
    classes: tuple[int, ...] = ()
    splits: tuple[str, ...] = ()
    colour: str = "error_rate"
    matrix_mode: MatrixMode = "raw"
    matrix_scope: MatrixScope = "selection"
    sort: SortKey = "error"
    phrase: str = ""
    page: int = 0
    gallery_shape: tuple[int, int] = (8, 3)
    detail: int = -1
    tab: int = 0
    curve_scope: MatrixScope = "selection"
    curve_class: int = -1
    bar_classes: tuple[int, ...] = ()
    pr_classes: tuple[int, ...] = ()
    prop: str = ""
    export: Export | None = None
    detail_model: Literal["a", "b"] = "a"
    level: Level = "images"
    objects: np.ndarray | None = None
    object_image: np.ndarray | None = None
    detail_object: int = -1

    def with_pick(self, image_idx: np.ndarray | Sequence[int] | None, how: str = "",
                  focus: Focus = ALL_ERRORS, marks: tuple = (),
                  objects: np.ndarray | Sequence[int] | None = None) -> SessionState:
        """A new pick (sorted, unique; None = nothing picked, empty = an empty selection), recorded
        in the history (forward entries are dropped); the gallery returns to page 0.

        With ``objects`` (rows of the objects table), the pick is of those objects and
        ``image_idx`` is ignored: the picked images are the objects' images."""
        if objects is not None:
            if self.object_image is None:
                raise ValueError("this run has no object map: an object pick needs one")
            objects = sorted_unique(objects)
            image_idx = sorted_unique(self.object_image[objects])
        pick = None if image_idx is None else sorted_unique(image_idx)
        how, marks = (how, tuple(marks)) if pick is not None else ("", ())
        entry = Entry(pick, how, focus, marks, objects)
        history = (*self.history[: self.history_pos + 1], entry)[-HISTORY:]
        return replace(self, pick=pick, pick_how=how, focus=focus, marks=marks, objects=objects, page=0,
                       history=history, history_pos=len(history) - 1)

    @property
    def num_objects(self) -> int:
        return 0 if self.object_image is None else len(self.object_image)

    def objects_of_pick(self) -> np.ndarray | None:
        """The objects the current pick stands for: the picked objects, or (an image pick) every
        object on the picked images; None when nothing is picked."""
        if self.objects is not None:
            return self.objects
        if self.pick is None or self.object_image is None:
            return None
        return np.flatnonzero(np.isin(self.object_image, self.pick)).astype(np.int64)

    def marked(self, view: str) -> list:
        """The elements of ``view`` that made the current pick."""
        return [m for v, m in self.marks if v == view]

    def at_history(self, pos: int) -> SessionState:
        """The state with history entry ``pos`` (clamped) as the current selection."""
        pos = min(max(int(pos), 0), len(self.history) - 1)
        e = self.history[pos]
        return replace(self, pick=e.pick, pick_how=e.how, focus=e.focus, marks=e.marks, objects=e.objects, page=0,
                       history_pos=pos)

    def with_filters(self, *, classes: Sequence[int] | None = None, splits: Sequence[str] | None = None) -> SessionState:
        """New class and/or split filters (None keeps the current one); the gallery returns to page 0."""
        return replace(
            self,
            classes=self.classes if classes is None else tuple(sorted({int(c) for c in classes})),
            splits=self.splits if splits is None else tuple(sorted({str(s) for s in splits})),
            page=0,
        )

    @property
    def per_page(self) -> int:
        return max(1, self.gallery_shape[0] * self.gallery_shape[1])

    @property
    def filtered(self) -> bool:
        return bool(self.classes or self.splits)


def sorted_unique(values) -> np.ndarray:
    """``values`` as sorted unique int64 (a new array). A sort and a neighbour comparison: numpy 2's
    hash-based ``np.unique`` took 200 ms on a 300k-image lasso, most of the selection's update."""
    a = np.sort(np.asarray(values, np.int64).ravel())
    return a[np.r_[True, a[1:] != a[:-1]]] if a.size else a


def combine(current: np.ndarray | None, images: np.ndarray, mode: str, num_images: int) -> np.ndarray:
    """The pick that ``images`` makes under ``mode`` given the ``current`` pick (None = nothing picked,
    i.e. every image for intersect and subtract). Sorted unique int64."""
    images = sorted_unique(images)
    if mode == "replace" or (current is None and mode in ("add", "intersect")):
        return images
    if mode == "add":
        return np.union1d(current, images)
    if mode == "intersect":
        return np.intersect1d(current, images, assume_unique=True)
    if mode == "subtract":
        base = np.arange(num_images, dtype=np.int64) if current is None else current
        return np.setdiff1d(base, images, assume_unique=True)
    raise ValueError(f"unknown selection mode {mode!r}; choose one of {SELECT_MODES}")


# ---------------------------------------------------------------- selection


def class_mask(classes: Sequence[int], num_images: int,
               *pairs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(N,) bool: images with at least one object (or label) of one of ``classes``.

    Args:
        classes: class_idx to keep.
        num_images: N.
        pairs: any number of ``(image_idx, class_idx)`` array pairs, e.g. the
            non-crowd GT and the counted predictions at the operating point.
    """
    mask = np.zeros(num_images, bool)
    wanted = np.asarray(list(classes), dtype=np.int64)
    for image_idx, class_idx in pairs:
        hit = np.isin(np.asarray(class_idx), wanted)
        mask[np.asarray(image_idx)[hit]] = True
    return mask


def universe(state: SessionState, *, num_images: int, split: np.ndarray | None,
             class_pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray | None:
    """(N,) bool mask of the images that pass the state's filters; None = no filter."""
    if not state.filtered:
        return None
    mask = np.ones(num_images, bool)
    if state.classes:
        mask &= class_mask(state.classes, num_images, *class_pairs)
    if state.splits:
        if split is None:
            mask[:] = False
        else:
            mask &= np.isin(np.asarray(split, dtype=object).astype(str), list(state.splits))
    return mask


def selection_of(pick: np.ndarray | None, universe_mask: np.ndarray | None) -> np.ndarray | None:
    """The selection ``pick ∩ universe`` (sorted int64 image_idx), None = no selection (see module doc).
    An empty pick gives an empty selection: nothing is selected, which is not the whole run."""
    if pick is None:
        return None if universe_mask is None else np.flatnonzero(universe_mask).astype(np.int64)
    if universe_mask is None:
        return pick
    return pick[universe_mask[pick]]


def describe(state: SessionState, class_names: Sequence[str]) -> str:
    """A short description of the selection, for export file names and titles."""
    parts = []
    if state.pick is not None or state.pick_how:
        parts.append(state.pick_how or "picked")
    if state.classes:
        names = ", ".join(str(class_names[c]) for c in state.classes)
        parts.append(f"class{'es' if len(state.classes) > 1 else ''} {names}")
    if state.splits:
        parts.append(f"split{'s' if len(state.splits) > 1 else ''} {', '.join(state.splits)}")
    return " · ".join(parts) or "all images"


# ---------------------------------------------------------------- outcomes at the operating point


@dataclass(frozen=True, eq=False)
class ImageOutcomes:
    """Per-image outcomes at one operating point, (N,) arrays.

    Attributes:
        task: "detection" or "classification".
        error_rate: float64 in [0, 1] (DESIGN.md's per-image error rate; classification 1 - correct).
        tp, fp, fn: int64 (classification: correct, accepted-but-wrong, labelled-but-not-correct).
        error_type: int64 index into :data:`ERROR_TYPE_NAMES` of the dominant error, -1 = none
            (classification: 0 = misclassified, 1 = no prediction, -1 = correct or unlabelled).
        label, prediction: int64 class_idx (classification; prediction -1 below the threshold);
            None for detection.
        correct: bool (classification), None for detection.
    """

    task: str
    error_rate: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    error_type: np.ndarray
    label: np.ndarray | None = None
    prediction: np.ndarray | None = None
    correct: np.ndarray | None = None
    extra: dict = field(default_factory=dict, repr=False)


def _dominant_type(counts: list[np.ndarray]) -> np.ndarray:
    """Per image the index of the largest of ``counts`` (the first on ties, as argmax), -1 where all are 0.

    One comparison per column: argmax along the short axis of the stacked (N, 7) table took
    ~9 ms at 100k images, most of a slider move's budget."""
    best = counts[0].copy()
    dominant = np.zeros(len(best), np.int64)
    for t, c in enumerate(counts[1:], start=1):
        more = c > best
        dominant[more] = t
        np.maximum(best, c, out=best)
    dominant[best <= 0] = -1
    return dominant


def image_outcomes(per_image) -> ImageOutcomes:
    """:class:`ImageOutcomes` from an evaluation's ``per_image`` table (either task)."""
    er = per_image["error_rate"].to_numpy(np.float64)
    if "tp" in per_image:
        dominant = _dominant_type([per_image[c].to_numpy(np.int64) for c in ERROR_TYPES])
        return ImageOutcomes(task="detection", error_rate=er, tp=per_image["tp"].to_numpy(np.int64),
                             fp=per_image["fp"].to_numpy(np.int64), fn=per_image["fn"].to_numpy(np.int64),
                             error_type=dominant)
    label = per_image["label"].to_numpy(np.int64)
    pred = per_image["prediction"].to_numpy(np.int64)
    correct = per_image["correct"].to_numpy(bool)
    labelled = label >= 0
    wrong = (pred >= 0) & ~correct
    error_type = np.where(labelled & wrong, 0, np.where(labelled & (pred < 0), 1, -1)).astype(np.int64)
    return ImageOutcomes(task="classification", error_rate=er, tp=correct.astype(np.int64),
                         fp=wrong.astype(np.int64), fn=(labelled & ~correct).astype(np.int64),
                         error_type=error_type, label=label, prediction=pred, correct=correct)


# ---------------------------------------------------------------- gallery


@dataclass(frozen=True, eq=False)
class GalleryPage:
    """One page of the gallery: ``image_idx`` (≤ per_page,) int64 in display order."""

    image_idx: np.ndarray
    page: int
    pages: int
    total: int


def gallery_order(candidates: np.ndarray, *, sort: SortKey, error_rate: np.ndarray,
                  score: np.ndarray, text: np.ndarray | None = None) -> np.ndarray:
    """``candidates`` in gallery order.

    "error": error rate descending; "confidence_desc" / "confidence_asc": score
    (NaN = no prediction) descending / ascending with NaN last; "text": similarity to
    the session's phrase (``text``, :mod:`vecexplore.text_search`) descending, NaN last
    (no phrase: every image ties). Ties: image_idx ascending (the sort is stable on
    sorted candidates).
    """
    cand = np.sort(np.asarray(candidates, np.int64))
    return cand[np.argsort(_sort_key(cand, sort, error_rate, score, text), kind="stable")]


def _sort_key(cand: np.ndarray, sort: str, error_rate: np.ndarray, score: np.ndarray,
              text: np.ndarray | None = None) -> np.ndarray:
    """Ascending float key of ``cand`` for a gallery sort (NaN scores → +inf, i.e. last)."""
    if sort == "error":
        return -error_rate[cand]
    if sort in ("confidence_desc", "confidence_asc"):
        s = score[cand]
        return np.where(np.isnan(s), np.inf, -s if sort == "confidence_desc" else s)
    if sort == "text":
        if text is None:
            return np.zeros(len(cand))
        t = np.asarray(text, np.float64)[cand]
        return np.where(np.isnan(t), np.inf, -t)
    raise ValueError(f"unknown gallery sort {sort!r}; choose one of {SORT_KEYS}")


def gallery_page(candidates: np.ndarray, *, sort: SortKey, page: int, error_rate: np.ndarray,
                 score: np.ndarray, per_page: int = PER_PAGE, text: np.ndarray | None = None) -> GalleryPage:
    """Page ``page`` (clamped to the last page) of ``candidates`` in :func:`gallery_order`.

    Only the images up to the end of the page are sorted (a partition finds
    them), so early pages of a 100k selection cost O(n), not O(n log n).
    """
    total = len(candidates)
    pages = max(1, -(-total // per_page))
    page = int(min(max(page, 0), pages - 1))
    end = (page + 1) * per_page
    cand = np.asarray(candidates, np.int64)
    if end < total // 4:
        key = _sort_key(cand, sort, error_rate, score, text)
        kth = np.partition(key, end - 1)[end - 1]
        cand = cand[key <= kth]  # the first `end` in order, plus every tie of the last one
    ordered = gallery_order(cand, sort=sort, error_rate=error_rate, score=score, text=text)
    return GalleryPage(image_idx=ordered[page * per_page:end], page=page, pages=pages, total=total)


# ---------------------------------------------------------------- header


def detection_summary(outcomes: ImageOutcomes, images: np.ndarray | None = None) -> dict[str, float]:
    """Pooled counts and rates over ``images`` (image_idx; None = all).

    Keys: ``images, tp, fp, fn, precision, recall, f1, error_rate`` (error_rate =
    the mean per-image error rate, as clusters are scored). Precision, recall
    and F1 follow :func:`vecexplore.eval.outcomes.rate_columns` (NaN when undefined).
    """
    sel = slice(None) if images is None else np.asarray(images, np.int64)
    tp, fp, fn = (int(a[sel].sum()) for a in (outcomes.tp, outcomes.fp, outcomes.fn))
    rates = rate_columns(np.array([tp]), np.array([fp]), np.array([fn]))
    er = outcomes.error_rate[sel]
    return {"images": int(er.size), "tp": tp, "fp": fp, "fn": fn,
            "precision": float(rates["precision"][0]), "recall": float(rates["recall"][0]),
            "f1": float(rates["f1"][0]), "error_rate": float(er.mean()) if er.size else float("nan")}


def classification_per_class(outcomes: ImageOutcomes, num_classes: int,
                             images: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per class (K,) over the labelled images of ``images`` (None = all), a rejected prediction
    (below the confidence threshold) counting as a prediction of no class: ``support`` (labelled),
    ``predicted`` (accepted predictions of the class), ``correct``, ``precision`` = correct /
    predicted, ``recall`` = correct / support, ``f1`` (0 where undefined, as scikit-learn's
    ``zero_division=0``), ``present`` (labelled or predicted)."""
    sel = np.arange(len(outcomes.label)) if images is None else np.asarray(images, np.int64)
    label, pred, correct = outcomes.label[sel], outcomes.prediction[sel], outcomes.correct[sel]
    labelled = label >= 0
    label, pred, correct = label[labelled], pred[labelled], correct[labelled]
    k = max(int(num_classes), 1)
    tp = np.bincount(label[correct], minlength=k)
    support = np.bincount(label, minlength=k)
    predicted = np.bincount(pred[pred >= 0], minlength=k)
    # scikit-learn's zero_division=0; F1 = 2·tp / (support + predicted) as sklearn computes it
    precision, recall, f1 = precision_recall_f1(tp, predicted - tp, support - tp, empty=0.0)
    return {"support": support, "predicted": predicted, "correct": tp, "precision": precision, "recall": recall,
            "f1": f1, "present": (support > 0) | (predicted > 0)}


def classification_summary(outcomes: ImageOutcomes, num_classes: int,
                           images: np.ndarray | None = None) -> dict[str, float]:
    """Metrics over the labelled images of ``images`` (None = all), a rejected prediction (below the
    confidence threshold) counting as wrong, as a detector's missed object does.

    Keys: ``images, labelled, accepted, correct, incorrect``; ``accuracy`` = correct / labelled;
    ``coverage`` = accepted / labelled; ``macro_precision / macro_recall / macro_f1``: the means of
    :func:`classification_per_class` over the classes that are labelled or predicted
    (scikit-learn's ``macro`` with a rejection as a prediction of no class). NaN where the
    denominator is 0.
    """
    sel = np.arange(len(outcomes.label)) if images is None else np.asarray(images, np.int64)
    pc = classification_per_class(outcomes, num_classes, sel)
    n = int(pc["support"].sum())
    accepted = int(pc["predicted"].sum())
    n_correct = int(pc["correct"].sum())
    nan = float("nan")
    present = pc["present"]

    def macro(v):
        return float(v[present].mean()) if present.any() else nan

    return {"images": int(sel.size), "labelled": n, "accepted": accepted, "correct": n_correct,
            "incorrect": n - n_correct, "accuracy": n_correct / n if n else nan,
            "coverage": accepted / n if n else nan, "macro_f1": macro(pc["f1"]),
            "macro_precision": macro(pc["precision"]), "macro_recall": macro(pc["recall"])}


# ---------------------------------------------------------------- confusion matrix


def displayed_matrix(evaluation, selection: np.ndarray | None, scope: MatrixScope):
    """The :class:`~vecexplore.eval.confusion.ConfusionMatrix` the panel shows.

    Scope "run" or no selection: the whole run's; scope "selection": the
    selection's (``evaluation.confusion_of(selection)``).
    """
    if scope == "run" or selection is None:
        return evaluation.confusion
    return evaluation.confusion_of(np.asarray(selection, np.int64))


def matrix_cells(cm, mode: MatrixMode) -> dict[str, np.ndarray]:
    """One entry per cell (L*L, row-major) for the heatmap.

    Keys: ``row, col`` (int64; rows = GT, columns = prediction, last = background
    for detection), ``count`` (int64), ``fraction`` (float64, count / row sum; 0
    for an empty row), ``value`` (float64 shown: count or fraction), ``text``
    (object str; "" for zero cells), ``error`` (bool, off-diagonal or background),
    ``shade`` (float64 in [0, 1] for the colour: fraction of the row for "row",
    count / largest count of its kind — correct or error — for "raw", on a
    square-root scale so small counts stay visible).
    """
    counts = np.asarray(cm.counts, np.int64)
    n = counts.shape[0]
    row, col = np.divmod(np.arange(n * n, dtype=np.int64), n)
    count = counts.reshape(-1)
    fraction = cm.normalized("gt").reshape(-1)
    error = row != col
    if cm.has_background:
        error |= (row == n - 1) | (col == n - 1)
    if mode == "row":
        value, shade = fraction, fraction.copy()
        text = np.array([f"{v:.2f}" if c else "" for v, c in zip(fraction, count, strict=True)], object)
    elif mode == "raw":
        value = count.astype(np.float64)
        shade = np.zeros(n * n)
        for kind in (error, ~error):
            top = count[kind].max() if kind.any() else 0
            if top > 0:
                shade[kind] = np.sqrt(count[kind] / top)
        text = np.array([str(c) if c else "" for c in count], object)
    else:
        raise ValueError(f"unknown matrix mode {mode!r}; choose 'raw' or 'row'")
    return {"row": row, "col": col, "count": count, "fraction": fraction, "value": value, "text": text,
            "error": error, "shade": shade}


__all__ = [
    "ALL_ERRORS", "ERROR_TYPES", "ERROR_TYPE_NAMES", "LEVELS", "PER_PAGE", "SELECT_MODES", "SORT_KEYS", "Entry", "Focus",
    "GalleryPage", "ImageOutcomes", "SessionState", "class_mask", "classification_per_class", "classification_summary",
    "combine", "describe",
    "detection_summary",
    "displayed_matrix", "gallery_order", "gallery_page", "image_outcomes", "matrix_cells",
    "selection_of", "sorted_unique", "universe",
]  # fmt: skip
