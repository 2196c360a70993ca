"""What a user can do, as typed events, and :func:`reduce`: the one place the session state changes.

Views turn widget changes into events (after checking every value from the
browser, see :mod:`vecexplore.app.client`); the session folds each into the
state with ``reduce(state, event)``, a pure function. An event that needs the
current evaluation to say which images it means (a matrix cell, a class-bar
segment) is sent as an *intent*: a function of the session's
:class:`~vecexplore.app.derive.Derived` that returns the event, called by the
session off the document lock, just before ``reduce``.

Selections. Every event that picks images is a :class:`Select`. Its ``mode``
(or the session's selection mode when None) combines the new images with the
current pick: replace (the default), add (a shift-click always adds),
intersect or subtract (:func:`vecexplore.app.state.combine`). Each selection is
recorded in the history; :class:`Back` / :class:`Forward` move through it.

A :class:`Select` with ``objects`` (rows of the objects table: an object-level
lasso, cell or slice) picks those objects; it combines with the objects of the
current pick (the picked objects, or every object on the picked images), and
the picked images become the images of the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from vecexplore.app import state as st


class Event:
    """Base of every event. ``coalesce``: a pending event is replaced by a newer one with the same
    :meth:`coalesce_key` (a burst of slider values computes only the last); clicks are never coalesced."""

    coalesce: ClassVar[bool] = True

    def coalesce_key(self) -> tuple:
        """What a newer event must share to replace this one while it waits: its type and the state
        fields it sets. A newer event that sets other fields (a gallery page after a colour change,
        an IoU after a confidence) must not drop this one."""
        return (type(self).__name__, *sorted(self._sets()))

    def _sets(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True, eq=False)
class Select(Event):
    """Pick ``images`` (image_idx). ``mode`` None = the session's mode; ``focus`` says which objects
    explain the pick (the gallery draws them). ``objects``: pick these objects-table rows instead
    (``images`` is then ignored; see the module doc)."""

    images: np.ndarray
    how: str
    focus: st.Focus = st.ALL_ERRORS
    mode: str | None = None
    marks: tuple[tuple[str, object], ...] = ()
    objects: np.ndarray | None = None
    coalesce: ClassVar[bool] = False


@dataclass(frozen=True)
class Clear(Event):
    """Nothing picked: the views show the whole run (or what the filters keep)."""

    coalesce: ClassVar[bool] = False


@dataclass(frozen=True)
class Back(Event):
    coalesce: ClassVar[bool] = False


@dataclass(frozen=True)
class Forward(Event):
    coalesce: ClassVar[bool] = False


@dataclass(frozen=True)
class SetSelectMode(Event):
    mode: str


@dataclass(frozen=True)
class SetOperatingPoint(Event):
    """A new confidence and/or IoU (None keeps the current one)."""

    confidence: float | None = None
    iou: float | None = None

    def _sets(self) -> tuple[str, ...]:
        return tuple(k for k in ("confidence", "iou") if getattr(self, k) is not None)


@dataclass(frozen=True)
class SetFilters(Event):
    """New class and/or split filters (None keeps the current one)."""

    classes: tuple[int, ...] | None = None
    splits: tuple[str, ...] | None = None

    def _sets(self) -> tuple[str, ...]:
        return tuple(k for k in ("classes", "splits") if getattr(self, k) is not None)


@dataclass(frozen=True)
class SetView(Event):
    """A change of what a view shows, not of the selection: any of the state's view fields
    (``colour``, ``matrix_mode``, ``matrix_scope``, ``sort``, ``page``, ``curve_scope``,
    ``curve_class``, ``bar_classes``, ``prop``, ``detail_model``, ``phrase``) by name."""

    changes: tuple[tuple[str, object], ...]

    FIELDS: ClassVar[frozenset[str]] = frozenset({"colour", "matrix_mode", "matrix_scope", "sort", "page",
                                                  "gallery_shape", "curve_scope", "curve_class", "bar_classes",
                                                  "pr_classes", "prop", "detail_model", "phrase"})

    def _sets(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.changes)

    @classmethod
    def of(cls, **changes) -> SetView:
        unknown = set(changes) - cls.FIELDS
        if unknown:
            raise ValueError(f"SetView cannot change {sorted(unknown)}")
        return cls(tuple(sorted(changes.items())))


@dataclass(frozen=True)
class SetLevel(Event):
    """Show ``level`` ("images" or "objects") in the scatter, the gallery and the slice table."""

    level: str


@dataclass(frozen=True)
class OpenImage(Event):
    """Show ``image_idx`` in the detail view (-1 closes it), with objects-table row ``object_row``
    highlighted (-1 = none)."""

    image_idx: int
    object_row: int = -1
    coalesce: ClassVar[bool] = False


@dataclass(frozen=True)
class ShowTab(Event):
    tab: int


@dataclass(frozen=True, eq=False)
class Exported(Event):
    """An export finished (or failed): what the page says about it (see :class:`~vecexplore.app.state.Export`)."""

    text: str
    images: np.ndarray | None = None
    error: bool = False
    path: str = ""
    url: str = ""
    coalesce: ClassVar[bool] = False


#: An event, or a function of the session's Derived that returns one (None = nothing to do).
Intent = Event | Callable[[object], Event | None]


#: How a combined selection is written ("cluster 3 + cell cat → dog").
SIGNS = {"add": "+", "intersect": "∩", "subtract": "−"}


def combined_how(state: st.SessionState, how: str, mode: str | None = None) -> str:
    """The description of ``how`` combined with the current pick in ``mode`` (the state's by default)."""
    mode = mode or state.select_mode
    if mode == "replace" or state.pick is None:
        return how
    return f"{state.pick_how or 'selection'} {SIGNS[mode]} {how}"


def reduce(state: st.SessionState, event: Event) -> st.SessionState:
    """The state after ``event``. Pure: the same inputs give the same state."""
    if isinstance(event, Select):
        mode = event.mode or state.select_mode
        if mode == "replace" or state.pick is None:
            how, focus, marks = event.how, event.focus, event.marks
        else:
            how, focus = combined_how(state, event.how, mode), st.ALL_ERRORS
            marks = (*state.marks, *event.marks) if mode == "add" else event.marks
        if event.objects is not None:
            objects = st.combine(state.objects_of_pick(), event.objects, mode, state.num_objects)
            return state.with_pick(None, how, focus, marks, objects=objects)
        pick = st.combine(state.pick, event.images, mode, state.num_images)
        return state.with_pick(pick, how, focus, marks)
    if isinstance(event, Clear):
        return state if state.pick is None else state.with_pick(None)
    if isinstance(event, Back):
        return state.at_history(state.history_pos - 1) if state.history_pos > 0 else state
    if isinstance(event, Forward):
        last = len(state.history) - 1
        return state.at_history(state.history_pos + 1) if state.history_pos < last else state
    if isinstance(event, SetSelectMode):
        if event.mode not in st.SELECT_MODES:
            raise ValueError(f"unknown selection mode {event.mode!r}")
        return replace(state, select_mode=event.mode)
    if isinstance(event, SetOperatingPoint):
        return replace(state, confidence=state.confidence if event.confidence is None else float(event.confidence),
                       iou=state.iou if event.iou is None else float(event.iou))
    if isinstance(event, SetFilters):
        return state.with_filters(classes=event.classes, splits=event.splits)
    if isinstance(event, SetView):
        changes = dict(event.changes)
        if "sort" in changes and "page" not in changes:
            changes["page"] = 0  # a new order starts at its first page
        if "gallery_shape" in changes and "page" not in changes:  # keep the first image of the page in view
            cols, rows = changes["gallery_shape"]
            changes["page"] = state.page * state.per_page // max(1, cols * rows)
        return replace(state, **changes)
    if isinstance(event, SetLevel):
        if event.level not in st.LEVELS:
            raise ValueError(f"unknown level {event.level!r}; choose one of {st.LEVELS}")
        if event.level == "objects" and state.object_image is None:
            raise ValueError("this run has no object map (build it with --level objects or both)")
        return replace(state, level=event.level, page=0)
    if isinstance(event, OpenImage):
        return replace(state, detail=int(event.image_idx), detail_object=int(event.object_row))
    if isinstance(event, ShowTab):
        return replace(state, tab=int(event.tab))
    if isinstance(event, Exported):
        serial = (state.export.serial + 1) if state.export is not None else 1
        return replace(state, export=st.Export(event.text, event.images, event.error, event.path, event.url,
                                               serial))
    raise TypeError(f"not an event: {event!r}")


#: Which aspect each state field belongs to; views declare the aspects they depend on.
ASPECTS: dict[str, str] = {
    "iou": "op", "confidence": "op", "pick": "selection", "pick_how": "selection", "focus": "selection",
    "marks": "selection",
    "classes": "filters", "splits": "filters", "select_mode": "history", "history": "history",
    "history_pos": "history", "colour": "colour", "matrix_mode": "matrix", "matrix_scope": "matrix",
    "sort": "gallery", "phrase": "phrase", "page": "gallery", "gallery_shape": "gallery", "detail": "detail", "tab": "tab", "curve_scope": "curve",
    "curve_class": "curve", "bar_classes": "bars", "pr_classes": "pr", "prop": "prop", "export": "export", "num_images": "run",
    "detail_model": "detail", "level": "level", "objects": "selection", "object_image": "run",
    "detail_object": "detail",
}  # fmt: skip
#: Every aspect (the first render computes every view).
EVERYTHING = frozenset(ASPECTS.values())


def changed_aspects(old: st.SessionState | None, new: st.SessionState) -> frozenset[str]:
    """The aspects that differ between two states. The selection also changes with the filters,
    and with the operating point while a class filter is on (which predictions count moves)."""
    if old is None:
        return EVERYTHING
    out = set()
    for name, aspect in ASPECTS.items():
        a, b = getattr(old, name), getattr(new, name)
        if a is b:
            continue
        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            same = a is not None and b is not None and np.array_equal(a, b)
        else:
            same = a == b
        if not same:
            out.add(aspect)
    if "filters" in out or ("op" in out and new.classes):
        out.add("selection")
    return frozenset(out)


__all__ = [
    "ASPECTS", "EVERYTHING", "SIGNS", "Back", "Clear", "Event", "Exported", "Forward", "Intent", "OpenImage", "Select", "SetFilters",
    "SetLevel", "SetOperatingPoint", "SetSelectMode", "SetView", "ShowTab", "changed_aspects", "combined_how", "reduce",
]  # fmt: skip
