"""Numba kernel behind :func:`vecexplore.eval.segm.segm_metrics`.

:func:`match_groups_iou` is pycocotools' ``evaluateImg`` for every (class,
image) group, like :func:`vecexplore.eval.coco_kernels.match_groups`, but with
the IoU of each group given (mask IoU from pycocotools ``maskUtils.iou``)
instead of computed from boxes. The greedy loop is the same statement for
statement, so that bbox and segm follow one rule.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from vecexplore.eval.coco_kernels import IGNORED, TP

_IOU_CAP = 1 - 1e-10  # pycocotools: iou = min([t, 1 - 1e-10])


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
    n_area = gt_ignore.shape[0]
    n_thr = iou_thresholds.shape[0]
    n_gt, n_dt = gt_key.shape[0], dt_key.shape[0]
    state = np.zeros((n_dt, n_area, n_thr), np.int8)
    max_g, max_d = 1, 1
    run = 0
    for i in range(n_gt):
        run = run + 1 if i and gt_key[i] == gt_key[i - 1] else 1
        max_g = max(max_g, run)
    for i in range(n_dt):
        run = run + 1 if i and dt_key[i] == dt_key[i - 1] else 1
        max_d = max(max_d, run)
    order = np.empty((n_area, max_g), np.int64)
    ig = np.empty((n_area, max_g), np.bool_)
    taken = np.empty(max_g, np.bool_)
    match = np.empty((n_area, n_thr, max_d), np.int64)
    thresholds = np.minimum(iou_thresholds, _IOU_CAP)
    g0, d0 = 0, 0
    while d0 < n_dt:
        key = dt_key[d0]
        d1 = d0 + 1
        while d1 < n_dt and dt_key[d1] == key:
            d1 += 1
        while g0 < n_gt and gt_key[g0] < key:
            g0 += 1
        g1 = g0
        while g1 < n_gt and gt_key[g1] == key:
            g1 += 1
        n_g, n_d = g1 - g0, d1 - d0
        for a in range(n_area):
            k = 0
            for j in range(n_g):
                if not gt_ignore[a, g0 + j]:
                    order[a, k] = j
                    ig[a, k] = False
                    k += 1
            for j in range(n_g):
                if gt_ignore[a, g0 + j]:
                    order[a, k] = j
                    ig[a, k] = True
                    k += 1
            same = -1
            for a2 in range(a):
                equal = True
                for j in range(n_g):
                    if gt_ignore[a2, g0 + j] != gt_ignore[a, g0 + j]:
                        equal = False
                        break
                if equal:
                    same = a2
                    break
            for t in range(n_thr):
                if same >= 0:
                    match[a, t, :n_d] = match[same, t, :n_d]
                else:
                    taken[:n_g] = False
                    for d in range(n_d):
                        row = iou_start[d0 + d]
                        best = thresholds[t]
                        m = -1
                        for jj in range(n_g):
                            gj = order[a, jj]
                            if taken[jj] and not gt_crowd[g0 + gj]:
                                continue
                            if m > -1 and not ig[a, m] and ig[a, jj]:
                                break
                            v = iou_flat[row + gj]
                            if v < best:
                                continue
                            best = v
                            m = jj
                        if m > -1:
                            taken[m] = True
                        match[a, t, d] = m
                for d in range(n_d):
                    m = match[a, t, d]
                    matched = m > -1 and gt_id_nonzero[g0 + order[a, m]]
                    ignored = m > -1 and ig[a, m]
                    if not matched and dt_outside[a, d0 + d]:
                        ignored = True
                    if ignored:
                        state[d0 + d, a, t] = IGNORED
                    elif matched:
                        state[d0 + d, a, t] = TP
        d0 = d1
    return state
