"""Synthetic COCO-scale ground truth and predictions with realistic structure.

``make_synthetic_coco(num_images=5000, num_classes=80)`` gives about 27k ground
truth and 43k predictions, like COCO val2017 with a decent detector:

* images: COCO-like sizes, non-contiguous ids in shuffled file order; ~4% have
  no ground truth, ~3% no predictions;
* ground truth: 0-15 per image (negative binomial), Zipf-like class frequencies,
  box sizes log-normal so that ~41% are small (< 32²), ~38% medium, ~21% large,
  ``area`` (the segment's area) 45-90% of ``w * h``, ~1% crowd regions;
* predictions: jittered true positives (detection rate and jitter depend on
  size; ~5% with the wrong class), duplicates with lower scores, detections
  inside crowd regions, background false positives with low scores; scores
  rounded to ``score_decimals`` so ties occur; file order grouped by image,
  shuffled within an image.

Everything is vectorised (the 100k-image / 1M-prediction case takes seconds) and
seeded with a local generator. Returns our :class:`Dataset` and, on demand, the
COCO dicts that pycocotools / faster-coco-eval read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vecexplore.types import Boxes, Categories, Dataset, ImageTable

_SIZES = np.array([(640, 480), (480, 640), (640, 427), (427, 640), (640, 360), (500, 375), (640, 640)], np.float64)


@dataclass(frozen=True, eq=False)
class SynthCoco:
    """A generated case: ``dataset`` plus converters to pycocotools' inputs."""

    dataset: Dataset

    def coco_gt(self) -> dict:
        """The ground truth as a COCO annotations dict (images in file order)."""
        ds = self.dataset
        im, gt, cats = ds.images, ds.gt, ds.categories
        images = [{"id": i, "width": w, "height": h, "file_name": f}
                  for i, w, h, f in zip(im.image_id.tolist(), im.width.tolist(), im.height.tolist(),
                                        im.file_name.tolist(), strict=True)]
        anns = [{"id": a, "image_id": i, "category_id": c, "bbox": b, "area": ar, "iscrowd": int(cr)}
                for a, i, c, b, ar, cr in zip(gt.object_id.tolist(), im.image_id[gt.image_idx].tolist(),
                                              cats.ids[gt.class_idx].tolist(), gt.xywh.tolist(), gt.area.tolist(),
                                              gt.iscrowd.tolist(), strict=True)]
        categories = [{"id": c, "name": n} for c, n in zip(cats.ids.tolist(), cats.names.tolist(), strict=True)]
        return {"images": images, "annotations": anns, "categories": categories}

    def coco_results(self) -> list[dict]:
        """The predictions as a COCO results list, in file order."""
        ds = self.dataset
        pred = ds.pred
        return [{"image_id": i, "category_id": c, "bbox": b, "score": s}
                for i, c, b, s in zip(ds.images.image_id[pred.image_idx].tolist(),
                                      ds.categories.ids[pred.class_idx].tolist(), pred.xywh.tolist(),
                                      pred.score.tolist(), strict=True)]


def _clip_round(xywh: np.ndarray, wh_img: np.ndarray) -> np.ndarray:
    """Clip boxes to their image and round to 2 decimals; width and height stay >= 0.01."""
    x1 = np.clip(xywh[:, 0], 0, wh_img[:, 0] - 1)
    y1 = np.clip(xywh[:, 1], 0, wh_img[:, 1] - 1)
    x2 = np.clip(xywh[:, 0] + xywh[:, 2], x1 + 0.5, wh_img[:, 0])
    y2 = np.clip(xywh[:, 1] + xywh[:, 3], y1 + 0.5, wh_img[:, 1])
    out = np.round(np.column_stack([x1, y1, x2 - x1, y2 - y1]), 2)
    out[:, 2:] = np.maximum(out[:, 2:], 0.01)
    return out


def _random_boxes(rng, wh_img: np.ndarray, scale: float = 1.0) -> np.ndarray:
    n = len(wh_img)
    side = np.exp(rng.normal(np.log(50.0) + np.log(scale), 1.05, n))
    aspect = np.exp(rng.normal(0.0, 0.5, n))
    w = np.minimum(side * np.sqrt(aspect), wh_img[:, 0])
    h = np.minimum(side / np.sqrt(aspect), wh_img[:, 1])
    x = rng.uniform(0, 1, n) * (wh_img[:, 0] - w)
    y = rng.uniform(0, 1, n) * (wh_img[:, 1] - h)
    return _clip_round(np.column_stack([x, y, w, h]), wh_img)


def _jitter(rng, xywh: np.ndarray, wh_img: np.ndarray, rel: np.ndarray) -> np.ndarray:
    noise = rng.normal(0.0, 1.0, xywh.shape) * rel[:, None]
    w, h = xywh[:, 2], xywh[:, 3]
    out = np.column_stack([xywh[:, 0] + noise[:, 0] * w, xywh[:, 1] + noise[:, 1] * h,
                           w * np.exp(noise[:, 2]), h * np.exp(noise[:, 3])])
    return _clip_round(out, wh_img)


def make_synthetic_coco(*, num_images: int = 5000, num_classes: int = 80, gt_per_image: float = 5.6,
                        fp_per_image: float = 5.0, max_gt_per_image: int = 15, crowd_fraction: float = 0.01,
                        score_decimals: int = 3, seed: int = 0) -> SynthCoco:
    """Generate a case; sizes scale linearly with ``num_images`` (see module doc)."""
    rng = np.random.default_rng(seed)
    image_id = rng.choice(np.arange(1, 50 * num_images + 2), num_images, replace=False)  # shuffled, gaps
    wh = _SIZES[rng.integers(0, len(_SIZES), num_images)]
    cat_ids = np.sort(rng.choice(np.arange(1, int(num_classes * 1.15) + 2), num_classes, replace=False))
    class_p = 1.0 / np.arange(1, num_classes + 1) ** 0.8
    class_p = rng.permutation(class_p / class_p.sum())

    # ground truth
    k = 2.0
    mean = max(gt_per_image - 1.0, 1e-3)  # 1 + negative binomial: every image with GT has at least one
    n_gt = np.minimum(rng.negative_binomial(k, k / (k + mean), num_images) + 1, max_gt_per_image)
    n_gt[rng.random(num_images) < 0.04] = 0
    g_img = np.repeat(np.arange(num_images), n_gt)
    g_wh = wh[g_img]
    g_crowd = rng.random(len(g_img)) < crowd_fraction
    g_xywh = _random_boxes(rng, g_wh)
    g_xywh[g_crowd] = _random_boxes(rng, g_wh[g_crowd], scale=3.0)
    g_cls = rng.choice(num_classes, len(g_img), p=class_p)
    g_area = np.round(g_xywh[:, 2] * g_xywh[:, 3] * rng.uniform(0.45, 0.9, len(g_img)), 2)
    g_ann_id = rng.choice(np.arange(1, 20 * len(g_img) + 2), len(g_img), replace=False)

    # true positives (rate and jitter by size), wrong classes, duplicates
    side = np.sqrt(g_xywh[:, 2] * g_xywh[:, 3])
    p_det = np.where(side < 32, 0.55, np.where(side < 96, 0.8, 0.9))
    rel = np.where(side < 32, 0.12, np.where(side < 96, 0.08, 0.05))
    det = ~g_crowd & (rng.random(len(g_img)) < p_det)
    tp_src = np.flatnonzero(det)
    tp_xywh = _jitter(rng, g_xywh[tp_src], g_wh[tp_src], rel[tp_src])
    tp_cls = np.where(rng.random(len(tp_src)) < 0.05, rng.choice(num_classes, len(tp_src), p=class_p), g_cls[tp_src])
    tp_score = rng.beta(5.0, 2.0, len(tp_src))
    dup = rng.random(len(tp_src)) < 0.15
    dup_src = tp_src[dup]
    dup_xywh = _jitter(rng, g_xywh[dup_src], g_wh[dup_src], 2.5 * rel[dup_src])
    dup_score = tp_score[dup] * rng.uniform(0.3, 0.9, dup.sum())
    # detections inside crowd regions, background false positives
    crowd_src = np.repeat(np.flatnonzero(g_crowd), rng.integers(0, 4, g_crowd.sum()))
    cw = g_xywh[crowd_src]
    sub = cw[:, 2:] * rng.uniform(0.15, 0.4, (len(crowd_src), 2))
    crowd_xywh = _clip_round(np.column_stack([cw[:, :2] + rng.uniform(0, 1, sub.shape) * (cw[:, 2:] - sub), sub]),
                             g_wh[crowd_src])
    n_fp = rng.poisson(fp_per_image, num_images)
    fp_img = np.repeat(np.arange(num_images), n_fp)
    fp_xywh = _random_boxes(rng, wh[fp_img], scale=0.8)

    p_img = np.concatenate([g_img[tp_src], g_img[dup_src], g_img[crowd_src], fp_img])
    p_xywh = np.concatenate([tp_xywh, dup_xywh, crowd_xywh, fp_xywh])
    p_cls = np.concatenate([tp_cls, tp_cls[dup], g_cls[crowd_src], rng.choice(num_classes, len(fp_img), p=class_p)])
    p_score = np.concatenate([tp_score, dup_score, rng.beta(2.0, 3.0, len(crowd_src)), rng.beta(1.2, 5.0, len(fp_img))])
    p_score = np.clip(np.round(p_score, score_decimals), 0.0, 1.0)
    keep = ~(rng.random(num_images) < 0.03)[p_img]  # some images without predictions
    order = np.lexsort((rng.random(keep.sum()), p_img[keep]))  # grouped by image, shuffled within
    sel = np.flatnonzero(keep)[order]

    images = ImageTable(image_id=image_id, file_name=[f"{i:012d}.jpg" for i in image_id.tolist()],
                        width=wh[:, 0].astype(np.int64), height=wh[:, 1].astype(np.int64))
    categories = Categories(ids=cat_ids, names=np.array([f"class_{c}" for c in cat_ids.tolist()], dtype=object))
    gt = Boxes(image_idx=g_img, class_idx=g_cls, xywh=g_xywh, object_id=g_ann_id, iscrowd=g_crowd, area=g_area)
    pred = Boxes(image_idx=p_img[sel], class_idx=p_cls[sel], xywh=p_xywh[sel], object_id=np.arange(1, len(sel) + 1),
                 score=p_score[sel])
    return SynthCoco(Dataset(task="detection", images=images, categories=categories, gt=gt, pred=pred))
