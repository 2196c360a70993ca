"""COCO bbox evaluation speed: vecexplore vs ultrafast-pycocotools (the fastest
bit-exact evaluator we know), pycocotools and faster-coco-eval.

One synthetic COCO-scale case (``coco_synth``; default 5,000 images, 80
classes, ~27k GT, ~47k predictions), the same input for all, written to JSON
files. Three sets of rows, every tool in each:

* **whole process**: each tool as a fresh process on the JSON files, rounds
  alternating between the tools (min and median wall time of ``--rounds``, and the
  median CPU time, user + system, of the process and its threads): ``vecexplore
  evaluate --json`` (load, evaluate, report, JSON) vs a script doing ``COCO(gt)``,
  ``loadRes(pred)``, ``evaluate()``, ``accumulate()``, ``summarize()`` with each
  COCO API. pycocotools (~10 s a round) takes part in the first
  ``--pycocotools-rounds`` rounds only;
* **in process, cold**: a fresh interpreter timing its imports + load + evaluate
  (``load_dataset`` + ``evaluate(...).coco`` for ours; the COCO API calls for the
  others), in the same rounds;
* **in process, warm**: load + evaluate from the files again in this interpreter
  (best of ``--repeats``; pycocotools once), and the evaluation alone from
  already-built inputs (COCO objects / our Boxes).

Each row reports the largest difference of its 12 stats from pycocotools'.
vecexplore's modules are byte-compiled first (``compileall``), as an installed
package's are, so that an environment with ``PYTHONDONTWRITEBYTECODE`` does not
time our Python compiler against the others' cached bytecode.

    python benchmarks/run.py coco [--images=5000] [--classes=80] [--repeats=3] [--rounds=7] [--seed=0]
                                  [--gt-per-image=5.6] [--fp-per-image=5.0] [--no-pycocotools]
                                  [--pycocotools-rounds=2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def _run_coco_api(package: str, gt_dict, results, repeats):
    """Best-of-``repeats`` COCOeval (evaluate, accumulate, summarize) of a pycocotools-API package."""
    import importlib

    COCO = importlib.import_module(f"{package}.coco").COCO
    COCOeval = importlib.import_module(f"{package}.cocoeval").COCOeval
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


#: A whole COCO-API evaluation from the files, as one fresh process (the module name is argv[1]).
_API_SCRIPT = """
import contextlib, io, json, sys, time
t0 = time.perf_counter()
mod = {"pycocotools": ("pycocotools.coco", "pycocotools.cocoeval", "COCOeval"),
       "ultrafast-pycocotools": ("ultrafast_pycocotools.coco", "ultrafast_pycocotools.cocoeval", "COCOeval"),
       "faster-coco-eval": ("faster_coco_eval", "faster_coco_eval", "COCOeval_faster")}[sys.argv[1]]
import importlib
COCO = importlib.import_module(mod[0]).COCO
COCOeval = getattr(importlib.import_module(mod[1]), mod[2])
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[2])
    dt = gt.loadRes(sys.argv[3])
    ev = COCOeval(gt, dt, "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
print(json.dumps({"stats": [float(v) for v in ev.stats], "inner": time.perf_counter() - t0}))
"""

#: Our in-process evaluation in a fresh interpreter: imports + load + evaluate (+ COCO stats).
_OURS_COLD = """
import json, sys, time
t0 = time.perf_counter()
from vecexplore.eval.evaluate import evaluate
from vecexplore.io import DatasetSource, load_dataset
ds = load_dataset(DatasetSource(gt=sys.argv[1], pred=sys.argv[2]), check_images=False)
ev = evaluate(ds)
stats = ev.coco.stats.tolist()
print(json.dumps({"stats": stats, "inner": time.perf_counter() - t0}))
"""


def _timed(cmd: list[str]) -> tuple[float, float, str]:
    """(wall s, CPU s of the child incl. its threads, stdout) of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), res.stdout


_STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _process_rows(files: Path, rounds: int, pycocotools_rounds: int):
    """Fresh processes, tools alternating each round: {tool: [(wall s, cpu s), ...]} for the
    whole process, {tool: [s, ...]} for the cold in-process part, {tool: stats}."""
    gt, pred = str(files / "gt.json"), str(files / "pred.json")
    out_json = str(files / "vecexplore.json")
    tools = ["vecexplore", "ultrafast-pycocotools", "faster-coco-eval", "pycocotools"]
    whole = {t: [] for t in tools}
    cold = {t: [] for t in tools}
    stats = {}
    for r in range(rounds):
        for tool in tools:
            if tool == "pycocotools" and r >= pycocotools_rounds:
                continue
            if tool == "vecexplore":
                wall, cpu, _ = _timed([sys.executable, "-m", "vecexplore", "evaluate", "--gt", gt, "--pred", pred,
                                       "--json", out_json])
                doc = json.loads(Path(out_json).read_text())
                stats[tool] = np.array([doc["coco"][k] for k in _STAT_KEYS], np.float64)
                _, _, out = _timed([sys.executable, "-c", _OURS_COLD, gt, pred])
            else:
                wall, cpu, out = _timed([sys.executable, "-c", _API_SCRIPT, tool, gt, pred])
            whole[tool].append((wall, cpu))
            doc = json.loads(out.strip().splitlines()[-1])
            cold[tool].append(doc["inner"])
            stats.setdefault(tool, np.asarray(doc["stats"]))
    return {t: v for t, v in whole.items() if v}, {t: v for t, v in cold.items() if v}, stats


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
    ap.add_argument("--rounds", type=int, default=7, help="fresh-process rounds (tools alternate)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gt-per-image", type=float, default=5.6)
    ap.add_argument("--fp-per-image", type=float, default=5.0)
    ap.add_argument("--no-pycocotools", action="store_true", help="skip pycocotools (for very large cases)")
    ap.add_argument("--pycocotools-rounds", type=int, default=2,
                    help="fresh-process rounds pycocotools takes part in (~10 s each)")
    args, _ = ap.parse_known_args(argv)

    t = time.perf_counter()
    case = make_synthetic_coco(num_images=args.images, num_classes=args.classes, gt_per_image=args.gt_per_image,
                               fp_per_image=args.fp_per_image, seed=args.seed)
    ds = case.dataset
    gen_s = time.perf_counter() - t
    print(f"case: {ds.num_images} images, {len(ds.categories)} classes, {len(ds.gt)} GT "
          f"({int(ds.gt.iscrowd.sum())} crowd), {len(ds.pred)} predictions; seed {args.seed}; "
          f"generated in {gen_s:.1f} s")
    from vecexplore.eval.native import backend

    print(f"vecexplore kernels: {backend()} (VECEXPLORE_KERNELS=numba for the numba ones)")

    ref_stats, ref_precision = None, None
    if not args.no_pycocotools:
        _, pyco_best, pyco_cpu, ev = _run_coco_api("pycocotools", case.coco_gt(), case.coco_results(), 1)
        ref_stats, ref_precision = np.asarray(ev.stats), ev.eval["precision"]

    def delta(stats) -> str:
        return f"{np.max(np.abs(np.asarray(stats) - ref_stats)):.1e}" if ref_stats is not None else "n/a"

    _byte_compile_ours()
    with tempfile.TemporaryDirectory() as tmp:
        files = Path(tmp)
        (files / "gt.json").write_text(json.dumps(case.coco_gt()))
        (files / "pred.json").write_text(json.dumps(case.coco_results()))
        whole, cold, stats = _process_rows(files, args.rounds, 0 if args.no_pycocotools else args.pycocotools_rounds)
        warm = {"vecexplore": _best(lambda: _load_and_evaluate(files), args.repeats)}
        for tool in ("ultrafast-pycocotools", "faster-coco-eval", "pycocotools"):
            if tool != "pycocotools" or not args.no_pycocotools:
                warm[tool] = _best(lambda t=tool: _api_from_files(t, files), 1 if tool == "pycocotools" else args.repeats)

    print(f"\nwhole process (fresh processes, tools alternating, {args.rounds} rounds, pycocotools in the first "
          f"{0 if args.no_pycocotools else min(args.pycocotools_rounds, args.rounds)}; vecexplore = "
          "`vecexplore evaluate --json` incl. report; others = load + evaluate + accumulate + summarize; "
          "cpu = user + system of the process and its threads)")
    print(f"{'implementation':<24} {'min (s)':>8} {'median (s)':>11} {'median cpu (s)':>15} {'vs ultrafast':>13} "
          f"{'max |Δ stats|':>14}")
    uf_med = statistics.median(w for w, _ in whole["ultrafast-pycocotools"])
    for tool, runs in whole.items():
        walls = [w for w, _ in runs]
        med = statistics.median(walls)
        print(f"{tool:<24} {min(walls):>8.3f} {med:>11.3f} {statistics.median(c for _, c in runs):>15.3f} "
              f"{uf_med / med:>12.2f}× {delta(stats[tool]):>14}")
    print("(vs ultrafast: ultrafast's median / this median; > 1 = faster than ultrafast)")
    print("\nin process, cold interpreter (imports + load + evaluate, same rounds)")
    print(f"{'implementation':<24} {'min (s)':>8} {'median (s)':>11} {'vs ultrafast':>13}")
    uf_cold = statistics.median(cold["ultrafast-pycocotools"])
    for tool, times in cold.items():
        print(f"{tool:<24} {min(times):>8.3f} {statistics.median(times):>11.3f} "
              f"{uf_cold / statistics.median(times):>12.2f}×")
    print(f"\nin process, warm (load + evaluate from the files again, best of {args.repeats}; pycocotools once)")
    print(f"{'implementation':<24} {'best (s)':>9} {'best cpu (s)':>13} {'vs ultrafast':>13} {'max |Δ stats|':>14}")
    uf_warm = warm["ultrafast-pycocotools"][1]
    for tool, (_, best_s, cpu_s, st) in warm.items():
        print(f"{tool:<24} {best_s:>9.3f} {cpu_s:>13.3f} {uf_warm / best_s:>12.2f}× {delta(st):>14}")

    rows = []  # (name, first s, best s, best cpu s, stats)
    first, best, cpu, ours = _run_ours(ds, args.repeats)
    rows.append(("vecexplore", first, best, cpu, ours.stats))
    if ref_stats is not None:
        rows.append(("pycocotools", pyco_best, pyco_best, pyco_cpu, ref_stats))
    first, best, cpu, ev = _run_coco_api("ultrafast_pycocotools", case.coco_gt(), case.coco_results(), args.repeats)
    rows.append(("ultrafast-pycocotools", first, best, cpu, np.asarray(ev.stats)))
    first, best, cpu, ev = _run_faster(case.coco_gt(), case.coco_results(), args.repeats)
    rows.append(("faster-coco-eval", first, best, cpu, np.asarray(ev.stats)))

    print(f"\nin process, warm, evaluation only from built inputs (best of {args.repeats}; pycocotools: one call)")
    print(f"{'implementation':<24} {'best (s)':>9} {'first (s)':>10} {'best cpu (s)':>13} {'max |Δ stats|':>14}")
    for name, first_s, best_s, cpu_s, st in rows:
        print(f"{name:<24} {best_s:>9.3f} {first_s:>10.3f} {cpu_s:>13.3f} {delta(st):>14}")
    if backend() == "numba":
        print(f"vecexplore first call with an empty numba cache (compile, tiny input): {_cold_compile_seconds():.2f} s")
    if ref_precision is not None:
        print(f"vecexplore max |Δ precision array| vs pycocotools: {np.max(np.abs(ours.precision - ref_precision)):.1e}")
    print("AP / AP50 / AR100 (vecexplore): " + " / ".join(f"{ours.as_dict()[k]:.4f}" for k in ("AP", "AP50", "AR100")))


def _byte_compile_ours() -> None:
    """Write vecexplore's bytecode caches (what installing it does) so no row times compiling."""
    import compileall

    import vecexplore

    compileall.compile_dir(str(Path(vecexplore.__file__).parent), quiet=1)


def _load_and_evaluate(files: Path):
    from vecexplore.eval.evaluate import evaluate
    from vecexplore.io import DatasetSource, load_dataset

    ds = load_dataset(DatasetSource(gt=files / "gt.json", pred=files / "pred.json"), check_images=False)
    return evaluate(ds).coco.stats


def _api_from_files(tool: str, files: Path):
    """A COCO-API package's load + evaluate + accumulate + summarize from the files."""
    import importlib

    mod = {"pycocotools": ("pycocotools.coco", "pycocotools.cocoeval", "COCOeval"),
           "ultrafast-pycocotools": ("ultrafast_pycocotools.coco", "ultrafast_pycocotools.cocoeval", "COCOeval"),
           "faster-coco-eval": ("faster_coco_eval", "faster_coco_eval", "COCOeval_faster")}[tool]
    COCO = importlib.import_module(mod[0]).COCO
    COCOeval = getattr(importlib.import_module(mod[1]), mod[2])
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(files / "gt.json"))
        dt = gt.loadRes(str(files / "pred.json"))
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def _run_ours(ds, repeats):
    return _best(lambda: coco_metrics_of(ds), repeats)


if __name__ == "__main__":
    main(sys.argv[1:])
