"""The confusion-matrix heatmap: rows = ground truth (top to bottom), columns = prediction.

Detection matrices end with the background row and column. Correct cells are
shaded blue, error cells red (:func:`vecexplore.app.state.matrix_cells` gives
the shade). A tap on a cell puts its index (row * L + col) in
``source.selected.indices``; the controller turns that into the cell's images.
"""

from __future__ import annotations

import numpy as np

from vecexplore.app import ui


def cell_colours(cells: dict[str, np.ndarray]) -> list[str]:
    """Hex fill per cell: white → blue (correct) or white → red (error) by ``shade``; zero → light grey."""
    out = []
    for count, err, shade in zip(cells["count"], cells["error"], cells["shade"], strict=True):
        if count == 0:
            out.append("#f6f6f6")
        else:
            out.append(ui.mix("#c0392b" if err else "#2f6db5", 0.12 + 0.88 * float(shade)))
    return out


class ConfusionPanel:
    """Heatmap figure + its mode / scope toggles; ``show`` swaps in a matrix's cells."""

    def __init__(self, *, labels, has_background: bool, width: int = 630, height: int = 520):
        from bokeh.models import (
            ColumnDataSource,
            Div,
            FixedTicker,
            HoverTool,
            RadioButtonGroup,
            Range1d,
            TapTool,
        )  # fmt: skip
        from bokeh.plotting import figure

        n = len(labels)
        self.labels = tuple(labels)
        self.source = ColumnDataSource(data=self._empty(), name="confusion-source")
        self.figure = figure(
            width=width, height=height, name="confusion", css_classes=["vx-confusion"], tools="",
            toolbar_location=None, x_range=Range1d(-0.5, n - 0.5), y_range=Range1d(n - 0.5, -0.5),
            x_axis_location="above", min_border_left=10,
        )
        self.renderer = self.figure.rect("col", "row", 0.94, 0.94, source=self.source, fill_color="colour",
                                         line_color=None, selection_line_color="#111111",
                                         selection_line_width=2, nonselection_fill_alpha=1.0,
                                         name="confusion-cells")
        big = n > 28
        self.figure.text("col", "row", text="text", source=self.source, text_align="center",
                         text_baseline="middle", text_font_size="8px" if n > 14 else "11px",
                         text_color="text_colour", visible=not big)
        ticks = list(range(n))
        names = {i: str(s) for i, s in enumerate(self.labels)}
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
                                                           ("count", "@count"), ("share of row", "@pct")]),
        )
        self.mode = RadioButtonGroup(labels=["Counts", "Row-normalised"], active=0, name="matrix-mode",
                                     css_classes=["vx-matrix-mode"])
        self.scope = RadioButtonGroup(labels=["Selection", "Whole run"], active=0, name="matrix-scope",
                                      css_classes=["vx-matrix-scope"])
        self.caption = Div(text="", name="confusion-caption", css_classes=["vx-caption"])
        self.has_background = has_background

    def _empty(self) -> dict:
        return {k: [] for k in ("row", "col", "count", "text", "colour", "text_colour", "gt", "pred", "pct")}

    def show(self, cells: dict[str, np.ndarray], caption: str) -> None:
        """Replace the cells (a small source: L*L rows) and clear any cell highlight."""
        colours = cell_colours(cells)
        dark = cells["shade"] > 0.55
        self.source.data = {
            "row": cells["row"], "col": cells["col"], "count": cells["count"], "text": cells["text"],
            "colour": colours, "text_colour": np.where(dark, "#ffffff", "#333333").astype(object),
            "gt": np.asarray(self.labels, object)[cells["row"]], "pred": np.asarray(self.labels, object)[cells["col"]],
            "pct": np.array([f"{f:.1%}" for f in cells["fraction"]], object),
        }
        if len(self.source.selected.indices):
            self.source.selected.indices = []
        self.caption.text = caption

    def cell_of(self, index: int) -> tuple[int, int]:
        """(row, col) of a source row."""
        return divmod(int(index), len(self.labels))
