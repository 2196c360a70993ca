"""Ranking clusters by a paired bootstrap (``vecexplore compare``), against a per-resample loop.

``python benchmarks/run.py compare [--images N] [--clusters K] [--n-boot B]``

Synthetic per-image error rates of two models for N images in K clusters (plus
noise). Times :func:`vecexplore.compare.changes.slice_changes` (vectorised
resampling in chunks, every cluster) and, as the reference, a plain Python loop
of B resamples per cluster on a few clusters (scaled to all K). Prints a table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from vecexplore.compare.changes import slice_changes


def _loop_ci(a, b, n_boot, seed):
    rng = np.random.default_rng(seed)
    d = b - a
    means = [d[rng.integers(0, d.size, d.size)].mean() for _ in range(n_boot)]
    return np.quantile(means, [0.025, 0.975])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_compare")
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--clusters", type=int, default=200)
    parser.add_argument("--n-boot", type=int, default=2000)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    n, k = args.images, args.clusters
    labels = rng.integers(-1, k, n)
    err_a = np.where(rng.uniform(size=n) < 0.5, 0.0, rng.beta(0.8, 2.0, n))
    err_b = err_a.copy()
    flip = rng.uniform(size=n) < 0.2  # B differs on 20 % of images, by no change on average ...
    err_b[flip] = rng.permutation(err_a[flip])
    err_b = np.clip(err_b + 0.1 * (labels % 7 == 0), 0, 1)  # ... except on every 7th cluster: worse
    slices = pd.DataFrame({"cluster": np.arange(k), "members": [[c] for c in range(k)]})
    start = time.perf_counter()
    rows = slice_changes(slices, labels, err_a, err_b, n_boot=args.n_boot)
    vec = time.perf_counter() - start
    few = 3
    start = time.perf_counter()
    for c in range(few):
        sel = labels == c
        _loop_ci(err_a[sel], err_b[sel], args.n_boot, c)
    loop = (time.perf_counter() - start) / few * k
    print(f"{n:,} images, {k} clusters (~{n // (k + 1):,} images each), {args.n_boot} resamples, 95 %")
    print(f"{'method':<44}{'seconds':>10}")
    print(f"{'slice_changes (vectorised, all clusters)':<44}{vec:>10.2f}")
    print(f"{'Python loop per resample (scaled to all)':<44}{loop:>10.2f}")
    planted = sum(1 for c in range(k) if c % 7 == 0)
    found = sum(r["sure"] and r["delta"] > 0 and r["cluster"] % 7 == 0 for r in rows)
    print(f"speed-up {loop / vec:.1f}x; planted worse clusters found sure: {found} of {planted}; "
          f"others called sure: {sum(r['sure'] and r['cluster'] % 7 != 0 for r in rows)} of {k - planted}")
