"""``derive(state, run)``: everything the views share that follows from a session's state.

A :class:`Derived` is a pure function of the :class:`~vecexplore.app.state.SessionState`
and the run's :class:`~vecexplore.app.data.RunData`; its values are computed on
first use (off the document lock, in the session's worker) and reused from the
previous Derived when the state fields they come from are unchanged, so a
gallery page flip never re-derives outcomes and a slider move never recomputes
the selection's universe without a class filter.

Shared values: the evaluation at the operating point (private to the session:
the shared one's lazy caches are never filled from session threads), its
per-image outcomes, the F1-optimal confidence, the selection (``pick ∩
universe``), the gallery page, and the header's summaries; on a run with an
object map also the object outcomes, the object selection and the object
gallery page (:mod:`vecexplore.app.objects`). Views keep their own,
view-specific computations (keyed on the identity of these values).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from vecexplore.app import state as st
from vecexplore.eval.outcomes import COUNTED

_UNSET = object()


class Derived:
    """Lazily derived values of one state (see the module doc). Read-only for views.

    Attributes are computed on first access: ``evaluation``, ``outcomes``,
    ``optimal``, ``universe``, ``selection``, ``candidates``, ``gallery``,
    ``scores``, ``text_scores``, ``run_summary``, ``selection_summary``.
    """

    #: value → the state fields it depends on (a value is reused when these are unchanged).
    KEYS: ClassVar[dict[str, tuple[str, ...]]] = {
        "evaluation": ("iou", "confidence"),
        "outcomes": ("iou", "confidence"),
        "optimal": ("iou",),
        "universe": ("iou", "confidence", "classes", "splits"),
        "selection": ("iou", "confidence", "classes", "splits", "pick"),
        "scores": ("iou", "confidence"),
        "gallery": ("iou", "confidence", "classes", "splits", "pick", "sort", "phrase", "page", "gallery_shape"),
        "text_scores": ("phrase",),
        "run_summary": ("iou", "confidence"),
        "selection_summary": ("iou", "confidence", "classes", "splits", "pick"),
        "object_outcomes": ("iou", "confidence"),
        "object_selection": ("iou", "confidence", "classes", "splits", "pick", "objects"),
        "object_gallery": ("iou", "confidence", "classes", "splits", "pick", "objects", "sort", "page",
                           "gallery_shape"),
    }

    def __init__(self, state: st.SessionState, data, prev: Derived | None = None):
        self.state, self.data, self.task = state, data, data.task
        self._values: dict[str, object] = {}
        if prev is not None:
            for name, fields in self.KEYS.items():
                if name in prev._values and all(_same(getattr(state, f), getattr(prev.state, f)) for f in fields):
                    # universe only depends on the operating point through a class filter
                    self._values[name] = prev._values[name]
            if "universe" not in self._values and "universe" in prev._values and not state.classes and \
                    _same(state.splits, prev.state.splits) and not prev.state.classes:
                self._values["universe"] = prev._values["universe"]

    def _get(self, name: str, compute):
        value = self._values.get(name, _UNSET)
        if value is _UNSET:
            value = compute()
            self._values[name] = value
        return value

    # ------------------------------------------------------------- the operating point

    @property
    def evaluation(self):
        s = self.state
        return self._get("evaluation", lambda: self.data.evaluation(
            iou=s.iou if self.task == "detection" else None, confidence=s.confidence))

    @property
    def outcomes(self) -> st.ImageOutcomes:
        return self._get("outcomes", lambda: st.image_outcomes(self.evaluation.per_image))

    @property
    def optimal(self) -> float:
        return self._get("optimal", lambda: self.data.optimal_confidence(
            self.state.iou if self.task == "detection" else None))

    @property
    def scores(self) -> np.ndarray:
        """(N,) confidence per image at the operating point (NaN = none): the gallery's sort key."""
        from vecexplore.app.colouring import confidence_at

        def compute():
            if self.task == "detection":
                return confidence_at(self.data.images.max_score, self.state.confidence)
            return self.data.images.max_score
        return self._get("scores", compute)

    @property
    def text_scores(self) -> np.ndarray | None:
        """(N,) float32 similarity of every image to the session's phrase (NaN = no embedding); None
        without a phrase or where text search is off (:mod:`vecexplore.text_search`)."""
        return self._get("text_scores", lambda: self.data.text_similarity(self.state.phrase))

    # ------------------------------------------------------------- the selection

    def class_pairs(self):
        """``(image_idx, class_idx)`` pairs the class filter looks at: the non-crowd GT and the
        predictions counted at the operating point (classification: labels and accepted predictions)."""
        ds, ev = self.data.dataset, self.evaluation
        if self.task == "detection":
            keep = ~ds.gt.iscrowd
            counted = ev.outcomes.pred_code < COUNTED
            return [(ds.gt.image_idx[keep], ds.gt.class_idx[keep]),
                    (ds.pred.image_idx[counted], ds.pred.class_idx[counted])]
        idx = np.arange(ds.num_images)
        return [(idx, ev.arrays["label"]), (idx, ev.accepted)]

    @property
    def universe(self) -> np.ndarray | None:
        s = self.state
        return self._get("universe", lambda: st.universe(
            s, num_images=self.data.num_images, split=self.data.images.split,
            class_pairs=self.class_pairs() if s.classes else ()))

    @property
    def selection(self) -> np.ndarray | None:
        """Sorted int64 image_idx of the selection; None = nothing selected (the whole run shows)."""
        return self._get("selection", lambda: st.selection_of(self.state.pick, self.universe))

    @property
    def candidates(self) -> np.ndarray:
        """The images the gallery pages through: the selection, or every image."""
        sel = self.selection
        return sel if sel is not None else np.arange(self.data.num_images, dtype=np.int64)

    @property
    def gallery(self) -> st.GalleryPage:
        s = self.state
        return self._get("gallery", lambda: st.gallery_page(
            self.candidates, sort=s.sort, page=s.page, error_rate=self.outcomes.error_rate, score=self.scores,
            per_page=s.per_page, text=self.text_scores if s.sort == "text" else None))

    @property
    def detail(self) -> int:
        """The image the detail view shows: the one opened, while it is in the selection; else the first of
        the gallery's page (so the view never shows an image outside the selection); -1 = none."""
        i, sel = self.state.detail, self.selection
        if i >= 0 and (sel is None or _contains(sel, i)):
            return i
        page = self.gallery.image_idx
        return int(page[0]) if len(page) else -1

    # ------------------------------------------------------------- the object level

    @property
    def object_outcomes(self):
        """:class:`~vecexplore.app.objects.ObjectOutcomesView` at the operating point (None without
        an object map)."""
        from vecexplore.app.objects import object_outcomes

        omap = self.data.object_map
        return self._get("object_outcomes", lambda: None if omap is None else object_outcomes(self.evaluation, omap))

    @property
    def object_selection(self) -> np.ndarray | None:
        """Sorted objects-table rows of the object selection (:func:`~vecexplore.app.objects.object_selection_of`);
        None = nothing selected (the object level shows every mapped object) or no object map."""
        from vecexplore.app.objects import object_selection_of

        def compute():
            omap, s = self.data.object_map, self.state
            if omap is None:
                return None
            return object_selection_of(s.objects, self.selection if s.objects is None else None, omap,
                                       classes=s.classes, universe=self.universe)
        return self._get("object_selection", compute)

    @property
    def object_candidates(self) -> np.ndarray:
        """The objects the object gallery pages through: the object selection, or every mapped object."""
        sel = self.object_selection
        return sel if sel is not None else self.data.object_map.points

    @property
    def object_gallery(self) -> st.GalleryPage:
        """A page of object rows (``image_idx`` of the page holds objects-table rows), errors first."""
        s = self.state

        def compute():
            oo = self.object_outcomes
            sort = s.sort if s.sort != "text" else "error"  # the phrase scores images, not crops
            return st.gallery_page(self.object_candidates, sort=sort, page=s.page, error_rate=oo.error,
                                   score=oo.score, per_page=s.per_page)
        return self._get("object_gallery", compute)

    # ------------------------------------------------------------- summaries

    def summary(self, images) -> dict:
        if self.task == "detection":
            return st.detection_summary(self.outcomes, images)
        return st.classification_summary(self.outcomes, len(self.data.class_names), images)

    @property
    def run_summary(self) -> dict:
        return self._get("run_summary", lambda: self.summary(None))

    @property
    def selection_summary(self) -> dict | None:
        return self._get("selection_summary",
                         lambda: None if self.selection is None else self.summary(self.selection))

    def describe(self) -> str:
        """The selection in words (header, export file names)."""
        return st.describe(self.state, self.data.class_names)


def _contains(sorted_idx: np.ndarray, i: int) -> bool:
    k = int(np.searchsorted(sorted_idx, i))
    return k < len(sorted_idx) and int(sorted_idx[k]) == i


def _same(a, b) -> bool:
    if a is b:
        return True
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return a is not None and b is not None and np.array_equal(a, b)
    return a == b


def derive(state: st.SessionState, data, prev: Derived | None = None) -> Derived:
    """The :class:`Derived` of ``state`` on ``data`` (reusing ``prev``'s values where they still hold)."""
    return Derived(state, data, prev)


__all__ = ["Derived", "derive"]
