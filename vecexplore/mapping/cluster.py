"""HDBSCAN on the clustering space.

hdbscan is deterministic for a given input (no random step), so clustering
takes no seed; reproducibility comes from the seeded projection. Clusters are
renumbered by size so that ids are stable and meaningful: 0 is the largest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from vecexplore.errors import ValidationError
from vecexplore.mapping.hierarchy import ClusterTree

log = logging.getLogger(__name__)

NOISE = -1
"""Label of points in no cluster; never a slice."""


@dataclass(frozen=True, eq=False)
class Clustering:
    """Cluster membership per image, aligned to the rows of the clustered space.

    Attributes:
        labels: (n,) int64 — cluster id, or -1 (noise). Ids are 0..K-1 by size
            descending; equal sizes by their first member's row.
        probabilities: (n,) float64 in [0, 1] — HDBSCAN membership strength;
            0 for noise.
        outlier_scores: (n,) float64 in [0, 1] — GLOSH outlier score (higher =
            more outlying); NaN when clustering did not run (too few points).
        min_cluster_size: the value used.
        min_samples: the value used.
        tree: the clusters' ancestors in HDBSCAN's condensed tree (nodes 0..K-1 are
            the cluster ids above); flat when HDBSCAN did not run.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    outlier_scores: np.ndarray
    min_cluster_size: int
    min_samples: int
    tree: ClusterTree | None = None

    @property
    def n_clusters(self) -> int:
        return int(self.labels.max()) + 1 if self.labels.size else 0

    def sizes(self) -> np.ndarray:
        """(K,) int64 images per cluster id."""
        return np.bincount(self.labels[self.labels >= 0], minlength=self.n_clusters).astype(
            np.int64
        )


def cluster(
    space: np.ndarray,
    *,
    min_cluster_size: int,
    min_samples: int | None = None,
    parallel: bool = False,
    fitted: np.ndarray | None = None,
) -> Clustering:
    """Cluster points with HDBSCAN (euclidean, excess-of-mass selection).

    Args:
        space: (n, d) float array, e.g. ``Projection.cluster_space``.
        min_cluster_size: smallest cluster (>= 2). With fewer points than this
            every point is noise.
        min_samples: density smoothing (>= 1); None = ``min_cluster_size``
            (hdbscan's default). Capped at ``n - 1``.
        parallel: compute core distances on all cores.
        fitted: optional (n,) bool, the rows HDBSCAN is fitted on (e.g.
            ``Projection.fitted``); every other row gets the cluster hdbscan's
            ``approximate_predict`` assigns it (noise included), with its
            probability and ``approximate_predict_scores`` outlier score. The
            sizes and the tree are those of the fitted rows' clustering; ids are
            then ordered by size over all rows.

    Returns:
        A :class:`Clustering`; identical for identical input.
    """
    x = np.asarray(space, dtype=np.float64)
    if x.ndim != 2:
        raise ValidationError(f"cluster space: expected a 2-D (n, d) array, got shape {x.shape}")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValidationError(
            f"cluster space: row {int(np.argmax(bad))} has a NaN or infinite value"
        )
    if isinstance(min_cluster_size, bool) or int(min_cluster_size) < 2:
        raise ValidationError(f"min_cluster_size must be >= 2, got {min_cluster_size!r}")
    min_cluster_size = int(min_cluster_size)
    min_samples = min_cluster_size if min_samples is None else int(min_samples)
    if min_samples < 1:
        raise ValidationError(f"min_samples must be >= 1, got {min_samples}")
    n = x.shape[0]
    if fitted is not None:
        fitted = np.asarray(fitted, dtype=bool)
        if fitted.shape != (n,):
            raise ValidationError(f"fitted: expected ({n},) booleans, got shape {fitted.shape}")
        if not fitted.all():
            return _cluster_fitted_rows(x, fitted, min_cluster_size, min_samples, parallel)
    if n < min_cluster_size or n < 2:
        log.info("cluster: %d points < min_cluster_size %d: all noise", n, min_cluster_size)
        return _result(
            np.full(n, NOISE, np.int64),
            np.zeros(n),
            np.full(n, np.nan),
            min_cluster_size,
            min_samples,
        )
    min_samples = min(min_samples, n - 1)
    if np.ptp(x, axis=0).max() == 0.0:
        # One point repeated: hdbscan's tree has no finite split. It is one dense cluster.
        return _result(
            np.zeros(n, np.int64), np.ones(n), np.zeros(n), min_cluster_size, min_samples
        )

    model = _hdbscan(min_cluster_size, min_samples, parallel)
    raw = np.asarray(model.fit_predict(x), dtype=np.int64)
    labels, new_id = _renumber_by_size(raw)
    tree = ClusterTree.from_condensed(model.condensed_tree_.to_numpy(), raw, new_id)
    probabilities = np.where(labels >= 0, np.asarray(model.probabilities_, dtype=np.float64), 0.0)
    outliers = np.nan_to_num(np.asarray(model.outlier_scores_, dtype=np.float64), nan=0.0)
    log.info(
        "cluster: %d points → %d clusters, %d noise",
        n,
        int(labels.max()) + 1,
        int((labels < 0).sum()),
    )
    return _result(labels, probabilities, outliers, min_cluster_size, min_samples, tree)


def _cluster_fitted_rows(
    x: np.ndarray, fitted: np.ndarray, min_cluster_size: int, min_samples: int, parallel: bool
) -> Clustering:
    """HDBSCAN on ``x[fitted]``, approximate_predict for the rest (see :func:`cluster`)."""
    n, fit = x.shape[0], x[fitted]
    if fit.shape[0] < max(min_cluster_size, 2) or np.ptp(fit, axis=0).max() == 0.0:
        # Nothing to predict from: cluster every row as one set.
        return cluster(x, min_cluster_size=min_cluster_size, min_samples=min_samples,
                       parallel=parallel)
    min_samples = min(min_samples, fit.shape[0] - 1)
    from hdbscan.prediction import approximate_predict, approximate_predict_scores

    model = _hdbscan(min_cluster_size, min_samples, parallel, prediction_data=True)
    fit_raw = np.asarray(model.fit_predict(fit), dtype=np.int64)
    rest = x[~fitted]
    rest_raw, rest_prob = approximate_predict(model, rest)
    raw = np.empty(n, np.int64)
    raw[fitted], raw[~fitted] = fit_raw, np.asarray(rest_raw, dtype=np.int64)
    prob = np.empty(n, np.float64)
    prob[fitted], prob[~fitted] = model.probabilities_, rest_prob
    outliers = np.empty(n, np.float64)
    outliers[fitted] = model.outlier_scores_
    outliers[~fitted] = approximate_predict_scores(model, rest)
    labels, new_id = _renumber_by_size(raw)
    tree = ClusterTree.from_condensed(model.condensed_tree_.to_numpy(), fit_raw, new_id)
    probabilities = np.where(labels >= 0, prob, 0.0)
    log.info(
        "cluster: fitted on %d of %d points, %d predicted → %d clusters, %d noise",
        fit.shape[0], n, rest.shape[0], int(labels.max()) + 1, int((labels < 0).sum()),
    )
    return _result(labels, probabilities, np.nan_to_num(outliers, nan=0.0), min_cluster_size,
                   min_samples, tree)


def _renumber_by_size(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relabel clusters 0..K-1 by size descending, ties by first member's row; -1 kept.

    Returns the new labels and, for each raw label 0..K-1, its new id.
    """
    member = labels >= 0
    ids, first, sizes = np.unique(labels[member], return_index=True, return_counts=True)
    out = np.full_like(labels, NOISE)
    if ids.size == 0:
        return out, np.zeros(0, np.int64)
    order = np.lexsort((first, -sizes))
    mapping = np.full(int(ids.max()) + 1, NOISE, np.int64)
    mapping[ids[order]] = np.arange(ids.size)
    out[member] = mapping[labels[member]]
    return out, mapping


def _result(labels, probabilities, outliers, min_cluster_size: int, min_samples: int,
            tree: ClusterTree | None = None) -> Clustering:
    arrays = []
    for a, dtype in ((labels, np.int64), (probabilities, np.float64), (outliers, np.float64)):
        a = np.ascontiguousarray(a, dtype=dtype)
        a.flags.writeable = False
        arrays.append(a)
    k = int(arrays[0].max()) + 1 if arrays[0].size else 0
    return Clustering(*arrays, min_cluster_size=min_cluster_size, min_samples=min_samples,
                      tree=tree if tree is not None else ClusterTree.flat(max(k, 0)))


def _hdbscan(min_cluster_size: int, min_samples: int, parallel: bool, **kwargs):
    """The one HDBSCAN configuration the map uses (EOM selection, euclidean in the UMAP space)."""
    import hdbscan

    return hdbscan.HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples, metric="euclidean",
                           cluster_selection_method="eom", core_dist_n_jobs=-1 if parallel else 1, **kwargs)
