"""vecexplore.embed.cache: persistence, shards, torn shards, and resuming a killed build."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from vecexplore.embed.cache import EmbeddingCache, default_root
from vecexplore.errors import ConfigError, RunStoreError


def _unit(n, d=8, seed=0):
    v = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _digests(n, prefix="d"):
    return [f"{prefix}{i:039d}" for i in range(n)]


def _shards(cache):
    return sorted((cache.directory / "shards").glob("*.npz"))


# -- the store --------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "shard_size", "n_shards"), [(1, 4, 1), (4, 4, 1), (10, 4, 3), (10, 100, 1)])
def test_roundtrip_across_instances(tmp_path, n, shard_size, n_shards):
    digests, vectors = _digests(n), _unit(n, seed=n)
    with EmbeddingCache(tmp_path, "m|w|p|fp32", shard_size=shard_size) as cache:
        cache.add(digests[: n // 2], vectors[: n // 2])
        cache.add(digests[n // 2 :], vectors[n // 2 :])
        found, got = cache.lookup(digests)  # buffered and written vectors alike
        assert found.all()
        np.testing.assert_array_equal(got, vectors)
    assert len(_shards(cache)) == n_shards
    assert not list((cache.directory / "shards").glob(".*"))  # no temporary files left
    again = EmbeddingCache(tmp_path, "m|w|p|fp32")
    assert len(again) == n and again.dim == 8
    query = ["unknown", *digests[::-1], "also-unknown"]
    found, got = again.lookup(query)
    assert found.tolist() == [False, *([True] * n), False]
    np.testing.assert_array_equal(got[1:-1], vectors[::-1])
    assert not got[0].any() and not got[-1].any()


def test_keys_are_separate_directories(tmp_path):
    a = EmbeddingCache(tmp_path, "ViT-B-32|laion|p|fp32")
    b = EmbeddingCache(tmp_path, "ViT-B-32|random:0|p|fp32")
    a.add(["x"], _unit(1))
    a.flush()
    assert a.directory != b.directory and a.directory.name.startswith("ViT-B-32-")
    assert not b.lookup(["x"])[0].any()
    assert json.loads((a.directory / "key.json").read_text())["model_key"] == "ViT-B-32|laion|p|fp32"


def test_empty_cache_lookup(tmp_path):
    found, vectors = EmbeddingCache(tmp_path, "k").lookup(["a", "b"])
    assert found.tolist() == [False, False] and vectors.shape == (2, 0)


@pytest.mark.parametrize(
    "damage",
    ["truncate", "garbage", "empty", "other-dim", "missing-array"],
)
def test_a_torn_or_foreign_shard_is_skipped_with_a_warning(tmp_path, caplog, damage):
    cache = EmbeddingCache(tmp_path, "k", shard_size=3)
    cache.add(_digests(6), _unit(6))
    _good, bad = _shards(cache)
    if damage == "truncate":
        data = bad.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        bad.write_bytes(b"\x00" * 500)
    elif damage == "empty":
        bad.write_bytes(b"")
    elif damage == "other-dim":
        np.savez(bad, digests=np.asarray(_digests(3, "e")), vectors=_unit(3, d=5))
    else:
        np.savez(bad, digests=np.asarray(_digests(3, "e")))
    if damage == "other-dim":  # whatever the reading order, key.json's dimension decides
        bad.rename(bad.with_name("0" + bad.name))
        bad = bad.with_name("0" + bad.name)
    (cache.directory / "shards" / ".leftover.npz.tmp").write_bytes(b"partial")  # a killed write
    with caplog.at_level(logging.WARNING, logger="vecexplore"):
        found, vectors = EmbeddingCache(tmp_path, "k").lookup(_digests(6))
    assert found.tolist() == [True] * 3 + [False] * 3
    np.testing.assert_array_equal(vectors[:3], _unit(6)[:3])
    assert bad.name in caplog.text and "ignoring unreadable shard" in caplog.text


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_shard_is_written_by_age_as_well_as_by_size(tmp_path):
    """Size OR age: a slow model's vectors reach disk within max_age of being added
    (the check runs at each add); a fast one's fill shards by size."""
    clock = _Clock()
    cache = EmbeddingCache(tmp_path, "k", shard_size=6, max_age=5.0, clock=clock)
    vectors, digests = _unit(20), _digests(20)
    cache.add(digests[:2], vectors[:2])  # t=0: the oldest pending is 0 s old
    clock.now = 4.9
    cache.add(digests[2:4], vectors[2:4])
    assert _shards(cache) == []
    clock.now = 5.0  # the first two are 5 s old: everything pending is written
    cache.add(digests[4:5], vectors[4:5])
    assert len(_shards(cache)) == 1 and len(EmbeddingCache(tmp_path, "k")) == 5
    clock.now = 6.0
    cache.add(digests[5:13], vectors[5:13])  # 8 at once: one full shard of 6, 2 left (0 s old)
    assert len(_shards(cache)) == 2 and len(EmbeddingCache(tmp_path, "k")) == 11
    clock.now = 10.9
    cache.add(digests[13:14], vectors[13:14])
    assert len(_shards(cache)) == 2
    clock.now = 11.0
    cache.add(digests[14:15], vectors[14:15])
    assert len(_shards(cache)) == 3 and len(EmbeddingCache(tmp_path, "k")) == 15
    clock.now = 100.0  # a long wait with nothing pending writes nothing
    cache.add(digests[15:16], vectors[15:16])
    assert len(_shards(cache)) == 3
    found, got = EmbeddingCache(tmp_path, "k").lookup(digests[:15])
    assert found.all()
    np.testing.assert_array_equal(got, vectors[:15])


def test_max_age_none_writes_by_size_only(tmp_path):
    clock = _Clock()
    cache = EmbeddingCache(tmp_path, "k", shard_size=4, max_age=None, clock=clock)
    cache.add(_digests(3), _unit(3))
    clock.now = 1e9
    cache.add([], _unit(0))
    assert _shards(cache) == []
    cache.add(_digests(1, "e"), _unit(1, seed=1))
    assert len(_shards(cache)) == 1
    with pytest.raises(ValueError, match="max_age"):
        EmbeddingCache(tmp_path, "k", max_age=-1)


def test_key_collision_is_refused(tmp_path):
    cache = EmbeddingCache(tmp_path, "k1")
    cache.add(["a"], _unit(1))
    cache.flush()
    (cache.directory / "key.json").write_text(json.dumps({"format": 1, "model_key": "k2"}))
    with pytest.raises(RunStoreError, match="another model key"):
        EmbeddingCache(tmp_path, "k1")


@pytest.mark.parametrize(
    ("digests", "vectors", "match"),
    [
        (["a", "b"], np.zeros((3, 8), np.float32), "len"),
        (["a"], np.zeros((1, 8), np.float64), "float32"),
        (["a"], np.zeros(8, np.float32), "len"),
        (["a"], np.zeros((1, 5), np.float32), "dimension"),
    ],
)
def test_add_validates(tmp_path, digests, vectors, match):
    cache = EmbeddingCache(tmp_path, "k")
    cache.add(["z"], _unit(1))
    with pytest.raises(ValueError, match=match):
        cache.add(digests, vectors)


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("VECEXPLORE_CACHE", str(tmp_path / "vc"))
    assert default_root() == tmp_path / "vc" / "embeddings"
    monkeypatch.delenv("VECEXPLORE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "vecexplore" / "embeddings"
    assert EmbeddingCache(None, "k").root == default_root()


# -- with the pipeline ------------------------------------------------------------------------

torch = pytest.importorskip("torch")

from vecexplore.embed import TINY_MODEL, EmbedConfig, embed_images, load_clip  # noqa: E402


def _images(folder, n):
    rng = np.random.default_rng(7)
    paths = []
    for i in range(n):
        path = folder / f"im{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _cfg(**kw):
    return EmbedConfig(**({"model": TINY_MODEL, "weights": "random", "device": "cpu", "num_workers": 0, "batch_size": 4} | kw))


@pytest.fixture(scope="module")
def tiny():
    return load_clip(TINY_MODEL, "random", device="cpu")


def test_second_run_embeds_nothing(tmp_path, tiny, monkeypatch):
    paths = _images(tmp_path, 9)
    (tmp_path / "bad.jpg").write_bytes(b"")
    paths.append(tmp_path / "bad.jpg")
    first = embed_images(paths, _cfg(), cache=tmp_path / "cache", model=tiny)
    assert first.stats.n_embedded == 9 and first.stats.n_failed == 1
    monkeypatch.setattr(type(tiny.model), "encode_image", lambda *a, **k: pytest.fail("model was called"))
    second = embed_images(paths, _cfg(), cache=tmp_path / "cache", model=tiny)
    assert (second.stats.n_embedded, second.stats.n_cached, second.stats.n_failed) == (0, 9, 1)
    np.testing.assert_array_equal(second.vectors, first.vectors)
    assert second.ok.tolist() == first.ok.tolist() and second.error[-1] == "zero-byte file"
    # content addressed: the same bytes under new names are hits too
    renamed = [tmp_path / f"copy{i}.png" for i in range(3)]
    for src, dst in zip(paths, renamed, strict=False):
        dst.write_bytes(src.read_bytes())
    third = embed_images(renamed, _cfg(), cache=tmp_path / "cache", model=tiny)
    assert third.stats.n_cached == 3
    np.testing.assert_array_equal(third.vectors, first.vectors[:3])


def test_cache_of_another_model_is_refused_and_keys_differ(tmp_path, tiny):
    other = load_clip(TINY_MODEL, "random:1")
    keys = {
        _cfg().cache_key(tiny),
        _cfg().cache_key(other),
        _cfg(precision="bf16").cache_key(tiny),
        _cfg(jpeg_draft=False).cache_key(tiny),
    }
    assert len(keys) == 4
    assert _cfg(batch_size=9, num_workers=1).cache_key(tiny) == _cfg().cache_key(tiny)
    wrong = EmbeddingCache(tmp_path, _cfg().cache_key(other))
    with pytest.raises(ConfigError, match="keyed"):
        embed_images(_images(tmp_path, 1), _cfg(), cache=wrong, model=tiny)


_KILLED_RUN = """
import os, signal, sys
from vecexplore.embed import EmbedConfig, EmbeddingCache, TINY_MODEL, embed_images, load_clip
from vecexplore.embed import pipeline

root, *paths = sys.argv[1:]
calls = []
real = pipeline._encode

def encode_then_die(model, x):
    calls.append(len(x))
    if len(calls) == 4:  # batches 1-2 are written (one shard of 8), batch 3 is in flight
        os.kill(os.getpid(), signal.SIGKILL)
    return real(model, x)

pipeline._encode = encode_then_die
model = load_clip(TINY_MODEL, "random")
cfg = EmbedConfig(model=TINY_MODEL, weights="random", device="cpu", num_workers=0, batch_size=4)
cache = EmbeddingCache(root, cfg.cache_key(model), shard_size=8, max_age=None)  # by size only: exact counts
embed_images(paths, cfg, cache=cache, model=model)
print("not killed")
"""


def test_a_killed_build_resumes_where_it_stopped(tmp_path, tiny):
    paths = _images(tmp_path, 22)
    root = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_KILLED_RUN), str(root), *map(str, paths)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    cache = EmbeddingCache(root, _cfg().cache_key(tiny), shard_size=8)
    assert len(_shards(cache)) == 1 and len(cache) == 8  # the in-flight shard was lost, nothing torn
    resumed = embed_images(paths, _cfg(), cache=cache, model=tiny)
    assert (resumed.stats.n_cached, resumed.stats.n_embedded) == (8, 14)
    clean = embed_images(paths, _cfg(), cache=None, model=tiny)
    np.testing.assert_allclose(resumed.vectors, clean.vectors, atol=2e-6)
    assert len(_shards(cache)) == 3  # 8 + 8 + 6
