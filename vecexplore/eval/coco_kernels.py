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
def counting_order(order, key, n_buckets):
    """``order`` stably re-sorted by ``key[order]`` (ints in ``[0, n_buckets)``); O(n + n_buckets)."""
    count = np.zeros(n_buckets + 1, np.int64)
    for i in order:
        count[key[i] + 1] += 1
    for b in range(n_buckets):
        count[b + 1] += count[b]
    out = np.empty_like(order)
    for i in order:
        out[count[key[i]]] = i
        count[key[i]] += 1
    return out


@njit(cache=True)
def descending_score_order(order, score):
    """``order`` stably re-sorted by ``score[order]`` descending (LSD radix, 16-bit digits).

    Scores are >= 0; for non-negative floats the IEEE bit pattern orders like
    the value (``+ 0.0`` turns -0.0 into 0.0), so ``2**63 - 1 - bits`` sorts descending.
    """
    bits = (score + 0.0).view(np.int64)
    key = np.empty(bits.shape[0], np.int64)
    for i in range(bits.shape[0]):
        key[i] = 0x7FFFFFFFFFFFFFFF - bits[i]
    digit = np.empty(bits.shape[0], np.int64)
    for shift in range(0, 64, 16):
        lo, hi = 1 << 16, -1
        for i in order:
            v = (key[i] >> shift) & 0xFFFF
            digit[i] = v
            lo, hi = min(lo, v), max(hi, v)
        if hi > lo:  # a pass where every digit is equal changes nothing
            order = counting_order(order, digit, 1 << 16)
    return order


@njit(cache=True)
def group_bounds(gt_key, dt_key):
    """(n_groups, 4) int64 rows ``g0, g1, d0, d1``: the ground truth and detections of
    every (class, image) group that has detections, both key arrays sorted.

    Groups without detections contribute only their ground-truth counts (in
    :func:`accumulate`), so they are not listed.
    """
    n_gt, n_dt = gt_key.shape[0], dt_key.shape[0]
    n_groups = 0
    for i in range(n_dt):
        if i == 0 or dt_key[i] != dt_key[i - 1]:
            n_groups += 1
    bounds = np.empty((n_groups, 4), np.int64)
    g0, d0, b = 0, 0, 0
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
        bounds[b, 0], bounds[b, 1], bounds[b, 2], bounds[b, 3] = g0, g1, d0, d1
        b += 1
        d0 = d1
    return bounds


@njit(cache=True)
def _largest_group(bounds):
    """(most ground truth, most detections) in one group; at least 1 each (buffer sizes)."""
    max_g, max_d = 1, 1
    for b in range(bounds.shape[0]):
        max_g = max(max_g, bounds[b, 1] - bounds[b, 0])
        max_d = max(max_d, bounds[b, 3] - bounds[b, 2])
    return max_g, max_d


@njit(cache=True)
def _match_group(state, ious, g0, n_g, d0, n_d, gt_crowd, gt_ignore, gt_id_nonzero, dt_outside, thresholds,
                 order, ig, taken, match):
    """pycocotools' ``evaluateImg`` for one group, every area range and threshold, into ``state``.

    ``ious[d, j]`` is the IoU of the group's detection ``d`` (score order) with its
    ground truth ``j`` (input order); ``order``, ``ig``, ``taken`` and ``match`` are
    scratch buffers at least as large as the group.
    """
    n_area = gt_ignore.shape[0]
    n_thr = thresholds.shape[0]
    for a in range(n_area):
        # ground truth with ignored last, input order kept within each part (mergesort)
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
        # an area range that ignores the same ground truth as an earlier one matches the same way
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
                    best = thresholds[t]
                    m = -1
                    for jj in range(n_g):
                        gj = order[a, jj]
                        if taken[jj] and not gt_crowd[g0 + gj]:
                            continue
                        if m > -1 and not ig[a, m] and ig[a, jj]:
                            break
                        if ious[d, gj] < best:
                            continue
                        best = ious[d, gj]
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


@njit(cache=True)
def match_groups_with_ious(gt_key, dt_key, ious_of, gt_crowd, gt_ignore, gt_id_nonzero, dt_outside,
                           iou_thresholds, gt_xywh, dt_xywh, iou_flat, iou_start):
    """Greedy COCO matching of every (class, image) group; see :func:`match_groups`.

    ``ious_of`` picks the overlap: 0 = box IoU computed here from ``gt_xywh`` /
    ``dt_xywh`` (``bbIou``); 1 = given per group in ``iou_flat`` (row-major
    ``(n_d, n_g)`` blocks, detection ``d``'s row at ``iou_start[d]``: mask IoU).
    The matching itself is one rule for both (:func:`_match_group`).
    """
    n_area = gt_ignore.shape[0]
    n_thr = iou_thresholds.shape[0]
    state = np.zeros((dt_key.shape[0], n_area, n_thr), np.int8)
    bounds = group_bounds(gt_key, dt_key)
    max_g, max_d = _largest_group(bounds)
    ious = np.empty((max_d, max_g))
    order = np.empty((n_area, max_g), np.int64)
    ig = np.empty((n_area, max_g), np.bool_)
    taken = np.empty(max_g, np.bool_)
    match = np.empty((n_area, n_thr, max_d), np.int64)  # matched position in ``order[a]``, -1 = none
    thresholds = np.minimum(iou_thresholds, _IOU_CAP)
    for b in range(bounds.shape[0]):
        g0, g1, d0, d1 = bounds[b, 0], bounds[b, 1], bounds[b, 2], bounds[b, 3]
        n_g, n_d = g1 - g0, d1 - d0
        for d in range(n_d):
            for j in range(n_g):
                if ious_of == 0:
                    ious[d, j] = _iou(dt_xywh[d0 + d, 0], dt_xywh[d0 + d, 1], dt_xywh[d0 + d, 2],
                                      dt_xywh[d0 + d, 3], gt_xywh[g0 + j, 0], gt_xywh[g0 + j, 1],
                                      gt_xywh[g0 + j, 2], gt_xywh[g0 + j, 3], gt_crowd[g0 + j])
                else:
                    ious[d, j] = iou_flat[iou_start[d0 + d] + j]
        _match_group(state, ious, g0, n_g, d0, n_d, gt_crowd, gt_ignore, gt_id_nonzero, dt_outside, thresholds,
                     order, ig, taken, match)
    return state


@njit(cache=True)
def match_groups(gt_key, dt_key, gt_xywh, gt_crowd, gt_ignore, gt_id_nonzero,
                 dt_xywh, dt_outside, iou_thresholds):
    """Greedy COCO matching of every (class, image) group, with box IoU.

    Ground truth and detections are sorted by group key (class, image rank):
    ground truth in input order inside a group, detections by score
    (descending, stable) and already cut to ``maxDets[-1]``.

    Args:
        gt_key: (n_gt,) int64 sorted group keys. dt_key: (n_dt,) int64 sorted group keys.
        gt_xywh: (n_gt, 4) float64. gt_crowd: (n_gt,) bool.
        gt_ignore: (A, n_gt) bool, crowd or area outside area range ``a``.
        gt_id_nonzero: (n_gt,) bool; pycocotools records a match as the GT's
            annotation id, so a match to id 0 reads as "unmatched" later.
        dt_xywh: (n_dt, 4) float64. dt_outside: (A, n_dt) bool, ``w*h`` outside range ``a``.
        iou_thresholds: (T,) float64.

    Returns:
        (n_dt, A, T) int8 state: FP (0), TP (1) or IGNORED (2).
    """
    no_flat, no_start = np.empty(0), np.empty(0, np.int64)
    return match_groups_with_ious(gt_key, dt_key, 0, gt_crowd, gt_ignore, gt_id_nonzero, dt_outside,
                                  iou_thresholds, gt_xywh, dt_xywh, no_flat, no_start)


@njit(cache=True)
def accumulate(class_start, acc, state, rank_in_image, score, num_gt,
               recall_thresholds, max_dets, precision, recall, scores):
    """pycocotools ``accumulate`` for every (class, area, maxDets, threshold).

    Detections are in pycocotools' accumulation order: by class, then score
    descending, ties by image (sorted image id) then by rank within the image.

    pycocotools builds the precision/recall curve at every detection; only the
    true positives matter. Recall rises only at a TP, so the first curve point
    reaching a recall threshold (``np.searchsorted(rc, thr, "left")``) is a TP,
    or the first detection when the threshold is 0; and between two TPs
    precision only falls, so the running maximum from the end taken over TPs
    equals pycocotools' maximum over all points. Same operations on the same
    numbers, hence the same bits.

    Args:
        class_start: (K + 1,) int64; class ``k`` owns positions ``class_start[k]:class_start[k + 1]``.
        acc: (n,) int64, row of ``state`` at each position (accumulation order).
        state: (n, A, T) int8 from :func:`match_groups` (group order).
        rank_in_image: (n,) int64 by position, the detection's position in its (image, class)
            list sorted by score; it counts for ``maxDets = m`` iff ``rank < m``.
            The first detection of every class has rank 0.
        score: (n,) float64 by position.
        num_gt: (K, A) int64 non-ignored ground truth ("npig").
        recall_thresholds: (R,) float64, ascending, >= 0. max_dets: (M,) int64.
        precision, scores: (T, R, K, A, M) float64 outputs, pre-filled with -1.
        recall: (T, K, A, M) float64 output, pre-filled with -1.
    """
    n_area, n_thr = state.shape[1], state.shape[2]
    n_rec = recall_thresholds.shape[0]
    n_cls = class_start.shape[0] - 1
    n_m = max_dets.shape[0]
    bound = 1
    for k in range(n_cls):
        for a in range(n_area):
            bound = max(bound, min(class_start[k + 1] - class_start[k], num_gt[k, a]))
    ev_fp = np.empty((n_m, bound))  # false positives before each TP
    ev_row = np.empty((n_m, bound), np.int64)  # the TP's row
    n_ev = np.zeros(n_m, np.int64)
    fp = np.zeros(n_m)
    pr = np.empty(bound)
    rc = np.empty(bound)
    longest = 0
    for k in range(n_cls):
        longest = max(longest, class_start[k + 1] - class_start[k])
    local = np.empty((n_area, n_thr, longest), np.int8)  # one class's states, contiguous per (a, t)
    for k in range(n_cls):
        lo, hi = class_start[k], class_start[k + 1]
        for i in range(lo, hi):
            row = acc[i]
            for a in range(n_area):
                for t in range(n_thr):
                    local[a, t, i - lo] = state[row, a, t]
        for a in range(n_area):
            npig = num_gt[k, a]
            if npig == 0:
                continue
            for t in range(n_thr):
                n_ev[:] = 0
                fp[:] = 0.0
                for i in range(lo, hi):
                    s = local[a, t, i - lo]
                    if s == IGNORED:
                        continue
                    r = rank_in_image[i]
                    for m in range(n_m):
                        if r < max_dets[m]:
                            if s == TP:
                                ev_fp[m, n_ev[m]] = fp[m]
                                ev_row[m, n_ev[m]] = i
                                n_ev[m] += 1
                            else:
                                fp[m] += 1.0
                for m in range(n_m):
                    ne = n_ev[m]
                    for e in range(ne):
                        tp = e + 1.0
                        pr[e] = tp / (ev_fp[m, e] + tp + _EPS)
                        rc[e] = tp / npig
                    for e in range(ne - 1, 0, -1):
                        if pr[e] > pr[e - 1]:
                            pr[e - 1] = pr[e]
                    if hi == lo:  # no detections: recall 0, precision 0
                        recall[t, k, a, m] = 0.0
                        for r in range(n_rec):
                            precision[t, r, k, a, m] = 0.0
                            scores[t, r, k, a, m] = 0.0
                        continue
                    recall[t, k, a, m] = ne / npig
                    e = 0
                    for r in range(n_rec):
                        thr = recall_thresholds[r]
                        if thr <= 0.0:  # the first point: envelope = max over everything
                            precision[t, r, k, a, m] = pr[0] if ne else 0.0
                            scores[t, r, k, a, m] = score[lo]
                            continue
                        while e < ne and rc[e] < thr:
                            e += 1
                        if e < ne:
                            precision[t, r, k, a, m] = pr[e]
                            scores[t, r, k, a, m] = score[ev_row[m, e]]
                        else:
                            precision[t, r, k, a, m] = 0.0
                            scores[t, r, k, a, m] = 0.0
