"""A comparison run's tab: model A's and model B's confusion matrices and their difference B − A.

Only on runs written by ``vecexplore compare``. Each model is shown at its own
build operating point (the toolbar moves the other views, not these). A click on
a cell of A or B selects the images with an object in that cell under that model;
a click on a cell of the difference selects the images whose count in that cell
changed (:func:`vecexplore.app.comparison.cell_images`). The clicked cell stays
outlined while it makes the selection. Difference cells are red where B has more
of an error cell or fewer of a correct one (worse), blue where better.

Stable names: ``compare-matrix-{a,b,diff}`` (figures), ``compare-source-{a,b,diff}``
(row-major cells, index = row * L + col, columns ``row, col, gt, pred, count, tone, text``),
``compare-caption``.
"""

from __future__ import annotations

import numpy as np

from vecexplore.app import comparison as cmp
from vecexplore.app import events as ev
from vecexplore.app import ui
from vecexplore.app.view import View
from vecexplore.app.views.confusion import TONE_PALETTE, cell_focus

_TITLES = {"a": "Model A", "b": "Model B", "diff": "Difference B − A"}


def matrix_tones(counts: np.ndarray, which: str, has_background: bool) -> np.ndarray:
    """(L*L,) float32 colour value per cell in [-1, 1] (NaN = empty / no change): A and B as the
    confusion tab shades them (blue correct, red errors, by share of the largest cell); the
    difference red where B is worse (more in an error cell, fewer on the diagonal), blue where better."""
    n = counts.shape[0]
    flat = counts.reshape(-1).astype(np.float64)
    row, col = np.divmod(np.arange(n * n), n)
    correct = (row == col) & ~((row == n - 1) & has_background)
    scale = max(float(np.abs(flat).max()), 1.0)
    shade = np.maximum(np.abs(flat) / scale, 1e-3)
    if which == "diff":
        worse = np.where(correct, flat < 0, flat > 0)
        tone = np.where(worse, shade, -shade)
    else:
        tone = np.where(correct, -shade, shade)
    return np.where(flat == 0, np.nan, tone).astype(np.float32)


class CompareMatricesView(View):
    name = "compare-matrices"
    slot = "tab"
    title = "A vs B"
    depends = frozenset({"selection"})

    @classmethod
    def available(cls, data) -> bool:
        return data.comparison is not None

    def __init__(self, ctx):
        super().__init__(ctx)
        from bokeh.models import (
            Column,
            ColumnDataSource,
            HoverTool,
            LinearColorMapper,
            Range1d,
            Row,
        )
        from bokeh.plotting import figure

        comp = self.data.comparison
        cm = comp.eval_a.confusion
        self.labels, self.has_background = tuple(cm.labels), cm.has_background
        n = len(self.labels)
        names = np.asarray(self.labels, object)
        row, col = np.divmod(np.arange(n * n, dtype=np.int64), n)
        counts = cmp.matrices(comp)
        fill = LinearColorMapper(palette=TONE_PALETTE, low=-1, high=1, nan_color="#f6f6f6")
        ink = LinearColorMapper(palette=["#333333", "#ffffff"], low=0, high=1.1)  # white on dark cells
        self.sources, self.figures = {}, {}
        for which in cmp.MATRICES:
            c = counts[which].reshape(-1)
            text = [("" if v == 0 else f"{v:+d}") if which == "diff" else (str(v) if v else "") for v in c.tolist()]
            tone = matrix_tones(counts[which], which, self.has_background)
            src = ColumnDataSource(data={"row": row, "col": col, "gt": names[row], "pred": names[col],
                                         "count": c.astype(np.int32), "tone": tone, "text": text,
                                         "ink": (np.abs(np.nan_to_num(tone)) > 0.55).astype(np.float32)},
                                   name=f"compare-source-{which}")
            f = figure(sizing_mode="stretch_both", name=f"compare-matrix-{which}",
                       css_classes=["vx-compare-matrix", f"vx-compare-matrix-{which}"], tools="", toolbar_location=None,
                       x_range=Range1d(-0.5, n - 0.5), y_range=Range1d(n - 0.5, -0.5), x_axis_location="above",
                       title=_TITLES[which], min_border_left=4, min_border_right=4)
            cells = f.rect("col", "row", 0.94, 0.94, source=src, fill_color={"field": "tone", "transform": fill},
                           line_color=None, selection_line_color="#111111", selection_line_width=2.5,
                           nonselection_fill_alpha=1.0, name=f"compare-cells-{which}")
            if n <= 16:
                f.text("col", "row", text="text", source=src, text_align="center", text_baseline="middle",
                       text_font_size="9px", text_color={"field": "ink", "transform": ink})
            ticks = list(range(n))
            for axis in (f.xaxis, f.yaxis):
                axis.ticker = ticks
                axis.major_label_overrides = {i: str(self.labels[i]) for i in ticks}
                axis.major_label_text_font_size = "9px"
            f.xaxis.major_label_orientation = 0.9
            f.grid.visible = False
            f.outline_line_color = None
            f.add_tools(HoverTool(renderers=[cells], tooltips=[("ground truth", "@gt"), ("predicted", "@pred"),
                                                               ("count" if which != "diff" else "B − A", "@count")]))
            self.sources[which], self.figures[which] = src, f
        self.caption = ui.text_div(text=self._caption(), name="compare-caption", css_classes=["vx-caption"],
                                   sizing_mode="stretch_width")
        self.root = Column(self.caption, Row(*self.figures.values(), sizing_mode="stretch_both"),
                           sizing_mode="stretch_both", css_classes=["vx-tab-body"])

    def _caption(self) -> str:
        doc = self.data.comparison.doc
        ops = []
        for side in ("a", "b"):
            op = (doc.get(side) or {}).get("operating_point") or {}
            conf = op.get("confidence")
            ops.append(f"{side.upper()} at confidence ≥ {conf:.3f}" if isinstance(conf, (int, float)) else side.upper())
        bg = ", last = background" if self.has_background else ""
        return (f"Each model at its own build operating point ({'; '.join(ops)}) · rows GT, columns predicted{bg} · "
                "click a cell to select its images; a difference cell selects the images whose count there changed")

    def layout(self):
        return self.root

    def compute(self, d):
        marks = {w: [] for w in cmp.MATRICES}
        for which, cell in d.state.marked(self.name):
            marks[which].append(int(cell))
        return marks

    def apply(self, marks) -> None:
        for which, src in self.sources.items():
            if list(src.selected.indices) != marks[which]:
                src.selected.indices = marks[which]

    def wire(self, session) -> None:
        size = len(self.labels)
        comp = self.data.comparison
        for which, f in self.figures.items():
            def tap(x: float, y: float, shift: bool, which=which) -> None:
                row, col = round(y), round(x)
                if not (0 <= row < size and 0 <= col < size) or max(abs(y - row), abs(x - col)) > 0.47:
                    return
                how = f"{_TITLES[which]}: cell {self.labels[row]} → {self.labels[col]}"
                focus = cell_focus(row, col, size, has_background=self.has_background)
                session.emit(ev.Select(cmp.cell_images(comp, which, row, col), how, focus=focus,
                                       mode="add" if shift else None, marks=((self.name, (which, row * size + col)),)))

            ui.on_tap(f, session, tap)
