"""COCO bbox evaluation speed: vecexplore vs pycocotools vs faster-coco-eval.

One synthetic COCO-scale case (``coco_synth``; default 5,000 images, 80
classes, ~27k GT, ~43k predictions), the same input for all three, in one
process. Timed: evaluation only (evaluate + accumulate + summarize for the
COCO APIs; ``coco_metrics`` for ours), from already-built inputs (COCO objects /
our Boxes). Each row also reports the largest difference of its 12 stats from
pycocotools'.

    python benchmarks/run.py coco [--images=5000] [--classes=80] [--repeats=3] [--seed=0]
                                  [--gt-per-image=5.6] [--fp-per-image=5.0] [--no-pycocotools]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from coco_synth import make_synthetic_coco

from vecexplore.eval.coco import coco_metrics_of

_COLD_COMPILE = """
import time, numpy as np
from vecexplore.eval.coco import coco_metrics
from vecexplore.types import Boxes
gt = Boxes(image_idx=[0], class_idx=[0], xywh=[[0, 0, 10, 10]], object_id=[1])
pred = Boxes(image_idx=[0], class_idx=[0], xywh=[[1, 1, 10, 10]], object_id=[1], score=[0.5])
t = time.perf_counter()
coco_metrics(gt, pred, num_images=1, num_classes=1)
print(time.perf_counter() - t)
"""


def _best(fn, repeats: int) -> tuple[float, float, float, object]:
    """(first call s, best of ``repeats`` calls s, best CPU s of this process, last result).

    CPU time is reported too because benchmarks often share a machine; all three
    implementations are single-threaded here, so it is comparable across rows.
    """
    times, cpu, out = [], [], None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return times[0], min(times), min(cpu), out


def _cold_compile_seconds() -> float:
    """First call in a fresh interpreter with an empty numba cache (= compile time)."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = subprocess.run([sys.executable, "-c", _COLD_COMPILE], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _run_pycocotools(gt_dict, results, repeats):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = gt_dict
        cg.createIndex()
        cd = cg.loadRes(results)

    def once():
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(cg, cd, "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return ev

    return _best(once, repeats)


def _run_faster(gt_dict, results, repeats):
    from faster_coco_eval import COCO, COCOeval_faster

    quiet = lambda *a, **k: None  # noqa: E731
    cg = COCO(gt_dict, print_function=quiet)
    cd = cg.loadRes(results)

    def once():
        ev = COCOeval_faster(cg, cd, "bbox", print_function=quiet)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return ev

    return _best(once, repeats)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="bench_coco")
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--classes", type=int, default=80)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gt-per-image", type=float, default=5.6)
    ap.add_argument("--fp-per-image", type=float, default=5.0)
    ap.add_argument("--no-pycocotools", action="store_true", help="skip pycocotools (for very large cases)")
    args, _ = ap.parse_known_args(argv)

    t = time.perf_counter()
    case = make_synthetic_coco(num_images=args.images, num_classes=args.classes, gt_per_image=args.gt_per_image,
                               fp_per_image=args.fp_per_image, seed=args.seed)
    ds = case.dataset
    gen_s = time.perf_counter() - t
    print(f"case: {ds.num_images} images, {len(ds.categories)} classes, {len(ds.gt)} GT "
          f"({int(ds.gt.iscrowd.sum())} crowd), {len(ds.pred)} predictions; seed {args.seed}; "
          f"generated in {gen_s:.1f} s; best of {args.repeats}")

    cold = _cold_compile_seconds()
    rows = []  # (name, first s, best s, best cpu s, stats)
    first, best, cpu, ours = _run_ours(ds, args.repeats)
    rows.append(("vecexplore", first, best, cpu, ours.stats))
    ref_stats, ref_precision = None, None
    if not args.no_pycocotools:
        first, best, cpu, ev = _run_pycocotools(case.coco_gt(), case.coco_results(), args.repeats)
        ref_stats, ref_precision = np.asarray(ev.stats), ev.eval["precision"]
        rows.append(("pycocotools", first, best, cpu, ref_stats))
    first, best, cpu, ev = _run_faster(case.coco_gt(), case.coco_results(), args.repeats)
    rows.append(("faster-coco-eval", first, best, cpu, np.asarray(ev.stats)))

    base = next((r[2] for r in rows if r[0] == "pycocotools"), None)
    print(f"{'implementation':<18} {'best (s)':>9} {'first (s)':>10} {'best cpu (s)':>13} {'vs pycocotools':>15} "
          f"{'max |Δ stats|':>14}")
    for name, first_s, best_s, cpu_s, stats in rows:
        speed = f"{base / best_s:.1f}×" if base else "n/a"
        delta = f"{np.max(np.abs(stats - ref_stats)):.1e}" if ref_stats is not None else "n/a"
        print(f"{name:<18} {best_s:>9.3f} {first_s:>10.3f} {cpu_s:>13.3f} {speed:>15} {delta:>14}")
    print(f"vecexplore vs faster-coco-eval: {rows[-1][2] / rows[0][2]:.1f}× faster wall, "
          f"{rows[-1][3] / rows[0][3]:.1f}× CPU (best of {args.repeats})")
    print(f"vecexplore first call with an empty numba cache (compile, tiny input): {cold:.2f} s")
    if ref_precision is not None:
        print(f"vecexplore max |Δ precision array| vs pycocotools: {np.max(np.abs(ours.precision - ref_precision)):.1e}")
    print("AP / AP50 / AR100 (vecexplore): " + " / ".join(f"{ours.as_dict()[k]:.4f}" for k in ("AP", "AP50", "AR100")))


def _run_ours(ds, repeats):
    return _best(lambda: coco_metrics_of(ds), repeats)


if __name__ == "__main__":
    main(sys.argv[1:])
