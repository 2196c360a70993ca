"""The app at scale: server-side updates and the browser's first render.

``python benchmarks/run.py app [--images N] [--repeat R] [--dir D] [--no-browser] [--rebuild]``

Writes a synthetic run directory (default 100k images, ~1M predictions from
``benchmarks/coco_synth.py``) without CLIP: the evaluation, objects and slice
tables are the real ones (``vecexplore.store.tables``, ``mapping.slices``,
``store.write_run``); the map is 60 Gaussian blobs in 2-D with the blob as the
cluster (5% noise); every image shares one real 160 px JPEG thumbnail; image
files do not exist (the image route serves its placeholder). Then times:

* loading the run for the app (``load_run_data``, once per process) and
  building one session's document (every new browser tab pays it);
* the session on a bare Document (synchronous, what a server
  session computes after each event): a selection of 1k / 10k / 50k random
  images, a confusion cell, a cluster, a slider move with and without a
  selection, an IoU change the first time (matching, shared by all sessions)
  and cached — median of R;
* the browser (Chromium, Playwright) against a real server: from navigation to
  every scatter point having a screen position in the WebGL glyph view and the
  document idle, and the bytes the websocket carried by then — median of R tabs.

Prints a table.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from coco_synth import make_synthetic_coco

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]


# ---------------------------------------------------------------- the synthetic run


def _thumbnail() -> bytes:
    from PIL import Image

    x = np.linspace(0, 255, 160)
    arr = np.stack([x[None, :].repeat(120, 0), x[:120, None].repeat(160, 1), np.full((120, 160), 90.0)], -1)
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def write_synthetic_run(out: Path, *, images: int, seed: int = 0, gt_per_image: float = 5.6,
                        fp_per_image: float = 5.0) -> dict:
    """Write a run of ``images`` synthetic images at ``out`` (objects per image as
    :func:`coco_synth.make_synthetic_coco`'s); returns build timings."""
    from vecexplore.eval.evaluate import evaluate
    from vecexplore.mapping.slices import slice_table
    from vecexplore.properties import PIXEL_PROPERTIES
    from vecexplore.store import MANIFEST, SCHEMA_VERSION, write_run
    from vecexplore.store.layout import CLUSTERS, IMAGES, LABEL_ISSUES, OBJECTS
    from vecexplore.store.tables import image_table, object_table, sweep_json

    timings = {}
    t = time.perf_counter()
    ds = make_synthetic_coco(num_images=images, seed=seed, gt_per_image=gt_per_image,
                             fp_per_image=fp_per_image).dataset
    timings["generate"] = time.perf_counter() - t
    t = time.perf_counter()
    ev = evaluate(ds, iou=0.5)
    per_image, metrics = ev.per_image, ev.to_json_dict()
    timings["evaluate"] = time.perf_counter() - t
    rng = np.random.default_rng(seed)
    n = ds.num_images
    centres = rng.uniform(-20, 20, (60, 2))
    blob = rng.integers(0, 60, n)
    xy = (centres[blob] + rng.normal(0, 0.8, (n, 2))).astype(np.float32)
    labels = np.where(rng.random(n) < 0.05, -1, blob).astype(np.int64)
    props = {name: rng.random(n) for name in PIXEL_PROPERTIES}
    t = time.perf_counter()
    with write_run(out, force=True) as writer:
        clusters = slice_table(per_image, labels, task="detection", objects=ev.objects,
                               class_names=list(ds.categories.names))
        table = image_table(ds, per_image, xy, labels, np.ones(n, np.float32), np.ones(n, bool),
                            [None] * n, [f"{i:040x}" for i in range(n)], props)
        writer.write_table(IMAGES, table)
        writer.write_table(OBJECTS, object_table(ds, ev.objects))
        writer.write_table(CLUSTERS, clusters)
        from vecexplore.analysis.label_issues import label_issues

        t_labels = time.perf_counter()
        writer.write_table(LABEL_ISSUES, label_issues(ev))  # as build's "labels" stage does
        t_labels = time.perf_counter() - t_labels
        writer.write_array("embeddings.npy", np.zeros((n, 8), np.float32))
        thumb = _thumbnail()
        writer.path("thumbs.bin").write_bytes(thumb)
        index = np.zeros((n, 2), np.int64)
        index[:, 1] = len(thumb)
        writer.write_array("thumbs.npy", index)
        writer.write_json("categories.json", [
            {"id": int(i), "name": str(s)} for i, s in zip(ds.categories.ids, ds.categories.names, strict=True)])
        writer.write_json("metrics.json", {**metrics, "sweep": sweep_json(ev)})
        writer.write_json(MANIFEST, {
            "schema_version": SCHEMA_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "status": "complete", "task": "detection",
            "inputs": {"format": "synthetic", "images_root": str(out.parent / "no-images")},
            "counts": {"images": n, "unreadable": 0, "categories": len(ds.categories),
                       "gt": len(ds.gt), "pred": len(ds.pred)},
            "config": {"iou": 0.5, "confidence": None},
            "model": {"model": "synthetic", "weights": "none", "weights_kind": "synthetic", "random": False},
            "map": {"synthetic": "60 gaussian blobs"}, "timings": {}, "versions": {},
        })
    timings["write"] = time.perf_counter() - t - t_labels
    timings["label issues (build stage)"] = t_labels
    return timings


# ---------------------------------------------------------------- server side


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def server_side(run_dir: Path, repeat: int) -> list[tuple[str, float]]:
    from bokeh.document import Document

    from vecexplore.app.data import load_run_data
    from vecexplore.app.document import build_document

    rows = []
    t = time.perf_counter()
    data = load_run_data(run_dir)
    rows.append(("load the run (once per process)", 1000 * (time.perf_counter() - t)))
    rows.append(("build one session's document", _median_ms(
        lambda: build_document(Document(), data, url_base="/vx/bench"), max(1, repeat // 2))))
    s = build_document(Document(), data, url_base="/vx/bench")
    rng = np.random.default_rng(1)
    n = data.num_images
    for size in (1_000, 10_000, 50_000):
        if size > n:
            continue
        picks = [np.sort(rng.choice(n, size, replace=False)) for _ in range(repeat)]
        it = iter(picks)
        rows.append((f"select {size:,} images", _median_ms(lambda it=it: s.select(next(it)), repeat)))
        s.clear()
    m = s.derived.evaluation.confusion.counts
    off = [(int(i), int(j)) for i, j in zip(*np.nonzero(m), strict=True) if i != j]
    cell = max(off, key=lambda c: m[c])
    confusion = s.view("confusion").figure

    def click_cell():
        from bokeh.events import Tap

        s.clear()
        t = time.perf_counter()
        confusion._trigger_event(Tap(confusion, sx=0, sy=0, x=float(cell[1]), y=float(cell[0]), modifiers=None))
        return time.perf_counter() - t

    rows.append((f"click the largest off-diagonal cell ({m[cell]:,} objects)",
                 1000 * statistics.median(click_cell() for _ in range(repeat))))
    biggest = int(np.bincount(data.images.cluster[data.images.cluster >= 0]).argmax())
    members = np.flatnonzero(data.images.cluster == biggest)

    def click_cluster():
        s.clear()
        t = time.perf_counter()
        s.select(members, f"cluster {biggest}")
        return time.perf_counter() - t

    rows.append(("click a cluster row", 1000 * statistics.median(click_cluster() for _ in range(repeat))))
    s.clear()
    confs = iter(np.linspace(0.2, 0.8, repeat * 2))
    rows.append(("slider move, nothing selected", _median_ms(lambda: s.set_confidence(next(confs)), repeat)))
    big = min(50_000, n // 2)
    s.select(np.sort(rng.choice(n, big, replace=False)))
    rows.append((f"slider move, {big:,} selected", _median_ms(lambda: s.set_confidence(next(confs)), repeat)))
    s.clear()
    t = time.perf_counter()
    s.set_iou(0.75)
    rows.append(("IoU change, first time (matches once for all sessions)", 1000 * (time.perf_counter() - t)))
    s.set_iou(0.5)
    rows.append(("IoU change, cached", _median_ms(lambda: (s.set_iou(0.75), s.set_iou(0.5)), repeat) / 2))
    return rows


# ---------------------------------------------------------------- browser


_RENDERED = """(n) => {
  if (!(window.Bokeh && Bokeh.documents.length)) return false;
  const doc = Bokeh.documents[0];
  const r = doc.get_model_by_name('scatter-points');
  const rv = r && Bokeh.index.find_one(r);
  return !!(rv && rv.glyph.sx && rv.glyph.sx.length == n && doc.is_idle);
}"""


def browser_side(run_dir: Path, n: int, repeat: int) -> list[tuple[str, float]]:
    from playwright.sync_api import sync_playwright

    from vecexplore.app.server import ServerThread

    server = ServerThread([run_dir])
    render, received = [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for _ in range(repeat):
                page = browser.new_page(viewport={"width": 1600, "height": 1400})
                frames = []
                page.on("websocket", lambda ws, frames=frames: ws.on(
                    "framereceived", lambda f: frames.append(len(f) if isinstance(f, (bytes, str)) else 0)))
                page.goto(server.url)
                page.wait_for_function(_RENDERED, arg=n, timeout=300_000, polling=20)
                # one more frame so the points are painted, then read the clock
                ms = page.evaluate("() => new Promise(r => requestAnimationFrame(() => r(performance.now())))")
                render.append(ms)
                received.append(sum(frames))
                page.close()
            page = browser.new_page(viewport={"width": 1600, "height": 1400})
            page.goto(server.url)
            page.wait_for_function(_RENDERED, arg=n, timeout=300_000, polling=20)
            thumb_url = f"{server.url}vx/{server.app.runs[0].key}/thumb/{int(server.app.runs[0].get().images.image_id[0])}"
            idle = _thumb_latencies(thumb_url, seconds=2.0)
            selection, busy = _selection_storm(page, n, thumb_url, repeat)
            # the same without drawing the scatter: what is left is the server and the other views
            page.evaluate("() => { Bokeh.documents[0].get_model_by_name('scatter-points').visible = false }")
            hidden, _ = _selection_storm(page, n, thumb_url, repeat, seed=3)
            detail = _thumbnail_to_detail(page, repeat)
            browser.close()
    finally:
        server.stop()
    return [
        (f"browser: navigation → {n:,} points rendered", statistics.median(render), "ms"),
        ("browser: websocket bytes until rendered", statistics.median(received) / 2**20, "MiB"),
        (f"browser: select {min(50_000, n // 2):,} points → gallery updated", selection, "ms"),
        ("  the same with the scatter not drawn", hidden, "ms"),
        ("browser: thumbnail click → detail view with its boxes", detail, "ms"),
        ("thumbnail GET, server idle: median", 1000 * statistics.median(idle), "ms"),
        ("thumbnail GET while a session selects: median", 1000 * statistics.median(busy), "ms"),
        ("thumbnail GET while a session selects: max", 1000 * max(busy), "ms"),
    ]


def _thumb_latencies(url: str, *, seconds: float, stop=None) -> list[float]:
    """Fetch ``url`` back to back for ``seconds`` (or until ``stop`` is set); each latency in s."""
    import urllib.request

    out = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and not (stop and stop.is_set()):
        t = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as resp:
            resp.read()
        out.append(time.perf_counter() - t)
    return out


_TILE_XY = """(k) => {
  const r = Bokeh.documents[0].get_model_by_name('gallery-tiles');
  const rv = Bokeh.index.find_one(r);
  const box = rv.plot_view.canvas_view.el.getBoundingClientRect();
  return [box.x + rv.glyph.sx[k], box.y + rv.glyph.sy[k]];
}"""


def _thumbnail_to_detail(page, repeat: int) -> float:
    """Median ms from a mouse click on a gallery tile until the detail view shows that image with its
    boxes (its info names the file and the box sources hold its objects)."""
    times = []
    n_tiles = page.evaluate("() => Bokeh.documents[0].get_model_by_name('gallery-source').get_length()")
    for k in range(min(max(repeat, 3), n_tiles)):
        name = page.evaluate("(k) => Bokeh.documents[0].get_model_by_name('gallery-source').data.file_name[k]", k)
        x, y = page.evaluate(_TILE_XY, k)
        t0 = page.evaluate("() => performance.now()")
        page.mouse.click(x, y)
        page.wait_for_function("""(name) => {
          const d = Bokeh.documents[0];
          return d.get_model_by_name('detail-info').text.includes(name)
            && d.get_model_by_name('detail-gt').get_length() + d.get_model_by_name('detail-pred').get_length() > 0;
        }""", arg=str(name).replace("&", "&amp;").replace("<", "&lt;"), timeout=60_000, polling=5)
        times.append(page.evaluate("() => performance.now()") - t0)
    return statistics.median(times)


def _selection_storm(page, n: int, thumb_url: str, repeat: int, seed: int = 2) -> tuple[float, list[float]]:
    """Select big random sets from the page (as a lasso would) while another client
    fetches thumbnails; (median ms until the gallery caption shows the new count,
    thumbnail latencies in s)."""
    import threading

    rng = np.random.default_rng(seed)
    size = min(50_000, n // 2) - 100 * (seed - 2)
    stop = threading.Event()
    busy: list[float] = []
    pinger = threading.Thread(target=lambda: busy.extend(_thumb_latencies(thumb_url, seconds=600, stop=stop)))
    pinger.start()
    times = []
    try:
        for k in range(repeat):
            m = size - k  # a new count each time, so the caption visibly changes
            picks = np.sort(rng.choice(n, m, replace=False)).tolist()
            t = page.evaluate("""(idx) => {
              Bokeh.documents[0].get_model_by_name('scatter-source').selected.indices = idx;
              return performance.now(); }""", picks)
            page.wait_for_function(
                "(m) => Bokeh.documents[0].get_model_by_name('gallery-caption').text.includes(m)",
                arg=f"{m:,}", timeout=120_000, polling=10)
            times.append(page.evaluate("() => performance.now()") - t)
    finally:
        stop.set()
        pinger.join()
    return statistics.median(times), busy


# ---------------------------------------------------------------- main


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_app")
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path("bench-results") / "app")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args(argv)
    run_dir = args.dir / f"run-{args.images}"
    stamp = run_dir / "manifest.json"
    if args.rebuild or not stamp.exists() or json.loads(stamp.read_text())["counts"]["images"] != args.images:
        timings = write_synthetic_run(run_dir, images=args.images)
        print("synthetic run written: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    manifest = json.loads(stamp.read_text())
    counts = manifest["counts"]
    print(f"run {run_dir}: {counts['images']:,} images, {counts['gt']:,} GT, {counts['pred']:,} predictions")
    rows = server_side(run_dir, args.repeat)
    if not args.no_browser:
        rows += browser_side(run_dir, counts["images"], max(1, args.repeat // 2))
    rows = [r if len(r) == 3 else (*r, "ms") for r in rows]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'what':<{width}}  {'value':>10}")
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:>10.1f} {unit}")
