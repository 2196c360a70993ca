"""The model-quality tabs (metrics vs confidence, by class, by property, recommendations) on a bare Document.

On a bare Document every update runs synchronously, so after a widget change, a
click (a Tap event) or a session call the sources can be compared with the analysis engine
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
from vecexplore.app.views.curve import GRID, curve_columns, snap_confidence

TASKS = ["detection", "classification"]
#: The tabs these tests show, by view name.
TAB_CURVE, TAB_CLASSES, TAB_PROPERTY, TAB_RECS = "curve", "class-bars", "property-bins", "recommendations"
TITLES = {"detection": ["Confusion", "Per class", "Clusters", "PR curves", "Threshold", "Class errors", "Properties",
                        "Findings"],
          "classification": ["Confusion", "Per class", "Clusters", "Calibration", "Threshold", "Class errors",
                             "Properties", "Findings"]}


def show_tab(doc, s, name: str) -> None:
    """Show the tab of view ``name`` (what a click on its title does)."""
    doc.get_model_by_name("tabs").active = [v.name for v in s.tab_views].index(name)
NAMES = ["curve", "curve-source", "curve-operating-point", "curve-optimal", "curve-scope", "curve-class",
         "curve-caption", "class-bars", "class-bars-source", "class-bars-segments", "class-bars-classes",
         "class-bars-caption", "property-bins", "property-source", "property-select", "property-caption",
         "property-importance", "importance-source", "recommendations", "recommendations-caption",
         "recommendations-refresh", "rec-0", "rec-select-0"]


@pytest.fixture
def data(request, det, cls):
    return det if request.param == "detection" else cls


class Views:
    def __init__(self, session):
        self._s = session

    def __getattr__(self, name):
        return self._s.view(name.replace("_", "-"))


def page(data, tab: str | None = None):
    doc = Document()
    s = build_document(doc, data, url_base="/vx/test")
    if tab is not None:
        show_tab(doc, s, tab)
    return doc, s, Views(s)


def tap(figure, x: float, y: float, shift: bool = False) -> None:
    figure._trigger_event(Tap(figure, sx=0, sy=0, x=float(x), y=float(y),
                              modifiers={"shift": shift, "ctrl": False, "alt": False}))


def tap_segment(v, row: int) -> None:
    """Click the middle of class-bar segment ``row`` (a row of its source)."""
    _c, _k, lo, hi, yi = v.class_bars._rows[row]
    tap(v.class_bars.figure, (lo + hi) / 2, yi + 0.5)


def some_images(data, share=0.4, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(data.num_images, int(data.num_images * share), replace=False)).astype(np.int64)


def click(button) -> None:
    button._trigger_event(ButtonClick(button))


def bar_counts(v) -> dict[tuple[int, str], int]:
    src = v.class_bars.source.data
    return {(int(k), str(kind)): int(c) for k, kind, c in zip(src["class_idx"], src["kind"], src["count"], strict=True)}


def expected_bars(cp, task) -> dict[tuple[int, str], int]:
    from vecexplore.app.views.class_bars import segments_of

    t = cp.table
    return {(k, kind): int(t[kind][k]) for k in range(len(t)) for kind, _, _ in segments_of(task) if t[kind][k] > 0}


def first_page(s, images) -> list[int]:
    page = st.gallery_page(np.asarray(images, np.int64), sort=s.state.sort, page=0,
                           error_rate=s.derived.outcomes.error_rate, score=s.derived.scores, per_page=s.state.per_page)
    return page.image_idx.tolist()


# ---------------------------------------------------------------- the page


@pytest.mark.parametrize("data", TASKS, indirect=True)
def test_quality_tabs_and_their_named_models(data):
    doc, _s, _v = page(data)
    assert [t.title for t in doc.get_model_by_name("tabs").tabs] == [*TITLES[data.task], "Label errors", "Dups", "Query"]
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
    doc, s, v = page(data, TAB_CURVE)
    sel = some_images(data)
    s.select(sel)
    v.curve.scope.active = 0 if scope == "selection" else 1
    v.curve.klass.value = str(-1 if class_idx is None else class_idx)
    ev = s.derived.evaluation
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
    ref = _reference_grid(lambda c: class_performance(data.evaluation(iou=s.state.iou, confidence=c), images),
                          GRID[picks], class_idx, data.task)
    for key in ("precision", "recall", "f1"):
        np.testing.assert_allclose(np.asarray(src[key])[picks], ref[key], rtol=1e-6, equal_nan=True, err_msg=key)
    best, best_f1 = curve.optimal()
    opt = doc.get_model_by_name("curve-optimal").data
    assert list(opt["confidence"]) == [best] and list(opt["f1"]) == [best_f1]
    assert f"{best:.3f}" in v.curve.caption.text


@pytest.mark.parametrize("data", TASKS, indirect=True)
def test_slider_moves_the_operating_line_and_keeps_the_curve(data):
    doc, s, v = page(data, TAB_CURVE)
    before = {k: np.array(x) for k, x in v.curve.source.data.items()}
    events = []
    doc.callbacks.on_change(lambda e: events.append(e))
    for c in (0.2, 0.45, 0.7):
        events.clear()
        s.set_confidence(c)
        assert doc.get_model_by_name("curve-operating-point").location == c
        assert f"≥ {c:.3f}" in v.curve.caption.text
        touched = {getattr(getattr(e, "model", None), "name", None) for e in events}
        assert "curve-source" not in touched  # same IoU: the curve is not re-sent
    for k, x in v.curve.source.data.items():
        np.testing.assert_array_equal(x, before[k])


@pytest.mark.parametrize("data", TASKS, indirect=True)
def test_a_tap_on_the_curve_sets_the_confidence_everywhere(data):
    doc, s, v = page(data, TAB_CURVE)
    tap(v.curve.figure, 0.3012, 0.4)
    assert s.state.confidence == 0.3
    assert v.controls.confidence.value == 0.3
    assert v.curve.operating.location == 0.3
    show_tab(doc, s, "confusion")
    want = data.evaluation(iou=s.state.iou, confidence=0.3).confusion.counts
    np.testing.assert_array_equal(v.confusion.source.data["count"], want.ravel())
    show_tab(doc, s, TAB_CURVE)
    best = v.curve.optimal.data["confidence"][0]
    tap(v.curve.figure, best + 0.004, 0.4)  # close to the optimum: exactly the optimum
    assert s.state.confidence == best and v.controls.confidence.value == best


@pytest.mark.parametrize(("x", "optimal", "want"), [
    (0.3012, np.nan, 0.3), (0.0024, np.nan, 0.0), (-0.2, np.nan, 0.0), (1.3, np.nan, 1.0), (0.5, 0.5071, 0.5071),
    (0.5, 0.52, 0.5), (0.9974, np.nan, 0.995)])
def test_snap_confidence(x, optimal, want):
    assert snap_confidence(x, step=0.005, optimal=optimal) == pytest.approx(want, abs=1e-12)


# ---------------------------------------------------------------- performance by class


@pytest.mark.parametrize("data", TASKS, indirect=True)
def test_class_bars_follow_slider_and_selection(data):
    _, s, v = page(data, TAB_CLASSES)
    assert bar_counts(v) == expected_bars(class_performance(s.derived.evaluation), data.task)
    for c in (0.25, 0.6):
        s.set_confidence(c)
        ev = data.evaluation(iou=s.state.iou, confidence=c)
        assert bar_counts(v) == expected_bars(class_performance(ev), data.task)
    sel = some_images(data, 0.3, seed=1)
    s.select(sel)
    assert bar_counts(v) == expected_bars(class_performance(s.derived.evaluation, sel), data.task)
    if data.task == "detection":
        s.set_iou(0.75)
        ev = data.evaluation(iou=0.75, confidence=0.6)
        assert bar_counts(v) == expected_bars(class_performance(ev, sel), data.task)
    # segments stack left to right without gaps, in the displayed class order
    src = v.class_bars.source.data
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
def test_clicking_a_segment_selects_its_images_over_the_whole_run(data, with_selection):
    _, s, v = page(data, TAB_CLASSES)
    sel = some_images(data, 0.5, seed=2) if with_selection else None
    if sel is not None:
        s.select(sel)
    src = v.class_bars.source.data
    kinds = list(dict.fromkeys(src["kind"].tolist()))  # the segments drawn for the selection
    assert len(kinds) >= 3
    for kind in kinds:
        if sel is None:
            s.clear()
        else:
            s.select(sel)
        src = v.class_bars.source.data
        row = int(np.flatnonzero(src["kind"] == kind)[0])
        k = int(src["class_idx"][row])
        want = _brute_images(s.derived.evaluation, k, kind)  # the whole run's, whatever was selected
        tap_segment(v, row)
        np.testing.assert_array_equal(s.selection, want)
        assert v.gallery.source.data["image_idx"].tolist() == first_page(s, want)
        # the bars now show the new selection, and the clicked segment stays outlined
        assert bar_counts(v) == expected_bars(class_performance(s.derived.evaluation, want), data.task)
        src = v.class_bars.source.data
        marked = [int(r) for r in v.class_bars.source.selected.indices]
        assert [(int(src["class_idx"][r]), str(src["kind"][r])) for r in marked] == [(k, kind)]
    tap(v.class_bars.figure, -100.0, 0.5)  # off every bar: nothing happens
    np.testing.assert_array_equal(s.selection, want)


@pytest.mark.parametrize("data", TASKS, indirect=True)
def test_class_multiselect_limits_the_bars(data):
    _, s, v = page(data, TAB_CLASSES)
    v.class_bars.classes.value = ["2", "0"]
    assert s.state.bar_classes == (0, 2)
    assert set(v.class_bars.source.data["class_idx"].tolist()) == {0, 2}
    cp = class_performance(s.derived.evaluation)
    from vecexplore.app.views.class_bars import error_counts

    errors = error_counts(cp.table, data.task)
    top = 0 if errors[0] >= errors[2] else 2
    assert v.class_bars.figure.y_range.factors[-1] == data.class_names[top]  # most errors on top
    v.class_bars.classes.value = []
    assert set(v.class_bars.source.data["class_idx"].tolist()) == set(range(len(data.class_names)))


# ---------------------------------------------------------------- performance by property


@pytest.mark.parametrize(("task", "prop"), [("detection", "brightness"), ("detection", "relative_area"),
                                            ("detection", "n_objects"), ("classification", "sharpness")])
@pytest.mark.parametrize("with_selection", [False, True])
def test_property_bins_match_the_engine_and_a_click_selects_a_bin(det, cls, task, prop, with_selection):
    data = det if task == "detection" else cls
    _, s, v = page(data, TAB_PROPERTY)
    sel = some_images(data, 0.5, seed=3) if with_selection else None
    if sel is not None:
        s.select(sel)
    v.property_bins.select.value = prop
    assert (s.state.prop or v.property_bins.default) == prop
    bt = property_performance(data.run, s.derived.evaluation, prop, image_idx=sel)
    src = v.property_bins.source.data
    assert src["label"].tolist() == bt.labels()
    assert all("e-" not in str(label) and "e+" not in str(label) for label in src["label"])  # no scientific notation
    np.testing.assert_array_equal(src["count"], bt.count)
    assert [str(x) for x in src["shown"]] == ["n/a" if c == 0 else "" for c in bt.count]
    for name, rate in bt.rate.items():
        np.testing.assert_array_equal(src[name], rate)
        assert v.property_bins.overall[name].location == pytest.approx(bt.overall[name])
    k = int(np.argmax(bt.count))
    tap(v.property_bins.figure, k + 0.1, 0.5)
    # the bin's value range over the whole run (its images there), not only the selection's
    want = property_performance(data.run, s.derived.evaluation, prop, edges=bt.edges).image_idx[k]
    np.testing.assert_array_equal(s.selection, want)
    if sel is None:
        np.testing.assert_array_equal(want, bt.image_idx[k])
    else:
        assert set(bt.image_idx[k].tolist()) <= set(want.tolist())
    assert v.gallery.source.data["image_idx"].tolist() == first_page(s, want)
    # bins of the new selection
    again = property_performance(data.run, s.derived.evaluation, prop, image_idx=want)
    np.testing.assert_array_equal(v.property_bins.source.data["count"], again.count)


@pytest.mark.parametrize("data", TASKS, indirect=True)
def test_importance_is_the_engines_ranking_and_a_row_shows_its_property(data):
    _, s, v = page(data, TAB_PROPERTY)
    imp = property_importance(data.run, s.derived.evaluation)
    src = v.property_bins.importance_source.data
    assert src["prop"].tolist() == [i.prop for i in imp]
    np.testing.assert_array_equal(src["mi"], [i.mutual_information for i in imp])
    np.testing.assert_array_equal(src["spearman"], [i.spearman for i in imp])
    for i, row in zip(imp, src["direction"], strict=True):  # no information, no direction
        assert (row == "no clear direction") == (i.direction == "none")
        if not i.mutual_information > 0:
            assert row == "no clear direction"
    sel = some_images(data, 0.5, seed=4)
    s.select(sel)
    imp = property_importance(data.run, s.derived.evaluation, image_idx=sel)
    assert v.property_bins.importance_source.data["prop"].tolist() == [i.prop for i in imp]
    shown = v.property_bins.select.value
    assert v.property_bins.importance_source.selected.indices == [[i.prop for i in imp].index(shown)]
    row = next(r for r in range(1, len(imp)) if imp[r].prop != shown)
    v.property_bins.importance_source.selected.indices = [row]
    assert s.state.prop == imp[row].prop == v.property_bins.select.value
    bt = property_performance(data.run, s.derived.evaluation, imp[row].prop, image_idx=sel)
    np.testing.assert_array_equal(v.property_bins.source.data["count"], bt.count)


# ---------------------------------------------------------------- recommendations


@pytest.mark.parametrize("data", TASKS, indirect=True)
def test_a_recommendation_button_selects_its_images(data):
    doc, s, v = page(data, TAB_RECS)
    recs = data.run.json("recommendations.json")
    assert recs, "the demo run has recommendations"
    for i, rec in enumerate(recs[:12]):
        assert html.escape(rec["title"]) in doc.get_model_by_name(f"rec-{i}").text
        n = len(rec["selection"]["image_idx"])
        assert doc.get_model_by_name(f"rec-select-{i}").label.startswith(f"Select {n:,} image")
    for i in range(min(3, len(recs))):
        click(doc.get_model_by_name(f"rec-select-{i}"))
        want = np.asarray(recs[i]["selection"]["image_idx"], np.int64)
        np.testing.assert_array_equal(s.selection, want)
        assert v.gallery.source.data["image_idx"].tolist() == first_page(s, want)
        assert doc.get_model_by_name(f"rec-select-{i}").label == "Selected"
        if recs[i]["kind"] == "cluster":
            assert s.state.pick_how == f"cluster {recs[i]['selection']['cluster']}"
    assert "current operating point" in v.recommendations.caption.text and v.recommendations.refresh.disabled


@pytest.mark.parametrize("data", TASKS, indirect=True)
def test_recommendations_recompute_at_another_operating_point(data):
    from vecexplore.analysis.recommend import recommend
    from vecexplore.mapping.slices import slice_table

    doc, s, v = page(data, TAB_RECS)
    s.set_confidence(0.3)
    assert "may differ" in v.recommendations.caption.text and not v.recommendations.refresh.disabled
    click(v.recommendations.refresh)
    ev = data.evaluation(iou=s.state.iou, confidence=0.3)
    clusters = slice_table(ev.per_image, data.images.cluster, task=data.task, class_names=list(data.class_names))
    want = recommend(data.run, ev, clusters=clusters)
    shown = [doc.get_model_by_name(f"rec-{i}") for i in range(len(want))]
    assert [html.escape(r.title) in d.text for r, d in zip(want, shown, strict=True)] == [True] * len(want)
    assert "current operating point" in v.recommendations.caption.text and v.recommendations.refresh.disabled
    click(doc.get_model_by_name("rec-select-0"))
    np.testing.assert_array_equal(s.selection, want[0].image_idx)


# ---------------------------------------------------------------- filters, tabs, threading


@pytest.mark.parametrize("data", TASKS, indirect=True)
@pytest.mark.parametrize("how", ["split", "class"])
def test_every_panel_respects_the_filters(data, how):
    from vecexplore.app.events import SetFilters

    doc, s, v = page(data)
    if how == "split":
        assert "test" in data.images.splits
        s.emit(SetFilters(splits=("test",)))
        universe = np.flatnonzero(data.images.split == "test")
    else:
        s.emit(SetFilters(classes=(1,)))
        universe = np.flatnonzero(st.class_mask([1], data.num_images, *s.derived.class_pairs()))
    np.testing.assert_array_equal(s.selection, universe)
    ev = s.derived.evaluation
    show_tab(doc, s, TAB_CURVE)
    np.testing.assert_array_equal(v.curve.source.data["f1"], curve_columns(sweep_for(ev, universe))["f1"])
    show_tab(doc, s, TAB_CLASSES)
    assert bar_counts(v) == expected_bars(class_performance(ev, universe), data.task)
    show_tab(doc, s, TAB_PROPERTY)
    prop = v.property_bins.select.value
    bt = property_performance(data.run, ev, prop, image_idx=universe)
    np.testing.assert_array_equal(v.property_bins.source.data["count"], bt.count)
    imp = property_importance(data.run, ev, image_idx=universe)
    assert v.property_bins.importance_source.data["prop"].tolist() == [i.prop for i in imp]
    show_tab(doc, s, TAB_RECS)
    click(doc.get_model_by_name("rec-select-0"))
    rec = data.run.json("recommendations.json")[0]
    np.testing.assert_array_equal(s.selection, np.intersect1d(rec["selection"]["image_idx"], universe))


@pytest.mark.parametrize("data", TASKS, indirect=True)
def test_hidden_tabs_are_not_computed_until_shown(data):
    doc, s, v = page(data)
    events = []
    doc.callbacks.on_change(lambda e: events.append(e))
    sel = some_images(data, 0.3, seed=5)
    s.set_confidence(0.35)
    s.select(sel)
    touched = {getattr(getattr(e, "model", None), "name", None) for e in events}
    assert not touched & {"class-bars-source", "property-source", "importance-source", "curve-source"}
    show_tab(doc, s, TAB_CLASSES)
    assert bar_counts(v) == expected_bars(class_performance(s.derived.evaluation, sel), data.task)
    show_tab(doc, s, TAB_CURVE)
    assert doc.get_model_by_name("curve-operating-point").location == 0.35
    np.testing.assert_array_equal(v.curve.source.data["f1"], curve_columns(sweep_for(s.derived.evaluation, sel))["f1"])


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
    from vecexplore.app.events import SetFilters

    doc, s, v = page(data)
    s.emit(SetFilters(splits=("no-such-split",)))
    assert s.selection is not None and len(s.selection) == 0
    for tab in (TAB_CURVE, TAB_CLASSES, TAB_PROPERTY, TAB_RECS):
        show_tab(doc, s, tab)
    assert np.isnan(v.curve.source.data["precision"]).all()
    assert v.curve.optimal.data["confidence"] == []
    assert len(v.class_bars.source.data["count"]) == 0
    assert len(v.property_bins.source.data["count"]) == 0
    assert "Selection (0 images)" in v.property_bins.caption.text
    assert len(v.property_bins.importance_source.data["prop"]) > 0  # every property, with no relation found
    assert set(v.property_bins.importance_source.data["mi"]) == {0.0}
