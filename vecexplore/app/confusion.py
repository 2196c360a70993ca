"""The confusion-matrix heatmap: rows = ground truth (top to bottom), columns = prediction.

Detection matrices end with the background row and column. Correct cells are
shaded blue, error cells red (:func:`vecexplore.app.state.matrix_cells` gives
the shade). A tap on a cell puts its index (row * L + col) in
``source.selected.indices``; the controller turns that into the cell's images.
"""

from __future__ import annotations

import numpy as np

from vecexplore.app import ui

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


class ConfusionPanel:
    """Heatmap figure + its mode / scope toggles; ``show`` swaps in a matrix's cells."""

    def __init__(self, *, labels, has_background: bool, width: int = 630, height: int = 520):
        from bokeh.models import (
            ColumnDataSource,
            FixedTicker,
            HoverTool,
            LinearColorMapper,
            RadioButtonGroup,
            Range1d,
            TapTool,
        )  # fmt: skip
        from bokeh.plotting import figure

        n = len(labels)
        self.labels = tuple(labels)
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
            width=width, height=height, name="confusion", css_classes=["vx-confusion"], tools="",
            toolbar_location=None, x_range=Range1d(-0.5, n - 0.5), y_range=Range1d(n - 0.5, -0.5),
            x_axis_location="above", min_border_left=10,
        )
        self.renderer = self.figure.rect("col", "row", 0.94, 0.94, source=self.source,
                                         fill_color={"field": "tone", "transform": fill},
                                         line_color=None, selection_line_color="#111111",
                                         selection_line_width=2, nonselection_fill_alpha=1.0,
                                         name="confusion-cells")
        self.figure.text("col", "row", text="text", source=self.source, text_align="center",
                         text_baseline="middle", text_font_size="8px" if n > 14 else "11px",
                         text_color={"field": "ink", "transform": ink}, visible=self.show_text)
        # Large vocabularies: label every k-th class (and background); hover names every cell.
        step = max(1, -(-n // 30))
        ticks = sorted({*range(0, n, step), n - 1})
        names = {i: str(self.labels[i]) for i in ticks}
        for axis, label in ((self.figure.xaxis, "predicted"), (self.figure.yaxis, "ground truth")):
            axis.ticker = FixedTicker(ticks=ticks)
            axis.major_label_overrides = names
            axis.axis_label = label
            axis.major_label_text_font_size = "10px" if n > 14 else "11px"
            axis.axis_label_text_font_style = "normal"
            axis.axis_line_color = None
            axis.major_tick_line_color = None
        self.figure.xaxis.major_label_orientation = 0.9
        self.figure.grid.visible = False
        self.figure.outline_line_color = None
        self.figure.add_tools(
            TapTool(renderers=[self.renderer]),
            HoverTool(renderers=[self.renderer], tooltips=[("ground truth", "@gt"), ("predicted", "@pred"),
                                                           ("count", "@count"), ("share of row", "@fraction{0.0%}")]),
        )
        self.mode = RadioButtonGroup(labels=["Counts", "Row-normalised"], active=0, name="matrix-mode",
                                     css_classes=["vx-matrix-mode"])
        self.scope = RadioButtonGroup(labels=["Selection", "Whole run"], active=0, name="matrix-scope",
                                      css_classes=["vx-matrix-scope"])
        self.caption = ui.text_div(text="", name="confusion-caption", css_classes=["vx-caption"])
        self.has_background = has_background

    def show(self, cells: dict[str, np.ndarray], caption: str) -> None:
        """Show a matrix's cells (:func:`vecexplore.app.state.matrix_cells` plus ``tone``) and clear
        any cell highlight. Only the numeric columns (and the texts when shown) are re-sent."""
        update = {"count": cells["count"].astype(np.int32), "fraction": cells["fraction"].astype(np.float32),
                  "tone": cells["tone"], "ink": (np.abs(np.nan_to_num(cells["tone"])) > 0.55).astype(np.float32)}
        if self.show_text:
            update["text"] = cells["text"]
        self.source.data.update(update)
        if len(self.source.selected.indices):
            self.source.selected.indices = []
        self.caption.text = caption

    def cell_of(self, index: int) -> tuple[int, int]:
        """(row, col) of a source row."""
        return divmod(int(index), len(self.labels))
