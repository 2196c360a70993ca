"""The embedding cache: vectors keyed by image content, shared by every run.

Layout under the root (default ``$VECEXPLORE_CACHE/embeddings``, else
``$XDG_CACHE_HOME/vecexplore/embeddings``, else ``~/.cache/vecexplore/embeddings``)::

    <model-slug>-<hash of model_key>/
        key.json                  {"format": 1, "model_key": "...", "dim": D}
        shards/<ns>-<pid>-<n>.npz  digests (n,) <U40 + vectors (n, D) float32

One directory per ``model_key`` (model, weights identity, preprocessing, precision:
see :meth:`vecexplore.embed.pipeline.EmbedConfig.cache_key`). Shards are append-only and each is
written whole to a temporary file, fsynced and renamed into place, so a build
killed at any moment loses at most the shard it had not yet written; concurrent
writers never collide (names carry time, pid and a counter).

A shard is written when :data:`DEFAULT_SHARD_SIZE` vectors are pending *or* the
oldest pending vector has waited :data:`DEFAULT_MAX_AGE` seconds (checked as each
batch is added), whichever comes first. So a SIGKILL loses at most the vectors of
the last ``max_age`` seconds plus one batch, however slow the model; a fast GPU
fills shards by size long before the age matters, and a slow run writes at most
one short shard per ``max_age`` (720 an hour at 5 s). The index (digest →
shard, row) is rebuilt in memory from the shards' digest arrays on first use; a
shard that cannot be read (torn by a crash of the file system, truncated by a
copy, another dimension) is skipped with a warning, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from vecexplore.atomic import atomic_write
from vecexplore.errors import RunStoreError

log = logging.getLogger(__name__)

FORMAT = 1
DEFAULT_SHARD_SIZE = 512
#: Seconds a buffered vector may wait before its shard is written (see the module doc).
DEFAULT_MAX_AGE = 5.0


def default_root() -> Path:
    """The cache root used when none is given (see the module docstring)."""
    env = os.environ.get("VECEXPLORE_CACHE")
    if env:
        return Path(env).expanduser() / "embeddings"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "vecexplore" / "embeddings"


class EmbeddingCache:
    """Append-only store of L2-normalised embeddings keyed by image content digest.

    Args:
        root: cache root directory, or None for :func:`default_root`.
        model_key: everything that determines an image's vector besides its bytes.
        shard_size: buffered vectors are written as a shard whenever this many
            have accumulated (and on :meth:`flush`).
        max_age: seconds; :meth:`add` also writes everything buffered once the
            oldest buffered vector is this old. None: by size only.
        clock: monotonic seconds (injectable for tests).

    Use ``lookup`` before embedding, ``add`` as batches come out of the model and
    ``flush`` at the end (or use the cache as a context manager).
    """

    def __init__(self, root: str | Path | None, model_key: str, *, shard_size: int = DEFAULT_SHARD_SIZE,
                 max_age: float | None = DEFAULT_MAX_AGE, clock: Callable[[], float] = time.monotonic):
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        if max_age is not None and not max_age >= 0:
            raise ValueError(f"max_age must be >= 0 seconds or None, got {max_age}")
        if not model_key:
            raise ValueError("model_key must be a non-empty string")
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.model_key = model_key
        self.shard_size = shard_size
        self.max_age = max_age
        self._clock = clock
        self._pending_since: float | None = None  # clock() when the oldest pending vector came
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_key.split("|", 1)[0])[:48]
        digest = hashlib.blake2b(model_key.encode(), digest_size=8).hexdigest()
        self.directory = self.root / f"{slug}-{digest}"
        self._shards_dir = self.directory / "shards"
        self._index: dict[str, tuple[int, int]] | None = None  # digest → (shard no., row)
        self._shard_paths: list[Path] = []
        self._loaded: dict[int, np.ndarray] = {}
        self._dim: int | None = None
        self._pending_digests: list[str] = []
        self._pending_vectors: list[np.ndarray] = []
        self._counter = 0
        self._check_key()

    # -- reading --------------------------------------------------------------

    def _check_key(self) -> None:
        key_file = self.directory / "key.json"
        if not key_file.exists():
            return
        try:
            stored = json.loads(key_file.read_text())
        except (OSError, ValueError) as exc:
            log.warning("embedding cache %s: unreadable key.json (%s); it will be rewritten", self.directory, exc)
            return
        if stored.get("model_key") != self.model_key:
            raise RunStoreError(
                f"embedding cache {self.directory} belongs to another model key "
                f"({stored.get('model_key')!r}, not {self.model_key!r}); remove that directory"
            )
        if isinstance(stored.get("dim"), int):
            self._dim = stored["dim"]

    def _read_shard(self, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            with np.load(path, allow_pickle=False) as z:
                digests = z["digests"]
                vectors = z["vectors"]
            if digests.ndim != 1 or vectors.ndim != 2 or len(digests) != len(vectors):
                raise ValueError(f"inconsistent arrays {digests.shape} / {vectors.shape}")
            if vectors.dtype != np.float32:
                raise ValueError(f"vectors are {vectors.dtype}, not float32")
            if self._dim is not None and vectors.shape[1] != self._dim:
                raise ValueError(f"dimension {vectors.shape[1]} differs from the cache's {self._dim}")
        except Exception as exc:  # a torn or foreign shard must never stop a build
            log.warning("embedding cache: ignoring unreadable shard %s (%s: %s)", path, type(exc).__name__, exc)
            return None
        return digests, vectors

    def _ensure_index(self) -> dict[str, tuple[int, int]]:
        if self._index is not None:
            return self._index
        index: dict[str, tuple[int, int]] = {}
        paths = sorted(self._shards_dir.glob("*.npz")) if self._shards_dir.is_dir() else []
        for path in paths:
            shard = self._read_shard(path)
            if shard is None:
                continue
            digests, vectors = shard
            self._dim = vectors.shape[1]
            number = len(self._shard_paths)
            self._shard_paths.append(path)
            for row, d in enumerate(digests.tolist()):
                index.setdefault(d, (number, row))
        self._index = index
        log.debug("embedding cache %s: %d vectors in %d shards", self.directory, len(index), len(self._shard_paths))
        return index

    def _vectors_of(self, number: int) -> np.ndarray:
        if number not in self._loaded:
            shard = self._read_shard(self._shard_paths[number])
            if shard is None:  # vanished or damaged since indexing
                raise RunStoreError(f"embedding cache shard {self._shard_paths[number]} became unreadable")
            self._loaded = {number: shard[1]}  # keep one shard: lookups go shard by shard
        return self._loaded[number]

    @property
    def dim(self) -> int | None:
        """Embedding dimension D of the stored vectors, or None while the cache is empty."""
        self._ensure_index()
        return self._dim

    def __len__(self) -> int:
        return len(self._ensure_index()) + len(self._pending_digests)

    def lookup(self, digests: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors already stored for these content digests.

        Returns:
            ``(found, vectors)``: ``found (n,) bool``; ``vectors (n, D) float32`` with
            the stored vector where found and zeros elsewhere (D = 0 while empty).
        """
        index = self._ensure_index()
        pending = {d: i for i, d in enumerate(self._pending_digests)}
        n = len(digests)
        found = np.zeros(n, dtype=bool)
        vectors = np.zeros((n, self._dim or 0), dtype=np.float32)
        by_shard: dict[int, list[tuple[int, int]]] = {}
        for i, d in enumerate(digests):
            if d in index:
                number, row = index[d]
                by_shard.setdefault(number, []).append((i, row))
            elif d in pending:
                vectors[i] = self._pending_vectors[pending[d]]
                found[i] = True
        for number in sorted(by_shard):
            pairs = np.asarray(by_shard[number], dtype=np.int64)
            vectors[pairs[:, 0]] = self._vectors_of(number)[pairs[:, 1]]
            found[pairs[:, 0]] = True
        return found, vectors

    # -- writing --------------------------------------------------------------

    def add(self, digests: Sequence[str], vectors: np.ndarray) -> None:
        """Buffer vectors for these digests; a shard is written every ``shard_size``
        vectors, and all that is buffered once the oldest has waited ``max_age``.

        Args:
            digests: ``(n,)`` content digests (:func:`vecexplore.io.images.file_digest`).
            vectors: ``(n, D)`` float32 L2-normalised rows.
        """
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[0] != len(digests):
            raise ValueError(f"vectors must be (len(digests)={len(digests)}, D); got {vectors.shape}")
        if vectors.dtype != np.float32:
            raise ValueError(f"vectors must be float32, got {vectors.dtype}")
        self._ensure_index()
        if self._dim is None:
            self._dim = vectors.shape[1]
        elif vectors.shape[1] != self._dim:
            raise ValueError(f"vectors have dimension {vectors.shape[1]}; this cache holds {self._dim}")
        now = self._clock()
        if not self._pending_digests:
            self._pending_since = now
        self._pending_digests.extend(str(d) for d in digests)
        self._pending_vectors.extend(vectors)
        while len(self._pending_digests) >= self.shard_size:
            self._write_shard(self.shard_size)
            self._pending_since = now  # what is left came with this call
        if self._pending_digests and self.max_age is not None and now - self._pending_since >= self.max_age:
            self.flush()

    def flush(self) -> None:
        """Write whatever is buffered as one (possibly short) shard."""
        while self._pending_digests:
            self._write_shard(min(self.shard_size, len(self._pending_digests)))

    def _write_shard(self, n: int) -> None:
        digests = np.asarray(self._pending_digests[:n], dtype=str)
        vectors = np.stack(self._pending_vectors[:n]).astype(np.float32, copy=False)
        self._shards_dir.mkdir(parents=True, exist_ok=True)
        key_file = self.directory / "key.json"
        if not key_file.exists():
            key = {"format": FORMAT, "model_key": self.model_key, "dim": int(vectors.shape[1])}
            payload = json.dumps(key, indent=1).encode()
            atomic_write(key_file, lambda f: f.write(payload))
        self._counter += 1
        path = self._shards_dir / f"{time.time_ns():020d}-{os.getpid()}-{self._counter:06d}.npz"
        atomic_write(path, lambda f: np.savez(f, digests=digests, vectors=vectors))
        number = len(self._shard_paths)
        self._shard_paths.append(path)
        assert self._index is not None
        for row, d in enumerate(digests.tolist()):
            self._index.setdefault(d, (number, row))
        del self._pending_digests[:n]
        del self._pending_vectors[:n]
        if not self._pending_digests:
            self._pending_since = None
        log.debug("embedding cache: wrote %d vectors to %s", n, path.name)

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc) -> None:
        self.flush()
