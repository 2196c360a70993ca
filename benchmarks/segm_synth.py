"""Random COCO instance-segmentation cases: GT and results dicts as pycocotools reads them.

``make_segm_case(seed, num_images=..., num_classes=...)`` gives ground truth with
polygon masks (one or two polygons), uncompressed-RLE masks, crowd regions as
uncompressed RLE (as COCO writes them), and results whose masks are compressed
RLE (``counts`` a string, as Detectron2 writes them) or polygons, with or
without ``bbox``. Scores are rounded so that ties occur; ``many`` images get more
than 100 detections (``maxDets``; always the first image). Seeded with a local generator.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

_SIZES = ((64, 48), (48, 64), (80, 60), (100, 75))


def _polygon(rng, cx, cy, r, k=None):
    k = int(rng.integers(3, 12)) if k is None else k
    ang = np.sort(rng.uniform(0, 2 * np.pi, k))
    rad = r * rng.uniform(0.5, 1.0, k)
    pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
    return [float(v) for v in np.round(pts, 2).ravel()]


def _uncompressed(mask: np.ndarray) -> list[int]:
    """Column-major run lengths starting with zeros (COCO's uncompressed RLE)."""
    flat = np.asarray(mask, np.uint8).ravel(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.r_[0, change, flat.size]
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0, *counts]
    return [int(c) for c in counts]


def _rle_of(polys, h, w):
    return mask_utils.merge(mask_utils.frPyObjects(polys, h, w))


def make_segm_case(seed: int, *, num_images: int | None = None, num_classes: int | None = None,
                   p_crowd: float = 0.1, many: bool = False, bbox: str = "mixed",
                   size_scale: float = 1.0):
    """``(gt, results)`` COCO dicts.

    Args:
        bbox: "yes" (every result has a bbox), "no" (none: mask-only results) or
            "mixed" (decided per case: pycocotools' rule reads the first result).
        size_scale: image size multiplier (1 = tiny test images; ~6 = COCO-like).
    """
    rng = np.random.default_rng(seed)
    n_img = int(rng.integers(1, 7)) if num_images is None else num_images
    n_cls = int(rng.integers(1, 5)) if num_classes is None else num_classes
    image_ids = rng.choice(np.arange(1, 10 * n_img + 10), n_img, replace=False)
    cat_ids = rng.choice(np.arange(1, 200), n_cls, replace=False)
    with_bbox = {"yes": True, "no": False}.get(bbox, bool(rng.random() < 0.5))
    images, anns, results = [], [], []
    ann_id = 1
    for img in image_ids.tolist():
        w, h = (int(v * size_scale) for v in _SIZES[int(rng.integers(len(_SIZES)))])
        images.append({"id": img, "file_name": f"{img}.jpg", "width": w, "height": h})
        n_gt = 0 if rng.random() < 0.15 else int(rng.integers(1, 8))
        objs = []
        for _ in range(n_gt):
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            r = float(np.exp(rng.uniform(np.log(2.5), np.log(min(w, h) / 2))))
            cat = int(rng.choice(cat_ids))
            crowd = int(rng.random() < p_crowd)
            polys = [_polygon(rng, cx, cy, r)]
            if rng.random() < 0.2:
                polys.append(_polygon(rng, cx + r, cy, r / 2))
            rle = _rle_of(polys, h, w)
            kind = "crowd" if crowd else ("rle" if rng.random() < 0.2 else "poly")
            seg = polys if kind == "poly" else {"size": [h, w], "counts": _uncompressed(mask_utils.decode(rle))}
            area = float(mask_utils.area(rle))
            bb = [float(v) for v in mask_utils.toBbox(rle)]
            if bb[2] <= 0 or bb[3] <= 0:
                continue  # a polygon that rasterises to nothing: no box to give it
            anns.append({"id": ann_id, "image_id": img, "category_id": cat, "segmentation": seg,
                         "area": area if rng.random() < 0.9 else area * float(rng.uniform(0.8, 1.2)),
                         "bbox": bb, "iscrowd": crowd})
            ann_id += 1
            objs.append((polys[0], r, cat))
        crowded = many and (img == image_ids[0] or rng.random() < 0.5)  # at least one image past maxDets
        n_det = int(rng.integers(101, 140)) if crowded else int(rng.integers(0, 10))
        for _ in range(n_det):
            if objs and rng.random() < 0.7:  # a detection of an object: its outline, jittered
                poly, r, cat = objs[int(rng.integers(len(objs)))]
                noise = rng.normal(0, r * float(rng.choice([0.03, 0.1, 0.3])), len(poly))
                polys = [[float(v) for v in np.round(np.asarray(poly) + noise, 2)]]
                if rng.random() < 0.15:
                    cat = int(rng.choice(cat_ids))
            else:
                cx, cy = rng.uniform(0, w), rng.uniform(0, h)
                r = float(np.exp(rng.uniform(np.log(2.5), np.log(min(w, h) / 2))))
                cat = int(rng.choice(cat_ids))
                polys = [_polygon(rng, cx, cy, r)]
            rle = _rle_of(polys, h, w)
            bb = [float(v) for v in mask_utils.toBbox(rle)]
            if bb[2] <= 0 or bb[3] <= 0:
                continue
            score = float(np.round(rng.uniform(0.05, 1.0), 1 if rng.random() < 0.5 else 3))
            use_poly = rng.random() < 0.3 and with_bbox
            seg = polys if use_poly else {"size": [h, w], "counts": rle["counts"].decode("ascii")}
            rec = {"image_id": img, "category_id": cat, "segmentation": seg, "score": score}
            if with_bbox:
                rec["bbox"] = bb
            results.append(rec)
    rng.shuffle(results)  # file order is the tie-break: exercise it
    cats = [{"id": int(c), "name": f"c{int(c)}"} for c in cat_ids]
    return {"images": images, "annotations": anns, "categories": cats}, results
