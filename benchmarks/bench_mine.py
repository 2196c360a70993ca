"""``vecexplore mine``: a 500-image query against a 1M-vector pool, exact and with cached IVF indexes.

``python benchmarks/run.py mine [--pool N] [--dim D] [--query Q] [--run R] [--top T]
[--centers C] [--spread S] [--repeats K]``

Clustered L2-normalised float32 vectors (embeddings of real images are clustered;
structureless random vectors in 512 dimensions have no meaningful nearest
neighbour): C centres (default N / 100), each vector a centre plus Gaussian noise
of norm about S (default 1.0) times the centre's, normalised. A pool of N (default
1,000,000 × 512) and a run of R (default 20,000) from the same centres; the first
Q (default 500) run images are the selection, each a noisy copy of a pool vector
(so there is something to find: "planted found" is the share of those pool vectors
in the top T).

Two rows, the queries alternated ``--repeats`` times (medians):

- **exact**: ``IndexFlatIP`` over the pool and over the run (every search exact);
- **IVF + table, cached**: what ``mine`` keeps for a pool beyond
  :data:`~vecexplore.mining.index.EXACT_LIMIT` vectors: its 8-bit IVF index (exact
  re-rank of the shortlist) and the table of the run's nearest images of every pool
  image (:mod:`vecexplore.mining.neighbors`, an exact search done ahead), built once
  (**build s**, one-off), written to an index cache and loaded back from it
  (**load s**), as a later ``mine`` finds them.

Columns: **search s**, the candidate stage's search of the pool by the Q selected
vectors; **recall@k**, the share of its exact k nearest the IVF search returns;
**query s**, the whole ranking (:func:`vecexplore.mining.rank.rank_pool`: candidate
search, run index, vote), what a query costs once the indexes exist; **top
overlap**, the share of the exact ranking's top T in this row's top T.
The target is a query under 1 s at 1M.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from vecexplore.mining.index import build_index, cached_index
from vecexplore.mining.neighbors import cached_run_neighbors
from vecexplore.mining.rank import DEFAULT_NEIGHBORS, rank_pool


def _clustered(rng, n: int, centers: np.ndarray, spread: float) -> np.ndarray:
    dim = centers.shape[1]
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x *= spread / np.sqrt(dim)
    x += centers[rng.integers(0, len(centers), n)]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _recall(ids: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, exact, strict=True)]))


def main(argv: list[str]) -> None:
    import faiss

    parser = argparse.ArgumentParser(prog="bench_mine")
    parser.add_argument("--pool", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--query", type=int, default=500)
    parser.add_argument("--run", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=1000)
    parser.add_argument("--centers", type=int, default=None, help="default pool / 100")
    parser.add_argument("--spread", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    n_centers = args.centers or max(1, args.pool // 100)
    centers = rng.standard_normal((n_centers, args.dim), dtype=np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    pool = _clustered(rng, args.pool, centers, args.spread)
    run = _clustered(rng, args.run, centers, args.spread)
    near = rng.choice(args.pool, args.query, replace=False)
    noisy = pool[near] + 0.5 * rng.standard_normal((args.query, args.dim), dtype=np.float32) / np.sqrt(args.dim)
    run[: args.query] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    in_sel = np.zeros(args.run, bool)
    in_sel[: args.query] = True
    queries = run[in_sel]
    k = max(16, int(np.ceil(16 * args.top / args.query)))  # what the candidate stage asks first
    print(f"pool {args.pool:,} × {args.dim} and run {args.run:,} around {n_centers:,} centres (spread "
          f"{args.spread}); query {args.query} selected images, top {args.top}; faiss {faiss.__version__} on "
          f"{faiss.omp_get_max_threads()} threads; medians of {args.repeats}")

    t = time.perf_counter()
    flat_pool, flat_run = build_index(pool, exact_limit=args.pool), build_index(run, exact_limit=args.run)
    flat_built = time.perf_counter() - t
    names = [f"{i:040x}" for i in range(args.pool)]  # stand-ins for the pool images' content digests
    with tempfile.TemporaryDirectory(prefix="bench-mine-index-") as folder:
        common = {"directory": folder, "model_key": "bench"}
        t = time.perf_counter()
        cached_index(pool, digests=names, exact_limit=args.pool - 1, **common)
        ivf_built = time.perf_counter() - t
        t = time.perf_counter()
        cached_run_neighbors(pool, run, DEFAULT_NEIGHBORS, pool_digests=names, **common)
        table_built = time.perf_counter() - t
        t = time.perf_counter()  # what a later mine does: find both in the cache
        ivf_pool = cached_index(pool, digests=names, exact_limit=args.pool - 1, **common)
        table = cached_run_neighbors(pool, run, DEFAULT_NEIGHBORS, pool_digests=names, **common)
        loaded = time.perf_counter() - t
    rows = {"exact (IndexFlatIP)": (flat_pool, flat_run, None, flat_built, None),
            "IVF SQ8 + table, cached": (ivf_pool, flat_run, table, ivf_built + table_built, loaded)}
    for pool_index, *_ in rows.values():
        pool_index.search(queries[:8], k)  # warm (threads, pages)
    times = {name: {"search": [], "query": []} for name in rows}
    found, rankings, stages = {}, {}, {}
    for _ in range(args.repeats):
        for name, (pool_index, run_index, neighbours, _, _) in rows.items():
            t = time.perf_counter()
            found[name] = pool_index.search(queries, k)[1]
            times[name]["search"].append(time.perf_counter() - t)
            t = time.perf_counter()
            rankings[name] = rank_pool(run, in_sel, pool, top=args.top, pool_index=pool_index, run_index=run_index,
                                       run_neighbors=neighbours)
            times[name]["query"].append(time.perf_counter() - t)
            stages[name] = rankings[name].timings
    exact_name = next(iter(rows))
    exact_top = set(rankings[exact_name].pool_idx.tolist())
    print(f"{'index':<26}{'build s':>9}{'load s':>8}{'search s':>10}{f'recall@{k}':>11}{'query s':>9}"
          f"{'top overlap':>13}{'planted found':>15}  query stages (s, last repeat)")
    for name, (pool_index, run_index, neighbours, built, load) in rows.items():
        search, query = np.median(times[name]["search"]), np.median(times[name]["query"])
        recall = _recall(found[name], found[exact_name])
        overlap = len(exact_top & set(rankings[name].pool_idx.tolist())) / len(exact_top)
        planted = float(np.isin(near, rankings[name].pool_idx).mean())
        parts = ", ".join(f"{stage} {sec:.3f}" for stage, sec in stages[name].items())
        kinds = f"pool {pool_index.kind}, run {'table' if neighbours is not None else run_index.kind}"
        print(f"{name:<26}{built:>9.2f}{'–' if load is None else f'{load:.2f}':>8}{search:>10.3f}{recall:>11.3f}"
              f"{query:>9.3f}{overlap:>13.3f}{planted:>15.3f}  {parts} ({kinds})")
    cand = pool[: rankings[exact_name].n_candidates]
    t = time.perf_counter()
    for start in range(0, len(cand), 4096):  # the product an exact vote cannot do without
        cand[start:start + 4096] @ run.T
    gemm = time.perf_counter() - t
    print(f"build s: one-off (exact: copying the pool and the run into FAISS; cached: the IVF index {ivf_built:.1f} s "
          f"+ the run's {DEFAULT_NEIGHBORS} nearest images of every pool image {table_built:.1f} s, exact, both "
          "written to the index cache); load s: reading both back, as every later mine does")
    print(f"bound of the exact vote: the NumPy product of its {len(cand):,} candidates × {args.run:,} run images "
          f"alone takes {gemm:.3f} s here")
    print("target: a query (the whole ranking, indexes cached) < 1 s for a 500-image query on 1M vectors")
