"""Confusion matrices: invariants on random inputs, every cell kind by hand,
cells → images / objects, subsets, and classification against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from test_eval_outcomes import GT, make_boxes, random_case, reference_outcomes

from vecexplore.errors import ConfigError, ValidationError
from vecexplore.eval.confusion import ConfusionMatrix
from vecexplore.eval.matching import match_detections
from vecexplore.eval.outcomes import resolve_outcomes


def detection_cm(gt, pred, n_images, n_classes, c, *, t=0.5, images=None):
    out = resolve_outcomes(match_detections(gt, pred, iou=t, num_images=n_images, num_classes=n_classes), confidence=c)
    names = [f"c{k}" for k in range(n_classes)]
    return ConfusionMatrix.from_outcomes(out, names=names, images=images), out


def reference_counts(gt, pred, n_images, n_classes, t, c):
    P, G = reference_outcomes(gt, pred, n_images, t, c)
    k = n_classes
    cm = np.zeros((k + 1, k + 1), np.int64)
    for i, (kind, j, _) in enumerate(P):
        if kind == "tp" or kind == "fp_class":
            cm[gt.class_idx[j], pred.class_idx[i]] += 1
        elif kind.startswith("fp_"):
            cm[k, pred.class_idx[i]] += 1
    for j, (kind, _) in enumerate(G):
        if kind == "fn":
            cm[gt.class_idx[j], k] += 1
    return cm


@pytest.mark.parametrize("seed", range(40))
def test_invariants_and_reference_counts(seed):
    gt, pred, n_images, n_classes = random_case(seed, n_classes=2 + seed % 4, crowd=0.15)
    for c in (0.0, 0.5, 0.85):
        cm, out = detection_cm(gt, pred, n_images, n_classes, c)
        k = n_classes
        n_gt = np.bincount(gt.class_idx[~gt.iscrowd], minlength=k)
        counted = (pred.score >= c) & (out.pred_code != 6)
        n_pred = np.bincount(pred.class_idx[counted], minlength=k)
        assert np.array_equal(cm.counts[:k].sum(axis=1), n_gt)
        assert np.array_equal(cm.counts[:, :k].sum(axis=0), n_pred)
        assert cm.counts[k, k] == 0
        assert np.array_equal(cm.counts, reference_counts(gt, pred, n_images, n_classes, 0.5, c))
        # The per-object cell codes agree with the bincount path.
        assert np.array_equal(cm.subset(np.ones(n_images, bool)).counts, cm.counts)


@pytest.mark.parametrize("seed", range(15))
def test_subset_equals_matrix_of_the_subset_dataset(seed):
    gt, pred, n_images, n_classes = random_case(seed, n_images=6)
    rng = np.random.default_rng(seed)
    mask = rng.random(n_images) < 0.5
    cm, _ = detection_cm(gt, pred, n_images, n_classes, 0.4)
    keep_g, keep_p = mask[gt.image_idx], mask[pred.image_idx]
    sub, _ = detection_cm(gt[keep_g], pred[keep_p], n_images, n_classes, 0.4)
    assert np.array_equal(cm.subset(mask).counts, sub.counts)
    assert np.array_equal(cm.subset(np.flatnonzero(mask)).counts, sub.counts)
    direct, _ = detection_cm(gt, pred, n_images, n_classes, 0.4, images=mask)
    assert np.array_equal(direct.counts, sub.counts)
    for i in range(n_classes + 1):
        for j in range(n_classes + 1):
            assert set(cm.subset(mask).cell_images(i, j)) == set(cm.cell_images(i, j)) & set(np.flatnonzero(mask))


@pytest.mark.parametrize("seed", range(15))
def test_cells_partition_the_objects(seed):
    gt, pred, n_images, n_classes = random_case(seed)
    cm, out = detection_cm(gt, pred, n_images, n_classes, 0.3)
    size = n_classes + 1
    pred_ids, gt_ids = [], []
    for i in range(size):
        for j in range(size):
            objs = cm.cell_objects(i, j)
            pred_ids += list(objs.pred)
            gt_ids += list(objs.gt)
            assert len(objs.pred) + (len(objs.gt) if j == n_classes else 0) == cm.counts[i, j]
            imgs = set(gt.image_idx[np.isin(gt.object_id, objs.gt)]) | set(pred.image_idx[np.isin(pred.object_id, objs.pred)])
            assert set(cm.cell_images(i, j)) == imgs
    counted = (pred.score >= 0.3) & (out.pred_code != 6)
    assert sorted(pred_ids) == sorted(pred.object_id[counted])
    assert sorted(gt_ids) == sorted(gt.object_id[~gt.iscrowd])


# Hand-built: one object per cell kind on the GT of test_eval_outcomes (cat=0, dog=1, crowd cat).
CELL_CASES = {
    "tp": ([(0, 0, 0, 0, 10, 10, 0.9)], (0, 0), [1], [100]),
    "fp_class": ([(0, 0, 20, 0, 10, 10, 0.9)], (1, 0), [2], [100]),
    "fn": ([], (1, 2), [2], []),
    "duplicate": ([(0, 0, 0, 0, 10, 10, 0.9), (0, 0, 1, 0, 10, 10, 0.8)], (2, 0), [], [101]),
    "localization": ([(0, 1, 26, 0, 10, 10, 0.9)], (2, 1), [], [100]),
    "background": ([(0, 1, 0, 50, 10, 10, 0.9)], (2, 1), [], [100]),
}


@pytest.mark.parametrize("name", list(CELL_CASES))
def test_every_cell_kind(name):
    preds, (i, j), want_gt, want_pred = CELL_CASES[name]
    cm, _ = detection_cm(make_boxes(GT, pred=False), make_boxes(preds, pred=True), 1, 2, 0.5)
    objs = cm.cell_objects(i, j)
    assert list(objs.gt) == want_gt and list(objs.pred) == want_pred
    assert cm.counts[i, j] == len(want_pred) + (len(want_gt) if j == 2 else 0)
    assert list(cm.cell_images(i, j)) == [0]
    assert cm.labels == ("c0", "c1", "background")


def test_confused_gt_is_not_also_a_miss():
    cm, _ = detection_cm(make_boxes(GT, pred=False), make_boxes([(0, 0, 20, 0, 10, 10, 0.9)], pred=True), 1, 2, 0.5)
    assert cm.counts.tolist() == [[0, 0, 1], [1, 0, 0], [0, 0, 0]]


def test_normalized_and_pandas():
    cm = ConfusionMatrix.from_labels(label=np.array([0, 0, 1, 1, 1, -1]), prediction=np.array([0, 1, 1, 1, -1, 0]),
                                     names=["a", "b", "c"])
    assert cm.counts.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    np.testing.assert_array_equal(cm.normalized("gt"), [[0.5, 0.5, 0], [0, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(cm.normalized("pred"), [[1, 1 / 3, 0], [0, 2 / 3, 0], [0, 0, 0]])
    df = cm.to_pandas(normalize="gt")
    assert list(df.index) == ["a", "b", "c"] and df.index.name == "gt" and df.columns.name == "pred"
    assert cm.top_confusions() == [(0, 1, 1)]
    assert list(cm.cell_objects(1, 1).pred) == [2, 3] and list(cm.cell_images(0, 1)) == [1]
    assert cm.subset(np.array([0, 1])).counts.tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 0]]
    with pytest.raises(ConfigError):
        cm.normalized("rows")
    with pytest.raises(ConfigError):
        cm.cell_images(3, 0)
    with pytest.raises(ValidationError):
        cm.subset(np.ones(5, bool))


@pytest.mark.filterwarnings("ignore:A single label:UserWarning")
@pytest.mark.parametrize("seed", range(30))
def test_classification_matrix_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 7))
    n = int(rng.integers(1, 60))
    label = rng.integers(-1, k, n)
    pred = rng.integers(-1, k, n)
    ok = (label >= 0) & (pred >= 0)
    cm = ConfusionMatrix.from_labels(label=label, prediction=pred, names=[str(i) for i in range(k)])
    want = sk_confusion_matrix(label[ok], pred[ok], labels=list(range(k))) if ok.any() else np.zeros((k, k))
    assert np.array_equal(cm.counts, want)
    mask = rng.random(n) < 0.5
    sub = cm.subset(mask)
    ok &= mask
    want = sk_confusion_matrix(label[ok], pred[ok], labels=list(range(k))) if ok.any() else np.zeros((k, k))
    assert np.array_equal(sub.counts, want)


def test_top_confusions_order():
    cm = ConfusionMatrix.from_labels(label=np.array([0, 0, 1, 1, 2, 2, 2]), prediction=np.array([1, 2, 0, 0, 0, 1, 2]),
                                     names=["a", "b", "c"])
    assert cm.top_confusions(3) == [(1, 0, 2), (0, 1, 1), (0, 2, 1)]
