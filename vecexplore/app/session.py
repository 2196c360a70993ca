"""One browser session: its state, its views, and the loop that keeps them in step.

Every user action is an event (:mod:`vecexplore.app.events`). The session runs
each as a job of its :class:`~vecexplore.app.dispatch.Dispatcher`:

1. *resolve* an intent against the current :class:`~vecexplore.app.derive.Derived`;
2. ``state' = reduce(state, event)``; the aspects that changed say which views
   are affected;
3. ``derived' = derive(state', run)`` (reusing what still holds);
4. ``compute`` every affected view that is visible (a view in a hidden tab is
   marked and catches up when its tab is shown) — steps 1-4 off the document lock;
5. ``apply`` their results under the lock, on the next tick; then views with
   ``background`` work get a low-priority job.

Jobs of one session run one at a time, in order; a pending event of the same
kind is replaced by a newer one (only the latest slider value is computed). On
a bare Document (tests, benchmarks) every job runs synchronously.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from vecexplore.app import events as ev
from vecexplore.app import state as st
from vecexplore.app.derive import Derived, derive
from vecexplore.app.dispatch import Dispatcher
from vecexplore.app.view import Context, View

log = logging.getLogger(__name__)


def initial_state(data) -> st.SessionState:
    from vecexplore.app.colouring import modes

    iou = data.build_iou if data.task == "detection" else 0.5
    omap = getattr(data, "object_map", None)
    return st.SessionState(iou=iou, confidence=float(data.base.confidence), num_images=data.num_images,
                           colour=modes(data.task)[0][0], object_image=None if omap is None else omap.image_idx)


class Session:
    """The state and views of one session; see the module docstring.

    Attributes:
        state: the current :class:`~vecexplore.app.state.SessionState`.
        derived: the current :class:`~vecexplore.app.derive.Derived` (of ``state``).
        views: the session's views, in registry order; ``view(name)`` finds one.
        tab_views: the views of the ``tab`` slot, in tab order (``state.tab`` indexes it).
    """

    def __init__(self, doc, data, *, url_base: str, sheet, registry, sync: bool | None = None):
        self.doc, self.data, self.url_base, self.task = doc, data, url_base, data.task
        self.dispatch = Dispatcher(doc, sync=doc.session_context is None if sync is None else sync)
        self.state = initial_state(data)
        self.derived: Derived = derive(self.state, data)
        self.applying = False
        self._keys = itertools.count()
        ctx = Context(data=data, url_base=url_base, sheet=sheet, session=self)
        self.views: list[View] = [cls(ctx) for cls in registry if data.task in cls.tasks and cls.available(data)]
        self.tab_views = [v for v in self.views if v.slot == "tab"]
        self._by_name = {v.name: v for v in self.views}
        self._dirty: set[str] = set()
        self._computed: dict[str, int] = {}  # view name → how many times it was computed (background staleness)
        self._run_now(self._update(None))
        for view in self.views:
            view.wire(self)

    # ------------------------------------------------------------- public

    def move_to(self, doc) -> None:
        """Serve this session, built in advance into a bare Document, from the server session's ``doc``:
        its page moves there and its updates from now on run off the lock and apply on ``doc``'s next tick."""
        old = self.doc
        roots, title = list(old.roots), old.title
        old.clear()
        for root in roots:
            doc.add_root(root)
        doc.title = title
        self.doc, self.dispatch = doc, Dispatcher(doc, sync=False)

    def view(self, name: str) -> View:
        return self._by_name[name]

    @property
    def selection(self) -> np.ndarray | None:
        return self.derived.selection

    def emit(self, intent: ev.Intent, *, key: Any = None) -> None:
        """Queue an event (or an intent resolved against the current Derived) as a job."""
        if key is None:
            key = intent.coalesce_key() if isinstance(intent, ev.Event) and intent.coalesce else next(self._keys)
        self.dispatch.submit(key, lambda: self._update(intent))

    def run(self, job: Callable[[], Callable[[], None] | None], *, key: Any = None, low: bool = False) -> None:
        """Queue a job of a view's own (an export, a recomputation): it computes off the lock and
        returns an apply closure (run under the lock, its widget callbacks ignored) or None."""
        def wrapped():
            apply = job()
            return None if apply is None else self.locked(apply)
        self.dispatch.submit(next(self._keys) if key is None else key, wrapped, low=low)

    def locked(self, apply: Callable[[], None]) -> Callable[[], None]:
        """``apply`` as an update's apply half: the widget callbacks it sets off are ignored."""
        def run():
            self.applying = True
            try:
                apply()
            finally:
                self.applying = False
        return run

    def visible(self, view: View, state: st.SessionState | None = None) -> bool:
        state = state or self.state
        if view.slot != "tab":
            return True
        return 0 <= state.tab < len(self.tab_views) and self.tab_views[state.tab] is view

    # Synchronous helpers for tests, benchmarks and notebooks (bare Document: the update is done on return).

    def select(self, image_idx, how: str = "points", **kwargs) -> None:
        self.emit(ev.Select(np.asarray(image_idx, np.int64), how, **kwargs))

    def clear(self) -> None:
        self.emit(ev.Clear())

    def set_confidence(self, confidence: float) -> None:
        self.emit(ev.SetOperatingPoint(confidence=float(confidence)))

    def set_iou(self, iou: float) -> None:
        self.emit(ev.SetOperatingPoint(iou=float(iou)))

    # ------------------------------------------------------------- the loop

    def _run_now(self, apply) -> None:
        if apply is not None:
            apply()

    def _update(self, intent):
        """One job: resolve, reduce, derive, compute (off the lock); returns the apply closure."""
        old = self.state if intent is not None else None
        if intent is None:
            new = self.state
        else:
            event = intent(self.derived) if callable(intent) and not isinstance(intent, ev.Event) else intent
            if event is None:
                return None
            new = ev.reduce(self.state, event)
        changed = ev.changed_aspects(old, new)
        if not changed:
            return None
        d = derive(new, self.data, prev=self.derived if old is not None else None)
        self.state, self.derived = new, d
        payloads = []
        for view in self.views:
            if not (view.depends & changed or view.name in self._dirty):
                continue
            if self.visible(view, new):
                self._dirty.discard(view.name)
                self._computed[view.name] = self._computed.get(view.name, 0) + 1
                payloads.append((view, view.compute(d)))
            else:
                self._dirty.add(view.name)
        return lambda: self._apply(payloads, d)

    def _apply(self, payloads: list, d: Derived) -> None:
        self.applying = True
        try:
            for view, payload in payloads:
                if payload is not None:
                    view.apply(payload)
        finally:
            self.applying = False
        for view, _ in payloads:
            if view.has_background:
                self.run(self._background_job(view, d), key=f"background-{view.name}", low=True)

    def _background_job(self, view: View, d: Derived):
        version = self._computed.get(view.name)

        def job():
            if self._computed.get(view.name) != version:  # the view was recomputed since: that update schedules its own
                return None
            result = view.background(d)
            return None if result is None else (lambda: view.apply_background(result))
        return job


__all__ = ["Session", "initial_state"]
