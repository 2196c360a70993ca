"""The dense map at 1M+ images: the aggregate image, its re-render on a zoom, and a server-side lasso.

``python benchmarks/run.py app_dense [--images N] [--repeat R] [--dir D] [--no-browser] [--rebuild] [--threshold T]``

Writes the synthetic run of ``bench_app`` (default 1M images) with fewer objects
per image (1.5 GT, 0.5 extra false positives: the map's cost depends on the
images, not the objects, and 10M objects would not fit this machine), then times

* the server side on a bare Document: loading the run (once per process; it
  starts datashader's warm-up), building one session's document (its first
  aggregate included), the aggregate of the whole map at 1200×900 pixels for a
  continuous and a categorical colouring, the same for a zoom to a quarter of the
  map, and a lasso over every point (point-in-polygon, then the session's update:
  gallery, matrix, every view) — median of R;
* the browser (Chromium, Playwright) against a real server: navigation → the
  aggregate image painted (and → re-rendered at the frame's reported size); a zoom
  (the end of a gesture's ``RangesUpdate``, sent from the page) → the new image
  painted; a wheel zoom from the first wheel event (BokehJS waits for the end of
  the gesture before it reports the ranges) → the new image; a lasso drawn with the
  mouse → the gallery caption showing the count of images inside — median of R;
  alternately, the page of a 5k-image run below the threshold (navigation → its
  points painted): what the rest of the page costs.

Prints a table. The peak RSS of this process (run data + the server) is printed last.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import numpy as np
from bench_app import _RENDERED, CHROMIUM, CHROMIUM_ARGS, _median_ms, write_synthetic_run

GT_PER_IMAGE, FP_PER_IMAGE = 1.5, 0.5
#: The lasso hexagons' radii, as a fraction of the map's extent (a big and a small selection).
LASSO_SCALES = (0.3, 0.08)
#: The reference: a run below the threshold (drawn as points), whose page is timed alternately.
REFERENCE_IMAGES = 5_000


def _hexagon(x0, x1, y0, y1, scale=0.3) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, 7)[:-1]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return np.column_stack([cx + scale * (x1 - x0) * np.cos(a), cy + scale * (y1 - y0) * np.sin(a)])


def server_side(run_dir: Path, repeat: int) -> list[tuple[str, float, str]]:
    from bokeh.document import Document
    from bokeh.events import SelectionGeometry

    from vecexplore.app import dense
    from vecexplore.app.data import load_run_data
    from vecexplore.app.document import build_document

    rows = []
    t = time.perf_counter()
    data = load_run_data(run_dir)
    rows.append(("load the run (once per process)", 1000 * (time.perf_counter() - t), "ms"))
    t = time.perf_counter()
    dense.warm()  # what the server's warm-up thread does while the first page loads
    rows.append(("datashader import + JIT (background, once per process)", 1000 * (time.perf_counter() - t), "ms"))
    rows.append(("build one session's document (first aggregate included)", _median_ms(
        lambda: build_document(Document(), data, url_base="/vx/bench"), max(1, repeat // 2)), "ms"))
    s = build_document(Document(), data, url_base="/vx/bench")
    v = s.view("scatter")
    info = data.images
    x0, x1, y0, y1 = dense.extent(info.x, info.y)
    whole = dense.Viewport(x0, x1, y0, y1, 1200, 900)
    zoomed = dense.Viewport(x0 + 0.15 * (x1 - x0), x1 - 0.15 * (x1 - x0), y0 + 0.15 * (y1 - y0),
                            y1 - 0.15 * (y1 - y0), 1200, 900)
    col, packed = v.current_colouring()
    n_in = int(np.count_nonzero(zoomed.inside(info.x, info.y)))
    rows.append((f"aggregate + shade, whole map, {col.mode} (1200×900)",
                 _median_ms(lambda: v.dense.frame(col, packed, None, whole), repeat), "ms"))
    rows.append((f"aggregate + shade, zoomed to the middle 70% ({n_in:,} in view)",
                 _median_ms(lambda: v.dense.frame(col, packed, None, zoomed), repeat), "ms"))
    from vecexplore.app import colouring

    cat = colouring.colour_values("cluster", outcomes=s.derived.outcomes, cluster=info.cluster,
                                  gt_class=info.gt_class, readable=info.readable, score=s.derived.scores,
                                  class_names=data.class_names)
    rows.append((f"aggregate + shade, whole map, cluster ({len(cat.factors)} colours)",
                 _median_ms(lambda: v.dense.frame(cat, packed, None, whole), repeat), "ms"))
    for scale in LASSO_SCALES:
        poly = _hexagon(x0, x1, y0, y1, scale)
        inside = dense.rows_in_polygon(info.x, info.y, poly)
        rows.append((f"lasso: point-in-polygon over {len(info):,} points ({len(inside):,} inside)",
                     _median_ms(lambda poly=poly: dense.rows_in_polygon(info.x, info.y, poly), repeat), "ms"))
        geometry = {"type": "poly", "x": poly[:, 0].tolist(), "y": poly[:, 1].tolist()}

        def lasso(geometry=geometry, inside=inside):
            s.clear()
            t = time.perf_counter()
            v.figure._trigger_event(SelectionGeometry(v.figure, geometry=geometry, final=True))
            assert len(s.selection) == len(inside)
            return time.perf_counter() - t

        rows.append(("  → every view updated (server, incl. the re-shaded image)",
                     1000 * statistics.median(lasso() for _ in range(repeat)), "ms"))
    return rows


# ---------------------------------------------------------------- browser

_IMAGE = """() => {
  if (!(window.Bokeh && Bokeh.documents.length)) return null;
  const d = Bokeh.documents[0];
  const r = d.get_model_by_name('scatter-image');
  const rv = r && Bokeh.index.find_one(r);
  const src = d.get_model_by_name('scatter-image-source');
  if (!(rv && src.get_length() == 1 && rv.glyph.image && rv.glyph.image.length == 1 && d.is_idle)) return null;
  const img = src.data.image[0];
  return [src.data.x[0], src.data.y[0], src.data.dw[0], img.shape ? img.shape[0] : null,
          img.shape ? img.shape[1] : null, rv.plot_view.frame.bbox.width, rv.plot_view.frame.bbox.height];
}"""
_PAINTED = "() => new Promise(r => requestAnimationFrame(() => r(performance.now())))"
_ZOOM = """(k) => {
  const d = Bokeh.documents[0];
  const f = d.get_model_by_name('scatter');
  const pv = Bokeh.index.find_one(d.get_model_by_name('scatter-image')).plot_view;
  const cx = (f.x_range.start + f.x_range.end) / 2, cy = (f.y_range.start + f.y_range.end) / 2;
  const hx = (f.x_range.end - f.x_range.start) * k / 2, hy = (f.y_range.end - f.y_range.start) * k / 2;
  f.x_range.setv({start: cx - hx, end: cx + hx}); f.y_range.setv({start: cy - hy, end: cy + hy});
  const t = performance.now();
  pv.trigger_ranges_update_event();
  return t;
}"""
_FRAME = """() => {
  const pv = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('scatter-image')).plot_view;
  const box = pv.canvas_view.el.getBoundingClientRect();
  const f = pv.frame.bbox;
  return [box.x, box.y, f.left, f.top, f.width, f.height];
}"""
_INVERT = """(pts) => {
  const frame = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('scatter-image')).plot_view.frame;
  return pts.map(([sx, sy]) => [frame.x_scale.invert(sx), frame.y_scale.invert(sy)]);
}"""


def _wait_new_image(page, before) -> float:
    page.wait_for_function(f"(b) => {{ const v = ({_IMAGE})(); return v != null && (v[0] != b[0] || v[2] != b[2]); }}",
                           arg=before, timeout=120_000, polling=10)
    return page.evaluate(_PAINTED)


def browser_side(run_dir: Path, n: int, repeat: int, ref_dir: Path, ref_n: int) -> list[tuple[str, float, str]]:
    from playwright.sync_api import sync_playwright

    from vecexplore.app import dense
    from vecexplore.app.server import ServerThread

    server = ServerThread([run_dir, ref_dir])
    data = server.app.runs[0].get()
    server.app.runs[1].get()
    dense.warm()
    url, ref_url = (server.url + r.key for r in server.app.runs)
    first, sized, zoom, wheel, lasso, ref = [], [], [], [], [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for k in range(repeat):
                page = browser.new_page(viewport={"width": 1600, "height": 1400})
                page.goto(ref_url)
                page.wait_for_function(_RENDERED, arg=ref_n, timeout=300_000, polling=10)
                ref.append(page.evaluate(_PAINTED))
                page.close()
                page = browser.new_page(viewport={"width": 1600, "height": 1400})
                page.goto(url)
                page.wait_for_function(_IMAGE, timeout=300_000, polling=10)
                first.append(page.evaluate(_PAINTED))
                page.wait_for_function(f"() => {{ const v = ({_IMAGE})(); return v != null && v[3] == Math.round(v[6])"
                                       " && v[4] == Math.round(v[5]); }", timeout=120_000, polling=10)
                sized.append(page.evaluate(_PAINTED))
                before = page.evaluate(_IMAGE)
                t = page.evaluate(_ZOOM, 0.5)
                zoom.append(_wait_new_image(page, before) - t)
                before = page.evaluate(_IMAGE)
                cx0, cy0, left, top, w, h = page.evaluate(_FRAME)
                page.mouse.move(cx0 + left + w / 2, cy0 + top + h / 2)
                t = page.evaluate("() => performance.now()")
                page.mouse.wheel(0, 100)  # zoom out a little
                wheel.append(_wait_new_image(page, before) - t)
                # a lasso with the mouse: a hexagon in the frame, a little different each time
                a = np.linspace(0, 2 * np.pi, 7)[:-1] + 0.1 * k
                screen = [[left + w / 2 + 0.3 * w * np.cos(v), top + h / 2 + 0.3 * h * np.sin(v)] for v in a]
                poly = np.asarray(page.evaluate(_INVERT, screen), float)
                want = len(dense.rows_in_polygon(data.images.x, data.images.y, poly))
                page.mouse.move(cx0 + screen[0][0], cy0 + screen[0][1])
                page.mouse.down()
                for sx, sy in [*screen[1:], screen[0]]:
                    page.mouse.move(cx0 + sx, cy0 + sy, steps=3)
                t = page.evaluate("() => performance.now()")
                page.mouse.up()
                page.wait_for_function("(m) => Bokeh.documents[0].get_model_by_name('gallery-caption').text.includes(m)",
                                       arg=f"{want:,} images", timeout=120_000, polling=10)
                lasso.append(page.evaluate(_PAINTED) - t)
                page.close()
            browser.close()
    finally:
        server.stop()
    return [
        (f"browser: navigation → aggregate of {n:,} images painted", statistics.median(first), "ms"),
        (f"  reference: navigation → {ref_n:,} points painted (below the threshold)", statistics.median(ref), "ms"),
        ("browser: navigation → re-rendered at the frame's size", statistics.median(sized), "ms"),
        ("browser: zoom (RangesUpdate) → new image painted", statistics.median(zoom), "ms"),
        ("browser: wheel event → new image painted (BokehJS waits for the gesture end)",
         statistics.median(wheel), "ms"),
        ("browser: mouse lasso released → gallery shows the count", statistics.median(lasso), "ms"),
    ]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_app_dense")
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("bench-results") / "app-dense")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--threshold", type=int, default=None,
                        help="points in view past which the map aggregates (default: the app's DENSE_THRESHOLD)")
    args = parser.parse_args(argv)
    if args.threshold is not None:
        from vecexplore.app import dense

        dense.DENSE_THRESHOLD = args.threshold
    run_dir = args.dir / f"run-{args.images}"
    stamp = run_dir / "manifest.json"
    if args.rebuild or not stamp.exists() or json.loads(stamp.read_text())["counts"]["images"] != args.images:
        timings = write_synthetic_run(run_dir, images=args.images, gt_per_image=GT_PER_IMAGE, fp_per_image=FP_PER_IMAGE)
        print("synthetic run written: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    counts = json.loads(stamp.read_text())["counts"]
    print(f"run {run_dir}: {counts['images']:,} images, {counts['gt']:,} GT, {counts['pred']:,} predictions")
    rows = server_side(run_dir, args.repeat)
    if not args.no_browser:
        ref_dir = args.dir / f"reference-{REFERENCE_IMAGES}"
        if not (ref_dir / "manifest.json").exists():
            write_synthetic_run(ref_dir, images=REFERENCE_IMAGES, gt_per_image=GT_PER_IMAGE, fp_per_image=FP_PER_IMAGE)
        rows += browser_side(run_dir, counts["images"], args.repeat, ref_dir, REFERENCE_IMAGES)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'what':<{width}}  {'value':>10}")
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:>10.1f} {unit}")
    print(f"\npeak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
