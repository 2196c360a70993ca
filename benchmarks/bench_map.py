"""Map speed and memory: vecexplore's map vs umap-learn + hdbscan called the plain way.

For each N, on the same synthetic clustered embeddings (D=512 float32, unit
norm, ``--clusters`` Gaussian blobs of uneven size + 10 % uniform background):

* ours: ``build_map``: kNN searched once (exact ≤ 5k distinct points, else
  pynndescent), UMAP 2-D and UMAP 10-D on that graph, HDBSCAN on the 10-D space;
* baseline: ``umap.UMAP(n_components=2, metric="cosine").fit_transform``,
  ``umap.UMAP(n_components=10, metric="cosine").fit_transform`` (each searches
  its own neighbours), ``hdbscan.HDBSCAN().fit`` on the 10-D output.

Both sides get the same seed and the same resolved parameters (n_neighbors,
min_dist 0.1 / 0.0, min_cluster_size, min_samples), so the table measures the
design (one neighbour search, exact when small), not different settings.
``CPU s`` is the process CPU time of the timed part (all threads): on a shared
machine it moves less than wall time. Each (N, method) runs in a fresh process, so peak RSS (``ru_maxrss`` of that
process: interpreter, libraries and data included) does not mix. Each process
first maps a small input to compile numba's kernels; that is the ``warm s``
column, excluded from the rest. ``ARI`` compares the two labelings; ``ARI
planted`` compares each with the planted blobs (background excluded).

``--fit-sample=S`` adds a third row per N, ``sampled``: ``build_map`` with
``max_fit_points=S`` (fit on a seeded sample of S, transform the rest; ``place s``
is that transform, in parallel), whose ``ARI`` is against ``ours``, the full fit.
``trust`` is ``sklearn.manifold.trustworthiness`` of each 2-D map (10 neighbours,
cosine on the embeddings) on one seeded random subset of ``--trust-points`` rows.

    python benchmarks/run.py map [--sizes=10000,100000] [--clusters=20] [--seed=0]
                                 [--fit-sample=20000] [--trust-points=5000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

DIM = 512
WARM_N = 4500  # ≥ 4096: umap-learn's pynndescent path


def synthetic_embeddings(
    n: int, *, clusters: int, seed: int, dim: int = DIM
) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) float32 unit vectors and planted labels (-1 = background)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    n_bg = n // 10
    share = rng.dirichlet(np.full(clusters, 2.0))
    labels = np.concatenate([rng.choice(clusters, size=n - n_bg, p=share), np.full(n_bg, -1)])
    x = rng.standard_normal((n, dim), dtype=np.float32)
    inl = labels >= 0
    x[inl] *= np.float32(1.0 / np.sqrt(dim))  # noise of norm ~1 around each centre
    x[inl] += centres[labels[inl]]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    perm = rng.permutation(n)
    return x[perm], labels[perm]


def _ours(x: np.ndarray, seed: int, fit_sample: int | None = None) -> tuple[dict, np.ndarray, dict, np.ndarray]:
    from vecexplore.mapping import MapConfig, build_map

    cfg = MapConfig(seed=seed) if fit_sample is None else MapConfig(seed=seed, max_fit_points=fit_sample)
    fmap = build_map(x, cfg)
    return dict(fmap.timings), np.asarray(fmap.labels), _params(fmap.config_used), np.asarray(fmap.xy)


def _params(cfg) -> dict:
    return {
        "n_neighbors": cfg.n_neighbors,
        "min_dist": cfg.min_dist,
        "cluster_min_dist": cfg.cluster_min_dist,
        "min_cluster_size": cfg.min_cluster_size,
        "min_samples": cfg.min_samples,
        "cluster_dims": cfg.cluster_dims,
    }


def _baseline(x: np.ndarray, seed: int, p: dict) -> tuple[dict, np.ndarray, np.ndarray]:
    import hdbscan
    import umap
    import umap.umap_

    knn_time = [0.0]
    search = umap.umap_.nearest_neighbors

    def timed_search(*args, **kwargs):  # time umap-learn's own search inside fit
        start = time.perf_counter()
        out = search(*args, **kwargs)
        knn_time[0] += time.perf_counter() - start
        return out

    umap.umap_.nearest_neighbors = timed_search
    t = {"knn": 0.0}
    try:
        for key, dims, min_dist in (
            ("umap_2d", 2, p["min_dist"]),
            ("umap_cluster", p["cluster_dims"], p["cluster_min_dist"]),
        ):
            before, start = knn_time[0], time.perf_counter()
            out = umap.UMAP(
                n_components=dims,
                metric="cosine",
                n_neighbors=p["n_neighbors"],
                min_dist=min_dist,
                random_state=seed,
            ).fit_transform(x)
            t[key] = time.perf_counter() - start - (knn_time[0] - before)
            if dims == 2:
                xy = out
        t["knn"] = knn_time[0]
    finally:
        umap.umap_.nearest_neighbors = search
    start = time.perf_counter()
    labels = (
        hdbscan.HDBSCAN(min_cluster_size=p["min_cluster_size"], min_samples=p["min_samples"])
        .fit(out)
        .labels_
    )
    t["hdbscan"] = time.perf_counter() - start
    return t, np.asarray(labels), np.asarray(xy)


def _run_case(
    method: str, n: int, clusters: int, seed: int, out: Path, params: dict | None,
    fit_sample: int | None = None,
) -> None:
    """Child process: warm numba, then time one method on one size; print JSON."""
    warnings.filterwarnings("ignore")
    from vecexplore.mapping import MapConfig
    from vecexplore.mapping.knn import EXACT_KNN_MAX_N

    # Warm on a small input that takes the same code paths as the timed one:
    # umap-learn searches exactly below 4096 points, we up to EXACT_KNN_MAX_N.
    start = time.perf_counter()
    small, _ = synthetic_embeddings(WARM_N if n >= 4096 else 1000, clusters=clusters, seed=seed + 1)
    if method in ("ours", "sampled"):
        from vecexplore.mapping import build_map

        build_map(
            small, MapConfig(seed=seed, knn_method="exact" if n <= EXACT_KNN_MAX_N else "nndescent")
        )
        if method == "sampled":  # the transform's kernels (a fit of >= 4096 as at N)
            build_map(small, MapConfig(seed=seed, max_fit_points=small.shape[0] - 300))
    else:
        _baseline(small, seed, _params(MapConfig(seed=seed).resolved(small.shape[0])))
    warm = time.perf_counter() - start
    x, _ = synthetic_embeddings(n, clusters=clusters, seed=seed)
    cpu, wall = time.process_time(), time.perf_counter()
    if method == "ours":
        timings, labels, params, xy = _ours(x, seed)
    elif method == "sampled":
        timings, labels, params, xy = _ours(x, seed, fit_sample)
    else:
        timings, labels, xy = _baseline(x, seed, params)
    timings["total"] = time.perf_counter() - wall  # wall time of the whole map (fits may overlap)
    cpu = time.process_time() - cpu + _children_cpu()
    np.save(out, labels)
    np.save(out.with_suffix(".xy.npy"), xy)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {"timings": timings, "cpu": cpu, "warm": warm, "peak_mb": peak_mb, "params": params}
        )
    )


def _children_cpu() -> float:
    """CPU seconds of the (forked) worker processes this process has waited for."""
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return c.ru_utime + c.ru_stime


def _child(method: str, n: int, args, out: Path, params: dict | None) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--case",
        method,
        "--sizes",
        str(n),
        "--clusters",
        str(args.clusters),
        "--seed",
        str(args.seed),
        "--out",
        str(out),
        "--params",
        json.dumps(params or {}),
        "--fit-sample",
        str(args.fit_sample),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} N={n} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_map")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fit-sample", type=int, default=0,
                        help="also map with max_fit_points=S (fit a sample, transform the rest); 0 = no")
    parser.add_argument("--trust-points", type=int, default=5000)
    parser.add_argument("--case", choices=["ours", "baseline", "sampled"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.case:
        _run_case(
            args.case,
            sizes[0],
            args.clusters,
            args.seed,
            Path(args.out),
            json.loads(args.params) or None,
            args.fit_sample or None,
        )
        return

    from sklearn.manifold import trustworthiness
    from sklearn.metrics import adjusted_rand_score

    head = (
        f"{'N':>8} {'method':<9} {'kNN s':>7} {'UMAP-2D s':>9} {'UMAP-10D s':>10} {'HDBSCAN s':>9} "
        f"{'place s':>7} {'total s':>8} {'CPU s':>7} {'peak MB':>8} {'warm s':>7} {'clusters':>8} {'ARI':>5} {'ARI planted':>11} {'trust':>6}"
    )
    print(
        f"D={DIM}, {args.clusters} planted clusters + 10% background, seed {args.seed}; one fresh process per row"
    )
    print(head)
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            x, planted = synthetic_embeddings(n, clusters=args.clusters, seed=args.seed)
            sub = np.sort(np.random.default_rng(args.seed).choice(n, min(n, args.trust_points), replace=False))
            methods = ("ours", "sampled", "baseline") if args.fit_sample else ("ours", "baseline")
            results, labels, trust = {}, {}, {}
            for method in methods:
                path = Path(tmp) / f"{method}_{n}.npy"
                results[method] = _child(
                    method, n, args, path, results.get("ours", {}).get("params")
                )
                labels[method] = np.load(path)
                xy = np.load(path.with_suffix(".xy.npy"))
                trust[method] = trustworthiness(x[sub], xy[sub], n_neighbors=10, metric="cosine")
                vs_ours = adjusted_rand_score(labels["ours"], labels[method])
                print(f"  {method}: {results[method]['timings']['total']:.1f} s, trust {trust[method]:.3f}, "
                      f"ARI vs ours {vs_ours:.3f}", flush=True)
            inl = planted >= 0
            for method in methods:
                other = "baseline" if method == "ours" else "ours"
                agree = adjusted_rand_score(labels[method], labels[other])
                r, t = results[method], results[method]["timings"]
                total = t["total"]  # wall time: ours may run the two UMAP fits side by side
                truth = adjusted_rand_score(planted[inl], labels[method][inl])
                k = int(labels[method].max()) + 1
                # Below 4096 points umap-learn computes all distances inside fit (UMAP columns).
                knn = "in fit" if method == "baseline" and n < 4096 else f"{t['knn']:.1f}"
                print(
                    f"{n:>8,} {method:<9} {knn:>7} {t['umap_2d']:9.1f} {t['umap_cluster']:10.1f} "
                    f"{t['hdbscan']:9.1f} {t.get('place', 0.0):7.1f} {total:8.1f} {r['cpu']:7.1f} {r['peak_mb']:8.0f} "
                    f"{r['warm']:7.1f} {k:>8} {agree:5.2f} {truth:11.2f} {trust[method]:6.3f}",
                    flush=True,
                )
            print(f"{'':>8} params: {results['ours']['params']}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
