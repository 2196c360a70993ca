"""Text search in a real browser: type a phrase in the Query tab, get the images closest to it.

Same conventions as ``test_app_browser.py``: real keyboard and mouse events, expected values
from the engine (:class:`~vecexplore.text_search.TextSearch` on the run's own checkpoint),
never from the page. A missing Chromium fails, not skips.
"""

from __future__ import annotations

import numpy as np
import pytest
import test_app_browser as _shared
from test_app_browser import AppPage
from test_app_browser_quality import _TAB_XY, _tab_index

pytestmark = pytest.mark.browser

browser = _shared.browser


@pytest.fixture(scope="module")
def loaded(checkpoint_run):
    from vecexplore.app.data import load_run_data
    from vecexplore.app.server import ServerThread

    server = ServerThread([checkpoint_run[0]])
    yield server, load_run_data(checkpoint_run[0])
    server.stop()


def _query_tab(app: AppPage) -> None:
    i = _tab_index(app, "Query")
    assert i >= 0
    x, y = app.page.evaluate(_TAB_XY, [i])
    app.page.mouse.click(x, y)
    app.wait_for(f"() => Bokeh.documents[0].get_model_by_name('tabs').active == {i}")
    app.settle()


def _input(app: AppPage, name: str, selector: str):
    return app.page.evaluate_handle(
        f"() => Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('{name}')).shadow_el"
        f".querySelector('{selector}')").as_element()


def test_typing_a_phrase_selects_its_closest_images_closest_first(browser, loaded):
    from vecexplore.text_search import rank

    server, data = loaded
    app = AppPage(browser, server.url)
    _query_tab(app)
    _input(app, "text-top", "select").select_option("25")
    box = _input(app, "text-search", "input")
    box.click()
    app.page.keyboard.type("at night")
    app.page.keyboard.press("Enter")
    top = rank(data.text_search.similarity("at night"), 25)
    app.wait_for("([n]) => Bokeh.documents[0].get_model_by_name('scatter-source').selected.indices.length == n",
                 [len(top)])
    app.settle()
    assert sorted(app.selected("scatter-source")) == sorted(top.tolist())
    # the gallery shows them closest first
    idx = [int(v) for v in app.column("gallery-source", "image_idx")]
    assert idx == top[:len(idx)].tolist() and len(idx) > 0
    assert "closest to “at night” first" in app.text("gallery-caption")
    assert app.text("text-search-message").startswith("The 25 images closest to “at night”")
    # colour the map by the similarity, through the page's own <select>
    _input(app, "colour-by", "select").select_option(label="Similarity to the phrase")
    sim = data.text_search.similarity("at night")
    ok = ~np.isnan(sim)
    app.wait_for("([i, v]) => Math.abs(Bokeh.documents[0].get_model_by_name('scatter-source').data.c[i] - v) < 1e-6",
                 [int(top[0]), float(sim[top[0]])])
    c = np.asarray(app.column("scatter-source", "c"), np.float64)
    np.testing.assert_allclose(c[ok], sim[ok], atol=1e-6)
    app.screenshot("text-search")
    assert app.close() == []
