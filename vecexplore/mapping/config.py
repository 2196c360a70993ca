"""Map configuration: UMAP projection + HDBSCAN clustering, with N-scaled defaults.

A field left at ``None`` means "scale with the number of images". The scaling
rules are the small functions below; :meth:`MapConfig.resolved` applies them and
returns a new config with every value concrete (the user's object is never
changed). A fixed seed is the default, so a map is reproducible unless a user
asks otherwise.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, replace
from typing import Literal

from vecexplore.errors import ConfigError

Metric = Literal["cosine", "euclidean"]
KnnMethod = Literal["auto", "exact", "nndescent"]

METRICS: tuple[str, ...] = ("cosine", "euclidean")
KNN_METHODS: tuple[str, ...] = ("auto", "exact", "nndescent")


MAX_FIT_POINTS = 1_000_000
"""Default :attr:`MapConfig.max_fit_points`: fitting seeded UMAP on a million
points takes tens of minutes on one core; placing further points by transform
costs a small fraction of a fit per point and runs in parallel."""


def _clamp(value: float, low: int, high: int) -> int:
    return int(min(max(round(value), low), high))


def default_n_neighbors(n: int) -> int:
    """UMAP neighbourhood size for ``n`` distinct points: ``clamp(round(sqrt(n) / 2), 10, 30)``.

    sqrt(n) is the usual kNN heuristic; halved it equals UMAP's own default (15)
    at about 900 images and reaches 30, the value UMAP's clustering guide uses,
    at about 3,600. The cap keeps cost linear (UMAP is O(n·k)); the floor keeps
    small graphs connected. (:meth:`MapConfig.resolved` then caps it at ``n - 1``.)
    """
    return _clamp(math.sqrt(max(n, 0)) / 2, 10, 30)


def default_min_cluster_size(n: int) -> int:
    """Smallest HDBSCAN cluster for ``n`` images: ``clamp(round(n / 200), 10, 1000)``.

    A failure slice is worth acting on when it holds a visible share of the data
    (0.5 %) and enough images for its error-rate interval to be informative (at
    least 10: a Wilson 95 % interval at p = 0.8 spans 0.49–0.94 with 10 images).
    The cap keeps large datasets from hiding slices of a thousand images.
    """
    return _clamp(n / 200, 10, 1000)


def default_min_samples(min_cluster_size: int) -> int:
    """HDBSCAN ``min_samples`` (density smoothing): ``clamp(round(min_cluster_size / 5), 5, 50)``.

    HDBSCAN's own default (``min_samples = min_cluster_size``) declares the rim of
    every cluster noise once clusters hold hundreds of images; in a UMAP cluster
    space (``min_dist = 0``) points are already packed, so a fifth of the cluster
    size smooths density enough. Never more than ``min_cluster_size``.
    """
    return min(_clamp(min_cluster_size / 5, 5, 50), min_cluster_size)


@dataclass(frozen=True)
class MapConfig:
    """How embeddings become a 2-D map and clusters. Frozen, validated, hashable.

    Attributes:
        n_neighbors: kNN size (self included, as UMAP counts it) shared by both
            UMAP runs; None → :func:`default_n_neighbors`.
        min_dist: UMAP ``min_dist`` of the 2-D display map (0.1: UMAP's default).
        cluster_dims: dimensions of the clustering space (10, as Roboflow and Lilac).
        cluster_min_dist: UMAP ``min_dist`` of the clustering space (0.0: packed
            clusters, as UMAP's clustering guide advises).
        metric: distance on the embeddings; "cosine" (on L2-normalised vectors)
            or "euclidean".
        min_cluster_size: HDBSCAN ``min_cluster_size``; None → :func:`default_min_cluster_size`.
        min_samples: HDBSCAN ``min_samples``; None → :func:`default_min_samples`.
        seed: seed of every stochastic step (kNN descent, UMAP); None = unseeded
            (not reproducible, but lets UMAP run in parallel).
        parallel: use all cores where a library can. umap-learn forces
            single-threaded UMAP when seeded; that is logged, not hidden here.
        knn_method: "exact" (brute force, chunked), "nndescent" (pynndescent),
            or "auto" (exact up to :data:`EXACT_KNN_MAX_N` distinct points).
        max_fit_points: most distinct embeddings UMAP and HDBSCAN are fitted on
            (default :data:`MAX_FIT_POINTS`). Past it a seeded random sample of
            this many is fitted; the other embeddings are placed by umap-learn's
            ``transform`` and labelled by hdbscan's ``approximate_predict``.
        workers: processes that place the out-of-sample points and run the 2-D
            and clustering-space UMAP fits side by side; None = every CPU, 1 = in
            this process only. The result does not depend on it.
    """

    n_neighbors: int | None = None
    min_dist: float = 0.1
    cluster_dims: int = 10
    cluster_min_dist: float = 0.0
    metric: Metric = "cosine"
    min_cluster_size: int | None = None
    min_samples: int | None = None
    seed: int | None = 0
    parallel: bool = False
    knn_method: KnnMethod = "auto"
    max_fit_points: int = MAX_FIT_POINTS
    workers: int | None = None

    def __post_init__(self) -> None:
        def _int(name: str, low: int, *, optional: bool) -> None:
            value = getattr(self, name)
            if value is None and optional:
                return
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"map config: {name} must be an integer, got {value!r}")
            if value < low:
                raise ConfigError(f"map config: {name} must be >= {low}, got {value}")

        _int("n_neighbors", 2, optional=True)
        _int("cluster_dims", 2, optional=False)
        _int("min_cluster_size", 2, optional=True)
        _int("min_samples", 1, optional=True)
        _int("seed", 0, optional=True)
        _int("max_fit_points", 2 * max(2, self.cluster_dims), optional=False)
        _int("workers", 1, optional=True)
        if self.seed is not None and self.seed >= 2**32:
            raise ConfigError(f"map config: seed must be < 2**32, got {self.seed}")
        for name in ("min_dist", "cluster_min_dist"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0.0 <= value <= 1.0
            ):
                raise ConfigError(f"map config: {name} must be a number in [0, 1], got {value!r}")
        if self.metric not in METRICS:
            raise ConfigError(f"map config: metric must be one of {METRICS}, got {self.metric!r}")
        if self.knn_method not in KNN_METHODS:
            raise ConfigError(
                f"map config: knn_method must be one of {KNN_METHODS}, got {self.knn_method!r}"
            )
        if not isinstance(self.parallel, bool):
            raise ConfigError(f"map config: parallel must be true or false, got {self.parallel!r}")
        if (
            self.min_samples is not None
            and self.min_cluster_size is not None
            and self.min_samples > self.min_cluster_size
        ):
            raise ConfigError(
                f"map config: min_samples ({self.min_samples}) must not exceed "
                f"min_cluster_size ({self.min_cluster_size})"
            )

    def resolved(self, n: int, *, n_distinct: int | None = None) -> MapConfig:
        """A copy with every ``None`` replaced by its scaled value for ``n`` images.

        Args:
            n: number of images (rows) to cluster.
            n_distinct: number of distinct embeddings the kNN graph is built on
                (identical images share one node); defaults to ``n``. Any
                ``n_neighbors`` is capped at ``n_distinct - 1`` (umap-learn's own
                rule: no more neighbours exist), floored at 2.
        """
        m = n if n_distinct is None else n_distinct
        n_neighbors = default_n_neighbors(m) if self.n_neighbors is None else self.n_neighbors
        n_neighbors = max(2, min(n_neighbors, m - 1))
        mcs = (
            default_min_cluster_size(n) if self.min_cluster_size is None else self.min_cluster_size
        )
        min_samples = default_min_samples(mcs) if self.min_samples is None else self.min_samples
        return replace(
            self,
            n_neighbors=n_neighbors,
            min_cluster_size=mcs,
            min_samples=min_samples,
        )

    def umap_n_jobs(self) -> int:
        """Threads UMAP actually uses: 1 when seeded (umap-learn's rule), else all when parallel."""
        return -1 if self.parallel and self.seed is None else 1

    def cache_key(self) -> str:
        """A short stable name for the artifact this config produces: ``map-<16 hex>``."""
        payload = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return "map-" + hashlib.sha256(payload.encode()).hexdigest()[:16]
