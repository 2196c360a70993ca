"""The scatter: every image at its UMAP position (WebGL), coloured by one mode, selectable.

The source has one row per image in image_idx order, so ``selected.indices``
*are* image_idx. Images that are not mapped (unreadable: NaN x/y) sit in the
source but are not drawn. Columns (all NumPy, sent as binary except
``file_name``, which is sent once with the page):

* ``x``, ``y`` float32 — never re-sent;
* ``c`` float32 — the colour value (:mod:`vecexplore.app.colouring`), re-sent on
  a colour-mode change or a slider move;
* ``o`` uint32 — outcomes packed for the hover (``colouring.pack_outcomes``),
  re-sent on a slider move;
* ``image_id`` float64, ``cluster`` int32, ``file_name`` str — static.
"""

from __future__ import annotations

import math

import numpy as np

from vecexplore.app import ui
from vecexplore.app.colouring import Colouring

_TOOLTIP = """
<div style="display:flex;gap:8px;align-items:center;max-width:330px">
  <img src="{url_base}/thumb/@image_id{{custom}}" alt="" style="max-width:84px;max-height:84px;border-radius:3px">
  <div style="font-size:11.5px;line-height:1.35">
    <div style="font-weight:600;word-break:break-all">@file_name</div>
    <div>@o{{custom}}</div>
    <div style="color:#7b8794">id @image_id{{custom}} · cluster @cluster</div>
  </div>
</div>
"""


def _palette(col: Colouring) -> list[str]:
    from bokeh.palettes import RdYlBu11, Viridis256

    if col.palette == "error":
        return list(RdYlBu11)  # blue (no errors) → red
    if col.palette == "sequential":
        return list(Viridis256)
    if col.palette == "error_type":
        return list(ui.ERROR_TYPE_COLOURS.values())
    if col.palette == "correct":
        return list(ui.CORRECT_COLOURS)
    if col.palette == "readable":
        return list(ui.READABLE_COLOURS)
    return ui.categorical_palette(len(col.factors))


class ScatterPanel:
    """The scatter figure, its source and colour bar. Build once; update with the ``show_*`` methods."""

    def __init__(self, *, info, task: str, class_names, url_base: str, width: int = 560, height: int = 540):
        from bokeh.models import (
            BoxSelectTool,
            ColorBar,
            ColumnDataSource,
            CustomJSHover,
            FixedTicker,
            HoverTool,
            LassoSelectTool,
            LinearColorMapper,
            ResetTool,
            TapTool,
            WheelZoomTool,
        )  # fmt: skip
        from bokeh.plotting import figure

        n = len(info)
        ids = info.image_id.astype(np.float64)
        self.source = ColumnDataSource(data={
            "x": info.x, "y": info.y, "c": np.zeros(n, np.float32), "o": np.zeros(n, np.uint32),
            "image_id": ids, "cluster": info.cluster.astype(np.int32), "file_name": info.file_name,
        }, name="scatter-source")
        self.mapper = LinearColorMapper(palette=["#cccccc"], low=0, high=1, nan_color=ui.NAN_COLOUR)
        self.figure = figure(
            width=width, height=height, output_backend="webgl", name="scatter", css_classes=["vx-scatter"],
            tools="pan", toolbar_location="above", match_aspect=True, min_border_left=10,
        )
        self.figure.axis.visible = False
        self.figure.grid.visible = False
        self.figure.outline_line_color = None
        size = float(np.clip(11 - 1.6 * math.log10(max(n, 10)), 2.5, 8))
        self.renderer = self.figure.scatter(
            "x", "y", source=self.source, size=size, line_color=None,
            fill_color={"field": "c", "transform": self.mapper}, fill_alpha=0.85,
            nonselection_fill_alpha=0.12, nonselection_fill_color={"field": "c", "transform": self.mapper},
            selection_fill_alpha=1.0, name="scatter-points",
        )
        hover = HoverTool(
            renderers=[self.renderer], tooltips=_TOOLTIP.format(url_base=url_base),
            formatters={
                "@image_id": CustomJSHover(code=ui.js("hover_id")),
                "@o": CustomJSHover(code=ui.js("hover_outcome"),
                                    args={"task": task, "names": list(class_names)}),
            },
        )
        wheel = WheelZoomTool()
        lasso = LassoSelectTool(renderers=[self.renderer])
        self.figure.add_tools(lasso, BoxSelectTool(renderers=[self.renderer]),
                              TapTool(renderers=[self.renderer]), wheel, hover, ResetTool())
        self.figure.toolbar.active_drag = lasso
        self.figure.toolbar.active_scroll = wheel
        self.ticker = FixedTicker(ticks=[])
        self.colour_bar = ColorBar(color_mapper=self.mapper, ticker=self.ticker, width=12, title="",
                                   title_text_font_size="11px", major_label_text_font_size="10px",
                                   label_standoff=4, padding=4)
        self.figure.add_layout(self.colour_bar, "right")

    # ------------------------------------------------------------- updates

    def show_colouring(self, col: Colouring) -> None:
        """Send the colour column and restyle the map and its bar (no other column moves)."""
        self.source.data["c"] = col.values
        palette = _palette(col)
        self.mapper.update(palette=palette, low=col.low, high=col.high)
        self.colour_bar.title = col.title
        if col.categorical:
            f = len(col.factors)
            step = max(1, math.ceil(f / 24))
            ticks = list(range(0, f, step))
            self.ticker.ticks = ticks
            self.colour_bar.major_label_overrides = {t: col.factors[t] for t in ticks}
        else:
            self.ticker.ticks = [round(col.low + (col.high - col.low) * i / 4, 3) for i in range(5)]
            self.colour_bar.major_label_overrides = {}

    def show_outcomes(self, packed: np.ndarray) -> None:
        """Send the packed per-image outcomes the hover reads."""
        self.source.data["o"] = packed

    def show_selection(self, selection: np.ndarray | None) -> None:
        """Highlight ``selection`` (image_idx = row); None or empty → nothing highlighted."""
        new = np.zeros(0, np.int64) if selection is None else np.asarray(selection, np.int64)
        old = np.asarray(self.source.selected.indices, np.int64)
        if old.shape != new.shape or not np.array_equal(old, new):
            self.source.selected.indices = new
