"""A comparison run in a real browser: colour by change, then a click on a cell of the difference matrix.

Same conventions as ``test_app_browser.py`` (its browser fixture and page helper are reused):
real mouse events where BokehJS drew the glyph, expected values from the engine (per-image
confusion matrices of A and B), never from the page. A missing Chromium fails, not skips.
"""

from __future__ import annotations

import numpy as np
import pytest
import test_app_browser as _shared
from test_app_browser import AppPage
from test_app_browser_quality import _TAB_XY, _tab_index

from vecexplore.compare.changes import CHANGES

pytestmark = pytest.mark.browser

browser = _shared.browser


@pytest.fixture(scope="module")
def comparison(compare_pair):
    from vecexplore.app.data import load_run_data
    from vecexplore.app.server import ServerThread

    server = ServerThread([compare_pair["c"]])
    yield server, load_run_data(compare_pair["c"])
    server.stop()


def _changed_images(comp, r: int, c: int) -> np.ndarray:
    """Images whose count in cell (r, c) differs between A and B, from one-image matrices."""
    cm_a, cm_b = comp.eval_a.confusion, comp.eval_b.confusion
    n = comp.change.size
    return np.array([i for i in range(n) if cm_a.subset(np.array([i])).counts[r, c]
                     != cm_b.subset(np.array([i])).counts[r, c]], np.int64)


def test_colour_by_change_and_click_a_difference_cell(browser, comparison):
    server, data = comparison
    comp = data.comparison
    app = AppPage(browser, server.url)
    # colour by change, through the page's own <select>
    select = app.page.evaluate_handle(
        "() => Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('colour-by')).shadow_el.querySelector('select')")
    select.as_element().select_option(label="Change A → B")
    app.wait_for("() => Bokeh.documents[0].get_model_by_name('colour-by').value == 'change'")
    want = np.array([CHANGES.index(x) for x in data.run.images["change"]], np.float32)
    # Wait for the whole column, not a summary of it: the colouring shown before (a rate in [0, 1])
    # can hold as many exact 1.0 values as there are images of change code 1, and did in CI.
    app.wait_for("([w]) => { const c = Bokeh.documents[0].get_model_by_name('scatter-source').data.c;"
                 " return c.length == w.length && w.every((v, i) => c[i] == v); }", [want.tolist()])
    np.testing.assert_array_equal(np.asarray(app.column("scatter-source", "c"), np.float32), want)
    # the comparison tab, then the difference cell with the largest change that selects few images
    i = _tab_index(app, "A vs B")
    assert i >= 0
    x, y = app.page.evaluate(_TAB_XY, [i])
    app.page.mouse.click(x, y)
    app.wait_for(f"() => Bokeh.documents[0].get_model_by_name('tabs').active == {i}")
    app.settle()
    n = len(comp.eval_a.confusion.labels)
    diff = comp.eval_b.confusion.counts - comp.eval_a.confusion.counts
    cells = sorted(zip(*np.nonzero(diff), strict=True), key=lambda rc: -abs(int(diff[rc])))
    r, c = (int(v) for v in cells[0])
    expected = _changed_images(comp, r, c)
    assert len(expected) > 0
    app.click_glyph("compare-cells-diff", r * n + c)
    app.wait_for("([n]) => Bokeh.documents[0].get_model_by_name('scatter-source').selected.indices.length == n",
                 [len(expected)])
    app.settle()
    assert sorted(app.selected("scatter-source")) == expected.tolist()
    assert app.selected("compare-source-diff") == [r * n + c]
    assert "selection," in app.text("compare-header")
    app.screenshot("compare-diff-cell")
    assert app.close() == []
