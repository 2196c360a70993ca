"""The dense map: a per-pixel aggregate instead of points, and selections over every point (pure, Bokeh-free).

Past :data:`DENSE_THRESHOLD` visible points the browser's WebGL scatter stops
being interactive, so the scatter (:mod:`vecexplore.app.views.scatter_dense`)
draws an image instead: every pixel of the plot's frame aggregates the points
that fall in it (datashader), coloured as the points are coloured
(:mod:`vecexplore.app.colouring`):

* a continuous colouring (error rate, confidence, ...): the **mean value** of the
  pixel's points through the same colour map (points without a value are left
  out of the mean; a pixel with only such points is grey);
* a categorical colouring (cluster, class, outcome, ...): the pixel's points'
  **category colours mixed by their counts** (the count-weighted mean colour;
  points without a category count as grey).

A pixel's opacity grows with the log of its count (the densest pixel of the view
is opaque), so density stays visible. Once fewer than the threshold are in view
the points in view are drawn as usual.

Selections over the aggregate are computed here, on all points: the lasso's
polygon or the box, in data coordinates, against every mapped point.

datashader is imported only by the functions that aggregate (a run past the
threshold); :func:`warm` pays its import and JIT compilation ahead of the
first page.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

#: Past this many points in view the map draws the aggregate image, not points.
DENSE_THRESHOLD = 200_000
#: A pixel's opacity: this for one point, rising with log(count) to 1 at the view's densest pixel.
MIN_ALPHA = 0.35
#: With a selection, pixels without a selected point keep this fraction of their opacity.
UNSELECTED_ALPHA = 0.2
#: The largest image side (pixels) an aggregate is computed at (a 4k screen's frame).
MAX_SIDE = 4096


def is_dense(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether a map of these points (NaN = not mapped) is dense: more mapped than :data:`DENSE_THRESHOLD`."""
    return int(np.count_nonzero(np.isfinite(x) & np.isfinite(y))) > DENSE_THRESHOLD


@dataclass(frozen=True)
class Viewport:
    """What the plot's frame shows: data ranges ``[x0, x1] × [y0, y1]`` on ``width × height`` pixels."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: int
    height: int

    def __post_init__(self):
        for name in ("x0", "x1", "y0", "y1"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"Viewport.{name} must be finite, got {getattr(self, name)!r}")
        if not (self.x1 > self.x0 and self.y1 > self.y0):
            raise ValueError(f"Viewport ranges must be increasing, got x [{self.x0}, {self.x1}], y [{self.y0}, {self.y1}]")
        for name in ("width", "height"):
            v = getattr(self, name)
            if not (isinstance(v, int) and 1 <= v <= MAX_SIDE):
                raise ValueError(f"Viewport.{name} must be an int in [1, {MAX_SIDE}], got {v!r}")

    def inside(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(N,) bool: the point is in the ranges (edges included; NaN never)."""
        return (x >= self.x0) & (x <= self.x1) & (y >= self.y0) & (y <= self.y1)


def extent(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) of the finite points (a unit square around one point, or at 0 for none)."""
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return -0.5, 0.5, -0.5, 0.5
    x0, x1 = float(np.min(x[ok])), float(np.max(x[ok]))
    y0, y1 = float(np.min(y[ok])), float(np.max(y[ok]))
    if x1 <= x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y1 <= y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    return x0, x1, y0, y1


@dataclass(frozen=True, eq=False)
class Aggregate:
    """The points of a viewport binned per pixel; rows = y from ``y0`` (bottom) up, columns = x from ``x0``.

    Attributes:
        viewport: what was binned.
        count: (H, W) int64 points per pixel.
        value: continuous: (H, W) float64 mean value of the pixel's points with a value (NaN = none);
            categorical: (H, W, 3) float64 count-weighted mean RGB (0-255) of its points' colours
            (NaN where count is 0).
        selected: (H, W) int64 selected points per pixel, or None (no selection).
    """

    viewport: Viewport
    count: np.ndarray
    value: np.ndarray
    selected: np.ndarray | None = None


def _rgb(colours: Sequence[str]) -> np.ndarray:
    """(len, 3) float64 0-255 of ``#rrggbb`` colours."""
    out = np.empty((len(colours), 3), np.float64)
    for i, c in enumerate(colours):
        h = c.lstrip("#")
        if len(h) == 3:
            h = "".join(ch * 2 for ch in h)
        if len(h) != 6:
            raise ValueError(f"colour {c!r} is not #rrggbb")
        out[i] = [int(h[k:k + 2], 16) for k in (0, 2, 4)]
    return out


def palette_index(values: np.ndarray, n: int, low: float, high: float) -> np.ndarray:
    """int64 index into an ``n``-colour palette spread linearly over ``[low, high]`` (clipped), as a
    Bokeh ``LinearColorMapper`` picks it; NaN gives 0 (the caller colours it grey)."""
    span = (high - low) or 1.0
    v = np.nan_to_num(np.asarray(values, np.float64), nan=low)
    return np.clip(np.floor((v - low) / span * n), 0, n - 1).astype(np.int64)


def category_colours(palette: Sequence[str], categories: int, low: float, high: float) -> list[str]:
    """The colour of each code ``0..categories-1`` under a linear colour map of ``palette`` over
    ``[low, high]`` (a categorical colouring's codes are drawn this way)."""
    idx = palette_index(np.arange(categories), len(palette), low, high)
    return [palette[i] for i in idx]


def _canvas(vp: Viewport):
    import datashader as ds

    return ds.Canvas(plot_width=vp.width, plot_height=vp.height, x_range=(vp.x0, vp.x1), y_range=(vp.y0, vp.y1))


def _frame(x, y, **columns):
    import pandas as pd

    return pd.DataFrame({"x": x, "y": y, **columns}, copy=False)


def aggregate(x: np.ndarray, y: np.ndarray, values: np.ndarray, viewport: Viewport, *, categorical: bool,
              colours: Sequence[str] = (), nan_colour: str = "#cfcfcf",
              selection: np.ndarray | None = None) -> Aggregate:
    """Bin the points in ``viewport`` per pixel (see :class:`Aggregate`).

    Args:
        x, y: (N,) float point positions (NaN = not mapped, never counted).
        values: (N,) float32 colour values (:class:`~vecexplore.app.colouring.Colouring`); NaN = none.
        categorical: ``values`` are codes ``0..F-1`` coloured by ``colours`` (F,), NaN by ``nan_colour``.
        selection: sorted int64 rows selected (their count per pixel is ``selected``), None = none.

    A pixel ``[i, j]`` holds the points with ``x0 + j·dx ≤ x < x0 + (j+1)·dx`` (the last column
    includes ``x1``), the same for y: ``np.histogram2d``'s bins.
    """
    import datashader as ds

    x, y = np.asarray(x), np.asarray(y)
    values = np.asarray(values, np.float32)
    if not (len(x) == len(y) == len(values)):
        raise ValueError(f"aggregate: x, y and values must have one row per point, got {len(x)}, {len(y)}, {len(values)}")
    canvas = _canvas(viewport)
    if categorical:
        rgb = np.vstack([_rgb(colours), _rgb([nan_colour])]).astype(np.float32)
        codes = np.where(np.isfinite(values), values, len(colours))
        codes = np.clip(codes, 0, len(colours)).astype(np.int64)
        point_rgb = rgb[codes]
        agg = canvas.points(_frame(x, y, r=point_rgb[:, 0], g=point_rgb[:, 1], b=point_rgb[:, 2]), "x", "y",
                            ds.summary(n=ds.count(), r=ds.mean("r"), g=ds.mean("g"), b=ds.mean("b")))
        value = np.stack([agg[c].values for c in ("r", "g", "b")], axis=-1).astype(np.float64)
    else:
        agg = canvas.points(_frame(x, y, v=values), "x", "y", ds.summary(n=ds.count(), v=ds.mean("v")))
        value = agg["v"].values.astype(np.float64)
    count = agg["n"].values.astype(np.int64)
    selected = None
    if selection is not None:
        sel = np.asarray(selection, np.int64)
        selected = canvas.points(_frame(x[sel], y[sel]), "x", "y", ds.count()).values.astype(np.int64)
    return Aggregate(viewport, count, value, selected)


def shade(agg: Aggregate, *, colours: Sequence[str], low: float, high: float, categorical: bool,
          nan_colour: str = "#cfcfcf") -> np.ndarray:
    """(H, W) uint32 RGBA (Bokeh's ``image_rgba``: R in the low byte) of an aggregate.

    Continuous: the mean through ``colours`` spread linearly over ``[low, high]`` (clipped, as a
    Bokeh ``LinearColorMapper``); categorical: the mixed colour. Opacity: :data:`MIN_ALPHA` for one
    point rising with log(count) to 1 at the densest pixel; 0 where empty; times
    :data:`UNSELECTED_ALPHA` where a selection exists and the pixel has none of it.
    """
    h, w = agg.count.shape
    count = agg.count.reshape(-1)
    lit = np.flatnonzero(count > 0)  # only the pixels with points are coloured (most of a view is empty)
    n = count[lit]
    if categorical:
        rgb = np.nan_to_num(agg.value.reshape(-1, 3)[lit], nan=0.0)
    else:
        value = agg.value.reshape(-1)[lit]
        palette = _rgb(colours)
        rgb = palette[palette_index(value, len(palette), low, high)]
        rgb[np.isnan(value)] = _rgb([nan_colour])[0]
    top = int(n.max()) if n.size else 1
    alpha = np.minimum(MIN_ALPHA + (1 - MIN_ALPHA) * np.log1p(n) / math.log1p(top), 1.0)
    if agg.selected is not None:
        alpha[agg.selected.reshape(-1)[lit] == 0] *= UNSELECTED_ALPHA
    out = np.zeros((h * w, 4), np.uint8)
    out[lit, :3] = np.clip(np.rint(rgb), 0, 255)
    out[lit, 3] = np.rint(alpha * 255)
    return out.view(np.uint32).reshape(h, w)


# ---------------------------------------------------------------- selections


def positions(selection: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
    """int64 positions in ``rows`` (a source's rows as sorted ids: image_idx, objects-table rows)
    of the selected ids that are among them; empty for no selection."""
    if selection is None or len(rows) == 0:
        return np.zeros(0, np.int64)
    sel = np.asarray(selection, np.int64)
    pos = np.minimum(np.searchsorted(rows, sel), len(rows) - 1)
    return pos[rows[pos] == sel].astype(np.int64)


def rows_in_box(x: np.ndarray, y: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Sorted int64 rows of the points in ``box`` = (x0, x1, y0, y1), edges included (Bokeh's box select)."""
    x0, x1, y0, y1 = box
    x0, x1 = min(x0, x1), max(x0, x1)
    y0, y1 = min(y0, y1), max(y0, y1)
    return np.flatnonzero((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)).astype(np.int64)


_IMPORT_LOCK = threading.Lock()


def _matplotlib_path():
    """matplotlib's ``Path``, imported under a lock: two threads importing matplotlib for the first
    time at once can see it half-initialised ("partially initialized module 'matplotlib' has no
    attribute 'rcParams'") — a session's lasso and a warm-up, or a test, racing."""
    with _IMPORT_LOCK:
        from matplotlib.path import Path
    return Path


def rows_in_polygon(x: np.ndarray, y: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Sorted int64 rows of the points inside ``polygon`` ((k, 2) data coordinates, closed implicitly;
    even-odd rule as matplotlib's ``Path.contains_points``). NaN points are never inside."""
    Path = _matplotlib_path()
    poly = np.asarray(polygon, np.float64)
    if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 3:
        return np.zeros(0, np.int64)
    (px0, py0), (px1, py1) = poly.min(0), poly.max(0)
    cand = np.flatnonzero((x >= px0) & (x <= px1) & (y >= py0) & (y <= py1))
    if cand.size == 0:
        return cand.astype(np.int64)
    pts = np.column_stack([np.asarray(x, np.float64)[cand], np.asarray(y, np.float64)[cand]])
    inside = Path(np.vstack([poly, poly[:1]]), closed=True).contains_points(pts)
    return cand[inside].astype(np.int64)


def rows_in_region(x: np.ndarray, y: np.ndarray, region: tuple[str, np.ndarray]) -> np.ndarray:
    """Sorted int64 rows of the points in a :func:`vecexplore.app.client.region` (a lasso or a box)."""
    kind, coords = region
    if kind == "poly":
        return rows_in_polygon(x, y, coords)
    if kind == "rect":
        return rows_in_box(x, y, tuple(float(v) for v in coords))
    raise ValueError(f"unknown region kind {kind!r}; expected 'poly' or 'rect'")


# ---------------------------------------------------------------- warm-up


_WARMED = threading.Event()
_WARM_LOCK = threading.Lock()


def warm() -> None:
    """Import datashader and matplotlib's Path, and compile both aggregations (seconds, once per process; thread-safe)."""
    with _WARM_LOCK:
        if _WARMED.is_set():
            return
        rng = np.random.default_rng(0)
        x, y = rng.random(64).astype(np.float32), rng.random(64).astype(np.float32)
        vp = Viewport(0.0, 1.0, 0.0, 1.0, 8, 8)
        codes = rng.integers(0, 3, 64).astype(np.float32)
        sel = np.arange(0, 64, 2, dtype=np.int64)
        aggregate(x, y, codes, vp, categorical=False, selection=sel)
        aggregate(x, y, codes, vp, categorical=True, colours=["#000000"] * 3, selection=sel)
        _matplotlib_path()  # the server-side lasso's point-in-polygon test
        _WARMED.set()


def warm_in_background() -> threading.Thread:
    """:func:`warm` in a daemon thread (a run past the threshold was loaded)."""
    def run():
        try:
            warm()
        except Exception:  # the first aggregate will raise it where it is seen
            log.exception("warming datashader failed")

    thread = threading.Thread(target=run, name="vx-warm-datashader", daemon=True)
    thread.start()
    return thread


__all__ = [
    "DENSE_THRESHOLD", "MIN_ALPHA", "UNSELECTED_ALPHA", "Aggregate", "Viewport", "aggregate", "category_colours",
    "extent", "is_dense", "palette_index", "positions", "rows_in_box", "rows_in_polygon", "rows_in_region", "shade", "warm", "warm_in_background",
]  # fmt: skip
