"""A reference for the vectorised detection label issues: the per-image loop they were
first written as, kept here to hold the fast code to the same rows on random inputs."""

from __future__ import annotations

import numpy as np

from vecexplore.analysis.label_issues import _add, _empty_rows, class_statistics
from vecexplore.eval.iou import box_iou


def reference_detection_rows(ev, cfg) -> dict[str, list]:
    """The per-image loop label issues were first written as (one image at a time, box_iou per image)."""
    from vecexplore.eval.outcomes import GtOutcome, PredOutcome

    ds = ev.dataset
    gt, pred = ds.gt, ds.pred
    t, c = float(ev.iou), float(ev.confidence)
    gt_code = ev.outcomes.gt_code
    pred_code = ev.outcomes.pred_code
    n_c, recall, thresh = class_statistics(ev)

    rows = _empty_rows()
    g_order = np.argsort(gt.image_idx, kind="stable")
    p_order = np.argsort(pred.image_idx, kind="stable")
    g_bounds = np.searchsorted(gt.image_idx[g_order], np.arange(ds.num_images + 1))
    p_bounds = np.searchsorted(pred.image_idx[p_order], np.arange(ds.num_images + 1))
    crowd_all = gt.iscrowd
    matched_pred = (pred_code == PredOutcome.TP) | (pred_code == PredOutcome.FP_DUPLICATE)
    # A prediction matched (TP or duplicate) to a GT of its own class is explained by that GT; a
    # wrong-class duplicate (on an object already found) is not.
    match_row = ev.outcomes.pred_match[0]
    explained = matched_pred & (match_row >= 0)
    explained[explained] = gt.class_idx[match_row[explained]] == pred.class_idx[explained]
    for i in range(ds.num_images):
        gi = g_order[g_bounds[i]:g_bounds[i + 1]]
        pi = p_order[p_bounds[i]:p_bounds[i + 1]]
        if len(pi) == 0 and len(gi) == 0:
            continue
        iou = box_iou(pred.xywh[pi], gt.xywh[gi], crowd_all[gi])  # (P, G)
        s = pred.score[pi]
        conf = s >= c
        pcls = pred.class_idx[pi]
        gcls = gt.class_idx[gi]
        same = pcls[:, None] == gcls[None, :]
        # Missing: confident predictions near no GT, best per spot.
        far = conf & ((iou.max(axis=1) if len(gi) else np.zeros(len(pi))) < cfg.near_iou)
        far &= pred_code[pi] != PredOutcome.IGNORED
        for p in _loop_dedup(pred.xywh[pi], s, far, cfg.dedup_iou):
            q = pi[p]
            _add(rows, i, None, "missing", float(s[p]), bool(s[p] >= thresh[pcls[p]]), -1, int(pcls[p]),
                 int(pred.object_id[q]), pred.xywh[q])
        for j, g in enumerate(gi):
            if crowd_all[g]:
                continue
            a = int(gcls[j])
            col = iou[:, j]
            best = None  # (score, kind, likely, suggested, pred row)
            # Wrong class.
            other = conf & ~same[:, j] & (col >= t) & ~explained[pi]
            if other.any():
                p = int(np.flatnonzero(other)[np.argmax(s[other])])
                same_hit = conf & same[:, j] & (col >= t)
                s_a = float(s[same_hit].max()) if same_hit.any() else 0.0
                score = float(s[p]) * (1.0 - s_a)
                best = _better(best, (score, "wrong_class", bool(s[p] >= thresh[pcls[p]]) and s_a == 0.0,
                                      int(pcls[p]), int(pi[p])))
            # Spurious.
            near = col >= cfg.near_iou
            if not near.any() and n_c[a] > 0:
                s_near = float(s[near].max()) if near.any() else 0.0
                score = cfg.spurious_weight * float(recall[a]) * (1.0 - s_near)
                best = _better(best, (score, "spurious", bool(recall[a] >= cfg.spurious_recall), -1, -1))
            # Bad box.
            if gt_code[g] == GtOutcome.FN:
                loose = conf & same[:, j] & (col >= cfg.bad_box_iou) & (col < t) & ~matched_pred[pi]
                if loose.any():
                    p = int(np.flatnonzero(loose)[np.argmax(s[loose])])
                    best = _better(best, (float(s[p]), "bad_box", bool(s[p] >= thresh[a]), a, int(pi[p])))
            if best is not None and best[0] > 0:
                score, kind, likely, suggested, q = best
                _add(rows, i, int(gt.object_id[g]), kind, score, likely, a, suggested,
                     int(pred.object_id[q]) if q >= 0 else None, gt.xywh[g])
    return rows


def _better(best, cand):
    return cand if best is None or cand[0] > best[0] else best


def _loop_dedup(xywh: np.ndarray, score: np.ndarray, keep: np.ndarray, thr: float) -> list[int]:
    """Greedy class-agnostic NMS over the rows in ``keep``, best score first (stable ties)."""

    cand = np.flatnonzero(keep)
    cand = cand[np.argsort(-score[cand], kind="stable")]
    chosen: list[int] = []
    for p in cand:
        if chosen and box_iou(xywh[[p]], xywh[chosen])[0].max() >= thr:
            continue
        chosen.append(int(p))
    return chosen
