"""The model-quality tabs of a session: metrics vs confidence, by class, by property, recommendations.

:class:`QualityViews` plugs into the :class:`~vecexplore.app.controller.SessionController`'s
two halves. Its :meth:`~QualityViews.compute` runs in the controller's compute half
(off the document lock) and returns frame entries; :meth:`~QualityViews.apply`
copies them into the panels under the lock. Every panel shows the session's
*selection* (``pick ∩ universe``: the class and split filters apply exactly as
to the other views), or the whole run when nothing is selected, at the
session's operating point; the curve can also show the whole run.

Only the visible tab is computed. An event marks the parts it changes as
*dirty* (an operating-point or selection change dirties all four); the parts of
the visible tab are computed at once, the others when their tab is shown. The
operating-point line of the curve moves on every confidence change. Property
importance (~0.4 s at 100k images) runs as a separate low-priority job after the
update is applied, coalesced under one key, so it never holds up a slider move.

Clicks replace the selection, as a confusion-matrix cell click does: a class-bar
segment picks exactly ``ClassPerformance.images_for(class, kind)`` of the
displayed selection; a property bin its ``BinTable.image_idx``; a recommendation
its ``selection["image_idx"]``. A tap on the curve sets the confidence.
"""

from __future__ import annotations

import html
import logging
from dataclasses import replace

import numpy as np

from vecexplore.errors import VecexploreError

log = logging.getLogger(__name__)

#: Indices of the analysis tabs in ``controller.tabs`` (0 = confusion matrix, 1 = failure clusters).
TAB_CURVE, TAB_CLASSES, TAB_PROPERTY, TAB_RECS = 2, 3, 4, 5
TITLES = ("Metrics vs confidence", "By class", "By property", "Recommendations")
_TAB_PARTS = {TAB_CURVE: {"curve"}, TAB_CLASSES: {"bars"}, TAB_PROPERTY: {"bins", "importance"}}
_ALL = frozenset({"curve", "bars", "bins", "importance"})
#: A tap this close to the curve's F1-optimal confidence takes exactly that confidence.
SNAP = 0.01


def _same(a: tuple, b: tuple | None) -> bool:
    return b is not None and len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def snap_confidence(x: float, *, step: float, optimal: float = float("nan")) -> float:
    """The confidence a tap at ``x`` sets: the curve's optimum within :data:`SNAP`, else ``x`` on the slider's step."""
    if np.isfinite(optimal) and abs(x - optimal) <= SNAP:
        return float(optimal)
    return float(min(max(round(round(x / step) * step, 6), 0.0), 1.0))


class QualityViews:
    """The four quality panels of one session and their part of the session's updates."""

    def __init__(self, *, data, confidence: float):
        from vecexplore.app.class_panel import ClassPanel
        from vecexplore.app.metrics_panel import MetricsPanel
        from vecexplore.app.property_panel import PropertyPanel, property_options
        from vecexplore.app.recommend_panel import RecommendPanel, build_recommendations

        self.data, self.task = data, data.task
        run = data.run
        _ = run.images if self.task != "detection" else (run.images, run.objects)  # load before threads read them
        names = data.class_names
        self.metrics = MetricsPanel(task=self.task, class_names=names, confidence=confidence)
        self.classes = ClassPanel(task=self.task, class_names=names)
        options = property_options(run, self.task)
        self.recommendations, self.recommendations_op = build_recommendations(run)
        self.default_prop = self._default_prop(run, [p for p, _ in options])
        self.levels = {p: ("object" if label.endswith("(object)") else "image") for p, label in options}
        self.props = PropertyPanel(task=self.task, options=options, prop=self.default_prop)
        self.recs = RecommendPanel()
        self.recs.show(self.recommendations)
        self._dirty = set(_ALL)
        self._curve: tuple | None = None  # (key, Curve, columns)
        self._cp: tuple | None = None  # (key, ClassPerformance)
        self._bins: tuple | None = None  # (key, BinTable)
        self._importance: tuple | None = None  # (key, columns)

    @staticmethod
    def _default_prop(run, props: list[str]) -> str:
        """The build's strongest property (analysis.json), else the first one stored."""
        try:
            ranked = [r["prop"] for r in run.json("analysis.json").get("importance", [])]
        except VecexploreError:
            ranked = []
        return next((p for p in ranked if p in props), props[0] if props else "")

    def tabs(self, sheet) -> list[tuple[str, object]]:
        """(title, layout) of each tab, in :data:`TITLES` order."""
        return list(zip(TITLES, (self.metrics.layout(sheet), self.classes.layout(sheet), self.props.layout(sheet),
                                 self.recs.layout(sheet)), strict=True))

    # ------------------------------------------------------------- compute half (no Bokeh model)

    def compute(self, ctl, new, *, parts: set, op: bool) -> dict:
        """Frame entries for the update to ``new`` (the controller has set its evaluation and selection)."""
        if op or "selection" in parts:
            self._dirty |= _ALL
        self._dirty |= parts & {"curve", "bars", "bins"}
        todo = self._dirty & _TAB_PARTS.get(new.tab, set())
        frame: dict = {"quality": True}
        if "curve" in todo:
            frame["q_curve"] = self._curve_frame(ctl, new)
        if "bars" in todo:
            frame["q_bars"] = self._bars_frame(ctl, new)
        if "bins" in todo:
            frame["q_bins"] = self._bins_frame(ctl, new)
        if "importance" in todo:
            frame["q_importance"] = True  # computed by a low-priority job once this update is shown
        self._dirty -= todo - {"importance"}
        frame["q_recs"] = self._recs_caption(ctl, new)
        return frame

    def _what(self, ctl, selection) -> str:
        return "Whole run" if selection is None else f"Selection ({len(selection):,} images)"

    def _op(self, s) -> str:
        iou = f", IoU {s.iou:.2f}" if self.task == "detection" else ""
        return f"confidence ≥ {s.confidence:.3f}{iou}"

    def _curve_frame(self, ctl, s) -> tuple:
        from vecexplore.analysis.quality import sweep_for
        from vecexplore.app.metrics_panel import curve_caption, curve_columns

        ev = ctl.evaluation
        sel = ctl.selection if s.curve_scope == "selection" else None
        k = None if s.curve_class < 0 else int(s.curve_class)
        key = (ev.sweep, sel, k)
        columns = None
        if self._curve is not None and _same(key, self._curve[0]):
            curve = self._curve[1]
        else:
            if sel is None:
                curve = ev.sweep.overall if k is None else ev.sweep.per_class[k]
            else:
                curve = sweep_for(ev, sel, class_idx=k)
            columns = curve_columns(curve)
            self._curve = (key, curve)
        what = self._what(ctl, sel)
        if s.curve_scope == "selection" and sel is None:
            what += " (nothing selected)"
        what += " · all classes" if k is None else f" · class {self.data.class_names[k]}"
        return columns, curve.optimal(), curve_caption(what=what, curve=curve, confidence=s.confidence, task=self.task)

    def _class_perf(self, ev, sel):
        from vecexplore.analysis.quality import class_performance

        key = (ev, sel)
        if self._cp is None or not _same(key, self._cp[0]):
            self._cp = (key, class_performance(ev, sel))
        return self._cp[1]

    def _bars_frame(self, ctl, s) -> tuple:
        from vecexplore.app.class_panel import (
            DEFAULT_LIMIT,
            bar_segments,
            bar_totals,
            shown_classes,
        )

        cp = self._class_perf(ctl.evaluation, ctl.selection)
        names = self.data.class_names
        classes = shown_classes(cp.table, self.task, s.bar_classes)
        segments = bar_segments(cp, classes, task=self.task, class_names=names)
        totals = bar_totals(cp, classes, task=self.task, class_names=names)
        if s.bar_classes:
            which = f"{len(classes)} chosen classes"
        else:
            with_any = len(shown_classes(cp.table, self.task, limit=len(names)))
            which = (f"the {len(classes)} classes with the most errors (of {with_any}); choose classes above to "
                     "see others" if with_any > DEFAULT_LIMIT else f"{len(classes)} classes")
        caption = (f"{self._what(ctl, ctl.selection)} at {self._op(s)}: {which}, most errors first; "
                   f"{'P / R = precision / recall' if self.task == 'detection' else 'acc = accuracy'}. "
                   "Click a segment to select its images.")
        return segments, totals, caption

    def _bin_table(self, ctl, s):
        from vecexplore.analysis.quality import property_performance

        prop = s.prop or self.default_prop
        key = (ctl.evaluation, ctl.selection, prop)
        if self._bins is None or not (_same(key[:2], self._bins[0][:2]) and key[2] == self._bins[0][2]):
            self._bins = (key, property_performance(self.data.run, ctl.evaluation, prop, image_idx=ctl.selection))
        return self._bins[1]

    def _bins_frame(self, ctl, s) -> tuple:
        from vecexplore.app.property_panel import bin_columns, property_caption, rate_names

        prop = s.prop or self.default_prop
        empty = {k: np.zeros(0) for k in ("x", "label", "count", "images", *rate_names(self.task))}
        if not prop:
            return empty, {}, "This run stores no image or object properties."
        try:
            bt = self._bin_table(ctl, s)
        except VecexploreError as exc:
            return empty, {}, html.escape(f"Cannot show {prop}: {exc}")
        what = f"{self._what(ctl, ctl.selection)} at {self._op(s)}"
        return bin_columns(bt, self.task), bt.overall, property_caption(prop, level=self.levels.get(prop, "image"),
                                                                        what=what, task=self.task)

    def _recs_caption(self, ctl, s) -> tuple[str, bool]:
        from vecexplore.app.recommend_panel import op_text, same_op

        if not self.recommendations and self.recommendations_op is None:
            return ("This run has no recommendations (it was built without the analysis stage). "
                    "Compute them at the current operating point:", True)
        here = same_op(self.recommendations_op, iou=s.iou, confidence=s.confidence, task=self.task)
        at = op_text(self.recommendations_op, self.task)
        if here:
            return f"{len(self.recommendations)} findings on the whole run at {at} (the current operating point), " \
                   "strongest first.", False
        return (f"{len(self.recommendations)} findings on the whole run at {at}; the app is now at {self._op(s)}, "
                "so their numbers may differ.", True)

    # ------------------------------------------------------------- jobs of their own

    def importance_job(self, ctl):
        """Property importance of the current selection at the current operating point (low priority)."""
        def job():
            from vecexplore.analysis.quality import property_importance
            from vecexplore.app.property_panel import importance_columns

            s, key = ctl.state, (ctl.evaluation, ctl.selection)
            if "importance" not in self._dirty or s.tab != TAB_PROPERTY:
                return None
            if self._importance is None or not _same(key, self._importance[0]):
                ranked = property_importance(self.data.run, ctl.evaluation, image_idx=ctl.selection)
                self._importance = (key, importance_columns(ranked))
            self._dirty.discard("importance")
            columns = self._importance[1]
            target = "the per-image error rate" + (", object properties with whether each GT object is found"
                                                   if self.task == "detection" else "")
            caption = (f"Property importance — {self._what(ctl, ctl.selection)} at {self._op(s)}: mutual information "
                       f"with {target}; Spearman gives the direction. Click a row to show that property.")
            return ctl.locked(lambda: self.props.show_importance(columns, caption, s.prop or self.default_prop))
        return job

    def recommend_job(self, ctl):
        """Recompute the recommendations on the whole run at the session's operating point."""
        def job():
            from vecexplore.analysis.recommend import recommend
            from vecexplore.analysis.slicing import failure_slice_table

            ev, s = ctl.evaluation, ctl.state
            clusters = failure_slice_table(self.data.run, ev, self.data.images.cluster, self.data.tree,
                                           objects=ev.objects if self.task == "detection" else None,
                                           class_names=list(self.data.class_names))
            recs = [r.to_json() for r in recommend(self.data.run, ev, clusters=clusters)]
            self.recommendations = recs
            self.recommendations_op = {"confidence": float(ev.confidence)}
            if self.task == "detection":
                self.recommendations_op["iou"] = float(ev.iou)
            caption = self._recs_caption(ctl, s)

            def apply():
                self.recs.show(recs)
                self.recs.show_caption(caption[0], can_refresh=caption[1])
            return ctl.locked(apply)
        return job

    def segment_job(self, ctl, row: int):
        """Pick the images of class-bar segment ``row`` (as displayed)."""
        class_idx, kind = self.classes.segment_at(row)

        def job():
            from vecexplore.app.class_panel import segments_of

            images = self._class_perf(ctl.evaluation, ctl.selection).images_for(class_idx, kind)
            label = dict((k, lab) for k, lab, _ in segments_of(self.task)).get(kind, kind)
            how = f"class {self.data.class_names[class_idx]}: {label.split(' (')[0]}"
            return ctl._advance(ctl.state.with_pick(images, how), parts={"selection"})
        return job

    def bin_job(self, ctl, row: int):
        """Pick the images of property bin ``row``."""
        def job():
            s = ctl.state
            bt = self._bin_table(ctl, s)
            if row >= len(bt.image_idx):
                return None
            how = f"{bt.prop} {bt.labels()[row]}"
            return ctl._advance(s.with_pick(bt.image_idx[row], how), parts={"selection"})
        return job

    def recommendation_job(self, ctl, i: int):
        from vecexplore.app.recommend_panel import how_of, image_idx_of

        recs = self.recs.recs
        if i >= len(recs):
            return lambda: None
        return ctl._pick_job(image_idx_of(recs[i]), how_of(recs[i], i + 1))

    def tap_job(self, ctl, x: float):
        optimal = self._curve[1].optimal()[0] if self._curve is not None else float("nan")
        c = snap_confidence(float(x), step=float(ctl.controls.confidence.step), optimal=optimal)
        return ctl._op_job(confidence=c)

    # ------------------------------------------------------------- apply half (document lock)

    def apply(self, frame: dict, s) -> None:
        m = self.metrics
        m.show_operating_point(s.confidence)
        m.show_controls(scope=s.curve_scope, class_idx=s.curve_class)
        self.classes.show_chosen(s.bar_classes)
        self.props.show_prop(s.prop or self.default_prop)
        if "q_curve" in frame:
            columns, optimal, caption = frame["q_curve"]
            if columns is None:
                m.caption.text = caption
            else:
                m.show_curve(columns, optimal, caption)
        if "q_bars" in frame:
            self.classes.show(*frame["q_bars"])
        if "q_bins" in frame:
            self.props.show_bins(*frame["q_bins"])
        if "q_importance" in frame:
            self.props.importance_caption.text = "Property importance: updating…"
        if "q_recs" in frame:
            self.recs.show_caption(frame["q_recs"][0], can_refresh=frame["q_recs"][1])

    def after_apply(self, ctl, frame: dict) -> None:
        """Queue the importance job an update asked for (outside the controller's apply)."""
        if "q_importance" in frame:
            ctl.dispatch.submit("importance", self.importance_job(ctl), low=True)

    # ------------------------------------------------------------- wiring

    def wire(self, ctl, on, tap, valid) -> None:
        """Connect the quality widgets; ``on(key, job_factory)``, ``tap(source, job_of_row)`` and
        ``valid(check, make)`` are the controller's callback makers (:func:`vecexplore.app.wiring.wire`)."""
        from bokeh.events import Tap

        from vecexplore.app import client
        from vecexplore.app.wiring import select_values

        def state_job(change, parts):
            return ctl._state_job(change, parts)

        m, c, p, r = self.metrics, self.classes, self.props, self.recs
        n_classes = len(self.data.class_names)
        m.scope.on_change("active", on("curve-scope", valid(lambda v: client.choice(v, (0, 1)), lambda v: state_job(
            lambda s: replace(s, curve_scope="selection" if v == 0 else "run"), {"curve"}))))
        m.klass.on_change("value", on("curve-class", valid(lambda v: client.choice(v, select_values(m.klass)),
                                                           lambda v: state_job(lambda s: replace(s, curve_class=int(v)),
                                                                               {"curve"}))))
        m.figure.on_event(Tap, lambda event: None if ctl._applying or client.unit_float(event.x) is None else
                          ctl.dispatch.submit("confidence", self.tap_job(ctl, event.x)))
        c.classes.on_change("value", on("bar-classes", valid(lambda v: client.class_values(v, n_classes),
                                                             lambda v: state_job(lambda s: replace(s, bar_classes=v),
                                                                                 {"bars"}))))
        c.source.selected.on_change("indices", on("pick", tap(c.source, lambda row: self.segment_job(ctl, row))))
        p.select.on_change("value", on("prop", valid(lambda v: client.choice(v, select_values(p.select)),
                                                     lambda v: state_job(lambda s: replace(s, prop=str(v)), {"bins"}))))
        p.source.selected.on_change("indices", on("pick", tap(p.source, lambda row: self.bin_job(ctl, row))))
        p.importance_source.selected.on_change("indices", on("prop", tap(p.importance_source, lambda row: state_job(
            lambda s: replace(s, prop=p.prop_at(row)), {"bins"}))))
        for i, button in enumerate(r.buttons):
            button.on_click(lambda i=i: ctl.dispatch.submit("pick", self.recommendation_job(ctl, i)))
        r.refresh.on_click(lambda: ctl.dispatch.submit(next(ctl._clicks), self.recommend_job(ctl)))
