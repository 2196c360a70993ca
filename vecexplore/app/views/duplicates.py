"""Near duplicates: the run's near-duplicate pairs with both thumbnails, most similar first, and
the split leakage (images of other splits with a near duplicate in train) with the metrics with
and without them in the caption. A row click selects both images and opens the first.

The pairs and the figures are the build's (:mod:`vecexplore.analysis.duplicates`), so they do not
follow the confidence slider. :func:`pair_rows` and :func:`caption` (pure) make the display.
"""

from __future__ import annotations

import numpy as np

from vecexplore.app import events as ev
from vecexplore.app import ui
from vecexplore.app.view import View

#: Pairs on the page, most similar first.
MAX_ROWS = 500
THUMB_PX = 56


def pair_rows(table, *, limit: int = MAX_ROWS) -> dict[str, np.ndarray]:
    """Display columns of the ``limit`` most similar pairs of a near-duplicate table: ``rank``,
    ``a``/``b`` (image_idx), ``image_id_a``/``image_id_b``, ``split_a``/``split_b``, ``similarity``,
    ``identical`` ("yes"/""), ``where`` ("across splits"/"within a split")."""
    top = table.head(limit)
    return {
        "rank": np.arange(1, len(top) + 1),
        "a": top["image_idx_a"].to_numpy(np.int64), "b": top["image_idx_b"].to_numpy(np.int64),
        "image_id_a": top["image_id_a"].to_numpy(np.int64), "image_id_b": top["image_id_b"].to_numpy(np.int64),
        "split_a": top["split_a"].astype(str).to_numpy(object), "split_b": top["split_b"].astype(str).to_numpy(object),
        "similarity": top["similarity"].to_numpy(np.float64),
        "identical": np.array(["yes" if v else "" for v in top["exact"].to_numpy(bool)], object),
        "where": np.array(["across splits" if v else "within a split" for v in top["cross_split"].to_numpy(bool)],
                          object),
    }


def _num(value, digits: int = 3) -> str:
    return "–" if not isinstance(value, (int, float)) else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def caption(summary: dict) -> str:
    """The panel's caption (plain text: the Div shows it as text) from :func:`vecexplore.analysis.duplicates.summary`."""
    dups, leak = summary.get("near_duplicates"), summary.get("leakage")
    if dups is None:
        return "This run was built before near duplicates were stored: rebuild it to find them."
    parts = [f"{dups['pairs']} near-duplicate pairs (cosine ≥ {_num(dups['threshold'], 2)}): "
             f"{dups['within_split']} within a split, {dups['across_splits']} across splits, "
             f"{dups['exact']} identical files; most similar first."]
    if dups.get("note"):
        parts.append(f"Note: {dups['note']}.")
    if leak is None:
        parts.append("Split leakage: the run has no train split (--train-split names it).")
    else:
        splits = ", ".join(leak.get("eval_splits") or [])
        parts.append(f"Split leakage: {leak['n_leaking']} of {leak['n_eval']} images of {splits} have a "
                     f"near duplicate in {leak['train_split']}.")
        metrics = leak.get("metrics") or {}
        every, kept = metrics.get("all") or {}, metrics.get("without_leaking") or {}
        figures = [f"{k} {_num(v)} → {_num(kept.get(k))}" for k, v in every.items() if k != "n_images"]
        if figures:
            parts.append(f"Metrics of {splits}, all → without the leaking images: {'; '.join(figures)}.")
    parts.append("Click a row to select both images.")
    return " ".join(parts)


class DuplicatesView(View):
    name = "duplicates"
    slot = "tab"
    title = "Dups"  # "Duplicates" pushes the last tab title out of the strip at 1280 px
    depends = frozenset({"selection"})
    _COLUMNS = ("rank", "a", "b", "image_id_a", "image_id_b", "split_a", "split_b", "similarity", "identical",
                "where")

    def __init__(self, ctx):
        super().__init__(ctx)
        from bokeh.models import (
            Column,
            ColumnDataSource,
            DataTable,
            HTMLTemplateFormatter,
            NumberFormatter,
            TableColumn,
        )

        thumb = HTMLTemplateFormatter(template=(
            f'<img src="{ctx.url_base}/thumb/<%= value %>" alt="" '
            f'style="max-width:{THUMB_PX}px;max-height:{THUMB_PX}px;border-radius:3px">'))
        self.source = ColumnDataSource(data={c: [] for c in self._COLUMNS}, name="duplicates-source")
        self.table = DataTable(
            source=self.source, name="duplicates", css_classes=["vx-duplicates"], sizing_mode="stretch_both",
            index_position=None, selectable=True, sortable=True, reorderable=False, autosize_mode="fit_viewport",
            row_height=THUMB_PX + 6,
            columns=[
                TableColumn(field="rank", title="#", width=36, formatter=NumberFormatter(format="0")),
                TableColumn(field="image_id_a", title="Image A", width=THUMB_PX + 8, formatter=thumb),
                TableColumn(field="image_id_b", title="Image B", width=THUMB_PX + 8, formatter=thumb),
                TableColumn(field="similarity", title="Cosine", width=60, formatter=NumberFormatter(format="0.000")),
                TableColumn(field="split_a", title="Split A", width=70),
                TableColumn(field="split_b", title="Split B", width=70),
                TableColumn(field="where", title="Where", width=100),
                TableColumn(field="identical", title="Identical", width=60),
            ],
        )
        self.caption = ui.text_div(text="", name="duplicates-caption", css_classes=["vx-caption"],
                                   sizing_mode="stretch_width")
        self.root = Column(self.caption, self.table, sizing_mode="stretch_both", css_classes=["vx-tab-body"])
        self._pairs = np.zeros((0, 2), np.int64)
        self._ready = False

    def layout(self):
        return self.root

    def compute(self, d):
        if self._ready:
            return {}
        from vecexplore.analysis.duplicates import of_run, summary

        table, leak = of_run(self.data.run)
        return {"cols": pair_rows(table),
                "caption": caption(summary(table, leak, image_id=self.data.dataset.images.image_id))}

    def apply(self, p) -> None:
        if "cols" in p:
            self._pairs = np.stack([p["cols"]["a"], p["cols"]["b"]], axis=1)
            self.source.data = dict(p["cols"])
            self.caption.text = p["caption"]
            self._ready = True

    def wire(self, session) -> None:
        def pick(_attr, old, new):
            if session.applying:
                return
            r = ui.clicked_row(old, new, len(self._pairs), "duplicates row")
            if r is None:
                return
            a, b = (int(i) for i in self._pairs[r])
            session.emit(ev.Select(np.array([a, b], np.int64), f"near-duplicate pair {r + 1}"))
            session.emit(ev.OpenImage(a))

        self.source.selected.on_change("indices", pick)


__all__ = ["DuplicatesView", "caption", "pair_rows"]
