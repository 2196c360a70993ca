"""The map: embeddings → UMAP 2-D display + ~10-D clustering space → HDBSCAN → failure slices.

Importing this package is cheap; umap, pynndescent and hdbscan are imported by
the functions that run them.

Typical use::

    fmap = build_map(embeddings, MapConfig(seed=0))
    table = slice_table(per_image, fmap.labels, task="detection", objects=objects)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from vecexplore.mapping.cluster import NOISE, Clustering, cluster
from vecexplore.mapping.config import (
    MapConfig,
    default_min_cluster_size,
    default_min_samples,
    default_n_neighbors,
)
from vecexplore.mapping.knn import KnnGraph, knn_graph
from vecexplore.mapping.project import Projection, project
from vecexplore.mapping.slices import cluster_confusion, slice_table
from vecexplore.rates import wilson_interval


@dataclass(frozen=True, eq=False)
class FailureMap:
    """A projection and its clustering; rows follow the embeddings' order.

    Attributes:
        projection: display ``xy`` (n, 2), ``cluster_space``, the kNN graph and
            the resolved config.
        clustering: HDBSCAN ``labels`` (n,) int64 (-1 noise), probabilities, outlier scores.
        timings: seconds per step: "knn", "umap_2d", "umap_cluster", "hdbscan",
            and "place" (transform) when the map was fitted on a sample.
    """

    projection: Projection
    clustering: Clustering
    timings: dict = field(default_factory=dict)

    @property
    def xy(self) -> np.ndarray:
        return self.projection.xy

    @property
    def labels(self) -> np.ndarray:
        return self.clustering.labels

    @property
    def config_used(self) -> MapConfig:
        return self.projection.config_used


def build_map(
    embeddings: np.ndarray, config: MapConfig | None = None, *, knn: KnnGraph | None = None
) -> FailureMap:
    """Project (kNN once, UMAP 2-D and ``cluster_dims``-D) and cluster (HDBSCAN).

    Past ``config.max_fit_points`` distinct embeddings, UMAP and HDBSCAN are
    fitted on a seeded sample (see :func:`project`); HDBSCAN then runs on the
    sample's rows with ``min_cluster_size`` and ``min_samples`` scaled by the
    sample's share of the rows, and the other rows are labelled by
    ``approximate_predict``.

    Args:
        embeddings: (n, d) float array in ImageTable order.
        config: map settings (None fields scale with n); the default is seeded.
        knn: optional precomputed graph (see :func:`project`).
    """
    proj = project(embeddings, config, knn=knn)
    cfg = proj.config_used
    mcs, ms = cfg.min_cluster_size, cfg.min_samples
    if proj.fitted is not None:
        # A cluster of the sample holds the same share of the images as one of the whole set.
        # Never below the N-scaled floors (10 and 5; see MapConfig): smaller clusters are noise.
        share = float(proj.fitted.mean())
        mcs = max(min(mcs, 10), round(mcs * share))
        ms = min(max(min(ms, 5), round(ms * share)), mcs)
    start = time.perf_counter()
    clus = cluster(
        proj.cluster_space,
        min_cluster_size=mcs,
        min_samples=ms,
        parallel=cfg.parallel,
        fitted=proj.fitted,
    )
    timings = {**proj.timings, "hdbscan": time.perf_counter() - start}
    return FailureMap(projection=proj, clustering=clus, timings=timings)


__all__ = [
    "NOISE",
    "Clustering",
    "FailureMap",
    "KnnGraph",
    "MapConfig",
    "Projection",
    "build_map",
    "cluster",
    "cluster_confusion",
    "default_min_cluster_size",
    "default_min_samples",
    "default_n_neighbors",
    "knn_graph",
    "project",
    "slice_table",
    "wilson_interval",
]
