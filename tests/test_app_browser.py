"""The app in a real browser: Debian's Chromium driven by Playwright against a
server started here on a free port, for the session's demo runs.

Interactions are real mouse events at the screen position BokehJS drew a glyph
or widget at; expected values come from the evaluation engine, never from the
page. Screenshots of the main states go to ``test-artifacts/``.

Chromium must be installed (``make chromium``; CI does it): a missing browser
fails these tests, it does not skip them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
VIEWPORT = {"width": 1600, "height": 1500}
TIMEOUT_MS = 60_000

# Screen centre (page coordinates) of glyph k of a named renderer, as BokehJS drew it.
_GLYPH_XY = """([name, k]) => {
  const r = Bokeh.documents[0].get_model_by_name(name);
  const rv = Bokeh.index.find_one(r);
  const box = rv.plot_view.canvas_view.el.getBoundingClientRect();
  return [box.x + rv.glyph.sx[k], box.y + rv.glyph.sy[k]];
}"""
# Centre of a widget's element (a selector inside its shadow DOM, or the whole element).
_WIDGET_XY = """([name, selector]) => {
  const v = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name(name));
  const el = selector ? v.shadow_el.querySelector(selector) : v.el;
  const box = el.getBoundingClientRect();
  return [box.x + box.width / 2, box.y + box.height / 2];
}"""
_COLUMN = "([name, col]) => Array.from(Bokeh.documents[0].get_model_by_name(name).data[col])"
_SELECTED = "(name) => Array.from(Bokeh.documents[0].get_model_by_name(name).selected.indices)"
_READY = """() => window.Bokeh && Bokeh.documents.length > 0
  && Bokeh.documents[0].get_model_by_name('scatter-source') != null
  && Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('confusion-cells')) != null
  && Bokeh.documents[0].get_model_by_name('gallery-source').get_length() > 0"""


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM}: run `make chromium` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def detection(demo_run):
    from vecexplore.app.data import load_run_data
    from vecexplore.app.server import ServerThread

    server = ServerThread([demo_run[0]])
    yield server, load_run_data(demo_run[0])
    server.stop()


@pytest.fixture(scope="module")
def classification(demo_run_classification):
    from vecexplore.app.data import load_run_data
    from vecexplore.app.server import ServerThread

    server = ServerThread([demo_run_classification[0]])
    yield server, load_run_data(demo_run_classification[0])
    server.stop()


class AppPage:
    """One browser tab on the app, with its console errors collected."""

    def __init__(self, browser, url: str, *, context=None):
        self.context = context or browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.goto(url)
        self.page.wait_for_function(_READY, timeout=TIMEOUT_MS)
        self.settle()

    def settle(self) -> None:
        """Wait until BokehJS has no pending work (the document went idle) and a frame passed."""
        self.page.wait_for_function("() => Bokeh.documents[0].is_idle", timeout=TIMEOUT_MS)
        self.page.wait_for_timeout(300)

    def column(self, source: str, col: str) -> list:
        return self.page.evaluate(_COLUMN, [source, col])

    def selected(self, source: str) -> list[int]:
        return self.page.evaluate(_SELECTED, source)

    def click_glyph(self, renderer: str, k: int) -> None:
        x, y = self.page.evaluate(_GLYPH_XY, [renderer, k])
        self.page.mouse.click(x, y)

    def click_widget(self, name: str, selector: str | None = None) -> None:
        x, y = self.page.evaluate(_WIDGET_XY, [name, selector])
        self.page.mouse.click(x, y)

    def wait_for(self, js: str, arg=None) -> None:
        self.page.wait_for_function(js, arg=arg, timeout=TIMEOUT_MS)

    def text(self, name: str) -> str:
        return self.page.evaluate("(n) => Bokeh.documents[0].get_model_by_name(n).text", name)

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.mouse.move(1, 1)  # no hover tooltip in the picture
        self.page.wait_for_timeout(200)
        self.page.screenshot(path=str(ARTIFACTS / f"app-{name}.png"), full_page=True)

    def close(self) -> list[str]:
        errors = list(self.errors)
        self.context.close()
        return errors


def _matrix(app: AppPage, size: int) -> np.ndarray:
    rows, cols, counts = (app.column("confusion-source", c) for c in ("row", "col", "count"))
    m = np.zeros((size, size), np.int64)
    m[np.asarray(rows, int), np.asarray(cols, int)] = counts
    return m


def _pick_cell(ev) -> tuple[int, int, np.ndarray]:
    """An off-diagonal cell with the most images while still few pages (≥ 2 images)."""
    m = ev.confusion.counts
    best = None
    for i, j in zip(*np.nonzero(m), strict=True):
        if i == j:
            continue
        imgs = ev.confusion.cell_images(int(i), int(j))
        if 2 <= len(imgs) <= 60 and (best is None or len(imgs) > len(best[2])):
            best = (int(i), int(j), imgs)
    assert best is not None, "the demo run has no suitable confusion cell"
    return best


def _click_cell(app: AppPage, i: int, j: int, size: int, n_images: int) -> None:
    app.click_glyph("confusion-cells", i * size + j)
    app.wait_for("([n]) => Bokeh.documents[0].get_model_by_name('scatter-source').selected.indices.length == n",
                 [n_images])
    app.settle()


def _open_on_cell(browser, server, ev) -> tuple[AppPage, np.ndarray]:
    """A new page with the cell of :func:`_pick_cell` clicked: (page, the cell's images)."""
    i, j, images = _pick_cell(ev)
    app = AppPage(browser, server.url)
    _click_cell(app, i, j, len(ev.confusion.labels), len(images))
    return app, images


def _gallery_ids(app: AppPage) -> list[int]:
    """Every image id the gallery shows, page after page."""
    ids = [int(v) for v in app.column("gallery-source", "image_id")]
    for _ in range(50):
        page = app.text("gallery-page")
        disabled = app.page.evaluate("() => Bokeh.documents[0].get_model_by_name('gallery-next').disabled")
        if disabled:
            break
        app.click_widget("gallery-next", "button")
        app.wait_for("([p]) => Bokeh.documents[0].get_model_by_name('gallery-page').text != p", [page])
        app.settle()
        ids += [int(v) for v in app.column("gallery-source", "image_id")]
    return ids


# ---------------------------------------------------------------- detection


def test_page_loads_with_every_point_and_no_console_errors(browser, detection):
    server, data = detection
    app = AppPage(browser, server.url)
    n = data.num_images
    assert app.page.evaluate("() => Bokeh.documents[0].get_model_by_name('scatter-source').get_length()") == n
    x, y = np.asarray(app.column("scatter-source", "x"), float), np.asarray(app.column("scatter-source", "y"), float)
    drawn = np.isfinite(x) & np.isfinite(y)
    assert drawn.sum() == data.images.readable.sum()
    np.testing.assert_allclose(x[drawn], data.images.x[drawn], rtol=1e-6)
    ids = np.asarray(app.column("scatter-source", "image_id"), float).astype(np.int64)
    assert np.array_equal(ids, data.images.image_id)
    # the WebGL canvas really drew them: the glyph view has a screen position for every point
    assert app.page.evaluate("""() => {
      const rv = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('scatter-points'));
      return rv.glyph.sx.length;
    }""") == n
    header = app.text("header")
    assert "random" in header.lower()  # the demo's tiny model has random weights
    ev = data.evaluation()
    assert np.array_equal(_matrix(app, len(ev.confusion.labels)), ev.confusion.counts)
    app.screenshot("initial")
    assert app.close() == []


def test_clicking_a_cell_fills_the_gallery_with_its_images(browser, detection):
    server, data = detection
    ev = data.evaluation()
    size = len(ev.confusion.labels)
    app, images = _open_on_cell(browser, server, ev)
    assert app.selected("scatter-source") == images.tolist()
    assert sorted(_gallery_ids(app)) == sorted(data.images.image_id[images].tolist())
    app.screenshot("cell")
    # the matrix follows the selection: it now shows the selection's confusions
    assert np.array_equal(_matrix(app, size), ev.confusion_of(images).counts)
    assert app.close() == []


def test_gallery_click_opens_the_detail_view_with_its_boxes(browser, detection):
    server, data = detection
    ev = data.evaluation()
    app, _ = _open_on_cell(browser, server, ev)
    k = 1
    idx = int(app.column("gallery-source", "image_idx")[k])
    app.click_glyph("gallery-tiles", k)
    app.wait_for("(u) => Bokeh.documents[0].get_model_by_name('detail-image').data.url[0] == u",
                 f"{server.app.runs[0].url_base}/image/{int(data.images.image_id[idx])}")
    app.settle()
    ds = data.dataset
    conf = app.page.evaluate("() => Bokeh.documents[0].get_model_by_name('confidence').value")
    n_gt = int((ds.gt.image_idx == idx).sum())
    n_pred = int(((ds.pred.image_idx == idx) & (ds.pred.score >= conf)).sum())
    assert app.page.evaluate("() => Bokeh.documents[0].get_model_by_name('detail-gt').get_length()") == n_gt
    assert app.page.evaluate("() => Bokeh.documents[0].get_model_by_name('detail-pred').get_length()") == n_pred
    # the full image itself loaded through the image route
    status = app.page.request.get(server.url.rstrip("/") + f"/vx/{server.app.runs[0].key}/image/"
                                  f"{int(data.images.image_id[idx])}").status
    assert status == 200
    app.page.wait_for_timeout(500)  # let the image paint for the screenshot
    app.screenshot("detail")
    assert app.close() == []


def test_confidence_slider_recomputes_the_matrix_like_the_engine(browser, detection):
    server, data = detection
    app = AppPage(browser, server.url)
    before = app.page.evaluate("() => Bokeh.documents[0].get_model_by_name('confidence').value")
    size = len(data.evaluation().confusion.labels)
    m_before = _matrix(app, size)
    x, y = app.page.evaluate(_WIDGET_XY, ["confidence", ".noUi-handle"])
    app.page.mouse.move(x, y)
    app.page.mouse.down()
    app.page.mouse.move(x - 60, y, steps=6)
    app.page.mouse.up()
    app.page.wait_for_timeout(500)
    # The drag sends a burst of values; the session computes the last. Wait until the matrix is the
    # engine's at the slider's value, re-reading the value in case the burst was still arriving.
    import time

    deadline, got, after = time.monotonic() + TIMEOUT_MS / 1000, None, None
    while time.monotonic() < deadline:
        app.settle()
        after = app.page.evaluate("() => Bokeh.documents[0].get_model_by_name('confidence').value")
        expected = data.evaluation(confidence=after).confusion.counts
        got = _matrix(app, size)
        if np.array_equal(got, expected):
            break
    assert after < before
    assert not np.array_equal(got, m_before)
    assert np.array_equal(got, expected)
    app.screenshot("slider")
    assert app.close() == []


def test_export_downloads_a_coco_file_that_loads(browser, detection, tmp_path):
    from pycocotools.coco import COCO

    server, data = detection
    ev = data.evaluation()
    app, images = _open_on_cell(browser, server, ev)
    assert app.page.evaluate("() => Bokeh.documents[0].get_model_by_name('export-format').value") == "coco"
    with app.page.expect_download(timeout=TIMEOUT_MS) as info:
        app.click_widget("export-button", "button")
    download = info.value
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    assert download.suggested_filename.endswith(".zip")  # the GT subset and the predictions on it
    import json
    import zipfile

    with zipfile.ZipFile(path) as z:
        z.extractall(tmp_path / "x")
    coco = COCO(str(tmp_path / "x" / "annotations.json"))
    assert sorted(coco.getImgIds()) == sorted(data.images.image_id[images].tolist())
    results = json.loads((tmp_path / "x" / "predictions.json").read_text())
    assert results and {r["image_id"] for r in results} <= set(coco.getImgIds())
    assert len(coco.loadRes(results).getAnnIds()) == len(results)
    written = Path(data.path) / "exports" / download.suggested_filename
    assert written.read_bytes() == path.read_bytes()
    app.wait_for("(f) => Bokeh.documents[0].get_model_by_name('export-status').text.includes(f)",
                 download.suggested_filename)
    assert app.close() == []


@pytest.mark.parametrize(
    "tail",
    ["thumb/..%2fmanifest.json", "thumb/%2e%2e%2fmanifest.json", "image/%252e%252e%252fmetrics.json",
     "image/..%5cmanifest.json", "thumb/999999999", "image/1%00", "export/..%2fmanifest.json",
     "export/%2e%2e%2fimages.parquet"],
)
def test_traversal_on_the_routes_is_refused_from_the_browser(browser, detection, tail):
    server, _ = detection
    context = browser.new_context()
    try:
        response = context.request.get(f"{server.url}vx/{server.app.runs[0].key}/{tail}")
        assert response.status == 404
        assert b"schema_version" not in response.body()
    finally:
        context.close()


def test_two_sessions_do_not_share_a_selection(browser, detection):
    server, data = detection
    ev = data.evaluation()
    size = len(ev.confusion.labels)
    i, j, images = _pick_cell(ev)
    a = AppPage(browser, server.url)
    b = AppPage(browser, server.url)
    _click_cell(a, i, j, size, len(images))
    b.page.wait_for_timeout(1000)
    assert b.selected("scatter-source") == []
    assert np.array_equal(_matrix(b, size), ev.confusion.counts)
    # and the other way round: a selection in b leaves a alone
    diag = ev.confusion.cell_images(0, 0)
    _click_cell(b, 0, 0, size, len(diag))
    a.page.wait_for_timeout(1000)
    assert a.selected("scatter-source") == images.tolist()
    assert b.selected("scatter-source") == diag.tolist()
    assert a.close() == [] and b.close() == []


def test_the_next_visitor_gets_a_session_built_ahead_and_it_answers(browser, detection):
    """The server builds the next session while nobody waits; the page it serves is live: a cell
    click there selects the cell's images, applied through the server document it moved into."""
    server, data = detection
    run = server.app.runs[0]
    AppPage(browser, server.url).close()  # consumes a spare (or builds), and starts the next one
    run._spare.result(timeout=120)  # the next one is ready
    used = run.spares_used
    ev = data.evaluation()
    app, images = _open_on_cell(browser, server, ev)
    assert run.spares_used == used + 1
    assert app.selected("scatter-source") == images.tolist()
    assert sorted(_gallery_ids(app)) == sorted(data.images.image_id[images].tolist())
    assert app.close() == []


# ---------------------------------------------------------------- classification


def test_classification_page_shows_correct_and_incorrect_badges(browser, classification):
    server, data = classification
    app = AppPage(browser, server.url)
    assert app.page.evaluate("() => Bokeh.documents[0].get_model_by_name('scatter-source').get_length()") == \
        data.num_images
    ev = data.evaluation()
    size = len(ev.confusion.labels)
    assert np.array_equal(_matrix(app, size), ev.confusion.counts)
    badges = app.column("gallery-source", "badge")
    assert badges and all(b.startswith(("✓", "✗", "?")) for b in badges)
    idx = np.asarray(app.column("gallery-source", "image_idx"), int)
    correct = np.asarray(ev.per_image["correct"], bool)[idx]
    assert [b.startswith("✓") for b in badges] == correct.tolist()
    assert not all(correct)  # sorted worst first: the first page shows mistakes
    app.screenshot("classification")
    assert app.close() == []



# ---------------------------------------------------------------- interactions


def test_a_tap_among_overlapping_points_opens_the_nearest_one(browser, detection):
    server, data = detection
    x, y = data.images.x.astype(float), data.images.y.astype(float)
    ok = np.flatnonzero(np.isfinite(x))
    # a point in the densest spot: its neighbours overlap it on screen
    d = np.hypot(x[ok][:, None] - x[ok][None, :], y[ok][:, None] - y[ok][None, :])
    k = int(ok[np.argmax((d < np.percentile(d, 2)).sum(axis=1))])
    app = AppPage(browser, server.url)
    app.click_glyph("scatter-points", k)
    app.wait_for("([k]) => { const s = Bokeh.documents[0].get_model_by_name('scatter-source').selected.indices;"
                 " return s.length == 1 && s[0] == k; }", [k])
    app.wait_for("(n) => Bokeh.documents[0].get_model_by_name('detail-info').text.includes(n)",
                 str(data.images.file_name[k]))
    # shift-tap another point: it is added, and opened
    j = int(ok[np.argmax(np.hypot(x[ok] - x[k], y[ok] - y[k]))])  # the farthest point: no overlap with k
    pos = app.page.evaluate(_GLYPH_XY, ["scatter-points", j])
    app.page.keyboard.down("Shift")
    app.page.mouse.click(*pos)
    app.page.keyboard.up("Shift")
    app.wait_for("() => Bokeh.documents[0].get_model_by_name('scatter-source').selected.indices.length == 2")
    assert sorted(app.selected("scatter-source")) == sorted([k, j])
    app.wait_for("(n) => Bokeh.documents[0].get_model_by_name('detail-info').text.includes(n)",
                 str(data.images.file_name[j]))
    app.screenshot("tap")
    assert app.close() == []


def test_shift_click_modes_and_history_in_the_browser(browser, detection):
    server, data = detection
    ev = data.evaluation()
    cm = ev.confusion
    size = len(cm.labels)
    i, j, a = _pick_cell(ev)
    app = AppPage(browser, server.url)
    _click_cell(app, i, j, size, len(a))
    # shift-click a second cell: its images are added
    r, c = (j, i) if (j, i) != (i, j) and len(cm.cell_images(j, i)) else (i, i)
    b = cm.cell_images(r, c)
    union = np.union1d(a, b)
    pos = app.page.evaluate(_GLYPH_XY, ["confusion-cells", r * size + c])
    app.page.keyboard.down("Shift")
    app.page.mouse.click(*pos)
    app.page.keyboard.up("Shift")
    app.wait_for("([n]) => Bokeh.documents[0].get_model_by_name('scatter-source').selected.indices.length == n",
                 [len(union)])
    assert app.selected("scatter-source") == union.tolist()
    # both cells stay outlined; the matrix change reaches BokehJS in its own patch, maybe after the scatter's
    app.wait_for("() => Bokeh.documents[0].get_model_by_name('confusion-source').selected.indices.length == 2")
    assert sorted(app.selected("confusion-source")) == sorted([i * size + j, r * size + c])
    # intersect mode: a third click keeps what both have
    app.click_widget("select-mode", ".bk-btn:nth-child(3)")
    app.wait_for("() => Bokeh.documents[0].get_model_by_name('select-mode').active == 2")
    _click_cell(app, i, i, size, len(np.intersect1d(union, cm.cell_images(i, i))))
    assert app.selected("scatter-source") == np.intersect1d(union, cm.cell_images(i, i)).tolist()
    # back twice: the union, then the first cell
    app.click_widget("selection-back", "button")
    app.wait_for("([n]) => Bokeh.documents[0].get_model_by_name('scatter-source').selected.indices.length == n",
                 [len(union)])
    app.click_widget("selection-back", "button")
    app.wait_for("([n]) => Bokeh.documents[0].get_model_by_name('scatter-source').selected.indices.length == n",
                 [len(a)])
    assert app.selected("scatter-source") == a.tolist()
    app.screenshot("modes")
    assert app.close() == []
