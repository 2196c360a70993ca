"""The toolbar: the operating point (confidence, IoU), colour-by and the class and split filters."""

from __future__ import annotations

import collections

from vecexplore.app import client, ui
from vecexplore.app import events as ev
from vecexplore.app.colouring import modes
from vecexplore.app.view import View

#: IoU thresholds of the slider (COCO's): 0.50, 0.55, ..., 0.95.
IOU_GRID: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def confidence_title(optimal: float) -> str:
    """The slider's title; it marks the exact F1-optimal confidence (at the current IoU)."""
    return f"Confidence (F1-optimal {optimal:.4f})"


class ControlsView(View):
    name = "controls"
    slot = "toolbar"
    depends = frozenset({"op", "filters", "colour"})

    def __init__(self, ctx):
        super().__init__(ctx)
        from bokeh.models import Button, MultiChoice, Row, Select, Slider

        data, s = self.data, ctx.session.state
        det = self.task == "detection"
        self.confidence = Slider(start=0.0, end=1.0, step=0.005, value=s.confidence, format="0.000",
                                 title=confidence_title(ctx.session.derived.optimal), name="confidence",
                                 width=230, tooltips=False, css_classes=["vx-confidence"])
        self.best = Button(label="F1-optimal", name="best-f1", width=86, button_type="default",
                           css_classes=["vx-best-f1"], align="end",
                           html_attributes={"title": "Set the confidence to the one with the best F1 at this IoU"})
        self.iou_is_grid = any(abs(data.build_iou - t) < 1e-9 for t in IOU_GRID)
        if self.iou_is_grid:
            self.iou = Slider(start=0.5, end=0.95, step=0.05, value=s.iou, format="0.00", title="IoU threshold",
                              name="iou", width=150, tooltips=False, visible=det)
        else:  # a build at an IoU off COCO's grid keeps its own value among the choices
            self.iou = Select(title="IoU threshold", value=f"{s.iou:.2f}", name="iou", width=110, visible=det,
                              options=[f"{t:.2f}" for t in data.iou_choices])
        self.colour = Select(title="Colour points by", value=s.colour, name="colour-by", width=170,
                             options=list(modes(self.task, comparison=data.comparison is not None,
                                                text=data.text_search.hidden is None)))
        self.classes = MultiChoice(title="Class filter (GT or prediction)", value=[], name="class-filter",
                                   options=ui.choice_options(enumerate(data.class_names)), width=250,
                                   placeholder="all classes", css_classes=["vx-filter"])
        splits = data.images.splits
        self.splits = MultiChoice(title="Split filter", value=[], name="split-filter",
                                  options=ui.choice_options((x, x) for x in splits), width=190,
                                  placeholder="all splits", visible=len(splits) > 1, css_classes=["vx-filter"])
        self.row = Row(self.confidence, self.best, self.iou, self.colour, self.classes, self.splits,
                       name="toolbar", css_classes=["vx-toolbar-bar"], sizing_mode="stretch_width")
        # The last values each slider sent (a drag sends a burst); see apply.
        self._sent: dict[str, collections.deque] = {"confidence": collections.deque(maxlen=64),
                                                     "iou": collections.deque(maxlen=16)}

    def layout(self):
        return self.row

    def compute(self, d):
        s = d.state
        return {"confidence": s.confidence, "iou": s.iou, "title": confidence_title(d.optimal),
                "optimal": d.optimal, "colour": s.colour, "classes": [str(c) for c in s.classes],
                "splits": list(s.splits)}

    def apply(self, p) -> None:
        self._optimal = p["optimal"]
        self.confidence.title = p["title"]
        # A value the browser sent is never written back: while the user drags, an older value applied
        # late would pull the handle back (and the browser keeps it while the server already moved on).
        # Only the server's own changes (F1-optimal, a click on a curve, the history) move the widgets.
        if p["confidence"] not in self._sent["confidence"] and abs(self.confidence.value - p["confidence"]) > 1e-12:
            self.confidence.value = p["confidence"]
        if self.task == "detection" and p["iou"] not in self._sent["iou"]:
            value = p["iou"] if self.iou_is_grid else f"{p['iou']:.2f}"
            if self.iou.value != value:
                self.iou.value = value
        if self.colour.value != p["colour"]:
            self.colour.value = p["colour"]
        if list(self.classes.value) != p["classes"]:
            self.classes.value = p["classes"]
        if list(self.splits.value) != p["splits"]:
            self.splits.value = p["splits"]

    def wire(self, session) -> None:
        data = self.data
        n_classes, splits = len(data.class_names), set(data.images.splits)
        iou_choices = IOU_GRID if self.iou_is_grid else data.iou_choices
        colours = {m for m, _ in modes(self.task, comparison=data.comparison is not None,
                                       text=data.text_search.hidden is None)}

        def on(widget, attr, make):
            def callback(_attr, _old, new):
                if session.applying:
                    return
                event = make(new)
                if event is None:
                    ui.refused(widget.name, new)
                    return
                session.emit(event)
            widget.on_change(attr, callback)

        def sent(kind: str, value):
            self._sent[kind].append(value)
            return value

        on(self.confidence, "value", lambda v: None if (c := client.unit_float(v)) is None
           else ev.SetOperatingPoint(confidence=sent("confidence", c)))
        on(self.iou, "value", lambda v: None if (t := client.iou_value(v, iou_choices)) is None
           else ev.SetOperatingPoint(iou=sent("iou", t)))
        on(self.colour, "value", lambda v: None if client.choice(v, colours) is None else ev.SetView.of(colour=v))
        on(self.classes, "value", lambda v: None if (c := client.class_values(v, n_classes)) is None
           else ev.SetFilters(classes=c))
        on(self.splits, "value", lambda v: None if (x := client.split_values(v, splits)) is None
           else ev.SetFilters(splits=x))
        self.best.on_click(lambda: session.emit(lambda d: ev.SetOperatingPoint(confidence=d.optimal)))
