"""Object crops for the object-level map: geometry, cache keys and cutting.

A crop is a square window centred on the object's box whose side is the box's
longer side grown by ``padding`` of it on each side (context), and at least
``min_size`` pixels of the decoded image; the part of the window outside the
image is black. Squares keep the whole object through the model's own
resize-and-centre-crop, whatever the box's aspect ratio.

Crops are cut from the one decode of each image that the embedding pipeline
makes (:class:`vecexplore.embed.pipeline._DecodeDataset`): the image's vector
and its objects' crops come from the same pixels, at the same (possibly
reduced, see ``EmbedConfig.jpeg_draft``) decode scale; boxes are given in the
file's pixels and scaled to the decoded size.

A crop's cache key is a 40-hex BLAKE2b of the image's content digest, the box
(to 1/1000 px) and the crop settings; the cache directory is the model's
(:meth:`~vecexplore.embed.pipeline.EmbedConfig.cache_key`, which already holds
the decode scale), so a rebuild, or a second run on the same images and
boxes, embeds no crop again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from vecexplore.errors import ConfigError


@dataclass(frozen=True)
class CropConfig:
    """How objects are cut out of their images.

    Attributes:
        padding: context on each side, as a fraction of the box's longer side (>= 0).
        min_size: smallest crop side in decoded pixels (>= 1): tiny objects keep
            some surroundings instead of being blown up from a few pixels.
    """

    padding: float = 0.25
    min_size: int = 32

    def __post_init__(self):
        if not (isinstance(self.padding, (int, float)) and np.isfinite(self.padding) and self.padding >= 0):
            raise ConfigError(f"crop.padding must be a finite number >= 0, got {self.padding!r}")
        if not isinstance(self.min_size, int) or self.min_size < 1:
            raise ConfigError(f"crop.min_size must be a positive integer, got {self.min_size!r}")

    def signature(self) -> str:
        return f"crop|pad={float(self.padding):.6g}|min={self.min_size}"


@dataclass(frozen=True)
class ObjectBoxes:
    """The objects to embed: parallel arrays.

    Attributes:
        image_idx: (m,) int64, the image (row of the paths) each object is on.
        xyxy: (m, 4) float64, the box in the file's pixels (after EXIF rotation).
    """

    image_idx: np.ndarray
    xyxy: np.ndarray

    def __post_init__(self):
        idx = np.asarray(self.image_idx, np.int64)
        box = np.asarray(self.xyxy, np.float64)
        if idx.ndim != 1:
            raise ValueError(f"ObjectBoxes.image_idx must be (m,), got {idx.shape}")
        if box.shape != (len(idx), 4):
            raise ValueError(f"ObjectBoxes.xyxy must be ({len(idx)}, 4), got {box.shape}")
        if not np.isfinite(box).all():
            raise ValueError("ObjectBoxes.xyxy: boxes must be finite")
        object.__setattr__(self, "image_idx", idx)
        object.__setattr__(self, "xyxy", box)

    def __len__(self) -> int:
        return len(self.image_idx)


def crop_windows(xyxy: np.ndarray, scale: tuple[float, float], config: CropConfig) -> np.ndarray:
    """(m, 4) int64 crop windows ``x0, y0, x1, y1`` (decoded pixels, x1/y1 exclusive).

    Args:
        xyxy: (m, 4) boxes in the file's pixels.
        scale: (sx, sy) decoded size / file size.
        config: padding and minimum size.
    """
    b = np.asarray(xyxy, np.float64).reshape(-1, 4) * np.array([scale[0], scale[1], scale[0], scale[1]])
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    longer = np.maximum(np.abs(b[:, 2] - b[:, 0]), np.abs(b[:, 3] - b[:, 1]))
    side = np.maximum(np.ceil(longer * (1 + 2 * config.padding)), config.min_size)
    x0 = np.floor(cx - side / 2)
    y0 = np.floor(cy - side / 2)
    return np.stack([x0, y0, x0 + side, y0 + side], axis=1).astype(np.int64)


def cut_crops(image, xyxy: np.ndarray, config: CropConfig) -> list:
    """The crops (PIL images) of boxes ``xyxy`` (file pixels) from a decoded image.

    ``image.info["original_size"]`` (set by :func:`~vecexplore.io.images.open_rgb`)
    is the file's size; without it the decoded size is taken as the file's.
    """
    w, h = image.size
    ow, oh = image.info.get("original_size", image.size)
    windows = crop_windows(xyxy, (w / ow if ow else 1.0, h / oh if oh else 1.0), config)
    return [image.crop(tuple(int(v) for v in win)) for win in windows]


def crop_keys(digests, boxes: ObjectBoxes, config: CropConfig) -> np.ndarray:
    """(m,) object cache keys (40 hex; None where the image has no digest)."""
    sig = config.signature()
    out = np.full(len(boxes), None, dtype=object)
    for j, (i, box) in enumerate(zip(boxes.image_idx.tolist(), boxes.xyxy.tolist(), strict=True)):
        d = digests[i]
        if d is None:
            continue
        text = f"{d}|{box[0]:.3f},{box[1]:.3f},{box[2]:.3f},{box[3]:.3f}|{sig}"
        out[j] = hashlib.blake2b(text.encode(), digest_size=20).hexdigest()
    return out
