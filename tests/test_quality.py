"""Quality panels' data: per-class bars, bins, importance and curves for a selection.

Differential: a selection's numbers equal those of the evaluation of the
dataset restricted to it (matching is per image, so the two must agree), and
the whole-run numbers equal the engine's own tables.
"""

from __future__ import annotations

import numpy as np
import pytest
from _quality_helpers import classification_dataset, detection_dataset, objects_frame, run_tables

from vecexplore.analysis.bins import image_property_bins
from vecexplore.analysis.describe import describe_images
from vecexplore.analysis.quality import (
    class_performance,
    property_importance,
    property_performance,
    sweep_for,
)
from vecexplore.errors import ConfigError, ValidationError
from vecexplore.eval.evaluate import evaluate


def _selection(n, seed, frac=0.4):
    return np.flatnonzero(np.random.default_rng(seed).random(n) < frac)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_class_performance_matches_engine_tables(seed):
    ds = detection_dataset(seed)
    ev = evaluate(ds)
    t = class_performance(ev).table
    ref = ev.class_table
    for col in ("n_gt", "tp", "fp", "fn", "fp_duplicate", "fp_class", "fp_localization", "fp_both", "fp_background"):
        assert t[col].tolist() == ref[col].tolist(), col
    assert t["missed"].tolist() == ref["fn_missed"].tolist()
    assert (t["missed"] + t["misclassified"]).tolist() == ref["fn"].tolist()
    k = len(ds.categories)
    off = ev.confusion.counts[:k, :k].copy()
    np.fill_diagonal(off, 0)
    assert class_performance(ev).confused_as.tolist() == off.tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("confidence", [None, 0.0, 0.55])
def test_selection_equals_evaluating_the_subset(seed, confidence):
    ds = detection_dataset(seed)
    ev = evaluate(ds, confidence=confidence)
    sel = _selection(ds.num_images, seed + 10)
    sub = evaluate(ds.subset(sel), confidence=ev.confidence)
    got, want = class_performance(ev, sel), class_performance(sub)
    cols = [c for c in got.table.columns if c not in ("precision", "recall", "name")]
    assert got.table[cols].to_numpy().tolist() == want.table[cols].to_numpy().tolist()
    assert got.confused_as.tolist() == want.confused_as.tolist()
    curve, ref = sweep_for(ev, sel), sub.sweep.overall
    for name in ("confidence", "tp", "fp", "fn"):
        assert np.array_equal(getattr(curve, name), getattr(ref, name)), name
    for j in range(len(ds.categories)):
        c, r = sweep_for(ev, sel, class_idx=j), sub.sweep.per_class[j]
        assert np.array_equal(c.tp, r.tp) and np.array_equal(c.confidence, r.confidence) and c.n_pos == r.n_pos


@pytest.mark.parametrize("task", ["detection", "classification"])
def test_sweep_without_selection_is_the_engine_sweep(task):
    ds = detection_dataset(5) if task == "detection" else classification_dataset(5)
    ev = evaluate(ds)
    for got, ref in [(sweep_for(ev), ev.sweep.overall),
                     *((sweep_for(ev, class_idx=j), ev.sweep.per_class[j]) for j in range(len(ds.categories)))]:
        for name in ("confidence", "tp", "fp", "fn"):
            assert np.array_equal(getattr(got, name), getattr(ref, name))
        assert got.optimal() == ref.optimal()


def test_empty_selection_gives_empty_curve_and_zero_counts():
    ds = detection_dataset(1)
    ev = evaluate(ds)
    curve = sweep_for(ev, np.zeros(0, np.int64))
    assert len(curve.confidence) == 0 and curve.n_pos == 0
    assert class_performance(ev, np.zeros(ds.num_images, bool)).table[["tp", "fp", "fn"]].to_numpy().sum() == 0


KIND_RULES = {  # kind -> (objects kind, outcomes)
    "tp": ("gt", {"tp"}), "missed": ("gt", {"fn"}), "misclassified": ("gt", {"confused"}),
    "fn": ("gt", {"fn", "confused"}), "fp_background": ("pred", {"fp_background"}),
    "fp_class": ("pred", {"fp_class"}), "fp_duplicate": ("pred", {"fp_duplicate"}),
    "fp": ("pred", {"fp_duplicate", "fp_class", "fp_localization", "fp_both", "fp_background"}),
}


@pytest.mark.parametrize("kind", sorted(KIND_RULES))
def test_images_behind_each_bar(kind):
    ds = detection_dataset(7)
    ev = evaluate(ds)
    obj = objects_frame(ev)
    sel = _selection(ds.num_images, 3, 0.6)
    cp = class_performance(ev, sel)
    which, outcomes = KIND_RULES[kind]
    for k in range(len(ds.categories)):
        rows = obj[(obj["kind"] == which) & (obj["class_idx"] == k) & obj["outcome"].isin(outcomes)]
        want = np.intersect1d(rows["image_idx"].unique(), sel)
        assert cp.images_for(k, kind).tolist() == want.tolist()


def test_images_for_confused_cell_and_bad_kind():
    ds = detection_dataset(2, p_flip=0.3)
    ev = evaluate(ds)
    cp = class_performance(ev)
    a, b = np.unravel_index(np.argmax(cp.confused_as), cp.confused_as.shape)
    assert cp.confused_as[a, b] > 0
    assert cp.images_for(int(a), "confused_as", other=int(b)).tolist() == ev.confusion.cell_images(a, b).tolist()
    with pytest.raises(ConfigError, match="unknown bar kind"):
        cp.images_for(0, "nonsense")
    with pytest.raises(ConfigError):
        cp.images_for(99, "tp")


def test_classification_class_performance_against_sklearn():
    from sklearn.metrics import confusion_matrix

    ds = classification_dataset(3)
    ev = evaluate(ds, confidence=0.5)
    sel = _selection(ds.num_images, 4, 0.5)
    cp = class_performance(ev, sel)
    label, acc = ev.arrays["label"][sel], ev.accepted[sel]
    k = len(ds.categories)
    keep = acc >= 0
    cm = confusion_matrix(label[keep], acc[keep], labels=range(k))
    t = cp.table
    assert t["correct"].tolist() == np.diag(cm).tolist()
    assert t["misclassified"].tolist() == (cm.sum(axis=1) - np.diag(cm)).tolist()
    assert t["fp"].tolist() == (cm.sum(axis=0) - np.diag(cm)).tolist()
    assert t["no_prediction"].tolist() == np.bincount(label[~keep], minlength=k).tolist()
    off = cm.copy()
    np.fill_diagonal(off, 0)
    assert cp.confused_as.tolist() == off.tolist()
    for j in range(k):
        want = sel[(label == j) & (acc != j)]
        assert cp.images_for(j, "fn").tolist() == want.tolist()


def _planted_detection(seed, n=500):
    """Images with brightness < 0.2 lose 90% of their objects; nothing else matters."""
    rng = np.random.default_rng(seed)
    brightness = rng.uniform(0, 1, n)
    ds = detection_dataset(seed, n_images=n, p_find=np.where(brightness < 0.2, 0.05, 0.9), p_flip=0.02,
                           fp_rate=0.2, max_objects=6, min_objects=1, crowd=0.0)
    return ds, brightness


@pytest.mark.parametrize("seed", [0, 1])
def test_importance_ranks_the_planted_property_first(seed):
    ds, brightness = _planted_detection(seed)
    tables, ev, _ = run_tables(ds, props={"brightness": brightness}, seed=seed)
    ranked = property_importance(tables, ev)
    image_level = [r for r in ranked if r.level == "image"]
    assert (image_level[0].prop, image_level[0].direction) == ("brightness", "lower")
    # Objects per image only sets how fine-grained an image's error rate can be (1 object: 0 or 1);
    # a k-NN MI estimator read that as information and ranked it first.
    n_obj = next(r for r in ranked if r.prop == "n_objects")
    assert image_level[0].mutual_information > 4 * n_obj.mutual_information
    assert all(r.mutual_information < image_level[0].mutual_information / 4 for r in ranked[1:])


def test_property_bins_find_the_planted_failure_and_follow_a_selection():
    ds, brightness = _planted_detection(3)
    tables, ev, _ = run_tables(ds, props={"brightness": brightness})
    bt = property_performance(tables, ev, "brightness", n_bins=5)
    assert bt.rate["fn_rate"][0] > 0.7 > 0.25 > bt.rate["fn_rate"][1:].max()
    flat = property_performance(tables, ev, "contrast", n_bins=5)
    assert np.ptp(flat.rate["fn_rate"]) < 0.5 * (bt.rate["fn_rate"][0] - bt.rate["fn_rate"][1:].mean())
    sel = _selection(ds.num_images, 8, 0.5)
    sub = property_performance(tables, ev, "brightness", image_idx=sel, n_bins=5)
    ref = image_property_bins(brightness[sel], ev.per_image.iloc[sel], task="detection", prop="brightness", n_bins=5)
    assert sub.rate["fn_rate"].tolist() == ref.rate["fn_rate"].tolist()
    assert [m.tolist() for m in sub.image_idx] == [sel[m].tolist() for m in ref.image_idx]
    assert sub.overall == bt.overall  # the reference line stays the run's


def test_object_property_bins_by_hand():
    ds = detection_dataset(4, n_images=120)
    tables, ev, _ = run_tables(ds)
    bt = property_performance(tables, ev, "relative_area", n_bins=4)
    obj = objects_frame(ev)
    m = len(ds.gt)
    area = tables.objects["relative_area"].to_numpy()
    gt = obj.iloc[:m].assign(v=area[:m])
    gt = gt[gt["outcome"] != "crowd"]
    for b in range(len(bt.count)):
        lo, hi = bt.edges[b], bt.edges[b + 1]
        inside = (gt["v"] >= lo) & ((gt["v"] < hi) | ((b == len(bt.count) - 1) & (gt["v"] <= hi)))
        assert bt.count[b] == inside.sum()
        assert bt.rate["fn_rate"][b] == pytest.approx(gt[inside]["outcome"].isin(["fn", "confused"]).mean())
    with pytest.raises(ConfigError, match="object property"):
        property_performance(*run_tables(classification_dataset(0))[:2], "relative_area")
    with pytest.raises(ConfigError, match="unknown image property"):
        property_performance(tables, ev, "no_such_column")


def test_misaligned_tables_are_refused():
    ds = detection_dataset(0)
    tables, _, _ = run_tables(ds)
    other = evaluate(ds.subset(np.arange(10)))
    with pytest.raises(ValidationError, match="images"):
        property_performance(tables, other, "brightness")


@pytest.mark.parametrize(("side", "prop"), [("low", "brightness"), ("high", "sharpness")])
def test_describe_finds_the_trait_of_a_planted_set(side, prop):
    rng = np.random.default_rng(5)
    ds = detection_dataset(5, n_images=300)
    n = ds.num_images
    values = rng.uniform(0.1, 0.9, n)
    members = np.zeros(n, bool)
    members[:25] = True  # fewer than a decile (30), so all of them fit in it
    values[:25] = rng.uniform(0, 0.05, 25) if side == "low" else rng.uniform(0.95, 1, 25)
    tables, ev, _ = run_tables(ds, props={prop: values})
    d = describe_images(tables, ev, members)
    assert d.traits and (d.traits[0].prop, d.traits[0].side, d.traits[0].level) == (prop, side, "image")
    assert d.traits[0].share == 1.0 and d.image_idx.tolist() == list(range(25))
    random_set = describe_images(tables, ev, rng.permutation(n)[:40])
    assert not [t for t in random_set.image_traits() if t.prop in ("brightness", "sharpness", "contrast")]
