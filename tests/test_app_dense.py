"""The dense map (issue 15 §3): past a threshold of points in view the scatter draws an aggregate image.

The threshold is lowered so the session's 400-image demo run is dense. The
aggregate is checked against ``np.histogram2d`` on random points, the server's
lasso and box against a brute-force even-odd point-in-polygon, and a zoom below
the threshold against the points in view; a selection made on the aggregate
reaches the gallery and the matrix as a normal lasso does. Below the threshold
nothing changes (the existing app tests hold the rest).
"""

from __future__ import annotations

import numpy as np
import pytest
from bokeh.document import Document
from bokeh.events import RangesUpdate, SelectionGeometry

from vecexplore.app import client, dense
from vecexplore.app import state as st
from vecexplore.app.document import build_document
from vecexplore.app.views.scatter import _palette

THRESHOLD = 150


@pytest.fixture
def low_threshold(monkeypatch):
    monkeypatch.setattr(dense, "DENSE_THRESHOLD", THRESHOLD)


def page(data):
    doc = Document()
    session = build_document(doc, data, url_base="/vx/test")
    return doc, session, session.view("scatter")


def _mapped(data) -> np.ndarray:
    return np.flatnonzero(np.isfinite(data.images.x) & np.isfinite(data.images.y))


# ---------------------------------------------------------------- references


def _edges_clear(x, y, vp: dense.Viewport, eps=1e-6) -> np.ndarray:
    """Points not within ``eps`` of a pixel edge: there two correct binnings may round differently."""
    fx = (np.asarray(x, np.float64) - vp.x0) / (vp.x1 - vp.x0) * vp.width
    fy = (np.asarray(y, np.float64) - vp.y0) / (vp.y1 - vp.y0) * vp.height
    return (np.abs(fx - np.rint(fx)) > eps) & (np.abs(fy - np.rint(fy)) > eps)


def _hist(x, y, vp, weights=None):
    h, _, _ = np.histogram2d(np.asarray(y, np.float64), np.asarray(x, np.float64), bins=[vp.height, vp.width],
                             range=[[vp.y0, vp.y1], [vp.x0, vp.x1]], weights=weights)
    return h


def _inside_polygon(x, y, poly) -> np.ndarray:
    """Brute-force even-odd ray casting (a ray to +x crosses how many edges)."""
    x, y = np.asarray(x, np.float64)[:, None], np.asarray(y, np.float64)[:, None]
    ax, ay = poly[:, 0][None, :], poly[:, 1][None, :]
    bx, by = np.roll(poly[:, 0], -1)[None, :], np.roll(poly[:, 1], -1)[None, :]
    straddles = (ay > y) != (by > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        cross_x = ax + (y - ay) * (bx - ax) / (by - ay)
    return (np.count_nonzero(straddles & (x < cross_x), axis=1) % 2 == 1) & np.isfinite(x[:, 0]) & np.isfinite(y[:, 0])


def _random_polygon(rng, x0, x1, y0, y1, k=9) -> np.ndarray:
    """A star-shaped polygon (random radii at sorted angles) inside the box."""
    cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
    angles = np.sort(rng.uniform(0, 2 * np.pi, k))
    r = rng.uniform(0.2, 0.6, k)
    return np.column_stack([cx + r * (x1 - x0) * np.cos(angles), cy + r * (y1 - y0) * np.sin(angles)])


# ---------------------------------------------------------------- the aggregate (pure)


@pytest.mark.parametrize("seed", range(6))
def test_continuous_aggregate_is_the_per_pixel_count_and_mean_of_histogram2d(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(500, 5000))
    x = rng.normal(0, 2, n).astype(np.float32)
    y = rng.normal(1, 1, n).astype(np.float32)
    v = rng.random(n).astype(np.float32)
    v[rng.random(n) < 0.1] = np.nan  # no value: left out of the mean
    x[rng.random(n) < 0.05] = np.nan  # not mapped: never counted
    vp = dense.Viewport(-3.0, 2.5, -0.5, 2.0, int(rng.integers(5, 60)), int(rng.integers(5, 60)))
    keep = _edges_clear(x, y, vp)
    x, y, v = x[keep], y[keep], v[keep]
    sel = np.sort(rng.choice(len(x), len(x) // 3, replace=False))
    agg = dense.aggregate(x, y, v, vp, categorical=False, selection=sel)
    np.testing.assert_array_equal(agg.count, _hist(x, y, vp))
    ok = np.isfinite(v)
    with np.errstate(invalid="ignore"):
        mean = _hist(x[ok], y[ok], vp, v[ok].astype(np.float64)) / _hist(x[ok], y[ok], vp)
    np.testing.assert_allclose(agg.value, mean, rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(agg.selected, _hist(x[sel], y[sel], vp))


@pytest.mark.parametrize("seed", range(4))
def test_categorical_aggregate_mixes_the_category_colours_by_count(seed):
    rng = np.random.default_rng(10 + seed)
    n, f = 3000, int(rng.integers(2, 12))
    x, y = rng.random(n).astype(np.float32), rng.random(n).astype(np.float32)
    codes = rng.integers(0, f, n).astype(np.float32)
    codes[rng.random(n) < 0.1] = np.nan  # no category: grey
    colours = [f"#{c:06x}" for c in rng.integers(0, 2**24, f)]
    vp = dense.Viewport(0.0, 1.0, 0.0, 1.0, 17, 11)
    keep = _edges_clear(x, y, vp)
    x, y, codes = x[keep], y[keep], codes[keep]
    agg = dense.aggregate(x, y, codes, vp, categorical=True, colours=colours, nan_colour="#cfcfcf")
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in [*colours, "#cfcfcf"]], float)
    per_cat = np.stack([_hist(x[k], y[k], vp) for k in
                        [codes == c for c in range(f)] + [np.isnan(codes)]], axis=-1)  # (H, W, F + 1)
    total = per_cat.sum(-1)
    np.testing.assert_array_equal(agg.count, total)
    with np.errstate(invalid="ignore"):
        want = per_cat @ rgb / total[..., None]
    np.testing.assert_allclose(agg.value, want, rtol=1e-5, atol=1e-3, equal_nan=True)


def test_shade_colours_the_mean_through_the_palette_and_alpha_follows_the_count():
    vp = dense.Viewport(0.0, 2.0, 0.0, 1.0, 2, 1)
    x = np.array([0.5, 0.5, 0.5, 1.5], np.float32)
    y = np.full(4, 0.5, np.float32)
    v = np.array([0.0, 0.2, 0.1, 0.9], np.float32)  # left pixel mean 0.1 → first colour, right 0.9 → last
    agg = dense.aggregate(x, y, v, vp, categorical=False)
    img = dense.shade(agg, colours=["#0000ff", "#ff0000"], low=0.0, high=1.0, categorical=False)
    rgba = img.view(np.uint8).reshape(1, 2, 4)
    assert tuple(rgba[0, 0, :3]) == (0, 0, 255) and tuple(rgba[0, 1, :3]) == (255, 0, 0)
    assert rgba[0, 0, 3] == 255  # the densest pixel is opaque
    assert rgba[0, 1, 3] == round(255 * (dense.MIN_ALPHA + (1 - dense.MIN_ALPHA) * np.log1p(1) / np.log1p(3)))
    agg = dense.aggregate(x, y, v, vp, categorical=False, selection=np.array([3]))
    rgba = dense.shade(agg, colours=["#0000ff", "#ff0000"], low=0.0, high=1.0,
                       categorical=False).view(np.uint8).reshape(1, 2, 4)
    assert rgba[0, 0, 3] == round(255 * dense.UNSELECTED_ALPHA)  # nothing selected there: dimmed


@pytest.mark.parametrize("seed", range(8))
def test_polygon_and_box_rows_equal_the_brute_force_reference(seed):
    rng = np.random.default_rng(100 + seed)
    n = 20_000
    x, y = rng.normal(0, 1, n).astype(np.float32), rng.normal(0, 1, n).astype(np.float32)
    x[rng.random(n) < 0.02] = np.nan
    poly = _random_polygon(rng, -1.5, 1.5, -1.5, 1.5)
    np.testing.assert_array_equal(dense.rows_in_polygon(x, y, poly), np.flatnonzero(_inside_polygon(x, y, poly)))
    box = np.sort(rng.uniform(-2, 2, 2)), np.sort(rng.uniform(-2, 2, 2))
    want = np.flatnonzero((x >= box[0][0]) & (x <= box[0][1]) & (y >= box[1][0]) & (y <= box[1][1]))
    got = dense.rows_in_region(x, y, ("rect", np.array([box[0][1], box[0][0], box[1][0], box[1][1]])))
    np.testing.assert_array_equal(got, want)  # corners in either order


@pytest.mark.parametrize("geometry", [
    None, "poly", {"type": "poly", "x": [0, 1], "y": [0, 1]}, {"type": "poly", "x": [0, 1, "a"], "y": [0, 1, 2]},
    {"type": "poly", "x": [0, 1, float("nan")], "y": [0, 1, 2]}, {"type": "poly", "x": [0, 1, 2], "y": [0, 1]},
    {"type": "rect", "x0": 0, "x1": 1, "y0": 0}, {"type": "rect", "x0": True, "x1": 1, "y0": 0, "y1": 1},
    {"type": "point", "x": 0, "y": 0}, {"type": "poly", "x": "abc", "y": "abc"},
])  # fmt: skip
def test_a_geometry_the_page_could_not_send_is_refused(geometry):
    assert client.region(geometry) is None


def test_viewport_is_validated():
    with pytest.raises(ValueError, match="increasing"):
        dense.Viewport(1.0, 0.0, 0.0, 1.0, 10, 10)
    with pytest.raises(ValueError, match="finite"):
        dense.Viewport(0.0, float("inf"), 0.0, 1.0, 10, 10)
    with pytest.raises(ValueError, match="width"):
        dense.Viewport(0.0, 1.0, 0.0, 1.0, 0, 10)


# ---------------------------------------------------------------- the scatter past the threshold


def test_below_the_threshold_nothing_changes(det):
    _, _, v = page(det)
    assert v.dense is None
    assert len(v.source.data["x"]) == det.num_images
    assert v.lasso.renderers == [v.renderer] and v.box.renderers == [v.renderer]
    assert v.figure.select_one({"name": "scatter-image"}) is None


def test_past_the_threshold_the_aggregate_is_shown_and_no_point_is_sent(det, low_threshold):
    _, _, v = page(det)
    assert v.dense is not None
    assert len(v.source.data["x"]) == 0  # the point glyph is sent no point
    assert v.lasso.renderers == [] and v.box.renderers == []  # selections are the server's
    img = v.dense.image_source.data["image"]
    assert len(img) == 1 and img[0].dtype == np.uint32
    vp = v.dense.viewport
    assert img[0].shape == (vp.height, vp.width)
    # The image is the shaded aggregate of every mapped image at the current colouring.
    col = v.current_colouring()[0]
    assert col.mode == "error_rate"
    agg = dense.aggregate(det.images.x, det.images.y, col.values, vp, categorical=False)
    assert int((img[0].view(np.uint8).reshape(*img[0].shape, 4)[..., 3] > 0).sum()) == int((agg.count > 0).sum())
    assert agg.count.sum() == len(_mapped(det))


def test_a_colour_change_re_renders_the_aggregate_in_the_new_colours(det, low_threshold):
    from vecexplore.app import events as ev

    _, s, v = page(det)
    before = v.dense.image_source.data["image"][0].copy()
    s.emit(ev.SetView.of(colour="cluster"))
    col = v.current_colouring()[0]
    assert col.categorical
    after = v.dense.image_source.data["image"][0]
    assert not np.array_equal(before, after)
    colours = dense.category_colours(_palette(col), len(col.factors), col.low, col.high)
    agg = dense.aggregate(det.images.x, det.images.y, col.values, v.dense.viewport, categorical=True, colours=colours)
    want = dense.shade(agg, colours=colours, low=col.low, high=col.high, categorical=True)
    np.testing.assert_array_equal(after, want)


def _zoom(v, x0, x1, y0, y1):
    v.figure._trigger_event(RangesUpdate(v.figure, x0=float(x0), x1=float(x1), y0=float(y0), y1=float(y1)))


def test_zooming_in_below_the_threshold_sends_the_points_in_view_and_maps_them_back(det, low_threshold):
    _, s, v = page(det)
    info = det.images
    mapped = _mapped(det)
    cx, cy = float(np.median(info.x[mapped])), float(np.median(info.y[mapped]))
    half = 0.5 * float(np.nanmax(info.x) - np.nanmin(info.x))
    while True:  # shrink the view around the centre until fewer than the threshold are in it
        inside = (info.x >= cx - half) & (info.x <= cx + half) & (info.y >= cy - half) & (info.y <= cy + half)
        if inside.sum() <= THRESHOLD:
            break
        half *= 0.8
    _zoom(v, cx - half, cx + half, cy - half, cy + half)
    want = np.flatnonzero(inside)
    assert len(want) > 0
    np.testing.assert_array_equal(v.dense.rows, want)
    np.testing.assert_array_equal(v.source.data["image_id"], info.image_id[want].astype(np.float64))
    np.testing.assert_array_equal(v.source.data["c"], s.derived.outcomes.error_rate[want].astype(np.float32))
    assert v.dense.image_source.data["image"] == []  # no aggregate under the points

    # A selection made elsewhere marks the points in view that are in it, by source position.
    pick = np.concatenate([want[::2], np.setdiff1d(mapped, want)[:5]])
    s.select(pick)
    np.testing.assert_array_equal(want[np.asarray(v.source.selected.indices)], np.intersect1d(want[::2], pick))
    # A selection the page makes on the source (positions) is mapped back to image_idx.
    s.clear()
    v.source.selected.indices = [0, 2]
    np.testing.assert_array_equal(s.selection, want[[0, 2]])

    # Zooming out past the threshold again: the image is back and no point is sent.
    x0, x1, y0, y1 = dense.extent(info.x, info.y)
    _zoom(v, x0, x1, y0, y1)
    assert len(v.source.data["x"]) == 0 and len(v.dense.image_source.data["image"]) == 1


@pytest.mark.parametrize("seed", range(3))
def test_a_lasso_on_the_aggregate_selects_every_point_inside_on_the_server(det, low_threshold, seed):
    _, s, v = page(det)
    info = det.images
    x0, x1, y0, y1 = dense.extent(info.x, info.y)
    poly = _random_polygon(np.random.default_rng(seed), x0, x1, y0, y1)
    geometry = {"type": "poly", "sx": [0.0] * len(poly), "sy": [0.0] * len(poly),
                "x": poly[:, 0].tolist(), "y": poly[:, 1].tolist()}
    v.figure._trigger_event(SelectionGeometry(v.figure, geometry=geometry, final=False))
    assert s.selection is None  # a lasso still being drawn selects nothing yet
    v.figure._trigger_event(SelectionGeometry(v.figure, geometry=geometry, final=True))
    want = np.flatnonzero(_inside_polygon(info.x, info.y, poly))
    assert len(want) > 0
    np.testing.assert_array_equal(s.selection, want)
    assert s.state.pick_how == "points"
    # It reaches the other views as a normal lasso does.
    gallery = np.asarray(s.view("gallery").source.data["image_idx"])
    page0 = st.gallery_page(want, sort="error", page=0, error_rate=s.derived.outcomes.error_rate,
                            score=s.derived.scores, per_page=s.state.per_page)
    np.testing.assert_array_equal(gallery, page0.image_idx)
    np.testing.assert_array_equal(s.view("confusion").source.data["count"],
                                  s.derived.evaluation.confusion_of(want).counts.ravel())
    # The aggregate shows it: it is re-shaded with the selection (pixels without a selected point dimmed).
    col = v.current_colouring()[0]
    agg = dense.aggregate(info.x, info.y, col.values, v.dense.viewport, categorical=False, selection=want)
    assert (agg.selected > 0).any() and ((agg.count > 0) & (agg.selected == 0)).any()
    np.testing.assert_array_equal(v.dense.image_source.data["image"][0], dense.shade(
        agg, colours=_palette(col), low=col.low, high=col.high, categorical=False))


def test_a_box_combines_with_the_pick_in_the_session_mode(det, low_threshold):
    from vecexplore.app import events as ev

    _, s, v = page(det)
    info = det.images
    x0, x1, y0, y1 = dense.extent(info.x, info.y)
    first = {"type": "rect", "sx0": 0, "sx1": 0, "sy0": 0, "sy1": 0, "x0": x0, "x1": (x0 + x1) / 2, "y0": y0, "y1": y1}
    second = {**first, "x0": (3 * x0 + x1) / 4, "x1": x1, "y0": (y0 + y1) / 2}
    v.figure._trigger_event(SelectionGeometry(v.figure, geometry=first, final=True))
    a = dense.rows_in_box(info.x, info.y, (x0, (x0 + x1) / 2, y0, y1))
    np.testing.assert_array_equal(s.selection, a)
    s.emit(ev.SetSelectMode("subtract"))
    v.figure._trigger_event(SelectionGeometry(v.figure, geometry=second, final=True))
    b = dense.rows_in_box(info.x, info.y, ((3 * x0 + x1) / 4, x1, (y0 + y1) / 2, y1))
    np.testing.assert_array_equal(s.selection, np.setdiff1d(a, b))  # over every image, not the ones in view


def test_a_tap_on_the_aggregate_opens_the_nearest_image(det, low_threshold):
    from bokeh.events import Tap

    _, s, v = page(det)
    k = int(_mapped(det)[7])
    v.figure._trigger_event(Tap(v.figure, sx=0, sy=0, x=float(det.images.x[k]), y=float(det.images.y[k]),
                                modifiers={"shift": False, "ctrl": False, "alt": False}))
    np.testing.assert_array_equal(s.selection, [k])
    assert s.state.detail == k


def test_an_invalid_geometry_or_range_from_the_page_is_ignored(det, low_threshold):
    _, s, v = page(det)
    before = v.dense.viewport
    v.figure._trigger_event(SelectionGeometry(v.figure, geometry={"type": "poly", "x": [0, 1], "y": [0, 1]}, final=True))
    assert s.selection is None
    _zoom(v, 1.0, 0.0, 0.0, 1.0)  # not increasing
    assert v.dense.viewport == before
