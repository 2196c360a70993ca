"""Numba kernels behind :func:`vecexplore.eval.coco.coco_metrics`.

Two passes, each one compiled loop over the whole dataset instead of
pycocotools' Python loop per (image, category, area range):

* :func:`match_groups` — pycocotools' ``computeIoU`` + ``evaluateImg`` for every
  (class, image) group at once: IoU once per group, then the greedy matching for
  every area range and IoU threshold. Output: one state per (area, threshold,
  detection): 0 = false positive, 1 = true positive, 2 = ignored.
* :func:`accumulate` — pycocotools' ``accumulate``: per (class, area, maxDets,
  threshold) the cumulative TP/FP counts over detections in global score order,
  the monotone precision envelope and its samples at the recall thresholds.

Every float operation is written in pycocotools' order (``maskApi.c: bbIou``,
``cocoeval.py``) so that results are bit-identical; no ``fastmath``.

Importing this module imports numba; :mod:`vecexplore.eval.coco` imports it lazily.
"""

from __future__ import annotations

import numpy as np
from numba import njit

FP, TP, IGNORED = 0, 1, 2

_EPS = float(np.spacing(1))  # pycocotools' np.spacing(1) in the precision denominator
_IOU_CAP = 1 - 1e-10  # pycocotools: iou = min([t, 1 - 1e-10])


@njit(cache=True)
def _iou(dx, dy, dw, dh, gx, gy, gw, gh, crowd):
    """bbIou for one pair, in the C code's operation order."""
    w = min(dw + dx, gw + gx) - max(dx, gx)
    if w <= 0:
        return 0.0
    h = min(dh + dy, gh + gy) - max(dy, gy)
    if h <= 0:
        return 0.0
    inter = w * h
    da = dw * dh
    if crowd:
        union = da
    else:
        union = da + gw * gh - inter
    return inter / union


@njit(cache=True)
def iou_matrix(dt_xywh, gt_xywh, gt_crowd):
    """(n, m) IoU of predictions × ground truth; same numbers as ``box_iou``."""
    n, m = dt_xywh.shape[0], gt_xywh.shape[0]
    out = np.zeros((n, m))
    for i in range(n):
        for j in range(m):
            out[i, j] = _iou(dt_xywh[i, 0], dt_xywh[i, 1], dt_xywh[i, 2], dt_xywh[i, 3],
                             gt_xywh[j, 0], gt_xywh[j, 1], gt_xywh[j, 2], gt_xywh[j, 3], gt_crowd[j])
    return out


@njit(cache=True)
def match_groups(gt_start, gt_end, dt_start, dt_end,
                 gt_xywh, gt_crowd, gt_ignore, gt_id_nonzero,
                 dt_xywh, dt_outside, iou_thresholds):
    """Greedy COCO matching of every (class, image) group.

    Ground truth and detections are pre-sorted so that group ``g`` owns rows
    ``gt_start[g]:gt_end[g]`` (input order) and ``dt_start[g]:dt_end[g]``
    (score descending, stable, already cut to ``maxDets[-1]``).

    Args:
        gt_start, gt_end, dt_start, dt_end: (G,) int64 group offsets.
        gt_xywh: (n_gt, 4) float64. gt_crowd: (n_gt,) bool.
        gt_ignore: (A, n_gt) bool, crowd or area outside area range ``a``.
        gt_id_nonzero: (n_gt,) bool; pycocotools records a match as the GT's
            annotation id, so a match to id 0 reads as "unmatched" later.
        dt_xywh: (n_dt, 4) float64. dt_outside: (A, n_dt) bool, ``w*h`` outside range ``a``.
        iou_thresholds: (T,) float64.

    Returns:
        (A, T, n_dt) int8 state: FP (0), TP (1) or IGNORED (2).
    """
    n_area = gt_ignore.shape[0]
    n_thr = iou_thresholds.shape[0]
    n_dt = dt_xywh.shape[0]
    state = np.zeros((n_area, n_thr, n_dt), np.int8)
    max_g = 1
    for g in range(gt_start.shape[0]):
        max_g = max(max_g, gt_end[g] - gt_start[g])
    order = np.empty(max_g, np.int64)
    ig = np.empty(max_g, np.bool_)
    taken = np.empty(max_g, np.bool_)
    for g in range(gt_start.shape[0]):
        g0, n_g = gt_start[g], gt_end[g] - gt_start[g]
        d0, n_d = dt_start[g], dt_end[g] - dt_start[g]
        if n_d == 0:
            continue
        ious = iou_matrix(dt_xywh[d0:d0 + n_d], gt_xywh[g0:g0 + n_g], gt_crowd[g0:g0 + n_g])
        for a in range(n_area):
            # ground truth with ignored last, input order kept within each part (mergesort)
            k = 0
            for j in range(n_g):
                if not gt_ignore[a, g0 + j]:
                    order[k] = j
                    ig[k] = False
                    k += 1
            for j in range(n_g):
                if gt_ignore[a, g0 + j]:
                    order[k] = j
                    ig[k] = True
                    k += 1
            for t in range(n_thr):
                thr = min(iou_thresholds[t], _IOU_CAP)
                taken[:n_g] = False
                for d in range(n_d):
                    best = thr
                    m = -1
                    for jj in range(n_g):
                        gj = order[jj]
                        if taken[jj] and not gt_crowd[g0 + gj]:
                            continue
                        if m > -1 and not ig[m] and ig[jj]:
                            break
                        if ious[d, gj] < best:
                            continue
                        best = ious[d, gj]
                        m = jj
                    matched = False
                    ignored = False
                    if m > -1:
                        taken[m] = True
                        matched = gt_id_nonzero[g0 + order[m]]
                        ignored = ig[m]
                    if not matched and dt_outside[a, d0 + d]:
                        ignored = True
                    if ignored:
                        state[a, t, d0 + d] = IGNORED
                    elif matched:
                        state[a, t, d0 + d] = TP
    return state


@njit(cache=True)
def accumulate(class_start, state, rank_in_image, score, num_gt,
               recall_thresholds, max_dets, precision, recall, scores):
    """pycocotools ``accumulate`` for every (class, area, maxDets, threshold).

    Detections are in pycocotools' accumulation order: by class, then score
    descending, ties by image (sorted image id) then by rank within the image.

    Args:
        class_start: (K + 1,) int64; class ``k`` owns rows ``class_start[k]:class_start[k + 1]``.
        state: (A, T, n) int8 from :func:`match_groups`, rows in accumulation order.
        rank_in_image: (n,) int64, the detection's position in its (image, class)
            list sorted by score; it counts for ``maxDets = m`` iff ``rank < m``.
        score: (n,) float64.
        num_gt: (K, A) int64 non-ignored ground truth ("npig").
        recall_thresholds: (R,) float64, ascending. max_dets: (M,) int64.
        precision, scores: (T, R, K, A, M) float64 outputs, pre-filled with -1.
        recall: (T, K, A, M) float64 output, pre-filled with -1.
    """
    n_area, n_thr = state.shape[0], state.shape[1]
    n_rec = recall_thresholds.shape[0]
    n_cls = class_start.shape[0] - 1
    longest = 0
    for k in range(n_cls):
        longest = max(longest, class_start[k + 1] - class_start[k])
    rc = np.empty(longest)
    pr = np.empty(longest)
    sc = np.empty(longest)
    for k in range(n_cls):
        lo, hi = class_start[k], class_start[k + 1]
        for a in range(n_area):
            npig = num_gt[k, a]
            if npig == 0:
                continue
            for m in range(max_dets.shape[0]):
                cut = max_dets[m]
                for t in range(n_thr):
                    tp = 0.0
                    fp = 0.0
                    nd = 0
                    for i in range(lo, hi):
                        if rank_in_image[i] >= cut:
                            continue
                        s = state[a, t, i]
                        if s == TP:
                            tp += 1.0
                        elif s == FP:
                            fp += 1.0
                        rc[nd] = tp / npig
                        pr[nd] = tp / (fp + tp + _EPS)
                        sc[nd] = score[i]
                        nd += 1
                    recall[t, k, a, m] = rc[nd - 1] if nd else 0.0
                    for i in range(nd - 1, 0, -1):
                        if pr[i] > pr[i - 1]:
                            pr[i - 1] = pr[i]
                    j = 0
                    for r in range(n_rec):
                        # np.searchsorted(rc, thr, side="left"): first j with rc[j] >= thr
                        while j < nd and rc[j] < recall_thresholds[r]:
                            j += 1
                        if j < nd:
                            precision[t, r, k, a, m] = pr[j]
                            scores[t, r, k, a, m] = sc[j]
                        else:
                            precision[t, r, k, a, m] = 0.0
                            scores[t, r, k, a, m] = 0.0
