"""Likely label errors: the run's label issues, most likely first; a row click selects that image,
opens it in the detail view and highlights the suspicious box there.

The table is the build's (:mod:`vecexplore.analysis.label_issues`, at the build's
operating point; computed on first use for an older run), so it does not follow
the confidence slider. :func:`issue_rows` (pure) turns the issue table into the
display columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vecexplore.app import events as ev
from vecexplore.app import ui
from vecexplore.app.view import View

#: Rows on the page: the likely issues first, then the other candidates, at most this many.
MAX_ROWS = 500
KIND_WORDS = {"wrong_class": "wrong class", "missing": "missing label", "spurious": "spurious label",
              "bad_box": "badly drawn box", "wrong_label": "wrong label"}


def issue_rows(issues, class_names: Sequence[str], *, limit: int = MAX_ROWS) -> dict[str, np.ndarray]:
    """Display columns of the top ``limit`` issues (likely first, then by score; stable).

    Columns: ``row`` (the issue's row in ``issues``), ``rank``, ``score``, ``kind`` (words),
    ``image_id``, ``annotation`` ("–" for none), ``label`` (the GT class or "–"),
    ``suggested`` (the model's class or "–"), ``likely`` ("yes"/"").
    """
    import pandas as pd

    likely = issues["likely"].to_numpy(bool)
    order = np.lexsort((np.arange(len(issues)), ~likely))[:limit]
    top = issues.iloc[order]

    def name(k) -> str:
        return str(class_names[int(k)]) if 0 <= int(k) < len(class_names) else "–"

    return {
        "row": order.astype(np.int64),
        "rank": np.arange(1, len(order) + 1),
        "score": top["score"].to_numpy(np.float64),
        "kind": np.array([KIND_WORDS.get(k, k) for k in top["kind"]], object),
        "image_id": top["image_id"].to_numpy(),
        "annotation": np.array(["–" if pd.isna(a) else str(int(a)) for a in top["annotation_id"]], object),
        "label": np.array([name(k) for k in top["class_idx"]], object),
        "suggested": np.array([name(k) for k in top["suggested_class_idx"]], object),
        "likely": np.array(["yes" if v else "" for v in likely[order]], object),
    }


class LabelIssuesView(View):
    name = "label-issues"
    slot = "tab"
    title = "Label errors"
    depends = frozenset({"selection"})
    _COLUMNS = ("row", "rank", "score", "kind", "image_id", "annotation", "label", "suggested", "likely")

    def __init__(self, ctx):
        super().__init__(ctx)
        from bokeh.models import Column, ColumnDataSource, DataTable, NumberFormatter, TableColumn

        self.source = ColumnDataSource(data={c: [] for c in self._COLUMNS}, name="label-issues-source")
        self.table = DataTable(
            source=self.source, name="label-issues", css_classes=["vx-label-issues"], sizing_mode="stretch_both",
            index_position=None, selectable=True, sortable=True, reorderable=False, autosize_mode="fit_viewport",
            columns=[
                TableColumn(field="rank", title="#", width=36, formatter=NumberFormatter(format="0")),
                TableColumn(field="score", title="Score", width=56, formatter=NumberFormatter(format="0.00")),
                TableColumn(field="kind", title="Kind", width=110),
                TableColumn(field="image_id", title="Image id", width=70, formatter=NumberFormatter(format="0")),
                TableColumn(field="annotation", title="Annotation", width=80),
                TableColumn(field="label", title="Label", width=110),
                TableColumn(field="suggested", title="Model says", width=110),
                TableColumn(field="likely", title="Likely", width=50),
            ],
        )
        self.caption = ui.text_div(text="", name="label-issues-caption", css_classes=["vx-caption"],
                                   sizing_mode="stretch_width")
        self.root = Column(self.caption, self.table, sizing_mode="stretch_both", css_classes=["vx-tab-body"])
        self._image_idx = np.zeros(0, np.int64)
        self._rows = np.zeros(0, np.int64)
        self._ready = False

    def layout(self):
        return self.root

    def compute(self, d):
        issues = self.data.label_issues
        out = {"marked": [int(m) for m in d.state.marked(self.name)]}
        if not self._ready:
            cols = issue_rows(issues, self.data.class_names)
            n_likely = int(issues["likely"].sum())
            n_images = len(np.unique(issues["image_idx"].to_numpy()[issues["likely"].to_numpy(bool)]))
            out["cols"] = cols
            out["image_idx"] = issues["image_idx"].to_numpy(np.int64)[cols["row"]]
            out["caption"] = (
                f"{n_likely} likely label errors on {n_images} images ({len(issues)} suspicions in all), most "
                "likely first, at the build's operating point: a confident prediction that contradicts the ground "
                "truth (wrong class, missing label, badly drawn box), or a GT that nothing comes near while its "
                "class is found elsewhere (spurious). Click a row to select the image and see it in the detail view "
                "with the suspicious box highlighted.")
        return out

    def apply(self, p) -> None:
        if "cols" in p:
            self._rows = np.asarray(p["cols"]["row"], np.int64)
            self._image_idx = np.asarray(p["image_idx"], np.int64)
            self.source.data = dict(p["cols"])
            self.caption.text = p["caption"]
            self._ready = True
        rows = np.flatnonzero(np.isin(self._rows, p["marked"])).tolist()
        if list(self.source.selected.indices) != rows:
            self.source.selected.indices = rows

    def wire(self, session) -> None:
        def pick(_attr, old, new):
            if session.applying:
                return
            r = ui.clicked_row(old, new, len(self._rows), "label-issues row")
            if r is None:
                return
            i = int(self._image_idx[r])
            session.emit(ev.Select(np.array([i], np.int64), f"label issue {int(self.source.data['rank'][r])}",
                                   marks=((self.name, int(self._rows[r])),)))
            session.emit(ev.OpenImage(i))

        self.source.selected.on_change("indices", pick)


__all__ = ["LabelIssuesView", "issue_rows"]
