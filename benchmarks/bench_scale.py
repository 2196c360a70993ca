"""Evaluation at scale: ``vecexplore evaluate`` on 1M images / 10M predictions.

A :mod:`coco_synth` case (COCO-like structure: ~5.6 GT per image, jittered true
positives, duplicates, crowd, background false positives; the background rate
set so the predictions come to ``--preds``) is written once to ``--cache`` by
:mod:`scale_synth` (GT JSON; results as JSON, JSON Lines and Parquet, holding
the same float64 values) and reused while the parameters are the same. Each
format is then evaluated by ``vecexplore evaluate --json`` as a fresh
process; the table gives its wall time, CPU time and peak RSS (``wait4`` of that
process), the file size, and whether its 12 COCO stats equal the JSON run's.

    python benchmarks/run.py scale [--images=1000000] [--preds=10000000] [--formats=json,jsonl,parquet]
                                   [--cache=~/.cache/vecexplore-bench/scale] [--seed=0] [--rounds=1]

Targets (issue 15): <= 60 s and a peak within the 24 GB of the reference machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coco_synth import make_synthetic_coco
from scale_synth import write_gt_json, write_results

ROOT = Path(__file__).resolve().parents[1]
_EXT = {"json": "json", "jsonl": "jsonl", "parquet": "parquet"}


def _case_dir(cache: Path, images: int, preds: int, seed: int) -> Path:
    return cache / f"coco_{images}img_{preds}pred_s{seed}"


def _fp_rate(images: int, preds: int, seed: int) -> float:
    """The background false positives per image that bring the predictions to ``preds``
    (the rest scales with the images: measured on a 20k-image sample)."""
    n = min(images, 20_000)
    base = len(make_synthetic_coco(num_images=n, fp_per_image=0.0, seed=seed).dataset.pred.score) / n
    return max(0.0, (preds / images - base) / 0.97)  # 3% of the images get no predictions


def ensure_case(cache: Path, images: int, preds: int, seed: int, formats: list[str]) -> tuple[Path, dict]:
    """Generate (once) and return the case folder and its counts."""
    d = _case_dir(cache, images, preds, seed)
    meta_path = d / "case.json"
    missing = [f for f in formats if not (d / f"pred.{_EXT[f]}").exists()]
    if meta_path.exists() and not missing and (d / "gt.json").exists():
        return d, json.loads(meta_path.read_text())
    d.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    synth = make_synthetic_coco(num_images=images, fp_per_image=_fp_rate(images, preds, seed), seed=seed)
    ds = synth.dataset
    t_gen = time.perf_counter() - t
    t = time.perf_counter()
    if not (d / "gt.json").exists():
        write_gt_json(ds, d / "gt.json")
    for fmt in formats:
        if not (d / f"pred.{_EXT[fmt]}").exists():
            write_results(ds, d / f"pred.{_EXT[fmt]}", fmt)
    meta = {"images": len(ds.images.image_id), "gt": len(ds.gt.xywh), "preds": len(ds.pred.score),
            "generate_s": round(t_gen, 1), "write_s": round(time.perf_counter() - t, 1)}
    meta_path.write_text(json.dumps(meta))
    print(f"generated {meta['images']:,} images, {meta['gt']:,} GT, {meta['preds']:,} predictions in {d} "
          f"({meta['generate_s']} s generating, {meta['write_s']} s writing)", flush=True)
    return d, meta


def run_evaluate(gt: Path, pred: Path, out: Path) -> dict:
    """One ``vecexplore evaluate --json`` process: wall s, CPU s, peak RSS (GiB), stats."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "vecexplore", "evaluate", "--gt", str(gt), "--pred", str(pred),
                             "--json", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"vecexplore evaluate failed ({proc.returncode}) on {pred}:\n{err[-3000:]}")
    stats = json.loads(out.read_text())["coco"]
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_gib": usage.ru_maxrss / 2**20, "stats": stats}


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="run.py scale")
    ap.add_argument("--images", type=int, default=1_000_000)
    ap.add_argument("--preds", type=int, default=10_000_000)
    ap.add_argument("--formats", default="json,jsonl,parquet")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "vecexplore-bench" / "scale")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args(argv)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    bad = [f for f in formats if f not in _EXT]
    if bad:
        raise SystemExit(f"--formats: unknown {bad}; have {list(_EXT)}")
    d, meta = ensure_case(args.cache.expanduser(), args.images, args.preds, args.seed, formats)
    print(f"case: {meta['images']:,} images, {meta['gt']:,} GT boxes, {meta['preds']:,} predictions "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in formats:
            pred = d / f"pred.{_EXT[fmt]}"
            runs = [run_evaluate(d / "gt.json", pred, Path(tmp) / f"{fmt}.json") for _ in range(args.rounds)]
            best = min(runs, key=lambda r: r["wall"])
            rows.append((fmt, pred.stat().st_size / 2**20, best, max(r["rss_gib"] for r in runs)))
            print(f"  {fmt}: {best['wall']:.1f} s", flush=True)
    ref = rows[0][2]["stats"]
    print(f"\n{'results file':<14}{'size MiB':>10}{'wall s':>9}{'CPU s':>8}{'peak RSS GiB':>14}  stats vs {rows[0][0]}")
    for fmt, size, best, rss in rows:
        diff = max(abs(best["stats"][k] - ref[k]) for k in ref)
        same = "identical" if diff == 0 else f"max diff {diff:.3g}"
        print(f"{fmt:<14}{size:>10.0f}{best['wall']:>9.1f}{best['cpu']:>8.1f}{rss:>14.2f}  {same}")
    print(f"\ntarget: <= 60 s, peak RSS < 24 GiB; GT file {(d / 'gt.json').stat().st_size / 2**20:.0f} MiB; "
          f"AP {ref['AP']:.4f}" + (f"; best of {args.rounds}" if args.rounds > 1 else ""))
