"""The object-level map: the planted object mode's acceptance, and a build at scale.

Acceptance (``--sizes``, ``--seeds``): ``tests/_object_modes.py`` writes images with
several objects each where small objects of one class are never found, on any
background; the run is built with ``--level both`` and the tiny random-weight CLIP
(as the tests). For the object slices (GT objects) and the image slices
(``clusters.parquet``) the table shows the slice that best isolates the planted
objects / the images holding one (best F1): its rank, precision and recall.

Scale (``--scale=N``, 0 to skip): the same generator at about N mapped objects
(N / 10 images: ~5.5 GT + ~5 counted predictions each), built with ``--level both``;
prints each stage's seconds, the peak RSS of this process (the build runs in it;
the scan inline) and of its largest child (the decode worker), and the time to open the run and read what an
object-level view needs (objects table, object embeddings, object slices).

    python benchmarks/run.py objects [--sizes=150,220,300] [--seeds=0,1,2] [--scale=100000] [--work=DIR]
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _object_modes import build_and_measure, generate

TINY_MODEL = "vecexplore-tiny-vit"


def _acceptance(base: Path, sizes, seeds) -> None:
    print(f"{'images':>6} {'seed':>4} {'objects':>7} {'planted':>7} | {'obj rank':>8} {'obj P':>6} {'obj R':>6} | "
          f"{'img rank':>8} {'img P':>6} {'img R':>6} | {'s':>6}")
    for n, seed in zip(sizes, seeds, strict=True):
        start = time.perf_counter()
        m = build_and_measure(base, n=n, seed=seed, model=TINY_MODEL)
        o, i = m["object"], m["image"]
        print(f"{n:>6} {seed:>4} {m['n_objects']:>7} {m['n_planted']:>7} | {o['rank']!s:>8} {o['precision']:>6.2f} "
              f"{o['recall']:>6.2f} | {i['rank']!s:>8} {i['precision']:>6.2f} {i['recall']:>6.2f} | "
              f"{time.perf_counter() - start:>6.1f}", flush=True)


def _scale(base: Path, n_objects: int) -> None:
    import numpy as np
    import pandas as pd

    from vecexplore.builder import BuildConfig, build_run
    from vecexplore.embed.pipeline import EmbedConfig
    from vecexplore.io.source import DatasetSource
    from vecexplore.mapping import MapConfig
    from vecexplore.store.layout import OBJECT_EMBEDDINGS, OBJECT_SLICES

    n_images = max(10, n_objects // 10)
    data = base / f"scale-{n_images}"
    start = time.perf_counter()
    generate(data, n=n_images, seed=0)
    gen_s = time.perf_counter() - start
    start = time.perf_counter()
    result = build_run(BuildConfig(
        source=DatasetSource(gt=data / "annotations.json", pred=data / "predictions.json", images=data / "images"),
        out=base / f"scale-run-{n_images}", embed=EmbedConfig(model=TINY_MODEL, weights="random", device="cpu"),
        map=MapConfig(seed=0), cache_dir=base / "cache", scan_workers=0, level="both"), progress=False)
    build_s = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    start = time.perf_counter()
    objects = pd.read_parquet(result.out / "objects.parquet")
    vectors = np.load(result.out / OBJECT_EMBEDDINGS, mmap_mode="r")
    slices = pd.read_parquet(result.out / f"{OBJECT_SLICES}.parquet")
    open_s = time.perf_counter() - start
    print(f"images {n_images}, objects mapped {result.n_objects_mapped} ({vectors.shape}), object clusters "
          f"{result.n_object_clusters}, object slices {len(slices)}, objects table rows {len(objects)}")
    print(f"{'stage':>16} {'s':>8}")
    for stage, s in result.timings.items():
        print(f"{stage:>16} {s:>8.1f}")
    print(f"{'generate data':>16} {gen_s:>8.1f}\n{'build total':>16} {build_s:>8.1f}\n"
          f"{'open for view':>16} {open_s:>8.2f}\n{'peak RSS MB':>16} {peak_mb:>8.0f}\n"
          f"{'worker RSS MB':>16} {child_mb:>8.0f}", flush=True)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="objects")
    p.add_argument("--sizes", default="150,220,300")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--scale", type=int, default=0)
    p.add_argument("--work", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    base = args.work or Path(tempfile.mkdtemp(prefix="vx-bench-objects-"))
    base.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if sizes:
        _acceptance(base, sizes, seeds)
    if args.scale:
        _scale(base, args.scale)
