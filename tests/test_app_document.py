"""build_document on a bare bokeh Document with the session's demo runs.

On a bare Document the controller runs every update synchronously, so a widget
change (``slider.value = ...``) or a controller call updates the sources before
the next line; the tests then compare the sources with the evaluation engine.
"""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest
from conftest import RecordingDoc

pytest.importorskip("bokeh")

from bokeh.document import Document
from bokeh.document.events import ColumnDataChangedEvent, ModelChangedEvent

from vecexplore.app import state as st
from vecexplore.app.data import load_run_data
from vecexplore.app.dispatch import Dispatcher
from vecexplore.app.document import build_document
from vecexplore.eval.evaluate import evaluate

NAMES = ["header", "scatter", "scatter-source", "confusion", "confusion-source", "matrix-mode", "matrix-scope",
         "clusters", "clusters-source", "gallery", "gallery-source", "gallery-sort", "gallery-prev", "gallery-next",
         "detail", "detail-image", "detail-gt", "detail-pred", "detail-toggles", "detail-info", "confidence", "iou",
         "class-filter", "split-filter", "colour-by", "clear-selection", "export-format", "export-button",
         "export-status", "export-url", "tabs"]


def page(data):
    doc = Document()
    return doc, build_document(doc, data, url_base="/vx/test")


def selection_row(ctl) -> list[str]:
    """The header's "Selection" row cells, as displayed."""
    row = ctl.header.div.text.split("<tr class='vx-sel'>")[1].split("</tr>")[0]
    return re.findall(r"<td[^>]*>(.*?)</td>", row)[1:]


def run_row(ctl) -> list[str]:
    row = ctl.header.div.text.split("<td class='vx-rowname'>Whole run</td>")[1].split("</tr>")[0]
    return re.findall(r"<td[^>]*>(.*?)</td>", row)


def click(button) -> None:
    """What a browser click on a Button does on the server."""
    from bokeh.events import ButtonClick

    button._trigger_event(ButtonClick(button))


def shown(ctl, values: dict, task="detection") -> list[str]:
    """What metric_rows prints for ``values`` in the run column."""
    from vecexplore.app.header import metric_rows

    return [r[1] for r in metric_rows(task, values, None, ctl.data.coco)]


# ---------------------------------------------------------------- loading


def test_run_data_is_loaded_once_and_read_only(det, demo_run):
    assert load_run_data(demo_run[0]) is det
    assert det.num_images == len(det.run.images) == len(det.images)
    for name in ("x", "y", "cluster", "image_id", "readable", "gt_class", "max_score"):
        assert not getattr(det.images, name).flags.writeable
    ids = det.images.image_id
    for i in (0, 7, det.num_images - 1):
        assert det.index_of_image_id(int(ids[i])) == i
        assert det.image_path(i).exists()
    assert det.index_of_image_id(int(ids.max()) + 1) == -1 and det.index_of_image_id("x") == -1


def test_a_new_iou_is_matched_once_for_all_threads(det):
    got = []
    threads = [threading.Thread(target=lambda: got.append(det.evaluation(iou=0.65, confidence=0.3)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(ev.matching) for ev in got}) == 1
    assert got[0].iou == 0.65 and got[0].confidence == 0.3


# ---------------------------------------------------------------- the page


@pytest.mark.parametrize("task", ["detection", "classification"])
def test_page_has_every_named_model_and_one_scatter_row_per_image(task, det, cls):
    data = det if task == "detection" else cls
    doc, ctl = page(data)
    for name in NAMES:
        assert doc.get_model_by_name(name) is not None, name
    src = doc.get_model_by_name("scatter-source").data
    assert len(src["x"]) == data.num_images
    np.testing.assert_array_equal(src["x"], data.run.images["x"].to_numpy(np.float32))
    for col in ("x", "y", "c", "o", "image_id"):
        assert isinstance(src[col], np.ndarray), col
    assert ctl.selection is None and len(ctl.scatter.source.selected.indices) == 0
    assert ctl.state.confidence == data.base.confidence
    assert len(ctl.gallery.source.data["image_idx"]) == min(st.PER_PAGE, data.num_images)


def test_a_cluster_selection_updates_scatter_gallery_matrix_and_header(det):
    _, ctl = page(det)
    worst = int(det.clusters["cluster"].iloc[0])
    row = int(np.flatnonzero(ctl.clusters.source.data["cluster"] == worst)[0])
    ctl.clusters.source.selected.indices = [row]  # what a click on the table row does
    want = np.flatnonzero(det.images.cluster == worst)
    np.testing.assert_array_equal(ctl.selection, want)
    np.testing.assert_array_equal(ctl.scatter.source.selected.indices, want)
    gallery = np.asarray(ctl.gallery.source.data["image_idx"])
    page0 = st.gallery_page(want, sort="error", page=0, error_rate=ctl.outcomes.error_rate, score=ctl._scores())
    np.testing.assert_array_equal(gallery, page0.image_idx)
    assert set(gallery) <= set(want)
    np.testing.assert_array_equal(ctl.confusion.source.data["count"], ctl.evaluation.confusion_of(want).counts.ravel())
    summary = st.detection_summary(ctl.outcomes, want)
    assert selection_row(ctl)[2:] == shown(ctl, summary)[2:]
    assert f"cluster {worst}" in ctl.header.div.text


def test_a_confusion_cell_click_selects_exactly_its_images(det):
    _, ctl = page(det)
    cm = ctl.evaluation.confusion
    counts = cm.counts.copy()
    np.fill_diagonal(counts, 0)
    i, j = np.unravel_index(np.argmax(counts), counts.shape)
    n = len(cm.labels)
    ctl.confusion.source.selected.indices = [int(i * n + j)]
    np.testing.assert_array_equal(ctl.selection, cm.cell_images(i, j))
    assert set(ctl.gallery.source.data["image_idx"]) <= set(cm.cell_images(i, j))
    # The matrix now shows the selection's confusions; "whole run" is one toggle away.
    np.testing.assert_array_equal(ctl.matrix.counts, cm.subset(cm.cell_images(i, j)).counts)
    # A cell of the selection's matrix selects that cell's images within the selection.
    sub = ctl.matrix
    k = int(np.argmax(sub.counts.ravel()))
    ctl.confusion.source.selected.indices = [k]
    np.testing.assert_array_equal(ctl.selection, sub.cell_images(*divmod(k, n)))
    ctl.confusion.scope.active = 1
    np.testing.assert_array_equal(ctl.confusion.source.data["count"], cm.counts.ravel())
    ctl.confusion.mode.active = 1
    assert ctl.confusion.source.data["text"][0] == f"{cm.normalized('gt')[0, 0]:.2f}"


@pytest.mark.parametrize("confidence", [0.2, 0.75])
def test_the_slider_recolours_and_recounts_as_the_engine_says(det, confidence):
    _, ctl = page(det)
    ctl.set_selection(np.arange(0, det.num_images, 2))
    before = ctl.scatter.source.data["c"].copy()
    ctl.controls.confidence.value = confidence
    ev = det.base.at(confidence=confidence)
    assert ctl.state.confidence == confidence
    np.testing.assert_array_equal(ctl.scatter.source.data["c"], ev.per_image["error_rate"].to_numpy(np.float32))
    assert not np.array_equal(before, ctl.scatter.source.data["c"])
    o = ctl.scatter.source.data["o"]
    np.testing.assert_array_equal(o & 1023, ev.per_image["tp"].to_numpy())
    np.testing.assert_array_equal((o >> 20) & 1023, ev.per_image["fn"].to_numpy())
    t = ev.totals
    assert run_row(ctl)[2:] == shown(ctl, {**t, "error_rate": ev.per_image["error_rate"].mean(),
                                           "images": det.num_images})[2:]
    np.testing.assert_array_equal(ctl.confusion.source.data["count"],
                                  ev.confusion_of(np.arange(0, det.num_images, 2)).counts.ravel())
    assert f"{confidence:.3f}" in ctl.header.div.text


def test_a_slider_move_sends_only_colour_outcome_and_small_sources(det):
    doc, ctl = page(det)
    ctl.set_selection(np.arange(50))
    events = []
    doc.callbacks.on_change(lambda e: events.append(e))
    ctl.set_confidence(0.4)
    scatter = [e for e in events if isinstance(e, ColumnDataChangedEvent) and e.model is ctl.scatter.source]
    assert scatter and all(set(e.cols) <= {"c", "o"} for e in scatter)
    big = [e for e in events if isinstance(e, ModelChangedEvent) and e.model is ctl.scatter.source
           and e.attr == "data"]
    assert not big  # the scatter's data is never replaced wholesale
    events.clear()
    ctl.set_selection(np.arange(100, 180))
    assert not [e for e in events if getattr(e, "model", None) is ctl.scatter.source]
    assert any(isinstance(e, ModelChangedEvent) and e.model is ctl.scatter.source.selected for e in events)


def test_a_new_iou_recounts_as_a_fresh_evaluation(det):
    _, ctl = page(det)
    c = ctl.state.confidence
    ctl.controls.iou.value = "0.75"
    ref = evaluate(det.dataset, iou=0.75, confidence=c)
    assert ctl.evaluation.iou == 0.75
    t = ref.totals
    assert (int(ctl.outcomes.tp.sum()), int(ctl.outcomes.fp.sum()), int(ctl.outcomes.fn.sum())) == (t["tp"], t["fp"], t["fn"])
    np.testing.assert_array_equal(ctl.confusion.source.data["count"], ref.confusion.counts.ravel())
    best, _ = ref.optimal
    assert f"{best:.4f}" in ctl.controls.confidence.title


def test_two_sessions_do_not_see_each_others_selection(det):
    _, a = page(det)
    _, b = page(det)
    a.select_cluster(0)
    a.set_confidence(0.3)
    assert b.selection is None and len(b.scatter.source.selected.indices) == 0
    assert b.state.confidence == det.base.confidence and a.state.confidence == 0.3
    assert set(selection_row(b)) <= {"–", "whole run only", ""}
    b.set_selection([1, 2, 3])
    assert len(a.selection) == int((det.images.cluster == 0).sum())


def test_filters_set_the_selection(det):
    _, ctl = page(det)
    k = 1
    ctl.controls.classes.value = [str(k)]
    ds, ev = det.dataset, ctl.evaluation
    has = np.zeros(det.num_images, bool)
    has[ds.gt.image_idx[(ds.gt.class_idx == k) & ~ds.gt.iscrowd]] = True
    counted = ev.outcomes.pred_code < 6
    has[ds.pred.image_idx[(ds.pred.class_idx == k) & counted]] = True
    np.testing.assert_array_equal(ctl.selection, np.flatnonzero(has))
    ctl.select_cluster(0)  # a pick is intersected with the filter
    np.testing.assert_array_equal(ctl.selection, np.flatnonzero(has & (det.images.cluster == 0)))
    ctl.controls.classes.value = []
    np.testing.assert_array_equal(ctl.selection, np.flatnonzero(det.images.cluster == 0))
    click(ctl.controls.clear)
    assert ctl.selection is None and len(ctl.scatter.source.selected.indices) == 0


def test_detail_view_draws_gt_and_the_predictions_above_the_threshold(det):
    _, ctl = page(det)
    i = int(np.argmax(np.bincount(det.dataset.pred.image_idx, minlength=det.num_images)))
    ctl.open_detail(i)
    ds = det.dataset
    assert len(ctl.detail.gt.data["left"]) == int((ds.gt.image_idx == i).sum())
    for c in (0.0, 0.6, 0.95):
        ctl.set_confidence(c)
        want = int(((ds.pred.image_idx == i) & (ds.pred.score >= c)).sum())
        assert len(ctl.detail.pred.data["left"]) == want
    assert ctl.detail.image.data["url"] == [f"/vx/test/image/{int(det.images.image_id[i])}"]
    rows = ctl.detail.pred.data
    tp = ctl.evaluation.outcomes.pred_code[det.pred_index.rows(i)] == 0
    assert int((np.asarray(rows["outcome"]) == "tp").sum()) == int(tp.sum())


def test_a_tap_on_one_point_selects_and_shows_it(det):
    _, ctl = page(det)
    ctl.scatter.source.selected.indices = [5]
    assert ctl.selection.tolist() == [5] and ctl.state.detail == 5
    assert ctl.gallery.source.data["image_idx"].tolist() == [5]
    assert len(ctl.gallery.source.selected.indices) == 1  # its tile is framed
    ctl.scatter.source.selected.indices = [5, 6]  # a lasso does not change the detail view
    assert ctl.state.detail == 5 and ctl.selection.tolist() == [5, 6]


def test_a_gallery_click_opens_the_detail_view(det):
    _, ctl = page(det)
    ctl.gallery.source.selected.indices = [3]
    want = int(ctl.gallery.source.data["image_idx"][3])
    assert ctl.state.detail == want
    assert str(det.images.file_name[want]) in ctl.detail.info.text
    click(ctl.gallery.next)
    assert ctl.state.page == 1 and len(ctl.gallery.source.selected.indices) == 0
    assert ctl.gallery.prev.disabled is False
    click(ctl.gallery.prev)
    assert ctl.state.page == 0 and ctl.gallery.prev.disabled is True


@pytest.mark.parametrize("task", ["detection", "classification"])
def test_every_colour_mode(task, det, cls):
    data = det if task == "detection" else cls
    _, ctl = page(data)
    for mode, _ in ctl.controls.colour.options:
        ctl.controls.colour.value = mode
        c = ctl.scatter.source.data["c"]
        assert c.dtype == np.float32 and len(c) == data.num_images
        assert ctl.scatter.mapper.low < ctl.scatter.mapper.high


def test_classification_page_follows_the_threshold(cls):
    _, ctl = page(cls)
    assert ctl.controls.iou.visible is False
    ctl.set_confidence(0.5)
    ev = cls.base.at(confidence=0.5)
    assert ctl.controls.colour.value == "correct"
    pi = ev.per_image
    want = np.where(pi["label"] < 0, 3, np.where(pi["correct"], 0, np.where(pi["prediction"] >= 0, 1, 2)))
    np.testing.assert_array_equal(ctl.scatter.source.data["c"], want)
    i = int(np.flatnonzero(cls.pred_row >= 0)[0])
    ctl.open_detail(i)
    scores = ctl.detail.scores.data["score"]
    assert len(scores) == min(5, len(cls.class_names)) and (np.diff(scores) <= 0).all()


# ---------------------------------------------------------------- export


@pytest.mark.parametrize("fmt", ["csv", "coco", "txt", "json"])
def test_page_export_writes_a_file_that_loads(det, fmt):
    import json

    import pandas as pd

    _, ctl = page(det)
    ctl.select_cluster(1)
    path = ctl.export_selection(fmt)
    assert path.parent == det.path / "exports" and path.exists()
    ids = set(det.images.image_id[ctl.selection].tolist())
    if fmt == "csv":
        assert set(pd.read_csv(path)["image_id"]) == ids
    elif fmt == "coco":
        from pycocotools.coco import COCO

        assert set(COCO(str(path)).getImgIds()) == ids
    elif fmt == "json":
        assert {r["image_id"] for r in json.loads(path.read_text())} == ids
    else:
        assert len(path.read_text().splitlines()) == len(ids)
    assert ctl.export.trigger.text == f"/vx/test/export/{path.name}|{path.name}"
    assert str(path) in ctl.export.status.text
    again = ctl.export_selection(fmt)
    assert again != path and again.exists() and path.exists()  # never overwritten


def test_exporting_nothing_says_so(det):
    _, ctl = page(det)
    assert ctl.export_selection("csv") is None
    assert "Nothing is selected" in ctl.export.status.text and ctl.export.trigger.text == ""
    ctl.set_filters(classes=[0], splits=["no-such-split"])
    assert ctl.selection is not None and len(ctl.selection) == 0
    assert ctl.export_selection("csv") is None and "empty" in ctl.export.status.text


def test_a_failed_export_replaces_the_last_success_with_the_error(demo_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(demo_run[0], run, ignore=shutil.ignore_patterns("exports"))
    data = load_run_data(run)
    _, ctl = page(data)
    ctl.select_cluster(0)
    assert ctl.export_selection("csv") is not None and "Wrote" in ctl.export.status.text
    shutil.rmtree(run / "exports")
    (run / "exports").write_text("a file where the exports folder should be")  # a real OSError
    assert ctl.export_selection("csv") is None
    status = ctl.export.status.text
    assert "Wrote" not in status and "Export failed" in status and "vx-error" in status
    assert str(run / "exports") in status


# ---------------------------------------------------------------- crafted client messages


def test_crafted_selection_indices_never_select_or_export_images(det):
    _, ctl = page(det)
    n = det.num_images
    for crafted in ([-1, -2], [0, n], [n + 5], [-(2**40)]):
        ctl.scatter.source.selected.indices = crafted
        assert ctl.selection is None, crafted
    assert ctl.export_selection("txt") is None and "Nothing is selected" in ctl.export.status.text
    ctl.scatter.source.selected.indices = [3, 1]
    assert ctl.selection.tolist() == [1, 3]  # a valid pick still works
    ctl.scatter.source.selected.indices = [-1]  # and a crafted one leaves it as it was
    assert ctl.selection.tolist() == [1, 3]
    path = ctl.export_selection("txt")
    assert len(path.read_text().splitlines()) == 2


def test_crafted_taps_on_other_sources_are_ignored(det):
    _, ctl = page(det)
    for source in (ctl.confusion.source, ctl.clusters.source, ctl.gallery.source):
        source.selected.indices = [-1]
        source.selected.indices = [10**6]
    assert ctl.selection is None and ctl.state.detail == -1


@pytest.mark.parametrize(
    ("widget", "attr", "crafted"),
    [
        ("classes", "value", ["999"]),
        ("classes", "value", ["-1"]),
        ("classes", "value", ["01"]),
        ("classes", "value", ["x"]),
        ("splits", "value", ["no-such-split"]),
        ("confidence", "value", 7.0),
        ("confidence", "value", -0.5),
        ("iou", "value", "0.33"),
        ("iou", "value", "nan"),
        ("colour", "value", "no-such-mode"),
    ],
)
def test_crafted_control_values_leave_the_state_alone(det, widget, attr, crafted):
    _, ctl = page(det)
    before = ctl.state
    setattr(getattr(ctl.controls, widget), attr, crafted)
    assert ctl.state == before


def test_crafted_tab_and_sort_values_are_ignored(det):
    _, ctl = page(det)
    before = ctl.state
    ctl.tabs.active = 99
    ctl.gallery.sort.value = "no-such-order"
    ctl.confusion.mode.active = 5
    assert ctl.state == before


# ---------------------------------------------------------------- threading


def test_dispatcher_runs_one_job_at_a_time_and_keeps_only_the_latest_of_a_kind():
    doc = RecordingDoc()
    d = Dispatcher(doc, sync=False)
    gate = threading.Event()
    ran = []

    def job(tag, wait=False):
        def run():
            if wait:
                gate.wait(5)
            ran.append(tag)
            return lambda: ran.append(f"apply {tag}")
        return run

    d.submit("slider", job("s0", wait=True))
    time.sleep(0.05)
    for k in range(1, 6):
        d.submit("slider", job(f"s{k}"))
    d.submit("pick", job("p"))
    gate.set()
    deadline = time.time() + 5
    while len(doc.ticks) < 3 and time.time() < deadline:
        time.sleep(0.01)
    assert ran == ["s0", "s5", "p"]  # s1..s4 were replaced before they ran
    for cb in doc.ticks:
        cb()
    assert ran[3:] == ["apply s0", "apply s5", "apply p"]
