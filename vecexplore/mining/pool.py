"""The unlabeled pool: its image paths, and their embeddings by the run's own model.

The pool is embedded by :func:`vecexplore.embed.pipeline.embed_images`, the
pipeline ``build`` uses: through the same embedding cache (a second ``mine`` on the
same pool embeds nothing, an interrupted one resumes from what it cached), with
a progress bar, and with undecodable images recorded with a reason instead of
stopping the job.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from vecexplore.errors import ConfigError, InputError, WeightsError

log = logging.getLogger(__name__)


def list_pool(pool: str | Path) -> list[str]:
    """The pool's image paths: every image under a directory (recursively, the extensions
    ``build`` accepts, hidden files skipped, sorted), or the lines of a text file
    (blank lines and ``#`` comments skipped; relative paths are relative to the file's
    folder). Paths in a list that are missing or not images are kept: embedding
    records them as bad.

    Raises:
        InputError: the pool does not exist, or lists no image.
    """
    from vecexplore.io._read import read_text
    from vecexplore.io.paths import IMAGE_EXTENSIONS, list_images

    pool = Path(pool)
    if not pool.exists():
        raise InputError("pool not found (give a folder of images or a text file of paths)", path=pool)
    if pool.is_dir():
        paths = [str(pool.resolve() / rel) for rel in list_images(pool)]
        if not paths:
            exts = ", ".join(sorted(IMAGE_EXTENSIONS))
            raise InputError(f"the pool folder holds no image (looked for {exts}, recursively)", path=pool)
        return paths
    base = pool.resolve().parent
    paths = []
    for raw in read_text(pool).splitlines():
        item = raw.strip()
        if item and not item.startswith("#"):
            p = Path(item).expanduser()
            paths.append(str(p if p.is_absolute() else base / p))
    if not paths:
        raise InputError("the pool list names no image", path=pool)
    return paths


def run_embed_config(run, *, device: str = "auto", batch_size: int | None = None,
                     num_workers: int | None = None):
    """The :class:`~vecexplore.embed.pipeline.EmbedConfig` that gives the vectors of ``run``:
    its model, weights (the random seed it really used, also after a fallback), precision
    and decoding, on ``device``.

    Raises:
        RunStoreError: the manifest does not record the model.
    """
    from vecexplore.embed.pipeline import EmbedConfig
    from vecexplore.errors import RunStoreError

    model = run.manifest.get("model") or {}
    recorded = (run.manifest.get("config") or {}).get("embed") or {}
    if not model.get("model") or not model.get("weights_id"):
        raise RunStoreError(f"{run.path}: the manifest does not record the embedding model; rebuild the run")
    weights = model["weights_id"] if model.get("random") else model.get("weights") or model["weights_id"]
    known = {k: recorded[k] for k in ("seed", "jpeg_draft") if k in recorded}
    config = EmbedConfig(model=model["model"], weights=weights, device=device, batch_size=batch_size,
                         num_workers=num_workers, **known)
    precision = model.get("precision")
    return replace(config, precision=precision) if precision in ("fp32", "fp16", "bf16") else config


def load_run_model(run, config=None, *, device: str = "auto", what: str = "new vectors"):
    """The run's own open_clip model (:func:`run_embed_config`), checked to be the one the run was
    embedded with: ``what`` would otherwise not be comparable with the run's vectors.

    Raises:
        WeightsError: the weights cannot be loaded here, or the checkpoint file is not the one the
            run was built with (its content changed since).
        RunStoreError: the manifest does not record the model.
    """
    from vecexplore.embed.clip import load_clip

    config = config if config is not None else run_embed_config(run, device=device)
    recorded = run.manifest["model"]
    model = load_clip(config.model, config.weights, device=config.device, seed=config.seed)
    if model.weights_id != recorded["weights_id"]:
        raise WeightsError(f"the run {run.path} was embedded with weights {recorded['weights_id']}, but "
                           f"{config.weights} is now {model.weights_id}: {what} would not be "
                           "comparable with the run's")
    return model


def embed_pool(run, paths: list[str], *, device: str = "auto", batch_size: int | None = None,
               num_workers: int | None = None, cache_dir: str | Path | None = None, progress: bool = False):
    """Embed ``paths`` with the run's model through the embedding cache.

    Returns:
        :class:`~vecexplore.embed.pipeline.EmbeddingResult` aligned to ``paths``.

    Raises:
        WeightsError: the run's weights cannot be loaded here, or the checkpoint file
            is not the one the run was built with.
        ConfigError: the device is not available.
    """
    from vecexplore.embed.cache import default_root
    from vecexplore.embed.pipeline import embed_images
    from vecexplore.extras import require

    require("embed", what="mine")
    config = run_embed_config(run, device=device, batch_size=batch_size, num_workers=num_workers)
    recorded = run.manifest["model"]
    model = load_run_model(run, config, what="the pool's vectors")
    key = config.cache_key(model)
    if recorded.get("cache_key") and key != recorded["cache_key"]:
        log.warning("the pool is embedded as %s, the run was embedded as %s: similarities may be slightly off",
                    key, recorded["cache_key"])
    root = Path(cache_dir) if cache_dir is not None else default_root()
    result = embed_images(paths, config, cache=root, progress=progress, model=model)
    if result.vectors.shape[1] != run.embeddings().shape[1]:
        raise ConfigError(f"the pool's vectors have dimension {result.vectors.shape[1]}, the run's "
                          f"{run.embeddings().shape[1]}")
    return result


def pool_index_dir(cache_dir: str | Path | None, model_key: str) -> Path:
    """Where the pools' IVF indexes (:func:`vecexplore.mining.index.cached_index`) are kept:
    ``pool-index/`` in the embedding cache's folder of ``model_key`` (beside its ``shards/``),
    under ``cache_dir`` (None: the default cache root). Deleting it only costs a rebuild."""
    from vecexplore.embed.cache import EmbeddingCache

    return EmbeddingCache(cache_dir, model_key).directory / "pool-index"


__all__ = ["embed_pool", "list_pool", "load_run_model", "pool_index_dir", "run_embed_config"]
