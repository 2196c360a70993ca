"""Moving the confidence threshold vs a full evaluation (the app's slider).

``python benchmarks/run.py threshold [--images N] [--repeat R]``

Generates a COCO-like case with ``benchmarks/coco_synth.py`` (default 100k
images, ~1M predictions), then times:

* the full evaluation at IoU 0.5: matching once per IoU, the sweep, and the
  outcomes + per-image table + confusion matrix at the F1-optimal confidence;
* re-deriving the per-image table and the confusion matrix at a new confidence
  with ``Evaluation.at(confidence=...)`` (no re-matching), best of R over
  several thresholds.

Numba kernels are compiled on a small case first, so neither figure includes
compilation. Prints a table and the ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from coco_synth import make_synthetic_coco

from vecexplore.eval.evaluate import evaluate
from vecexplore.eval.matching import match_detections


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_threshold")
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--fp-per-image", type=float, default=6.5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    warm = evaluate(make_synthetic_coco(num_images=50, num_classes=5, seed=1).dataset)
    _ = warm.at(confidence=0.3).per_image, warm.confusion  # compile kernels, import pandas

    t_gen, synth = _timed(lambda: make_synthetic_coco(num_images=args.images, num_classes=args.classes,
                                                       fp_per_image=args.fp_per_image, seed=0))
    ds = synth.dataset
    print(f"case: {ds.num_images:,} images, {len(ds.categories)} classes, {len(ds.gt):,} GT, "
          f"{len(ds.pred):,} predictions (generated in {t_gen:.1f} s)")

    def full():
        ev = evaluate(ds, iou=0.5)
        _ = ev.per_image, ev.confusion
        return ev

    t_match, _ = _timed(lambda: match_detections(ds.gt, ds.pred, iou=0.5, num_images=ds.num_images,
                                                  num_classes=len(ds.categories)))
    t_full, ev = _timed(full)
    step4_pairs = len(ev.matching.pair_pred)
    thresholds = np.quantile(ds.pred.score, [0.1, 0.3, 0.5, 0.7, 0.9])
    per_threshold = []
    for c in thresholds:
        best = np.inf
        for _ in range(args.repeat):
            def move(c=float(c)):
                moved = ev.at(confidence=c)
                return moved.per_image, moved.confusion

            best = min(best, _timed(move)[0])
        per_threshold.append(best)
    t_move = float(np.median(per_threshold))

    rows = [
        ("matching alone at IoU 0.5 (once per IoU)", t_match),
        ("full evaluation at IoU 0.5 (match + sweep + outcomes + table + matrix)", t_full),
        ("new confidence: per-image table + confusion matrix (median over 5 thresholds)", t_move),
        ("  fastest / slowest threshold", (min(per_threshold), max(per_threshold))),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'step':<{width}}  {'time':>17}")
    for name, t in rows:
        text = f"{t[0] * 1e3:7.1f}–{t[1] * 1e3:.1f} ms" if isinstance(t, tuple) else f"{t * 1e3:10.1f} ms"
        print(f"{name:<{width}}  {text:>17}")
    print(f"ratio re-derivation / full evaluation: {t_move / t_full:.3%}  "
          f"(step-4 candidate pairs re-run per move: {step4_pairs:,})")
