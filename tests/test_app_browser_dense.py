"""The dense map in a real browser (Chromium via Playwright): with the threshold lowered below the
demo run's size, the page draws the aggregate image and no point, a mouse lasso selects on the
server (the gallery shows every image inside the polygon), and a wheel zoom into a small region
re-renders it as the points in view."""

from __future__ import annotations

import numpy as np
import pytest
import test_app_browser as _shared

from vecexplore.app import dense

pytestmark = pytest.mark.browser

browser = _shared.browser
AppPage = _shared.AppPage
THRESHOLD = 150

_FRAME = """() => {
  const r = Bokeh.documents[0].get_model_by_name('scatter-image');
  const pv = Bokeh.index.find_one(r).plot_view;
  const box = pv.canvas_view.el.getBoundingClientRect();
  const f = pv.frame.bbox;
  return [box.x, box.y, f.left, f.top, f.width, f.height];
}"""
# Data coordinates of screen points (relative to the canvas), as the select tool converts them.
_INVERT = """(pts) => {
  const r = Bokeh.documents[0].get_model_by_name('scatter-image');
  const frame = Bokeh.index.find_one(r).plot_view.frame;
  return pts.map(([sx, sy]) => [frame.x_scale.invert(sx), frame.y_scale.invert(sy)]);
}"""
_SCREEN = """([x, y]) => {
  const r = Bokeh.documents[0].get_model_by_name('scatter-image');
  const frame = Bokeh.index.find_one(r).plot_view.frame;
  return [frame.x_scale.compute(x), frame.y_scale.compute(y)];
}"""
_POINTS_SHOWN = """() => Bokeh.documents[0].get_model_by_name('scatter-source').get_length() > 0
  && Bokeh.documents[0].get_model_by_name('scatter-image-source').get_length() == 0"""
_IMAGE_SHOWN = """() => {
  const d = Bokeh.documents[0];
  const src = d.get_model_by_name('scatter-image-source');
  const rv = Bokeh.index.find_one(d.get_model_by_name('scatter-image'));
  return src.get_length() == 1 && rv != null && rv.glyph.image != null && rv.glyph.image.length == 1;
}"""


@pytest.fixture(scope="module")
def dense_server(demo_run):
    from vecexplore.app.data import load_run_data
    from vecexplore.app.server import ServerThread

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dense, "DENSE_THRESHOLD", THRESHOLD)
        server = ServerThread([demo_run[0]])
        yield server, load_run_data(demo_run[0])
        server.stop()


def test_the_dense_map_draws_an_image_and_a_lasso_selects_on_the_server(browser, dense_server):
    server, data = dense_server
    app = AppPage(browser, server.url)
    app.wait_for(_IMAGE_SHOWN)
    assert app.page.evaluate("() => Bokeh.documents[0].get_model_by_name('scatter-source').get_length()") == 0
    app.screenshot("dense-map")

    # A lasso drawn with the mouse: a hexagon around the frame's centre.
    cx0, cy0, left, top, w, h = app.page.evaluate(_FRAME)
    angles = np.linspace(0, 2 * np.pi, 7)[:-1]
    screen = [[left + w / 2 + 0.3 * w * np.cos(a), top + h / 2 + 0.3 * h * np.sin(a)] for a in angles]
    app.page.mouse.move(cx0 + screen[0][0], cy0 + screen[0][1])
    app.page.mouse.down()
    for sx, sy in [*screen[1:], screen[0]]:
        app.page.mouse.move(cx0 + sx, cy0 + sy, steps=4)
    app.page.mouse.up()
    poly = np.asarray(app.page.evaluate(_INVERT, screen), float)
    want = dense.rows_in_polygon(data.images.x, data.images.y, poly)
    assert 0 < len(want) < data.num_images
    app.wait_for("(m) => Bokeh.documents[0].get_model_by_name('gallery-caption').text.includes(m)",
                 f"{len(want):,} images")
    app.settle()
    ids = {int(v) for v in app.column("gallery-source", "image_id")}
    assert ids <= set(data.images.image_id[want].tolist())

    # Wheel-zoom in on an image until fewer than the threshold are in view: the points in view appear.
    k = int(np.flatnonzero(np.isfinite(data.images.x))[0])
    sx, sy = app.page.evaluate(_SCREEN, [float(data.images.x[k]), float(data.images.y[k])])
    app.page.mouse.move(cx0 + sx, cy0 + sy)
    for _ in range(20):
        app.page.mouse.wheel(0, -150)
        app.page.wait_for_timeout(400)  # the zoom ends, its RangesUpdate is re-rendered
        app.settle()
        if app.page.evaluate(_POINTS_SHOWN):
            break
    app.wait_for(_POINTS_SHOWN)
    x = np.asarray(app.column("scatter-source", "x"), float)
    y = np.asarray(app.column("scatter-source", "y"), float)
    x0, x1, y0, y1 = app.page.evaluate("""() => { const f = Bokeh.documents[0].get_model_by_name('scatter');
      return [f.x_range.start, f.x_range.end, f.y_range.start, f.y_range.end] }""")
    inside = ((data.images.x >= x0) & (data.images.x <= x1) & (data.images.y >= y0) & (data.images.y <= y1))
    assert 0 < len(x) == inside.sum() <= THRESHOLD  # every image in view, and only those
    np.testing.assert_allclose(np.sort(x), np.sort(data.images.x[inside]), rtol=1e-6)
    np.testing.assert_allclose(np.sort(y), np.sort(data.images.y[inside]), rtol=1e-6)
    app.screenshot("dense-zoomed")
    errors = app.close()
    assert not errors, errors
