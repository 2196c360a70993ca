"""Box IoU exactly as pycocotools computes it (``maskApi.c: bbIou``).

Boxes are COCO ``[x, y, w, h]`` float64. No ``+1`` on widths. For a crowd
ground truth the union is the prediction's own area (a prediction inside a
crowd region counts as fully overlapping it). The arithmetic is written in the
same order as the C code so results are bit-identical, which is what lets
metrics match pycocotools at IoU thresholds that ties can sit exactly on.
"""

from __future__ import annotations

import numpy as np


def box_iou(dt_xywh: np.ndarray, gt_xywh: np.ndarray, gt_iscrowd: np.ndarray | None = None) -> np.ndarray:
    """IoU of every prediction with every ground truth.

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
    dx, dy, dw, dh = (dt[:, i : i + 1] for i in range(4))
    gx, gy, gw, gh = (gt[None, :, i] for i in range(4))
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    overlap = (w > 0) & (h > 0)
    inter = np.where(overlap, w * h, 0.0)
    da = dw * dh
    ga = gw * gh
    union = da + ga - inter
    if gt_iscrowd is not None:
        crowd = np.asarray(gt_iscrowd, dtype=bool).reshape(1, -1)
        union = np.where(crowd, np.broadcast_to(da, union.shape), union)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(overlap, inter / union, 0.0)
    return iou
