"""The app on a comparison run (``vecexplore compare``), built on a bare Document.

Model B fixes the demo's dark mode and misses everything on one clean cluster of A
(the ``compare_pair`` fixture). The page adds the change colouring, the A / B /
difference matrices (each cell selects its images), a header with both models'
metrics and the detail view's A/B toggle; an ordinary run shows none of them.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("bokeh")

from test_app_document import page, tap

from vecexplore.app.data import load_run_data
from vecexplore.compare.changes import CHANGES
from vecexplore.eval.outcomes import COUNTED

COMPARE_NAMES = ("compare-header", "compare-matrix-a", "compare-matrix-b", "compare-matrix-diff",
                 "compare-source-a", "compare-source-b", "compare-source-diff", "compare-caption", "detail-model")


@pytest.fixture(scope="module")
def cmp_data(compare_pair):
    return load_run_data(compare_pair["c"])


def test_comparison_views_exist_only_on_a_comparison_run(cmp_data, det):
    doc, _, v = page(cmp_data)
    for name in COMPARE_NAMES:
        assert doc.get_model_by_name(name) is not None, name
    assert ("change", "Change A → B") in v.controls.colour.options
    assert "A vs B" in [t.title for t in doc.get_model_by_name("tabs").tabs]
    doc, _, v = page(det)
    for name in COMPARE_NAMES:
        assert doc.get_model_by_name(name) is None, name
    assert "change" not in [m for m, _ in v.controls.colour.options]


def test_model_b_is_rebuilt_as_it_was_evaluated(cmp_data, compare_pair):
    from vecexplore.store import Run

    comp = cmp_data.comparison
    b = Run(compare_pair["b"])
    by_name = b.images.set_index("file_name")["error_rate"]
    want = by_name.loc[cmp_data.run.images["file_name"]].to_numpy()
    np.testing.assert_allclose(comp.eval_b.per_image["error_rate"].to_numpy(), want, atol=1e-12)
    np.testing.assert_allclose(comp.eval_a.per_image["error_rate"].to_numpy(), comp.err_a, atol=1e-12)


def test_colour_by_change(cmp_data):
    _, s, v = page(cmp_data)
    v.controls.colour.value = "change"
    assert s.state.colour == "change"
    c = v.scatter.source.data["c"]
    images = cmp_data.run.images
    want = np.array([CHANGES.index(x) for x in images["change"]], np.float32)
    np.testing.assert_array_equal(c, want)
    wrong_a, wrong_b = images["error_rate"].to_numpy() > 0, images["b_error_rate"].to_numpy() > 0
    np.testing.assert_array_equal(c == CHANGES.index("fixed"), wrong_a & ~wrong_b)
    assert len(v.scatter.mapper.palette) == 4


def test_matrices_and_their_difference(cmp_data):
    doc, _, _ = page(cmp_data)
    comp = cmp_data.comparison
    a = doc.get_model_by_name("compare-source-a").data["count"]
    b = doc.get_model_by_name("compare-source-b").data["count"]
    diff = doc.get_model_by_name("compare-source-diff").data["count"]
    np.testing.assert_array_equal(a, cmp_data.base.confusion.counts.reshape(-1))
    np.testing.assert_array_equal(diff, np.asarray(b) - np.asarray(a))
    n = len(comp.eval_a.confusion.labels)
    # the same GT: every GT row sums alike under both models
    np.testing.assert_array_equal(np.asarray(a).reshape(n, n).sum(1)[:-1], np.asarray(b).reshape(n, n).sum(1)[:-1])


def test_a_difference_cell_selects_the_images_whose_count_changed(cmp_data):
    doc, s, _ = page(cmp_data)
    comp = cmp_data.comparison
    labels = comp.eval_a.confusion.labels
    n = len(labels)
    diff = np.asarray(doc.get_model_by_name("compare-source-diff").data["count"]).reshape(n, n)
    # B misses everything in one cluster and finds the dark mode's objects: the GT → background cells move
    r = int(np.argmax(np.abs(diff[:-1, -1])))
    assert diff[r, -1] != 0
    tabs = doc.get_model_by_name("tabs")
    tabs.active = [t.title for t in tabs.tabs].index("A vs B")  # a hidden tab catches up when shown
    view = s.view("compare-matrices")
    tap(view.figures["diff"], x=n - 1 + 0.2, y=r - 0.1)
    picked = s.selection
    # the reference: per image, the cell's count under A and under B (matrices of one image)
    cm_a, cm_b = comp.eval_a.confusion, comp.eval_b.confusion
    changed = [i for i in range(cmp_data.num_images)
               if cm_a.subset(np.array([i])).counts[r, n - 1] != cm_b.subset(np.array([i])).counts[r, n - 1]]
    np.testing.assert_array_equal(picked, changed)
    assert len(picked) > 0
    assert doc.get_model_by_name("compare-source-diff").selected.indices == [r * n + n - 1]
    assert "Difference B − A" in s.state.pick_how
    # a cell of B selects B's images in it
    tap(view.figures["b"], x=r, y=r)
    np.testing.assert_array_equal(s.selection, cm_b.cell_images(r, r))
    assert doc.get_model_by_name("compare-source-b").selected.indices == [r * n + r]
    assert doc.get_model_by_name("compare-source-diff").selected.indices == []


def _rows(html: str) -> dict[str, list[str]]:
    out = {}
    for name in ("A", "B", "B − A"):
        row = html.split(f"<td class='vx-rowname'>{name}</td>")[1].split("</tr>")[0]
        out[name] = re.findall(r"<td>(.*?)</td>", row)
    return out


def test_header_shows_both_models_and_the_deltas(cmp_data):
    from vecexplore.app.events import Select

    doc, s, _ = page(cmp_data)
    header = doc.get_model_by_name("compare-header")
    deltas = cmp_data.comparison.doc["deltas"]
    rows = _rows(header.text)
    keys = list(deltas)
    for k, key in enumerate(keys):
        if deltas[key] is not None:
            assert rows["B − A"][k] == f"{deltas[key]:+.3f}"
    comp = cmp_data.comparison
    assert rows["B − A"][len(keys)] == f"{comp.err_b.mean() - comp.err_a.mean():+.3f}"
    assert "selection" not in header.text
    sel = np.flatnonzero(comp.change == CHANGES.index("fixed"))
    s.emit(Select(sel, "fixed"))
    rows = _rows(header.text)
    assert f"selection, {len(sel):,}" in header.text
    assert rows["A"][-1] == f"{comp.err_a[sel].mean():.3f}" and rows["B"][-1] == f"{comp.err_b[sel].mean():.3f}"


def test_detail_toggles_between_a_and_b_predictions(cmp_data, compare_pair):
    from vecexplore.app.events import OpenImage

    doc, s, v = page(cmp_data)
    comp = cmp_data.comparison
    broken = np.flatnonzero(cmp_data.images.cluster == compare_pair["broken"])
    counted_a = comp.eval_a.outcomes.pred_code < COUNTED
    with_pred = [int(i) for i in broken if counted_a[cmp_data.pred_index.rows(int(i))].any()]
    i = with_pred[0]
    s.emit(OpenImage(i))
    assert len(v.detail.pred.data["left"]) > 0 and "Model A" in v.detail.info.text
    toggle = doc.get_model_by_name("detail-model")
    assert toggle.visible and toggle.active == 0
    toggle.active = 1
    assert s.state.detail_model == "b"
    assert len(v.detail.pred.data["left"]) == 0  # B predicts nothing on the broken cluster
    assert "Model B" in v.detail.info.text
    assert set(v.detail.gt.data["outcome"]) <= {"fn", "crowd"}
    toggle.active = 0
    assert len(v.detail.pred.data["left"]) > 0


def test_a_classification_comparison_page(compare_pair_classification):
    from vecexplore.app.events import OpenImage

    data = load_run_data(compare_pair_classification["c"])
    doc, s, v = page(data)
    comp = data.comparison
    np.testing.assert_allclose(comp.eval_b.per_image["error_rate"].to_numpy(), comp.err_b, atol=0)
    v.controls.colour.value = "change"
    np.testing.assert_array_equal(v.scatter.source.data["c"], comp.change.astype(np.float32))
    i = int(np.flatnonzero(data.images.cluster == compare_pair_classification["broken"])[0])
    s.emit(OpenImage(i))
    names = data.class_names
    doc.get_model_by_name("detail-model").active = 1
    b_pred = int(data.run.images["b_pred_class_idx"][i])
    assert "Model B" in v.detail.info.text and f"prediction <b>{names[b_pred]}</b>" in v.detail.info.text
    assert "incorrect" in v.detail.info.text
    n = len(names)
    diff = np.asarray(doc.get_model_by_name("compare-source-diff").data["count"]).reshape(n, n)
    np.testing.assert_array_equal(diff, comp.eval_b.confusion.counts - comp.eval_a.confusion.counts)
