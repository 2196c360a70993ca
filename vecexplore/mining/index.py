"""Nearest-neighbour search over L2-normalised vectors, through FAISS.

Cosine similarity of unit vectors is their inner product, so every index here is
an inner-product index. Up to :data:`EXACT_LIMIT` vectors the search is exact
(``IndexFlatIP``: one matrix product per query batch); beyond, an inverted-file
index (``IndexIVFFlat``, ``√n`` lists trained by k-means on a seeded sample of
64 vectors per list, :data:`DEFAULT_NPROBE` lists probed), whose recall
``benchmarks/bench_mine.py`` and ``tests/test_mine_index.py`` report. Never a
hand-written search.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from vecexplore.errors import ConfigError

log = logging.getLogger(__name__)

#: Largest number of vectors searched exactly; more get an IVF index.
EXACT_LIMIT = 1_000_000
#: Inverted lists probed per query by an IVF index.
DEFAULT_NPROBE = 32
_TRAIN_PER_LIST = 64


def _faiss():
    from vecexplore.extras import require

    require("mine", what="mine")
    import faiss

    return faiss


@dataclass(frozen=True)
class VectorIndex:
    """A FAISS index over ``n`` vectors of dimension ``dim``; ids are row numbers.

    Attributes:
        index: the FAISS index.
        n: vectors in it.
        dim: their dimension.
        kind: ``"flat"`` (exact) or ``"ivf"`` (approximate).
    """

    index: object
    n: int
    dim: int
    kind: str

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar indexed vectors of each query (``k`` is capped at ``n``).

        Args:
            queries: ``(q, dim)`` float32, L2-normalised.

        Returns:
            ``(similarities, ids)``, both ``(q, k)``, most similar first (FAISS's order;
            an IVF index may return fewer hits: their id is -1 and similarity -inf).
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be (q, {self.dim}) float32, got {queries.shape}")
        k = min(int(k), self.n)
        if k < 1 or len(queries) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        sims, ids = self.index.search(queries, k)
        sims[ids < 0] = -np.inf
        return sims, ids.astype(np.int64, copy=False)


def build_index(vectors: np.ndarray, *, exact_limit: int = EXACT_LIMIT, nprobe: int = DEFAULT_NPROBE,
                seed: int = 0) -> VectorIndex:
    """An inner-product index over ``vectors`` (``(n, dim)`` float32, L2-normalised).

    Exact (``IndexFlatIP``) for ``n <= exact_limit``; else ``IndexIVFFlat`` with
    ``round(√n)`` lists trained on a sample drawn with ``seed``.

    Raises:
        ConfigError: no vectors, or faiss is not installed (the ``mine`` extra).
    """
    faiss = _faiss()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ConfigError(f"cannot index {vectors.shape[0] if vectors.ndim == 2 else 0} vectors; need at least one")
    n, dim = vectors.shape
    if n <= exact_limit:
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return VectorIndex(index, n, dim, "flat")
    nlist = max(1, round(math.sqrt(n)))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    sample = vectors[np.sort(rng.choice(n, size=min(n, nlist * _TRAIN_PER_LIST), replace=False))]
    index.cp.seed = seed
    log.info("training an IVF index: %d lists on %d of %d vectors", nlist, len(sample), n)
    index.train(sample)
    index.add(vectors)
    index.nprobe = min(nprobe, nlist)
    return VectorIndex(index, n, dim, "ivf")


__all__ = ["DEFAULT_NPROBE", "EXACT_LIMIT", "VectorIndex", "build_index"]
