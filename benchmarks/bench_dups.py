"""Near-duplicate search: time, peak memory and recall of planted pairs, vecexplore's blocked exact
search beside scikit-learn's brute-force radius search (the reference, on the smaller sizes).

Data: N random unit vectors (D = 512, CLIP ViT-B/32's width), 1 % of them with a perturbed copy
(cosine ≈ 0.98) and 5 % of them in a train split. The search is exact, so its time is the N²·D
matrix product (measured on two cores: 20k images 2.6 s, 50k 16.5 s; 100k ~5 TFLOP, about a
minute; FAISS would be the way past that);
its memory is bounded by the block (``BLOCK_ELEMENTS`` similarities, 64 MB), not N².

``python benchmarks/run.py dups [--sizes=10000,50000,100000] [--reference-up-to=20000]``
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np


def _arg(argv, name, default):
    for a in argv:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return default


def _data(n: int, d: int = 512, seed: int = 0):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, d)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    k = max(1, n // 100)
    src = rng.choice(n - k, k, replace=False)
    v[n - k:] = v[src] + rng.normal(scale=0.2 / np.sqrt(d), size=(k, d)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v, {(int(s), n - k + i) for i, s in enumerate(src)}, rng.random(n) < 0.05


def main(argv: list[str]) -> None:
    from vecexplore.analysis.duplicates import DEFAULT_THRESHOLD, similar_pairs

    sizes = [int(s) for s in _arg(argv, "sizes", "10000,50000,100000").split(",")]
    ref_up_to = int(_arg(argv, "reference-up-to", "20000"))
    print(f"{'N':>8} {'pairs':>7} {'recall':>7} {'vecexplore s':>13} {'peak MB':>8} {'sklearn s':>10} {'same':>5}")
    for n in sizes:
        v, planted, train = _data(n)
        tracemalloc.start()
        start = time.perf_counter()
        a, b, _, _ = similar_pairs(v, threshold=DEFAULT_THRESHOLD, train=train)
        took = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        got = set(zip(a.tolist(), b.tolist(), strict=True))
        recall = len(planted & got) / len(planted)
        ref_s, same = "–", "–"
        if n <= ref_up_to:
            from sklearn.neighbors import NearestNeighbors

            start = time.perf_counter()
            nn = NearestNeighbors(metric="cosine", algorithm="brute").fit(v)
            _, ind = nn.radius_neighbors(v, radius=1 - DEFAULT_THRESHOLD)
            ref_s = f"{time.perf_counter() - start:.2f}"
            ref = {(i, int(j)) for i, row in enumerate(ind) for j in row if i < j}
            same = "yes" if ref == got else f"no ({len(ref ^ got)})"
        print(f"{n:>8} {len(got):>7} {recall:>7.3f} {took:>13.2f} {peak:>8.0f} {ref_s:>10} {same:>5}")
