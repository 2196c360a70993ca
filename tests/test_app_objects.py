"""The app's object level (issue 14 §2): the state and events of object selections, the object
map's outcomes and selections, confusion cells → objects, crops, and object exports.

Oracles: the run's own objects table (outcome strings at the build's operating point), the
confusion matrix's cell ids, pycocotools loading the exported subset, and the embedding
pipeline's own crop cutter.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from bokeh.document import Document

from vecexplore.app import events as ev
from vecexplore.app import state as st
from vecexplore.app.objects import (
    box_in_tile,
    cell_rows,
    crop_box,
    crop_source,
    object_outcomes,
    object_selection_of,
    render_crop,
)
from vecexplore.eval.outcomes import COUNTED, OBJECT_OUTCOMES

# ---------------------------------------------------------------- pure state and events

#: objects-table rows → image: 8 objects on 4 images
OBJ_IMAGE = np.array([0, 0, 1, 2, 2, 2, 3, 1], np.int64)


def _state(**kw) -> st.SessionState:
    return st.SessionState(iou=0.5, confidence=0.3, num_images=5, object_image=OBJ_IMAGE, **kw)


def test_an_object_pick_selects_its_objects_and_their_images():
    s = ev.reduce(_state(), ev.Select(np.zeros(0, np.int64), "objects", objects=np.array([5, 2, 3, 2])))
    assert s.objects.tolist() == [2, 3, 5] and s.pick.tolist() == [1, 2]
    assert s.pick_how == "objects" and s.history[-1].objects.tolist() == [2, 3, 5]


@pytest.mark.parametrize(("mode", "want"), [
    ("replace", [4, 6]), ("add", [2, 3, 4, 5, 6]), ("intersect", [4]), ("subtract", [2, 3, 5]),
])
def test_object_picks_combine_on_objects(mode, want):
    s = ev.reduce(_state(), ev.Select(np.zeros(0, np.int64), "a", objects=np.array([2, 3, 4, 5])))
    s = ev.reduce(s, ev.Select(np.zeros(0, np.int64), "b", objects=np.array([4, 6]), mode=mode))
    assert s.objects.tolist() == want
    assert s.pick.tolist() == sorted(set(OBJ_IMAGE[want].tolist()))


def test_an_object_pick_combines_with_an_image_pick_through_the_images_objects():
    s = ev.reduce(_state(), ev.Select(np.array([2]), "image 2"))  # objects 3, 4, 5 are on image 2
    assert s.objects is None
    s = ev.reduce(s, ev.Select(np.zeros(0, np.int64), "b", objects=np.array([4, 7]), mode="intersect"))
    assert s.objects.tolist() == [4] and s.pick.tolist() == [2]
    s = ev.reduce(s, ev.Select(np.array([0, 3]), "images"))  # an image pick drops the object pick
    assert s.objects is None and s.pick.tolist() == [0, 3]


def test_subtracting_objects_from_nothing_picked_starts_from_every_object():
    s = ev.reduce(_state(), ev.Select(np.zeros(0, np.int64), "b", objects=np.array([0, 1, 7]), mode="subtract"))
    assert s.objects.tolist() == [2, 3, 4, 5, 6] and s.pick.tolist() == [1, 2, 3]


def test_back_and_forward_restore_object_picks():
    s = ev.reduce(_state(), ev.Select(np.zeros(0, np.int64), "a", objects=np.array([6])))
    s = ev.reduce(s, ev.Select(np.array([1]), "image 1"))
    s = ev.reduce(s, ev.Back())
    assert s.objects.tolist() == [6] and s.pick.tolist() == [3]
    s = ev.reduce(s, ev.Forward())
    assert s.objects is None and s.pick.tolist() == [1]


def test_level_and_opened_object_are_state_with_their_own_aspects():
    s0 = _state()
    s1 = ev.reduce(s0, ev.SetLevel("objects"))
    assert s1.level == "objects" and ev.changed_aspects(s0, s1) == {"level"}
    s2 = ev.reduce(s1, ev.OpenImage(2, object_row=4))
    assert (s2.detail, s2.detail_object) == (2, 4) and ev.changed_aspects(s1, s2) == {"detail"}
    with pytest.raises(ValueError, match="unknown level"):
        ev.reduce(s0, ev.SetLevel("pixels"))


def test_a_run_without_an_object_map_refuses_the_object_level_and_object_picks():
    s = st.SessionState(iou=0.5, confidence=0.3, num_images=5)
    with pytest.raises(ValueError, match="no object map"):
        ev.reduce(s, ev.SetLevel("objects"))
    with pytest.raises(ValueError, match="no object map"):
        ev.reduce(s, ev.Select(np.zeros(0, np.int64), "x", objects=np.array([1])))


def test_box_in_tile_is_the_box_as_fractions_of_its_window():
    got = box_in_tile(np.array([10.0, 20, 50, 60]), np.array([20.0, 30, 40, 50]))
    np.testing.assert_allclose(got, [0.25, 0.25, 0.75, 0.75])
    np.testing.assert_allclose(box_in_tile(np.array([0.0, 0, 10, 10]), np.array([-5.0, 2, 12, 8])), [0, 0.2, 1, 0.8])


@pytest.mark.parametrize(("window", "size", "want"), [
    ((0, 0, 800, 800), (1000, 800), "thumb"),   # 800 px of a 1000 px image → 128 thumbnail px
    ((0, 0, 100, 100), (1000, 800), "image"),   # 16 thumbnail px: cut from the image
    ((0, 0, 100, 100), (0, 0), "image"),        # unknown size
])
def test_crop_source(window, size, want):
    assert crop_source(np.array(window, float), size, 160) == want


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_render_crop_is_the_window_of_any_decode_scale(seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = np.kron(rng.integers(1, 255, (30, 40, 3)), np.ones((8, 8, 1))).astype(np.uint8)  # 240 × 320, blocky
    full = Image.fromarray(arr)
    window = np.array([40.0, 16, 200, 176])  # on the 8-px grid
    ref = np.asarray(Image.open(io.BytesIO(render_crop(full, window, (320, 240), side=80))), np.float64)
    half = full.resize((160, 120), Image.Resampling.NEAREST)
    got = np.asarray(Image.open(io.BytesIO(render_crop(half, window, (320, 240), side=80))), np.float64)
    assert got.shape == ref.shape == (80, 80, 3)
    assert np.abs(got - ref).mean() < 12  # the same window, whatever size it was decoded at (JPEG noise)
    outside = np.asarray(Image.open(io.BytesIO(render_crop(full, np.array([-100.0, -100, 0, 0]), (320, 240),
                                                           side=32))))
    assert outside.max() < 20  # outside the image is black, as the embedded crops


# ---------------------------------------------------------------- on the session's demo run


@pytest.fixture(scope="module")
def omap(det):
    assert det.object_map is not None, "the demo run is built at --level auto = both"
    return det.object_map


def test_object_outcomes_at_the_build_point_are_the_runs_objects_table(det, omap):
    oo = object_outcomes(det.base, omap)
    stored = det.run.objects["outcome"].astype(str).to_numpy()
    assert [OBJECT_OUTCOMES[c] for c in oo.code] == stored.tolist()
    err = np.isin(stored, ["fn", "confused", "fp_duplicate", "fp_class", "fp_localization", "fp_both",
                           "fp_background"])
    assert oo.error.tolist() == err.astype(float).tolist()
    below = stored == "below_threshold"
    assert np.isnan(oo.score[: omap.num_gt]).all() and np.isnan(oo.score[below]).all()


def test_object_outcomes_follow_the_operating_point(det, omap):
    ev_hi = det.evaluation(confidence=0.9)
    oo = object_outcomes(ev_hi, omap)
    pred = np.arange(omap.num_gt, len(omap))
    below = omap.score[pred] < 0.9
    assert below.any() and (~below).any()
    assert all(OBJECT_OUTCOMES[c] == "below_threshold" for c in oo.code[pred[below]])
    counted = ev_hi.outcomes.pred_code < COUNTED  # TP or an FP type
    np.testing.assert_array_equal(oo.score[pred[counted]], omap.score[pred[counted]])
    assert np.isnan(oo.score[pred[~counted]]).all()


def test_object_selection_filters_picked_objects_by_image_filters_and_object_class(omap):
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(omap), 200, replace=False))
    universe = rng.random(int(omap.image_idx.max()) + 1) < 0.5
    cls = (int(omap.class_idx[pick[0]]),)
    got = object_selection_of(pick, None, omap, classes=cls, universe=universe)
    want = [r for r in pick if universe[omap.image_idx[r]] and omap.class_idx[r] == cls[0]]
    assert got.tolist() == want
    images = np.array([1, 5, 9])
    got = object_selection_of(None, images, omap)
    assert got.tolist() == [r for r in range(len(omap)) if omap.image_idx[r] in images and omap.mapped[r]]
    assert object_selection_of(None, None, omap) is None


def test_cell_rows_are_the_cells_objects(det, omap):
    cm = det.base.confusion
    ds = det.dataset
    size = cm.counts.shape[0]
    total = 0
    for i in range(size):
        for j in range(size):
            rows = cell_rows(cm, i, j, ds)
            ids = cm.cell_objects(i, j)
            gt, pred = rows[rows < omap.num_gt], rows[rows >= omap.num_gt] - omap.num_gt
            assert sorted(ds.gt.object_id[gt].tolist()) == sorted(ids.gt.tolist())
            assert sorted(ds.pred.object_id[pred].tolist()) == sorted(ids.pred.tolist())
            assert set(omap.image_idx[rows].tolist()) == set(cm.cell_images(i, j).tolist())
            if j == size - 1 and i < size - 1:
                assert len(rows) == cm.counts[i, j]  # a miss cell: one GT object per count
            total += len(rows)
    assert total > 0


# ---------------------------------------------------------------- the page, on a bare Document


@pytest.fixture()
def page(det):
    from vecexplore.app.document import build_document

    doc = Document()
    session = build_document(doc, det, url_base="/vx/test")
    return doc, session


def test_the_level_switch_shows_objects_in_scatter_gallery_and_slice_table(page, omap):
    doc, s = page
    scatter, gallery, clusters = s.view("scatter"), s.view("gallery"), s.view("clusters")
    assert doc.get_model_by_name("level") is not None and doc.get_model_by_name("map-title").text == "Map"
    assert scatter.renderer.visible and not scatter.object_renderer.visible
    assert len(scatter.objects.data["row"]) == 0  # objects are sent with the first switch, not before
    doc.get_model_by_name("level").value = "objects"  # what choosing "Objects" does
    assert s.state.level == "objects"
    assert scatter.object_renderer.visible and not scatter.renderer.visible
    assert scatter.lasso.renderers == [scatter.object_renderer]
    np.testing.assert_array_equal(scatter.objects.data["row"], omap.points)
    codes = object_outcomes(s.derived.evaluation, omap).code[omap.points]
    np.testing.assert_array_equal(scatter.objects.data["c"], codes.astype(np.float32))
    urls = gallery.source.data["url"]
    rows = [int(u.rsplit("/", 1)[1]) for u in urls]
    assert urls and all(u.startswith("/vx/test/crop/") for u in urls)
    err = s.derived.object_outcomes.error
    assert set(rows) <= set(omap.points.tolist())
    assert list(err[rows]) == sorted(err[rows], reverse=True)  # worst first
    if (err[omap.points] > 0).sum() >= len(rows):
        assert (err[rows] == 1).all()
    doc.get_model_by_name("tabs").active = [t.name for t in s.tab_views].index("clusters")
    assert clusters.object_table.visible and not clusters.table.visible
    doc.get_model_by_name("level").value = "images"
    assert s.state.level == "images" and scatter.renderer.visible and clusters.table.visible


def test_an_object_lasso_fills_the_gallery_with_its_crops_and_a_crop_opens_its_image(page, omap):
    from test_app_document import tap

    doc, s = page
    scatter, gallery, detail = s.view("scatter"), s.view("gallery"), s.view("detail")
    doc.get_model_by_name("level").value = "objects"
    scatter.objects.selected.indices = [3, 1, 7, 20]  # a lasso over four object points
    want = sorted(omap.points[[1, 3, 7, 20]].tolist())
    assert s.state.objects.tolist() == want
    assert s.state.pick.tolist() == sorted(set(omap.image_idx[want].tolist()))
    rows = [int(u.rsplit("/", 1)[1]) for u in gallery.source.data["url"]]
    assert sorted(rows) == want and gallery.caption.text.startswith("4 objects")
    # the header and the matrix follow the images of the object selection
    assert f"Selection ({len(s.state.pick):,} images)" in s.view("confusion").caption.text
    k = 2
    row = rows[k]
    cols = s.state.gallery_shape[0]
    tap(gallery.figure, (k % cols) + 0.5, -(k // cols) * 1.32 - 0.5)
    assert s.state.detail == int(omap.image_idx[row]) and s.state.detail_object == row
    x, y, _w, h = omap.xywh[row]
    focus = detail.focus.data
    assert list(focus["left"]) == [x] and list(focus["bottom"]) == [y + h]
    assert f"object {row}" in detail.info.text
    assert gallery.source.selected.indices == [k]  # the opened crop is outlined


def test_a_matrix_cell_at_the_object_level_selects_the_cells_objects(page, omap, det):
    from test_app_document import tap

    doc, s = page
    doc.get_model_by_name("level").value = "objects"
    cm = det.base.confusion
    size = cm.counts.shape[0]
    i = int(np.argmax(cm.counts[:-1, -1]))  # the class with the most misses
    tap(s.view("confusion").figure, size - 1, i)
    rows = cell_rows(s.derived.evaluation.confusion, i, size - 1, det.dataset)
    assert s.state.objects.tolist() == rows.tolist() and len(rows) == cm.counts[i, -1]
    assert all(b.endswith("· fn") for b in s.view("gallery").source.data["badge"])
    doc.get_model_by_name("level").value = "images"
    tap(s.view("confusion").figure, size - 1, i)  # at the image level: the cell's images
    assert s.state.objects is None and s.state.pick.tolist() == cm.cell_images(i, size - 1).tolist()


def test_an_object_slice_row_selects_its_objects(page, omap):
    doc, s = page
    if len(omap.slices) == 0:
        pytest.fail("the demo run has no object slice to click")
    doc.get_model_by_name("level").value = "objects"
    doc.get_model_by_name("tabs").active = [t.name for t in s.tab_views].index("clusters")
    s.view("clusters").object_source.selected.indices = [0]
    want = sorted(omap.slices.iloc[0]["object_idx"])
    assert s.state.objects.tolist() == want and s.state.pick_how == "object slice 1"


def test_exporting_an_object_selection_writes_only_those_objects_and_their_crops(page, omap, det):
    from pycocotools.coco import COCO
    from test_app_document import click

    doc, s = page
    doc.get_model_by_name("level").value = "objects"
    rng = np.random.default_rng(3)
    rows = np.sort(rng.choice(len(omap), 25, replace=False))
    rows = np.r_[rows, omap.num_gt + 1, 0]  # at least one prediction and one GT
    s.emit(ev.Select(np.zeros(0, np.int64), "picked", objects=rows))
    exp = s.view("export")
    assert "coco-crops" in [v for v, _ in exp.format.options]
    exp.format.value = "coco-crops"
    click(exp.button)
    e = s.state.export
    assert not e.error, e.text
    sel = s.derived.object_selection
    z = zipfile.ZipFile(e.path)
    gt = json.loads(z.read("annotations.json"))
    res = json.loads(z.read("predictions.json"))
    ds = det.dataset
    g, p = sel[sel < omap.num_gt], sel[sel >= omap.num_gt] - omap.num_gt
    assert sorted(a["id"] for a in gt["annotations"]) == sorted(ds.gt.object_id[g].tolist())
    assert sorted(r["id"] for r in res) == sorted(ds.pred.object_id[p].tolist())
    images = set(ds.images.image_id[np.unique(omap.image_idx[sel])].tolist())
    assert {im["id"] for im in gt["images"]} == images
    crops = [n for n in z.namelist() if n.startswith("crops/")]
    assert len(crops) == len(sel)
    path = det.run.path / "exports" / "subset.json"
    path.write_text(json.dumps(gt))
    coco = COCO(str(path))  # pycocotools loads the subset and its results
    if res:
        coco.loadRes(res)
    path.unlink()


def test_object_crops_equal_the_pipelines_cutter(det, omap):
    from PIL import Image

    from vecexplore.embed.crops import CropConfig, cut_crops
    from vecexplore.export import image_paths, object_crops
    from vecexplore.io.images import open_rgb

    rows = omap.points[:12]
    got = dict(object_crops(det.run, rows))
    assert len(got) == len(rows)
    paths = image_paths(det.run)
    cfg = CropConfig(*omap.crop)
    ds = det.dataset
    for r in rows.tolist():
        i = int(omap.image_idx[r])
        x, y, w, h = omap.xywh[r]
        ref = cut_crops(open_rgb(paths[i]), np.array([[x, y, x + w, y + h]]), cfg)[0]
        kind, oid = ("gt", ds.gt.object_id[r]) if r < omap.num_gt else ("pred", ds.pred.object_id[r - omap.num_gt])
        name = next(n for n in got if n.startswith(f"{kind}-{int(oid)}_image-{int(ds.images.image_id[i])}_"))
        img = Image.open(io.BytesIO(got[name]))
        assert img.size == ref.size
        np.testing.assert_array_equal(np.asarray(img), np.asarray(ref))  # PNG: the very pixels


def test_coco_with_crops_needs_an_object_selection(page):
    from test_app_document import click

    _doc, s = page
    s.select(np.array([1, 2, 3]), "images")
    exp = s.view("export")
    exp.format.value = "coco-crops"
    click(exp.button)
    assert s.state.export.error and "switch the map to Objects" in s.state.export.text


def test_object_exports_refuse_rows_outside_the_table(det, omap):
    from vecexplore.errors import ConfigError
    from vecexplore.export import object_coco_files

    with pytest.raises(ConfigError, match=f"object row {len(omap)} is not in this run"):
        object_coco_files(det.run, np.array([0, len(omap)]))
    with pytest.raises(ConfigError, match="empty"):
        object_coco_files(det.run, np.zeros(0, np.int64))


def test_the_crop_route_serves_the_objects_window(det, omap):
    from PIL import Image
    from test_app_routes import _get, _tornado

    from vecexplore.app.routes import RunFiles, parse_object_row, route_patterns

    assert parse_object_row("3", 10) == 3
    for bad in ("10", "-1", "03", "1.0", "../1", "", None):
        assert parse_object_row(bad, 10) is None
    files = RunFiles(det)
    row = int(omap.points[0])
    first = files.crop(row)
    assert files.crop(row) is first  # cached
    with _tornado(route_patterns(det, url_base="/vx/r")) as port:
        status, headers, body = _get(port, f"/vx/r/crop/{row}")
        assert status == 200 and headers["content-type"] == "image/jpeg" and headers["etag"]
        assert Image.open(io.BytesIO(body)).size == (128, 128)
        assert _get(port, f"/vx/r/crop/{row}", {"If-None-Match": headers["etag"]})[0] == 304
        assert _get(port, f"/vx/r/crop/{len(omap)}")[0] == 404
        assert _get(port, "/vx/r/crop/x")[0] == 404
    i = int(omap.image_idx[row])
    window, _ = crop_box(omap, row, int(det.images.width[i]), int(det.images.height[i]))
    from vecexplore.io.images import open_rgb

    ref = Image.open(io.BytesIO(render_crop(open_rgb(det.image_path(i)), window,
                                            (int(det.images.width[i]), int(det.images.height[i])))))
    got = Image.open(io.BytesIO(body))
    assert np.abs(np.asarray(got, np.float64) - np.asarray(ref, np.float64)).mean() < 25  # maybe from the thumb
