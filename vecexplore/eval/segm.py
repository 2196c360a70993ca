"""COCO instance-segmentation metrics, equal to pycocotools ``COCOeval(gt, dt, "segm")``.

Same evaluation as :mod:`vecexplore.eval.coco` (bbox) with one change, as in
pycocotools: the IoU of a (detection, ground truth) pair is the IoU of their
masks, ``maskUtils.iou`` (crowd ground truth: intersection over the detection's
area). Areas for the small/medium/large ranges are the ``area`` the inputs
carry: the annotation's ``area`` for ground truth; for predictions ``w * h`` of
their ``bbox``, or the mask area when the results have no ``bbox`` (pycocotools'
``loadRes``; :mod:`vecexplore.io.masks` sets ``Boxes.area`` so).

pycocotools is the RLE codec (``maskUtils.iou`` per (class, image) group with
detections, one C call each); the greedy matching and the accumulation are the
numba kernels of the bbox path, so ties, crowd regions and ``maxDets`` follow
exactly the same rules.

Example::

    m = segm_metrics_of(ds)            # None when gt or predictions carry no masks
    m.as_dict()["AP"], m.per_class_ap
"""

from __future__ import annotations

import logging

import numpy as np

from vecexplore.errors import ValidationError
from vecexplore.eval.coco import CocoMetrics, CocoParams, evaluate_groups
from vecexplore.types import Boxes, Dataset

log = logging.getLogger(__name__)


def has_masks(dataset: Dataset) -> bool:
    """True when both the ground truth and the predictions of a detection dataset carry masks."""
    return dataset.task == "detection" and dataset.gt.rle is not None and dataset.pred.rle is not None


def segm_metrics_of(dataset: Dataset, *, params: CocoParams = CocoParams()) -> CocoMetrics | None:
    """:func:`segm_metrics` of a dataset, or None when it carries no masks (see :func:`has_masks`)."""
    if not has_masks(dataset):
        return None
    return segm_metrics(dataset.gt, dataset.pred, num_images=dataset.num_images,
                        num_classes=len(dataset.categories), image_ids=dataset.images.image_id, params=params)


def segm_metrics(gt: Boxes, pred: Boxes, *, num_images: int, num_classes: int,
                 image_ids: np.ndarray | None = None, params: CocoParams = CocoParams()) -> CocoMetrics:
    """COCO segm metrics of ``pred`` against ``gt`` (both with ``rle``), equal to pycocotools.

    Arguments and result as :func:`vecexplore.eval.coco.coco_metrics`.

    Raises:
        ValidationError: objects without masks, or inconsistent inputs.
    """
    from vecexplore.eval import coco_kernels as kern
    from vecexplore.eval.segm_kernels import match_groups_iou

    def check() -> None:
        for name, objs in (("gt", gt), ("pred", pred)):
            if objs.rle is None:
                raise ValidationError(f"segm_metrics: {name} carries no masks (Boxes.rle is None)")

    def match(g_ord, g_key, g_crowd, g_ignore, p_ord, p_key, p_outside, iou_thr):
        iou_flat, iou_start = _group_ious(g_key, p_key, gt.rle[g_ord], g_crowd, pred.rle[p_ord])
        return match_groups_iou(g_key, p_key, iou_flat, iou_start, g_crowd, g_ignore, gt.object_id[g_ord] != 0,
                                p_outside, iou_thr)

    return evaluate_groups(gt, pred, num_images=num_images, num_classes=num_classes, image_ids=image_ids,
                           params=params, kern=kern, match=match, what="segm_metrics", check=check)


def _group_ious(g_key: np.ndarray, p_key: np.ndarray, g_rle: np.ndarray, g_crowd: np.ndarray,
                p_rle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mask IoU of every (class, image) group with detections: ``(iou_flat, iou_start)``
    for :func:`~vecexplore.eval.segm_kernels.match_groups_iou`."""
    from pycocotools import mask as mask_utils

    n_dt = len(p_key)
    iou_start = np.zeros(n_dt, np.int64)
    if n_dt == 0:
        return np.zeros(0), iou_start
    d_lo = np.flatnonzero(np.r_[True, p_key[1:] != p_key[:-1]])
    d_hi = np.r_[d_lo[1:], n_dt]
    keys = p_key[d_lo]
    g_lo = np.searchsorted(g_key, keys, side="left")
    g_hi = np.searchsorted(g_key, keys, side="right")
    n_g = g_hi - g_lo
    sizes = (d_hi - d_lo) * n_g
    offsets = np.r_[0, np.cumsum(sizes)]
    iou_flat = np.zeros(int(offsets[-1]))
    for i in range(len(d_lo)):
        lo, hi = int(d_lo[i]), int(d_hi[i])
        iou_start[lo:hi] = offsets[i] + np.arange(hi - lo) * n_g[i]
        if n_g[i] == 0:
            continue
        a, b = int(g_lo[i]), int(g_hi[i])
        ious = mask_utils.iou(p_rle[lo:hi].tolist(), g_rle[a:b].tolist(), g_crowd[a:b].astype(np.uint8).tolist())
        iou_flat[offsets[i]:offsets[i + 1]] = np.asarray(ious, np.float64).ravel()
    return iou_flat, iou_start


def pair_mask_iou(pred_rle: np.ndarray, gt_rle: np.ndarray, p: np.ndarray, g: np.ndarray,
                  crowd: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Mask IoU of (prediction, GT) pairs laid out as the outcome matching makes them.

    The pairs of one image are contiguous, prediction-major, each prediction
    paired with the same GT rows in the same order (every GT of the image); one
    ``maskUtils.iou`` call per image computes the block.

    Args:
        pred_rle, gt_rle: (n,), (m,) object arrays of compressed RLEs.
        p, g: (q,) int64 rows of the pairs. crowd: (q,) bool, the GT's ``iscrowd``.
        image: (q,) int64 image of each pair.

    Returns:
        (q,) float64 IoU (crowd GT: intersection over the prediction's area).
    """
    from pycocotools import mask as mask_utils

    q = len(p)
    out = np.zeros(q)
    if q == 0:
        return out
    starts = np.flatnonzero(np.r_[True, image[1:] != image[:-1]])
    ends = np.r_[starts[1:], q]
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        pp = p[s:e]
        n_g = int(np.argmax(pp != pp[0])) if (pp != pp[0]).any() else e - s
        rows = (e - s) // n_g
        gs = g[s:s + n_g]
        ps = pp[::n_g]
        if rows * n_g != e - s or not (g[s:e].reshape(rows, n_g) == gs).all():
            raise ValidationError("pair_mask_iou: pairs are not laid out per image, prediction-major")
        ious = mask_utils.iou(pred_rle[ps].tolist(), gt_rle[gs].tolist(), crowd[s:s + n_g].astype(np.uint8).tolist())
        out[s:e] = np.asarray(ious, np.float64).ravel()
    return out
