"""The scatter's dense layer: for a run with more mapped images than :data:`~vecexplore.app.dense.DENSE_THRESHOLD`.

The map then shows, for the plot's current ranges and pixel size (a *viewport*),

* the aggregate image (:mod:`vecexplore.app.dense`) when more than the threshold
  are in view; the point source is then empty;
* otherwise the points in view: the scatter source holds those images only, in
  image_idx order, and :attr:`DenseLayer.rows` maps a source row back to its
  image_idx (``rows[i]`` is the image of source row ``i``).

A pan or zoom (``RangesUpdate``, sent when the gesture ends) or a resize of the
frame re-renders the viewport as a session job; a newer one replaces a waiting
one, so a burst computes only the last. Selections are computed on the server
over every mapped image (``SelectionGeometry``: the lasso's polygon or the box),
so the select tools act on no renderer in the browser.

The plot's ranges follow an invisible two-point renderer at the corners of the
map's extent (and the object scatter), not the image or the points in view, so
a reset returns to the whole map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vecexplore.app import dense, ui
from vecexplore.app.colouring import Colouring

#: The frame's size before the page reports it (the first render).
DEFAULT_SIZE = (800, 600)


@dataclass(frozen=True, eq=False)
class Frame:
    """What one viewport shows (computed off the lock, applied by :meth:`DenseLayer.apply`).

    Attributes:
        viewport: the viewport it was computed for.
        rows: sorted int64 image_idx of the points drawn (empty when the image is shown).
        columns: the point source's new data, or None when ``rows`` (and the colours) are unchanged.
        selected: int64 positions in ``rows`` of the selected images.
        image: (H, W) uint32 RGBA aggregate, or None (points are drawn).
    """

    viewport: dense.Viewport
    rows: np.ndarray
    columns: dict | None
    selected: np.ndarray
    image: np.ndarray | None


class DenseLayer:
    """The aggregate image and the point subset of a dense run's scatter (see the module doc)."""

    def __init__(self, view, info, *, palette_of):
        from bokeh.models import ColumnDataSource

        self.view, self.info, self._palette_of = view, info, palette_of
        self.threshold = dense.DENSE_THRESHOLD
        self.rows = np.zeros(0, np.int64)
        self._columns_key: tuple | None = None  # (rows, colouring, outcomes) last sent as columns
        x0, x1, y0, y1 = dense.extent(info.x, info.y)
        self.viewport = dense.Viewport(x0, x1, y0, y1, *DEFAULT_SIZE)
        self.image_source = ColumnDataSource(data={"image": [], "x": [], "y": [], "dw": [], "dh": []},
                                             name="scatter-image-source")
        f = view.figure
        self.image = f.image_rgba(image="image", x="x", y="y", dw="dw", dh="dh", source=self.image_source,
                                  level="image", name="scatter-image")
        self.bounds = f.scatter([x0, x1], [y0, y1], size=0, alpha=0, visible=False, name="scatter-bounds")

    def range_renderers(self, *others) -> None:
        """Make the plot's ranges follow the map's extent (and ``others``, e.g. the object scatter)."""
        f = self.view.figure
        renderers = [self.bounds, *[r for r in others if r is not None]]
        f.x_range.renderers = renderers
        f.y_range.renderers = renderers

    # ------------------------------------------------------------- compute (off the lock)

    def frame(self, colouring: Colouring, outcomes: np.ndarray, selection: np.ndarray | None,
              viewport: dense.Viewport | None = None) -> Frame:
        """What ``viewport`` (the current one by default) shows for a colouring, the packed
        outcomes (N,) and the selection (image_idx, None = none)."""
        vp = viewport or self.viewport
        info = self.info
        inside = vp.inside(info.x, info.y)
        if int(np.count_nonzero(inside)) > self.threshold:
            palette = self._palette_of(colouring)
            colours = (dense.category_colours(palette, len(colouring.factors), colouring.low, colouring.high)
                       if colouring.categorical else palette)
            agg = dense.aggregate(info.x, info.y, colouring.values, vp, categorical=colouring.categorical,
                                  colours=colours, nan_colour=ui.NAN_COLOUR, selection=selection)
            image = dense.shade(agg, colours=colours, low=colouring.low, high=colouring.high,
                                categorical=colouring.categorical, nan_colour=ui.NAN_COLOUR)
            rows = np.zeros(0, np.int64)
        else:
            image, rows = None, np.flatnonzero(inside).astype(np.int64)
        key = (rows, colouring, outcomes)
        last = self._columns_key
        same = last is not None and last[1] is colouring and last[2] is outcomes and np.array_equal(last[0], rows)
        columns = None if same else self._columns(rows, colouring, outcomes)
        self._columns_key = key
        return Frame(vp, rows, columns, dense.positions(selection, rows), image)

    def _columns(self, rows: np.ndarray, colouring: Colouring, outcomes: np.ndarray) -> dict:
        info = self.info
        return {"x": info.x[rows], "y": info.y[rows], "c": colouring.values[rows], "o": outcomes[rows],
                "image_id": info.image_id[rows].astype(np.float64), "cluster": info.cluster[rows].astype(np.int32),
                "file_name": info.file_name[rows]}

    # ------------------------------------------------------------- apply (under the lock)

    def apply(self, frame: Frame, source, *, images_level: bool = True) -> None:
        self.rows = frame.rows
        if frame.columns is not None:
            source.data = frame.columns
        old = np.asarray(source.selected.indices, np.int64)
        if old.shape != frame.selected.shape or not np.array_equal(old, frame.selected):
            source.selected.indices = frame.selected
        if frame.image is None:
            self.image_source.data = {"image": [], "x": [], "y": [], "dw": [], "dh": []}
        else:
            vp = frame.viewport
            self.image_source.data = {"image": [frame.image], "x": [vp.x0], "y": [vp.y0],
                                      "dw": [vp.x1 - vp.x0], "dh": [vp.y1 - vp.y0]}
        self.image.visible = images_level

    # ------------------------------------------------------------- events

    def moved(self, session, ranges=None) -> None:
        """The plot's ranges (``(x0, x1, y0, y1)`` of a RangesUpdate, else the synced ones) or its
        frame's size changed: re-render the new viewport as a session job (coalesced)."""
        f = self.view.figure
        vp = self.viewport
        if ranges is None:
            ranges = (f.x_range.start, f.x_range.end, f.y_range.start, f.y_range.end)
            if any(v is None for v in ranges):
                ranges = (vp.x0, vp.x1, vp.y0, vp.y1)
        w, h = ui.frame_size(f)
        try:
            new = dense.Viewport(*(float(v) for v in ranges), *_size(w, h))
        except (TypeError, ValueError):
            ui.refused("scatter ranges", (ranges, w, h))
            return
        if new == vp:
            return
        self.viewport = new

        def job():
            col, outcomes = self.view.current_colouring()
            if col is None:
                return None
            frame = self.frame(col, outcomes, session.derived.selection, new)
            return lambda: self.apply(frame, self.view.source, images_level=self.view.level == "images")

        session.run(job, key="scatter-dense")


def _size(w, h) -> tuple[int, int]:
    """The frame's pixel size (the default before the page reported it), clamped to what is computed."""
    if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
        return DEFAULT_SIZE
    return min(w, dense.MAX_SIDE), min(h, dense.MAX_SIDE)


__all__ = ["DEFAULT_SIZE", "DenseLayer", "Frame"]
