"""build_document on a bare bokeh Document with the session's demo runs.

On a bare Document the session runs every update synchronously, so a widget
change (``slider.value = ...``), a click (a Tap event) or a session call updates
the sources before the next line; the tests then compare the sources with the
evaluation engine.
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
from vecexplore.app.events import SetFilters, SetOperatingPoint
from vecexplore.eval.evaluate import evaluate

NAMES = ["header", "toolbar", "scatter", "scatter-source", "confusion", "confusion-source", "matrix-mode",
         "matrix-scope", "clusters", "clusters-source", "gallery", "gallery-source", "gallery-sort", "gallery-prev",
         "gallery-next", "gallery-boxes", "detail", "detail-image", "detail-gt", "detail-pred", "detail-toggles",
         "detail-info", "confidence", "iou", "class-filter", "split-filter", "colour-by", "clear-selection",
         "select-mode", "selection-back", "selection-forward", "export-format", "export-button", "export-status",
         "export-url", "tabs", "label-issues", "detail-issues", "duplicates", "duplicates-caption"]


class Views:
    """``views.scatter`` → the session's view named "scatter" (``class_bars`` → "class-bars")."""

    def __init__(self, session):
        self._s = session

    def __getattr__(self, name):
        return self._s.view(name.replace("_", "-"))


def page(data):
    doc = Document()
    session = build_document(doc, data, url_base="/vx/test")
    return doc, session, Views(session)


def tap(figure, x: float, y: float, *, shift: bool = False) -> None:
    """What a click on a figure sends the server: a Tap event at data (x, y) (JSON numbers), with its
    key modifiers."""
    from bokeh.events import Tap

    figure._trigger_event(Tap(figure, sx=0, sy=0, x=float(x), y=float(y),
                              modifiers={"shift": shift, "ctrl": False, "alt": False}))


def selection_row(session) -> list[str]:
    """The header's "Selection" row cells, as displayed."""
    row = session.view("header").div.text.split("<tr class='vx-sel'>")[1].split("</tr>")[0]
    return re.findall(r"<td[^>]*>(.*?)</td>", row)[1:]


def run_row(session) -> list[str]:
    row = session.view("header").div.text.split("<td class='vx-rowname'>Whole run</td>")[1].split("</tr>")[0]
    return re.findall(r"<td[^>]*>(.*?)</td>", row)


def click(button) -> None:
    """What a browser click on a Button does on the server."""
    from bokeh.events import ButtonClick

    button._trigger_event(ButtonClick(button))


def shown(session, values: dict, task="detection") -> list[str]:
    """What metric_rows prints for ``values`` in the run column."""
    from vecexplore.app.views.header import metric_rows

    return [r[1] for r in metric_rows(task, values, None, session.data.coco)]


def export(session, fmt: str):
    """Export the selection in ``fmt`` (synchronous on a bare Document); the written Path or None."""
    from pathlib import Path

    v = session.view("export")
    v.format.value = fmt
    click(v.button)
    e = session.state.export
    return Path(e.path) if e is not None and e.path and not e.error else None


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
    doc, s, v = page(data)
    for name in NAMES:
        assert doc.get_model_by_name(name) is not None, name
    src = doc.get_model_by_name("scatter-source").data
    assert len(src["x"]) == data.num_images
    np.testing.assert_array_equal(src["x"], data.run.images["x"].to_numpy(np.float32))
    for col in ("x", "y", "c", "o", "image_id"):
        assert isinstance(src[col], np.ndarray), col
    assert s.selection is None and len(v.scatter.source.selected.indices) == 0
    assert s.state.confidence == data.base.confidence
    assert len(v.gallery.source.data["image_idx"]) == min(s.state.per_page, data.num_images)
    # with nothing opened, the detail view shows the gallery's first (worst) image
    assert s.derived.detail == int(v.gallery.source.data["image_idx"][0])


def test_every_view_has_its_name_and_css_class(det):
    from vecexplore.app.views import REGISTRY

    doc, s, _ = page(det)
    assert [v.name for v in s.views] == [c.name for c in REGISTRY if "detection" in c.tasks and c.available(det)]
    assert [t.title for t in doc.get_model_by_name("tabs").tabs] == [v.title for v in s.tab_views]
    for name in ("scatter", "confusion", "gallery", "detail", "tabs", "header", "curve", "class-bars"):
        assert f"vx-{name}" in doc.get_model_by_name(name).css_classes, name


def test_a_cluster_selection_updates_scatter_gallery_matrix_and_header(det):
    doc, s, v = page(det)
    assert len(v.clusters.source.data["cluster"]) == 0  # a hidden tab is computed when it is shown
    doc.get_model_by_name("tabs").active = [t.name for t in s.tab_views].index("clusters")
    row = 0  # the worst slice (a merged one selects every member cluster)
    members = v.clusters._members[row]
    v.clusters.source.selected.indices = [row]  # what a click on the table row does
    want = np.flatnonzero(np.isin(det.images.cluster, members))
    np.testing.assert_array_equal(s.selection, want)
    np.testing.assert_array_equal(v.scatter.source.selected.indices, want)
    gallery = np.asarray(v.gallery.source.data["image_idx"])
    page0 = st.gallery_page(want, sort="error", page=0, error_rate=s.derived.outcomes.error_rate,
                            score=s.derived.scores, per_page=s.state.per_page)
    np.testing.assert_array_equal(gallery, page0.image_idx)
    assert set(gallery) <= set(want)
    summary = st.detection_summary(s.derived.outcomes, want)
    assert selection_row(s)[2:] == shown(s, summary)[2:]
    assert f"cluster {v.clusters.source.data['label'][row]}" in v.export.status.text
    assert v.clusters.source.selected.indices == [row]  # the row that made the selection stays marked
    doc.get_model_by_name("tabs").active = 0  # the matrix (tab 0), hidden meanwhile, catches up
    np.testing.assert_array_equal(v.confusion.source.data["count"],
                                  s.derived.evaluation.confusion_of(want).counts.ravel())


def test_a_confusion_cell_click_selects_its_images_over_the_whole_run(det):
    _, s, v = page(det)
    cm = s.derived.evaluation.confusion
    counts = cm.counts.copy()
    np.fill_diagonal(counts, 0)
    i, j = np.unravel_index(np.argmax(counts), counts.shape)
    n = len(cm.labels)
    tap(v.confusion.figure, x=j + 0.2, y=i - 0.3)
    np.testing.assert_array_equal(s.selection, cm.cell_images(i, j))
    assert set(v.gallery.source.data["image_idx"]) <= set(cm.cell_images(i, j))
    assert v.confusion.source.selected.indices == [int(i * n + j)]  # the clicked cell stays outlined
    # The matrix now shows the selection's confusions; "whole run" is one toggle away.
    np.testing.assert_array_equal(v.confusion.source.data["count"], cm.subset(cm.cell_images(i, j)).counts.ravel())
    # A second cell replaces the selection with that cell's images over the whole run, not within the first.
    k = int(np.argmax(np.where(np.eye(n, dtype=bool), 0, counts).ravel() * (np.arange(n * n) != i * n + j)))
    r, c = divmod(k, n)
    tap(v.confusion.figure, x=c, y=r)
    np.testing.assert_array_equal(s.selection, cm.cell_images(r, c))
    # shift-click adds
    tap(v.confusion.figure, x=j, y=i, shift=True)
    np.testing.assert_array_equal(s.selection, np.union1d(cm.cell_images(r, c), cm.cell_images(i, j)))
    assert sorted(v.confusion.source.selected.indices) == sorted([k, int(i * n + j)])
    tap(v.confusion.figure, x=j + 0.5, y=i)  # between two cells: nothing happens
    assert len(s.selection) == len(np.union1d(cm.cell_images(r, c), cm.cell_images(i, j)))
    v.confusion.scope.active = 1
    np.testing.assert_array_equal(v.confusion.source.data["count"], cm.counts.ravel())
    v.confusion.mode.active = 1
    assert v.confusion.source.data["text"][0] == f"{cm.normalized('gt')[0, 0]:.2f}"


def test_an_empty_intersection_is_an_empty_selection_not_the_whole_run(det):
    _, s, v = page(det)
    s.select([1, 2, 3], "a")
    v.selection_bar.mode.active = 2  # intersect
    s.select([4, 5], "b")
    assert s.selection is not None and len(s.selection) == 0
    assert len(v.gallery.source.data["image_idx"]) == 0 and "0 images" in v.export.status.text
    assert all(c in ("–", "0") for c in selection_row(s)[2:])
    click(v.selection_bar.back)
    assert s.selection.tolist() == [1, 2, 3]
    click(v.selection_bar.forward)
    assert s.selection.tolist() == []
    click(v.selection_bar.clear)
    assert s.selection is None


@pytest.mark.parametrize("confidence", [0.2, 0.75])
def test_the_slider_recolours_and_recounts_as_the_engine_says(det, confidence):
    _, s, v = page(det)
    s.select(np.arange(0, det.num_images, 2))
    before = v.scatter.source.data["c"].copy()
    v.controls.confidence.value = confidence
    ev = det.base.at(confidence=confidence)
    assert s.state.confidence == confidence
    np.testing.assert_array_equal(v.scatter.source.data["c"], ev.per_image["error_rate"].to_numpy(np.float32))
    assert not np.array_equal(before, v.scatter.source.data["c"])
    o = v.scatter.source.data["o"]
    np.testing.assert_array_equal(o & 1023, ev.per_image["tp"].to_numpy())
    np.testing.assert_array_equal((o >> 20) & 1023, ev.per_image["fn"].to_numpy())
    t = ev.totals
    assert run_row(s)[2:] == shown(s, {**t, "error_rate": ev.per_image["error_rate"].mean(),
                                       "images": det.num_images})[2:]
    np.testing.assert_array_equal(v.confusion.source.data["count"],
                                  ev.confusion_of(np.arange(0, det.num_images, 2)).counts.ravel())
    assert f"{confidence:.3f}" in v.header.div.text


def test_a_slider_move_sends_only_colour_outcome_and_small_sources(det):
    doc, s, v = page(det)
    s.select(np.arange(50))
    events = []
    doc.callbacks.on_change(lambda e: events.append(e))
    s.set_confidence(0.4)
    scatter = [e for e in events if isinstance(e, ColumnDataChangedEvent) and e.model is v.scatter.source]
    assert scatter and all(set(e.cols) <= {"c", "o"} for e in scatter)
    big = [e for e in events if isinstance(e, ModelChangedEvent) and e.model is v.scatter.source
           and e.attr == "data"]
    assert not big  # the scatter's data is never replaced wholesale
    events.clear()
    s.select(np.arange(100, 180))
    assert not [e for e in events if isinstance(e, ColumnDataChangedEvent) and e.model is v.scatter.source]
    assert any(isinstance(e, ModelChangedEvent) and e.model is v.scatter.source.selected for e in events)


def test_a_new_iou_recounts_as_a_fresh_evaluation(det):
    _, s, v = page(det)
    c = s.state.confidence
    v.controls.iou.value = 0.75
    ref = evaluate(det.dataset, iou=0.75, confidence=c)
    assert s.derived.evaluation.iou == 0.75
    t = ref.totals
    out = s.derived.outcomes
    assert (int(out.tp.sum()), int(out.fp.sum()), int(out.fn.sum())) == (t["tp"], t["fp"], t["fn"])
    np.testing.assert_array_equal(v.confusion.source.data["count"], ref.confusion.counts.ravel())
    best, _ = ref.optimal
    assert f"{best:.4f}" in v.controls.confidence.title
    assert v.controls.iou.start == 0.5 and v.controls.iou.end == 0.95 and v.controls.iou.step == 0.05


def test_two_sessions_do_not_see_each_others_selection(det):
    _, a, _ = page(det)
    _, b, vb = page(det)
    a.select(np.flatnonzero(det.images.cluster == 0), "cluster 0")
    a.set_confidence(0.3)
    assert b.selection is None and len(vb.scatter.source.selected.indices) == 0
    assert b.state.confidence == det.base.confidence and a.state.confidence == 0.3
    assert set(selection_row(b)) <= {"–", "whole run", ""}
    b.select([1, 2, 3])
    assert len(a.selection) == int((det.images.cluster == 0).sum())


def test_filters_set_the_selection(det):
    _, s, v = page(det)
    k = 1
    v.controls.classes.value = [str(k)]
    ds, ev = det.dataset, s.derived.evaluation
    has = np.zeros(det.num_images, bool)
    has[ds.gt.image_idx[(ds.gt.class_idx == k) & ~ds.gt.iscrowd]] = True
    counted = ev.outcomes.pred_code < 6
    has[ds.pred.image_idx[(ds.pred.class_idx == k) & counted]] = True
    np.testing.assert_array_equal(s.selection, np.flatnonzero(has))
    s.select(np.flatnonzero(det.images.cluster == 0), "cluster 0")  # a pick is intersected with the filter
    np.testing.assert_array_equal(s.selection, np.flatnonzero(has & (det.images.cluster == 0)))
    v.controls.classes.value = []
    np.testing.assert_array_equal(s.selection, np.flatnonzero(det.images.cluster == 0))
    click(v.selection_bar.clear)
    assert s.selection is None and len(v.scatter.source.selected.indices) == 0


def test_detail_view_draws_gt_and_the_predictions_above_the_threshold(det):
    from vecexplore.app.events import OpenImage

    _, s, v = page(det)
    i = int(np.argmax(np.bincount(det.dataset.pred.image_idx, minlength=det.num_images)))
    s.emit(OpenImage(i))
    ds = det.dataset
    assert len(v.detail.gt.data["left"]) == int((ds.gt.image_idx == i).sum())
    for c in (0.0, 0.6, 0.95):
        s.set_confidence(c)
        want = int(((ds.pred.image_idx == i) & (ds.pred.score >= c)).sum())
        assert len(v.detail.pred.data["left"]) == want
    assert v.detail.image.data["url"] == [f"/vx/test/image/{int(det.images.image_id[i])}"]
    assert v.detail.thumb.data["url"] == [f"/vx/test/thumb/{int(det.images.image_id[i])}"]
    rows = v.detail.pred.data
    tp = s.derived.evaluation.outcomes.pred_code[det.pred_index.rows(i)] == 0
    assert int((np.asarray(rows["outcome"]) == "tp").sum()) == int(tp.sum())
    # missed GT has its own colour
    gt_rows = v.detail.gt.data
    colours = dict(zip(gt_rows["outcome"], gt_rows["colour"], strict=True))
    if "fn" in colours and "tp" in colours:
        assert colours["fn"] != colours["tp"]


def test_a_tap_selects_and_opens_the_point_nearest_to_it(det):
    _, s, v = page(det)
    x, y = det.images.x, det.images.y
    k = int(np.flatnonzero(np.isfinite(x))[5])
    tap(v.scatter.figure, x=float(x[k]) + 1e-4, y=float(y[k]))
    assert s.selection.tolist() == [k] and s.state.detail == k and s.derived.detail == k
    assert v.gallery.source.data["image_idx"].tolist() == [k]
    assert len(v.gallery.source.selected.indices) == 1  # its tile is framed
    j = int(np.flatnonzero(np.isfinite(x))[9])
    tap(v.scatter.figure, x=float(x[j]), y=float(y[j]), shift=True)  # shift adds
    assert s.selection.tolist() == sorted([k, j]) and s.derived.detail == j
    far = float(np.nanmax(x)) + 100.0
    tap(v.scatter.figure, x=far, y=far)  # nowhere near a point: nothing changes
    assert s.selection.tolist() == sorted([k, j])
    v.scatter.source.selected.indices = [5, 6]  # a lasso
    assert s.selection.tolist() == [5, 6] and s.derived.detail in (5, 6)


def test_the_nearest_point_is_nearest_on_screen():
    from vecexplore.app.views.scatter import nearest_point

    x = np.array([0.0, 10.0, np.nan, 0.0])
    y = np.array([0.0, 0.0, 0.0, 10.0])
    assert nearest_point(x, y, (1.0, 3.0), px_per_x=1.0, px_per_y=1.0, radius_px=100) == 0
    # the same data distance is fewer pixels along the squeezed axis
    assert nearest_point(x, y, (6.0, 6.0), px_per_x=1.0, px_per_y=0.1, radius_px=100) == 1
    assert nearest_point(x, y, (50.0, 50.0), px_per_x=1.0, px_per_y=1.0, radius_px=5) == -1
    assert nearest_point(np.zeros(0), np.zeros(0), (0, 0), px_per_x=1, px_per_y=1) == -1


def test_a_gallery_click_opens_the_detail_view(det):
    _, s, v = page(det)
    cols = s.state.gallery_shape[0]
    tap(v.gallery.figure, x=3.5, y=-0.5)  # the fourth tile of the first row
    want = int(v.gallery.source.data["image_idx"][3])
    assert s.state.detail == want and cols > 3
    assert str(det.images.file_name[want]) in v.detail.info.text
    click(v.gallery.next)
    assert s.state.page == 1
    assert v.gallery.prev.disabled is False
    click(v.gallery.prev)
    assert s.state.page == 0 and v.gallery.prev.disabled is True


def test_the_gallery_draws_the_objects_that_explain_a_cell(det):
    from vecexplore.eval.outcomes import GtOutcome

    _, s, v = page(det)
    cm = s.derived.evaluation.confusion
    n = len(cm.labels)
    row = int(np.argmax(cm.counts[:-1, n - 1]))  # the class missed most: its "→ background" cell
    tap(v.confusion.figure, x=n - 1, y=row)
    boxes = v.gallery.boxes.data
    assert len(boxes["left"]) > 0 and set(boxes["dash"].tolist()) == {0}  # GT only, no prediction
    name = cm.labels[row]
    assert all(str(lab) == f"{name} · missed GT" for lab in boxes["label"])
    page_images = v.gallery.source.data["image_idx"]
    oc, ds = s.derived.evaluation.outcomes, det.dataset
    want = sum(int(((oc.gt_code[det.gt_index.rows(int(i))] == GtOutcome.FN)
                    & (ds.gt.class_idx[det.gt_index.rows(int(i))] == row)).sum()) for i in page_images)
    assert len(boxes["left"]) == want
    assert "missed GT" in v.gallery.legend.text


@pytest.mark.parametrize("task", ["detection", "classification"])
def test_every_colour_mode(task, det, cls):
    data = det if task == "detection" else cls
    _, _s, v = page(data)
    for mode, _ in v.controls.colour.options:
        v.controls.colour.value = mode
        c = v.scatter.source.data["c"]
        assert c.dtype == np.float32 and len(c) == data.num_images
        assert v.scatter.mapper.low < v.scatter.mapper.high


def test_classification_page_follows_the_threshold(cls):
    from vecexplore.app.events import OpenImage

    _, s, v = page(cls)
    assert v.controls.iou.visible is False
    s.set_confidence(0.5)
    ev = cls.base.at(confidence=0.5)
    assert v.controls.colour.value == "correct"
    pi = ev.per_image
    want = np.where(pi["label"] < 0, 3, np.where(pi["correct"], 0, np.where(pi["prediction"] >= 0, 1, 2)))
    np.testing.assert_array_equal(v.scatter.source.data["c"], want)
    i = int(np.flatnonzero(cls.pred_row >= 0)[0])
    s.emit(OpenImage(i))
    scores = v.detail.scores.data["score"]
    assert len(scores) == min(5, len(cls.class_names)) and (np.diff(scores) <= 0).all()
    # header accuracy: a rejected prediction counts as wrong; coverage beside it
    summ = s.derived.run_summary
    assert summ["accuracy"] == pytest.approx(summ["correct"] / summ["labelled"])
    assert "Coverage" in v.header.div.text and f"{summ['coverage']:.3f}" in v.header.div.text


# ---------------------------------------------------------------- export


@pytest.mark.parametrize("fmt", ["csv", "coco", "txt", "json", "label-studio", "cvat"])
def test_page_export_writes_a_file_that_loads(det, fmt):
    import json

    import pandas as pd

    _, s, v = page(det)
    s.select(np.flatnonzero(det.images.cluster == 1), "cluster 1")
    path = export(s, fmt)
    assert path.parent == det.path / "exports" and path.exists()
    ids = set(det.images.image_id[s.selection].tolist())
    if fmt == "csv":
        assert set(pd.read_csv(path)["image_id"]) == ids
    elif fmt == "coco":  # one zip: the GT subset and the predictions on it
        import zipfile

        with zipfile.ZipFile(path) as z:
            gt = json.loads(z.read("annotations.json"))
            preds = json.loads(z.read("predictions.json"))
        assert {im["id"] for im in gt["images"]} == ids and {p["image_id"] for p in preds} <= ids
        assert len(preds) == int(np.isin(det.dataset.pred.image_idx, s.selection).sum())
    elif fmt == "json":
        assert {r["image_id"] for r in json.loads(path.read_text())} == ids
    elif fmt == "label-studio":  # one zip: the tasks, the config to create the project with, how to import
        import xml.etree.ElementTree as ET
        import zipfile

        with zipfile.ZipFile(path) as z:
            assert sorted(z.namelist()) == ["README.txt", "label_config.xml", "tasks.json"]
            tasks = json.loads(z.read("tasks.json"))
            ET.fromstring(z.read("label_config.xml"))
            readme = z.read("README.txt").decode()
        assert {t["data"]["image_id"] for t in tasks} == ids
        # the run's images root serves as Label Studio's document root
        assert all(t["data"]["image"].startswith("/data/local-files/?d=") for t in tasks)
        assert "LOCAL_FILES_DOCUMENT_ROOT=" in readme and "label_config.xml" in readme
    elif fmt == "cvat":
        import xml.etree.ElementTree as ET
        import zipfile

        with zipfile.ZipFile(path) as z:
            assert z.namelist() == ["annotations.xml"]
            root = ET.fromstring(z.read("annotations.xml"))
        assert len(root.findall("image")) == len(ids)
    else:
        assert len(path.read_text().splitlines()) == len(ids)
    assert v.export.trigger.text == f"/vx/test/export/{path.name}|{path.name}"
    assert str(path) in v.export.status.text
    again = export(s, fmt)
    assert again != path and again.exists() and path.exists()  # never overwritten
    s.select([1, 2], "points")  # the status follows the selection
    assert str(again) not in v.export.status.text and "Not exported yet" in v.export.status.text
    click(v.selection_bar.back)
    assert str(again) in v.export.status.text


def test_exporting_nothing_says_so(det):
    _, s, v = page(det)
    assert export(s, "csv") is None
    assert "Nothing is selected" in v.export.status.text and v.export.trigger.text == ""
    s.emit(SetFilters(classes=(0,), splits=("no-such-split",)))
    assert s.selection is not None and len(s.selection) == 0
    assert export(s, "csv") is None and "empty" in v.export.status.text


def test_a_failed_export_replaces_the_last_success_with_the_error(demo_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(demo_run[0], run, ignore=shutil.ignore_patterns("exports"))
    data = load_run_data(run)
    _, s, v = page(data)
    s.select(np.flatnonzero(data.images.cluster == 0), "cluster 0")
    assert export(s, "csv") is not None and "Wrote" in v.export.status.text
    shutil.rmtree(run / "exports")
    (run / "exports").write_text("a file where the exports folder should be")  # a real OSError
    assert export(s, "csv") is None
    status = v.export.status.text
    assert "Wrote" not in status and "Export failed" in status and "vx-error" in status
    assert str(run / "exports") in status


# ---------------------------------------------------------------- crafted client messages


def test_crafted_selection_indices_never_select_or_export_images(det):
    _, s, v = page(det)
    n = det.num_images
    for crafted in ([-1, -2], [0, n], [n + 5], [-(2**40)]):
        v.scatter.source.selected.indices = crafted
        assert s.selection is None, crafted
    assert export(s, "txt") is None and "Nothing is selected" in v.export.status.text
    v.scatter.source.selected.indices = [3, 1]
    assert s.selection.tolist() == [1, 3]  # a valid pick still works
    v.scatter.source.selected.indices = [-1]  # and a crafted one leaves it as it was
    assert s.selection.tolist() == [1, 3]
    path = export(s, "txt")
    assert len(path.read_text().splitlines()) == 2


def test_crafted_taps_are_ignored(det):
    from bokeh.events import Tap

    _, s, v = page(det)
    v.clusters.source.selected.indices = [-1]
    v.clusters.source.selected.indices = [10**6]
    for fig in (v.confusion.figure, v.gallery.figure, v.scatter.figure, v.class_bars.figure):
        for x, y in ((float("nan"), 0.0), (10**9, -(10**9)), (-5.0, -5.0)):
            fig._trigger_event(Tap(fig, sx=0, sy=0, x=x, y=y, modifiers=None))
        fig._trigger_event(Tap(fig, sx=0, sy=0, x="1", y=None, modifiers=None))
    assert s.selection is None and s.state.detail == -1


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
        ("iou", "value", 0.33),
        ("iou", "value", 0.951),
        ("colour", "value", "no-such-mode"),
    ],
)
def test_crafted_control_values_leave_the_state_alone(det, widget, attr, crafted):
    _, s, v = page(det)
    before = s.state
    setattr(getattr(v.controls, widget), attr, crafted)
    assert s.state is before


def test_crafted_tab_sort_and_mode_values_are_ignored(det):
    doc, s, v = page(det)
    before = s.state
    doc.get_model_by_name("tabs").active = 99
    v.gallery.sort.value = "no-such-order"
    v.confusion.mode.active = 5
    v.selection_bar.mode.active = 9
    assert s.state is before


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


# ---------------------------------------------------------------- query, save, tag


def test_query_save_and_tag_from_the_page(demo_run, tmp_path):
    import shutil

    from vecexplore.selections import load_selection, load_tags

    run = tmp_path / "run"
    shutil.copytree(demo_run[0], run, ignore=shutil.ignore_patterns("exports"))
    data = load_run_data(run)
    doc, s, v = page(data)
    doc.get_model_by_name("tabs").active = [t.name for t in s.tab_views].index("query")
    q = v.query
    # a query is a selection; outcome columns follow the session's operating point
    s.set_confidence(0.9)
    q.input.value = "fn >= 2 and split == 'test'"
    per_image = s.derived.evaluation.per_image
    want = np.flatnonzero((per_image["fn"].to_numpy() >= 2) & (data.images.split == "test"))
    np.testing.assert_array_equal(s.selection, want)
    assert f"{len(want):,} images match" in q.message.text and "query fn &gt;= 2" in v.export.status.text
    # a bad query says why, and leaves the selection alone
    q.input.value = "nope > 1"
    assert "Query failed" in q.message.text and "unknown column 'nope'" in q.message.text
    np.testing.assert_array_equal(s.selection, want)
    # save it, select something else, select it again from the list
    q.save_name.value = "test misses"
    click(q.save)
    np.testing.assert_array_equal(load_selection(data.run, "test misses"), want)
    assert q.saved.data["name"] == ["test misses"]
    s.select([1, 2])
    q.saved.selected.indices = [0]
    np.testing.assert_array_equal(s.selection, want)
    # tag the selection; the tag is a query term and a list entry that selects
    q.tag_name.value = "hard"
    click(q.tag)
    np.testing.assert_array_equal(load_tags(data.run)["hard"], want)
    assert q.tags.data["tag"] == ["hard"] and q.tags.data["images"] == [len(want)]
    s.clear()
    q.input.value = "'hard' in tags"
    np.testing.assert_array_equal(s.selection, want)
    q.tags.selected.indices = [0]
    np.testing.assert_array_equal(s.selection, want)
    s.select(want[:1])
    click(q.untag)
    assert len(load_tags(data.run)["hard"]) == len(want) - 1
    # nothing selected: saving and tagging say so instead of writing empty files
    s.clear()
    click(q.save)
    assert "Nothing is selected" in q.message.text


def test_a_late_update_never_pulls_the_slider_back(det):
    """A drag sends a burst of values; the update of an older one, applied after a newer one arrived,
    must not write the older value back into the slider (the browser would keep it)."""
    from vecexplore.app import ui
    from vecexplore.app.session import Session
    from vecexplore.app.views import REGISTRY

    doc = RecordingDoc()
    s = Session(doc, det, url_base="/vx/t", sheet=ui.stylesheet(), registry=REGISTRY, sync=False)
    slider = s.view("controls").confidence

    def ticks(n):
        deadline = time.time() + 30
        while len(doc.ticks) < n and time.time() < deadline:
            time.sleep(0.01)
        assert len(doc.ticks) >= n

    slider.value = 0.30  # the browser's first value: computed off the lock, applied on a later tick
    ticks(1)
    slider.value = 0.31  # the next value arrives before that apply runs
    ticks(2)
    for cb in list(doc.ticks):
        cb()
        assert slider.value == 0.31  # never back to 0.30
    assert s.state.confidence == 0.31
    s.emit(lambda d: SetOperatingPoint(confidence=d.optimal))
    ticks(3)
    doc.ticks[-1]()
    assert slider.value == pytest.approx(det.optimal_confidence(det.build_iou))  # the server's own change moves it


@pytest.mark.parametrize("task", ["detection", "classification"])
def test_a_label_issue_row_selects_its_image_and_highlights_the_box(task, det, cls):
    from vecexplore.analysis.label_issues import image_scores

    data = det if task == "detection" else cls
    doc, s, v = page(data)
    doc.get_model_by_name("tabs").active = [t.name for t in s.tab_views].index("label-issues")
    view = v.label_issues
    src = view.source.data
    issues = data.label_issues
    assert len(src["rank"]) == min(len(issues), 500) > 0
    assert src["likely"][0] == "yes"
    row = 0
    issue = issues.iloc[int(src["row"][row])]
    view.source.selected.indices = [row]
    i = int(issue["image_idx"])
    assert s.selection.tolist() == [i] and s.derived.detail == i
    assert "suspected label error" in v.detail.info.text
    if task == "detection":
        boxes = v.detail.issues.data
        assert len(boxes["left"]) == 1
        assert boxes["left"][0] == issue["x"] and boxes["bottom"][0] == issue["y"] + issue["h"]
    # The colouring is the image's highest issue score.
    v.controls.colour.value = "label_issue"
    np.testing.assert_allclose(v.scatter.source.data["c"],
                               image_scores(issues, data.num_images).astype(np.float32))


def test_a_pending_event_is_replaced_only_by_one_that_sets_the_same_fields(det):
    """A colour change waiting behind a long job (a text search loading its model) must survive the
    search's own gallery change; an IoU change must survive a confidence change; the second of two
    colour changes replaces the first."""
    from conftest import RecordingDoc

    from vecexplore.app import events as ev

    assert ev.SetView.of(colour="fp").coalesce_key() == ev.SetView.of(colour="fn").coalesce_key()
    assert ev.SetView.of(colour="fp").coalesce_key() != ev.SetView.of(sort="text", phrase="x").coalesce_key()
    assert ev.SetOperatingPoint(confidence=0.2).coalesce_key() == ev.SetOperatingPoint(confidence=0.3).coalesce_key()
    assert ev.SetOperatingPoint(confidence=0.2).coalesce_key() != ev.SetOperatingPoint(iou=0.6).coalesce_key()
    assert ev.SetFilters(classes=(0,)).coalesce_key() != ev.SetFilters(splits=("val",)).coalesce_key()

    _doc, s, _v = page(det)
    recorder = RecordingDoc()
    s.dispatch = Dispatcher(recorder, sync=False)
    gate = threading.Event()
    s.run(lambda: gate.wait(5) and None)
    time.sleep(0.05)
    s.emit(ev.SetView.of(colour="fp"))
    s.emit(ev.SetView.of(colour="fn"))  # replaces the pending "fp"
    s.emit(ev.SetView.of(sort="confidence_desc"))
    s.emit(ev.SetOperatingPoint(iou=0.6))
    s.emit(ev.SetOperatingPoint(confidence=0.7))
    gate.set()
    deadline = time.time() + 30
    while len(recorder.ticks) < 3 and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    for cb in recorder.ticks:
        cb()
    assert (s.state.colour, s.state.sort) == ("fn", "confidence_desc")
    assert (s.state.iou, s.state.confidence) == (0.6, 0.7)
