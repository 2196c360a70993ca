"""``vecexplore mine``: a 500-image query against a 1M-vector pool, exact and IVF.

``python benchmarks/run.py mine [--pool N] [--dim D] [--query Q] [--run R] [--top T]``

Random L2-normalised float32 vectors: a pool of N (default 1,000,000 × 512),
a run of R (default 20,000) of which the first Q (default 500) are the
selection, each selection vector a noisy copy of a pool vector (so there is
something to find). Times, with the pool index built beforehand (as a query
finds it): the FAISS search of the pool by the Q selection vectors (the candidate
stage's one search) and the whole ranking (:func:`vecexplore.mining.rank.rank_pool`:
candidates, run index, vote). The same for an IVF index (what pools beyond
:data:`~vecexplore.mining.index.EXACT_LIMIT` get), with its recall@k against the
exact search. Prints a table; the target is under 1 s for both at 1M.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vecexplore.mining.index import build_index
from vecexplore.mining.rank import rank_pool


def _unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def main(argv: list[str]) -> None:
    import faiss

    parser = argparse.ArgumentParser(prog="bench_mine")
    parser.add_argument("--pool", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--query", type=int, default=500)
    parser.add_argument("--run", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=1000)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    pool = _unit(rng.standard_normal((args.pool, args.dim), dtype=np.float32))
    run = _unit(rng.standard_normal((args.run, args.dim), dtype=np.float32))
    near = rng.choice(args.pool, args.query, replace=False)
    run[: args.query] = _unit(pool[near] + 0.5 * rng.standard_normal((args.query, args.dim), dtype=np.float32)
                              / np.sqrt(args.dim))
    in_sel = np.zeros(args.run, bool)
    in_sel[: args.query] = True
    queries = run[in_sel]
    k = max(16, int(np.ceil(16 * args.top / args.query)))
    print(f"pool {args.pool:,} × {args.dim}, run {args.run:,}, query {args.query} selected images, top {args.top}; "
          f"faiss {faiss.__version__} on {faiss.omp_get_max_threads()} threads")
    rows = []
    exact_ids = None
    for kind, limit in (("exact (IndexFlatIP)", args.pool), ("IVF (IndexIVFFlat)", args.pool - 1)):
        t = time.perf_counter()
        index = build_index(pool, exact_limit=limit)
        built = time.perf_counter() - t
        index.search(queries[:8], k)  # warm (threads, pages)
        t = time.perf_counter()
        _, ids = index.search(queries, k)
        search = time.perf_counter() - t
        t = time.perf_counter()
        ranking = rank_pool(run, in_sel, pool, top=args.top, pool_index=index)
        whole = time.perf_counter() - t
        if exact_ids is None:
            exact_ids, recall = ids, 1.0
        else:
            recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ids, exact_ids, strict=True)]))
        found = float(np.isin(near, ranking.pool_idx).mean())
        rows.append((kind, built, search, whole, recall, found, ranking.timings))
        del index
    t = time.perf_counter()
    for start in range(0, args.pool, 131_072):  # the matrix product an exact search cannot do without
        queries @ pool[start:start + 131_072].T
    gemm = time.perf_counter() - t
    print(f"{'index':<22}{'build s':>9}{'search s':>10}{'ranking s':>11}{f'recall@{k}':>11}{'planted found':>15}"
          f"  ranking stages (s)")
    for kind, built, search, whole, recall, found, stages in rows:
        parts = ", ".join(f"{name} {sec:.3f}" for name, sec in stages.items())
        print(f"{kind:<22}{built:>9.2f}{search:>10.3f}{whole:>11.3f}{recall:>11.3f}{found:>15.3f}  {parts}")
    print(f"bound of any exact search: the NumPy product queries @ pool.T alone takes {gemm:.3f} s here")
    print("target: search and ranking < 1 s for a 500-image query on 1M vectors")
