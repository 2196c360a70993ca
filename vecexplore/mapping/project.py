"""UMAP projection: a 2-D map for display and a ~10-D space for clustering.

Both UMAP runs take the same precomputed kNN graph (:mod:`vecexplore.mapping.knn`),
so neighbours are searched once. Identical embeddings share one graph node and
land on one position. Fewer distinct embeddings than UMAP can lay out
(``2 * cluster_dims``, below which umap-learn itself abandons its spectral
initialisation) get a deterministic PCA layout instead.

Past ``max_fit_points`` distinct embeddings (about a million by default) the
map is fitted on a seeded random sample of that many; the others are placed
with umap-learn's ``transform`` in fixed chunks of :data:`PLACE_CHUNK`, spread
over ``workers`` worker processes (from
:data:`POOL_MIN_POINTS` on). Chunks never depend on the worker count, so
the result does not either. With ``workers`` >= 2 the 2-D and the clustering
space UMAP fits also run side by side in two processes (seeded umap-learn is
single-threaded).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from vecexplore.errors import ValidationError
from vecexplore.mapping.config import MapConfig
from vecexplore.mapping.knn import KnnGraph, neighbours, nndescent_index, prepare_points

log = logging.getLogger(__name__)

PLACE_CHUNK = 10_000
"""Out-of-sample points per ``transform`` call. At most 10,000 so that umap-learn
gives every chunk the same 100 optimisation epochs (it gives 30 past that)."""


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
        timings: seconds per step: "knn", "umap_2d", "umap_cluster" (0 when skipped;
            the two UMAP fits overlap when they ran side by side), and "place"
            when points were placed by transform.
        fitted: (n,) bool, the rows whose embedding was in the fitted sample
            (their duplicates included); None when every row was fitted. The
            graph ``knn`` is then the sample's (``knn.inverse`` is ``arange``).
    """

    xy: np.ndarray
    cluster_space: np.ndarray
    knn: KnnGraph
    config_used: MapConfig
    method: str
    umap_n_jobs: int
    timings: dict = field(default_factory=dict)
    fitted: np.ndarray | None = None

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

    if m > cfg.max_fit_points:
        if knn is not None:
            raise ValidationError(
                f"a precomputed knn graph cannot be used: {m} distinct embeddings exceed "
                f"max_fit_points={cfg.max_fit_points}, so the map is fitted on a sample"
            )
        return _project_sampled(points, inverse, config, n_jobs)

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
        (xy, space), fit_times = _fit_both(points, knn, cfg, n_jobs, index=None, keep=False)
        xy, space = xy.embedding_, space.embedding_
        timings.update(fit_times)
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


def workers_used(cfg: MapConfig) -> int:
    """Processes the map may use: ``cfg.workers``, or the CPUs this process may run on."""
    if cfg.workers is not None:
        return cfg.workers
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


POOL_MIN_POINTS = 20_000
"""Fewest points for which work goes to other processes: a worker starts a fresh
interpreter and imports umap-learn (seconds), about what one UMAP fit of a few
thousand points costs here."""


def _pool(workers: int, **kwargs) -> ProcessPoolExecutor:
    """Fresh worker processes ("forkserver"): forking this process is unsafe once
    numba's GNU OpenMP threads have run in it, so workers get their inputs pickled."""
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context(method), **kwargs
    )


def _fit_job(task):
    points, knn, cfg, kind, n_jobs = task
    start = time.perf_counter()
    reducer = _fit(points, knn, cfg, kind, n_jobs=n_jobs, index=None)
    return _Fitted(reducer.embedding_), time.perf_counter() - start


@dataclass(frozen=True)
class _Fitted:
    embedding_: np.ndarray


def _fit_both(points, knn, cfg, n_jobs, *, index, keep: bool):
    """The 2-D and the clustering-space UMAP on one graph: side by side in two worker
    processes when ``workers`` >= 2, there are at least :data:`POOL_MIN_POINTS` and the
    reducers need not be kept (``keep``: a transform follows), else one after the other
    here. Returns the two fitted reducers (or holders of their ``embedding_``) and the timings."""
    kinds = ("umap_2d", "umap_cluster")
    if workers_used(cfg) >= 2 and not keep and points.shape[0] >= POOL_MIN_POINTS:
        with _pool(2) as pool:
            done = list(pool.map(_fit_job, [(points, knn, cfg, kind, n_jobs) for kind in kinds]))
        return tuple(r for r, _ in done), {kind: t for kind, (_, t) in zip(kinds, done, strict=True)}
    out, times = [], {}
    for kind in kinds:
        start = time.perf_counter()
        out.append(_fit(points, knn, cfg, kind, n_jobs=n_jobs, index=index))
        times[kind] = time.perf_counter() - start
    return tuple(out), times


def _fit(points, knn, cfg: MapConfig, kind: str, *, n_jobs: int, index):
    if kind == "umap_2d":
        return _umap(points, knn, cfg, n_components=2, min_dist=cfg.min_dist, n_jobs=n_jobs,
                     index=index)
    return _umap(points, knn, cfg, n_components=cfg.cluster_dims, min_dist=cfg.cluster_min_dist,
                 n_jobs=n_jobs, index=index)


def _project_sampled(
    points: np.ndarray, inverse: np.ndarray, config: MapConfig, n_jobs: int
) -> Projection:
    """Fit on a seeded sample of ``max_fit_points`` distinct embeddings, transform the rest."""
    m, s = points.shape[0], config.max_fit_points
    cfg = config.resolved(inverse.shape[0], n_distinct=s)
    rng = np.random.default_rng(cfg.seed)
    fit = np.sort(rng.choice(m, size=s, replace=False))
    rest = np.setdiff1d(np.arange(m), fit, assume_unique=True)
    sample = np.ascontiguousarray(points[fit])
    timings = {"knn": 0.0, "umap_2d": 0.0, "umap_cluster": 0.0, "place": 0.0}
    k = min(cfg.n_neighbors, s)
    start = time.perf_counter()
    # umap-learn's transform queries a search index: the sample's graph is pynndescent's
    # whatever knn_method says (it is exact enough at the sizes sampling is for).
    idx, dist, index = nndescent_index(
        sample, k=k, metric=cfg.metric, seed=cfg.seed, n_jobs=-1 if cfg.parallel else 1
    )
    knn = KnnGraph(indices=idx, distances=dist, inverse=np.arange(s), metric=cfg.metric,
                   method="nndescent")
    timings["knn"] = time.perf_counter() - start
    reducers, fit_times = _fit_both(sample, knn, cfg, n_jobs, index=index, keep=True)
    timings.update(fit_times)
    start = time.perf_counter()
    index.prepare()  # once here, not once per worker
    placed = _place(points[rest], reducers, workers_used(cfg))
    timings["place"] = time.perf_counter() - start
    out = []
    for reducer, new in zip(reducers, placed, strict=True):
        a = np.empty((m, new.shape[1]), dtype=np.float32)
        a[fit] = reducer.embedding_
        a[rest] = new
        out.append(a)
    in_fit = np.zeros(m, dtype=bool)
    in_fit[fit] = True
    log.info(
        "map: %d distinct embeddings > max_fit_points %d: fitted on a seeded sample of %d, "
        "%d placed by transform (%d workers); kNN %.1f s, UMAP 2-D %.1f s, %d-D %.1f s, place %.1f s",
        m, s, s, rest.size, workers_used(cfg), timings["knn"], timings["umap_2d"],
        cfg.cluster_dims, timings["umap_cluster"], timings["place"],
    )
    return Projection(
        xy=_frozen(out[0][inverse]),
        cluster_space=_frozen(out[1][inverse]),
        knn=knn,
        config_used=cfg,
        method="umap",
        umap_n_jobs=n_jobs,
        timings=timings,
        fitted=_frozen_mask(in_fit[inverse]),
    )


_REDUCERS: list = []
"""The fitted reducers, in a worker process (set once by :func:`_set_reducers`)."""


def _set_reducers(reducers) -> None:
    _REDUCERS[:] = reducers


def _place_job(chunk: np.ndarray) -> tuple[np.ndarray, ...]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        return tuple(np.asarray(r.transform(chunk), dtype=np.float32) for r in _REDUCERS)


def _place(new: np.ndarray, reducers, workers: int) -> list[np.ndarray]:
    """Transform ``new`` with each fitted reducer, chunk by chunk: [(r, 2), (r, cluster_dims)].

    Workers get the reducers once and one chunk per task; from
    :data:`POOL_MIN_POINTS` new points on and with ``workers`` >= 2 only.
    """
    chunks = [new[lo : lo + PLACE_CHUNK] for lo in range(0, new.shape[0], PLACE_CHUNK)]
    if workers >= 2 and len(chunks) >= 2 and new.shape[0] >= POOL_MIN_POINTS:
        with _pool(
            min(workers, len(chunks)), initializer=_set_reducers, initargs=(list(reducers),)
        ) as pool:
            parts = list(pool.map(_place_job, chunks))
    else:
        _set_reducers(reducers)
        try:
            parts = [_place_job(c) for c in chunks]
        finally:
            _REDUCERS.clear()
    return [
        np.concatenate([p[i] for p in parts]) if parts
        else np.zeros((0, r.embedding_.shape[1]), np.float32)
        for i, r in enumerate(reducers)
    ]


def _frozen_mask(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=bool)
    a.flags.writeable = False
    return a


def _umap(
    points: np.ndarray,
    knn: KnnGraph,
    cfg: MapConfig,
    *,
    n_components: int,
    min_dist: float,
    n_jobs: int,
    index=None,
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
        transform_seed=cfg.seed if cfg.seed is not None else 42,
        n_jobs=n_jobs,
        precomputed_knn=(*knn.umap_precomputed(cfg.n_neighbors)[:2], index),
        low_memory=True,
        verbose=False,
    )
    with warnings.catch_warnings():
        # Without an index no new points are transformed (the whole set is fitted).
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
        reducer.fit(points)
    reducer.embedding_ = np.asarray(reducer.embedding_, dtype=np.float32)
    return reducer


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
