"""A slow embedding killed part-way keeps what it computed: SIGKILL loses at most the
last ``max_age`` seconds (shards are written by age as well as by size); SIGTERM is
handled like Ctrl-C (everything computed is flushed, exit code 143).

The child processes slow the tiny model down (a sleep per batch) so that the
embedding outlasts the kill, and print, after every batch the cache received, how
many vectors it holds and how many of those are on disk. The parent kills once the
child has reported a shard written by age; nothing here measures time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from vecexplore.embed import TINY_MODEL, EmbedConfig, EmbeddingCache, embed_images, load_clip  # noqa: E402

N = 200
# Every cache.add in the child prints "added A durable D" (D = vectors in shards).
_REPORT = """
import signal, sys, time
# Ctrl-C as a terminal delivers it, even when the test runner inherited SIGINT ignored (a background job).
signal.signal(signal.SIGINT, signal.default_int_handler)
from vecexplore.embed import pipeline
from vecexplore.embed.cache import EmbeddingCache

real_encode, real_add = pipeline._encode, EmbeddingCache.add

def slow_encode(model, x):
    time.sleep(0.25)  # a slow model: about 16 images/s
    return real_encode(model, x)

def add(self, digests, vectors):
    real_add(self, digests, vectors)
    print("added", len(self), "durable", len(self) - len(self._pending_digests), flush=True)

pipeline._encode = slow_encode
EmbeddingCache.add = add
"""

_EMBED = _REPORT + """
from vecexplore.embed import EmbedConfig, TINY_MODEL, embed_images, load_clip
root, *paths = sys.argv[1:]
model = load_clip(TINY_MODEL, "random")
cfg = EmbedConfig(model=TINY_MODEL, weights="random", device="cpu", num_workers=1, batch_size=4)
cache = EmbeddingCache(root, cfg.cache_key(model), max_age=1.0)  # shard size 512: only age writes here
embed_images(paths, cfg, cache=cache, model=model)
print("not killed", flush=True)
"""

_BUILD = _REPORT + """
from vecexplore.cli import main
main(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("interrupt")
    rng = np.random.default_rng(3)
    paths = []
    for i in range(N):
        path = folder / f"im{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    gt = {"images": [{"id": i, "file_name": p.name, "width": 50, "height": 40} for i, p in enumerate(paths)],
          "categories": [{"id": 1, "name": "thing"}],
          "annotations": [{"id": 1, "image_id": 0, "category_id": 1, "bbox": [1, 1, 10, 10]}]}
    (folder / "gt.json").write_text(json.dumps(gt))
    (folder / "pred.json").write_text(json.dumps([{"image_id": 0, "category_id": 1, "bbox": [1, 1, 10, 10], "score": 0.9}]))
    return folder, paths


@pytest.fixture(scope="module")
def tiny():
    return load_clip(TINY_MODEL, "random", device="cpu")


def _cfg():
    return EmbedConfig(model=TINY_MODEL, weights="random", device="cpu", num_workers=0, batch_size=16)


def _run_until(argv, done, sig):
    """Start ``argv``, read its reports until ``done(added, durable)``, send ``sig``.

    Returns ``(returncode, stderr, last (added, durable) before the signal)``.
    """
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    last = (0, 0)
    try:
        for line in proc.stdout:
            words = line.split()
            if words[:1] == ["added"]:
                last = (int(words[1]), int(words[3]))
                if done(*last):
                    proc.send_signal(sig)
                    break
            assert line.strip() != "not killed"
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err, last


def test_sigkill_keeps_the_shards_written_by_age(tmp_path, images, tiny):
    _, paths = images
    root = tmp_path / "cache"
    # Kill once a shard was written by age (durable > 0, far below the 512 of a size
    # shard) and more has been added since.
    code, err, (_, durable) = _run_until(
        [sys.executable, "-c", textwrap.dedent(_EMBED), str(root), *map(str, paths)],
        lambda a, d: d > 0 and a >= d + 8, signal.SIGKILL)
    assert code == -signal.SIGKILL, err[-2000:]
    cache = EmbeddingCache(root, _cfg().cache_key(tiny))
    kept = len(cache)
    # What was on disk before the kill is there (with shards of 512 only, nothing
    # was: 0 of 200 kept); the kill came before the end.
    assert 0 < durable <= kept < N
    resumed = embed_images(paths, _cfg(), cache=cache, model=tiny)
    assert (resumed.stats.n_cached, resumed.stats.n_embedded) == (kept, N - kept)
    clean = embed_images(paths, _cfg(), cache=None, model=tiny)
    np.testing.assert_allclose(resumed.vectors, clean.vectors, atol=2e-6)


@pytest.mark.parametrize(("sig", "exit_code", "message"), [
    (signal.SIGTERM, 143, "terminated (SIGTERM)"),
    (signal.SIGINT, 130, "interrupted"),
])
def test_sigterm_stops_a_build_like_ctrl_c_and_keeps_everything_computed(tmp_path, images, tiny, sig, exit_code,
                                                                          message):
    folder, _ = images
    root = tmp_path / "cache"
    argv = [sys.executable, "-c", textwrap.dedent(_BUILD), "build", "--gt", str(folder / "gt.json"),
            "--pred", str(folder / "pred.json"), "-o", str(tmp_path / "run"), "--model", TINY_MODEL,
            "--weights", "random", "--device", "cpu", "--workers", "1", "--batch-size", "4",
            "--cache-dir", str(root)]
    code, err, (added, _) = _run_until(argv, lambda a, d: a >= 24, sig)
    assert code == exit_code, err[-2000:]
    assert err.rstrip().endswith(message) and "Traceback" not in err
    cache = EmbeddingCache(root, _cfg().cache_key(tiny))
    assert added <= len(cache) < N  # every vector the cache was given is on disk
    assert not (tmp_path / "run").exists()
