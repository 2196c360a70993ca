"""The app's evaluation depth: the per-class table, PR curves, calibration and ROC.

Each view's numbers come from the engine and are checked against the
references: pycocotools' per-class summaries for the table and curves,
scikit-learn's ``calibration_curve`` and ``roc_curve`` for the classification
views (on random inputs, and on the session's demo runs through a bare Document).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("bokeh")

from bokeh.document import Document

from vecexplore.app.document import build_document
from vecexplore.eval.classification import reliability, roc_curve


def page(data, tab: str):
    doc = Document()
    s = build_document(doc, data, url_base="/vx/test")
    doc.get_model_by_name("tabs").active = [v.name for v in s.tab_views].index(tab)
    return doc, s


# ---------------------------------------------------------------- pure functions against scikit-learn


@pytest.mark.parametrize("seed", range(12))
def test_roc_curve_equals_sklearn(seed):
    from sklearn.metrics import roc_auc_score
    from sklearn.metrics import roc_curve as sk_roc

    from vecexplore.eval.classification import binary_roc_auc

    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    y = rng.random(n) < rng.uniform(0.1, 0.9)
    if y.all() or not y.any():
        y[0] = not y[0]
    score = np.round(rng.random(n), int(rng.integers(1, 4)))  # ties
    fpr, tpr, thr = roc_curve(y, score)
    want = sk_roc(y, score, drop_intermediate=False)
    for got, ref in zip((fpr, tpr, thr), want, strict=True):
        np.testing.assert_allclose(got, ref)
    assert binary_roc_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert roc_curve(np.ones(4, bool), np.arange(4.0))[0].size == 0


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("n_bins", [5, 10, 15])
def test_reliability_equals_sklearn_calibration_curve(seed, n_bins):
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 500))
    conf = rng.uniform(0.2, 1.0, n) ** rng.uniform(0.5, 2)
    conf[:3] = [0.0, 1.0, 0.5]  # the edges of the range
    correct = rng.random(n) < conf ** rng.uniform(0.5, 2)
    r = reliability(conf, correct, n_bins=n_bins)
    prob_true, prob_pred = calibration_curve(correct, conf, n_bins=n_bins, strategy="uniform")
    nonempty = r["count"] > 0
    np.testing.assert_allclose(r["accuracy"][nonempty], prob_true)
    np.testing.assert_allclose(r["confidence"][nonempty], prob_pred)
    assert r["count"].sum() == n
    gap = np.abs(r["accuracy"] - r["confidence"])[nonempty]
    assert r["ece"] == pytest.approx(float((r["count"][nonempty] * gap).sum() / n))
    assert r["mce"] == pytest.approx(gap.max())
    empty = reliability(np.zeros(0), np.zeros(0, bool), n_bins=n_bins)
    assert np.isnan(empty["ece"]) and empty["count"].sum() == 0


# ---------------------------------------------------------------- the views


def test_per_class_table_is_the_engine_and_pycocotools(det):
    from vecexplore.analysis.quality import class_performance
    from vecexplore.eval.coco import per_class_columns

    doc, s = page(det, "class-table")
    src = doc.get_model_by_name("class-table-source").data
    t = class_performance(s.derived.evaluation, None).table
    for col in ("n_gt", "tp", "fn", "fp", "fp_duplicate", "fp_class", "fp_localization", "fp_both", "fp_background"):
        np.testing.assert_array_equal(src[col], t[col].to_numpy(), err_msg=col)
    cm = det.coco_metrics()
    cols = per_class_columns(cm)
    np.testing.assert_array_equal(src["AP"], cm.per_class_ap)
    np.testing.assert_array_equal(src["AP50"], cols["AP50"])
    # pycocotools, one class at a time: its stats[0], [1], [2], [8] are AP, AP50, AP75, AR100
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from vecexplore.io.coco import to_coco_gt

    gt_dict = to_coco_gt(det.dataset, np.arange(det.num_images))
    ds = det.dataset
    results = [{"image_id": int(ds.images.image_id[i]), "category_id": int(ds.categories.ids[c]),
                "bbox": [float(v) for v in b], "score": float(sc)}
               for i, c, b, sc in zip(ds.pred.image_idx, ds.pred.class_idx, ds.pred.xywh, ds.pred.score, strict=True)]
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = gt_dict
        cg.createIndex()
        cd = cg.loadRes(results)
        for k in range(len(det.class_names)):
            e = COCOeval(cg, cd, "bbox")
            e.params.catIds = [int(ds.categories.ids[k])]
            e.evaluate()
            e.accumulate()
            e.summarize()
            for field, stat in (("AP", 0), ("AP50", 1), ("AP75", 2), ("AR100", 8)):
                want = e.stats[stat]
                got = src[field][k]
                assert (np.isnan(got) and want == -1) or got == pytest.approx(want, abs=1e-12), (k, field)
    # a row click filters every view to that class
    k = int(np.argmax(src["n_gt"]))
    doc.get_model_by_name("class-table-source").selected.indices = [k]
    assert s.state.classes == (k,)
    assert doc.get_model_by_name("class-filter").value == [str(k)]


def test_per_class_table_follows_the_selection_and_the_operating_point(det, cls):
    from vecexplore.analysis.quality import class_performance
    from vecexplore.app import state as st

    doc, s = page(det, "class-table")
    sel = np.arange(0, det.num_images, 3)
    s.select(sel)
    s.set_confidence(0.7)
    t = class_performance(s.derived.evaluation, sel).table
    np.testing.assert_array_equal(doc.get_model_by_name("class-table-source").data["tp"], t["tp"].to_numpy())
    doc, s = page(cls, "class-table")
    s.set_confidence(0.6)
    pc = st.classification_per_class(s.derived.outcomes, len(cls.class_names))
    src = doc.get_model_by_name("class-table-source").data
    for col in ("support", "predicted", "correct", "precision", "recall", "f1"):
        np.testing.assert_array_equal(src[col], pc[col], err_msg=col)


@pytest.mark.parametrize("iou", [0.5, 0.75, 0.95])
def test_pr_curves_are_the_coco_precision_arrays(det, iou):
    doc, s = page(det, "pr-curves")
    s.set_iou(iou)
    cm = det.coco_metrics()
    t = cm.params.iou_index(iou)
    src = doc.get_model_by_name("pr-source").data
    assert src["label"][0].startswith("mean over classes")
    block = cm.precision[t, :, :, 0, -1]
    have = (block > -1).all(axis=0)
    np.testing.assert_allclose(src["ys"][0], block[:, have].mean(axis=1))
    # the mean curve's mean is the run's AP at this IoU (pycocotools' AP50 / AP75 for 0.5 / 0.75)
    if iou == 0.5:
        assert np.mean(src["ys"][0]) == pytest.approx(cm.as_dict()["AP50"], abs=1e-12)
    if iou == 0.75:
        assert np.mean(src["ys"][0]) == pytest.approx(cm.as_dict()["AP75"], abs=1e-12)
    doc.get_model_by_name("pr-classes").value = ["2", "0"]
    src = doc.get_model_by_name("pr-source").data
    assert s.state.pr_classes == (0, 2)
    names = [str(n) for n in src["name"][1:]]
    assert names == [k for k in ("0", "2") if (block[:, int(k)] > -1).any()]
    for line, k in zip(src["ys"][1:], names, strict=True):
        np.testing.assert_allclose(line, np.where(block[:, int(k)] > -1, block[:, int(k)], np.nan))


def test_calibration_view_is_the_reliability_of_the_selection(cls):
    from sklearn.calibration import calibration_curve

    from vecexplore.app.views.calibration import N_BINS

    doc, s = page(cls, "calibration")
    arrays = s.derived.evaluation.arrays
    keep = (arrays["label"] >= 0) & (arrays["prediction"] >= 0)
    conf, correct = arrays["score"][keep], arrays["prediction"][keep] == arrays["label"][keep]
    src = doc.get_model_by_name("calibration-source").data
    prob_true, prob_pred = calibration_curve(correct, conf, n_bins=N_BINS, strategy="uniform")
    nonempty = np.asarray(src["count"]) > 0
    np.testing.assert_allclose(np.asarray(src["accuracy"])[nonempty], prob_true)
    np.testing.assert_allclose(np.asarray(src["confidence"])[nonempty], prob_pred)
    assert "ECE" in doc.get_model_by_name("calibration-caption").text
    # a click on a bar selects that bin's images
    b = int(np.argmax(src["count"]))
    fig = doc.get_model_by_name("calibration")
    from bokeh.events import Tap

    fig._trigger_event(Tap(fig, sx=0, sy=0, x=(b + 0.5) / N_BINS, y=0.2, modifiers=None))
    assert len(s.selection) == src["count"][b]
    assert (np.floor(arrays["score"][s.selection] * N_BINS).clip(0, N_BINS - 1) == b).all()


def test_roc_exists_only_for_two_classes_with_scores(cls):
    from vecexplore.app.views.roc import ROCView

    assert not ROCView.available(cls)  # the demo has six classes
    doc, s = page(cls, "calibration")
    assert "roc" not in [v.name for v in s.views] and doc.get_model_by_name("roc") is None
