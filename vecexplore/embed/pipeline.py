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
from vecexplore.embed.crops import CropConfig, ObjectBoxes, crop_keys
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
class ObjectEmbeddings:
    """Crop embeddings aligned to the :class:`~vecexplore.embed.crops.ObjectBoxes` asked for.

    Attributes:
        vectors: ``(m, D) float32``, unit L2 norm where ``ok``, zeros where not.
        ok: ``(m,) bool``.
        error: ``(m,) object``, the reason where not ``ok`` (the image's decode error), else None.
        keys: ``(m,) object``, the crop cache keys (None where the image is unreadable).
        n_cached, n_embedded: crops found in the cache / embedded now (distinct keys).
    """

    vectors: np.ndarray
    ok: np.ndarray
    error: np.ndarray
    keys: np.ndarray
    n_cached: int
    n_embedded: int

    def __post_init__(self):
        m = len(self.ok)
        for name in ("vectors", "error", "keys"):
            if len(getattr(self, name)) != m:
                raise ValueError(f"ObjectEmbeddings.{name}: length {len(getattr(self, name))} != {m}")


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
        objects: the crops' vectors when objects were asked for, else None.
    """

    vectors: np.ndarray
    ok: np.ndarray
    error: np.ndarray
    digests: np.ndarray
    model_info: dict[str, Any]
    stats: EmbedStats = field(repr=False)
    objects: ObjectEmbeddings | None = None

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
    """Map-style dataset for the DataLoader: position k → ``(image index, tensor | None,
    reason | None, crop rows, crop tensors | None)``.

    Each image is decoded once; its own model input (when ``want_image``) and the
    crops of its objects (``crop_ptr``: CSR offsets per position into ``crop_rows``
    / ``crop_xyxy``) are cut from that one decode.
    """

    def __init__(self, paths: _PathTable, indices: np.ndarray, preprocess, size_hint: int | None, *,
                 want_image: np.ndarray | None = None, crop_ptr: np.ndarray | None = None,
                 crop_rows: np.ndarray | None = None, crop_xyxy: np.ndarray | None = None,
                 crop_config=None):
        self.paths = paths
        self.indices = indices
        self.preprocess = preprocess
        self.size_hint = size_hint
        self.want_image = np.ones(len(indices), bool) if want_image is None else want_image
        self.crop_ptr = np.zeros(len(indices) + 1, np.int64) if crop_ptr is None else crop_ptr
        self.crop_rows = np.zeros(0, np.int64) if crop_rows is None else crop_rows
        self.crop_xyxy = np.zeros((0, 4)) if crop_xyxy is None else crop_xyxy
        self.crop_config = crop_config

    def __len__(self) -> int:
        return len(self.indices)

    def n_crops(self) -> int:
        return int(self.crop_ptr[-1])

    def __getitem__(self, k: int):
        from vecexplore.io.images import DecodeError, open_rgb

        i = int(self.indices[k])
        rows = self.crop_rows[self.crop_ptr[k]:self.crop_ptr[k + 1]]
        try:
            img = open_rgb(self.paths[i], size_hint=self.size_hint)
        except DecodeError as exc:
            return i, None, exc.reason, rows, None
        try:
            x = self.preprocess(img) if self.want_image[k] else None
            crops = None
            if len(rows):
                import torch

                from vecexplore.embed.crops import cut_crops

                boxes = self.crop_xyxy[self.crop_ptr[k]:self.crop_ptr[k + 1]]
                crops = torch.stack([self.preprocess(c) for c in cut_crops(img, boxes, self.crop_config)])
            return i, x, None, rows, crops
        except Exception as exc:  # preprocessing of a decoded image: record, never stop the build
            return i, None, _preprocessing_failed(exc), rows, None


def decode_for_model(path: str, preprocess, size_hint: int | None):
    """``(tensor (3, H, W) float32, None)`` or ``(None, reason)``: one image as the model
    sees it. Shared by every engine, so that they all feed the model the same pixels."""
    from vecexplore.io.images import DecodeError, open_rgb

    try:
        return preprocess(open_rgb(path, size_hint=size_hint)), None
    except DecodeError as exc:
        return None, exc.reason
    except Exception as exc:  # preprocessing of a decoded image: record, never stop the build
        return None, _preprocessing_failed(exc)


def _preprocessing_failed(exc: Exception) -> str:
    return f"preprocessing failed: {type(exc).__name__}: {exc}"


def _collate(items):
    import torch

    good = [(i, x) for i, x, _, _, _ in items if x is not None]
    # an image decoded only for its crops has no tensor but no reason either: not a failure
    failed = [(i, reason) for i, x, reason, _, _ in items if x is None and reason is not None]
    index = torch.tensor([i for i, _ in good], dtype=torch.long)
    batch = torch.stack([x for _, x in good]) if good else None
    crop_rows = [r for _, _, _, r, c in items if c is not None]
    crops = [c for _, _, _, _, c in items if c is not None]
    failed_crops = [(r, reason) for _, _, reason, r, c in items if c is None and len(r)]
    crop_index = torch.from_numpy(np.concatenate(crop_rows)) if crop_rows else torch.zeros(0, dtype=torch.long)
    crop_batch = torch.cat(crops) if crops else None
    return len(items), index, batch, failed, crop_index, crop_batch, failed_crops


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
               precision: str, progress: bool, desc: str, on_batch, on_failed,
               on_crops=None, on_failed_crops=None) -> None:
    """Stream ``dataset`` through the model; ``on_batch(rows, vectors)`` per batch of
    images, ``on_crops(object rows, vectors)`` per batch of crops (at most
    ``batch_size`` crops per forward pass)."""
    import torch
    import torch.nn.functional as F

    device = loaded.device
    n_crops = dataset.n_crops()
    # Images per loader batch: about batch_size model inputs (images + crops) per batch.
    per_image = (int(dataset.want_image.sum()) + n_crops) / max(1, len(dataset))
    images_per_batch = max(1, int(batch_size / max(1.0, per_image)))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=images_per_batch,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=device.startswith("cuda"),
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=_PREFETCH if workers else None,
        # A local generator: DataLoader draws its worker base seed from it, not from torch's global RNG.
        generator=torch.Generator().manual_seed(0),
    )
    pending: list = []

    def finish(kind, index, feats) -> None:
        vec = F.normalize(feats.float(), dim=-1).cpu().numpy()
        (on_batch if kind == "image" else on_crops)(index.numpy(), vec)

    def flush() -> None:
        while pending:
            finish(*pending.pop(0))

    bar_cm = progress_bar(desc, total=len(dataset), unit="img", enabled=progress)
    with bar_cm as bar, torch.inference_mode(), _autocast(device, precision):
        try:
            for n_items, index, batch, failed, crop_index, crop_batch, failed_crops in loader:
                on_failed(failed)
                if on_failed_crops is not None:
                    on_failed_crops(failed_crops)
                work = []
                if batch is not None:
                    work.append(("image", index, _encode(loaded.model, batch.to(device, non_blocking=True))))
                if crop_batch is not None:
                    for s in range(0, len(crop_index), batch_size):
                        chunk = crop_batch[s:s + batch_size].to(device, non_blocking=True)
                        work.append(("crop", crop_index[s:s + batch_size], _encode(loaded.model, chunk)))
                flush()  # one batch behind: the device computes while we copy the last one
                pending.extend(work)
                bar.advance(n_items)
        finally:  # also on Ctrl-C / SIGTERM: a batch the device has computed is kept
            flush()


def embed_images(
    paths: Sequence[str | Path],
    config: EmbedConfig,
    *,
    cache: EmbeddingCache | str | Path | None,
    progress: bool = False,
    model: LoadedModel | None = None,
    objects: ObjectBoxes | None = None,
    crop: CropConfig | None = None,
    images: bool = True,
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
        objects: boxes whose crops to embed too (:mod:`vecexplore.embed.crops`); they are
            cut during the same single decode of each image as its own vector, and
            cached by image content + box + ``crop`` settings.
        crop: crop padding and minimum size (default :class:`CropConfig`).
        images: embed the images themselves (False: only the crops; image rows are
            then zeros with ``ok`` False and the reason "not embedded (objects only)").

    Returns:
        :class:`EmbeddingResult` aligned to ``paths``. Undecodable or missing images
        have ``ok`` False, a reason in ``error`` and a zero vector.

    Raises:
        WeightsError, ConfigError: the model or device cannot be had.
    """
    start = time.perf_counter()
    loaded = model if model is not None else load_clip(config.model, config.weights, device=config.device, seed=config.seed)
    return embed_with_stage(paths, config, loaded, LocalStage(config, loaded), cache=cache, progress=progress,
                            started=start, objects=objects, crop=crop, images=images)


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
        self.run_dataset(_DecodeDataset(paths, todo, self.loaded.preprocess, self.config.size_hint_for(self.loaded)),
                         progress=progress, desc=desc, on_batch=on_batch, on_failed=on_failed)

    def run_dataset(self, dataset: _DecodeDataset, *, progress: bool, desc: str, on_batch, on_failed,
                    plan: _ObjectPlan | None = None) -> None:
        """:meth:`run` over a built dataset; one that also cuts object crops from each decode
        needs the ``plan`` that takes their vectors."""
        self.workers = min(self.config.num_workers_for(self.device), math.ceil(len(dataset) / self.batch_size))
        _run_model(
            self.loaded, dataset, batch_size=self.batch_size, workers=self.workers, precision=self.precision,
            progress=progress, desc=desc, on_batch=on_batch, on_failed=on_failed,
            on_crops=plan.on_crops if plan is not None else None,
            on_failed_crops=plan.on_failed if plan is not None else None,
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
    objects: ObjectBoxes | None = None,
    crop: CropConfig | None = None,
    images: bool = True,
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
    todo = reps[~found] if images else reps[:0]
    obj_plan = _plan_objects(objects, crop, digests, first, cache, loaded.dim) if objects is not None else None

    def on_batch(rows: np.ndarray, vec: np.ndarray) -> None:
        vectors[rows] = vec
        source[rows] = 2
        if cache is not None:
            cache.add([digests[i] for i in rows], vec)

    def on_failed(failed) -> None:
        for i, reason in failed:
            errors[i] = reason

    decode, want, ptr, crop_rows, crop_xyxy = _decode_plan(todo, obj_plan)
    embed_start = time.perf_counter()
    if len(decode):
        cached_note = f"{len(reps) - len(todo)} cached" if cache is not None and images else ""
        if obj_plan is not None:
            cached_note += f"{', ' if cached_note else ''}{len(crop_rows)} crops"
        desc = f"embedding ({cached_note})" if cached_note else "embedding"
        try:
            if ptr is None:  # no crop to cut: any engine
                stage.run(path_arr, decode, progress=progress, desc=desc, on_batch=on_batch, on_failed=on_failed)
            elif not isinstance(stage, LocalStage):
                raise ConfigError("object crops (--level objects or both) are embedded by the local engine only; "
                                  "use --level images with --engine ray")
            else:
                stage.run_dataset(
                    _DecodeDataset(path_arr, decode, loaded.preprocess, size_hint, want_image=want, crop_ptr=ptr,
                                   crop_rows=crop_rows, crop_xyxy=crop_xyxy, crop_config=obj_plan.config),
                    progress=progress, desc=desc, on_batch=on_batch, on_failed=on_failed, plan=obj_plan)
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
        error[i] = errors[i] or ("not embedded" if images else "not embedded (objects only)")
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
    if stats.n_failed and images:
        bad = int(np.flatnonzero(~ok)[0])
        log.warning("%d of %d images could not be embedded (first: %s: %s)", stats.n_failed, n, path_arr[bad], error[bad])
    log.info(
        "embedded %d images (%d from cache, %d failed) in %.1f s (%.1f img/s)",
        stats.n_embedded, stats.n_cached, stats.n_failed, stats.seconds, stats.images_per_second,
    )
    object_result = obj_plan.result(errors) if obj_plan is not None else None
    if object_result is not None:
        info["crop"] = obj_plan.config.signature()
        log.info("embedded %d object crops (%d from cache)", object_result.n_embedded, object_result.n_cached)
    return EmbeddingResult(vectors=vectors, ok=ok, error=error, digests=digests, model_info=info, stats=stats,
                           objects=object_result)


class _ObjectPlan:
    """Which crops to embed now: one representative object per distinct crop key, cut from
    the representative image of its content; the rest come from the cache or a twin."""

    def __init__(self, boxes: ObjectBoxes, config: CropConfig, digests, first: dict, cache, dim: int):
        self.config = config
        self.cache = cache
        self.boxes = boxes
        m = len(boxes)
        self.keys = crop_keys(digests, boxes, config)
        self.vectors = np.zeros((m, dim), np.float32)
        self.source = np.zeros(m, np.int8)  # 0 none, 1 cache, 2 now
        self.reason = np.full(m, None, dtype=object)
        rep: dict[str, int] = {}
        for j, key in enumerate(self.keys):
            if key is not None:
                rep.setdefault(key, j)
        self.rep = rep
        rows = np.fromiter(rep.values(), dtype=np.int64, count=len(rep))
        found = np.zeros(len(rows), bool)
        if cache is not None and len(rows):
            found, cached = cache.lookup(list(rep))
            if found.any():
                self.vectors[rows[found]] = cached[found]
                self.source[rows[found]] = 1
        self.todo = rows[~found]
        # the image each crop is cut from: the first image with that content
        self.todo_image = np.array([first[digests[i]] for i in boxes.image_idx[self.todo]], dtype=np.int64)

    def on_crops(self, rows: np.ndarray, vec: np.ndarray) -> None:
        self.vectors[rows] = vec
        self.source[rows] = 2
        if self.cache is not None:
            self.cache.add([self.keys[j] for j in rows], vec)

    def on_failed(self, failed) -> None:
        for rows, reason in failed:
            self.reason[rows] = reason

    def result(self, image_errors) -> ObjectEmbeddings:
        n_cached, n_now = int((self.source == 1).sum()), int((self.source == 2).sum())
        for j, key in enumerate(self.keys):
            r = self.rep.get(key) if key is not None else None
            if r is not None and r != j:
                self.vectors[j], self.source[j], self.reason[j] = self.vectors[r], self.source[r], self.reason[r]
        ok = self.source > 0
        error = np.full(len(ok), None, dtype=object)
        for j in np.flatnonzero(~ok):
            error[j] = self.reason[j] or image_errors[self.boxes.image_idx[j]] or "not embedded"
        return ObjectEmbeddings(vectors=self.vectors, ok=ok, error=error, keys=self.keys,
                                n_cached=n_cached, n_embedded=n_now)


def _plan_objects(boxes, crop, digests, first, cache, dim) -> _ObjectPlan:
    if len(boxes) and (boxes.image_idx.min() < 0 or boxes.image_idx.max() >= len(digests)):
        raise ValueError(f"ObjectBoxes.image_idx out of range for {len(digests)} images")
    return _ObjectPlan(boxes, crop or CropConfig(), digests, first, cache, dim)


def _decode_plan(todo_images: np.ndarray, plan: _ObjectPlan | None):
    """The images to decode (sorted), whether each needs its own vector, and CSR crops per image."""
    if plan is None or not len(plan.todo):
        return todo_images, np.ones(len(todo_images), bool), None, None, None
    decode = np.union1d(todo_images, plan.todo_image)
    want = np.isin(decode, todo_images)
    pos = np.searchsorted(decode, plan.todo_image)
    order = np.argsort(pos, kind="stable")
    ptr = np.zeros(len(decode) + 1, np.int64)
    np.cumsum(np.bincount(pos, minlength=len(decode)), out=ptr[1:])
    rows = plan.todo[order]
    return decode, want, ptr, rows, plan.boxes.xyxy[rows]
