"""Label issues: how likely each ground-truth object (or image label) is wrong.

:func:`label_issues` scores an evaluation's ground truth and returns one row
per suspicion, most likely first. Detection kinds (per image, IoU as
pycocotools, ``t`` = the operating point's IoU, ``c`` = its confidence;
"confident" = score ≥ ``c``):

* ``wrong_class`` — a non-crowd GT of class ``a`` under a confident prediction
  of another class ``b`` (IoU ≥ t) that is not itself a true positive (or a
  duplicate) of some GT of class ``b``. Score ``s_b · (1 − s_a)``: ``s_b`` the best such prediction's
  score, ``s_a`` the best confident same-class score at IoU ≥ t (0 if none), so a
  box the model also calls ``a`` is not suspected. Suggested class: ``b``.
* ``missing`` — a confident prediction with IoU < ``near_iou`` (0.1, TIDE's
  background) to every GT, crowd included. Score ``s``. Of several such
  predictions on one spot (class-agnostic IoU ≥ 0.5) only the best counts.
  ``annotation_id`` is null; the box is the prediction's.
* ``spurious`` — a non-crowd GT that no prediction of any class or score comes
  near (IoU ≥ ``near_iou``), while the model finds its class elsewhere. Score
  ``spurious_weight · recall_a · (1 − s_near)``: ``recall_a`` the class's recall at the operating
  point, ``s_near`` the best score of any prediction at IoU ≥ ``near_iou``
  (0 here by definition; kept so the formula reads the same when ``near_iou``
  changes).
* ``bad_box`` — a GT left unmatched (FN) that a confident same-class
  prediction, not matched elsewhere, overlaps with IoU in [``bad_box_iou``, t)
  (0.3 by default). Score ``s``.

A GT gets its most likely kind only. ``likely`` marks what a person should
review: the suspicion's confidence reaches the model's mean confidence on
its true positives of that class (confident learning's per-class threshold,
Northcutt et al. 2021, carried over to boxes; for ``wrong_class`` also no
confident prediction of the GT's own class is on it); for ``spurious``, the
class's recall reaches ``spurious_recall``. The scores of the kinds share one
scale (a confidence), so one ranking holds them all; FiftyOne's mistakenness
(``compute_mistakenness``) is the same idea with the model's confidence as the
evidence.

Classification (``wrong_label``), with per-class scores: confident learning.
The per-class threshold ``t_j`` is the mean score of class ``j`` over images
labelled ``j``; an image is ``likely`` when some other class ``j`` has
``p_j ≥ t_j`` (an off-diagonal entry of the confident joint, cleanlab's
``filter_by="confident_learning"``). Score ``(max_{j≠label} p_j − p_label + 1) / 2``:
1 − cleanlab's ``normalized_margin`` label quality, which ranks a label that
another class clearly beats above one the model merely hesitates on. With only
the top-1 score (the input has no per-class columns), ``p_label`` is unknown
when the prediction differs from the label: the score is then
``(s + 1) / 2`` with ``s`` the top-1 score of the other class — an upper bound
of the margin score, reached when ``p_label`` is 0 — and ``t_j`` is the mean
top-1 score of the correct predictions of class ``j``. Images whose prediction
equals the label are not suspected then (nothing says otherwise).

Columns (:data:`COLUMNS`): ``image_idx`` int64, ``image_id``, ``annotation_id``
(nullable Int64: the GT's object id; null for ``missing`` and classification),
``kind``, ``score`` float64 in [0, 1], ``likely`` bool, ``class_idx`` (the GT's
class; -1 for ``missing``), ``suggested_class_idx`` (the model's class; -1 for
``spurious``), ``pred_id`` (nullable Int64: the prediction behind it),
``x, y, w, h`` (the suspicious box: the GT's, the prediction's for ``missing``;
NaN for classification). Sort: score descending, ties by image_idx then
annotation (stable).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from vecexplore.errors import ConfigError
from vecexplore.store.layout import LABEL_ISSUES, table_file

log = logging.getLogger(__name__)


KINDS = ("wrong_class", "missing", "spurious", "bad_box", "wrong_label")
COLUMNS = ("image_idx", "image_id", "annotation_id", "kind", "score", "likely", "class_idx",
           "suggested_class_idx", "pred_id", "x", "y", "w", "h")
#: Run file holding the table (see :mod:`vecexplore.store`).


@dataclass(frozen=True)
class LabelIssueConfig:
    """Thresholds of :func:`label_issues` (frozen, validated).

    Attributes:
        near_iou: IoU below which a prediction and a GT are not near each other.
        bad_box_iou: lowest IoU of a same-class prediction that makes a ``bad_box``.
        dedup_iou: class-agnostic IoU at which ``missing`` candidates are one spot.
        spurious_recall: a ``spurious`` GT is ``likely`` when its class's recall reaches this.
        spurious_weight: factor on the ``spurious`` score: no detection is weaker evidence
            than a confident detection saying otherwise (0.5 puts a GT of a class found
            every time level with a 0.5-confidence contradicting prediction).
    """

    near_iou: float = 0.1
    bad_box_iou: float = 0.3
    dedup_iou: float = 0.5
    spurious_recall: float = 0.95
    spurious_weight: float = 0.5

    def __post_init__(self):
        for name in ("near_iou", "bad_box_iou", "dedup_iou", "spurious_recall", "spurious_weight"):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise ConfigError(f"label issues: {name} must be in (0, 1], got {v}")


def label_issues(ev, *, config: LabelIssueConfig | None = None):
    """The label-issue table of an evaluation (module docstring), most likely first."""
    cfg = config or LabelIssueConfig()
    if ev.task == "detection":
        rows = _detection(ev, cfg)
    else:
        rows = _classification(ev)
    return _frame(rows, ev.dataset.images.image_id)


def of_run(run, *, ev=None):
    """The label-issue table of a :class:`~vecexplore.store.Run` (cached in the run).

    Read from ``label_issues.parquet`` when the build wrote it; a run built before
    label issues existed gets them computed here, at the build's operating point
    (``ev``, or re-evaluated from the run's tables), and nothing is written.
    """
    cache = run._cache
    if "label_issues" not in cache:
        if (run.path / table_file(LABEL_ISSUES)).exists():
            cache["label_issues"] = run.table(LABEL_ISSUES)
        else:
            if ev is None:
                from vecexplore.eval.evaluate import evaluate

                config = run.manifest.get("config", {})
                kw = {"iou": float(config.get("iou") or 0.5)} if run.task == "detection" else {}
                ev = evaluate(run.dataset(), confidence=config.get("confidence"), **kw)
            log.info("%s: no %s (an older run); label issues computed now", run.path, table_file(LABEL_ISSUES))
            cache["label_issues"] = label_issues(ev)
    return cache["label_issues"]


def to_json(issues, class_names, *, likely_only: bool = True) -> list[dict]:
    """``[{"image_id", "annotation_id", "kind", "score", "class", "suggested_class"}]``, most
    likely first (``info --json``): the ``likely`` rows, or all. ``annotation_id`` is null for a
    missing label and for classification; the class names are null where they do not apply."""
    import pandas as pd

    def name(k) -> str | None:
        return str(class_names[int(k)]) if 0 <= int(k) < len(class_names) else None

    rows = issues[issues["likely"]] if likely_only else issues
    return [{"image_id": int(r.image_id),
             "annotation_id": None if pd.isna(r.annotation_id) else int(r.annotation_id),
             "kind": str(r.kind), "score": float(r.score),
             "class": name(r.class_idx), "suggested_class": name(r.suggested_class_idx)}
            for r in rows.itertuples(index=False)]


def image_scores(issues, num_images: int) -> np.ndarray:
    """(N,) float64: each image's highest issue score, 0 where it has none."""
    out = np.zeros(num_images)
    if len(issues):
        np.maximum.at(out, issues["image_idx"].to_numpy(np.int64), issues["score"].to_numpy(np.float64))
    return out


# ---------------------------------------------------------------- detection


def class_statistics(ev) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class (K,): non-crowd GT count, recall at the operating point (``spurious``) and
    confident learning's threshold, the mean score of the class's true positives (1 where none)."""
    from vecexplore.eval.outcomes import GtOutcome, PredOutcome

    ds = ev.dataset
    gt, pred = ds.gt, ds.pred
    gt_code, pred_code = ev.outcomes.gt_code, ev.outcomes.pred_code
    k = len(ds.categories)
    counted = gt_code != GtOutcome.CROWD
    n_c = np.bincount(gt.class_idx[counted], minlength=k)
    tp_c = np.bincount(gt.class_idx[gt_code == GtOutcome.TP], minlength=k)
    recall = np.divide(tp_c, n_c, out=np.zeros(k), where=n_c > 0)
    tp_pred = pred_code == PredOutcome.TP
    sum_s = np.bincount(pred.class_idx[tp_pred], weights=pred.score[tp_pred], minlength=k)
    n_s = np.bincount(pred.class_idx[tp_pred], minlength=k)
    thresh = np.divide(sum_s, n_s, out=np.ones(k), where=n_s > 0)
    return n_c, recall, thresh


def _detection(ev, cfg: LabelIssueConfig) -> dict[str, list]:
    """The detection kinds of the module docstring, over all images at once.

    Every (prediction, GT) pair of an image with IoU ≥ the lowest threshold in
    play is listed once (in memory-bounded chunks); each kind is then a masked
    reduction over those pairs per GT (or per prediction for ``missing``), with
    the per-image loop's tie rules: the best-scored prediction, lowest row first,
    and on equal scores the kinds in the order wrong_class, spurious, bad_box.
    """
    from vecexplore.eval.outcomes import GtOutcome, PredOutcome

    ds = ev.dataset
    gt, pred = ds.gt, ds.pred
    t, c = float(ev.iou), float(ev.confidence)
    if cfg.bad_box_iou >= t:
        log.info("label issues: bad_box_iou %.2f ≥ IoU threshold %.2f, no bad_box issues", cfg.bad_box_iou, t)
    gt_code = ev.outcomes.gt_code
    pred_code = ev.outcomes.pred_code
    n_c, recall, thresh = class_statistics(ev)

    matched_pred = (pred_code == PredOutcome.TP) | (pred_code == PredOutcome.FP_DUPLICATE)
    # A prediction matched (TP or duplicate) to a GT of its own class is explained by that GT; a
    # wrong-class duplicate (on an object already found) is not.
    match_row = ev.outcomes.pred_match[0]
    explained = matched_pred & (match_row >= 0)
    explained[explained] = gt.class_idx[match_row[explained]] == pred.class_idx[explained]

    s = pred.score
    conf = s >= c
    n_gt, n_pred = len(gt), len(pred)
    lo = min(cfg.near_iou, cfg.bad_box_iou, t)
    pr, gr, iou = _overlapping_pairs(pred.image_idx, pred.xywh, gt.image_idx, gt.xywh, gt.iscrowd, ds.num_images, lo)
    same = pred.class_idx[pr] == gt.class_idx[gr]
    crowd = gt.iscrowd

    # Missing: confident predictions near no GT (crowd included), best per spot.
    max_iou = np.zeros(n_pred)
    np.maximum.at(max_iou, pr, iou)
    far = conf & (max_iou < cfg.near_iou) & (pred_code != PredOutcome.IGNORED)
    missing = _dedup(pred, far, ds.num_images, cfg.dedup_iou)

    # Per GT: the best candidate of each kind (score, likely, suggested class, prediction row).
    none = np.full(n_gt, -np.inf)
    # Wrong class: a confident other-class prediction at IoU ≥ t that no GT of its class explains.
    s_a = np.zeros(n_gt)
    hit = conf[pr] & same & (iou >= t)
    np.maximum.at(s_a, gr[hit], s[pr[hit]])
    g_w, p_w = _best_per_gt(gr, pr, s, conf[pr] & ~same & (iou >= t) & ~explained[pr])
    score_w = none.copy()
    score_w[g_w] = s[p_w] * (1.0 - s_a[g_w])
    # Spurious: no prediction of any class or score near, while the class is found elsewhere.
    near_any = np.zeros(n_gt, bool)
    near_any[gr[iou >= cfg.near_iou]] = True
    spur = ~near_any & (n_c[gt.class_idx] > 0)
    score_s = np.where(spur, cfg.spurious_weight * recall[gt.class_idx], -np.inf)
    # Bad box: an unmatched GT under a loose confident same-class prediction not matched elsewhere.
    fn = gt_code == GtOutcome.FN
    g_b, p_b = _best_per_gt(gr, pr, s, conf[pr] & same & (iou >= cfg.bad_box_iou) & (iou < t) & ~matched_pred[pr]
                            & fn[gr])
    score_b = none.copy()
    score_b[g_b] = s[p_b]

    kind = np.zeros(n_gt, np.int8)  # 0 wrong_class, 1 spurious, 2 bad_box: a later kind must beat strictly
    best = score_w.copy()
    kind[score_s > best] = 1
    best = np.maximum(best, score_s)
    kind[score_b > best] = 2
    best = np.maximum(best, score_b)
    keep = (best > 0) & ~crowd
    pred_w = np.full(n_gt, -1, np.int64)
    pred_w[g_w] = p_w
    pred_b = np.full(n_gt, -1, np.int64)
    pred_b[g_b] = p_b
    behind = np.where(kind == 0, pred_w, np.where(kind == 2, pred_b, -1))
    s_pad, cls_pad = np.r_[s, 0.0], np.r_[pred.class_idx, 0]  # row -1 (no prediction) reads the pad
    likely = np.where(kind == 0, (s_pad[pred_w] >= thresh[cls_pad[pred_w]]) & (s_a == 0.0),
                      np.where(kind == 1, recall[gt.class_idx] >= cfg.spurious_recall,
                               s_pad[pred_b] >= thresh[gt.class_idx]))
    suggested = np.where(kind == 0, cls_pad[pred_w], np.where(kind == 1, -1, gt.class_idx))
    g = np.flatnonzero(keep)
    kinds = np.array(["wrong_class", "spurious", "bad_box"], object)
    q = behind[g]
    rows = {
        "image_idx": np.concatenate([pred.image_idx[missing], gt.image_idx[g]]),
        "annotation_id": [None] * len(missing) + gt.object_id[g].tolist(),
        "kind": ["missing"] * len(missing) + kinds[kind[g]].tolist(),
        "score": np.clip(np.concatenate([s[missing], best[g]]), 0.0, 1.0),
        "likely": np.concatenate([s[missing] >= thresh[pred.class_idx[missing]], likely[g]]),
        "class_idx": np.concatenate([np.full(len(missing), -1, np.int64), gt.class_idx[g]]),
        "suggested_class_idx": np.concatenate([pred.class_idx[missing], suggested[g]]),
        "pred_id": pred.object_id[missing].tolist()
                   + [int(pred.object_id[r]) if r >= 0 else None for r in q.tolist()],
    }
    xywh = np.concatenate([pred.xywh[missing], gt.xywh[g]]).reshape(-1, 4)
    for j, name in enumerate("xywh"):
        rows[name] = xywh[:, j]
    # the per-image order: each image's missing labels (best first), then its GT in input order
    group = np.concatenate([np.zeros(len(missing), np.int8), np.ones(len(g), np.int8)])
    rank = np.concatenate([np.arange(len(missing)), g])
    order = np.lexsort((rank, group, rows["image_idx"]))
    return {name: (np.asarray(v, object)[order].tolist() if isinstance(v, list) else np.asarray(v)[order])
            for name, v in rows.items()}


#: Pairs listed per chunk (memory: a few tens of MB).
_PAIR_CHUNK = 1 << 21


def _overlapping_pairs(a_image, a_xywh, b_image, b_xywh, b_crowd, num_images: int, lo: float):
    """(rows of ``a``, rows of ``b``, box IoU) of every same-image pair with IoU ≥ ``lo``
    (``b``'s crowd boxes as pycocotools: the ``a`` box's area is the union)."""
    from vecexplore.eval.iou import pair_iou

    b_order = np.argsort(b_image, kind="stable")
    b_count = np.bincount(b_image, minlength=num_images)
    b_start = np.cumsum(b_count) - b_count
    a_order = np.argsort(a_image, kind="stable")
    per = b_count[a_image[a_order]] if len(a_image) else np.zeros(0, np.int64)
    cum = np.cumsum(per)
    out_a, out_b, out_v = [], [], []
    start = 0
    while start < len(a_image):
        done = cum[start - 1] if start else 0
        stop = max(int(np.searchsorted(cum, done + _PAIR_CHUNK, side="right")), start + 1)
        cnt = per[start:stop]
        total = int(cnt.sum())
        if total:
            rows_a = a_order[np.repeat(np.arange(start, stop), cnt)]
            offs = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            rows_b = b_order[b_start[a_image[rows_a]] + offs]
            crowd = b_crowd[rows_b] if b_crowd is not None else np.zeros(total, bool)
            v = pair_iou(a_xywh[rows_a], b_xywh[rows_b], crowd)
            keep = v >= lo
            out_a.append(rows_a[keep])
            out_b.append(rows_b[keep])
            out_v.append(v[keep])
        start = stop
    if not out_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(out_a), np.concatenate(out_b), np.concatenate(out_v)


def _best_per_gt(gr: np.ndarray, pr: np.ndarray, score: np.ndarray, mask: np.ndarray):
    """(GT rows, their best prediction rows) over the pairs in ``mask``: highest score, lowest row on ties."""
    g, p = gr[mask], pr[mask]
    if len(g) == 0:
        return g, p
    order = np.lexsort((p, -score[p], g))
    g, p = g[order], p[order]
    first = np.r_[True, g[1:] != g[:-1]]
    return g[first], p[first]


def _dedup(pred, keep: np.ndarray, num_images: int, thr: float) -> np.ndarray:
    """Greedy class-agnostic NMS within each image over the rows in ``keep``, best score first
    (ties: lower row first); returns the surviving rows in image order, best first."""
    rows = np.flatnonzero(keep)
    rows = rows[np.lexsort((rows, -pred.score[rows], pred.image_idx[rows]))]
    if len(rows) < 2:
        return rows
    img, xywh = pred.image_idx[rows], pred.xywh[rows]
    a, b, _ = _overlapping_pairs(img, xywh, img, xywh, None, num_images, thr)
    clash = a != b
    a, b = a[clash], b[clash]
    if len(a) == 0:
        return rows
    # Only rows that overlap another candidate need the greedy pass (positions in ``rows`` = priority).
    neighbours: dict[int, list[int]] = {}
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        neighbours.setdefault(x, []).append(y)
    suppressed = np.zeros(len(rows), bool)
    for x in sorted(neighbours):
        if suppressed[x]:
            continue
        for y in neighbours[x]:
            if y > x:
                suppressed[y] = True
    return rows[~suppressed]


# ---------------------------------------------------------------- classification


def _classification(ev) -> dict[str, list]:
    ds = ev.dataset
    n, k = ds.num_images, len(ds.categories)
    label = ev.arrays["label"]
    pred = ev.arrays["prediction"]
    top1 = ev.arrays["score"]
    rows = _empty_rows()
    if ds.pred.scores is not None:
        probs = np.full((n, k), np.nan)
        probs[ds.pred.image_idx] = ds.pred.scores
        use = np.flatnonzero((label >= 0) & ~np.isnan(probs[:, 0]))
        score, likely = confident_learning(label[use], probs[use])
        suggested = np.argmax(np.where(np.eye(k, dtype=bool)[label[use]], -np.inf, probs[use]), axis=1)
        for r, i in enumerate(use):
            if score[r] > 0.5 or likely[r]:  # another class at least ties the label
                _add(rows, int(i), None, "wrong_label", float(score[r]), bool(likely[r]), int(label[i]),
                     int(suggested[r]) if k > 1 else -1, None, None)
        return rows
    correct = (label >= 0) & (pred == label)
    sum_s = np.bincount(pred[correct], weights=top1[correct], minlength=k)
    n_s = np.bincount(pred[correct], minlength=k)
    thresh = np.divide(sum_s, n_s, out=np.ones(k), where=n_s > 0)
    for i in np.flatnonzero((label >= 0) & (pred >= 0) & (pred != label)):
        _add(rows, int(i), None, "wrong_label", (float(top1[i]) + 1.0) / 2.0, bool(top1[i] >= thresh[pred[i]]),
             int(label[i]),
             int(pred[i]), None, None)
    return rows


def confident_learning(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confident learning on (n,) labels and (n, K) per-class scores.

    Returns ``(score, likely)``: (n,) float64 ``(max_{j≠label} p_j − p_label + 1) / 2`` and (n,)
    bool "some other class j has ``probs[i, j] ≥ t_j``", ``t_j`` the mean of
    ``probs[:, j]`` over the rows labelled j (a class nobody is labelled with
    has no threshold and never flags).
    """
    labels = np.asarray(labels, np.int64)
    probs = np.asarray(probs, np.float64)
    n, k = probs.shape
    if n == 0:
        return np.zeros(0), np.zeros(0, bool)
    sums = np.zeros(k)
    np.add.at(sums, labels, probs[np.arange(n), labels])
    counts = np.bincount(labels, minlength=k)
    thresh = np.divide(sums, counts, out=np.full(k, np.inf), where=counts > 0)
    own = probs[np.arange(n), labels]
    others = probs.copy()
    others[np.arange(n), labels] = -np.inf
    above = others >= thresh[None, :]
    best_other = others.max(axis=1) if k > 1 else own
    return (best_other - own + 1.0) / 2.0, above.any(axis=1)


# ---------------------------------------------------------------- table


def _empty_rows() -> dict[str, list]:
    return {c: [] for c in COLUMNS if c != "image_id"}


def _add(rows, image_idx, annotation_id, kind, score, likely, class_idx, suggested, pred_id, xywh) -> None:
    rows["image_idx"].append(image_idx)
    rows["annotation_id"].append(annotation_id)
    rows["kind"].append(kind)
    rows["score"].append(min(max(score, 0.0), 1.0))
    rows["likely"].append(likely)
    rows["class_idx"].append(class_idx)
    rows["suggested_class_idx"].append(suggested)
    rows["pred_id"].append(pred_id)
    box = (np.nan,) * 4 if xywh is None else tuple(float(v) for v in xywh)
    for name, v in zip("xywh", box, strict=True):
        rows[name].append(v)


def _frame(rows: dict[str, list], image_ids: np.ndarray):
    import pandas as pd

    df = pd.DataFrame({
        "image_idx": np.asarray(rows["image_idx"], np.int64),
        "annotation_id": pd.array(rows["annotation_id"], dtype="Int64"),
        "kind": pd.Series(rows["kind"], dtype=object),
        "score": np.asarray(rows["score"], np.float64),
        "likely": np.asarray(rows["likely"], bool),
        "class_idx": np.asarray(rows["class_idx"], np.int64),
        "suggested_class_idx": np.asarray(rows["suggested_class_idx"], np.int64),
        "pred_id": pd.array(rows["pred_id"], dtype="Int64"),
        **{c: np.asarray(rows[c], np.float64) for c in "xywh"},
    })
    df.insert(1, "image_id", np.asarray(image_ids)[df["image_idx"].to_numpy()] if len(df) else
              np.asarray(image_ids)[:0])
    order = np.lexsort((df["annotation_id"].fillna(-1).to_numpy(np.int64), df["image_idx"].to_numpy(),
                        -df["score"].to_numpy()))
    return df.iloc[order].reset_index(drop=True)[list(COLUMNS)]
