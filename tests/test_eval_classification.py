"""Classification metrics against scikit-learn on many random inputs, including nasty ones."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    top_k_accuracy_score,
)

from vecexplore.errors import ValidationError
from vecexplore.eval.classification import classification_metrics, image_arrays, image_table
from vecexplore.types import Labels


def random_inputs(seed: int):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 9))
    n = int(rng.integers(1, 80))
    kind = seed % 5
    used = rng.choice(k, size=max(1, k // 2), replace=False)  # some classes never appear
    y_true = rng.choice(used, n) if kind == 1 else rng.integers(0, k, n)
    y_pred = y_true.copy() if kind == 2 else rng.choice(used, n) if kind == 3 else rng.integers(0, k, n)
    if kind == 4:
        y_pred = (y_true + 1) % k  # all wrong (unless k == 1)
    scores = rng.choice([0.0, 0.25, 0.5, 1.0], (n, k)) if seed % 2 else rng.random((n, k))
    return y_true, y_pred, scores, k


@pytest.mark.parametrize("seed", range(200))
def test_equals_sklearn(seed):
    y_true, y_pred, scores, k = random_inputs(seed)
    m = classification_metrics(y_true=y_true, y_pred=y_pred, num_classes=k, y_score=scores)
    labels = list(range(k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert m.accuracy == accuracy_score(y_true, y_pred)
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
        np.testing.assert_array_equal(m.precision, p)
        np.testing.assert_array_equal(m.recall, r)
        np.testing.assert_allclose(m.f1, f, rtol=1e-15, atol=0)
        np.testing.assert_array_equal(m.support, s)
        for avg, got in (("macro", m.macro), ("weighted", m.weighted)):
            want = precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0)[:3]
            np.testing.assert_allclose([got["precision"], got["recall"], got["f1"]], want, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(m.confusion, confusion_matrix(y_true, y_pred, labels=labels))
        if k >= 3:
            assert set(m.top_k) == {j for j in (1, 3, 5) if j < k}
            for j, acc in m.top_k.items():
                assert acc == top_k_accuracy_score(y_true, scores, k=j, labels=labels)
        else:
            assert m.top_k == {}
        if k == 2:
            if len(np.unique(y_true)) == 2:
                assert m.roc_auc == pytest.approx(roc_auc_score(y_true, scores[:, 1]), rel=1e-12, abs=1e-15)
            else:
                assert np.isnan(m.roc_auc)
        else:
            assert m.roc_auc is None


@pytest.mark.parametrize(("y_true", "y_pred", "k"), [
    ([0], [0], 1),
    ([0, 0, 0], [1, 1, 1], 4),
    ([3, 3], [3, 3], 5),
    ([0, 1, 2], [2, 0, 1], 3),
])
def test_nasty_small_cases(y_true, y_pred, k):
    m = classification_metrics(y_true=np.array(y_true), y_pred=np.array(y_pred), num_classes=k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)[:3]
    assert [m.macro["precision"], m.macro["recall"], m.macro["f1"]] == pytest.approx(list(want))
    assert m.confusion.shape == (k, k) and m.confusion.sum() == len(y_true)


def test_empty_and_bad_inputs():
    m = classification_metrics(y_true=np.zeros(0), y_pred=np.zeros(0), num_classes=3)
    assert m.n == 0 and np.isnan(m.accuracy) and m.confusion.sum() == 0
    with pytest.raises(ValidationError, match="predictions"):
        classification_metrics(y_true=np.array([0]), y_pred=np.array([5]), num_classes=3)
    with pytest.raises(ValidationError, match="shape"):
        classification_metrics(y_true=np.array([0]), y_pred=np.array([0]), num_classes=3, y_score=np.zeros((1, 2)))


def test_image_table_contract():
    gt = Labels(image_idx=np.array([0, 1, 2, 4]), class_idx=np.array([0, 1, 2, 1]))
    pred = Labels(image_idx=np.array([0, 1, 2, 3]), class_idx=np.array([0, 2, 2, 1]),
                  score=np.array([0.9, 0.8, 0.3, 0.5]),
                  scores=np.array([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.3, 0.3, 0.3], [0.2, 0.5, 0.3]]))
    tab = image_table(image_arrays(num_images=5, gt=gt, pred=pred), confidence=0.4)
    assert list(tab.columns) == ["image_idx", "label", "prediction", "score", "margin", "correct", "error_rate"]
    assert tab.label.tolist() == [0, 1, 2, -1, 1]
    assert tab.prediction.tolist() == [0, 2, -1, 1, -1]  # image 2 below threshold, image 4 has none
    assert tab.correct.tolist() == [True, False, False, False, False]
    assert tab.error_rate.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0]
    np.testing.assert_allclose(tab.margin[:4], [0.85, 0.7, 0.0, 0.2])
    assert np.isnan(tab.margin[4]) and np.isnan(tab.score[4]) and tab.score[2] == 0.3
    assert tab.label.dtype == np.int64 and tab.correct.dtype == bool
