"""Image and object properties that explain failures ("dark images", "small objects").

Image properties are computed on the decoded RGB image reduced so that its long
side is :data:`ANALYSIS_SIZE` pixels: sharpness in particular depends on scale,
and a fixed analysis scale makes it comparable across images of different sizes.

All functions are pure: arrays in, arrays out.
"""

from __future__ import annotations

import numpy as np

ANALYSIS_SIZE = 256

#: Per-image properties computed from pixels, in display order.
PIXEL_PROPERTIES = ("brightness", "contrast", "sharpness", "colorfulness")
#: Per-image properties computed from the image table and annotations.
TABLE_PROPERTIES = ("width", "height", "aspect_ratio", "n_objects")
IMAGE_PROPERTIES = PIXEL_PROPERTIES + TABLE_PROPERTIES
#: Per-object (detection ground truth) properties.
OBJECT_PROPERTIES = ("relative_area", "box_aspect_ratio", "border_distance", "n_overlapping")

DESCRIPTIONS = {
    "brightness": "mean luma (Rec. 601), 0 = black, 1 = white",
    "contrast": "RMS contrast: standard deviation of luma, 0–0.5",
    "sharpness": "variance of the Laplacian of luma at 256 px (higher = sharper)",
    "colorfulness": "Hasler & Süsstrunk colourfulness (0 = grey)",
    "width": "image width in pixels",
    "height": "image height in pixels",
    "aspect_ratio": "width / height",
    "n_objects": "number of non-crowd ground-truth objects",
    "relative_area": "box area / image area",
    "box_aspect_ratio": "box width / height",
    "border_distance": "distance from the box to the nearest image border / shorter image side",
    "n_overlapping": "other ground-truth boxes in the image that overlap this one",
}


def luma(rgb: np.ndarray) -> np.ndarray:
    """(H, W) float64 luma in [0, 1] from (H, W, 3) uint8 RGB (Rec. 601 weights)."""
    rgb = np.asarray(rgb, dtype=np.float64) / 255.0
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a 2-D array (0 for images under 3×3)."""
    if gray.shape[0] < 3 or gray.shape[1] < 3:
        return 0.0
    lap = (
        gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:] - 4.0 * gray[1:-1, 1:-1]
    )
    return float(lap.var())


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Süsstrunk (2003) colourfulness of (H, W, 3) uint8 RGB, in 0..~0.6 for [0,1] values."""
    rgb = np.asarray(rgb, dtype=np.float64) / 255.0
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def pixel_properties(rgb: np.ndarray) -> dict[str, float]:
    """Brightness, contrast, sharpness and colourfulness of one (H, W, 3) uint8 RGB image.

    The caller should pass the image reduced to :data:`ANALYSIS_SIZE` on its long side.
    """
    gray = luma(rgb)
    return {
        "brightness": float(gray.mean()),
        "contrast": float(gray.std()),
        "sharpness": laplacian_variance(gray),
        "colorfulness": colorfulness(rgb),
    }


def analysis_image(image):
    """A PIL image reduced (never enlarged) to ANALYSIS_SIZE on its long side, as uint8 RGB array."""
    from PIL import Image

    w, h = image.size
    scale = ANALYSIS_SIZE / max(w, h)
    if scale < 1:
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def table_properties(width: np.ndarray, height: np.ndarray, n_objects: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image properties from sizes and GT counts; aspect is NaN where the size is unknown (0)."""
    width = np.asarray(width, dtype=np.float64)
    height = np.asarray(height, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = np.where(height > 0, width / height, np.nan)
    return {
        "width": np.where(width > 0, width, np.nan),
        "height": np.where(height > 0, height, np.nan),
        "aspect_ratio": aspect,
        "n_objects": np.asarray(n_objects, dtype=np.float64),
    }


def object_properties(
    xywh: np.ndarray, image_idx: np.ndarray, image_width: np.ndarray, image_height: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-object properties of boxes.

    Args:
        xywh: (n, 4) float64 boxes.
        image_idx: (n,) int64 image of each box.
        image_width, image_height: (N,) image sizes (0 = unknown → NaN properties).

    Returns:
        dict of (n,) float64 arrays, keys :data:`OBJECT_PROPERTIES`.
    """
    xywh = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    image_idx = np.asarray(image_idx, dtype=np.int64)
    W = np.asarray(image_width, dtype=np.float64)[image_idx]
    H = np.asarray(image_height, dtype=np.float64)[image_idx]
    known = (W > 0) & (H > 0)
    x, y, w, h = xywh.T
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_area = np.where(known, (w * h) / (W * H), np.nan)
        border = np.minimum.reduce([x, y, W - (x + w), H - (y + h)])
        border = np.where(known, np.clip(border, 0, None) / np.minimum(W, H), np.nan)
        aspect = w / h
    return {
        "relative_area": rel_area,
        "box_aspect_ratio": aspect,
        "border_distance": border,
        "n_overlapping": _overlap_counts(xywh, image_idx).astype(np.float64),
    }


def _overlap_counts(xywh: np.ndarray, image_idx: np.ndarray) -> np.ndarray:
    """For each box, how many other boxes of the same image intersect it (positive area)."""
    n = len(xywh)
    counts = np.zeros(n, dtype=np.int64)
    if n == 0:
        return counts
    order = np.argsort(image_idx, kind="stable")
    sorted_img = image_idx[order]
    bounds = np.flatnonzero(np.diff(sorted_img)) + 1
    for group in np.split(order, bounds):
        if len(group) < 2:
            continue
        b = xywh[group]
        x1, y1 = b[:, 0], b[:, 1]
        x2, y2 = x1 + b[:, 2], y1 + b[:, 3]
        iw = np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :])
        ih = np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None, :])
        hit = (iw > 0) & (ih > 0)
        counts[group] = hit.sum(axis=1) - 1
    return counts
