"""Per-class metrics: one sortable row per class; a row click filters every view to that class.

Detection: the whole run's COCO numbers per class (AP, AP50, AP75, AR100, as
pycocotools summarizes one class; they do not depend on the operating point)
beside the selection's counts at the operating point: GT, precision, recall, F1,
TP, FN and the false positives by type. Classification: support, precision,
recall and F1 at the operating point (a rejected prediction counts as wrong),
for the selection. A click on a row sets the class filter to that class (the
toolbar's class filter shows it and clears it).
"""

from __future__ import annotations

import numpy as np

from vecexplore.app import events as ev
from vecexplore.app import state as st
from vecexplore.app import ui
from vecexplore.app.view import View
from vecexplore.eval.outcomes import ERROR_TYPE_LABELS, FP_COLUMNS

#: (field, title, hover, format) of the detection columns after the class name.
DETECTION_COLUMNS = (
    ("n_gt", "GT", "non-crowd ground-truth objects in the selection", "0,0"),
    ("AP", "AP", "COCO AP@[.50:.95] of the class, whole run (pycocotools)", "0.000"),
    ("AP50", "AP50", "COCO AP at IoU 0.50, whole run", "0.000"),
    ("AP75", "AP75", "COCO AP at IoU 0.75, whole run", "0.000"),
    ("AR100", "AR100", "COCO recall with 100 detections per image, mean over IoU, whole run", "0.000"),
    ("precision", "P", "TP / (TP + FP) at the operating point, selection", "0.000"),
    ("recall", "R", "TP / GT at the operating point, selection", "0.000"),
    ("f1", "F1", "2 TP / (2 TP + FP + FN), selection", "0.000"),
    ("tp", "TP", "", "0,0"),
    ("fn", "FN", "missed or taken for another class", "0,0"),
    ("fp", "FP", "all false positives of the class", "0,0"),
    *((col, short, label, "0,0") for col, short, label in
      zip(FP_COLUMNS, ("dup", "cls", "loc", "both", "bkg"), ERROR_TYPE_LABELS, strict=False)),
)
CLASSIFICATION_COLUMNS = (
    ("support", "Support", "labelled images of the class in the selection", "0,0"),
    ("predicted", "Predicted", "accepted predictions of the class", "0,0"),
    ("correct", "Correct", "", "0,0"),
    ("precision", "Precision", "correct / predicted", "0.000"),
    ("recall", "Recall", "correct / support (a rejected prediction counts as wrong)", "0.000"),
    ("f1", "F1", "", "0.000"),
)


def columns_of(task: str):
    return DETECTION_COLUMNS if task == "detection" else CLASSIFICATION_COLUMNS


def class_rows(data, d) -> dict[str, np.ndarray]:
    """The table's columns for the selection (``d``: a Derived), one row per class in class_idx order."""
    k = len(data.class_names)
    out: dict[str, np.ndarray] = {"class_idx": np.arange(k, dtype=np.int64),
                                  "name": np.asarray(data.class_names, object)}
    if data.task == "detection":
        from vecexplore.analysis.quality import class_performance
        from vecexplore.eval.coco import per_class_columns
        from vecexplore.eval.outcomes import rate_columns

        t = class_performance(d.evaluation, d.selection).table
        for col in ("n_gt", "tp", "fn", "fp", *FP_COLUMNS):
            out[col] = t[col].to_numpy(np.int64)
        out.update({key: np.asarray(v, np.float64) for key, v in
                    rate_columns(out["tp"], out["fp"], out["fn"]).items() if key in ("precision", "recall", "f1")})
        out.update(per_class_columns(data.coco_metrics()))
    else:
        pc = st.classification_per_class(d.outcomes, k, d.selection)
        for col in ("support", "predicted", "correct", "precision", "recall", "f1"):
            out[col] = pc[col]
    return out


class ClassTableView(View):
    name = "class-table"
    slot = "tab"
    title = "Per class"
    depends = frozenset({"op", "selection", "filters"})

    def __init__(self, ctx):
        super().__init__(ctx)
        from bokeh.models import Column, ColumnDataSource, DataTable, NumberFormatter, TableColumn

        cols = columns_of(self.task)
        self.source = ColumnDataSource(data={k: [] for k in ("class_idx", "name", *(c[0] for c in cols))},
                                       name="class-table-source")
        columns = [TableColumn(field="name", title="Class", width=120)]
        for field, title, _tip, fmt in cols:
            columns.append(TableColumn(field=field, title=title, width=58 if len(title) > 3 else 44,
                                       formatter=NumberFormatter(format=fmt, nan_format="–", text_align="right")))
        self.table = DataTable(source=self.source, columns=columns, name="class-table", css_classes=["vx-class-table"],
                               sizing_mode="stretch_both", index_position=None, selectable=True, sortable=True,
                               reorderable=False, row_height=24)
        keys = " · ".join(f"{t}: {tip}" for _f, t, tip, _ in cols if tip)
        self.caption = ui.text_div(text="", name="class-table-caption", css_classes=["vx-caption"],
                                   sizing_mode="stretch_width", html_attributes={"title": keys})
        self.root = Column(self.caption, self.table, sizing_mode="stretch_both", css_classes=["vx-tab-body"])

    def layout(self):
        return self.root

    def compute(self, d):
        rows = class_rows(self.data, d)
        what = "whole run" if d.selection is None else f"selection ({len(d.selection):,} images)"
        if self.task == "detection":
            caption = (f"AP columns: the whole run (COCO). Counts, P / R / F1: the {what} at confidence ≥ "
                       f"{d.state.confidence:.3f}, IoU {d.state.iou:.2f}. Click a column to sort, a row to filter "
                       "to that class (hover here for every column).")
        else:
            caption = (f"The {what} at confidence ≥ {d.state.confidence:.3f} (a rejected prediction counts as "
                       "wrong). Click a column to sort, a row to filter to that class.")
        marked = [int(c) for c in d.state.classes] if len(d.state.classes) == 1 else []
        return {"rows": rows, "caption": caption, "marked": marked}

    def apply(self, p) -> None:
        self.source.data = p["rows"]
        if list(self.source.selected.indices) != p["marked"]:
            self.source.selected.indices = p["marked"]
        self.caption.text = p["caption"]

    def wire(self, session) -> None:
        n = len(self.data.class_names)

        def pick(_attr, old, new):
            if session.applying:
                return
            row = ui.clicked_row(old, new, n, "class-table row")
            if row is not None:
                session.emit(ev.SetFilters(classes=(row,)))

        self.source.selected.on_change("indices", pick)
