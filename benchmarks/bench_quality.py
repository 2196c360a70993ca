"""The model-quality panels' recomputation cost (what the app does on a slider move or a selection).

``python benchmarks/run.py quality [--images=N] [--repeat=R]``

Generates a COCO-like case with ``benchmarks/coco_synth.py`` (default 100k
images, ~1M predictions), evaluates it once, adds random pixel properties and
the run store's object properties, then times each function of
:mod:`vecexplore.analysis.quality` at a new confidence (best of R), with no
selection and with a random 30 % selection, next to the engine's own
re-derivation (``Evaluation.at`` + per-image table + confusion matrix) as the
reference. Importance subsamples (it is computed once per build and on demand).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from coco_synth import make_synthetic_coco

from vecexplore.analysis.describe import describe_images
from vecexplore.analysis.quality import (
    RunTables,
    class_performance,
    property_importance,
    property_performance,
    sweep_for,
)
from vecexplore.eval.evaluate import evaluate
from vecexplore.store.tables import object_table


def _best(fn, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _tables(ds, ev, seed: int = 0) -> RunTables:
    rng = np.random.default_rng(seed)
    images = ds.images.to_pandas()
    for c in ev.per_image.columns:
        if c != "image_idx":
            images[c] = ev.per_image[c].to_numpy()
    for p in ("brightness", "contrast", "sharpness", "colorfulness"):
        images[p] = rng.uniform(0, 1, ds.num_images)
    n_obj = np.bincount(ds.gt.image_idx[~ds.gt.iscrowd], minlength=ds.num_images)
    images["n_objects"] = n_obj.astype(float)
    images["aspect_ratio"] = ds.images.width / ds.images.height
    images["cluster"] = rng.integers(-1, 50, ds.num_images)
    images["readable"] = True
    return RunTables(images, object_table(ds, ev.objects))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_quality")
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--fp-per-image", type=float, default=6.5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    warm = make_synthetic_coco(num_images=60, num_classes=5, seed=1).dataset
    wev = evaluate(warm)
    wt = _tables(warm, wev)
    _ = wev.at(confidence=0.3).per_image, wev.confusion, class_performance(wev), sweep_for(wev, [0, 1])
    _ = property_performance(wt, wev, "relative_area"), property_importance(wt, wev)

    ds = make_synthetic_coco(num_images=args.images, num_classes=args.classes,
                             fp_per_image=args.fp_per_image, seed=0).dataset
    start = time.perf_counter()
    ev0 = evaluate(ds)
    tables = _tables(ds, ev0)
    print(f"case: {ds.num_images:,} images, {len(ds.categories)} classes, {len(ds.gt):,} GT, "
          f"{len(ds.pred):,} predictions (evaluated + tables in {time.perf_counter() - start:.1f} s)")
    conf = float(np.quantile(ds.pred.score, 0.4))
    ev = ev0.at(confidence=conf)
    _ = ev.outcomes.pred_code, ev.outcomes.gt_code, ev.per_image  # what the app derives once per move
    sel = np.flatnonzero(np.random.default_rng(1).random(ds.num_images) < 0.3)
    cluster = tables.images["cluster"].to_numpy() == 3
    r = args.repeat

    def engine():
        moved = ev0.at(confidence=conf)
        return moved.per_image, moved.confusion

    cp = class_performance(ev)
    rows = [
        ("reference: Evaluation.at + per-image table + confusion matrix", _best(engine, r), None),
        ("class_performance (all images)", _best(lambda: class_performance(ev), r),
         _best(lambda: class_performance(ev, sel), r)),
        ("ClassPerformance.images_for (one bar: FP of the largest class)",
         _best(lambda: cp.images_for(int(np.argmax(cp.table["fp"])), "fp"), r), None),
        ("property_performance: brightness (image bins)",
         _best(lambda: property_performance(tables, ev, "brightness"), r),
         _best(lambda: property_performance(tables, ev, "brightness", image_idx=sel), r)),
        ("property_performance: relative_area (object bins)",
         _best(lambda: property_performance(tables, ev, "relative_area"), r),
         _best(lambda: property_performance(tables, ev, "relative_area", image_idx=sel), r)),
        ("sweep_for (P/R/F1 vs confidence)", _best(lambda: sweep_for(ev), r), _best(lambda: sweep_for(ev, sel), r)),
        ("describe_images (one cluster, ~2% of images)", _best(lambda: describe_images(tables, ev, cluster), r), None),
        ("property_importance (12 properties, subsampled)", _best(lambda: property_importance(tables, ev), 1),
         _best(lambda: property_importance(tables, ev, image_idx=sel), 1)),
    ]
    width = max(len(name) for name, *_ in rows)
    print(f"{'function':<{width}}  {'all images':>12}  {'30% selection':>14}")
    for name, t_all, t_sel in rows:
        sel_text = "–" if t_sel is None else f"{t_sel * 1e3:9.1f} ms"
        print(f"{name:<{width}}  {t_all * 1e3:9.1f} ms  {sel_text:>14}")
