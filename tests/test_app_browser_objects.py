"""The object level in a real browser (Chromium + Playwright, as tests/test_app_browser.py):
switch to objects, click a matrix cell, see the cell's objects as crops in the gallery, open one.

Expected values come from the evaluation engine and the run's object map, never from the page.
Screenshots of the object level at 1280×800 and 1920×1080 go to ``test-artifacts/``.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_app_browser import ARTIFACTS, TIMEOUT_MS, AppPage, browser, detection  # noqa: F401 - fixtures

from vecexplore.app.objects import cell_rows

pytestmark = pytest.mark.browser

_VISIBLE = "(name) => Bokeh.documents[0].get_model_by_name(name).visible"


def _to_objects(app: AppPage) -> None:
    menu = app.page.evaluate_handle("() => Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name("
                                    "'level')).shadow_el.querySelector('select')").as_element()
    menu.select_option(label="Objects")
    app.wait_for(f"() => ({_VISIBLE})('scatter-object-points')"
                 " && Bokeh.documents[0].get_model_by_name('gallery-source').data.url[0].includes('/crop/')")
    app.settle()


@pytest.mark.parametrize("viewport", [(1280, 800), (1920, 1080)])
def test_object_level_cell_shows_crops_and_a_crop_opens_its_image(browser, detection, viewport):  # noqa: F811
    server, data = detection
    omap = data.object_map
    assert omap is not None, "the demo run is built with an object map (--level auto = both)"
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    app = AppPage(browser, server.url, context=context)
    assert not app.page.evaluate(_VISIBLE, "scatter-object-points")
    _to_objects(app)
    n_points = app.page.evaluate(
        "() => Bokeh.documents[0].get_model_by_name('scatter-objects-source').get_length()")
    assert n_points == len(omap.points)
    assert not app.page.evaluate(_VISIBLE, "scatter-points")

    # the miss cell of the class with the most misses: its GT objects, as crops
    ev = data.evaluation()
    cm = ev.confusion
    size = len(cm.labels)
    i = int(np.argmax(cm.counts[:-1, -1]))
    rows = cell_rows(cm, i, size - 1, data.dataset)
    assert len(rows) >= 2
    app.click_glyph("confusion-cells", i * size + size - 1)
    app.wait_for("([n]) => Bokeh.documents[0].get_model_by_name('gallery-caption').text.startsWith(n + ' objects')",
                 [len(rows)])
    app.settle()
    urls = app.column("gallery-source", "url")
    shown = [int(u.rsplit("/", 1)[1]) for u in urls]
    assert set(shown) <= set(rows.tolist()) and len(shown) == min(len(rows), len(urls))
    assert all(b.endswith("· fn") for b in app.column("gallery-source", "badge"))
    # the crops themselves come through the crop route
    base = server.url.rstrip("/")
    response = app.page.request.get(base + urls[0])
    assert response.status == 200 and response.headers["content-type"] == "image/jpeg"
    # the scatter outlines the mapped objects of the cell
    mapped = [k for k, r in enumerate(omap.points.tolist()) if r in set(rows.tolist())]
    assert app.selected("scatter-objects-source") == mapped
    app.page.wait_for_timeout(800)  # crops paint
    w, h = viewport
    ARTIFACTS.mkdir(exist_ok=True)
    app.page.mouse.move(1, 1)
    app.page.screenshot(path=str(ARTIFACTS / f"app-objects-cell-{w}x{h}.png"))

    # a crop opens its full image with the object highlighted
    k = 1
    row = shown[k]
    image = int(omap.image_idx[row])
    app.click_glyph("gallery-tiles", k)
    app.wait_for("(u) => Bokeh.documents[0].get_model_by_name('detail-image').data.url[0] == u",
                 f"{server.app.runs[0].url_base}/image/{int(data.images.image_id[image])}")
    app.wait_for("() => Bokeh.documents[0].get_model_by_name('detail-focus').get_length() == 1")
    app.settle()
    x, y, _bw, bh = omap.xywh[row]
    left = app.column("detail-focus", "left")[0]
    bottom = app.column("detail-focus", "bottom")[0]
    assert abs(left - x) < 1e-6 and abs(bottom - (y + bh)) < 1e-6
    assert f"object {row}" in app.text("detail-info")
    app.page.wait_for_timeout(800)
    app.page.mouse.move(1, 1)
    app.page.screenshot(path=str(ARTIFACTS / f"app-objects-detail-{w}x{h}.png"))
    assert app.close() == []
