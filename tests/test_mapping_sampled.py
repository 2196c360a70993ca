"""The sampled map: past max_fit_points, UMAP and HDBSCAN fit a seeded sample and place the rest."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from sklearn.manifold import trustworthiness
from sklearn.metrics import adjusted_rand_score
from test_mapping import planted_blobs

from vecexplore.errors import ConfigError, ValidationError
from vecexplore.mapping import MapConfig, build_map, cluster, knn_graph, project
from vecexplore.mapping.project import PLACE_CHUNK

project_mod = importlib.import_module("vecexplore.mapping.project")


@pytest.fixture(scope="module")
def blobs():
    return planted_blobs(n=1500, k=5, d=64, seed=11)


def test_side_by_side_fits_equal_fits_in_turn(blobs, monkeypatch, umap_warm):
    x, _ = blobs
    monkeypatch.setattr(project_mod, "POOL_MIN_POINTS", 0)  # worker processes at this size too
    a = project(x[:400], MapConfig(seed=2, workers=1))
    b = project(x[:400], MapConfig(seed=2, workers=2))
    np.testing.assert_array_equal(a.xy, b.xy)
    np.testing.assert_array_equal(a.cluster_space, b.cluster_space)


def test_every_row_is_placed_and_labelled_deterministically(blobs, monkeypatch, umap_warm):
    monkeypatch.setattr(project_mod, "POOL_MIN_POINTS", 0)  # place in worker processes,
    monkeypatch.setattr(project_mod, "PLACE_CHUNK", 300)  # several chunks of them
    x, _ = blobs
    x = np.concatenate([x, np.repeat(x[:1], 5, axis=0)])  # one image seen 6 times
    cfg = MapConfig(seed=3, max_fit_points=500, workers=1)
    a = build_map(x, cfg)
    b = build_map(x, MapConfig(seed=3, max_fit_points=500, workers=2))
    n = x.shape[0]
    assert a.xy.shape == (n, 2) and a.projection.cluster_space.shape == (n, 10)
    assert np.isfinite(a.xy).all() and np.isfinite(a.projection.cluster_space).all()
    assert a.labels.shape == (n,) and a.clustering.probabilities.shape == (n,)
    assert np.isfinite(a.clustering.outlier_scores).all()
    # workers only spread the work: the same map either way, and again on a rerun
    np.testing.assert_array_equal(a.xy, b.xy)
    np.testing.assert_array_equal(a.projection.cluster_space, b.projection.cluster_space)
    np.testing.assert_array_equal(a.labels, b.labels)
    # the sample: 500 distinct embeddings (duplicates follow their node), the rest placed
    fitted = a.projection.fitted
    assert fitted is not None and fitted.shape == (n,)
    assert a.projection.knn.n_nodes == 500
    assert (fitted[1500:] == fitted[0]).all() and (a.xy[1500:] == a.xy[0]).all()
    assert a.timings["place"] > 0
    other = build_map(x, MapConfig(seed=4, max_fit_points=500, workers=1))
    assert not np.array_equal(other.projection.fitted, fitted)


def test_at_or_below_the_threshold_the_whole_set_is_fitted(blobs, umap_warm):
    x, _ = blobs
    p = project(x[:300], MapConfig(seed=0, max_fit_points=300))
    assert p.fitted is None and "place" not in p.timings and p.knn.n_nodes == 300


@pytest.mark.parametrize("seed", [0, 1])
def test_sampled_map_keeps_neighbourhoods_and_clusters_of_a_full_fit(seed, umap_warm):
    x, planted = planted_blobs(n=2000, k=5, d=64, seed=20 + seed)
    full = build_map(x, MapConfig(seed=seed))
    part = build_map(x, MapConfig(seed=seed, max_fit_points=600))
    assert part.projection.fitted.sum() == 600
    t_full = trustworthiness(x, full.xy, n_neighbors=10, metric="cosine")
    t_part = trustworthiness(x, part.xy, n_neighbors=10, metric="cosine")
    assert t_part > 0.85 and t_part > t_full - 0.03, (t_part, t_full)
    inl = planted >= 0
    assert adjusted_rand_score(planted[inl], part.labels[inl]) > 0.9
    assert adjusted_rand_score(full.labels, part.labels) > 0.8
    # placed rows were labelled too (not all left as noise)
    placed = ~part.projection.fitted
    assert (part.labels[placed & inl] >= 0).mean() > 0.9


def test_fitted_rows_cluster_as_hdbscan_on_them_alone():
    rng = np.random.default_rng(5)
    centres = rng.normal(scale=20, size=(4, 3))
    space = np.concatenate([c + rng.normal(size=(150, 3)) for c in centres])
    space = space[rng.permutation(space.shape[0])]
    fitted = np.zeros(space.shape[0], dtype=bool)
    fitted[rng.choice(space.shape[0], 300, replace=False)] = True
    whole = cluster(space, min_cluster_size=20, min_samples=5, fitted=fitted)
    alone = cluster(space[fitted], min_cluster_size=20, min_samples=5)
    assert adjusted_rand_score(alone.labels, whole.labels[fitted]) == 1.0
    assert whole.n_clusters == alone.n_clusters == 4
    # the predicted rows join the blob they were drawn from
    truth = np.argmin(((space[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    assert adjusted_rand_score(truth[~fitted], whole.labels[~fitted]) > 0.95
    assert np.bincount(whole.labels[whole.labels >= 0]).tolist() == whole.sizes().tolist()
    assert (np.diff(whole.sizes()) <= 0).all()  # ids by size over all rows
    with pytest.raises(ValidationError, match="fitted"):
        cluster(space, min_cluster_size=20, fitted=fitted[:10])


def test_a_precomputed_graph_is_refused_when_sampling(blobs):
    x, _ = blobs
    with pytest.raises(ValidationError, match="max_fit_points"):
        project(x, MapConfig(max_fit_points=500), knn=knn_graph(x, k=30))


@pytest.mark.parametrize(
    "kwargs", [{"max_fit_points": 19}, {"max_fit_points": 1.5}, {"workers": 0}, {"workers": True}]
)
def test_config_rejects_bad_sampling_values(kwargs):
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        MapConfig(**kwargs)


def test_chunks_keep_umap_learns_epochs():
    assert PLACE_CHUNK <= 10_000  # umap-learn's transform gives 100 epochs up to 10k new points
