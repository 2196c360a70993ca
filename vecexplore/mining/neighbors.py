"""The vote's neighbours of every pool image, computed once per pool and run.

The vote (:mod:`vecexplore.mining.rank`) asks, for each candidate, its ``k``
nearest run images. That does not depend on the selection, only on the pool image
and the run; yet it is the costliest part of a query (thousands of candidates
against every run image, an exact FAISS search). For a large pool (one that gets
an IVF index) :func:`cached_run_neighbors` searches the run once for every pool
image, exactly, with the same ``IndexFlatIP`` the vote uses, and keeps the table
beside the pool's index; every later query of that pool against that run reads
its candidates' rows instead of searching. Its key is the pool's content, the
run's vectors and ``k``: another run, or ``--neighbors`` other than the table's,
searches as before.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vecexplore.mining.index import build_index

log = logging.getLogger(__name__)

#: Bumped whenever what a table file holds changes: old files are then ignored.
NEIGHBORS_FORMAT = 1
_BATCH = 16_384


@dataclass(frozen=True)
class RunNeighbors:
    """The ``k`` nearest run images of each pool image, most similar first.

    Attributes:
        sims: ``(n_pool, k) float32`` cosine similarities (-inf: none).
        ids: ``(n_pool, k) int64`` run rows (-1: none).
    """

    sims: np.ndarray
    ids: np.ndarray

    def __post_init__(self):
        if self.sims.ndim != 2 or self.sims.shape != self.ids.shape:
            raise ValueError(f"RunNeighbors: sims {self.sims.shape} and ids {self.ids.shape} must be one (n, k) shape")

    @property
    def k(self) -> int:
        return self.ids.shape[1]


def run_neighbors(pool_vectors: np.ndarray, run_vectors: np.ndarray, k: int, *,
                  progress: bool = False) -> RunNeighbors:
    """The ``k`` nearest run images of every pool vector (exact ``IndexFlatIP``, as the vote's search)."""
    from vecexplore.progress import progress_bar

    index = build_index(run_vectors, exact_limit=len(run_vectors))
    n = len(pool_vectors)
    k = min(k, len(run_vectors))
    sims = np.empty((n, k), np.float32)
    ids = np.empty((n, k), np.int64)
    with progress_bar("the run's neighbours of the pool", total=n, unit="img", enabled=progress) as bar:
        for start in range(0, n, _BATCH):
            stop = min(n, start + _BATCH)
            sims[start:stop], ids[start:stop] = index.search(pool_vectors[start:stop], k)
            bar.advance(stop - start)
    return RunNeighbors(sims, ids)


def neighbors_key(pool_digests: Sequence[str], run_vectors: np.ndarray, *, model_key: str, k: int) -> str:
    """A hash of the pool's content digests in order, the run's vectors, the model key and ``k``."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{NEIGHBORS_FORMAT}|{model_key}|{len(pool_digests)}|{run_vectors.shape}|{k}|".encode())
    h.update("\n".join(pool_digests).encode())
    h.update(memoryview(np.ascontiguousarray(run_vectors, dtype=np.float32)).cast("B"))
    return h.hexdigest()


def _load(path: Path, n_pool: int, n_run: int, k: int) -> RunNeighbors | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            table = RunNeighbors(np.asarray(z["sims"], np.float32), np.asarray(z["ids"], np.int64))
    except (OSError, ValueError, KeyError) as exc:
        log.warning("%s: unreadable neighbour table (%s); computing it again", path, exc)
        return None
    if table.ids.shape != (n_pool, k) or table.ids.max(initial=-1) >= n_run:
        log.warning("%s: not a table of %d × %d neighbours among %d run images; computing it again",
                    path, n_pool, k, n_run)
        return None
    return table


def cached_run_neighbors(pool_vectors: np.ndarray, run_vectors: np.ndarray, k: int, *,
                         pool_digests: Sequence[str], directory: str | Path, model_key: str,
                         progress: bool = False) -> RunNeighbors:
    """:func:`run_neighbors`, read from ``directory/<neighbors_key>.neighbors.npz`` when there,
    else computed and written there atomically (a file that cannot be read or does not fit is
    computed again, with a warning)."""
    from vecexplore.atomic import atomic_write

    if len(pool_digests) != len(pool_vectors):
        raise ValueError(f"pool_digests: length {len(pool_digests)} != {len(pool_vectors)} pool vectors")
    k = min(k, len(run_vectors))
    path = Path(directory) / f"{neighbors_key(pool_digests, run_vectors, model_key=model_key, k=k)}.neighbors.npz"
    if path.is_file():
        table = _load(path, len(pool_vectors), len(run_vectors), k)
        if table is not None:
            log.info("the run's neighbours of the pool loaded from %s", path)
            return table
    table = run_neighbors(pool_vectors, run_vectors, k, progress=progress)

    def write(fh) -> None:
        buf = io.BytesIO()  # np.savez seeks; the temp file is written in one go
        np.savez(buf, sims=table.sims, ids=table.ids.astype(np.int32 if len(run_vectors) < 2**31 else np.int64))
        fh.write(buf.getbuffer())

    atomic_write(path, write)
    log.info("the run's neighbours of the pool written to %s", path)
    return table


__all__ = ["NEIGHBORS_FORMAT", "RunNeighbors", "cached_run_neighbors", "neighbors_key", "run_neighbors"]
