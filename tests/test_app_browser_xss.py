"""Names from the data never run as script: a run whose class names, split names,
file names and run directory hold ``<img onerror>``, ``<script>`` and
``javascript:`` payloads, served and used in Chromium.

The page is loaded, every widget that lists names is opened and used, a point
is hovered, a cell and a thumbnail are clicked, every tab is shown and the
selection is exported. Throughout, no dialog may fire and no injected element
may exist anywhere in the DOM (shadow roots included), while the names are
shown literally, as the user wrote them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import test_app_browser as _shared
from test_app_browser import AppPage

pytestmark = pytest.mark.browser

browser = _shared.browser

PAYLOADS = ("<img src=x onerror=alert(1)>", "<script>alert(2)</script>", "javascript:alert(3)")
CLASS_NAMES = tuple(f"c{i}{PAYLOADS[i % 3]}" for i in range(6))
SPLITS = ("s<img src=x onerror=alert(4)>", "<script>alert(5)</script>")
# "/" cannot be part of a file name, so the file-name payloads avoid closing tags.
FILE_NAMES = ("f0<img src=x onerror=alert(6)>.jpg", "javascript:alert(7).jpg", "f2<svg onload=alert(8)>.jpg")
RUN_NAME = "run<img src=x onerror=alert(9)>"

# Every element a payload would create, and every text, across the document and all shadow roots.
_DOM_SCAN = """() => {
  const out = {injected: [], text: []};
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      const tag = el.tagName.toUpperCase();
      if ((tag === 'IMG' && el.getAttribute('src') === 'x') || tag === 'SVG' && el.hasAttribute('onload')
          || (tag === 'SCRIPT' && (el.textContent || '').includes('alert('))
          || Array.from(el.attributes).some(a => a.name.startsWith('on') && a.value.includes('alert(')))
        out.injected.push(el.outerHTML.slice(0, 120));
      if (el.hasAttribute('href') && el.getAttribute('href').trim().toLowerCase().startsWith('javascript:'))
        out.injected.push(el.outerHTML.slice(0, 120));
      if (el.shadowRoot) walk(el.shadowRoot);
    }
    for (const node of root.childNodes) if (node.nodeType === 3) out.text.push(node.textContent);
    const w = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    while (w.nextNode()) out.text.push(w.currentNode.textContent);
  };
  walk(document);
  return {injected: out.injected, text: out.text.join('\\n')};
}"""
_SHOW_DROPDOWN = """(n) => {
  const v = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name(n));
  v.choice_el.showDropdown();
}"""
_CHOOSE_FIRST = """(n) => {
  const v = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name(n));
  const item = v.shadow_el.querySelector('.choices__list--dropdown .choices__item--choice');
  const box = item.getBoundingClientRect();
  return [box.x + box.width / 2, box.y + box.height / 2];
}"""


def _hostile_dataset(base: Path) -> Path:
    """The demo data with every name replaced by a payload; the COCO file to build from."""
    from vecexplore.demo import generate_demo

    data = base / "data"
    generate_demo(data, n=60, seed=3)
    gt = json.loads((data / "annotations.json").read_text())
    for c, name in zip(gt["categories"], CLASS_NAMES, strict=False):
        c["name"] = name
    for i, im in enumerate(gt["images"]):
        im["split"] = SPLITS[i % 2]
        if i < len(FILE_NAMES):
            new = f"images/{FILE_NAMES[i]}"
            (data / im["file_name"]).rename(data / new)
            im["file_name"] = new
    (data / "hostile.json").write_text(json.dumps(gt))
    return data


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, umap_warm):
    """(server, RunData, run dir) of the hostile run, served alone."""
    from conftest import TINY_MODEL

    from vecexplore.app.data import load_run_data
    from vecexplore.app.server import ServerThread
    from vecexplore.builder import BuildConfig, build_run
    from vecexplore.embed.pipeline import EmbedConfig
    from vecexplore.io.source import DatasetSource
    from vecexplore.mapping import MapConfig

    base = tmp_path_factory.mktemp("hostile")
    data = _hostile_dataset(base)
    runs = base / "runs"
    out = runs / RUN_NAME
    build_run(BuildConfig(
        source=DatasetSource(gt=data / "hostile.json", pred=data / "predictions.json"), out=out,
        embed=EmbedConfig(model=TINY_MODEL, weights="random", device="cpu", num_workers=0),
        map=MapConfig(seed=0), cache_dir=base / "cache", scan_workers=0,
    ))
    server = ServerThread([out])
    yield server, load_run_data(out), out
    server.stop()
    shutil.rmtree(out / "exports", ignore_errors=True)


class Watched(AppPage):
    """An app page that records every dialog (and dismisses it)."""

    def __init__(self, browser, url: str):
        self.dialogs: list[str] = []
        context = browser.new_context(viewport=_shared.VIEWPORT, accept_downloads=True)
        context.on("page", lambda page: page.on("dialog", self._dialog))
        super().__init__(browser, url, context=context)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def scan(self) -> dict:
        return self.page.evaluate(_DOM_SCAN)

    def assert_clean(self, when: str) -> str:
        found = self.scan()
        assert self.dialogs == [], f"{when}: a payload ran: {self.dialogs}"
        assert found["injected"] == [], f"{when}: markup from the data became elements: {found['injected']}"
        return found["text"]


def test_hostile_names_are_shown_as_text_and_never_run(browser, hostile):
    server, data, run_dir = hostile
    app = Watched(browser, server.url)
    app.page.wait_for_timeout(1000)  # images, tooltips and dropdown templates render late
    text = app.assert_clean("page load")
    assert any(name in text for name in CLASS_NAMES)  # the matrix axis is canvas; the filters list them

    # the filters list every class and split literally, and choosing one renders its chip
    for widget, names in (("class-filter", CLASS_NAMES), ("split-filter", SPLITS)):
        app.page.evaluate(_SHOW_DROPDOWN, widget)
        app.page.wait_for_timeout(300)
        text = app.assert_clean(f"{widget} opened")
        for name in names:
            assert name in text, f"{widget} does not show {name!r} literally"
        x, y = app.page.evaluate(_CHOOSE_FIRST, widget)
        app.page.mouse.click(x, y)
        app.settle()
        app.assert_clean(f"{widget} option chosen")
    value = app.page.evaluate("() => Bokeh.documents[0].get_model_by_name('split-filter').value")
    assert value and value[0] in SPLITS  # the raw name went back to the server, not its escaped label
    for widget in ("class-filter", "split-filter"):  # back to the whole run
        app.page.evaluate(f"() => Bokeh.documents[0].get_model_by_name('{widget}').value = []")
    app.settle()

    # hover a point whose file name is a payload: the tooltip shows it literally
    idx = int(np.flatnonzero(data.images.readable & (data.images.file_name == f"images/{FILE_NAMES[0]}"))[0])
    app.page.mouse.move(*app.page.evaluate(_shared._GLYPH_XY, ["scatter-points", idx]))
    app.page.wait_for_timeout(600)
    assert f"images/{FILE_NAMES[0]}" in app.assert_clean("hover")

    # click a confusion cell: the selection's description names the cell's classes literally
    ev = data.evaluation()
    i, j, images = _shared._pick_cell(ev)
    _shared._click_cell(app, i, j, len(ev.confusion.labels), len(images))
    status = app.text("export-status")
    assert "&lt;" in status and "<img" not in status and "<script" not in status
    assert ev.confusion.labels[i] in app.assert_clean("cell clicked")

    # open each payload file in the detail view (selected by the server, drawn by the page)
    ctl_names = [f"images/{f}" for f in FILE_NAMES]
    for name in ctl_names:
        k = int(np.flatnonzero(data.images.file_name == name)[0])
        app.page.evaluate(f"() => Bokeh.documents[0].get_model_by_name('scatter-source').selected.indices = [{k}]")
        app.wait_for("(n) => Bokeh.documents[0].get_model_by_name('detail-info').text.includes(n)",
                     name.replace("<", "&lt;").replace(">", "&gt;"))
        app.settle()
        assert name in app.assert_clean(f"detail of {name}")

    # every tab renders its names (class bars' MultiChoice, legends, captions) without running them
    for t in range(app.page.evaluate("() => Bokeh.documents[0].get_model_by_name('tabs').tabs.length")):
        app.page.evaluate(f"() => Bokeh.documents[0].get_model_by_name('tabs').active = {t}")
        app.settle()
        app.assert_clean(f"tab {t}")
    app.page.evaluate(_SHOW_DROPDOWN, "class-bars-classes")
    app.page.wait_for_timeout(300)
    assert CLASS_NAMES[0] in app.assert_clean("class bars dropdown")

    # export: the status line quotes the run directory literally
    with app.page.expect_download():
        app.click_widget("export-button", "button")
    app.wait_for("() => Bokeh.documents[0].get_model_by_name('export-status').text.includes('Wrote')")
    app.settle()
    assert str(run_dir) in app.assert_clean("export")
    app.screenshot("hostile-names")
    assert app.close() == []


def test_the_chooser_lists_a_hostile_run_name_as_text(browser, hostile, tmp_path):
    from vecexplore.app.server import ServerThread

    _, _, run_dir = hostile
    other = run_dir.parent / "plain"
    if not other.exists():
        shutil.copytree(run_dir, other, ignore=shutil.ignore_patterns("exports"))
    server = ServerThread([run_dir.parent])
    try:
        context = browser.new_context()
        page = context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(server.url)
        page.wait_for_timeout(500)
        assert dialogs == []
        assert RUN_NAME in page.inner_text("table.runs")
        assert page.locator("img").count() == 0
        context.close()
    finally:
        server.stop()
