"""FAISS search and the kNN vote of ``vecexplore mine`` against brute-force NumPy.

- the exact index returns what a full similarity matrix and a stable argsort give;
- the IVF index (beyond the exact limit) keeps a high recall on clustered vectors
  (the figure is printed), and the similarities it returns are the exact ones;
- the index cache: an IVF index is written once, atomically, and loaded back by the
  next call; another content is another key; an unreadable or mismatched file is
  rebuilt; the same for the run's neighbour table, which gives the ranking the
  vote's own search gives;
- :func:`knn_vote` on hand-built neighbourhoods, and :func:`rank_pool` against a
  NumPy ranking of every pool vector.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from vecexplore.errors import ConfigError
from vecexplore.mining import index as index_module
from vecexplore.mining.index import build_index, cached_index, index_key, ivf_lists
from vecexplore.mining.neighbors import cached_run_neighbors, neighbors_key, run_neighbors
from vecexplore.mining.rank import TAU, knn_vote, rank_pool


def _unit(rng, n, d, *, centers: int = 0, spread: float = 0.3) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    if centers:
        c = rng.standard_normal((centers, d)).astype(np.float32)
        x = c[rng.integers(0, centers, n)] + spread * x
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _brute(base, queries, k):
    sims = queries.astype(np.float64) @ base.astype(np.float64).T
    ids = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, ids, axis=1), ids


@pytest.mark.parametrize(("seed", "n", "d", "q", "k"), [(0, 1, 8, 3, 1), (1, 50, 16, 7, 5), (2, 3000, 64, 40, 25),
                                                        (3, 800, 512, 11, 800), (4, 200, 33, 5, 300)])
def test_exact_index_equals_numpy(seed, n, d, q, k):
    rng = np.random.default_rng(seed)
    base, queries = _unit(rng, n, d), _unit(rng, q, d)
    index = build_index(base)
    assert index.kind == "flat" and index.n == n
    sims, ids = index.search(queries, k)
    ref_sims, ref_ids = _brute(base, queries, min(k, n))
    assert ids.shape == (q, min(k, n))
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(sims, ref_sims, atol=1e-5)


def _recall(ids, ref):
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, ref, strict=True)]))


@pytest.mark.parametrize(("seed", "n", "d", "centers", "spread", "k"), [
    (0, 20_000, 64, 200, 0.3, 10), (1, 12_000, 64, 200, 0.3, 10),
    # CLIP-like: 512 dimensions, noise as large as the centre (cosine to it about 0.7), 30 per
    # centre; k within a centre's images (beyond them the neighbours are near-random, as in
    # structureless vectors, and an IVF index finds few of those)
    (2, 30_000, 512, 1000, 1.0, 16),
])
def test_ivf_index_beyond_the_exact_limit_has_high_recall(seed, n, d, centers, spread, k):
    rng = np.random.default_rng(seed)
    base = _unit(rng, n, d, centers=centers, spread=spread)
    queries = base[rng.choice(n, 200, replace=False)] + 0.05 * _unit(rng, 200, d)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index = build_index(base, exact_limit=n - 1, seed=seed)
    assert index.kind == "ivf" and index.index.nlist == ivf_lists(n)
    sims, ids = index.search(queries, k)
    ref_sims, ref = _brute(base, queries, k)
    recall = _recall(ids, ref)
    print(f"IVF recall@{k} (n={n}, d={d}, {index.index.nlist} lists, nprobe {index.index.nprobe}): {recall:.3f}")
    assert recall >= 0.9
    # the 8-bit codes only choose the shortlist: the similarities are the exact ones, best first
    assert np.all(ids >= 0)
    np.testing.assert_allclose(sims, np.einsum("qd,qkd->qk", queries, base[ids]), atol=1e-5)
    assert np.all(np.diff(sims, axis=1) <= 0)
    # where both found the same neighbour at a rank, they agree on its similarity
    same = ids == ref
    np.testing.assert_allclose(sims[same], ref_sims[same], atol=1e-5)


def test_ivf_index_without_vectors_returns_faiss_similarities():
    rng = np.random.default_rng(5)
    base = _unit(rng, 5000, 32, centers=50)
    index = build_index(base, exact_limit=100)
    bare = index_module.VectorIndex(index.index, index.n, index.dim, "ivf")
    sims, ids = bare.search(base[:20], 5)
    assert ids.shape == (20, 5) and np.all(ids[:, 0] == np.arange(20))  # each finds itself first
    assert np.all(np.abs(sims[:, 0] - 1) < 0.05)  # 8-bit codes: close to, not exactly, 1


def _digests(n, salt=""):
    return [f"{salt}{i:039d}"[-40:] for i in range(n)]


def test_the_index_cache_writes_once_and_loads_back(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    base = _unit(rng, 6000, 48, centers=60)
    queries = base[:50]
    first = cached_index(base, directory=tmp_path, model_key="m", digests=_digests(6000), exact_limit=1000)
    files = list(tmp_path.iterdir())
    assert first.kind == "ivf" and [f.suffix for f in files] == [".faiss"]  # no temp file left beside it
    stamp = files[0].stat().st_mtime_ns

    def no_build(*args, **kwargs):
        raise AssertionError("the cached index was built again")

    monkeypatch.setattr(index_module, "build_index", no_build)
    again = cached_index(base, directory=tmp_path, model_key="m", digests=_digests(6000), exact_limit=1000)
    assert again.kind == "ivf" and again.index.nprobe == first.index.nprobe
    assert files[0].stat().st_mtime_ns == stamp
    for got, want in zip(again.search(queries, 10), first.search(queries, 10), strict=True):
        np.testing.assert_array_equal(got, want)
    monkeypatch.undo()
    # other content, another model or other settings: another key, another file
    keys = {index_key(base, model_key="m", digests=_digests(6000)),
            index_key(base, model_key="m2", digests=_digests(6000)),
            index_key(base, model_key="m", digests=_digests(6000, salt="x")),
            index_key(base, model_key="m", digests=_digests(6000), exact_limit=10),
            index_key(base, model_key="m"), index_key(base[::-1], model_key="m")}
    assert len(keys) == 6
    assert files[0].stem == index_key(base, model_key="m", digests=_digests(6000), exact_limit=1000)


def test_an_exact_index_is_never_written(tmp_path):
    rng = np.random.default_rng(1)
    base = _unit(rng, 500, 16)
    index = cached_index(base, directory=tmp_path / "idx", model_key="m", digests=_digests(500))
    assert index.kind == "flat" and not (tmp_path / "idx").exists()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other_vectors"])
def test_a_bad_cache_file_is_rebuilt(tmp_path, caplog, damage):
    rng = np.random.default_rng(2)
    base = _unit(rng, 4000, 32, centers=40)
    digests = _digests(4000)
    cached_index(base, directory=tmp_path, model_key="m", digests=digests, exact_limit=100)
    (path,) = tmp_path.iterdir()
    if damage == "garbage":
        path.write_bytes(b"not a faiss index")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # an index of other vectors under this name (a hand-copied file)
        other = build_index(base[:3000], exact_limit=100)
        index_module.save_index(other, path)
    with caplog.at_level(logging.WARNING, logger="vecexplore.mining.index"):
        index = cached_index(base, directory=tmp_path, model_key="m", digests=digests, exact_limit=100)
    assert "building it again" in caplog.text and str(path) in caplog.text
    assert index.kind == "ivf" and index.n == 4000 and index.index.ntotal == 4000
    _, ids = index.search(base[:30], 1)
    assert np.all(ids[:, 0] == np.arange(30))
    reloaded = index_module.load_index(path, base)  # the rebuilt file was written in its place
    assert reloaded is not None and reloaded.index.ntotal == 4000


def test_knn_vote_by_hand():
    in_sel = np.array([True, False, True, False])
    sims = np.array([[0.9, 0.9, 0.8], [0.7, 0.6, -np.inf], [0.5, 0.4, 0.3]], np.float32)
    ids = np.array([[0, 1, 2], [1, 3, -1], [3, 1, 1]])
    vote, sim = knn_vote(sims, ids, in_sel)
    w = np.exp((np.array([0.9, 0.9, 0.8]) - 0.9) / TAU)
    assert vote[0] == pytest.approx((w[0] + w[2]) / w.sum(), rel=1e-6)
    assert sim[0] == pytest.approx(0.85, rel=1e-6)
    assert vote[1] == 0 and sim[1] == 0  # no selected neighbour; the missing one (-1) counts for nothing
    assert vote[2] == 0


def _reference_scores(run, in_sel, pool, k):
    sims, ids = _brute(run, pool, k)
    vote, sim = knn_vote(sims.astype(np.float32), ids, in_sel)
    return vote * (1 + sim) / 2


def _reference_ranking(run, in_sel, pool, top, k):
    """The documented two stages in NumPy: candidates = the union of each selected image's
    m nearest pool images (m doubled until there are 8·top), then the vote on them."""
    sel = run[in_sel]
    m = max(16, int(np.ceil(16 * top / len(sel))))
    while True:
        _, ids = _brute(pool, sel, min(m, len(pool)))
        cand = np.unique(ids)
        if len(cand) >= min(8 * top, len(pool)) or m >= len(pool):
            break
        m *= 2
    score = _reference_scores(run, in_sel, pool[cand], k)
    order = np.argsort(-score, kind="stable")[:top]
    return cand[order], score[order]


@pytest.mark.parametrize(("seed", "n_run", "n_pool", "top", "neighbors"), [
    (0, 300, 200, 20, 10), (1, 1000, 3000, 100, 15), (2, 500, 40, 60, 5), (3, 2000, 5000, 250, 10),
])
def test_rank_pool_equals_a_numpy_ranking(seed, n_run, n_pool, top, neighbors):
    rng = np.random.default_rng(seed)
    centers = 12
    run, pool = _unit(rng, n_run, 32, centers=centers), _unit(rng, n_pool, 32, centers=centers)
    # the selection: the run images nearest one random direction (a cluster-like region)
    in_sel = np.zeros(n_run, bool)
    in_sel[np.argsort(-(run @ run[rng.integers(n_run)]))[: n_run // 10]] = True
    ranking = rank_pool(run, in_sel, pool, top=top, neighbors=neighbors)
    ref_idx, ref_score = _reference_ranking(run, in_sel, pool, top, neighbors)
    assert len(ranking.pool_idx) == min(top, n_pool)
    assert np.all(np.diff(ranking.score) <= 0)
    np.testing.assert_array_equal(ranking.pool_idx, ref_idx)
    np.testing.assert_allclose(ranking.score, ref_score, atol=1e-5)
    # against scoring every pool image: the candidate stage keeps (nearly) all of the best
    full = _reference_scores(run, in_sel, pool, neighbors)
    best = np.argsort(-full, kind="stable")[: len(ranking.pool_idx)]
    kept = len(set(best.tolist()) & set(ranking.pool_idx.tolist())) / len(best)
    lost = np.sort(full)[::-1][: len(best)].sum() - ranking.score.sum()
    print(f"seed {seed}: {kept:.3f} of the whole pool's top {len(best)} kept; score mass lost {lost:.4f}")
    assert kept >= 0.8


def test_rank_pool_refuses_what_cannot_be_ranked():
    rng = np.random.default_rng(0)
    run, pool = _unit(rng, 20, 8), _unit(rng, 5, 8)
    some = np.arange(20) < 3
    with pytest.raises(ConfigError, match="no embedded image"):
        rank_pool(run, np.zeros(20, bool), pool, top=3)
    with pytest.raises(ConfigError, match="whole run"):
        rank_pool(run, np.ones(20, bool), pool, top=3)
    with pytest.raises(ConfigError, match="pool has no embedded image"):
        rank_pool(run, some, pool[:0], top=3)
    with pytest.raises(ConfigError, match="dimension"):
        rank_pool(run, some, _unit(rng, 5, 9), top=3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_vote_contrasts_with_the_rest_where_a_centroid_cannot(seed):
    """The selection is two blobs A and B; the run's clean blob R lies between them, where
    their centroid is. Pool images near R are nearest that centroid, yet they look like
    the rest of the run: the vote ranks the pool's A/B images first, the centroid does not."""
    rng = np.random.default_rng(seed)
    d = 64
    a, b = _unit(rng, 2, d)
    r = (a + b) / np.linalg.norm(a + b)

    def blob(center, n):
        x = center + 0.12 * rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d) * 4
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    run = np.concatenate([blob(a, 60), blob(b, 60), blob(r, 200), _unit(rng, 300, d)])
    in_sel = np.r_[np.ones(120, bool), np.zeros(500, bool)]
    n_target = int(rng.integers(20, 40))
    pool = np.concatenate([blob(a, n_target // 2), blob(b, n_target - n_target // 2), blob(r, 80), _unit(rng, 200, d)])
    is_target = np.r_[np.ones(n_target, bool), np.zeros(280, bool)]
    ranking = rank_pool(run, in_sel, pool, top=n_target)
    vote_precision = is_target[ranking.pool_idx].mean()
    centroid = run[in_sel].mean(axis=0)
    centroid_precision = is_target[np.argsort(-(pool @ centroid), kind="stable")[:n_target]].mean()
    print(f"seed {seed}: precision@{n_target} vote {vote_precision:.2f}, centroid {centroid_precision:.2f}")
    assert vote_precision >= 0.9
    assert centroid_precision <= 0.5


def _selection_case(seed, n_run=3000, n_pool=20_000, d=32):
    rng = np.random.default_rng(seed)
    run, pool = _unit(rng, n_run, d, centers=12), _unit(rng, n_pool, d, centers=12)
    in_sel = np.zeros(n_run, bool)
    in_sel[np.argsort(-(run @ run[rng.integers(n_run)]))[: n_run // 10]] = True
    return run, in_sel, pool


@pytest.mark.parametrize("seed", [0, 1])
def test_the_neighbour_table_gives_the_ranking_of_the_search(seed):
    run, in_sel, pool = _selection_case(seed)
    table = run_neighbors(pool, run, 10)
    ref_sims, ref_ids = _brute(run, pool[:200], 10)
    np.testing.assert_array_equal(table.ids[:200], ref_ids)
    np.testing.assert_allclose(table.sims[:200], ref_sims, atol=1e-5)
    searched = rank_pool(run, in_sel, pool, top=300, neighbors=10)
    read = rank_pool(run, in_sel, pool, top=300, neighbors=10, run_neighbors=table)
    np.testing.assert_array_equal(read.pool_idx, searched.pool_idx)
    np.testing.assert_allclose(read.score, searched.score, atol=1e-6)
    # a table of another k is not used: the run is searched for --neighbors 5
    other = rank_pool(run, in_sel, pool, top=300, neighbors=5, run_neighbors=table)
    np.testing.assert_array_equal(other.pool_idx, rank_pool(run, in_sel, pool, top=300, neighbors=5).pool_idx)


@pytest.mark.parametrize("damage", [None, "garbage", "other_shape"])
def test_the_neighbour_table_is_kept_and_a_bad_one_computed_again(tmp_path, monkeypatch, caplog, damage):
    from vecexplore.mining import neighbors

    run, _, pool = _selection_case(3, n_pool=2000)
    digests = _digests(len(pool))
    first = cached_run_neighbors(pool, run, 10, pool_digests=digests, directory=tmp_path, model_key="m")
    (path,) = tmp_path.iterdir()
    assert path.name == f"{neighbors_key(digests, run, model_key='m', k=10)}.neighbors.npz"
    if damage == "garbage":
        path.write_bytes(b"junk")
    elif damage == "other_shape":
        np.savez(path.with_suffix(""), sims=first.sims[:, :5], ids=first.ids[:, :5])
    calls = []
    real = neighbors.run_neighbors
    monkeypatch.setattr(neighbors, "run_neighbors", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    with caplog.at_level(logging.WARNING, logger="vecexplore.mining.neighbors"):
        again = cached_run_neighbors(pool, run, 10, pool_digests=digests, directory=tmp_path, model_key="m")
    assert calls == ([] if damage is None else [1])
    assert ("computing it again" in caplog.text) == (damage is not None)
    np.testing.assert_array_equal(again.ids, first.ids)
    np.testing.assert_array_equal(again.sims, first.sims)
    # another run, another k or another pool content: another file
    keys = {neighbors_key(digests, run, model_key="m", k=10), neighbors_key(digests, run[::-1], model_key="m", k=10),
            neighbors_key(digests, run, model_key="m", k=5), neighbors_key(_digests(2000, "y"), run, model_key="m", k=10)}
    assert len(keys) == 4
