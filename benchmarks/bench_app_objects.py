"""The app's object level at scale: serving a run with ~100k mapped objects.

``python benchmarks/run.py app_objects [--objects N] [--repeat R] [--dir D] [--no-browser] [--rebuild]``

Writes the synthetic run of ``bench_app.py`` (real evaluation, objects and slice
tables; no CLIP, no image files) with about ``N`` mapped objects, then adds an
object map the way a build does (:func:`vecexplore.mapping.objects.with_object_map`
on the mapped objects: positions from 80 Gaussian blobs, the blob as the crop
cluster with 5 % noise, zero embeddings; object slices from
:func:`vecexplore.analysis.object_slices.object_slice_table`). Then times, on a
bare Document (what a server session computes after each event, median of R):

* loading the run for the app, building one session's document;
* the level switch to objects (first time and again) and back;
* an object lasso of 1k / 10k objects, a confusion cell at the object level,
  an object slice row, a slider move at the object level;
* a crop, cut from the thumbnail (no image files exist), first and cached;

and, in Chromium (Playwright) against a real server, the first render (every
image point drawn) and the level switch until every object point has a screen
position and the document is idle. Prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from bench_app import CHROMIUM, CHROMIUM_ARGS, _median_ms, write_synthetic_run

#: Mapped objects per synthetic image (non-crowd GT + counted predictions), measured on coco_synth.
OBJECTS_PER_IMAGE = 7.5


def add_object_map(run_dir: Path, seed: int = 0) -> int:
    """Add the object-map columns, ``object_embeddings.npy`` and ``object_slices.parquet`` to a written
    run (atomically, through the run writer's files); returns the number of mapped objects."""
    import pandas as pd

    from vecexplore.analysis.object_slices import object_slice_table
    from vecexplore.mapping.objects import mapped_objects, with_object_map
    from vecexplore.store import atomic_write_bytes
    from vecexplore.store.layout import OBJECT_EMBEDDINGS, OBJECT_SLICES, OBJECTS, table_file

    objects = pd.read_parquet(run_dir / table_file(OBJECTS))
    mask = mapped_objects(objects)
    m = int(mask.sum())
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-25, 25, (80, 2))
    blob = rng.integers(0, 80, m)
    xy = (centres[blob] + rng.normal(0, 0.9, (m, 2))).astype(np.float32)
    labels = np.where(rng.random(m) < 0.05, -1, blob)
    table = with_object_map(objects, mask, xy, labels, np.ones(m, np.float32), np.ones(m, bool))
    names = [c["name"] for c in json.loads((run_dir / "categories.json").read_text())]
    slices = object_slice_table(table, class_names=names)
    for name, df in ((OBJECTS, table), (OBJECT_SLICES, slices)):
        tmp = run_dir / f".{name}.tmp.parquet"
        df.to_parquet(tmp, index=False)
        tmp.replace(run_dir / table_file(name))
    import io

    buf = io.BytesIO()
    np.save(buf, np.zeros((m, 8), np.float32))
    atomic_write_bytes(run_dir / OBJECT_EMBEDDINGS, buf.getvalue())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["config"]["crop"] = {"padding": 0.25, "min_size": 32}
    manifest["counts"]["objects_mapped"] = m
    atomic_write_bytes(run_dir / "manifest.json", json.dumps(manifest).encode())
    return m


def server_side(run_dir: Path, repeat: int) -> list[tuple[str, float]]:
    from bokeh.document import Document
    from bokeh.events import Tap

    from vecexplore.app import events as ev
    from vecexplore.app.data import load_run_data
    from vecexplore.app.document import build_document
    from vecexplore.app.routes import RunFiles

    rows = []
    t = time.perf_counter()
    data = load_run_data(run_dir)
    rows.append(("load the run (once per process)", 1000 * (time.perf_counter() - t)))
    omap = data.object_map
    rows.append(("build one session's document", _median_ms(
        lambda: build_document(Document(), data, url_base="/vx/bench"), max(1, repeat // 2))))

    def switch(level):
        def go():
            s = build_document(Document(), data, url_base="/vx/bench")
            t = time.perf_counter()
            s.emit(ev.SetLevel(level))
            return s, time.perf_counter() - t
        return go

    first = [switch("objects")() for _ in range(max(1, repeat // 2))]
    rows.append(("level switch to objects, a new session", 1000 * statistics.median(t for _, t in first)))
    s = first[0][0]
    rows.append(("level switch back and to objects again", _median_ms(
        lambda: (s.emit(ev.SetLevel("images")), s.emit(ev.SetLevel("objects"))), repeat) / 2))
    rng = np.random.default_rng(1)
    for size in (1_000, 10_000):
        picks = iter([np.sort(rng.choice(omap.points, size, replace=False)) for _ in range(repeat)])
        rows.append((f"object lasso, {size:,} objects", _median_ms(
            lambda picks=picks: s.emit(ev.Select(np.zeros(0, np.int64), "objects", objects=next(picks))), repeat)))
    m = s.derived.evaluation.confusion.counts
    i = int(np.argmax(m[:-1, -1]))
    fig = s.view("confusion").figure

    def cell():
        s.clear()
        t = time.perf_counter()
        fig._trigger_event(Tap(fig, sx=0, sy=0, x=float(m.shape[0] - 1), y=float(i), modifiers=None))
        return time.perf_counter() - t

    rows.append((f"matrix cell at the object level ({m[i, -1]:,} missed GT)",
                 1000 * statistics.median(cell() for _ in range(repeat))))
    if len(omap.slices):
        members = np.asarray(omap.slices.iloc[0]["object_idx"], np.int64)
        rows.append((f"object slice row ({len(members):,} objects)", _median_ms(
            lambda: (s.clear(), s.emit(ev.Select(np.zeros(0, np.int64), "slice", objects=members))), repeat)))
    s.clear()
    confs = iter(np.linspace(0.2, 0.8, repeat * 2))
    rows.append(("slider move at the object level", _median_ms(lambda: s.set_confidence(next(confs)), repeat)))
    files = RunFiles(data)
    row = int(omap.points[0])
    t = time.perf_counter()
    files.crop(row)
    rows.append(("a crop, first time (from the thumbnail)", 1000 * (time.perf_counter() - t)))
    rows.append(("a crop, cached", _median_ms(lambda: files.crop(row), repeat)))
    return rows


_DRAWN = """([name, n]) => {
  if (!(window.Bokeh && Bokeh.documents.length)) return false;
  const doc = Bokeh.documents[0];
  const r = doc.get_model_by_name(name);
  const rv = r && Bokeh.index.find_one(r);
  return !!(rv && r.visible && rv.glyph.sx && rv.glyph.sx.length == n && doc.is_idle);
}"""
_LEVEL_MENU = ("() => Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('level'))"
               ".shadow_el.querySelector('select')")


def browser_side(run_dir: Path, n_images: int, n_points: int, repeat: int) -> list[tuple[str, float]]:
    from playwright.sync_api import sync_playwright

    from vecexplore.app.server import ServerThread

    server = ServerThread([run_dir])
    first, switch = [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for _ in range(repeat):
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                t = time.perf_counter()
                page.goto(server.url)
                page.wait_for_function(_DRAWN, arg=["scatter-points", n_images], timeout=600_000)
                first.append(time.perf_counter() - t)
                menu = page.evaluate_handle(_LEVEL_MENU).as_element()
                t = time.perf_counter()
                menu.select_option(label="Objects")
                page.wait_for_function(_DRAWN, arg=["scatter-object-points", n_points], timeout=600_000)
                switch.append(time.perf_counter() - t)
                page.close()
            browser.close()
    finally:
        server.stop()
    return [("browser: first render, every image point drawn", 1000 * statistics.median(first)),
            (f"browser: level switch until {n_points:,} object points drawn", 1000 * statistics.median(switch))]


def main(argv: list[str]) -> None:
    import resource

    parser = argparse.ArgumentParser(prog="bench_app_objects")
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path("bench-results") / "app-objects")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args(argv)
    images = max(100, round(args.objects / OBJECTS_PER_IMAGE))
    run_dir = args.dir / f"run-{images}"
    stamp = run_dir / "manifest.json"
    if args.rebuild or not stamp.exists() or "objects_mapped" not in json.loads(stamp.read_text())["counts"]:
        timings = write_synthetic_run(run_dir, images=images)
        t = time.perf_counter()
        add_object_map(run_dir)
        timings["object map"] = time.perf_counter() - t
        print("synthetic run written: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    counts = json.loads(stamp.read_text())["counts"]
    print(f"run {run_dir}: {counts['images']:,} images, {counts['gt']:,} GT, {counts['pred']:,} predictions, "
          f"{counts['objects_mapped']:,} mapped objects")
    rows = server_side(run_dir, args.repeat)
    rows.append(("peak RSS of this process (MB)", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MB"))
    if not args.no_browser:
        rows += browser_side(run_dir, counts["images"], counts["objects_mapped"], max(1, args.repeat // 2))
    rows = [r if len(r) == 3 else (*r, "ms") for r in rows]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'what':<{width}}  {'value':>10}")
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:>10.1f} {unit}")
