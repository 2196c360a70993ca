"""The model-quality tabs (metrics vs confidence, by class, by property, recommendations) on a bare Document.

On a bare Document every update runs synchronously, so after a widget change or
a controller call the sources can be compared with the analysis engine
(:mod:`vecexplore.analysis.quality`) and, where it is cheap, with brute force
over the evaluation at another operating point.
"""

from __future__ import annotations

import html
import threading
import time

import numpy as np
import pytest
from conftest import RecordingDoc

pytest.importorskip("bokeh")

from bokeh.document import Document
from bokeh.events import ButtonClick, Tap

from vecexplore.analysis.quality import (
    class_performance,
    property_importance,
    property_performance,
    sweep_for,
)
from vecexplore.app import state as st
from vecexplore.app.dispatch import Dispatcher
from vecexplore.app.document import build_document
from vecexplore.app.metrics_panel import GRID, curve_columns
from vecexplore.app.quality_views import (
    TAB_CLASSES,
    TAB_CURVE,
    TAB_PROPERTY,
    TAB_RECS,
    TITLES,
    snap_confidence,
)

TASKS = ["detection", "classification"]
NAMES = ["curve", "curve-source", "curve-operating-point", "curve-optimal", "curve-scope", "curve-class",
         "curve-caption", "class-bars", "class-bars-source", "class-bars-segments", "class-bars-classes",
         "class-bars-caption", "property-bins", "property-source", "property-select", "property-caption",
         "property-importance", "importance-source", "recommendations", "recommendations-caption",
         "recommendations-refresh", "rec-0", "rec-select-0"]


@pytest.fixture
def data(request, det, cls):
    return det if request.param == "detection" else cls


def page(data, tab: int | None = None):
    doc = Document()
    ctl = build_document(doc, data, url_base="/vx/test")
    if tab is not None:
        ctl.tabs.active = tab
    return doc, ctl


def some_images(data, share=0.4, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(data.num_images, int(data.num_images * share), replace=False)).astype(np.int64)


def click(button) -> None:
    button._trigger_event(ButtonClick(button))


def bar_counts(ctl) -> dict[tuple[int, str], int]:
    src = ctl.quality.classes.source.data
    return {(int(k), str(kind)): int(c) for k, kind, c in zip(src["class_idx"], src["kind"], src["count"], strict=True)}


def expected_bars(cp, task) -> dict[tuple[int, str], int]:
    from vecexplore.app.class_panel import segments_of

    t = cp.table
    return {(k, kind): int(t[kind][k]) for k in range(len(t)) for kind, _, _ in segments_of(task) if t[kind][k] > 0}


def first_page(ctl, images) -> list[int]:
    page = st.gallery_page(np.asarray(images, np.int64), sort=ctl.state.sort, page=0,
                           error_rate=ctl.outcomes.error_rate, score=ctl._scores())
    return page.image_idx.tolist()


# ---------------------------------------------------------------- the page


@pytest.mark.parametrize("data", TASKS, indirect=True)
def test_quality_tabs_and_their_named_models(data):
    doc, ctl = page(data)
    assert [t.title for t in ctl.tabs.tabs] == ["Confusion matrix", "Failure clusters", *TITLES]
    rates = ["property-precision", "property-fn-rate"] if data.task == "detection" else ["property-accuracy"]
    for name in [*NAMES, *rates]:
        assert doc.get_model_by_name(name) is not None, name


# ---------------------------------------------------------------- metrics vs confidence


def _reference_grid(cp_at, grid_points, class_idx, task) -> dict[str, np.ndarray]:
    """P/R/F1 at each threshold by re-evaluating the run there (``cp_at(c)`` = class_performance at c)."""
    out = {"precision": [], "recall": [], "f1": []}
    for c in grid_points:
        t = cp_at(c).table
        rows = slice(None) if class_idx is None else [class_idx]
        if task == "detection":
            tp, fp, pos = (int(t[col].to_numpy()[rows].sum()) for col in ("tp", "fp", "n_gt"))
        else:
            tp, fp, pos = (int(t[col].to_numpy()[rows].sum()) for col in ("correct", "fp", "n"))
        fn = pos - tp
        out["precision"].append(tp / (tp + fp) if tp + fp else np.nan)
        out["recall"].append(tp / pos if pos else np.nan)
        out["f1"].append(2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else np.nan)
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize("data", TASKS, indirect=True)
@pytest.mark.parametrize("scope", ["selection", "run"])
@pytest.mark.parametrize("class_idx", [None, 1])
def test_curve_is_the_sweep_of_the_chosen_scope(data, scope, class_idx):
    doc, ctl = page(data, TAB_CURVE)
    sel = some_images(data)
    ctl.set_selection(sel)
    ctl.quality.metrics.scope.active = 0 if scope == "selection" else 1
    ctl.quality.metrics.klass.value = str(-1 if class_idx is None else class_idx)
    ev = ctl.evaluation
    if scope == "run":
        curve = ev.sweep.overall if class_idx is None else ev.sweep.per_class[class_idx]
    else:
        curve = sweep_for(ev, sel, class_idx=class_idx)
    src = doc.get_model_by_name("curve-source").data
    want = curve_columns(curve)
    for key in ("precision", "recall", "f1"):
        np.testing.assert_array_equal(src[key], want[key], err_msg=key)
    # differential: the same numbers from evaluating the run again at a few thresholds
    picks = [100, 300, 500, 700, 900]
    images = sel if scope == "selection" else None
    ref = _reference_grid(lambda c: class_performance(data.evaluation(iou=ctl.state.iou, confidence=c), images),
                          GRID[picks], class_idx, data.task)
    for key in ("precision", "recall", "f1"):
        np.testing.assert_allclose(np.asarray(src[key])[picks], ref[key], rtol=1e-6, equal_nan=True, err_msg=key)
    best, best_f1 = curve.optimal()
    opt = doc.get_model_by_name("curve-optimal").data
    assert list(opt["confidence"]) == [best] and list(opt["f1"]) == [best_f1]
    assert f"{best:.3f}" in ctl.quality.metrics.caption.text


@pytest.mark.parametrize("data", TASKS, indirect=True)
def test_slider_moves_the_operating_line_and_keeps_the_curve(data):
    doc, ctl = page(data, TAB_CURVE)
    before = {k: np.array(v) for k, v in ctl.quality.metrics.source.data.items()}
    events = []
    doc.callbacks.on_change(lambda e: events.append(e))
    for c in (0.2, 0.45, 0.7):
        events.clear()
        ctl.set_confidence(c)
        assert doc.get_model_by_name("curve-operating-point").location == c
        assert f"≥ <b>{c:.3f}</b>" in ctl.quality.metrics.caption.text
        touched = {getattr(getattr(e, "model", None), "name", None) for e in events}
        assert "curve-source" not in touched  # same IoU: the curve is not re-sent
    for k, v in ctl.quality.metrics.source.data.items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("data", TASKS, indirect=True)
def test_a_tap_on_the_curve_sets_the_confidence_everywhere(data):
    _, ctl = page(data, TAB_CURVE)
    fig = ctl.quality.metrics.figure
    fig._trigger_event(Tap(fig, x=0.3012, y=0.4))
    assert ctl.state.confidence == 0.3
    assert ctl.controls.confidence.value == 0.3
    assert ctl.quality.metrics.operating.location == 0.3
    np.testing.assert_array_equal(ctl.matrix.counts, data.evaluation(iou=ctl.state.iou, confidence=0.3).confusion.counts)
    best = ctl.quality.metrics.optimal.data["confidence"][0]
    fig._trigger_event(Tap(fig, x=best + 0.004, y=0.4))  # close to the optimum: exactly the optimum
    assert ctl.state.confidence == best and ctl.controls.confidence.value == best


@pytest.mark.parametrize(("x", "optimal", "want"), [
    (0.3012, np.nan, 0.3), (0.0024, np.nan, 0.0), (-0.2, np.nan, 0.0), (1.3, np.nan, 1.0), (0.5, 0.5071, 0.5071),
    (0.5, 0.52, 0.5), (0.9974, np.nan, 0.995)])
def test_snap_confidence(x, optimal, want):
    assert snap_confidence(x, step=0.005, optimal=optimal) == pytest.approx(want, abs=1e-12)


# ---------------------------------------------------------------- performance by class


@pytest.mark.parametrize("data", TASKS, indirect=True)
def test_class_bars_follow_slider_and_selection(data):
    _, ctl = page(data, TAB_CLASSES)
    assert bar_counts(ctl) == expected_bars(class_performance(ctl.evaluation), data.task)
    for c in (0.25, 0.6):
        ctl.set_confidence(c)
        ev = data.evaluation(iou=ctl.state.iou, confidence=c)
        assert bar_counts(ctl) == expected_bars(class_performance(ev), data.task)
    sel = some_images(data, 0.3, seed=1)
    ctl.set_selection(sel)
    assert bar_counts(ctl) == expected_bars(class_performance(ctl.evaluation, sel), data.task)
    if data.task == "detection":
        ctl.set_iou(0.75)
        ev = data.evaluation(iou=0.75, confidence=0.6)
        assert bar_counts(ctl) == expected_bars(class_performance(ev, sel), data.task)
    # segments stack left to right without gaps, in the displayed class order
    src = ctl.quality.classes.source.data
    for k in set(src["class_idx"].tolist()):
        rows = np.flatnonzero(src["class_idx"] == k)
        assert src["left"][rows[0]] == 0 and np.array_equal(src["left"][rows[1:]], src["right"][rows[:-1]])
        np.testing.assert_array_equal(src["right"][rows] - src["left"][rows], src["count"][rows])


def _brute_images(ev, class_idx: int, kind: str) -> np.ndarray:
    """Images behind a bar, straight from the evaluation's objects / per-image tables."""
    if ev.task == "detection":
        o = ev.objects
        if kind in ("tp", "misclassified", "missed"):
            outcome = {"tp": "tp", "misclassified": "confused", "missed": "fn"}[kind]
            hit = (o["kind"] == "gt") & (o["outcome"] == outcome)
        else:
            hit = (o["kind"] == "pred") & (o["outcome"] == kind)
        return np.unique(o["image_idx"][hit & (o["class_idx"] == class_idx)].to_numpy(np.int64))
    p = ev.per_image
    label, pred = p["label"].to_numpy(), p["prediction"].to_numpy()
    hit = {"correct": (label == class_idx) & (pred == class_idx),
           "misclassified": (label == class_idx) & (pred >= 0) & (pred != class_idx),
           "no_prediction": (label == class_idx) & (pred < 0),
           "fp": (pred == class_idx) & (label >= 0) & (label != class_idx)}[kind]
    return np.flatnonzero(hit)


@pytest.mark.parametrize("data", TASKS, indirect=True)
@pytest.mark.parametrize("with_selection", [False, True])
def test_clicking_a_segment_selects_exactly_its_images(data, with_selection):
    _, ctl = page(data, TAB_CLASSES)
    sel = some_images(data, 0.5, seed=2) if with_selection else None
    ctl.set_selection(sel)
    src = ctl.quality.classes.source.data
    kinds = list(dict.fromkeys(src["kind"].tolist()))
    assert len(kinds) >= 3
    for kind in kinds:
        ctl.set_selection(sel)
        src = ctl.quality.classes.source.data
        row = int(np.flatnonzero(src["kind"] == kind)[0])
        k = int(src["class_idx"][row])
        want = _brute_images(ctl.evaluation, k, kind)
        if sel is not None:
            want = np.intersect1d(want, sel)
        assert len(want) == len(class_performance(ctl.evaluation, sel).images_for(k, kind))
        ctl.quality.classes.source.selected.indices = [row]
        np.testing.assert_array_equal(ctl.selection, want)
        assert ctl.gallery.source.data["image_idx"].tolist() == first_page(ctl, want)
        # the bars now show the new selection, and no segment stays highlighted
        assert bar_counts(ctl) == expected_bars(class_performance(ctl.evaluation, want), data.task)
        assert list(ctl.quality.classes.source.selected.indices) == []


@pytest.mark.parametrize("data", TASKS, indirect=True)
def test_class_multiselect_limits_the_bars(data):
    _, ctl = page(data, TAB_CLASSES)
    ctl.quality.classes.classes.value = ["2", "0"]
    assert ctl.state.bar_classes == (0, 2)
    assert set(ctl.quality.classes.source.data["class_idx"].tolist()) == {0, 2}
    cp = class_performance(ctl.evaluation)
    from vecexplore.app.class_panel import error_counts

    errors = error_counts(cp.table, data.task)
    top = 0 if errors[0] >= errors[2] else 2
    assert ctl.quality.classes.figure.y_range.factors[-1] == data.class_names[top]  # most errors on top
    ctl.quality.classes.classes.value = []
    assert set(ctl.quality.classes.source.data["class_idx"].tolist()) == set(range(len(data.class_names)))


# ---------------------------------------------------------------- performance by property


@pytest.mark.parametrize(("task", "prop"), [("detection", "brightness"), ("detection", "relative_area"),
                                            ("detection", "n_objects"), ("classification", "sharpness")])
@pytest.mark.parametrize("with_selection", [False, True])
def test_property_bins_match_the_engine_and_a_click_selects_a_bin(det, cls, task, prop, with_selection):
    data = det if task == "detection" else cls
    _, ctl = page(data, TAB_PROPERTY)
    sel = some_images(data, 0.5, seed=3) if with_selection else None
    ctl.set_selection(sel)
    ctl.quality.props.select.value = prop
    assert (ctl.state.prop or ctl.quality.default_prop) == prop
    bt = property_performance(data.run, ctl.evaluation, prop, image_idx=sel)
    src = ctl.quality.props.source.data
    assert src["label"].tolist() == bt.labels()
    np.testing.assert_array_equal(src["count"], bt.count)
    for name, rate in bt.rate.items():
        np.testing.assert_array_equal(src[name], rate)
        assert ctl.quality.props.overall[name].location == pytest.approx(bt.overall[name])
    k = int(np.argmax(bt.count))
    ctl.quality.props.source.selected.indices = [k]
    np.testing.assert_array_equal(ctl.selection, bt.image_idx[k])
    assert ctl.gallery.source.data["image_idx"].tolist() == first_page(ctl, bt.image_idx[k])
    # bins of the new selection
    again = property_performance(data.run, ctl.evaluation, prop, image_idx=bt.image_idx[k])
    np.testing.assert_array_equal(ctl.quality.props.source.data["count"], again.count)


@pytest.mark.parametrize("data", TASKS, indirect=True)
def test_importance_is_the_engines_ranking_and_a_row_shows_its_property(data):
    _, ctl = page(data, TAB_PROPERTY)
    imp = property_importance(data.run, ctl.evaluation)
    src = ctl.quality.props.importance_source.data
    assert src["prop"].tolist() == [i.prop for i in imp]
    np.testing.assert_array_equal(src["mi"], [i.mutual_information for i in imp])
    np.testing.assert_array_equal(src["spearman"], [i.spearman for i in imp])
    sel = some_images(data, 0.5, seed=4)
    ctl.set_selection(sel)
    imp = property_importance(data.run, ctl.evaluation, image_idx=sel)
    assert ctl.quality.props.importance_source.data["prop"].tolist() == [i.prop for i in imp]
    shown = ctl.quality.props.select.value
    assert ctl.quality.props.importance_source.selected.indices == [[i.prop for i in imp].index(shown)]
    row = next(r for r in range(1, len(imp)) if imp[r].prop != shown)
    ctl.quality.props.importance_source.selected.indices = [row]
    assert ctl.state.prop == imp[row].prop == ctl.quality.props.select.value
    bt = property_performance(data.run, ctl.evaluation, imp[row].prop, image_idx=sel)
    np.testing.assert_array_equal(ctl.quality.props.source.data["count"], bt.count)


# ---------------------------------------------------------------- recommendations


@pytest.mark.parametrize("data", TASKS, indirect=True)
def test_a_recommendation_button_selects_its_images(data):
    doc, ctl = page(data, TAB_RECS)
    recs = data.run.json("recommendations.json")
    assert recs, "the demo run has recommendations"
    for i, rec in enumerate(recs[:12]):
        assert html.escape(rec["title"]) in doc.get_model_by_name(f"rec-{i}").text
        n = len(rec["selection"]["image_idx"])
        assert doc.get_model_by_name(f"rec-select-{i}").label.startswith(f"Select {n:,} image")
    for i in range(min(3, len(recs))):
        click(doc.get_model_by_name(f"rec-select-{i}"))
        want = np.asarray(recs[i]["selection"]["image_idx"], np.int64)
        np.testing.assert_array_equal(ctl.selection, want)
        assert ctl.gallery.source.data["image_idx"].tolist() == first_page(ctl, want)
        if recs[i]["kind"] == "cluster":
            assert ctl.state.pick_how == f"cluster {recs[i]['selection']['cluster']}"
    assert "current operating point" in ctl.quality.recs.caption.text and ctl.quality.recs.refresh.disabled


@pytest.mark.parametrize("data", TASKS, indirect=True)
def test_recommendations_recompute_at_another_operating_point(data):
    from vecexplore.analysis.recommend import recommend
    from vecexplore.mapping.slices import slice_table

    doc, ctl = page(data, TAB_RECS)
    ctl.set_confidence(0.3)
    assert "may differ" in ctl.quality.recs.caption.text and not ctl.quality.recs.refresh.disabled
    click(ctl.quality.recs.refresh)
    ev = data.evaluation(iou=ctl.state.iou, confidence=0.3)
    clusters = slice_table(ev.per_image, data.images.cluster, task=data.task, class_names=list(data.class_names))
    want = recommend(data.run, ev, clusters=clusters)
    shown = [doc.get_model_by_name(f"rec-{i}") for i in range(len(want))]
    assert [html.escape(r.title) in d.text for r, d in zip(want, shown, strict=True)] == [True] * len(want)
    assert "current operating point" in ctl.quality.recs.caption.text and ctl.quality.recs.refresh.disabled
    click(doc.get_model_by_name("rec-select-0"))
    np.testing.assert_array_equal(ctl.selection, want[0].image_idx)


# ---------------------------------------------------------------- filters, tabs, threading


@pytest.mark.parametrize("data", TASKS, indirect=True)
@pytest.mark.parametrize("how", ["split", "class"])
def test_every_panel_respects_the_filters(data, how):
    doc, ctl = page(data)
    if how == "split":
        assert "test" in data.images.splits
        ctl.set_filters(splits=["test"])
        universe = np.flatnonzero(data.images.split == "test")
    else:
        ctl.set_filters(classes=[1])
        universe = np.flatnonzero(st.class_mask([1], data.num_images, *ctl._class_pairs()))
    np.testing.assert_array_equal(ctl.selection, universe)
    ev = ctl.evaluation
    ctl.tabs.active = TAB_CURVE
    np.testing.assert_array_equal(ctl.quality.metrics.source.data["f1"], curve_columns(sweep_for(ev, universe))["f1"])
    ctl.tabs.active = TAB_CLASSES
    assert bar_counts(ctl) == expected_bars(class_performance(ev, universe), data.task)
    ctl.tabs.active = TAB_PROPERTY
    prop = ctl.quality.props.select.value
    bt = property_performance(data.run, ev, prop, image_idx=universe)
    np.testing.assert_array_equal(ctl.quality.props.source.data["count"], bt.count)
    imp = property_importance(data.run, ev, image_idx=universe)
    assert ctl.quality.props.importance_source.data["prop"].tolist() == [i.prop for i in imp]
    ctl.tabs.active = TAB_RECS
    click(doc.get_model_by_name("rec-select-0"))
    rec = data.run.json("recommendations.json")[0]
    np.testing.assert_array_equal(ctl.selection, np.intersect1d(rec["selection"]["image_idx"], universe))


@pytest.mark.parametrize("data", TASKS, indirect=True)
def test_hidden_tabs_are_not_computed_until_shown(data):
    doc, ctl = page(data)
    events = []
    doc.callbacks.on_change(lambda e: events.append(e))
    sel = some_images(data, 0.3, seed=5)
    ctl.set_confidence(0.35)
    ctl.set_selection(sel)
    touched = {getattr(getattr(e, "model", None), "name", None) for e in events}
    assert not touched & {"class-bars-source", "property-source", "importance-source", "curve-source"}
    assert doc.get_model_by_name("curve-operating-point").location == 0.35  # the line always moves
    ctl.tabs.active = TAB_CLASSES
    assert bar_counts(ctl) == expected_bars(class_performance(ctl.evaluation, sel), data.task)
    ctl.tabs.active = TAB_CURVE
    np.testing.assert_array_equal(ctl.quality.metrics.source.data["f1"], curve_columns(sweep_for(ctl.evaluation, sel))["f1"])


def test_low_priority_jobs_wait_for_every_ordinary_one():
    doc = RecordingDoc()
    d = Dispatcher(doc, sync=False)
    gate = threading.Event()
    ran = []

    def job(tag, wait=False):
        def run():
            if wait:
                gate.wait(5)
            ran.append(tag)
        return run

    d.submit("slider", job("s0", wait=True))
    time.sleep(0.05)
    d.submit("importance", job("i1"), low=True)
    d.submit("slider", job("s1"))
    d.submit("importance", job("i2"), low=True)  # replaces i1
    d.submit("pick", job("p"))
    gate.set()
    deadline = time.time() + 5
    while len(ran) < 4 and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert ran == ["s0", "s1", "p", "i2"]


@pytest.mark.parametrize("data", TASKS, indirect=True)
def test_an_empty_selection_leaves_every_tab_empty_not_broken(data):
    _, ctl = page(data)
    ctl.set_filters(splits=["no-such-split"])
    assert ctl.selection is not None and len(ctl.selection) == 0
    for tab in (TAB_CURVE, TAB_CLASSES, TAB_PROPERTY, TAB_RECS):
        ctl.tabs.active = tab
    assert np.isnan(ctl.quality.metrics.source.data["precision"]).all()
    assert ctl.quality.metrics.optimal.data["confidence"] == []
    assert len(ctl.quality.classes.source.data["count"]) == 0
    assert len(ctl.quality.props.source.data["count"]) == 0
    assert "Selection (0 images)" in ctl.quality.props.caption.text
    assert len(ctl.quality.props.importance_source.data["prop"]) > 0  # every property, with no relation found
    assert set(ctl.quality.props.importance_source.data["mi"]) == {0.0}
