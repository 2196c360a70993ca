"""The k-nearest-neighbour graph that both UMAP runs share.

Identical embeddings (the same image twice, or vectors equal after
normalisation) become one node: a clique of zero distances would otherwise cut
itself off from the graph, and identical images belong at one position anyway.
Every node's neighbours are found once, exactly (chunked normalised dot
products) for small inputs or with pynndescent for large ones, in the layout
umap-learn's ``precomputed_knn`` takes: self at column 0, ascending distance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from vecexplore.errors import ValidationError

log = logging.getLogger(__name__)

EXACT_KNN_MAX_N = 5_000
"""``knn_method="auto"`` searches exactly up to this many distinct points.

Exact costs n²·D. Measured on 2 cores, 512-D clustered data, k=30 (exact vs
pynndescent, its recall): 4k 0.3 s vs 0.5 s (0.985), 7k 1.3 s vs 0.9 s
(0.979), 10k 2.7 s vs 1.4 s (0.972): the crossover is near 5k."""

CHUNK_BYTES = 64 * 2**20
"""Size of the (rows, m) float32 distance block of the exact search."""


@dataclass(frozen=True, eq=False)
class KnnGraph:
    """Neighbours of the distinct embeddings.

    Attributes:
        indices: (m, k) int32 — row i lists node i's k nearest nodes, itself at
            column 0, by ascending distance (ties: lower node first on the exact
            path). -1 marks a neighbour pynndescent failed to find.
        distances: (m, k) float32 — the matching distances; column 0 is 0;
            inf where the index is -1. Cosine distance is ``1 - cos`` in [0, 2].
        inverse: (n,) int64 — input row r is node ``inverse[r]``; nodes are the
            distinct rows in order of first appearance (``arange(n)`` without
            duplicates).
        metric: "cosine" or "euclidean".
        method: "exact" or "nndescent".
    """

    indices: np.ndarray
    distances: np.ndarray
    inverse: np.ndarray
    metric: str
    method: str

    @property
    def n_points(self) -> int:
        """Input rows n."""
        return int(self.inverse.shape[0])

    @property
    def n_nodes(self) -> int:
        """Distinct embeddings m ≤ n."""
        return int(self.indices.shape[0])

    @property
    def k(self) -> int:
        """Neighbours per node, self included."""
        return int(self.indices.shape[1])

    def umap_precomputed(self, n_neighbors: int) -> tuple[np.ndarray, np.ndarray, None]:
        """``precomputed_knn`` for ``umap.UMAP(n_neighbors=n_neighbors)``.

        Fresh copies cut to ``n_neighbors`` columns: umap-learn only prunes a
        wider graph for ≥ 4096 points, and it writes into the arrays it is given.
        No search index (``transform`` of new points is not needed here).
        """
        if n_neighbors > self.k:
            raise ValueError(f"graph has {self.k} neighbours per node, {n_neighbors} requested")
        return (
            np.ascontiguousarray(self.indices[:, :n_neighbors]),
            np.ascontiguousarray(self.distances[:, :n_neighbors]),
            None,
        )


def prepare_points(embeddings: np.ndarray, *, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate, normalise (cosine) and de-duplicate embeddings.

    Args:
        embeddings: (n, d) float array, one row per image.
        metric: "cosine" (rows are L2-normalised first) or "euclidean".

    Returns:
        ``(points, inverse)``: (m, d) float32 C-contiguous distinct rows in order
        of first appearance, and (n,) int64 with ``points[inverse] == rows``.

    Raises:
        ValidationError: not 2-D, non-finite values, or (cosine) a zero vector;
            the message names the first bad row.
    """
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValidationError(
            f"embeddings: expected a 2-D (n_images, dim) array, got shape {x.shape}"
        )
    if not np.issubdtype(x.dtype, np.number):
        raise ValidationError(f"embeddings: expected numbers, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValidationError(f"embeddings: row {int(np.argmax(bad))} has a NaN or infinite value")
    if metric == "cosine" and x.shape[0]:
        norms = np.linalg.norm(x, axis=1)
        if (norms == 0).any():
            raise ValidationError(
                f"embeddings: row {int(np.argmax(norms == 0))} is all zeros (no direction for cosine distance)"
            )
        x = x / norms[:, None]
    return _distinct_rows(x)


def _distinct_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    first: dict[bytes, int] = {}
    inverse = np.empty(x.shape[0], dtype=np.int64)
    keep = []
    for r in range(x.shape[0]):
        node = first.setdefault(x[r].tobytes(), len(keep))
        if node == len(keep):
            keep.append(r)
        inverse[r] = node
    if len(keep) == x.shape[0]:
        return x, inverse
    return np.ascontiguousarray(x[keep]), inverse


def knn_graph(
    embeddings: np.ndarray,
    *,
    k: int,
    metric: str = "cosine",
    method: str = "auto",
    seed: int | None = 0,
    n_jobs: int = 1,
) -> KnnGraph:
    """The kNN graph of the distinct embeddings (see :class:`KnnGraph`).

    Args:
        embeddings: (n, d) float array.
        k: neighbours per node, self included; capped at the number of distinct rows.
        metric: "cosine" or "euclidean".
        method: "exact", "nndescent", or "auto" (exact up to EXACT_KNN_MAX_N nodes).
        seed: pynndescent's seed (the exact search is deterministic).
        n_jobs: pynndescent threads (-1 = all).
    """
    points, inverse = prepare_points(embeddings, metric=metric)
    return neighbours(points, inverse, k=k, metric=metric, method=method, seed=seed, n_jobs=n_jobs)


def neighbours(
    points: np.ndarray,
    inverse: np.ndarray,
    *,
    k: int,
    metric: str,
    method: str,
    seed: int | None,
    n_jobs: int,
) -> KnnGraph:
    """:func:`knn_graph` on already prepared ``(points, inverse)`` from :func:`prepare_points`."""
    m = points.shape[0]
    k = max(0, min(int(k), m))
    if method == "auto":
        method = "exact" if m <= EXACT_KNN_MAX_N else "nndescent"
    if method == "exact" or k == m:
        idx, dist = exact_neighbours(points, k=k, metric=metric)
        method = "exact"
    elif method == "nndescent":
        idx, dist = nndescent_neighbours(points, k=k, metric=metric, seed=seed, n_jobs=n_jobs)
    else:
        raise ValueError(f"unknown kNN method {method!r}")
    log.debug("kNN graph: %d nodes, k=%d, %s, %s", m, k, metric, method)
    return KnnGraph(indices=idx, distances=dist, inverse=inverse, metric=metric, method=method)


def exact_neighbours(points: np.ndarray, *, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force k nearest rows of ``points`` (self first), in row chunks.

    For "cosine" the rows must already be L2-normalised: distance = 1 - x·y.
    Working memory is about three times :data:`CHUNK_BYTES` (the float32 block
    and argpartition's int64 indices), whatever m is.

    Returns:
        (m, k) int32 indices and (m, k) float32 distances.
    """
    m = points.shape[0]
    idx = np.empty((m, k), dtype=np.int32)
    dist = np.empty((m, k), dtype=np.float32)
    if k == 0 or m == 0:
        return idx, dist
    sq = np.einsum("ij,ij->i", points, points) if metric == "euclidean" else None
    rows = max(1, CHUNK_BYTES // (4 * m))
    for start in range(0, m, rows):
        stop = min(start + rows, m)
        # key: ascending = nearer. cosine: -x·y (= distance - 1); euclidean:
        # |y|² - 2x·y (= squared distance - |x|², constant along the row).
        key = points[start:stop] @ points.T  # (c, m)
        if metric == "cosine":
            np.negative(key, out=key)
        else:
            key *= -2
            key += sq[None, :]
        local = np.arange(stop - start)
        key[local, start + local] = -np.inf  # self first, even among exact ties
        if k < m:
            cand = np.argpartition(key, k - 1, axis=1)[:, :k]
        else:
            cand = np.broadcast_to(np.arange(m), key.shape)
        near = np.take_along_axis(key, cand, axis=1)
        order = np.lexsort((cand, near), axis=1)  # by distance, then lower index
        cand = np.take_along_axis(cand, order, axis=1)
        near = np.take_along_axis(near, order, axis=1)
        if metric == "cosine":
            d = 1.0 + near
            np.clip(d, 0.0, 2.0, out=d)
        else:
            d = np.sqrt(np.maximum(near + sq[start:stop, None], 0.0))
        d[:, 0] = 0.0
        idx[start:stop] = cand
        dist[start:stop] = d
    return idx, dist


def nndescent_neighbours(
    points: np.ndarray, *, k: int, metric: str, seed: int | None, n_jobs: int
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate k nearest rows with pynndescent (as umap-learn would run it), self first."""
    idx, dist, _ = nndescent_index(points, k=k, metric=metric, seed=seed, n_jobs=n_jobs)
    return idx, dist


def nndescent_index(points: np.ndarray, *, k: int, metric: str, seed: int | None, n_jobs: int):
    """:func:`nndescent_neighbours` plus the pynndescent index, which can answer queries for new points.

    Returns:
        (m, k) int32 indices, (m, k) float32 distances (self first), and the
        ``pynndescent.NNDescent`` index (umap-learn's ``transform`` queries it).
    """
    from pynndescent import NNDescent

    m = points.shape[0]
    n_trees = min(64, 5 + round(m**0.5 / 20.0))  # umap-learn's choice
    n_iters = max(5, round(float(np.log2(m))))
    index = NNDescent(
        points,
        n_neighbors=k,
        metric=metric,
        n_trees=n_trees,
        n_iters=n_iters,
        max_candidates=60,
        random_state=seed,
        low_memory=True,
        n_jobs=n_jobs,
        compressed=True,
        verbose=False,
    )
    idx, dist = index.neighbor_graph
    idx = np.ascontiguousarray(idx, dtype=np.int32)
    dist = np.ascontiguousarray(dist, dtype=np.float32)
    _self_first(idx, dist)
    missing = idx < 0
    if missing.any():
        log.warning(
            "kNN: pynndescent found fewer than %d neighbours for %d points",
            k,
            int(missing.any(axis=1).sum()),
        )
        dist[missing] = np.inf
    return idx, dist, index


def _self_first(idx: np.ndarray, dist: np.ndarray) -> None:
    """Put each row's own index at column 0 with distance 0 (in place).

    pynndescent's float32 distances can rank a near-identical vector before the
    point itself; a row lacking itself drops its farthest neighbour.
    """
    rows = np.arange(idx.shape[0])
    bad = np.flatnonzero(idx[:, 0] != rows)
    for r in bad:
        hit = np.flatnonzero(idx[r] == r)
        stop = hit[0] if hit.size else idx.shape[1] - 1
        idx[r, 1 : stop + 1] = idx[r, :stop].copy()
        dist[r, 1 : stop + 1] = dist[r, :stop].copy()
        idx[r, 0] = r
    dist[:, 0] = 0.0
