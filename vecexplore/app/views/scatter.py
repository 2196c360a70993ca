"""The map: every image at its UMAP position (WebGL), coloured by one mode, selectable.

Lasso and box select images (the tools combine with the selection in the
session's selection mode; shift always adds). A tap selects the one point
nearest to it on the screen and opens it in the detail view (shift-tap adds it);
a tap far from every point does nothing.

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

A run with an object map has a second source and renderer (``scatter-objects``)
with one row per mapped object (``ObjectMap.points`` order): ``x``, ``y`` (the
crop's UMAP position), ``row`` (objects-table row), ``image_id``, ``cls`` and
``c``, the object's outcome code at the operating point
(:data:`vecexplore.eval.outcomes.OBJECT_OUTCOMES`). The level switch shows one
renderer or the other; the selection tools act on the one shown, and at the
object level they pick objects.

A run with more mapped images than :data:`vecexplore.app.dense.DENSE_THRESHOLD`
has a dense map (:mod:`vecexplore.app.views.scatter_dense`): past the threshold
in view it draws an aggregate image, below it the points in view (the source
then holds those images only, and ``DenseLayer.rows`` maps its rows back to
image_idx); lasso and box selections are computed on the server over every image.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from vecexplore.app import client, colouring, dense, ui
from vecexplore.app import events as ev
from vecexplore.app import state as st
from vecexplore.app.colouring import Colouring
from vecexplore.app.view import View
from vecexplore.eval.outcomes import COUNTED

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


def object_palette() -> list[str]:
    """One colour per object outcome (:data:`~vecexplore.eval.outcomes.OBJECT_OUTCOMES` order)."""
    from vecexplore.app.objects import OUTCOME_COLOURS
    from vecexplore.eval.outcomes import OBJECT_OUTCOMES

    return [OUTCOME_COLOURS[o] for o in OBJECT_OUTCOMES]


def object_indices(selection: np.ndarray | None, points: np.ndarray) -> np.ndarray:
    """Positions in ``points`` (the object scatter's rows, sorted) of the selected objects that are
    mapped (an object selection may hold objects without a position, e.g. from a matrix cell)."""
    return dense.positions(selection, points)


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
    if col.palette == "change":
        from vecexplore.app.comparison import CHANGE_COLOURS

        return list(CHANGE_COLOURS)
    return ui.categorical_palette(len(col.factors))


#: A tap opens the nearest point within this many screen pixels of it.
TAP_RADIUS_PX = 14.0
#: Bokeh's selection-tool mode for each selection mode.
TOOL_MODES = {"replace": "replace", "add": "append", "intersect": "intersect", "subtract": "subtract"}


def nearest_point(x: np.ndarray, y: np.ndarray, at: tuple[float, float], *, px_per_x: float, px_per_y: float,
                  radius_px: float = TAP_RADIUS_PX) -> int:
    """Index of the point nearest to ``at`` in screen pixels (``px_per_*`` = pixels per data unit),
    or -1 when none is within ``radius_px``. NaN points never match; ties: the lower index."""
    dx = (np.asarray(x, np.float64) - at[0]) * px_per_x
    dy = (np.asarray(y, np.float64) - at[1]) * px_per_y
    d2 = dx * dx + dy * dy
    d2[~np.isfinite(d2)] = np.inf
    if d2.size == 0:
        return -1
    i = int(np.argmin(d2))
    return i if d2[i] <= radius_px * radius_px else -1


def _span(start, end, values: np.ndarray) -> tuple[float, float]:
    """The axis range shown (the synced range, or the data's extent before the page reported one)."""
    if start is not None and end is not None and np.isfinite(start) and np.isfinite(end) and end > start:
        return float(start), float(end)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


class ScatterView(View):
    name = "scatter"
    slot = "map"
    depends = frozenset({"op", "selection", "colour", "history", "phrase", "level"})

    def __init__(self, ctx):
        super().__init__(ctx)
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
            WheelZoomTool,
        )  # fmt: skip
        from bokeh.plotting import figure

        info = self.data.images
        n = len(info)
        is_dense = dense.is_dense(info.x, info.y)
        shown = np.zeros(0, np.int64) if is_dense else slice(None)  # a dense map's frames fill it
        self.source = ColumnDataSource(data={
            "x": info.x[shown], "y": info.y[shown], "c": np.zeros(n, np.float32)[shown],
            "o": np.zeros(n, np.uint32)[shown], "image_id": info.image_id[shown].astype(np.float64),
            "cluster": info.cluster[shown].astype(np.int32), "file_name": info.file_name[shown],
        }, name="scatter-source")
        self.mapper = LinearColorMapper(palette=["#cccccc"], low=0, high=1, nan_color=ui.NAN_COLOUR)
        self.figure = figure(
            sizing_mode="stretch_both", output_backend="webgl", name="scatter", css_classes=["vx-scatter"],
            tools="pan", toolbar_location="left", match_aspect=True, min_border_left=6, min_border_right=6,
        )
        self.figure.toolbar.autohide = False
        self.figure.axis.visible = False
        self.figure.grid.visible = False
        self.figure.outline_line_color = None
        drawn = min(n, dense.DENSE_THRESHOLD) if is_dense else n  # a dense map draws at most the threshold
        size = float(np.clip(11 - 1.6 * math.log10(max(drawn, 10)), 2.5, 8))
        self.renderer = self.figure.scatter(
            "x", "y", source=self.source, size=size, line_color=None,
            fill_color={"field": "c", "transform": self.mapper}, fill_alpha=0.85,
            nonselection_fill_alpha=0.12, nonselection_fill_color={"field": "c", "transform": self.mapper},
            selection_fill_alpha=1.0, name="scatter-points",
        )
        hover = HoverTool(
            renderers=[self.renderer], tooltips=_TOOLTIP.format(url_base=ctx.url_base),
            formatters={
                "@image_id": CustomJSHover(code=ui.js("hover_id")),
                "@o": CustomJSHover(code=ui.js("hover_outcome"),
                                    args={"task": self.task, "names": list(self.data.class_names)}),
            },
        )
        wheel = WheelZoomTool()
        self.dense = None
        if is_dense:
            from vecexplore.app.views.scatter_dense import DenseLayer

            self.dense = DenseLayer(self, info, palette_of=_palette)
        # A dense map's selections are computed on the server (SelectionGeometry): the tools select nothing here.
        self._image_tool_renderers = [] if is_dense else [self.renderer]
        self.lasso = LassoSelectTool(renderers=list(self._image_tool_renderers))
        self.box = BoxSelectTool(renderers=list(self._image_tool_renderers))
        self.figure.add_tools(self.lasso, self.box, wheel, hover, ResetTool())
        self.figure.toolbar.active_drag = self.lasso
        self.figure.toolbar.active_scroll = wheel
        self.ticker = FixedTicker(ticks=[])
        self.colour_bar = ColorBar(color_mapper=self.mapper, ticker=self.ticker, width=10, title="",
                                   title_text_font_size="11px", major_label_text_font_size="10px",
                                   label_standoff=4, padding=4)
        self.figure.add_layout(self.colour_bar, "right")
        self._pred_class: tuple | None = None  # (evaluation, dominant predicted class per image)
        self._sent: tuple | None = None  # (evaluation, colour mode) of the columns last computed
        self._colouring: Colouring | None = None  # the colouring last computed (a dense map re-renders with it)
        self._packed: np.ndarray | None = None  # the packed outcomes last computed
        self.omap = getattr(self.data, "object_map", None)
        self.objects = self.object_renderer = None
        self._object_sent = None  # the object outcomes last sent
        if self.omap is not None:
            self._objects_layer(ctx, size)
        if self.dense is not None:
            self.dense.range_renderers(self.object_renderer)
        self._level = "images"

    def _objects_layer(self, ctx, image_size: float) -> None:
        """The object scatter (hidden until the level switch shows it) and its colour bar."""
        from bokeh.models import (
            ColorBar,
            ColumnDataSource,
            CustomJSHover,
            FixedTicker,
            HoverTool,
            LinearColorMapper,
        )

        from vecexplore.eval.outcomes import OBJECT_OUTCOMES

        pts = self.omap.points
        # Empty until the first switch to objects: a run's objects outnumber its images about
        # ten to one, and a tab that never looks at them should not carry (or index) them.
        self.objects = ColumnDataSource(data=self._object_columns(pts[:0]),
                                        name="scatter-objects-source")
        self._objects_filled = False
        f = len(OBJECT_OUTCOMES)
        self.object_mapper = LinearColorMapper(palette=object_palette(), low=-0.5, high=f - 0.5,
                                               nan_color=ui.NAN_COLOUR)
        size = float(np.clip(11 - 1.6 * math.log10(max(len(pts), 10)), 2.5, 8))
        self.object_renderer = self.figure.scatter(
            "x", "y", source=self.objects, size=size, line_color=None,
            fill_color={"field": "c", "transform": self.object_mapper}, fill_alpha=0.85,
            nonselection_fill_alpha=0.12, nonselection_fill_color={"field": "c", "transform": self.object_mapper},
            selection_fill_alpha=1.0, name="scatter-object-points", visible=False)
        tooltip = (f"<div style='display:flex;gap:8px;align-items:center;max-width:300px'>"
                   f"<img src='{ctx.url_base}/crop/@row' alt='' style='width:72px;height:72px;border-radius:3px'>"
                   "<div style='font-size:11.5px;line-height:1.35'><div style='font-weight:600'>@c{custom}</div>"
                   "<div style='color:#7b8794'>object @row · image @image_id{custom}</div></div></div>")
        self.object_hover = HoverTool(renderers=[self.object_renderer], tooltips=tooltip, formatters={
            "@c": CustomJSHover(code=ui.js("hover_object"), args={
                "outcomes": list(OBJECT_OUTCOMES), "names": list(self.data.class_names), "source": self.objects}),
            "@image_id": CustomJSHover(code=ui.js("hover_id"))})
        self.figure.add_tools(self.object_hover)

        self.object_bar = ColorBar(
            color_mapper=self.object_mapper, ticker=FixedTicker(ticks=list(range(f))),
            major_label_overrides={k: OBJECT_OUTCOMES[k] for k in range(f)}, width=10, title="Object outcome",
            title_text_font_size="11px", major_label_text_font_size="10px", label_standoff=4, padding=4,
            visible=False, name="scatter-object-bar")
        self.figure.add_layout(self.object_bar, "right")

    def _object_columns(self, pts: np.ndarray) -> dict[str, np.ndarray]:
        """The object scatter's columns for the objects-table rows ``pts`` (``c``: to be coloured)."""
        omap, info = self.omap, self.data.images
        return {"x": omap.x[pts], "y": omap.y[pts], "c": np.zeros(len(pts), np.float32), "row": pts,
                "image_id": info.image_id[omap.image_idx[pts]].astype(np.float64),
                "cls": omap.class_idx[pts].astype(np.int32)}

    def layout(self):
        return self.figure

    # ------------------------------------------------------------- compute / apply

    def compute(self, d):
        s = d.state
        pred_class = None
        if s.colour == "pred_class" and self.task == "detection":
            if self._pred_class is None or self._pred_class[0] is not d.evaluation:
                ds = self.data.dataset
                counted = d.evaluation.outcomes.pred_code < COUNTED
                self._pred_class = (d.evaluation, colouring.dominant_pred_class(
                    ds.pred.image_idx, ds.pred.class_idx, counted, ds.num_images, len(ds.categories)))
            pred_class = self._pred_class[1]
        info = self.data.images
        # The colour and outcome columns are re-sent only when they change (a selection moves neither).
        key = (d.evaluation, s.colour, s.phrase if s.colour == "text" else "")
        col = packed = None
        if self._sent is None or not (self._sent[0] is key[0] and self._sent[1:] == key[1:]):
            col = colouring.colour_values(s.colour, outcomes=d.outcomes, cluster=info.cluster,
                                          gt_class=info.gt_class, readable=info.readable, score=d.scores,
                                          class_names=self.data.class_names, pred_class=pred_class,
                                          label_issue=self.data.label_issue_scores if s.colour == "label_issue"
                                          else None, comparison=self.data.comparison,
                                          text=d.text_scores if s.colour == "text" else None)
            if self._sent is None or self._sent[0] is not key[0]:
                packed = colouring.pack_outcomes(d.outcomes)
                self._packed = packed
            self._colouring = col
            self._sent = key
        out = {"colour": col, "outcomes": packed, "selection": d.selection, "tool_mode": TOOL_MODES[s.select_mode],
               "level": s.level if self.omap is not None else "images", "frame": None}
        if self.dense is not None and out["level"] == "images":
            out["frame"] = self.dense.frame(self._colouring, self._packed, d.selection)
        if out["level"] == "objects":
            oo = d.object_outcomes
            codes = None
            if self._object_sent is not oo or not self._objects_filled:
                codes = oo.code[self.omap.points].astype(np.float32)
                self._object_sent = oo
            out["object_colour"] = codes
            out["object_selection"] = object_indices(d.object_selection, self.omap.points)
        return out

    def current_colouring(self) -> tuple[Colouring | None, np.ndarray | None]:
        """The colouring and packed outcomes (N,) last computed (a dense map's re-render uses them)."""
        return self._colouring, self._packed

    @property
    def level(self) -> str:
        """The level shown ("images" or "objects")."""
        return self._level

    def apply(self, p) -> None:
        if p["colour"] is not None:
            self._show_colouring(p["colour"])
        if self.dense is not None:
            if p["frame"] is not None:
                self.dense.apply(p["frame"], self.source, images_level=p["level"] == "images")
        else:
            if p["outcomes"] is not None:
                self.source.data["o"] = p["outcomes"]
            sel = p["selection"]
            new = np.zeros(0, np.int64) if sel is None else np.asarray(sel, np.int64)
            old = np.asarray(self.source.selected.indices, np.int64)
            if old.shape != new.shape or not np.array_equal(old, new):
                self.source.selected.indices = new
        for tool in (self.lasso, self.box):
            if tool.mode != p["tool_mode"]:
                tool.mode = p["tool_mode"]
        if self.omap is not None:
            self._show_level(p)

    def _show_level(self, p) -> None:
        """Show the level's renderer and colour bar; point the selection tools at it."""
        objects = p["level"] == "objects"
        if objects:
            if not self._objects_filled:
                self.objects.data = {**self._object_columns(self.omap.points), "c": p["object_colour"]}
                self._objects_filled = True
            elif p["object_colour"] is not None:
                self.objects.data["c"] = p["object_colour"]
            new = p["object_selection"]
            old = np.asarray(self.objects.selected.indices, np.int64)
            if old.shape != new.shape or not np.array_equal(old, new):
                self.objects.selected.indices = new
        if p["level"] == self._level:
            return
        self._level = p["level"]
        self.renderer.visible, self.object_renderer.visible = not objects, objects
        self.colour_bar.visible, self.object_bar.visible = not objects, objects
        if self.dense is not None:
            self.dense.image.visible = not objects
        active = [self.object_renderer] if objects else self._image_tool_renderers
        # Each swap of a tool's renderers walks the document's whole model graph (~800 models)
        # again; frozen, the two swaps walk it once. (A freeze always walks it on exit: only here.)
        doc = self.figure.document
        with doc.models.freeze() if doc is not None else contextlib.nullcontext():
            for tool in (self.lasso, self.box):
                tool.renderers = list(active)

    def _show_colouring(self, col: Colouring) -> None:
        """Send the colour column and restyle the map and its bar (no other column moves; a dense
        map's frame carries the colours of the points it shows)."""
        if self.dense is None:
            self.source.data["c"] = col.values
        self.mapper.update(palette=_palette(col), low=col.low, high=col.high)
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

    # ------------------------------------------------------------- events

    def wire(self, session) -> None:
        from bokeh.events import Tap

        n = self.data.num_images

        def lasso(_attr, old, new):
            if session.applying:
                return
            rows = None if self.dense is None else self.dense.rows  # a dense map's source holds these images
            picked = client.rows(new, n if rows is None else len(rows))
            if picked is None:
                ui.refused("scatter selection", new)
                return
            if rows is not None:
                picked = rows[picked]

            # The tools already combined the lasso with the displayed selection in the session's mode.
            session.emit(lambda d: ev.Select(picked, ev.combined_how(d.state, "points"), mode="replace"))

        self.source.selected.on_change("indices", lasso)
        self.figure.on_event(Tap, lambda event: self._tap(session, event))
        if self.dense is not None:
            self._wire_dense(session)
        if self.omap is None:
            return
        points = self.omap.points

        def lasso_objects(_attr, old, new):
            if session.applying:
                return
            picked = client.rows(new, len(points))
            if picked is None:
                ui.refused("object scatter selection", new)
                return
            session.emit(lambda d: ev.Select(np.zeros(0, np.int64), ev.combined_how(d.state, "objects"),
                                             mode="replace", objects=points[picked]))

        self.objects.selected.on_change("indices", lasso_objects)

    def _wire_dense(self, session) -> None:
        """A dense map re-renders on a pan, zoom or resize and selects on the server."""
        from bokeh.events import RangesUpdate, SelectionGeometry

        layer = self.dense
        self.figure.on_event(RangesUpdate, lambda e: layer.moved(session, (e.x0, e.x1, e.y0, e.y1)))
        for size in ("inner_width", "inner_height"):
            self.figure.on_change(size, lambda _a, _o, _n: layer.moved(session))

        def geometry(event):
            if session.applying or not event.final or self._level != "images":
                return
            region = client.region(event.geometry)
            if region is None:
                ui.refused("scatter selection geometry", event.geometry)
                return
            x, y = self.data.images.x, self.data.images.y
            # Computed off the lock as the intent is resolved; combined with the pick in the session's mode.
            session.emit(lambda _d: ev.Select(dense.rows_in_region(x, y, region), "points"))

        self.figure.on_event(SelectionGeometry, geometry)

    def _tap(self, session, event) -> None:
        if session.applying:
            return
        x, y = event.x, event.y
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (x, y)):
            ui.refused("scatter tap", (x, y))
            return
        info = self.data.images
        objects = self._level == "objects"
        px, py = (self.omap.x[self.omap.points], self.omap.y[self.omap.points]) if objects else (info.x, info.y)
        f = self.figure
        x0, x1 = _span(f.x_range.start, f.x_range.end, px)
        y0, y1 = _span(f.y_range.start, f.y_range.end, py)
        w, h = ui.frame_size(f)
        w, h = w or 600, h or 400
        k = nearest_point(px, py, (float(x), float(y)), px_per_x=w / (x1 - x0), px_per_y=h / (y1 - y0))
        if k < 0:
            return
        add = bool((event.modifiers or {}).get("shift"))
        if objects:
            row = int(self.omap.points[k])
            image = int(self.omap.image_idx[row])
            session.emit(ev.Select(np.zeros(0, np.int64), f"object {row}", mode="add" if add else None,
                                   objects=np.array([row], np.int64)))
            session.emit(ev.OpenImage(image, object_row=row))
            return
        name = str(info.file_name[k])
        session.emit(ev.Select(np.array([k], np.int64), f"image {name}", focus=st.ALL_ERRORS,
                               mode="add" if add else None))
        session.emit(ev.OpenImage(k))
