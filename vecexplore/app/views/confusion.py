"""The confusion-matrix heatmap: rows = ground truth (top to bottom), columns = prediction.

Detection matrices end with the background row and column. Correct cells are
shaded blue, error cells red (:func:`vecexplore.app.state.matrix_cells` gives
the shade). The matrix shows the selection's confusions (or the whole run's).

A click on a cell selects that cell's images over the whole run, at the
current filters, replacing the selection (or combining with it in the
session's mode; shift-click adds). The clicked cells stay outlined while they
make the selection. The gallery then draws the objects that put each image in
the cell (:func:`cell_focus`). At the object level (a run with an object map) a
click selects the cell's objects themselves — its GT and its predictions
(:func:`vecexplore.app.objects.cell_rows`) — not their whole images, and the
gallery shows their crops.
"""

from __future__ import annotations

import numpy as np

from vecexplore.app import client, ui
from vecexplore.app import events as ev
from vecexplore.app import state as st
from vecexplore.app.objects import cell_rows
from vecexplore.app.view import View
from vecexplore.eval.outcomes import FP_TYPES, GtOutcome, PredOutcome

#: Steps of each colour ramp (white → colour).
_STEPS = 100


def _ramp(colour: str) -> list[str]:
    return [ui.mix(colour, 0.12 + 0.88 * k / (_STEPS - 1)) for k in range(_STEPS)]


#: Palette over tone in [-1, 1]: correct cells (tone < 0) blue, error cells (tone > 0) red.
TONE_PALETTE = list(reversed(_ramp("#2f6db5"))) + _ramp("#c0392b")


def cell_tone(cells: dict[str, np.ndarray]) -> np.ndarray:
    """(L*L,) float32 colour value per cell: ``+shade`` for error cells, ``-shade`` for correct ones
    (shade floored so a non-empty cell is never white), NaN for empty cells (drawn light grey)."""
    shade = np.maximum(np.asarray(cells["shade"], np.float64), 1e-3)
    tone = np.where(cells["error"], shade, -shade)
    return np.where(cells["count"] == 0, np.nan, tone).astype(np.float32)


def cell_focus(row: int, col: int, size: int, *, has_background: bool) -> st.Focus:
    """The objects that put an image in cell (row, col): rows = GT class, columns = predicted class,
    the last of each = background (detection)."""
    bg = size - 1 if has_background else -1
    if row == bg and col == bg:
        return st.Focus()
    if col == bg:  # a GT object found by nothing
        return st.Focus(gt=frozenset({int(GtOutcome.FN)}), gt_class=row)
    if row == bg:  # a prediction on no object of another class: duplicate, localization, both, background
        fps = frozenset(int(t) for t in FP_TYPES if t != PredOutcome.FP_CLASS)
        return st.Focus(pred=fps, pred_class=col)
    if row == col:
        return st.Focus(pred=frozenset({int(PredOutcome.TP)}), pred_class=col, gt=frozenset({int(GtOutcome.TP)}),
                        gt_class=row)
    return st.Focus(pred=frozenset({int(PredOutcome.FP_CLASS)}), pred_class=col,
                    gt=frozenset({int(GtOutcome.CONFUSED)}), gt_class=row)


class ConfusionView(View):
    name = "confusion"
    slot = "tab"
    title = "Confusion"
    depends = frozenset({"op", "selection", "matrix", "level"})

    def __init__(self, ctx):
        super().__init__(ctx)
        from bokeh.models import (
            Column,
            ColumnDataSource,
            FixedTicker,
            HoverTool,
            LinearColorMapper,
            RadioButtonGroup,
            Range1d,
            Row,
        )  # fmt: skip
        from bokeh.plotting import figure

        cm = self.data.base.confusion
        self._objects = self.task == "detection" and getattr(self.data, "object_map", None) is not None
        labels = cm.labels
        n = len(labels)
        self.labels, self.has_background = tuple(labels), cm.has_background
        n2 = n * n
        row, col = np.divmod(np.arange(n2, dtype=np.int64), n)
        names = np.asarray(self.labels, object)
        # Labels and positions are sent once; an update re-sends four small numeric columns.
        self.source = ColumnDataSource(data={
            "row": row, "col": col, "gt": names[row], "pred": names[col], "count": np.zeros(n2, np.int32),
            "fraction": np.zeros(n2, np.float32), "tone": np.full(n2, np.nan, np.float32),
            "ink": np.zeros(n2, np.float32), "text": [""] * n2}, name="confusion-source")
        self.show_text = n <= 28
        fill = LinearColorMapper(palette=TONE_PALETTE, low=-1, high=1, nan_color="#f6f6f6")
        ink = LinearColorMapper(palette=["#333333", "#ffffff"], low=0, high=1.1)
        self.figure = figure(
            sizing_mode="stretch_both", name="confusion", css_classes=["vx-confusion"], tools="",
            toolbar_location=None, x_range=Range1d(-0.5, n - 0.5), y_range=Range1d(n - 0.5, -0.5),
            x_axis_location="above", min_border_left=6, min_border_right=6,
        )
        self.renderer = self.figure.rect("col", "row", 0.94, 0.94, source=self.source,
                                         fill_color={"field": "tone", "transform": fill},
                                         line_color=None, selection_line_color="#111111",
                                         selection_line_width=2.5, nonselection_fill_alpha=1.0,
                                         name="confusion-cells")
        self.figure.text("col", "row", text="text", source=self.source, text_align="center",
                         text_baseline="middle", text_font_size="8px" if n > 14 else "11px",
                         text_color={"field": "ink", "transform": ink}, visible=self.show_text)
        # Large vocabularies: label every k-th class (and background); hover names every cell.
        step = max(1, -(-n // 30))
        ticks = sorted({*range(0, n, step), n - 1})
        tick_names = {i: str(self.labels[i]) for i in ticks}
        for axis, label in ((self.figure.xaxis, "predicted"), (self.figure.yaxis, "ground truth")):
            axis.ticker = FixedTicker(ticks=ticks)
            axis.major_label_overrides = tick_names
            axis.axis_label = label
            axis.major_label_text_font_size = "10px" if n > 14 else "11px"
            axis.axis_label_text_font_style = "normal"
            axis.axis_line_color = None
            axis.major_tick_line_color = None
        longest = max((len(str(x)) for x in self.labels), default=0)
        self.figure.xaxis.major_label_orientation = 0.0 if longest * n <= 60 else 0.9
        self.figure.grid.visible = False
        self.figure.outline_line_color = None
        self.figure.add_tools(
            HoverTool(renderers=[self.renderer], tooltips=[("ground truth", "@gt"), ("predicted", "@pred"),
                                                           ("count", "@count"), ("share of row", "@fraction{0.0%}")]),
        )
        self.mode = RadioButtonGroup(labels=["Counts", "Row-normalised"], active=0, name="matrix-mode",
                                     css_classes=["vx-matrix-mode"])
        self.scope = RadioButtonGroup(labels=["Selection", "Whole run"], active=0, name="matrix-scope",
                                      css_classes=["vx-matrix-scope"])
        self.caption = ui.text_div(text="", name="confusion-caption", css_classes=["vx-caption"],
                                   sizing_mode="stretch_width")
        self.root = Column(Row(self.mode, self.scope, self.caption, css_classes=["vx-toolbar"],
                               sizing_mode="stretch_width"), self.figure, sizing_mode="stretch_both",
                           css_classes=["vx-tab-body"])

    def layout(self):
        return self.root

    def cell_of(self, index: int) -> tuple[int, int]:
        """(row, col) of a source row."""
        return divmod(int(index), len(self.labels))

    def compute(self, d):
        s = d.state
        cm = st.displayed_matrix(d.evaluation, d.selection, s.matrix_scope)
        cells = st.matrix_cells(cm, s.matrix_mode)
        cells["tone"] = cell_tone(cells)
        scope = ("Whole run" if s.matrix_scope == "run" or d.selection is None
                 else f"Selection ({len(d.selection):,} images)")
        bg = ", last = background" if cm.has_background else ""
        what = "objects" if s.level == "objects" and self._objects else "images"
        caption = f"{scope} · rows GT, columns predicted{bg} · click a cell to select its {what} (shift adds)"
        return {"cells": cells, "caption": caption, "marked": [int(m) for m in s.marked(self.name)],
                "mode": 0 if s.matrix_mode == "raw" else 1, "scope": 0 if s.matrix_scope == "selection" else 1}

    def apply(self, p) -> None:
        cells = p["cells"]
        update = {"count": cells["count"].astype(np.int32), "fraction": cells["fraction"].astype(np.float32),
                  "tone": cells["tone"], "ink": (np.abs(np.nan_to_num(cells["tone"])) > 0.55).astype(np.float32)}
        if self.show_text:
            update["text"] = cells["text"]
        self.source.data.update(update)
        if list(self.source.selected.indices) != p["marked"]:
            self.source.selected.indices = p["marked"]
        self.caption.text = p["caption"]
        self.mode.active, self.scope.active = p["mode"], p["scope"]

    def wire(self, session) -> None:
        size = len(self.labels)

        def tap(x: float, y: float, shift: bool) -> None:
            row, col = round(y), round(x)
            if not (0 <= row < size and 0 <= col < size) or max(abs(y - row), abs(x - col)) > 0.47:
                return  # between cells or off the matrix
            cell = row * size + col

            def select(d):
                how = f"cell {self.labels[row]} → {self.labels[col]}"
                focus = cell_focus(row, col, size, has_background=self.has_background)
                mode, marks = "add" if shift else None, ((self.name, cell),)
                if d.state.level == "objects" and self._objects:
                    rows = cell_rows(d.evaluation.confusion, row, col, self.data.dataset)
                    return ev.Select(np.zeros(0, np.int64), f"objects of {how}", focus=focus, mode=mode, marks=marks,
                                     objects=rows)
                return ev.Select(d.evaluation.confusion.cell_images(row, col), how, focus=focus, mode=mode,
                                 marks=marks)
            session.emit(select)

        ui.on_tap(self.figure, session, tap)

        def radio(widget, field, values):
            def callback(_attr, _old, new):
                if session.applying:
                    return
                if client.choice(new, range(len(values))) is None:
                    ui.refused(widget.name, new)
                    return
                session.emit(ev.SetView.of(**{field: values[new]}))
            widget.on_change("active", callback)

        radio(self.mode, "matrix_mode", ("raw", "row"))
        radio(self.scope, "matrix_scope", ("selection", "run"))
