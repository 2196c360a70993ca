"""The model-quality tabs in a real browser: Debian's Chromium driven by Playwright.

Same conventions as ``test_app_browser.py`` (whose fixtures and page helper
this module reuses): real mouse events at the screen position BokehJS drew a
glyph or widget at, expected values from the analysis engine, never from the
page, screenshots under ``test-artifacts/`` (``app-quality-*.png``). A missing
Chromium fails these tests; it does not skip them.
"""

from __future__ import annotations

import numpy as np
import pytest
import test_app_browser as _shared
from test_app_browser import AppPage

from vecexplore.analysis.quality import class_performance, property_importance, property_performance
from vecexplore.app import state as st

pytestmark = pytest.mark.browser

# The server and browser fixtures of the app's browser tests (module-scoped there and here).
browser, detection, classification = _shared.browser, _shared.detection, _shared.classification

# Centre (page coordinates) of bar k of a named LRTB renderer (hbar / vbar), as BokehJS drew it.
_BAR_XY = """([name, k]) => {
  const r = Bokeh.documents[0].get_model_by_name(name);
  const rv = Bokeh.index.find_one(r);
  const box = rv.plot_view.canvas_view.el.getBoundingClientRect();
  const g = rv.glyph;
  return [box.x + (g.sleft[k] + g.sright[k]) / 2, box.y + (g.stop[k] + g.sbottom[k]) / 2];
}"""
# Page position of data point (x, y) in a named figure, from its frame's scales.
_DATA_XY = """([name, x, y]) => {
  const pv = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name(name));
  const box = pv.canvas_view.el.getBoundingClientRect();
  return [box.x + pv.frame.x_scale.compute(x), box.y + pv.frame.y_scale.compute(y)];
}"""
# Centre of the i-th tab title of the Tabs named "tabs".
_TAB_XY = """([i]) => {
  const v = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('tabs'));
  const box = v.shadow_el.querySelectorAll('.bk-tab')[i].getBoundingClientRect();
  return [box.x + box.width / 2, box.y + box.height / 2];
}"""
_LENGTH = "(name) => Bokeh.documents[0].get_model_by_name(name).get_length()"
_VALUE = "([name, attr]) => Bokeh.documents[0].get_model_by_name(name)[attr]"


def _tab_index(app: AppPage, title: str) -> int:
    return app.page.evaluate("(t) => Bokeh.documents[0].get_model_by_name('tabs').tabs.map(p => p.title).indexOf(t)",
                             title)


def _open_tab(app: AppPage, title: str, source: str) -> None:
    """Click the title of the tab ``title`` and wait until ``source`` has rows."""
    i = _tab_index(app, title)
    assert i >= 0, title
    x, y = app.page.evaluate(_TAB_XY, [i])
    app.page.mouse.click(x, y)
    app.wait_for(f"() => Bokeh.documents[0].get_model_by_name('tabs').active == {i}")
    app.wait_for("(s) => Bokeh.documents[0].get_model_by_name(s).get_length() > 0", source)
    app.settle()


def _wait_selected(app: AppPage, n: int) -> None:
    app.wait_for("([n]) => Bokeh.documents[0].get_model_by_name('scatter-source').selected.indices.length == n",
                 [n])
    app.wait_for("([t]) => Bokeh.documents[0].get_model_by_name('gallery-caption').text == t",
                 [f"{n:,} images"])
    app.settle()


def _first_page(data, images: np.ndarray) -> list[int]:
    """The selection in gallery order (the page shows as many of them as its size holds)."""
    ev = data.evaluation()
    return st.gallery_order(np.asarray(images, np.int64), sort="error",
                            error_rate=st.image_outcomes(ev.per_image).error_rate, score=data.images.max_score).tolist()


def _gallery(app: AppPage) -> list[int]:
    return [int(v) for v in app.column("gallery-source", "image_idx")]


def _assert_first_page(app: AppPage, data, images) -> None:
    shown = _gallery(app)
    assert shown and shown == _first_page(data, images)[:len(shown)]
    assert len(shown) == len(images) or len(shown) >= 10  # a full page of at least two rows


@pytest.mark.parametrize(("task", "kind"), [("detection", "missed"), ("detection", "fp_background"),
                                            ("classification", "misclassified")])
def test_clicking_a_class_bar_fills_the_gallery_with_its_images(browser, detection, classification, task, kind):
    server, data = detection if task == "detection" else classification
    ev = data.evaluation()
    app = AppPage(browser, server.url)
    _open_tab(app, "Class errors", "class-bars-source")
    kinds, classes = app.column("class-bars-source", "kind"), app.column("class-bars-source", "class_idx")
    k = kinds.index(kind)
    images = class_performance(ev).images_for(int(classes[k]), kind)
    assert len(images) >= 2
    x, y = app.page.evaluate(_BAR_XY, ["class-bars-segments", k])
    app.page.mouse.click(x, y)
    _wait_selected(app, len(images))
    assert app.selected("scatter-source") == images.tolist()
    _assert_first_page(app, data, images)
    # the bars now count the selection's objects, and the clicked segment stays outlined
    app.wait_for("(s) => Bokeh.documents[0].get_model_by_name(s).selected.indices.length == 1", "class-bars-source")
    got = {(int(c), str(t)): int(n) for c, t, n in zip(app.column("class-bars-source", "class_idx"),
                                                       app.column("class-bars-source", "kind"),
                                                       app.column("class-bars-source", "count"), strict=True)}
    t = class_performance(ev, images).table
    assert got[(int(classes[k]), kind)] == int(t[kind][int(classes[k])])
    app.screenshot(f"quality-by-class-{task}")
    assert app.close() == []


@pytest.mark.parametrize("task", ["detection", "classification"])
def test_clicking_a_property_bin_fills_the_gallery_and_importance_arrives(browser, detection, classification, task):
    server, data = detection if task == "detection" else classification
    ev = data.evaluation()
    app = AppPage(browser, server.url)
    _open_tab(app, "Properties", "property-source")
    # importance is computed by a low-priority job after the tab is shown
    want = [i.prop for i in property_importance(data.run, ev)]
    app.wait_for("([n]) => Bokeh.documents[0].get_model_by_name('importance-source').get_length() == n", [len(want)])
    assert app.column("importance-source", "prop") == want
    prop = app.page.evaluate(_VALUE, ["property-select", "value"])
    bt = property_performance(data.run, ev, prop)
    assert app.column("property-source", "count") == bt.count.tolist()
    k = int(np.argmax(bt.count))
    renderer = "property-precision" if task == "detection" else "property-accuracy"
    app.page.mouse.move(1, 1)
    x, y = app.page.evaluate(_BAR_XY, [renderer, k])
    app.page.mouse.click(x, y)
    _wait_selected(app, len(bt.image_idx[k]))
    assert app.selected("scatter-source") == bt.image_idx[k].tolist()
    _assert_first_page(app, data, bt.image_idx[k])
    app.screenshot(f"quality-by-property-{task}")
    assert app.close() == []


def test_a_recommendation_button_selects_its_images(browser, detection):
    server, data = detection
    recs = data.run.json("recommendations.json")
    app = AppPage(browser, server.url)
    i = _tab_index(app, "Findings")
    x, y = app.page.evaluate(_TAB_XY, [i])
    app.page.mouse.click(x, y)
    app.wait_for("([i]) => Bokeh.documents[0].get_model_by_name('tabs').active == i", [i])
    app.settle()
    app.screenshot("quality-recommendations")
    i = 1
    images = np.asarray(recs[i]["selection"]["image_idx"], np.int64)
    assert app.page.evaluate(_VALUE, [f"rec-select-{i}", "label"]).startswith(f"Select {len(images):,} image")
    app.click_widget(f"rec-select-{i}", "button")
    _wait_selected(app, len(images))
    assert app.selected("scatter-source") == images.tolist()
    _assert_first_page(app, data, images)
    assert app.close() == []


def test_a_click_on_the_curve_moves_the_slider_and_the_matrix(browser, detection):
    server, data = detection
    app = AppPage(browser, server.url)
    _open_tab(app, "Threshold", "curve-optimal")
    best = app.column("curve-optimal", "confidence")[0]
    target = 0.3 if abs(best - 0.3) > 0.05 else 0.7
    x, y = app.page.evaluate(_DATA_XY, ["curve", target, 0.5])
    app.page.mouse.click(x, y)
    app.wait_for("([c]) => Math.abs(Bokeh.documents[0].get_model_by_name('confidence').value - c) < 0.003",
                 [target])
    app.settle()
    value = app.page.evaluate(_VALUE, ["confidence", "value"])
    assert app.page.evaluate(_VALUE, ["curve-operating-point", "location"]) == value
    expected = data.evaluation(confidence=value).confusion.counts
    _open_tab(app, "Confusion", "confusion-source")  # hidden while the curve showed: it catches up now
    app.wait_for(
        """([want]) => { const c = Bokeh.documents[0].get_model_by_name('confusion-source').data.count;
             return Array.from(c).reduce((a, b) => a + b, 0) == want }""",
        [int(expected.sum())],
    )
    app.screenshot("quality-curve")
    assert app.close() == []
