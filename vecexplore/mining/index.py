"""Nearest-neighbour search over L2-normalised vectors, through FAISS.

Cosine similarity of unit vectors is their inner product, so every index here is
an inner-product index. Up to :data:`EXACT_LIMIT` vectors the search is exact
(``IndexFlatIP``: one matrix product per query batch). Beyond, an inverted-file
index with 8-bit scalar quantisation (``IndexIVFScalarQuantizer``, ``QT_8bit``):
``round(4·√n)`` lists (at most one per :data:`_TRAIN_PER_LIST` vectors), trained by
k-means (:data:`_KMEANS_ITERATIONS` iterations) on a seeded sample of
:data:`_TRAIN_PER_LIST` vectors per list, :data:`DEFAULT_NPROBE` lists probed.
Its shortlist of :data:`RERANK_FACTOR`·k hits per query is re-ranked by the exact
inner products with the float32 vectors (when the index was given them), so the
similarities it returns are exact and the 8-bit codes cost no order among them.
Its recall against ``IndexFlatIP`` is measured by ``tests/test_mine_index.py``
and ``benchmarks/bench_mine.py``. Never a hand-written search.

An IVF index takes a while to build (about a minute for 1M × 512 on two cores), so
:func:`cached_index` keeps it on disk, keyed by the content of what it indexes,
and later calls load it (see :func:`index_key`).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vecexplore.errors import ConfigError

log = logging.getLogger(__name__)

#: Largest number of vectors searched exactly; more get an IVF index.
EXACT_LIMIT = 100_000
#: Inverted lists probed per query by an IVF index.
DEFAULT_NPROBE = 16
#: An IVF search asks for this many times k hits, re-ranked exactly.
RERANK_FACTOR = 2
_TRAIN_PER_LIST = 40
_KMEANS_ITERATIONS = 10
_ADD_BATCH = 65_536
#: Bumped whenever what an index file holds, or how it is built, changes: old files are then ignored.
INDEX_FORMAT = 1


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
        vectors: ``(n, dim) float32``, the indexed vectors, with which an ``"ivf"``
            index re-ranks its shortlist exactly (None: FAISS's own similarities).
    """

    index: object
    n: int
    dim: int
    kind: str
    vectors: np.ndarray | None = None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar indexed vectors of each query (``k`` is capped at ``n``).

        Args:
            queries: ``(q, dim)`` float32, L2-normalised.

        Returns:
            ``(similarities, ids)``, both ``(q, k)``, most similar first (FAISS's order, or
            the exact re-rank's, ties kept in FAISS's order; an IVF index may return fewer
            hits: their id is -1 and similarity -inf).
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be (q, {self.dim}) float32, got {queries.shape}")
        k = min(int(k), self.n)
        if k < 1 or len(queries) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if self.kind != "ivf" or self.vectors is None:
            sims, ids = self.index.search(queries, k)
            sims[ids < 0] = -np.inf
            return sims, ids.astype(np.int64, copy=False)
        _, ids = self.index.search(queries, min(RERANK_FACTOR * k, self.n))
        ids = ids.astype(np.int64, copy=False)
        found = ids >= 0
        sims = np.einsum("qd,qkd->qk", queries, self.vectors[np.where(found, ids, 0)])
        sims[~found] = -np.inf
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        sims = np.take_along_axis(sims, order, axis=1)
        ids = np.take_along_axis(ids, order, axis=1)
        ids[~np.isfinite(sims)] = -1
        return sims, ids


def _check_vectors(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ConfigError(f"cannot index {vectors.shape[0] if vectors.ndim == 2 else 0} vectors; need at least one")
    return vectors


def ivf_lists(n: int) -> int:
    """Inverted lists of an IVF index over ``n`` vectors: ``round(4·√n)``, at most ``n / 40``."""
    return max(1, min(round(4 * math.sqrt(n)), n // _TRAIN_PER_LIST))


def build_index(vectors: np.ndarray, *, exact_limit: int = EXACT_LIMIT, nprobe: int = DEFAULT_NPROBE,
                seed: int = 0, progress: bool = False) -> VectorIndex:
    """An inner-product index over ``vectors`` (``(n, dim)`` float32, L2-normalised).

    Exact (``IndexFlatIP``) for ``n <= exact_limit``; else an 8-bit IVF index (see the
    module docstring) trained on a sample drawn with ``seed``, which keeps a reference to
    ``vectors`` to re-rank with. ``progress``: a bar over the vectors added to the IVF lists.

    Raises:
        ConfigError: no vectors, or faiss is not installed (the ``mine`` extra).
    """
    from vecexplore.progress import progress_bar

    faiss = _faiss()
    vectors = _check_vectors(vectors)
    n, dim = vectors.shape
    if n <= exact_limit:
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return VectorIndex(index, n, dim, "flat")
    nlist = ivf_lists(n)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                          faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    sample = vectors[np.sort(rng.choice(n, size=min(n, nlist * _TRAIN_PER_LIST), replace=False))]
    index.cp.seed = seed
    index.cp.niter = _KMEANS_ITERATIONS
    log.info("training an IVF index: %d lists on %d of %d vectors", nlist, len(sample), n)
    index.train(sample)
    with progress_bar("indexing the pool", total=n, unit="vec", enabled=progress) as bar:
        for start in range(0, n, _ADD_BATCH):
            index.add(vectors[start:start + _ADD_BATCH])
            bar.advance(min(_ADD_BATCH, n - start))
    index.nprobe = min(nprobe, nlist)
    return VectorIndex(index, n, dim, "ivf", vectors)


def index_key(vectors: np.ndarray, *, model_key: str, digests: Sequence[str] | None = None,
              exact_limit: int = EXACT_LIMIT, seed: int = 0) -> str:
    """The name of the index over ``vectors`` embedded as ``model_key``: a hash of their
    content, the model key, their shape, the build settings and :data:`INDEX_FORMAT`.

    Args:
        digests: the content digest of the image of each row, in row order, when known:
            the same images in the same order under the same model are the same vectors,
            and hashing 40 characters a row is far quicker than hashing the vectors.
            None: the vectors' bytes are hashed.
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{INDEX_FORMAT}|{model_key}|{vectors.shape}|{exact_limit}|{seed}|{_TRAIN_PER_LIST}|"
             f"{_KMEANS_ITERATIONS}|{'digests' if digests is not None else 'bytes'}|".encode())
    if digests is not None:
        if len(digests) != len(vectors):
            raise ValueError(f"digests: length {len(digests)} != {len(vectors)} vectors")
        h.update("\n".join(digests).encode())
    else:
        h.update(memoryview(np.ascontiguousarray(vectors, dtype=np.float32)).cast("B"))
    return h.hexdigest()


def save_index(index: VectorIndex, path: str | Path) -> None:
    """Write the FAISS index of ``index`` to ``path`` atomically (temp file + rename)."""
    from vecexplore.atomic import atomic_write

    faiss = _faiss()
    atomic_write(path, lambda fh: faiss.write_index(index.index, faiss.PyCallbackIOWriter(fh.write)))


def load_index(path: str | Path, vectors: np.ndarray, *, nprobe: int = DEFAULT_NPROBE) -> VectorIndex | None:
    """The IVF index saved at ``path`` over ``vectors``, or None (with a warning) when the
    file is missing, unreadable, or not an IVF index of ``len(vectors)`` vectors of
    their dimension."""
    faiss = _faiss()
    path = Path(path)
    if not path.is_file():
        return None
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        log.warning("%s: unreadable pool index (%s); building it again", path, str(exc).splitlines()[0])
        return None
    n, dim = vectors.shape
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None or index.ntotal != n or index.d != dim:
        log.warning("%s: not an IVF index of %d × %d vectors; building it again", path, n, dim)
        return None
    ivf.nprobe = min(nprobe, ivf.nlist)
    return VectorIndex(index, n, dim, "ivf", vectors)


def cached_index(vectors: np.ndarray, *, directory: str | Path, model_key: str,
                 digests: Sequence[str] | None = None, exact_limit: int = EXACT_LIMIT, seed: int = 0,
                 progress: bool = False) -> VectorIndex:
    """:func:`build_index` over ``vectors``, kept in ``directory`` when it is an IVF index.

    An exact index is built every time (it is a copy of the vectors); an IVF index is
    loaded from ``directory/<index_key>.faiss`` when there, else built and written there
    atomically, so a second search of the same vectors trains nothing. ``digests``: see
    :func:`index_key`.
    """
    vectors = _check_vectors(vectors)
    if len(vectors) <= exact_limit:
        return build_index(vectors, exact_limit=exact_limit, seed=seed)
    key = index_key(vectors, model_key=model_key, digests=digests, exact_limit=exact_limit, seed=seed)
    path = Path(directory) / f"{key}.faiss"
    index = load_index(path, vectors)
    if index is not None:
        log.info("index of %d vectors loaded from %s", len(vectors), path)
        return index
    index = build_index(vectors, exact_limit=exact_limit, seed=seed, progress=progress)
    save_index(index, path)
    log.info("index of %d vectors written to %s", len(vectors), path)
    return index


__all__ = [
    "DEFAULT_NPROBE",
    "EXACT_LIMIT",
    "INDEX_FORMAT",
    "RERANK_FACTOR",
    "VectorIndex",
    "build_index",
    "cached_index",
    "index_key",
    "ivf_lists",
    "load_index",
    "save_index",
]
