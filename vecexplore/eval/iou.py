"""Box IoU exactly as pycocotools computes it (``maskApi.c: bbIou``).

Boxes are COCO ``[x, y, w, h]`` float64. No ``+1`` on widths. For a crowd
ground truth the union is the prediction's own area (a prediction inside a
crowd region counts as fully overlapping it). The arithmetic is written in the
same order as the C code so results are bit-identical, which is what lets
metrics match pycocotools at IoU thresholds that ties can sit exactly on.
"""

from __future__ import annotations

import numpy as np


def _iou(dx, dy, dw, dh, gx, gy, gw, gh, crowd) -> np.ndarray:
    """The one formula, on broadcastable float64 arrays (crowd: bool, same broadcast)."""
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    overlap = (w > 0) & (h > 0)
    inter = np.where(overlap, w * h, 0.0)
    da = dw * dh
    union = np.where(crowd, da, da + gw * gh - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(overlap, inter / union, 0.0)


def pair_iou(dt: np.ndarray, gt: np.ndarray, gt_iscrowd: np.ndarray) -> np.ndarray:
    """IoU of row-aligned pairs: pair ``i`` is ``(dt[i], gt[i])``.

    Args:
        dt, gt: (q, 4) float64 xywh boxes.
        gt_iscrowd: (q,) bool; crowd pairs use the prediction's area as union.

    Returns:
        (q,) float64, bit-identical to :func:`box_iou`'s entries.
    """
    return _iou(*dt.T, *gt.T, np.asarray(gt_iscrowd, dtype=bool))


def box_iou(dt_xywh: np.ndarray, gt_xywh: np.ndarray, gt_iscrowd: np.ndarray | None = None) -> np.ndarray:
    """IoU of every prediction with every ground truth (pycocotools' ``maskUtils.iou`` of boxes).

    The numba twin that the COCO kernels call is
    :func:`vecexplore.eval.coco_kernels.iou_matrix`; tests hold both equal to this.

    Args:
        dt_xywh: (n, 4) float64 predictions.
        gt_xywh: (m, 4) float64 ground truth.
        gt_iscrowd: (m,) bool; crowd columns use the prediction's area as union.

    Returns:
        (n, m) float64; rows = predictions, columns = ground truth.
    """
    dt = np.asarray(dt_xywh, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt_xywh, dtype=np.float64).reshape(-1, 4)
    if len(dt) == 0 or len(gt) == 0:
        return np.zeros((len(dt), len(gt)), dtype=np.float64)
    crowd = np.zeros(len(gt), bool) if gt_iscrowd is None else np.asarray(gt_iscrowd, dtype=bool)
    return _iou(*(dt[:, i : i + 1] for i in range(4)), *(gt[None, :, i] for i in range(4)), crowd[None, :])


__all__ = ["box_iou", "pair_iou"]
