"""Confidence sweep against a brute-force loop over thresholds."""

from __future__ import annotations

import numpy as np
import pytest
from test_eval_outcomes import random_case

from vecexplore.eval.matching import match_detections
from vecexplore.eval.outcomes import PredOutcome, resolve_outcomes
from vecexplore.eval.sweep import Curve, classification_sweep, detection_sweep, sweep_scores


def brute_detection(gt, pred, n_images, n_classes, t, cls=None):
    """At every distinct score of a counted prediction: counts from resolve_outcomes."""
    mt = match_detections(gt, pred, iou=t, num_images=n_images, num_classes=n_classes)
    sel_p = np.ones(len(pred), bool) if cls is None else pred.class_idx == cls
    sel_g = ~gt.iscrowd & (np.ones(len(gt), bool) if cls is None else gt.class_idx == cls)
    counted = resolve_outcomes(mt, confidence=0.0).pred_code != PredOutcome.IGNORED
    rows = []
    for c in np.unique(pred.score[sel_p & counted])[::-1]:
        out = resolve_outcomes(mt, confidence=c)
        code = out.pred_code[sel_p]
        tp = int((code == PredOutcome.TP).sum())
        fp = int((code < PredOutcome.IGNORED).sum()) - tp
        if tp + fp:
            rows.append((c, tp, fp, int(sel_g.sum()) - tp))
    return rows


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("t", [0.5, 0.7])
def test_detection_sweep_equals_brute_force(seed, t):
    gt, pred, n_images, n_classes = random_case(seed, crowd=0.2)
    sw = detection_sweep(match_detections(gt, pred, iou=t, num_images=n_images, num_classes=n_classes))
    for cls, curve in [(None, sw.overall), *enumerate(sw.per_class)]:
        want = brute_detection(gt, pred, n_images, n_classes, t, cls)
        got = list(zip(curve.confidence, curve.tp, curve.fp, curve.fn, strict=True))
        assert got == want
        if want:
            tp, fp, fn = np.array([r[1:] for r in want]).T
            f1 = 2 * tp / (2 * tp + fp + fn)
            best = int(np.flatnonzero(f1 == f1.max())[0])
            assert curve.optimal() == (want[best][0], f1[best])
            np.testing.assert_array_equal(curve.precision, tp / (tp + fp))


def test_optimal_ties_go_to_the_highest_confidence():
    # 2 positives; 0.9 TP, 0.8 FP, 0.7 FP, 0.6 TP: F1 = 2/3, 2/4, 2/5, 4/6 → tie between 0.9 and 0.6.
    curve = sweep_scores(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 0, 1], bool),
                         np.zeros(4, np.int64), np.zeros(2, np.int64), num_classes=1).overall
    assert curve.f1[0] == curve.f1[3] == max(curve.f1)
    assert curve.optimal() == (0.9, 2 / 3)


def test_curve_at_and_empty():
    curve = sweep_scores(np.array([0.9, 0.5, 0.5]), np.array([1, 0, 1], bool), np.zeros(3, np.int64),
                         np.zeros(2, np.int64), num_classes=1).overall
    assert curve.confidence.tolist() == [0.9, 0.5]
    assert curve.at(0.95) == (0, 0, 2) and curve.at(0.9) == (1, 0, 1) and curve.at(0.6) == (1, 0, 1)
    assert curve.at(0.0) == (2, 1, 0)
    empty = Curve(np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), 3)
    assert all(np.isnan(v) for v in empty.optimal())


@pytest.mark.parametrize("seed", range(25))
def test_classification_sweep_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 50)), int(rng.integers(1, 5))
    label = rng.integers(-1, k, n)
    pred = rng.integers(-1, k, n)
    score = np.where(pred >= 0, rng.choice([0.3, 0.5, 0.7, 0.9], n), np.nan)
    sw = classification_sweep(label=label, prediction=pred, score=score, num_classes=k)
    labelled = label >= 0
    want = []
    for c in np.unique(score[labelled & (pred >= 0)])[::-1]:
        acc = labelled & (pred >= 0) & (score >= c)
        correct = int((acc & (pred == label)).sum())
        want.append((c, correct, int(acc.sum()) - correct, int(labelled.sum()) - correct))
    assert list(zip(sw.overall.confidence, sw.overall.tp, sw.overall.fp, sw.overall.fn, strict=True)) == want
    for c_, tp, fp, _ in want:
        i = list(sw.overall.confidence).index(c_)
        assert sw.overall.coverage[i] == (tp + fp) / labelled.sum()


def test_to_pandas_and_per_class_optimum():
    sw = sweep_scores(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1], bool), np.array([0, 0, 1]),
                      np.array([0, 1, 1, 2]), num_classes=3)
    conf, f1 = sw.optimal_per_class()
    assert conf[0] == 0.9 and conf[1] == 0.7 and np.isnan(conf[2])
    np.testing.assert_allclose(f1[:2], [1.0, 2 / 3])
    df = sw.to_pandas()
    assert list(df.columns) == ["class_idx", "confidence", "tp", "fp", "fn", "precision", "recall", "f1"]
    assert sorted(df.class_idx.unique()) == [-1, 0, 1]


@pytest.mark.parametrize(("seed", "n", "k"), [(0, 1, 1), (1, 50, 3), (2, 5000, 1), (3, 30_000, 80), (4, 2000, 7)])
def test_group_score_order_is_lexsort(seed, n, k):
    """The radix order the curves use equals np.lexsort((-score, group)), ties included."""
    from vecexplore.eval.sweep import _group_score_order

    rng = np.random.default_rng(seed)
    score = np.round(rng.random(n), int(rng.integers(1, 4)))  # many ties
    score[rng.random(n) < 0.05] = 0.0
    score[rng.random(n) < 0.02] = -0.0
    group = rng.integers(0, k, n)
    np.testing.assert_array_equal(_group_score_order(score, group, k), np.lexsort((-score, group)))
    neg = score - 0.5  # negative scores: lexsort itself
    np.testing.assert_array_equal(_group_score_order(neg, group, k), np.lexsort((-neg, group)))
