"""Operating-point outcomes: hand-built cases for every outcome type, and
``resolve_outcomes`` at any confidence against a slow, literal per-image
reference of DESIGN.md's six steps applied to the predictions ≥ c only."""

from __future__ import annotations

import numpy as np
import pytest

from vecexplore.errors import ConfigError
from vecexplore.eval.iou import box_iou
from vecexplore.eval.matching import match_detections, pair_iou
from vecexplore.eval.outcomes import (
    GtOutcome,
    PredOutcome,
    count_columns,
    image_table,
    objects_table,
    rate_columns,
    resolve_outcomes,
)
from vecexplore.types import Boxes

# ---------------------------------------------------------------- helpers


def make_boxes(rows, *, pred: bool) -> Boxes:
    """rows: (image_idx, class_idx, x, y, w, h, score_or_crowd)."""
    rows = list(rows)
    if not rows:
        return Boxes.empty(predictions=pred)
    a = np.array(rows, dtype=np.float64)
    kw = {"score": a[:, 6]} if pred else {"iscrowd": a[:, 6].astype(bool)}
    return Boxes(a[:, 0].astype(int), a[:, 1].astype(int), a[:, 2:6], np.arange(len(a)) + (100 if pred else 1), **kw)


def random_case(seed: int, *, n_images: int = 4, n_classes: int = 3, crowd: float = 0.1):
    """Small detection case on an integer grid: exact IoU ties, tied scores, crowd, empty images."""
    rng = np.random.default_rng(seed)
    n_gt = int(rng.integers(0, 6 * n_images))
    gxy = rng.integers(0, 24, (n_gt, 2))
    gwh = rng.integers(2, 12, (n_gt, 2))
    gt_rows = [(rng.integers(0, n_images), rng.integers(0, n_classes), *gxy[i], *gwh[i], rng.random() < crowd)
               for i in range(n_gt)]
    pred_rows = []
    scores = rng.choice([0.2, 0.5, 0.5, 0.8, 0.9], size=200) if seed % 2 else rng.random(200).round(2)
    for img, cls, x, y, w, h, _ in gt_rows:
        for _ in range(rng.integers(0, 4)):
            j = rng.integers(-2, 3, 4)
            c = cls if rng.random() < 0.6 else rng.integers(0, n_classes)
            pred_rows.append([img, c, x + j[0], y + j[1], max(1, w + j[2]), max(1, h + j[3]), 0])
    for _ in range(rng.integers(0, 3 * n_images)):
        pred_rows.append([rng.integers(0, n_images), rng.integers(0, n_classes), *rng.integers(0, 28, 2),
                          *rng.integers(1, 10, 2), 0])
    rng.shuffle(pred_rows)
    pred_rows = [[*r[:6], scores[i % len(scores)]] for i, r in enumerate(pred_rows)]
    return make_boxes(gt_rows, pred=False), make_boxes(pred_rows, pred=True), n_images, n_classes


def _best(row, G, ok):
    """(GT row, IoU) of the highest IoU among the allowed GT; ties → first (lower index); (-1, -1) if none."""
    top, topv = -1, -1.0
    for b, j in enumerate(G):
        if ok[b] and row[b] > topv:
            top, topv = j, row[b]
    return top, topv


def reference_outcomes(gt: Boxes, pred: Boxes, n_images: int, t: float, c: float):
    """DESIGN.md's six steps, literally, image by image, on the predictions with score ≥ c.

    Returns per prediction (label, match GT row, IoU) and per GT (label, match pred row).
    """
    P_out = [("below_threshold", -1, np.nan)] * len(pred)
    G_out = [("crowd", -1) if gt.iscrowd[j] else ("fn", -1) for j in range(len(gt))]
    for img in range(n_images):
        P = [i for i in range(len(pred)) if pred.image_idx[i] == img and pred.score[i] >= c]
        P.sort(key=lambda i: -pred.score[i])  # stable: ties keep input order
        G = [j for j in range(len(gt)) if gt.image_idx[j] == img]
        ious = box_iou(pred.xywh[P], gt.xywh[G], gt.iscrowd[G])
        crowd = [bool(gt.iscrowd[j]) for j in G]
        matched, consumed, res = set(), set(), {}
        for a, i in enumerate(P):  # steps 1-3 (per class; classes are independent)
            same = [pred.class_idx[i] == gt.class_idx[j] for j in G]
            free = [same[b] and not crowd[b] and j not in matched and ious[a, b] >= t for b, j in enumerate(G)]
            j, v = _best(ious[a], G, free)
            if j >= 0:
                matched.add(j)
                res[i] = ("tp", j, v)
                G_out[j] = ("tp", i)
                continue
            j, v = _best(ious[a], G, [s and not k for s, k in zip(same, crowd, strict=True)])
            if j >= 0 and v >= t:
                res[i] = ("fp_duplicate", j, v)
            elif any(same[b] and crowd[b] and ious[a, b] >= t for b in range(len(G))):
                res[i] = ("ignored", -1, np.nan)
        for a, i in enumerate(P):  # step 4, then 5
            if i in res:
                continue
            other = [pred.class_idx[i] != gt.class_idx[j] and not crowd[b] for b, j in enumerate(G)]
            free = [other[b] and j not in matched and j not in consumed and ious[a, b] >= t
                    for b, j in enumerate(G)]
            j, v = _best(ious[a], G, free)
            if j >= 0:
                consumed.add(j)
                res[i] = ("fp_class", j, v)
                G_out[j] = ("confused", i)
                continue
            j, v = _best(ious[a], G, other)
            if j >= 0 and v >= t:  # clarification (b)
                res[i] = ("fp_duplicate", j, v)
                continue
            _, vs = _best(ious[a], G, [pred.class_idx[i] == gt.class_idx[j] and not crowd[b] for b, j in enumerate(G)])
            _, vo = _best(ious[a], G, other)
            kind = "fp_localization" if vs >= 0.1 else "fp_both" if vo >= 0.1 else "fp_background"
            res[i] = (kind, -1, np.nan)
        for i, r in res.items():
            P_out[i] = r
    return P_out, G_out


def check_against_reference(gt, pred, n_images, n_classes, t, c):
    mt = match_detections(gt, pred, iou=t, num_images=n_images, num_classes=n_classes)
    out = resolve_outcomes(mt, confidence=c)
    P_ref, G_ref = reference_outcomes(gt, pred, n_images, t, c)
    p_row, p_iou = out.pred_match
    got = [(PredOutcome(k).label, int(r), v) for k, r, v in zip(out.pred_code, p_row, p_iou, strict=True)]
    for i, (g, r) in enumerate(zip(got, P_ref, strict=True)):
        assert g[:2] == r[:2], f"pred {i}: got {g}, reference {r}"
        assert (np.isnan(g[2]) and np.isnan(r[2])) or g[2] == r[2], f"pred {i} IoU"
    g_row, _ = out.gt_match
    assert [(GtOutcome(k).label, int(r)) for k, r in zip(out.gt_code, g_row, strict=True)] == G_ref
    return out


# ---------------------------------------------------------------- hand-built cases

# GT: image 0 holds a cat (class 0) at [0,0,10,10], a dog (class 1) at [20,0,10,10]
# and a crowd cat region at [40,0,20,20].
GT = [(0, 0, 0, 0, 10, 10, 0), (0, 1, 20, 0, 10, 10, 0), (0, 0, 40, 0, 20, 20, 1)]
CASES = {
    "tp": ([(0, 0, 0, 0, 10, 10, 0.9)], ["tp"], ["tp", "fn", "crowd"]),
    "duplicate": ([(0, 0, 0, 0, 10, 10, 0.9), (0, 0, 1, 0, 10, 10, 0.8)], ["tp", "fp_duplicate"], ["tp", "fn", "crowd"]),
    "ignored_in_crowd": ([(0, 0, 45, 5, 5, 5, 0.9)], ["ignored"], ["fn", "fn", "crowd"]),
    "other_class_crowd_not_ignored": ([(0, 1, 45, 5, 5, 5, 0.9)], ["fp_background"], ["fn", "fn", "crowd"]),
    "class_confusion": ([(0, 0, 20, 0, 10, 10, 0.9)], ["fp_class"], ["fn", "confused", "crowd"]),
    "confusion_needs_unmatched_gt": ([(0, 1, 20, 0, 10, 10, 0.5), (0, 0, 20, 0, 10, 10, 0.9)],
                                     ["tp", "fp_duplicate"], ["fn", "tp", "crowd"]),
    "second_confusion_is_duplicate": ([(0, 0, 20, 0, 10, 10, 0.9), (0, 0, 21, 0, 10, 10, 0.8)],
                                      ["fp_class", "fp_duplicate"], ["fn", "confused", "crowd"]),
    "localization": ([(0, 0, 6, 0, 10, 10, 0.9)], ["fp_localization"], ["fn", "fn", "crowd"]),
    "both": ([(0, 0, 26, 0, 10, 10, 0.9)], ["fp_both"], ["fn", "fn", "crowd"]),
    "background": ([(0, 0, 0, 30, 10, 10, 0.9)], ["fp_background"], ["fn", "fn", "crowd"]),
    "below_threshold": ([(0, 0, 0, 0, 10, 10, 0.1)], ["below_threshold"], ["fn", "fn", "crowd"]),
    "tie_keeps_input_order": ([(0, 0, 0, 0, 10, 10, 0.5), (0, 0, 0, 0, 10, 10, 0.5)], ["tp", "fp_duplicate"],
                              ["tp", "fn", "crowd"]),
    "higher_score_wins": ([(0, 0, 0, 0, 10, 10, 0.5), (0, 0, 1, 0, 10, 10, 0.6)], ["fp_duplicate", "tp"],
                          ["tp", "fn", "crowd"]),
    "empty_image": ([(1, 0, 0, 0, 10, 10, 0.9)], ["fp_background"], ["fn", "fn", "crowd"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hand_built_outcomes(name):
    preds, want_pred, want_gt = CASES[name]
    gt, pred = make_boxes(GT, pred=False), make_boxes(preds, pred=True)
    out = check_against_reference(gt, pred, 2, 2, 0.5, 0.3)
    assert [PredOutcome(k).label for k in out.pred_code] == want_pred
    assert [GtOutcome(k).label for k in out.gt_code] == want_gt


def test_confusion_depends_on_confidence():
    # The dog's own TP has score 0.5: at c=0.6 it is below threshold, so the
    # cat prediction on the dog consumes it (FP-class); at c=0.3 it is a duplicate.
    gt = make_boxes(GT, pred=False)
    pred = make_boxes([(0, 1, 20, 0, 10, 10, 0.5), (0, 0, 20, 0, 10, 10, 0.9)], pred=True)
    mt = match_detections(gt, pred, iou=0.5, num_images=1, num_classes=2)
    lo, hi = resolve_outcomes(mt, confidence=0.3), resolve_outcomes(mt, confidence=0.6)
    assert [PredOutcome(k).label for k in lo.pred_code] == ["tp", "fp_duplicate"]
    assert [PredOutcome(k).label for k in hi.pred_code] == ["below_threshold", "fp_class"]
    assert [GtOutcome(k).label for k in hi.gt_code] == ["fn", "confused", "crowd"]


@pytest.mark.parametrize("seed", range(60))
@pytest.mark.parametrize("t", [0.5, 0.3, 0.75])
def test_resolve_equals_reference_at_every_threshold(seed, t):
    gt, pred, n_images, n_classes = random_case(seed)
    cs = np.unique(np.r_[0.0, pred.score, 1.0 + 1e-9])
    for c in cs[:: max(1, len(cs) // 6)]:
        check_against_reference(gt, pred, n_images, n_classes, t, float(c))


@pytest.mark.parametrize("seed", range(20))
def test_image_table_counts_match_reference(seed):
    gt, pred, n_images, n_classes = random_case(seed, crowd=0.2)
    c = float(np.median(pred.score)) if len(pred) else 0.0
    out = resolve_outcomes(match_detections(gt, pred, iou=0.5, num_images=n_images, num_classes=n_classes), confidence=c)
    P_ref, G_ref = reference_outcomes(gt, pred, n_images, 0.5, c)
    tab = image_table(out)
    assert list(tab.image_idx) == list(range(n_images))
    for img in range(n_images):
        p = [P_ref[i][0] for i in range(len(pred)) if pred.image_idx[i] == img]
        g = [G_ref[j][0] for j in range(len(gt)) if gt.image_idx[j] == img]
        row = tab.iloc[img]
        fp_kinds = ["fp_duplicate", "fp_class", "fp_localization", "fp_both", "fp_background"]
        n_gt = sum(k != "crowd" for k in g)
        tp = p.count("tp")
        fp = sum(k in fp_kinds for k in p)
        assert row.n_gt == n_gt and row.tp == tp and row.fp == fp and row.fn == n_gt - tp
        assert row.n_pred == tp + fp and row.n_ignored == p.count("ignored")
        assert row.fn_missed == g.count("fn")
        for k in fp_kinds:
            assert row[k] == p.count(k)
        assert row.error_rate == ((fp + n_gt - tp) / (tp + fp + n_gt - tp) if tp + fp + n_gt else 0.0)
    ints = ["image_idx", "n_gt", "n_pred", "n_ignored", "tp", "fp", "fn", "fn_missed"]
    assert all(tab[col].dtype == np.int64 for col in ints)


@pytest.mark.parametrize(("tp", "fp", "fn", "want"), [
    (0, 0, 0, (np.nan, np.nan, np.nan, 0.0)),
    (0, 2, 0, (0.0, np.nan, 0.0, 1.0)),
    (0, 0, 3, (np.nan, 0.0, 0.0, 1.0)),
    (2, 2, 2, (0.5, 0.5, 0.5, 4 / 6)),
])
def test_rate_rules(tp, fp, fn, want):
    got = rate_columns(np.array([tp]), np.array([fp]), np.array([fn]))
    np.testing.assert_array_equal([got[k][0] for k in ("precision", "recall", "f1", "error_rate")], want)


def test_objects_table_contract():
    gt, pred = make_boxes(GT, pred=False), make_boxes(
        [(0, 0, 0, 0, 10, 10, 0.9), (0, 0, 20, 0, 10, 10, 0.8), (0, 0, 45, 5, 5, 5, 0.7), (0, 1, 0, 0, 1, 1, 0.1)], pred=True)
    out = resolve_outcomes(match_detections(gt, pred, iou=0.5, num_images=1, num_classes=2), confidence=0.5)
    tab = objects_table(out)
    assert list(tab.columns) == ["object_id", "kind", "image_idx", "class_idx", "score", "outcome",
                                 "match_object_id", "match_iou", "match_class_idx"]
    assert list(tab.kind) == ["gt"] * 3 + ["pred"] * 4
    assert list(tab.outcome) == ["tp", "confused", "crowd", "tp", "fp_class", "ignored", "below_threshold"]
    assert list(tab.match_object_id) == [100, 101, -1, 1, 2, -1, -1]
    assert list(tab.match_class_idx) == [0, 0, -1, 0, 1, -1, -1]
    assert tab.match_iou.iloc[0] == 1.0 and np.isnan(tab.match_iou.iloc[2])
    assert tab.score.isna().sum() == 3
    for col in ("object_id", "image_idx", "class_idx", "match_object_id", "match_class_idx"):
        assert tab[col].dtype == np.int64


@pytest.mark.parametrize("seed", range(10))
def test_pair_iou_is_bit_identical_to_box_iou(seed):
    rng = np.random.default_rng(seed)
    dt = np.c_[rng.random((50, 2)) * 100, rng.random((50, 2)) * 50 + 1e-3]
    gt = np.c_[rng.random((50, 2)) * 100, rng.random((50, 2)) * 50 + 1e-3]
    crowd = rng.random(50) < 0.3
    full = box_iou(dt, gt, crowd)
    ii, jj = np.meshgrid(np.arange(50), np.arange(50), indexing="ij")
    got = pair_iou(dt[ii.ravel()], gt[jj.ravel()], crowd[jj.ravel()]).reshape(50, 50)
    assert np.array_equal(got, full)


def test_bad_iou_threshold():
    gt, pred = make_boxes(GT, pred=False), make_boxes([], pred=True)
    with pytest.raises(ConfigError, match="iou"):
        match_detections(gt, pred, iou=0.0, num_images=1, num_classes=2)


def test_no_predictions_and_no_gt():
    out = resolve_outcomes(match_detections(make_boxes([], pred=False), make_boxes([], pred=True), iou=0.5,
                                            num_images=3, num_classes=1), confidence=0.0)
    tab = image_table(out)
    assert len(tab) == 3 and (tab.error_rate == 0.0).all() and tab.f1.isna().all()
    assert len(objects_table(out)) == 0


@pytest.mark.parametrize("seed", range(10))
def test_prefix_counts_equal_code_counts(seed):
    gt, pred, n_images, n_classes = random_case(seed, crowd=0.2)
    mt = match_detections(gt, pred, iou=0.5, num_images=n_images, num_classes=n_classes)
    for c in (0.0, 0.5, 0.8, 1.0):
        out = resolve_outcomes(mt, confidence=c)
        every = np.ones(n_images, bool)
        for by in ("image", "class"):
            assert np.array_equal(out.pred_counts(by=by), out.pred_counts(by=by, images=every))
            assert np.array_equal(out.gt_counts(by=by), out.gt_counts(by=by, images=every))
        # The compiled per-image table equals the vectorised column rules.
        cols = count_columns(out.pred_counts(by="image", images=every), out.gt_counts(by="image", images=every))
        cols.update(rate_columns(cols["tp"], cols["fp"], cols["fn"]))
        tab = image_table(out)
        for name, want in cols.items():
            assert np.array_equal(tab[name].to_numpy(), want, equal_nan=want.dtype.kind == "f"), name
