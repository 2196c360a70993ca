"""Calibration (classification): is a prediction of confidence 0.8 right 80% of the time?

A reliability diagram of the selection's predictions (every labelled image with
a prediction, whatever the threshold: calibration is about the scores): bars
of the accuracy per confidence bin against the diagonal of perfect
calibration, the gap shaded, the images per bin below, and the expected
calibration error (ECE, :func:`vecexplore.eval.classification.reliability`).
A click on a bar selects its images (shift adds).
"""

from __future__ import annotations

import numpy as np

from vecexplore.app import events as ev
from vecexplore.app import ui
from vecexplore.app.view import View

N_BINS = 10


def calibration_inputs(data, d):
    """(image_idx, confidence, correct) of the selection's labelled images with a prediction."""
    arrays = d.evaluation.arrays
    label, pred, score = arrays["label"], arrays["prediction"], arrays["score"]
    keep = (label >= 0) & (pred >= 0) & np.isfinite(score)
    if d.selection is not None:
        mask = np.zeros(len(keep), bool)
        mask[d.selection] = True
        keep &= mask
    idx = np.flatnonzero(keep)
    return idx, score[idx], pred[idx] == label[idx]


class CalibrationView(View):
    name = "calibration"
    slot = "tab"
    title = "Calibration"
    depends = frozenset({"selection"})
    tasks = frozenset({"classification"})

    def __init__(self, ctx):
        super().__init__(ctx)
        from bokeh.models import Column, ColumnDataSource, HoverTool, Range1d
        from bokeh.plotting import figure

        self.source = ColumnDataSource(data={k: [] for k in ("x", "left", "right", "accuracy", "confidence", "count",
                                                             "gap_top", "gap_bottom", "text")},
                                       name="calibration-source")
        self.figure = figure(sizing_mode="stretch_both", min_height=160, name="calibration",
                             css_classes=["vx-calibration"], tools="", toolbar_location=None, x_range=Range1d(0, 1),
                             y_range=Range1d(0, 1.02), x_axis_label="confidence of the prediction",
                             y_axis_label="accuracy")
        self.figure.line([0, 1], [0, 1], line_dash="dashed", line_color="#7b8794", legend_label="perfect calibration")
        bars = self.figure.quad(left="left", right="right", bottom=0, top="accuracy", source=self.source,
                                fill_color="#2f6db5", fill_alpha=0.8, line_color="#ffffff", legend_label="accuracy",
                                selection_line_color="#111111", selection_line_width=2, nonselection_fill_alpha=0.8,
                                name="calibration-bars")
        self.figure.quad(left="left", right="right", bottom="gap_bottom", top="gap_top", source=self.source,
                         fill_color="#d62728", fill_alpha=0.25, line_color=None, legend_label="gap")
        self.figure.text(x="x", y=0.01, text="text", source=self.source, text_align="center", text_font_size="9.5px",
                         text_color="#ffffff")
        self.figure.legend.location = "top_left"
        self.figure.legend.label_text_font_size = "10.5px"
        self.figure.add_tools(HoverTool(renderers=[bars], tooltips=[
            ("confidence", "@left{0.0}–@right{0.0}"), ("mean confidence", "@confidence{0.000}"),
            ("accuracy", "@accuracy{0.000}"), ("images", "@count")]))
        self.figure.grid.grid_line_color = "#eef1f5"
        self.figure.outline_line_color = None
        self.caption = ui.text_div(text="", name="calibration-caption", css_classes=["vx-caption"],
                                   sizing_mode="stretch_width")
        self.root = Column(self.caption, self.figure, sizing_mode="stretch_both", css_classes=["vx-tab-body"])
        self._members: list[np.ndarray] = []

    def layout(self):
        return self.root

    def compute(self, d):
        from vecexplore.eval.classification import reliability

        idx, conf, correct = calibration_inputs(self.data, d)
        r = reliability(conf, correct, n_bins=N_BINS)
        edges = r["edges"]
        ids = np.clip(np.searchsorted(np.linspace(0.0, 1.0 + 1e-8, N_BINS + 1)[1:-1], conf), 0, N_BINS - 1)
        members = [idx[ids == b] for b in range(N_BINS)]
        acc, mconf = r["accuracy"], r["confidence"]
        data = {"x": (edges[:-1] + edges[1:]) / 2, "left": edges[:-1], "right": edges[1:],
                "accuracy": np.nan_to_num(acc), "confidence": mconf, "count": r["count"],
                "gap_top": np.where(np.isfinite(acc), np.maximum(acc, mconf), 0.0),
                "gap_bottom": np.where(np.isfinite(acc), np.minimum(acc, mconf), 0.0),
                "text": np.array([f"{c:,}" if c else "" for c in r["count"]], object)}
        what = "Whole run" if d.selection is None else f"Selection ({len(d.selection):,} images)"
        caption = (f"{what}: {len(idx):,} labelled images with a prediction. ECE {r['ece']:.3f} · MCE {r['mce']:.3f} "
                   "(0 = a confidence of p is right a share p of the time). Click a bar to select its images."
                   if len(idx) else f"{what}: no labelled image with a prediction.")
        return {"data": data, "caption": caption, "members": members,
                "marked": [int(m) for m in d.state.marked(self.name)]}

    def apply(self, p) -> None:
        self._members = p["members"]
        self.source.data = p["data"]
        if list(self.source.selected.indices) != p["marked"]:
            self.source.selected.indices = p["marked"]
        self.caption.text = p["caption"]

    def wire(self, session) -> None:
        def tap(x: float, y: float, shift: bool) -> None:
            b = int(np.floor(x * N_BINS))
            if not (0 <= b < N_BINS) or b >= len(self._members) or not 0 <= y <= 1.02:
                return
            session.emit(ev.Select(self._members[b], f"confidence {b / N_BINS:.1f}–{(b + 1) / N_BINS:.1f}",
                                   mode="add" if shift else None, marks=((self.name, b),)))

        ui.on_tap(self.figure, session, tap)
