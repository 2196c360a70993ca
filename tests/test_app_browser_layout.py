"""The page at laptop and desktop sizes: everything a user needs is on screen at once.

At each size the map, the active analysis tab, the gallery and the detail view
lie inside the viewport, the page itself does not scroll, and the controls of
every bar (the toolbar, each panel's bar, the tab strip) are inside their panel
and the window: nothing overflows or is cut off. Screenshots go to
``test-artifacts/app-layout-<w>x<h>.png`` (look at them).
"""

from __future__ import annotations

import pytest
import test_app_browser as _shared

pytestmark = pytest.mark.browser

browser, detection, classification = _shared.browser, _shared.detection, _shared.classification

SIZES = [(1280, 800), (1440, 900), (1920, 1080), (2560, 1440)]
PANELS = ["scatter", "tabs", "gallery", "detail", "header", "toolbar"]
# Controls that must be wholly visible: (model name, CSS selector inside its shadow root or None).
CONTROLS = ["confidence", "best-f1", "iou", "colour-by", "class-filter", "select-mode", "selection-back",
            "clear-selection", "gallery-sort", "gallery-prev", "gallery-next", "export-format", "export-button",
            "detail-toggles", "matrix-mode", "matrix-scope", "export-status"]
_BOX = """(names) => Object.fromEntries(names.map(n => {
  const m = Bokeh.documents[0].get_model_by_name(n);
  const v = m && Bokeh.index.find_one(m);
  if (!v || !v.el.isConnected || v.el.offsetParent === null && getComputedStyle(v.el).position !== 'fixed')
    return [n, null];
  const r = v.el.getBoundingClientRect();
  return [n, [r.left, r.top, r.right, r.bottom]];
}))"""
# The tab strip's titles, and the visible tab's body.
_TABS = """() => {
  const v = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('tabs'));
  return Array.from(v.shadow_el.querySelectorAll('.bk-tab')).map(t => {
    const r = t.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; });
}"""


# Each Div's box and the box of the text inside it: text that overflows its Div is cut off.
_TEXT = """(names) => Object.fromEntries(names.map(n => {
  const m = Bokeh.documents[0].get_model_by_name(n);
  const v = m && Bokeh.index.find_one(m);
  if (!v || !v.el.isConnected || !v.shadow_el) return [n, null];
  const host = v.el.getBoundingClientRect();
  const range = document.createRange();
  range.selectNodeContents(v.shadow_el);
  const r = range.getBoundingClientRect();
  return [n, [[host.left, host.top, host.right, host.bottom], [r.left, r.top, r.right, r.bottom]]];
}))"""
# The gallery badges: font size of each glyph variant, the widest badge at that size, the tile width.
_BADGES = """() => {
  const doc = Bokeh.documents[0];
  const r = doc.get_model_by_name('gallery-badges'), f = doc.get_model_by_name('gallery');
  const sizes = [r.glyph, r.selection_glyph, r.nonselection_glyph].map(g => g.text_font_size.value);
  const texts = doc.get_model_by_name('gallery-source').data.badge;
  const ctx = document.createElement('canvas').getContext('2d');
  ctx.font = `${sizes[0]} helvetica`;
  const widest = Math.max(...Array.from(texts, t => ctx.measureText(String(t)).width));
  return {sizes, widest, tile: f.inner_width / (f.x_range.end - f.x_range.start)};
}"""
CAPTIONS = ["confusion-caption", "gallery-legend", "gallery-caption"]


def _inside(box, frame, slack=1.0) -> bool:
    return (box[0] >= frame[0] - slack and box[1] >= frame[1] - slack and box[2] <= frame[2] + slack
            and box[3] <= frame[3] + slack)


@pytest.mark.parametrize(("w", "h"), SIZES)
@pytest.mark.parametrize("task", ["detection", "classification"])
def test_map_tab_gallery_and_detail_fit_the_window(browser, detection, classification, w, h, task):
    server, _ = detection if task == "detection" else classification
    context = browser.new_context(viewport={"width": w, "height": h})
    app = _shared.AppPage(browser, server.url, context=context)
    page = app.page
    page.wait_for_timeout(800)  # the gallery re-lays out for its size
    app.settle()
    app.screenshot(f"layout-{task}-{w}x{h}")
    scroll = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    assert scroll[0] <= w and scroll[1] <= h, f"the page scrolls at {w}x{h}: {scroll}"
    window = (0, 0, w, h)
    boxes = page.evaluate(_BOX, PANELS + CONTROLS)
    for name in PANELS:
        assert boxes[name] is not None, name
        assert _inside(boxes[name], window), f"{name} {boxes[name]} is not inside {w}x{h}"
        assert boxes[name][2] - boxes[name][0] > 200 and boxes[name][3] - boxes[name][1] > 40, (name, boxes[name])
    for name in ("scatter", "gallery", "detail", "tabs"):  # the four panels are big enough to use
        assert boxes[name][3] - boxes[name][1] >= 0.2 * h, (name, boxes[name])
    for name in CONTROLS:
        if boxes[name] is None:  # a control this task does not show (IoU, detail toggles for classification)
            continue
        assert _inside(boxes[name], window), f"{name} {boxes[name]} is cut off at {w}x{h}"
    tabs = boxes["tabs"]
    for title in page.evaluate(_TABS):
        assert _inside(title, tabs), f"a tab title {title} is outside the tab strip {tabs}"
    # captions and legends are whole: their text lies inside their Div, and the Div inside the window
    for name, got in page.evaluate(_TEXT, CAPTIONS).items():
        if got is None:
            continue
        div, text = got
        if text[2] > text[0]:  # not empty
            assert _inside(text, div, slack=2.0), f"{name}'s text {text} overflows its box {div} at {w}x{h}"
            assert _inside(div, window), f"{name} {div} is cut off at {w}x{h}"
    # every badge under the thumbnails fits its tile, selected or not
    badges = page.evaluate(_BADGES)
    assert len(set(badges["sizes"])) == 1, badges
    assert badges["widest"] <= badges["tile"], badges
    # the gallery shows at least two rows of thumbnails
    n_tiles = page.evaluate("() => Bokeh.documents[0].get_model_by_name('gallery-source').get_length()")
    assert n_tiles >= 10, n_tiles
    assert app.close() == []
