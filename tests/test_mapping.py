"""The map: config scaling, the shared kNN graph (vs scikit-learn), UMAP projection
properties (seeded reproducibility, one neighbour search, small and duplicate
inputs) and HDBSCAN recovery of planted clusters."""

from __future__ import annotations

import importlib
import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

from vecexplore.errors import ConfigError, ValidationError
from vecexplore.mapping import (
    MapConfig,
    build_map,
    cluster,
    default_min_cluster_size,
    default_min_samples,
    default_n_neighbors,
    knn_graph,
    project,
    slice_table,
)
from vecexplore.mapping.knn import _self_first, prepare_points
from vecexplore.mapping.project import min_umap_points

# The package re-exports functions named like these modules; fetch the modules themselves.
knn_mod = importlib.import_module("vecexplore.mapping.knn")
project_mod = importlib.import_module("vecexplore.mapping.project")


def planted_blobs(n=1500, k=5, d=512, noise_frac=0.1, spread=1.0, seed=0):
    """Unit vectors: k Gaussian blobs around random directions plus uniform background.

    Returns (n, d) float32 and the planted labels (-1 = background).
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    n_noise = int(n * noise_frac)
    labels = np.concatenate([np.arange(n - n_noise) % k, np.full(n_noise, -1)])
    x = np.empty((n, d))
    inl = labels >= 0
    x[inl] = centres[labels[inl]] + rng.normal(scale=spread / np.sqrt(d), size=(inl.sum(), d))
    x[~inl] = rng.normal(size=(n_noise, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    perm = rng.permutation(n)
    return x[perm].astype(np.float32), labels[perm]


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("n", "k", "mcs", "ms"),
    [
        (100, 10, 10, 5),
        (900, 15, 10, 5),
        (1500, 19, 10, 5),
        (10_000, 30, 50, 10),
        (100_000, 30, 500, 50),
    ],
)
def test_scaling_rules(n, k, mcs, ms):
    assert default_n_neighbors(n) == k
    assert default_min_cluster_size(n) == mcs
    assert default_min_samples(mcs) == ms


def test_resolved_fills_scaled_values_and_keeps_user_values():
    user = MapConfig(n_neighbors=40, min_cluster_size=None)
    got = user.resolved(10_000)
    assert (got.n_neighbors, got.min_cluster_size, got.min_samples) == (40, 50, 10)
    assert user.min_cluster_size is None  # never mutated
    assert MapConfig(n_neighbors=40).resolved(30).n_neighbors == 29  # no more neighbours exist
    assert MapConfig().resolved(500, n_distinct=8).n_neighbors == 7


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_neighbors": 1},
        {"n_neighbors": 2.5},
        {"cluster_dims": 1},
        {"min_cluster_size": 1},
        {"min_samples": 0},
        {"min_samples": 20, "min_cluster_size": 10},
        {"min_dist": -0.1},
        {"min_dist": 1.5},
        {"metric": "manhattan"},
        {"knn_method": "faiss"},
        {"seed": -1},
        {"seed": 2**32},
        {"seed": True},
        {"parallel": "yes"},
    ],
)
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        MapConfig(**kwargs)


def test_cache_key_is_stable_and_names_every_field():
    assert MapConfig().cache_key() == MapConfig().cache_key()
    assert MapConfig().cache_key().startswith("map-")
    keys = {
        MapConfig(**kw).cache_key()
        for kw in ({}, {"seed": 1}, {"cluster_dims": 5}, {"min_dist": 0.2})
    }
    assert len(keys) == 4


# ---------------------------------------------------------------- kNN


@pytest.mark.parametrize(
    ("n", "d", "k", "metric"),
    [
        (300, 16, 10, "cosine"),
        (257, 64, 31, "cosine"),
        (200, 8, 15, "euclidean"),
        (12, 4, 12, "cosine"),
    ],
)
@pytest.mark.parametrize("chunk_bytes", [None, 4096])
def test_exact_knn_equals_sklearn(monkeypatch, n, d, k, metric, chunk_bytes):
    if chunk_bytes:
        monkeypatch.setattr(knn_mod, "CHUNK_BYTES", chunk_bytes)  # many small row blocks
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, d)).astype(np.float32) * rng.uniform(0.5, 3, size=(n, 1)).astype(
        np.float32
    )
    g = knn_graph(x, k=k, metric=metric, method="exact")
    ref_d, ref_i = (
        NearestNeighbors(n_neighbors=k - 1, metric=metric).fit(x.astype(np.float64)).kneighbors()
    )
    # sklearn excludes the query point; ours keeps it at column 0.
    assert g.indices.dtype == np.int32 and g.distances.dtype == np.float32
    assert g.indices.shape == (n, k)
    np.testing.assert_array_equal(g.indices[:, 0], np.arange(n))
    np.testing.assert_array_equal(g.distances[:, 0], 0)
    np.testing.assert_array_equal(g.indices[:, 1:], ref_i)
    np.testing.assert_allclose(g.distances[:, 1:], ref_d, atol=2e-5 if metric == "cosine" else 1e-4)
    assert (np.diff(g.distances, axis=1) >= 0).all()


def test_duplicates_share_a_node_and_scaled_copies_too_under_cosine():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(5, 8)).astype(np.float32)
    x = np.concatenate([base, base[[2, 2, 0]], 4 * base[[4]]])  # x4 normalises to the same bits
    points, inverse = prepare_points(x, metric="cosine")
    np.testing.assert_array_equal(inverse, [0, 1, 2, 3, 4, 2, 2, 0, 4])
    np.testing.assert_allclose(
        points[inverse], x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-6
    )
    _, inverse_e = prepare_points(x, metric="euclidean")
    assert inverse_e[-1] == 5  # a scaled copy is a different point in euclidean space


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        ([[1.0, np.nan]], "row 1 has a NaN"),
        ([[0.0, 0.0]], "row 1 is all zeros"),
        ([[np.inf, 0.0]], "row 1 has a NaN"),
    ],
)
def test_bad_embeddings_name_the_row(rows, problem):
    x = np.array([[1.0, 0.0], *rows, [0.0, 1.0]])
    with pytest.raises(ValidationError, match=problem):
        knn_graph(x, k=2)


@pytest.mark.slow  # pynndescent compiles its kernels on first use (~30-60 s)
def test_nndescent_is_self_first_and_close_to_exact():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(8, 32))
    x = (centres[rng.integers(0, 8, 2000)] + rng.normal(scale=0.3, size=(2000, 32))).astype(
        np.float32
    )
    approx = knn_graph(x, k=15, method="nndescent", seed=0)
    exact = knn_graph(x, k=15, method="exact")
    assert approx.method == "nndescent"
    np.testing.assert_array_equal(approx.indices[:, 0], np.arange(2000))
    recall = np.mean(
        [len(set(a) & set(b)) / 15 for a, b in zip(approx.indices, exact.indices, strict=True)]
    )
    assert recall > 0.95
    again = knn_graph(x, k=15, method="nndescent", seed=0)
    np.testing.assert_array_equal(approx.indices, again.indices)


def test_self_first_repairs_rows():
    idx = np.array(
        [[0, 1, 2], [0, 1, 2], [0, 1, 3]], dtype=np.int32
    )  # row 1: self second; row 2: absent
    dist = np.array([[0, 1, 2], [0, 0, 1], [0, 0.5, 1]], dtype=np.float32)
    _self_first(idx, dist)
    np.testing.assert_array_equal(idx, [[0, 1, 2], [1, 0, 2], [2, 0, 1]])
    np.testing.assert_array_equal(dist, [[0, 1, 2], [0, 0, 1], [0, 0, 0.5]])


# ---------------------------------------------------------------- projection


def test_seeded_map_is_reproducible_and_seed_matters(umap_warm):
    x, _ = planted_blobs(n=300, k=3, d=64, seed=3)
    a, b = build_map(x, MapConfig(seed=7)), build_map(x, MapConfig(seed=7))
    np.testing.assert_array_equal(a.xy, b.xy)
    np.testing.assert_array_equal(a.projection.cluster_space, b.projection.cluster_space)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.xy.shape == (300, 2) and a.xy.dtype == np.float32
    assert a.projection.cluster_space.shape == (300, 10)
    assert not np.array_equal(a.xy, build_map(x, MapConfig(seed=8)).xy)


def test_neighbours_are_searched_once_per_project(monkeypatch, umap_warm):
    import umap.umap_

    calls = []
    real = project_mod.neighbours
    monkeypatch.setattr(
        project_mod, "neighbours", lambda *a, **kw: calls.append(1) or real(*a, **kw)
    )

    def no_search(*args, **kwargs):
        raise AssertionError("umap-learn searched neighbours itself")

    monkeypatch.setattr(umap.umap_, "nearest_neighbors", no_search)
    monkeypatch.setattr(umap.umap_, "pairwise_distances", no_search)
    x, _ = planted_blobs(n=200, k=3, d=32, seed=1)
    p = project(x, MapConfig(seed=0))
    assert calls == [1] and p.method == "umap"
    graph = knn_graph(x, k=40)
    q = project(x, MapConfig(seed=0), knn=graph)  # a wider graph is cut to n_neighbors
    assert calls == [1] and q.knn is graph
    np.testing.assert_array_equal(p.xy, q.xy)


def test_a_graph_for_other_embeddings_is_refused():
    x, _ = planted_blobs(n=100, k=2, d=16)
    with pytest.raises(ValidationError, match="knn graph covers 99 rows"):
        project(x, knn=knn_graph(x[:99], k=10))
    with pytest.raises(ValidationError, match="k>="):
        project(x, knn=knn_graph(x, k=3))


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 19])
def test_few_points_get_a_deterministic_pca_layout(n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 24)).astype(np.float32)
    assert n < min_umap_points(MapConfig())
    a, b = build_map(x), build_map(x)
    assert a.projection.method == "pca"
    assert a.xy.shape == (n, 2) and a.projection.cluster_space.shape == (n, 10)
    assert np.isfinite(a.projection.cluster_space).all()
    np.testing.assert_array_equal(a.xy, b.xy)
    assert (a.labels == -1).all()  # fewer images than the smallest cluster


def test_smallest_umap_input_runs_umap(umap_warm):
    x = np.random.default_rng(0).normal(size=(min_umap_points(MapConfig()), 24)).astype(np.float32)
    p = project(x)
    assert p.method == "umap" and np.isfinite(p.xy).all()


def test_identical_images_land_together(umap_warm):
    x, _ = planted_blobs(n=240, k=3, d=32, seed=2)
    x = np.concatenate([x, np.repeat(x[:2], 40, axis=0)])  # two images seen 41 times each
    fmap = build_map(x)
    assert fmap.projection.knn.n_nodes == 240
    assert (fmap.xy[240:280] == fmap.xy[0]).all() and (fmap.xy[280:] == fmap.xy[1]).all()
    assert np.isfinite(fmap.projection.cluster_space).all()


@pytest.mark.parametrize(("groups", "clusters"), [(1, [100]), (2, [100, 100])])
def test_all_identical_or_two_point_inputs(groups, clusters):
    x = np.repeat(np.eye(8, dtype=np.float32)[:groups], 100, axis=0)
    fmap = build_map(x)
    assert fmap.projection.method == "pca"
    assert fmap.clustering.sizes().tolist() == clusters


def test_parallel_with_seed_is_logged_not_rewritten(caplog, umap_warm):
    x, _ = planted_blobs(n=120, k=2, d=16)
    cfg = MapConfig(parallel=True, seed=1)
    with caplog.at_level(logging.INFO, logger="vecexplore.mapping.project"):
        p = project(x, cfg)
    assert p.umap_n_jobs == 1 and p.config_used.parallel is True
    assert "single-threaded" in caplog.text


# ---------------------------------------------------------------- clustering


def test_cluster_ids_by_size_and_noise():
    rng = np.random.default_rng(0)
    sizes = [30, 80, 50]
    x = np.concatenate(
        [rng.normal(loc=10 * i, scale=0.2, size=(s, 3)) for i, s in enumerate(sizes)]
    )
    x = np.concatenate([x, [[500.0, 500.0, 500.0]]])
    c = cluster(x, min_cluster_size=10, min_samples=5)
    assert c.sizes().tolist() == [80, 50, 30]
    assert c.labels[-1] == -1 and c.probabilities[-1] == 0
    assert (c.labels[30:110] == 0).all() and (c.labels[:30] == 2).all()
    assert c.labels.dtype == np.int64 and ((c.outlier_scores >= 0) & (c.outlier_scores <= 1)).all()


def test_too_few_points_are_all_noise():
    c = cluster(np.zeros((4, 2)) + np.arange(4)[:, None], min_cluster_size=5)
    assert (c.labels == -1).all() and np.isnan(c.outlier_scores).all()


@pytest.mark.parametrize(
    ("space", "kwargs", "match"),
    [
        (np.zeros(5), {"min_cluster_size": 5}, "2-D"),
        (np.array([[0.0], [np.nan]]), {"min_cluster_size": 2}, "row 1"),
        (np.zeros((5, 2)), {"min_cluster_size": 1}, "min_cluster_size"),
        (np.zeros((5, 2)), {"min_cluster_size": 2, "min_samples": 0}, "min_samples"),
    ],
)
def test_cluster_rejects_bad_input(space, kwargs, match):
    with pytest.raises(ValidationError, match=match):
        cluster(space, **kwargs)


@pytest.fixture(scope="module")
def blob_map(umap_warm):
    x, planted = planted_blobs()
    return build_map(x, MapConfig(seed=0)), planted


@pytest.mark.slow
def test_planted_blobs_are_recovered(blob_map):
    fmap, planted = blob_map
    inl = planted >= 0
    # Each blob is one cluster; background points may join any cluster.
    assert adjusted_rand_score(planted[inl], fmap.labels[inl]) >= 0.9
    majority = []
    for b in range(5):
        got = fmap.labels[planted == b]
        top = np.bincount(got[got >= 0]).argmax()
        assert (got == top).mean() >= 0.9
        majority.append(top)
    assert len(set(majority)) == 5


@pytest.mark.slow
def test_planted_failure_cluster_ranks_first_and_noise_is_no_slice(blob_map):
    fmap, planted = blob_map
    n = planted.size
    rate = np.where(planted == 3, 0.8, 0.1)
    per_image = pd.DataFrame(
        {
            "image_idx": np.arange(n),
            "label": 0,
            "prediction": 0,
            "correct": rate < 0.5,
            "error_rate": rate,
        }
    )
    labels = fmap.labels.copy()
    labels[:25] = -1  # some noise, whatever HDBSCAN did
    table = slice_table(per_image, labels, task="classification")
    assert -1 not in table["cluster"].tolist()
    worst = table.iloc[0]
    members = planted[labels == worst["cluster"]]
    assert worst["rank"] == 1 and (members == 3).mean() >= 0.9
    assert worst["lift"] > 2 and worst["score"] > 0
    assert (table["score"].iloc[1:] < 0).all()
