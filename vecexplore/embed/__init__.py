"""CLIP embeddings of images: model loading, the batched pipeline and its cache.

Importing this package does not import torch or open_clip; the functions do.
"""

from __future__ import annotations

from vecexplore.embed.cache import EmbeddingCache, default_root
from vecexplore.embed.clip import (
    DEFAULT_MODEL,
    DEFAULT_WEIGHTS,
    TINY_MODEL,
    LoadedModel,
    load_clip,
    load_clip_with_fallback,
    resolve_device,
)
from vecexplore.embed.pipeline import (
    EmbedConfig,
    EmbeddingResult,
    EmbedStats,
    embed_images,
    resolve_precision,
)

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_WEIGHTS",
    "TINY_MODEL",
    "EmbedConfig",
    "EmbedStats",
    "EmbeddingCache",
    "EmbeddingResult",
    "LoadedModel",
    "default_root",
    "embed_images",
    "load_clip",
    "load_clip_with_fallback",
    "resolve_device",
    "resolve_precision",
]
