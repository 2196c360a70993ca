"""Ranking an unlabeled pool by how much each image looks like a selection of a run
*rather than like the rest of the run*: a weighted k-nearest-neighbour vote.

Method (every search through :mod:`vecexplore.mining.index`, i.e. FAISS):

1. **Candidates.** The pool is indexed; each selected run image asks for its
   ``m`` most similar pool images, ``m = max(16, ⌈16·top / |selection|⌉)``,
   doubled until the union holds ``8·top`` images or the whole pool (the
   neighbourhoods of a tight selection overlap: widening keeps the vote from
   choosing among too few).
   Pool images near no selected image are never candidates: they would lose
   the vote below anyway (a weak match, with a vote well under 1/2, can be
   missed this way; the tests check that strong ones never are).
2. **Vote.** The run (every embedded image, selected or not) is indexed; each
   candidate takes its ``k`` nearest run images (``neighbors``, default 10) and
   its *vote* is the similarity-weighted share of them that are in the selection:
   ``vote = Σ_sel w_j / Σ_all w_j``, ``w_j = exp((s_j − s_1) / τ)`` with ``s_j``
   the cosine similarity to the j-th neighbour, ``s_1`` the nearest's and
   ``τ = 0.05``. A pool image that is near the failure cluster but nearer still to
   images the model gets right loses the vote: that is the contrast with the
   rest of the run that a centroid distance lacks. The neighbours do not depend on
   the selection: a table of them for every pool image
   (:mod:`vecexplore.mining.neighbors`), when given, is read instead of searched.
3. **Score.** ``score = vote · (1 + s̄) / 2`` where ``s̄`` is the mean similarity
   to its selected neighbours among the ``k`` (0 if none), so among equal votes
   the pool images closest to the selection come first. Scores lie in [0, 1].
   Ties are broken by pool order (stable sort).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from vecexplore.errors import ConfigError
from vecexplore.mining.index import VectorIndex, build_index
from vecexplore.mining.neighbors import RunNeighbors

#: Nearest run images that vote on each candidate.
DEFAULT_NEIGHBORS = 10
#: Temperature of the similarity weights of the vote.
TAU = 0.05
_MIN_PER_QUERY = 16
#: Candidates scored per result asked for (the candidate search widens until it has them).
_CANDIDATES_PER_RESULT = 8


@dataclass(frozen=True)
class Ranking:
    """The best ``top`` pool images, best first.

    Attributes:
        pool_idx: ``(t,) int64`` rows of the pool vectors given to :func:`rank_pool`.
        score: ``(t,) float32`` in [0, 1] (see the module docstring).
        vote: ``(t,) float32`` weighted share of selected images among the neighbours.
        similarity: ``(t,) float32`` mean cosine similarity to the selected neighbours.
        n_candidates: pool images that were scored.
        timings: seconds of ``index_pool``, ``search_pool``, ``index_run``, ``vote``.
    """

    pool_idx: np.ndarray
    score: np.ndarray
    vote: np.ndarray
    similarity: np.ndarray
    n_candidates: int
    timings: dict[str, float] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        n = len(self.pool_idx)
        for name in ("score", "vote", "similarity"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Ranking.{name}: length {len(getattr(self, name))} != {n}")


def _check(name: str, vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"{name} must be (n, dim), got shape {vectors.shape}")
    return vectors


def knn_vote(sims: np.ndarray, ids: np.ndarray, in_selection: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The vote and mean selected similarity of each query from its neighbours.

    Args:
        sims: ``(q, k)`` similarities to the neighbours, most similar first (-inf: none).
        ids: ``(q, k)`` run rows of the neighbours (-1: none).
        in_selection: ``(n_run,) bool``.

    Returns:
        ``(vote, similarity)``, both ``(q,) float32``.
    """
    valid = ids >= 0
    picked = valid & in_selection[np.where(valid, ids, 0)]
    top = np.where(valid[:, :1], sims[:, :1], 0.0)
    w = np.where(valid, np.exp((np.where(valid, sims, 0.0) - top) / TAU), 0.0)
    total = w.sum(axis=1)
    vote = np.divide((w * picked).sum(axis=1), total, out=np.zeros(len(w)), where=total > 0)
    n_sel = picked.sum(axis=1)
    mean_sim = np.divide(np.where(picked, sims, 0.0).sum(axis=1), n_sel, out=np.zeros(len(w)), where=n_sel > 0)
    return vote.astype(np.float32), mean_sim.astype(np.float32)


def _candidates(pool: VectorIndex, queries: np.ndarray, top: int) -> np.ndarray:
    """Sorted pool rows among the nearest pool images of each query (see the module doc)."""
    per_query = max(_MIN_PER_QUERY, math.ceil(2 * _CANDIDATES_PER_RESULT * top / len(queries)))
    while True:
        _, ids = pool.search(queries, min(per_query, pool.n))
        found = np.unique(ids[ids >= 0])
        if len(found) >= min(_CANDIDATES_PER_RESULT * top, pool.n) or per_query >= pool.n:
            return found
        per_query *= 2


def check_selection(in_selection: np.ndarray) -> None:
    """ConfigError unless ``in_selection`` (over the run's embedded images) holds some but not all."""
    if not in_selection.any():
        raise ConfigError("the selection has no embedded image of the run; nothing to look for")
    if in_selection.all():
        raise ConfigError("the selection is the whole run: there is no rest of the run to contrast it with")


def rank_pool(run_vectors: np.ndarray, in_selection: np.ndarray, pool_vectors: np.ndarray, *, top: int,
              neighbors: int = DEFAULT_NEIGHBORS, pool_index: VectorIndex | None = None,
              run_index: VectorIndex | None = None, run_neighbors: RunNeighbors | None = None) -> Ranking:
    """Rank pool images by the kNN vote of the run (see the module docstring).

    Args:
        run_vectors: ``(n_run, dim)`` float32, L2-normalised: the run's embedded images.
        in_selection: ``(n_run,) bool``, True for the selection (at least one, not all).
        pool_vectors: ``(n_pool, dim)`` float32, L2-normalised: the pool's embedded images.
        top: how many to return (fewer when the pool is smaller).
        neighbors: run images voting on each candidate.
        pool_index, run_index: prebuilt indexes of the two (built here when None).
        run_neighbors: the ``neighbors`` nearest run images of every pool vector
            (:func:`~vecexplore.mining.neighbors.run_neighbors`); None, or a table of
            another ``k``, and the run is searched.

    Raises:
        ConfigError: an empty selection, a selection of the whole run, an empty pool,
            dimensions that differ, ``top`` or ``neighbors`` < 1.
    """
    run_vectors = _check("run_vectors", run_vectors)
    pool_vectors = _check("pool_vectors", pool_vectors)
    in_selection = np.asarray(in_selection, dtype=bool)
    if len(in_selection) != len(run_vectors):
        raise ValueError(f"in_selection: length {len(in_selection)} != {len(run_vectors)} run vectors")
    if top < 1 or neighbors < 1:
        raise ConfigError(f"--k and --neighbors must be >= 1, got {top} and {neighbors}")
    check_selection(in_selection)
    if len(pool_vectors) == 0:
        raise ConfigError("the pool has no embedded image")
    if pool_vectors.shape[1] != run_vectors.shape[1]:
        raise ConfigError(f"pool vectors have dimension {pool_vectors.shape[1]}, the run's {run_vectors.shape[1]}")
    timings: dict[str, float] = {}
    t = time.perf_counter()
    pool_index = pool_index or build_index(pool_vectors)
    timings["index_pool"] = time.perf_counter() - t
    t = time.perf_counter()
    cand = _candidates(pool_index, run_vectors[in_selection], top)
    timings["search_pool"] = time.perf_counter() - t
    k = min(neighbors, len(run_vectors))
    table = run_neighbors is not None and run_neighbors.k == k and len(run_neighbors.ids) == len(pool_vectors)
    t = time.perf_counter()
    if not table:
        run_index = run_index or build_index(run_vectors)
    timings["index_run"] = time.perf_counter() - t
    t = time.perf_counter()
    if table:
        sims, ids = run_neighbors.sims[cand], run_neighbors.ids[cand]
    else:
        sims, ids = run_index.search(pool_vectors[cand], neighbors)
    vote, mean_sim = knn_vote(sims, ids, in_selection)
    score = (vote * (1.0 + mean_sim) / 2.0).astype(np.float32)
    order = np.argsort(-score, kind="stable")[:top]  # cand is sorted: ties go by pool order
    timings["vote"] = time.perf_counter() - t
    return Ranking(pool_idx=cand[order], score=score[order], vote=vote[order], similarity=mean_sim[order],
                   n_candidates=len(cand), timings=timings)


__all__ = ["DEFAULT_NEIGHBORS", "TAU", "Ranking", "check_selection", "knn_vote", "rank_pool"]
