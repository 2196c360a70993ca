"""Numba kernel behind :func:`vecexplore.eval.segm.segm_metrics`.

:func:`match_groups_iou` is pycocotools' ``evaluateImg`` for every (class,
image) group, like :func:`vecexplore.eval.coco_kernels.match_groups`, but with
the IoU of each group given (mask IoU from pycocotools ``maskUtils.iou``)
instead of computed from boxes. Both run the one greedy loop,
:func:`vecexplore.eval.coco_kernels.match_groups_with_ious`, so that bbox and
segm follow one rule.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from vecexplore.eval.coco_kernels import match_groups_with_ious


@njit(cache=True)
def match_groups_iou(gt_key, dt_key, iou_flat, iou_start, gt_crowd, gt_ignore, gt_id_nonzero,
                     dt_outside, iou_thresholds):
    """Greedy COCO matching of every (class, image) group with given IoU.

    Args:
        gt_key, dt_key: sorted group keys (as :func:`coco_kernels.match_groups`).
        iou_flat: float64, every group's (n_d, n_g) IoU matrix, row-major, concatenated
            in group order (groups with detections only).
        iou_start: (n_dt,) int64, for each detection the offset of its IoU row in
            ``iou_flat`` (its group's ground truth in input order).
        gt_crowd, gt_ignore, gt_id_nonzero, dt_outside, iou_thresholds: as
            :func:`coco_kernels.match_groups`.

    Returns:
        (n_dt, A, T) int8 state: FP (0), TP (1) or IGNORED (2).
    """
    no_xywh = np.empty((0, 4))
    return match_groups_with_ious(gt_key, dt_key, 1, gt_crowd, gt_ignore, gt_id_nonzero, dt_outside,
                                  iou_thresholds, no_xywh, no_xywh, iou_flat, iou_start)
