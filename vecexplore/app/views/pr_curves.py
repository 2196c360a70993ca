"""Precision-recall curves per class at the chosen IoU, exactly pycocotools' (detection).

The curves are the COCO precision arrays of the whole run
(``CocoMetrics.precision[t, :, k, area all, 100 detections]``: 101-point
interpolated precision against recall), so their mean over recall is the AP
that pycocotools prints for that class and IoU. The thick line is the mean
over the classes with ground truth (the run's AP at that IoU); thin lines are
the chosen classes (by default the ones with the most ground truth). The hover
gives the confidence at which each recall is reached. The IoU is the app's
(the toolbar's slider, 0.50:0.05:0.95).
"""

from __future__ import annotations

import numpy as np

from vecexplore.app import client, ui
from vecexplore.app import events as ev
from vecexplore.app.view import View

#: Classes drawn when none is chosen: the ones with the most ground truth.
DEFAULT_CLASSES = 5
#: At most this many chosen classes are drawn (one colour each).
MAX_CLASSES = 10


def curves(cm, iou: float, classes: list[int]) -> dict:
    """Lines of the mean curve and of ``classes`` at ``iou`` (None when the IoU was not evaluated).

    Returns ``{"xs", "ys", "score", "name", "ap", "colour", "width"}`` for a multi_line, and
    ``"iou_index"``; precision is NaN where a class has no ground truth.
    """
    iou_grid = np.asarray(cm.params.iou_thresholds, np.float64)
    hit = np.flatnonzero(np.isclose(iou_grid, iou))
    if not hit.size:
        return {}
    t = int(hit[0])
    rec = np.asarray(cm.params.recall_thresholds, np.float64)
    block = cm.precision[t, :, :, 0, -1]  # (R, K)
    scores = cm.scores[t, :, :, 0, -1]
    out = {k: [] for k in ("xs", "ys", "score", "name", "ap", "colour", "width")}
    have = (block > -1).all(axis=0)
    palette = ui.categorical_palette(max(len(classes), 1))
    if have.any():
        mean = block[:, have].mean(axis=1)
        out["xs"].append(rec)
        out["ys"].append(mean)
        out["score"].append(np.full(len(rec), np.nan))
        out["name"].append("mean over classes")
        out["ap"].append(float(mean.mean()))
        out["colour"].append("#111111")
        out["width"].append(3.0)
    for colour, k in zip(palette, classes, strict=False):
        col = block[:, k]
        if (col <= -1).all():
            continue
        p = np.where(col > -1, col, np.nan)
        out["xs"].append(rec)
        out["ys"].append(p)
        out["score"].append(np.where(scores[:, k] > 0, scores[:, k], np.nan))
        out["name"].append(str(k))
        out["ap"].append(float(np.nanmean(p)))
        out["colour"].append(colour)
        out["width"].append(1.8)
    out["iou_index"] = t
    return out


class PRCurvesView(View):
    name = "pr-curves"
    slot = "tab"
    title = "PR curves"
    depends = frozenset({"op", "pr"})
    tasks = frozenset({"detection"})

    def __init__(self, ctx):
        super().__init__(ctx)
        from bokeh.models import Column, ColumnDataSource, HoverTool, MultiChoice, Range1d
        from bokeh.plotting import figure

        self.source = ColumnDataSource(data={k: [] for k in ("xs", "ys", "score", "name", "label", "colour",
                                                             "width")}, name="pr-source")
        self.figure = figure(sizing_mode="stretch_both", name="pr-curves", css_classes=["vx-pr-curves"], tools="",
                             toolbar_location=None, x_range=Range1d(0, 1), y_range=Range1d(0, 1.03),
                             x_axis_label="recall", y_axis_label="precision (interpolated, COCO)")
        lines = self.figure.multi_line(xs="xs", ys="ys", source=self.source, line_color="colour", line_width="width",
                                       legend_field="label", name="pr-lines")
        self.figure.legend.location = "bottom_left"
        self.figure.legend.label_text_font_size = "10.5px"
        self.figure.legend.background_fill_alpha = 0.7
        self.figure.add_tools(HoverTool(renderers=[lines], tooltips=[("", "@label"), ("recall", "$x{0.00}"),
                                                                      ("precision", "$y{0.000}")]))
        self.figure.grid.grid_line_color = "#eef1f5"
        self.figure.outline_line_color = None
        self.classes = MultiChoice(value=[], name="pr-classes", width=330, placeholder="classes with the most GT",
                                   options=ui.choice_options(enumerate(self.data.class_names)))
        self.caption = ui.text_div(text="", name="pr-caption", css_classes=["vx-caption"], sizing_mode="stretch_width")
        self.root = Column(self.classes, self.caption, self.figure, sizing_mode="stretch_both",
                           css_classes=["vx-tab-body"])
        gt = self.data.dataset.gt
        counts = np.bincount(gt.class_idx[~gt.iscrowd], minlength=len(self.data.class_names))
        self._default = [int(k) for k in np.argsort(-counts, kind="stable")[:DEFAULT_CLASSES] if counts[k] > 0]

    def layout(self):
        return self.root

    def compute(self, d):
        chosen = list(d.state.pr_classes) or self._default
        lines = curves(self.data.coco_metrics(), d.state.iou, chosen)
        names = self.data.class_names
        if not lines:
            return {"data": {k: [] for k in self.source.data},
                    "caption": f"COCO evaluates IoU 0.50:0.05:0.95; this run's IoU {d.state.iou:.2f} is not one of "
                               "them."}
        label = [f"{n if n == 'mean over classes' else names[int(n)]} · AP {ap:.3f}"
                 for n, ap in zip(lines["name"], lines["ap"], strict=True)]
        data = {k: lines[k] for k in ("xs", "ys", "score", "name", "colour", "width")}
        data["label"] = label
        caption = (f"Whole run, IoU {d.state.iou:.2f}: pycocotools' interpolated precision at 101 recall points "
                   "(area all, 100 detections); each curve's mean is its AP. Choose classes above.")
        return {"data": data, "caption": caption, "chosen": [str(c) for c in d.state.pr_classes]}

    def apply(self, p) -> None:
        self.source.data = p["data"]
        self.caption.text = p["caption"]
        if list(self.classes.value) != p.get("chosen", []):
            self.classes.value = p.get("chosen", [])

    def wire(self, session) -> None:
        n = len(self.data.class_names)

        def chosen(_attr, _old, new):
            if session.applying:
                return
            values = client.class_values(new, n)
            if values is None:
                ui.refused("pr-classes", new)
                return
            session.emit(ev.SetView.of(pr_classes=values[:MAX_CLASSES]))

        self.classes.on_change("value", chosen)
