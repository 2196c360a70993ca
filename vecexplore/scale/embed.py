"""The embed stage as a Ray Data pipeline.

Data flow (rows carry their index into the path table; results come back in any order)::

    paths ──CPU tasks: content digest──▶ driver: cache lookup, one row per distinct file
          ──CPU tasks: decode + the model's preprocess (decode_for_model)──▶ (B, 3, H, W) blocks
          ──CLIP actor pool (one actor per GPU, or CPU actors)──▶ float32, L2-normalised
          ──driver: the same EmbeddingCache the local engine reads and writes

Everything besides where the work runs is :func:`vecexplore.embed.pipeline.embed_with_stage`,
shared with the local engine: the cache key, the lookup, the de-duplication of identical
files and the result. So a build can switch engines and re-embed nothing, and a Ray
build that stops part-way resumes from the vectors it cached.

The model is loaded once by the driver and its weights reach the actors through Ray's
object store: workers need vecexplore, torch and open_clip installed, not the
checkpoint or the Hugging Face cache. The images must be readable at the same path on
every node (shared storage).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vecexplore.embed.cache import EmbeddingCache
from vecexplore.embed.clip import LoadedModel
from vecexplore.embed.pipeline import (
    EmbedConfig,
    EmbeddingResult,
    embed_with_stage,
    resolve_precision,
)
from vecexplore.progress import progress_bar
from vecexplore.scale.cluster import ActorPlan, cluster_plan, path_dataset, quiet_data_context

log = logging.getLogger(__name__)

#: Paths per hashing task.
_HASH_BLOCK = 256


def _hash_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from vecexplore.embed.pipeline import digest_or_reason

    out = [digest_or_reason(str(p)) for p in batch["path"]]
    return {
        "row": batch["row"],
        "digest": np.array([d or "" for d, _ in out], dtype=object),
        "error": np.array([e or "" for _, e in out], dtype=object),
    }


def _decode_batch(batch: dict[str, np.ndarray], *, preprocess, size_hint: int | None,
                  shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    from vecexplore.embed.pipeline import decode_for_model

    rows = batch["row"]
    pixels = np.zeros((len(rows), *shape), dtype=np.float32)
    errors = np.full(len(rows), "", dtype=object)
    for k, path in enumerate(batch["path"]):
        x, reason = decode_for_model(str(path), preprocess, size_hint)
        if x is None:
            errors[k] = reason
        else:
            pixels[k] = x.numpy()
    return {"row": rows, "pixels": pixels, "error": errors}


#: Host memory of a worker process with torch and open_clip imported, before any weights.
_TORCH_PROCESS_BYTES = 1 << 30


def _actor_memory(model) -> int:
    """Bytes of host memory a CLIP actor reserves: a torch process plus its weights twice (the
    object-store copy being deserialised and the module). Besides scheduling actors where the model fits, a
    reservation the decoding tasks do not make keeps Ray Data from fusing decoding into the
    actors (fused, each actor would decode and encode in turn on the CPUs it holds, instead
    of CPU tasks decoding while the actors run the model)."""
    return _TORCH_PROCESS_BYTES + 2 * sum(int(t.numel()) * t.element_size() for t in model.state_dict().values())


class ClipActor:
    """One model replica: ``{"row", "pixels", "error"}`` batches → ``{"row", "vector", "error"}``.

    Rows with an error pass through with a zero vector. The forward pass and the
    normalisation are the local engine's (``_encode`` under ``_autocast``).
    """

    def __init__(self, model_box: list, device: str, precision: str, threads: int):
        import ray
        import torch

        if device == "cpu":
            torch.set_num_threads(threads)  # this actor's process only: the CPUs it reserved
        self.model = ray.get(model_box[0]).to(device).eval()
        self.device = device
        self.precision = precision
        self.dim = int(model_box[1])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch
        import torch.nn.functional as F

        from vecexplore.embed.pipeline import _autocast, _encode

        errors = batch["error"]
        ok = np.array([not e for e in errors], dtype=bool)
        vectors = np.zeros((len(errors), self.dim), dtype=np.float32)
        if ok.any():
            x = torch.from_numpy(np.ascontiguousarray(batch["pixels"][ok]))
            with torch.inference_mode(), _autocast(self.device, self.precision):
                feats = _encode(self.model, x.to(self.device, non_blocking=True))
                vectors[ok] = F.normalize(feats.float(), dim=-1).cpu().numpy()
        return {"row": batch["row"], "vector": vectors, "error": errors}


def _remote_precision(precision: str, plan: ActorPlan) -> str:
    """``auto`` resolved where the actors run (bf16 or fp16 is the GPU's to say)."""
    if precision != "auto" or plan.device == "cpu":
        return resolve_precision(precision, plan.device)
    import ray

    return ray.get(ray.remote(num_gpus=1, num_cpus=0)(resolve_precision).remote(precision, "cuda"))


class RayStage:
    """The model stage of :func:`embed_with_stage` on the connected Ray cluster."""

    def __init__(self, config: EmbedConfig, loaded: LoadedModel, plan: ActorPlan):
        self.config = config
        self.loaded = loaded
        self.plan = plan
        self.device = plan.device
        self.precision = _remote_precision(config.precision, plan)
        self.batch_size = config.batch_size_for(plan.device)

    def hash_all(self, paths, progress: bool) -> tuple[np.ndarray, np.ndarray]:
        n = len(paths)
        digests = np.full(n, None, dtype=object)
        errors = np.full(n, None, dtype=object)
        if n == 0:
            return digests, errors
        ds = path_dataset(paths, np.arange(n), _HASH_BLOCK).map_batches(
            _hash_batch, batch_size=None, batch_format="numpy")
        with progress_bar("hashing", total=n, unit="img", enabled=progress) as bar:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                rows = batch["row"].astype(np.int64)
                for r, d, e in zip(rows.tolist(), batch["digest"], batch["error"], strict=True):
                    digests[r] = str(d) or None
                    errors[r] = str(e) or None
                bar.advance(len(rows))
        return digests, errors

    def run(self, paths, todo: np.ndarray, *, progress: bool, desc: str, on_batch, on_failed) -> None:
        import ray
        import ray.data

        loaded = self.loaded
        model_ref = ray.put(loaded.model.to("cpu"))
        shape = (3, *loaded.image_size)
        ds = path_dataset(paths, todo, self.batch_size).map_batches(
            _decode_batch, batch_size=None, batch_format="numpy",
            fn_kwargs={"preprocess": loaded.preprocess, "size_hint": self.config.size_hint_for(loaded),
                       "shape": shape},
        ).map_batches(
            ClipActor, batch_size=self.batch_size, batch_format="numpy",
            fn_constructor_kwargs={"model_box": [model_ref, loaded.dim], "device": self.device,
                                   "precision": self.precision, "threads": self.plan.cpus_per_actor},
            compute=ray.data.ActorPoolStrategy(size=self.plan.actors),
            num_cpus=self.plan.cpus_per_actor, num_gpus=self.plan.gpus_per_actor,
            memory=_actor_memory(loaded.model),
        )
        with progress_bar(desc, total=len(todo), unit="img", enabled=progress) as bar:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                rows = batch["row"].astype(np.int64)
                errors = batch["error"]
                bad = np.array([bool(e) for e in errors], dtype=bool)
                if bad.any():
                    on_failed([(int(r), str(e)) for r, e in zip(rows[bad], errors[bad], strict=True)])
                if (~bad).any():
                    on_batch(rows[~bad], np.ascontiguousarray(batch["vector"][~bad], dtype=np.float32))
                bar.advance(len(rows))

    def info(self) -> dict[str, Any]:
        return {"engine": "ray", "actors": self.plan.actors, "cpus_per_actor": self.plan.cpus_per_actor,
                "num_workers": None}


def embed_images_ray(
    paths: Sequence[str | Path],
    config: EmbedConfig,
    *,
    cache: EmbeddingCache | str | Path | None,
    model: LoadedModel,
    progress: bool = False,
) -> EmbeddingResult:
    """:func:`vecexplore.embed.pipeline.embed_images` on the connected Ray cluster
    (see :func:`vecexplore.scale.cluster.ray_session`).

    Args:
        paths: image files in image-table order, readable at these paths on every node.
        config: as for the local engine; ``device`` picks the actors' (``auto``: GPUs when
            the cluster has any), ``num_workers`` is not used (Ray schedules the decoding).
        cache: the embedding cache (shared with the local engine), a root, or None.
        model: the model loaded in this process (its weights are sent to the actors).
        progress: draw progress bars on stderr.

    Returns:
        The same :class:`EmbeddingResult` as the local engine, within fp tolerance.

    Raises:
        ConfigError: a device the cluster does not have.
    """
    import ray

    if not ray.is_initialized():
        raise RuntimeError("embed_images_ray needs a Ray connection (vecexplore.scale.cluster.ray_session)")
    quiet_data_context()
    plan = cluster_plan(config.device)
    log.info("Ray: %d %s actor(s) of CLIP (%d CPU each)", plan.actors, plan.device, plan.cpus_per_actor)
    stage = RayStage(config, model, plan)
    return embed_with_stage(paths, config, model, stage, cache=cache, progress=progress)
