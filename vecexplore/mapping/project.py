"""UMAP projection: a 2-D map for display and a ~10-D space for clustering.

Both UMAP runs take the same precomputed kNN graph (:mod:`vecexplore.mapping.knn`),
so neighbours are searched once. Identical embeddings share one graph node and
land on one position. Fewer distinct embeddings than UMAP can lay out
(``2 * cluster_dims``, below which umap-learn itself abandons its spectral
initialisation) get a deterministic PCA layout instead.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from vecexplore.errors import ValidationError
from vecexplore.mapping.config import MapConfig
from vecexplore.mapping.knn import KnnGraph, neighbours, prepare_points

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Projection:
    """Where every image lands. Rows follow the embeddings' (= ImageTable's) order.

    Attributes:
        xy: (n, 2) float32 display coordinates.
        cluster_space: (n, cluster_dims) float32 coordinates for clustering.
        knn: the shared graph over the distinct embeddings (``knn.inverse`` maps rows to nodes).
        config_used: the resolved config (every N-scaled value concrete).
        method: "umap", or "pca" for the small-input fallback.
        umap_n_jobs: threads UMAP ran with (1 whenever seeded: umap-learn's rule).
        timings: seconds per step: "knn", "umap_2d", "umap_cluster" (0 when skipped).
    """

    xy: np.ndarray
    cluster_space: np.ndarray
    knn: KnnGraph
    config_used: MapConfig
    method: str
    umap_n_jobs: int
    timings: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.xy.shape[0])


def min_umap_points(config: MapConfig) -> int:
    """Fewest distinct embeddings laid out by UMAP; fewer use the PCA fallback."""
    return 2 * max(2, config.cluster_dims)


def project(
    embeddings: np.ndarray, config: MapConfig | None = None, *, knn: KnnGraph | None = None
) -> Projection:
    """Project embeddings to the display map and the clustering space.

    Args:
        embeddings: (n, d) float array, one row per image in ImageTable order
            (L2-normalised CLIP embeddings; cosine normalises anyway).
        config: map settings; None fields scale with n (see :meth:`MapConfig.resolved`).
        knn: a graph from :func:`~vecexplore.mapping.knn.knn_graph` on these same
            embeddings with the same metric and at least the resolved
            ``n_neighbors`` columns; None searches it here (once).

    Returns:
        A :class:`Projection`. With the same seed and input, ``xy`` and
        ``cluster_space`` are identical from call to call.

    Raises:
        ValidationError: malformed embeddings, or a ``knn`` that does not fit them.
    """
    config = MapConfig() if config is None else config
    timings = {"knn": 0.0, "umap_2d": 0.0, "umap_cluster": 0.0}
    points, inverse = prepare_points(embeddings, metric=config.metric)
    n, m = inverse.shape[0], points.shape[0]
    cfg = config.resolved(n, n_distinct=m)
    n_jobs = cfg.umap_n_jobs()
    if cfg.parallel and cfg.seed is not None:
        log.info(
            "map: UMAP runs single-threaded because seed=%d (umap-learn forces n_jobs=1 with a "
            "random_state); parallel=True still applies to the kNN search and HDBSCAN. "
            "Use seed=None for a parallel, non-reproducible UMAP.",
            cfg.seed,
        )

    k = min(cfg.n_neighbors, m)
    if knn is None:
        start = time.perf_counter()
        knn = neighbours(
            points,
            inverse,
            k=k,
            metric=cfg.metric,
            method=cfg.knn_method,
            seed=cfg.seed,
            n_jobs=-1 if cfg.parallel else 1,
        )
        timings["knn"] = time.perf_counter() - start
    elif knn.n_points != n or knn.n_nodes != m or not np.array_equal(knn.inverse, inverse):
        raise ValidationError(
            f"knn graph covers {knn.n_points} rows / {knn.n_nodes} distinct embeddings; "
            f"these embeddings have {n} rows / {m} distinct"
        )
    elif knn.metric != cfg.metric or knn.k < k:
        raise ValidationError(
            f"knn graph is {knn.metric} with k={knn.k}; the map needs {cfg.metric} with k>={k}"
        )

    if m < min_umap_points(cfg):
        log.info(
            "map: %d distinct embeddings (< %d): PCA layout instead of UMAP",
            m,
            min_umap_points(cfg),
        )
        xy, space = _pca(points, 2), _pca(points, cfg.cluster_dims)
        method = "pca"
    else:
        start = time.perf_counter()
        xy = _umap(points, knn, cfg, n_components=2, min_dist=cfg.min_dist, n_jobs=n_jobs)
        timings["umap_2d"] = time.perf_counter() - start
        start = time.perf_counter()
        space = _umap(
            points,
            knn,
            cfg,
            n_components=cfg.cluster_dims,
            min_dist=cfg.cluster_min_dist,
            n_jobs=n_jobs,
        )
        timings["umap_cluster"] = time.perf_counter() - start
        method = "umap"
    log.info(
        "map: %d images (%d distinct), k=%d, %s; kNN %.1f s, UMAP 2-D %.1f s, %d-D %.1f s",
        n,
        m,
        cfg.n_neighbors,
        method,
        timings["knn"],
        timings["umap_2d"],
        cfg.cluster_dims,
        timings["umap_cluster"],
    )
    return Projection(
        xy=_frozen(xy[inverse]),
        cluster_space=_frozen(space[inverse]),
        knn=knn,
        config_used=cfg,
        method=method,
        umap_n_jobs=n_jobs,
        timings=timings,
    )


def _umap(
    points: np.ndarray,
    knn: KnnGraph,
    cfg: MapConfig,
    *,
    n_components: int,
    min_dist: float,
    n_jobs: int,
):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Tensorflow not installed")  # ParametricUMAP only
        import umap

    reducer = umap.UMAP(
        n_neighbors=cfg.n_neighbors,
        n_components=n_components,
        metric=cfg.metric,
        min_dist=min_dist,
        random_state=cfg.seed,
        n_jobs=n_jobs,
        precomputed_knn=knn.umap_precomputed(cfg.n_neighbors),
        low_memory=True,
        verbose=False,
    )
    with warnings.catch_warnings():
        # No search index is passed on purpose: we never transform new points.
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
        out = reducer.fit_transform(points)
    return np.asarray(out, dtype=np.float32)


def _pca(points: np.ndarray, dims: int) -> np.ndarray:
    """Deterministic PCA scores (m, dims) float32, zero-padded; each axis signed so its largest |score| is positive."""
    m = points.shape[0]
    out = np.zeros((m, dims), dtype=np.float32)
    if m < 2:
        return out
    centred = points.astype(np.float64) - points.mean(axis=0, dtype=np.float64)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    scores = u * s
    keep = min(dims, scores.shape[1])
    scores = scores[:, :keep]
    flip = np.sign(scores[np.abs(scores).argmax(axis=0), np.arange(keep)])
    flip[flip == 0] = 1.0
    out[:, :keep] = scores * flip
    return out


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float32)
    a.flags.writeable = False
    return a
