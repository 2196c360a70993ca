"""One failure mode, one slice: the planted modes of ``tests/_modes.py`` across sizes and seeds.

For each (size, seed) the generator writes an evaluated detection dataset with
four planted modes (darkness on even seeds / fog on odd ones with misses, a
textured background with false positives, blur with badly placed boxes, a
colour cast with class confusions; each on 5–15 % of the images), the run is
built end to end with the tiny random-weight CLIP (as the tests), and the
ranked slices (``info --json`` ``slices``: the failure findings of
``recommendations.json``) are graded: for each mode, the top-K slices (K = 4)
whose images are mostly that mode's, with rank, precision and recall. A mode
is ``ok`` when exactly one top-K slice describes it, with precision ≥ 0.8 and
recall ≥ 0.6 (the acceptance test's criterion).

    python benchmarks/run.py modes [--sizes=300,1000,3000] [--seeds=0,1,2] [--work=DIR]

``--work`` keeps datasets and runs (default: a temporary directory); an existing
run there is re-graded without rebuilding, and ``--regrade`` recomputes its
slices and recommendations with the current code (no re-embedding).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _modes import MODES, generate, score

TINY_MODEL = "vecexplore-tiny-vit"


def _run(base: Path, n: int, seed: int, regrade: bool) -> tuple[list[dict], dict, float]:
    from vecexplore.builder import BuildConfig, build_run
    from vecexplore.embed.pipeline import EmbedConfig
    from vecexplore.io.source import DatasetSource
    from vecexplore.mapping import MapConfig
    from vecexplore.store import Run

    data, out = base / f"data-{n}-{seed}", base / f"run-{n}-{seed}"
    if not (data / "planted.json").exists():
        planted = generate(data, n=n, seed=seed)
        (data / "planted.json").write_text(json.dumps(planted))
    planted = json.loads((data / "planted.json").read_text())
    start = time.perf_counter()
    if not (out / "manifest.json").exists():
        build_run(BuildConfig(
            source=DatasetSource(gt=data / "annotations.json", pred=data / "predictions.json"), out=out,
            embed=EmbedConfig(model=TINY_MODEL, weights="random", device="cpu", num_workers=0),
            map=MapConfig(seed=seed), cache_dir=base / "cache", scan_workers=0))
        recs = json.loads((out / "recommendations.json").read_text())
    elif regrade:
        recs = _regrade(Run(out))
    else:
        recs = json.loads((out / "recommendations.json").read_text())
    return recs, planted, time.perf_counter() - start


def _regrade(run) -> list[dict]:
    from vecexplore.analysis.recommend import recommend
    from vecexplore.analysis.slicing import failure_slice_table, read_tree
    from vecexplore.eval.evaluate import evaluate

    op = run.metrics["operating_point"]
    ev = evaluate(run.dataset(), iou=op["iou"], confidence=op["confidence"])
    table = failure_slice_table(run, ev, run.images["cluster"].to_numpy(), read_tree(run), objects=ev.objects,
                                class_names=list(ev.class_names))
    return [r.to_json() for r in recommend(run, ev, clusters=table)]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_modes")
    parser.add_argument("--sizes", default="300,1000,3000")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--work", default=None)
    parser.add_argument("--regrade", action="store_true")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    from vecexplore.info import SLICE_KINDS

    base = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-modes-"))
    rows, ok_modes, ok_runs, total = [], 0, 0, 0
    print(f"{'size':>5} {'seed':>4} {'mode':8} {'share':>5}  {'rank':>4} {'prec':>5} {'rec':>5}  {'kind':9} "
          f"{'slices':>6}  verdict")
    for n in map(int, args.sizes.split(",")):
        for seed in map(int, args.seeds.split(",")):
            recs, planted, seconds = _run(base, n, seed, args.regrade)
            slices = [r for r in recs if r["kind"] in SLICE_KINDS]
            graded = score(slices, {m: np.asarray(v, np.int64) - 1 for m, v in planted.items()}, n_images=n)
            all_ok = True
            for mode in MODES:
                g = graded[mode]
                hit = g["hits"][0] if g["hits"] else (None, 0.0, 0.0, "-")
                variant = ("dark" if seed % 2 == 0 else "fog") if mode == "murk" else mode
                print(f"{n:5d} {seed:4d} {variant:8} {len(planted[mode]) / n:5.3f}  {hit[0] or '-':>4} "
                      f"{hit[1]:5.2f} {hit[2]:5.2f}  {hit[3]:9} {len(g['hits']):6d}  "
                      f"{'ok' if g['ok'] else 'FAIL'}")
                ok_modes += g["ok"]
                all_ok &= g["ok"]
                total += 1
            ok_runs += all_ok
            rows.append((n, seed, seconds))
            print(f"{'':5} {'':4} ({seconds:.0f} s)", flush=True)
    print(f"\nmodes ok: {ok_modes} / {total}; configurations with every mode ok: {ok_runs} / {len(rows)}")
    print(f"work directory: {base}")
