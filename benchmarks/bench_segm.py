"""COCO segm (mask) evaluation speed: vecexplore vs pycocotools vs faster-coco-eval.

One random COCO-like instance-segmentation case (``segm_synth``; default 2,000
images of about 640×480, 80 classes, polygon / RLE / crowd-RLE ground truth,
compressed-RLE and polygon results with ``bbox``), the same input for all three.

Two measurements:

* **in-process** — from parsed JSON (Python dicts) to the 12 stats: for the COCO
  APIs ``loadRes`` + ``evaluate`` + ``accumulate`` + ``summarize`` (their
  polygon → RLE conversion happens inside ``evaluate``); for vecexplore
  ``coco_to_dataset`` (polygon → RLE) + ``segm_metrics_of``. Each repeat gets a
  fresh copy of the dicts (pycocotools converts them in place), copied outside
  the timing.
* **whole process** — a fresh interpreter reading the two JSON files and
  printing the stats: ``vecexplore evaluate --json`` (which also computes the
  bbox metrics, outcomes, sweep and confusion matrix) vs a minimal
  pycocotools / faster-coco-eval script.

Every row reports the largest difference of its 12 stats from pycocotools'.

    python benchmarks/run.py segm [--images=2000] [--classes=80] [--repeats=2] [--seed=0] [--no-pycocotools]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from segm_synth import make_segm_case

_PYCOCO_SCRIPT = """
import contextlib, io, json, sys
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[1]); dt = gt.loadRes(sys.argv[2])
    ev = COCOeval(gt, dt, "segm"); ev.evaluate(); ev.accumulate(); ev.summarize()
print(json.dumps([float(v) for v in ev.stats]))
"""
_FASTER_SCRIPT = """
import json, sys
from faster_coco_eval import COCO, COCOeval_faster
quiet = lambda *a, **k: None
gt = COCO(sys.argv[1], print_function=quiet); dt = gt.loadRes(sys.argv[2])
ev = COCOeval_faster(gt, dt, "segm", print_function=quiet); ev.evaluate(); ev.accumulate(); ev.summarize()
print(json.dumps([float(v) for v in ev.stats]))
"""
KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _timed(make_input, run, repeats: int):
    """(best wall s, best cpu s, last result); ``make_input`` runs outside the timing."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        args = make_input()
        t, c = time.perf_counter(), time.process_time()
        out = run(*args)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus), out


def _ours(gt, results):
    from vecexplore.eval.segm import segm_metrics_of
    from vecexplore.io.coco import coco_to_dataset

    return np.asarray(segm_metrics_of(coco_to_dataset(gt, results, clip=False)).stats)


def _pycocotools(gt, results):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = gt
        cg.createIndex()
        ev = COCOeval(cg, cg.loadRes(results), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def _faster(gt, results):
    from faster_coco_eval import COCO, COCOeval_faster

    quiet = lambda *a, **k: None  # noqa: E731
    cg = COCO(gt, print_function=quiet)
    ev = COCOeval_faster(cg, cg.loadRes(results), "segm", print_function=quiet)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return np.asarray(ev.stats)


def _process(cmd: list[str]) -> tuple[float, float, str]:
    """(wall s, CPU s of the child, its stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out.stdout


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="bench_segm")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--classes", type=int, default=80)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-pycocotools", action="store_true", help="skip pycocotools (for very large cases)")
    args, _ = ap.parse_known_args(argv)

    t = time.perf_counter()
    gt, results = make_segm_case(args.seed, num_images=args.images, num_classes=args.classes, p_crowd=0.01,
                                 bbox="yes", size_scale=8.0)
    n_poly = sum(isinstance(a["segmentation"], list) for a in gt["annotations"])
    print(f"case: {len(gt['images'])} images, {len(gt['categories'])} classes, {len(gt['annotations'])} GT "
          f"({n_poly} polygons, {sum(a['iscrowd'] for a in gt['annotations'])} crowd RLE), "
          f"{len(results)} results; seed {args.seed}; generated in {time.perf_counter() - t:.1f} s")

    fresh = lambda: (copy.deepcopy(gt), copy.deepcopy(results))  # noqa: E731
    _ours(*fresh())  # numba kernels compiled / loaded from cache before timing
    rows = [("vecexplore", *_timed(fresh, _ours, args.repeats))]
    if not args.no_pycocotools:
        rows.append(("pycocotools", *_timed(fresh, _pycocotools, args.repeats)))
    rows.append(("faster-coco-eval", *_timed(fresh, _faster, args.repeats)))
    ref = next((r[3] for r in rows if r[0] == "pycocotools"), None)
    base = next((r[1] for r in rows if r[0] == "pycocotools"), None)
    print(f"in-process, parsed JSON → stats (best of {args.repeats})")
    print(f"{'implementation':<18} {'wall (s)':>9} {'cpu (s)':>9} {'vs pycocotools':>15} {'max |Δ stats|':>14}")
    for name, wall, cpu, stats in rows:
        speed = f"{base / wall:.1f}×" if base else "n/a"
        delta = f"{np.max(np.abs(stats - ref)):.1e}" if ref is not None else "n/a"
        print(f"{name:<18} {wall:>9.3f} {cpu:>9.3f} {speed:>15} {delta:>14}")

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "gt.json").write_text(json.dumps(gt))
        (d / "pred.json").write_text(json.dumps(results))
        files = [str(d / "gt.json"), str(d / "pred.json")]
        procs = []
        wall, cpu, _ = _process([sys.executable, "-m", "vecexplore", "evaluate", "--gt", files[0], "--pred",
                                 files[1], "--json", str(d / "m.json")])
        doc = json.loads((d / "m.json").read_text())
        procs.append(("vecexplore evaluate", wall, cpu, np.array([doc["coco_segm"][k] for k in KEYS], float)))
        if not args.no_pycocotools:
            wall, cpu, out = _process([sys.executable, "-c", _PYCOCO_SCRIPT, *files])
            procs.append(("pycocotools", wall, cpu, np.array(json.loads(out.strip().splitlines()[-1]))))
        wall, cpu, out = _process([sys.executable, "-c", _FASTER_SCRIPT, *files])
        procs.append(("faster-coco-eval", wall, cpu, np.array(json.loads(out.strip().splitlines()[-1]))))
    pbase = next((c for n, _, c, _ in procs if n == "pycocotools"), None)
    print("whole process, JSON files → stats (one run each; vecexplore also computes bbox metrics and outcomes)")
    print(f"{'command':<20} {'wall (s)':>9} {'cpu (s)':>9} {'cpu vs pycocotools':>19} {'max |Δ stats|':>14}")
    for name, wall, cpu, stats in procs:
        speed = f"{pbase / cpu:.1f}×" if pbase else "n/a"
        delta = f"{np.max(np.abs(stats - ref)):.1e}" if ref is not None else "n/a"
        print(f"{name:<20} {wall:>9.3f} {cpu:>9.3f} {speed:>19} {delta:>14}")
    print("mask AP / AP50 / AR100 (vecexplore): " + " / ".join(f"{v:.4f}" for v in rows[0][3][[0, 1, 8]]))


if __name__ == "__main__":
    main(sys.argv[1:])
