"""Embedding images with an open_clip model: hash, look up the cache, decode in
workers, encode on the device, L2-normalise, write back to the cache.

Data flow (``N`` images in, everything aligned to the input order)::

    paths ──hash (threads)──▶ digests ──cache lookup──▶ unique uncached digests
          ──DataLoader workers: open_rgb + model preprocess──▶ (B, 3, H, W) batches
          ──device: encode_image under autocast──▶ float32, L2-normalised ──▶ cache shards

At most ``num_workers × 2`` decoded batches are in flight and only vectors are
kept, so memory does not grow with the number of images beyond the ``(N, D)``
result. An image that cannot be decoded never stops a batch: it is recorded with
a reason and gets a zero vector. Identical files are embedded once.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vecexplore.embed.cache import EmbeddingCache
from vecexplore.embed.clip import DEFAULT_MODEL, DEFAULT_WEIGHTS, LoadedModel, load_clip
from vecexplore.errors import ConfigError, InputError
from vecexplore.progress import progress_bar

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "fp16", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "fp16", "bf16")
_DEFAULT_BATCH = {"cpu": 32, "cuda": 128, "mps": 64}
_PREFETCH = 2


@dataclass(frozen=True)
class EmbedConfig:
    """How to embed images.

    Attributes:
        model: open_clip architecture name.
        weights: pretrained tag, checkpoint path, ``random`` or ``random:SEED``.
        device: ``auto`` (cuda > mps > cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        batch_size: images per forward pass; None → 32 on CPU, 128 on CUDA, 64 on MPS.
        num_workers: DataLoader decoding processes (0 decodes in this process);
            None → ``min(8, cpus - 1)`` on a GPU, ``min(4, cpus // 4)`` (at least 1) on
            CPU, where the model itself needs the cores.
        precision: ``auto`` (bf16 on CUDA where supported, else fp16; fp16 on MPS;
            fp32 on CPU) or an explicit autocast dtype. Vectors are always float32.
        seed: seed of random weights.
        jpeg_draft: decode JPEGs larger than the model input at a reduced DCT scale
            (1/2, 1/4, 1/8) that keeps the shorter side ≥ the input size, then reduce
            to that size, before the model's own resize and crop: the model sees the
            same low-pass downscale (mean |Δ| ≈ 0.005 of normalised pixels on 640×480
            photos) for half the decode work or less, which is what lets decoding hide
            behind the forward pass. False decodes every image at full resolution.
    """

    model: str = DEFAULT_MODEL
    weights: str = DEFAULT_WEIGHTS
    device: str = "auto"
    batch_size: int | None = None
    num_workers: int | None = None
    precision: Precision = "auto"
    seed: int = 0
    jpeg_draft: bool = True

    def __post_init__(self):
        if not self.model:
            raise ConfigError("embed.model: empty model name")
        if not self.weights:
            raise ConfigError("embed.weights: empty; use a tag, a checkpoint path or 'random'")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ConfigError(f"embed.batch_size must be a positive integer, got {self.batch_size!r}")
        if self.num_workers is not None and (not isinstance(self.num_workers, int) or self.num_workers < 0):
            raise ConfigError(f"embed.num_workers must be an integer >= 0, got {self.num_workers!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"embed.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not isinstance(self.seed, int):
            raise ConfigError(f"embed.seed must be an integer, got {self.seed!r}")

    def cache_key(self, model: LoadedModel) -> str:
        """The :class:`EmbeddingCache` key of this config's vectors from ``model``:
        architecture, weights identity, preprocessing and decoding, precision."""
        precision = resolve_precision(self.precision, model.device)
        sig = f"{model.preprocess_signature()}|hint={self.size_hint_for(model)}"
        digest = hashlib.blake2b(sig.encode(), digest_size=8).hexdigest()
        return f"{model.model_name}|{model.weights_id}|pre-{digest}|{precision}"

    def size_hint_for(self, model: LoadedModel) -> int | None:
        """The ``open_rgb`` size hint used for this model (None: full-resolution decode)."""
        return min(model.image_size) if self.jpeg_draft else None

    def batch_size_for(self, device: str) -> int:
        """The batch size used on a resolved device."""
        return self.batch_size or _DEFAULT_BATCH.get(device.split(":")[0], 32)

    def num_workers_for(self, device: str) -> int:
        """The number of decoding worker processes used on a resolved device."""
        if self.num_workers is not None:
            return self.num_workers
        cpus = os.cpu_count() or 1
        if device.split(":")[0] == "cpu":
            return max(1, min(4, cpus // 4))
        return max(1, min(8, cpus - 1))


@dataclass(frozen=True)
class EmbedStats:
    """Counts and timings of one :func:`embed_images` call (seconds are wall time)."""

    n_images: int
    n_cached: int
    n_embedded: int
    n_failed: int
    seconds: float
    load_seconds: float
    hash_seconds: float
    embed_seconds: float

    @property
    def images_per_second(self) -> float:
        """Images through decode + model per second of the embedding stage (0 if none)."""
        return self.n_embedded / self.embed_seconds if self.embed_seconds > 0 else 0.0


@dataclass(frozen=True)
class EmbeddingResult:
    """Embeddings aligned to the input paths (row i ↔ ``paths[i]`` ↔ ``image_idx`` i).

    Attributes:
        vectors: ``(N, D) float32``, unit L2 norm where ``ok``, zeros where not.
        ok: ``(N,) bool``, True where the image was embedded (or found in the cache).
        error: ``(N,) object``, the failure reason (str) where not ``ok``, else None.
        digests: ``(N,) object``, content digest (str), None if the file was unreadable.
        model_info: model, weights, weights_kind, weights_id, dim, device, precision,
            random, batch_size, num_workers, decode_size_hint, cache_key.
        stats: counts and timings.
    """

    vectors: np.ndarray
    ok: np.ndarray
    error: np.ndarray
    digests: np.ndarray
    model_info: dict[str, Any]
    stats: EmbedStats = field(repr=False)

    def __post_init__(self):
        n = len(self.ok)
        for name in ("vectors", "error", "digests"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"EmbeddingResult.{name}: length {len(getattr(self, name))} != {n}")
        if self.vectors.dtype != np.float32 or self.vectors.ndim != 2:
            raise ValueError(f"EmbeddingResult.vectors must be (N, D) float32, got {self.vectors.dtype} {self.vectors.shape}")


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` → the autocast dtype used on ``device``; explicit values pass through."""
    if precision != "auto":
        return precision
    kind = device.split(":")[0]
    if kind == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp16" if kind == "mps" else "fp32"


class _PathTable:
    """Paths packed into one byte buffer plus offsets.

    A list of a million ``str`` would be copied page by page into every forked
    worker as reference counts are touched; two NumPy arrays are not, and take
    about one byte per path character.
    """

    def __init__(self, paths: Sequence[str | Path]):
        encoded = [os.fsencode(p) for p in paths]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=self.offsets[1:])
        self.blob = np.frombuffer(b"".join(encoded), dtype=np.uint8) if encoded else np.zeros(0, np.uint8)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return os.fsdecode(self.blob[self.offsets[i] : self.offsets[i + 1]].tobytes())


class _DecodeDataset:
    """Map-style dataset for the DataLoader: position k → (image index, tensor | None, reason | None)."""

    def __init__(self, paths: _PathTable, indices: np.ndarray, preprocess, size_hint: int | None):
        self.paths = paths
        self.indices = indices
        self.preprocess = preprocess
        self.size_hint = size_hint

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        i = int(self.indices[k])
        return (i, *decode_for_model(self.paths[i], self.preprocess, self.size_hint))


def decode_for_model(path: str, preprocess, size_hint: int | None):
    """``(tensor (3, H, W) float32, None)`` or ``(None, reason)``: one image as the model
    sees it. Shared by every engine, so that they all feed the model the same pixels."""
    from vecexplore.io.images import DecodeError, open_rgb

    try:
        return preprocess(open_rgb(path, size_hint=size_hint)), None
    except DecodeError as exc:
        return None, exc.reason
    except Exception as exc:  # preprocessing of a decoded image: record, never stop the build
        return None, f"preprocessing failed: {type(exc).__name__}: {exc}"


def _collate(items):
    import torch

    good = [(i, x) for i, x, _ in items if x is not None]
    failed = [(i, reason) for i, x, reason in items if x is None]
    index = torch.tensor([i for i, _ in good], dtype=torch.long)
    batch = torch.stack([x for _, x in good]) if good else None
    return index, batch, failed


def _worker_init(_worker_id: int) -> None:
    import sys

    import torch

    torch.set_num_threads(1)  # this worker process only: leave the cores to the model
    sys.excepthook = _quiet_disconnects(sys.excepthook)


def _quiet_disconnects(hook):
    """A worker's ``sys.excepthook`` that drops connection errors: when the main process
    stops (Ctrl-C, SIGTERM) while fetching a batch's shared tensors, the worker's
    multiprocessing resource-sharer thread would print a ConnectionResetError
    traceback for a reader that is simply gone."""

    def excepthook(kind, value, tb):
        if issubclass(kind, (ConnectionError, EOFError)):
            return
        hook(kind, value, tb)

    return excepthook


def _encode(model, x):
    """One forward pass of the image tower (unnormalised features)."""
    return model.encode_image(x)


def _autocast(device: str, precision: str):
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def digest_or_reason(path: str) -> tuple[str | None, str | None]:
    """``(content digest, None)`` or ``(None, reason)`` of one image file (every engine's hash)."""
    from vecexplore.io.images import file_digest

    try:
        return file_digest(path, what="an image file"), None
    except InputError as exc:
        # the short reason, as open_rgb gives it ("not a regular file (a FIFO)")
        return None, "file not found" if not Path(path).exists() else exc.detail.removeprefix("cannot read file: ")


def _hash_all(paths: _PathTable, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Content digests of all files (threads: hashing and reads release the GIL)."""
    n = len(paths)
    digests = np.full(n, None, dtype=object)
    errors = np.full(n, None, dtype=object)

    def one(i: int):
        return (i, *digest_or_reason(paths[i]))

    workers = min(8, (os.cpu_count() or 1) * 2)
    with progress_bar("hashing", total=n, unit="img", enabled=progress) as bar, ThreadPoolExecutor(workers) as pool:
        for start in range(0, n, 1024):  # bounded: not a million futures at once
            for i, d, err in pool.map(one, range(start, min(n, start + 1024))):
                digests[i] = d
                errors[i] = err
            bar.advance(min(n, start + 1024) - start)
    return digests, errors


def _run_model(loaded: LoadedModel, dataset: _DecodeDataset, *, batch_size: int, workers: int,
               precision: str, progress: bool, desc: str, on_batch, on_failed) -> None:
    """Stream ``dataset`` through the model; ``on_batch(rows, vectors)`` per batch."""
    import torch
    import torch.nn.functional as F

    device = loaded.device
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=device.startswith("cuda"),
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=_PREFETCH if workers else None,
        # A local generator: DataLoader draws its worker base seed from it, not from torch's global RNG.
        generator=torch.Generator().manual_seed(0),
    )
    pending = None

    def finish(bar, index, feats) -> None:
        on_batch(index.numpy(), F.normalize(feats.float(), dim=-1).cpu().numpy())
        bar.advance(len(index))

    bar_cm = progress_bar(desc, total=len(dataset), unit="img", enabled=progress)
    with bar_cm as bar, torch.inference_mode(), _autocast(device, precision):
        try:
            for index, batch, failed in loader:
                on_failed(failed)
                bar.advance(len(failed))
                if batch is None:
                    continue
                feats = _encode(loaded.model, batch.to(device, non_blocking=True))
                if pending is not None:  # one batch behind: the device computes while we copy
                    done, pending = pending, None
                    finish(bar, *done)
                pending = (index, feats)
        finally:  # also on Ctrl-C / SIGTERM: a batch the device has computed is kept
            if pending is not None:
                finish(bar, *pending)


def embed_images(
    paths: Sequence[str | Path],
    config: EmbedConfig,
    *,
    cache: EmbeddingCache | str | Path | None,
    progress: bool = False,
    model: LoadedModel | None = None,
) -> EmbeddingResult:
    """Embed images with CLIP; one L2-normalised float32 vector per path.

    Args:
        paths: image files, in image-table order.
        config: model, weights, device, batch size, workers, precision, seed.
        cache: an :class:`EmbeddingCache` keyed ``config.cache_key(model)``,
            a cache root directory (the key is derived), or None for no cache.
        progress: draw progress bars (images/s) on stderr.
        model: an already loaded model (e.g. from ``load_clip_with_fallback``); when
            given, ``config.model``/``weights``/``device``/``seed`` are not used to load.

    Returns:
        :class:`EmbeddingResult` aligned to ``paths``. Undecodable or missing images
        have ``ok`` False, a reason in ``error`` and a zero vector.

    Raises:
        WeightsError, ConfigError: the model or device cannot be had.
    """
    start = time.perf_counter()
    loaded = model if model is not None else load_clip(config.model, config.weights, device=config.device, seed=config.seed)
    return embed_with_stage(paths, config, loaded, LocalStage(config, loaded), cache=cache, progress=progress,
                            started=start)


class LocalStage:
    """The local engine's model stage: threads hash, DataLoader workers decode, the model runs here.

    An engine's stage gives :func:`embed_with_stage` the resolved ``device``,
    ``precision`` and ``batch_size``, a ``hash_all(paths, progress)`` and a
    ``run(paths, todo, *, progress, desc, on_batch, on_failed)`` that calls
    ``on_batch(rows, vectors)`` with L2-normalised float32 vectors and
    ``on_failed([(row, reason), ...])``, and ``info()`` for the manifest.
    """

    def __init__(self, config: EmbedConfig, loaded: LoadedModel):
        self.loaded = loaded
        self.config = config
        self.device = loaded.device
        self.precision = resolve_precision(config.precision, loaded.device)
        self.batch_size = config.batch_size_for(loaded.device)
        self.workers = 0

    hash_all = staticmethod(_hash_all)

    def run(self, paths: _PathTable, todo: np.ndarray, *, progress: bool, desc: str, on_batch, on_failed) -> None:
        self.workers = min(self.config.num_workers_for(self.device), math.ceil(len(todo) / self.batch_size))
        _run_model(
            self.loaded, _DecodeDataset(paths, todo, self.loaded.preprocess, self.config.size_hint_for(self.loaded)),
            batch_size=self.batch_size, workers=self.workers, precision=self.precision,
            progress=progress, desc=desc, on_batch=on_batch, on_failed=on_failed,
        )

    def info(self) -> dict[str, Any]:
        return {"num_workers": self.workers}


def embed_with_stage(
    paths: Sequence[str | Path],
    config: EmbedConfig,
    loaded: LoadedModel,
    stage,
    *,
    cache: EmbeddingCache | str | Path | None,
    progress: bool = False,
    started: float | None = None,
) -> EmbeddingResult:
    """:func:`embed_images` with the hashing and the model run by ``stage`` (see
    :class:`LocalStage`): every engine shares the cache key, the cache, the
    de-duplication of identical files and the result, so their runs agree.
    ``started``: ``time.perf_counter()`` before the model was loaded (the stats' load time)."""
    start = time.perf_counter() if started is None else started
    device = stage.device
    precision = stage.precision
    batch_size = stage.batch_size
    size_hint = config.size_hint_for(loaded)
    # The key names the device the vectors are computed on (precision), not the caller's.
    key = replace(config, precision=precision).cache_key(replace(loaded, device=device))
    if isinstance(cache, (str, Path)):
        cache = EmbeddingCache(cache, key)
    if cache is not None and cache.model_key != key:
        raise ConfigError(f"embedding cache is keyed {cache.model_key!r} but this model needs {key!r}")

    loaded_at = time.perf_counter()
    path_arr = _PathTable(paths)
    n = len(path_arr)
    vectors = np.zeros((n, loaded.dim), dtype=np.float32)
    # Where each row's vector comes from: 0 nowhere (failed), 1 the cache, 2 the model now.
    source = np.zeros(n, dtype=np.int8)
    digests, errors = stage.hash_all(path_arr, progress)
    hashed = time.perf_counter()

    # One representative row per distinct content; copies share its outcome.
    first: dict[str, int] = {}
    for i, d in enumerate(digests):
        if d is not None:
            first.setdefault(d, i)
    reps = np.fromiter(first.values(), dtype=np.int64, count=len(first))
    found = np.zeros(len(reps), dtype=bool)
    if cache is not None and len(reps):
        found, cached = cache.lookup(list(first))
        if found.any():
            vectors[reps[found]] = cached[found]
            source[reps[found]] = 1
    todo = reps[~found]

    def on_batch(rows: np.ndarray, vec: np.ndarray) -> None:
        vectors[rows] = vec
        source[rows] = 2
        if cache is not None:
            cache.add([digests[i] for i in rows], vec)

    def on_failed(failed) -> None:
        for i, reason in failed:
            errors[i] = reason

    embed_start = time.perf_counter()
    if len(todo):
        desc = f"embedding ({len(reps) - len(todo)} cached)" if cache is not None else "embedding"
        try:
            stage.run(path_arr, todo, progress=progress, desc=desc, on_batch=on_batch, on_failed=on_failed)
        finally:  # keep what was embedded, even on Ctrl-C
            if cache is not None:
                cache.flush()
    end = time.perf_counter()

    for i, d in enumerate(digests):
        j = first[d] if d is not None else i
        if j != i:
            vectors[i], source[i], errors[i] = vectors[j], source[j], errors[j]
    ok = source > 0
    error = np.full(n, None, dtype=object)
    for i in np.flatnonzero(~ok):
        error[i] = errors[i] or "not embedded"
    stats = EmbedStats(
        n_images=n,
        n_cached=int((source == 1).sum()),
        n_embedded=int((source == 2).sum()),
        n_failed=int((~ok).sum()),
        seconds=end - start,
        load_seconds=loaded_at - start,
        hash_seconds=hashed - loaded_at,
        embed_seconds=end - embed_start if len(todo) else 0.0,
    )
    info = {
        **loaded.info(), "device": device, "precision": precision, "batch_size": batch_size,
        **stage.info(), "decode_size_hint": size_hint, "cache_key": key,
    }
    if stats.n_failed:
        bad = int(np.flatnonzero(~ok)[0])
        log.warning("%d of %d images could not be embedded (first: %s: %s)", stats.n_failed, n, path_arr[bad], error[bad])
    log.info(
        "embedded %d images (%d from cache, %d failed) in %.1f s (%.1f img/s)",
        stats.n_embedded, stats.n_cached, stats.n_failed, stats.seconds, stats.images_per_second,
    )
    return EmbeddingResult(vectors=vectors, ok=ok, error=error, digests=digests, model_info=info, stats=stats)
