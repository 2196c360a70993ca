"""The ROC curve and its AUC (two-class classification with per-class scores).

Class 1 is the positive class and its score column the score, as
``roc_auc_score`` takes them (:func:`vecexplore.eval.classification.roc_curve`
equals scikit-learn's ``roc_curve(..., drop_intermediate=False)``). The curve is
the selection's (or the whole run's); the hover gives each point's threshold.
"""

from __future__ import annotations

import numpy as np

from vecexplore.app import ui
from vecexplore.app.view import View


class ROCView(View):
    name = "roc"
    slot = "tab"
    title = "ROC"
    depends = frozenset({"selection"})
    tasks = frozenset({"classification"})

    @classmethod
    def available(cls, data) -> bool:
        return len(data.class_names) == 2 and data.dataset.pred.scores is not None

    def __init__(self, ctx):
        super().__init__(ctx)
        from bokeh.models import Column, ColumnDataSource, HoverTool, Range1d
        from bokeh.plotting import figure

        self.source = ColumnDataSource(data={"fpr": [], "tpr": [], "threshold": []}, name="roc-source")
        self.figure = figure(sizing_mode="stretch_both", min_height=160, name="roc", css_classes=["vx-roc"], tools="",
                             toolbar_location=None, x_range=Range1d(0, 1), y_range=Range1d(0, 1.02),
                             x_axis_label="false positive rate", y_axis_label="true positive rate")
        self.figure.line([0, 1], [0, 1], line_dash="dashed", line_color="#9aa5b1")
        line = self.figure.line("fpr", "tpr", source=self.source, line_width=2.5, line_color="#2f6db5",
                                name="roc-line")
        self.figure.add_tools(HoverTool(renderers=[line], mode="vline", tooltips=[
            ("threshold ≥", "@threshold{0.000}"), ("FPR", "@fpr{0.000}"), ("TPR", "@tpr{0.000}")]))
        self.figure.grid.grid_line_color = "#eef1f5"
        self.figure.outline_line_color = None
        self.caption = ui.text_div(text="", name="roc-caption", css_classes=["vx-caption"], sizing_mode="stretch_width")
        self.root = Column(self.caption, self.figure, sizing_mode="stretch_both", css_classes=["vx-tab-body"])

    def layout(self):
        return self.root

    def compute(self, d):
        from vecexplore.eval.classification import binary_roc_auc, roc_curve

        ds = self.data.dataset
        pred = ds.pred
        label = d.evaluation.arrays["label"][pred.image_idx]
        keep = label >= 0
        if d.selection is not None:
            mask = np.zeros(ds.num_images, bool)
            mask[d.selection] = True
            keep &= mask[pred.image_idx]
        positive, score = label[keep] == 1, pred.scores[keep, 1]
        fpr, tpr, thr = roc_curve(positive, score)
        auc = binary_roc_auc(positive, score)
        what = "Whole run" if d.selection is None else f"Selection ({len(d.selection):,} images)"
        name = self.data.class_names[1]
        caption = (f"{what}: {int(keep.sum()):,} labelled images, positive class {name!r}. AUC {auc:.3f}."
                   if len(fpr) else f"{what}: both classes are needed for a ROC curve.")
        return {"data": {"fpr": fpr, "tpr": tpr, "threshold": np.where(np.isfinite(thr), thr, np.nan)},
                "caption": caption}

    def apply(self, p) -> None:
        self.source.data = p["data"]
        self.caption.text = p["caption"]
