"""Masks in: COCO ``segmentation`` (polygons, RLE, compressed RLE, crowd) and YOLO-seg
lines → ``Boxes.rle``; bad masks refused naming file and record; masks out (COCO,
YOLO-seg, the run store); outcomes and the CLI with mask IoU."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pycocotools")
from pycocotools import mask as mu

from vecexplore.cli import main
from vecexplore.errors import ConfigError, InputError
from vecexplore.eval.evaluate import evaluate
from vecexplore.io.coco import coco_to_dataset, load_coco, to_coco_gt, to_coco_results
from vecexplore.io.masks import rle_polygons, rle_string_problem
from vecexplore.io.yolo import load_yolo, write_yolo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from segm_synth import make_segm_case

H, W = 20, 30


def _gt(seg, *, iscrowd=0, extra=None):
    anns = [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1.0, 1.0, 5.0, 5.0], "area": 20.0,
             "iscrowd": iscrowd, "segmentation": seg}]
    if extra is not None:
        anns.append(extra)
    return {"images": [{"id": 1, "file_name": "a.jpg", "width": W, "height": H}],
            "categories": [{"id": 1, "name": "a"}], "annotations": anns}


GOOD_POLY = [[1, 1, 6, 1, 6, 6, 1, 6]]
BAD_GT = [
    ("odd-coordinates", [[1, 1, 6, 1, 6]], "odd number of coordinates"),
    ("two-points", [[1, 1, 6, 1]], "needs at least 3"),
    ("empty-polygon-list", [[]], "needs at least 3"),
    ("non-numeric", [[1, 1, 6, "x", 6, 6]], "non-numeric"),
    ("not-a-list", [5], "must be a list of coordinates"),
    ("rle-size-wrong", {"size": [H + 1, W], "counts": [H * W + W]}, "disagrees with the image"),
    ("rle-size-missing", {"counts": [H * W]}, "RLE size must be"),
    ("rle-sum-wrong", {"size": [H, W], "counts": [10, 5]}, f"not height \\* width = {H * W}"),
    ("rle-negative", {"size": [H, W], "counts": [H * W + 5, -5]}, ">= 0"),
    ("rle-float", {"size": [H, W], "counts": [100.5, 499.5]}, "list of integers"),
    ("rle-string-sum", {"size": [H, W], "counts": "52"}, "sum to"),
    ("rle-string-char", {"size": [H, W], "counts": "5~2"}, "invalid character"),
    ("rle-string-truncated", {"size": [H, W], "counts": "Q"}, "middle of a value"),
    ("rle-counts-type", {"size": [H, W], "counts": 5}, "list of integers or a string"),
    ("segmentation-type", "abc", "list of polygons or an RLE"),
]


@pytest.mark.parametrize("case,seg,message", BAD_GT, ids=[c[0] for c in BAD_GT])
def test_bad_gt_mask_is_refused_naming_file_and_record(case, seg, message):
    with pytest.raises(InputError, match=message) as err:
        coco_to_dataset(_gt(seg), [], gt_name="gt.json")
    assert "gt.json" in str(err.value) and "annotations[0] (id 7)" in str(err.value)


def test_masks_on_only_some_records_are_not_used(caplog):
    extra = {"id": 8, "image_id": 1, "category_id": 1, "bbox": [1.0, 1.0, 2.0, 2.0], "area": 4.0, "iscrowd": 0}
    with caplog.at_level("WARNING"):
        ds = coco_to_dataset(_gt(GOOD_POLY, extra=extra), [], gt_name="gt.json")
    assert ds.gt.rle is None
    assert "annotations[1] (id 8) has no segmentation" in caplog.text


def test_box_only_exports_with_empty_segmentation_are_box_datasets():
    gt = _gt([])
    ds = coco_to_dataset(gt, [])
    assert ds.gt.rle is None


def test_mask_on_image_of_unknown_size_is_refused():
    gt = _gt(GOOD_POLY)
    del gt["images"][0]["width"], gt["images"][0]["height"]
    with pytest.raises(InputError, match="size is unknown"):
        coco_to_dataset(gt, [], gt_name="gt.json")


def test_bad_prediction_mask_names_the_result():
    results = [{"image_id": 1, "category_id": 1, "score": 0.5, "bbox": [1.0, 1.0, 2.0, 2.0],
                "segmentation": {"size": [H, W], "counts": [1, 2]}}]
    with pytest.raises(InputError, match=r"preds.json.*\[0\].*sum to 3"):
        coco_to_dataset(_gt(GOOD_POLY), results, pred_name="preds.json")
    results = [{"image_id": 1, "category_id": 1, "score": 0.5, "segmentation": [[40, 40, 50, 40, 50, 50]]}]
    with pytest.raises(InputError, match="mask is empty"):  # no bbox and no pixel: nothing to rank it by
        coco_to_dataset(_gt(GOOD_POLY), results, pred_name="preds.json")


def test_every_encoding_gives_pycocotools_rle():
    rng = np.random.default_rng(1)
    for _ in range(20):
        m = np.asfortranarray((rng.random((H, W)) < 0.3).astype(np.uint8))
        rle = mu.encode(m)
        flat = m.ravel(order="F")
        bounds = np.r_[0, np.flatnonzero(np.diff(flat)) + 1, flat.size]
        counts = ([0] if flat[0] else []) + np.diff(bounds).tolist()
        for seg in ({"size": [H, W], "counts": counts}, {"size": [H, W], "counts": rle["counts"].decode()}):
            ds = coco_to_dataset(_gt(seg, iscrowd=1), [])
            np.testing.assert_array_equal(mu.decode(ds.gt.rle[0]), m)
    ds = coco_to_dataset(_gt(GOOD_POLY), [])
    want = mu.merge(mu.frPyObjects(GOOD_POLY, H, W))
    assert ds.gt.rle[0]["counts"] == want["counts"]


@pytest.mark.parametrize("seed", range(3))
def test_rle_string_checker_accepts_every_pycocotools_string(seed):
    rng = np.random.default_rng(seed)
    for _ in range(100):
        h, w = (int(v) for v in rng.integers(1, 80, 2))
        m = np.asfortranarray((rng.random((h, w)) < rng.random()).astype(np.uint8))
        s = mu.encode(m)["counts"]
        assert rle_string_problem(s, h, w) is None
        assert rle_string_problem(s, h, w + 1) is not None
        if len(s) > 1:
            assert rle_string_problem(s[:-1] + b"~", h, w) is not None


def test_coco_export_keeps_masks_and_reloads_equal():
    gt, results = make_segm_case(4, num_images=4, num_classes=2, bbox="yes")
    ds = coco_to_dataset(gt, results, clip=False)
    gt2, res2 = to_coco_gt(ds), to_coco_results(ds)
    json.dumps(gt2), json.dumps(res2)  # JSON-able (counts as text)
    ds2 = coco_to_dataset(gt2, res2, clip=False)
    for a, b in ((ds.gt, ds2.gt), (ds.pred, ds2.pred)):
        assert [r["counts"] for r in a.rle] == [r["counts"] for r in b.rle]
    assert evaluate(ds2).coco_segm.as_dict() == evaluate(ds).coco_segm.as_dict()


def _yolo_images(d: Path):
    (d / "images").mkdir()
    Image.new("RGB", (100, 80)).save(d / "images" / "a.jpg")
    return d / "images"


def test_yolo_seg_labels_and_predictions(tmp_path):
    images = _yolo_images(tmp_path)
    (tmp_path / "labels").mkdir()
    (tmp_path / "pred").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5\n1 0.6 0.6 0.9 0.6 0.9 0.9\n")
    (tmp_path / "pred" / "a.txt").write_text("0 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5 0.9\n1 0.6 0.6 0.9 0.6 0.6 0.9 0.8\n")
    ds = load_yolo(images=images, names={0: "a", 1: "b"}, gt=tmp_path / "labels", pred=tmp_path / "pred")
    want = mu.merge(mu.frPyObjects([[10.0, 8.0, 50.0, 8.0, 50.0, 40.0, 10.0, 40.0]], 80, 100))
    assert ds.gt.rle[0]["counts"] == want["counts"]
    np.testing.assert_array_equal(ds.gt.area, mu.area(list(ds.gt.rle)))
    ev = evaluate(ds)
    assert ev.iou_type == "segm"
    assert ev.totals["tp"] == 1  # the square matches; the two triangles overlap by half (mask IoU < 0.5)
    assert evaluate(ds, iou_type="bbox").totals["tp"] == 2  # their boxes are the same
    out = write_yolo(ds, tmp_path / "export", link="none")
    back = load_yolo(images=images, names={0: "a", 1: "b"}, gt=out / "labels", pred=out / "predictions")
    iou = mu.iou(list(ds.gt.rle), list(back.gt.rle), [0, 0])
    assert np.diag(iou).min() > 0.99  # outlines traced from the mask: the same pixels up to the edges


@pytest.mark.parametrize("line,message", [
    ("0 0.1 0.1 0.5 0.1 0.5 0.5 0.1", "odd number of coordinates"),
    ("0 0.1 0.1 0.5 0.1 0.5 nan", "non-finite"),
])
def test_yolo_bad_segment_is_refused(tmp_path, line, message):
    images = _yolo_images(tmp_path)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n" + line + "\n")
    with pytest.raises(InputError, match=message) as err:
        load_yolo(images=images, names={0: "a"}, gt=tmp_path / "labels")
    assert "a.txt" in str(err.value) and "line 2" in str(err.value)


def test_segm_outcomes_equal_bbox_outcomes_when_masks_are_the_boxes():
    """Integer boxes drawn as rectangular masks: mask IoU == box IoU, so every outcome agrees."""
    rng = np.random.default_rng(5)
    images, anns, results = [], [], []
    for img in range(1, 9):
        images.append({"id": img, "file_name": f"{img}.jpg", "width": 64, "height": 48})
        for _ in range(int(rng.integers(0, 6))):
            x, y = (int(v) for v in rng.integers(0, 40, 2))
            w, h = (int(v) for v in rng.integers(2, 20, 2))
            w, h = min(w, 64 - x), min(h, 48 - y)
            cat = int(rng.integers(1, 4))
            anns.append({"id": len(anns) + 1, "image_id": img, "category_id": cat, "bbox": [x, y, w, h],
                         "area": float(w * h), "iscrowd": int(rng.random() < 0.1),
                         "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
            for _ in range(int(rng.integers(0, 3))):
                dx, dy = (int(v) for v in rng.integers(-2, 3, 2))
                bx, by = max(x + dx, 0), max(y + dy, 0)
                bw, bh = min(w, 64 - bx), min(h, 48 - by)
                c = cat if rng.random() < 0.8 else int(rng.integers(1, 4))
                results.append({"image_id": img, "category_id": c, "bbox": [bx, by, bw, bh],
                                "score": float(np.round(rng.random(), 1)),
                                "segmentation": [[bx, by, bx + bw, by, bx + bw, by + bh, bx, by + bh]]})
    gt = {"images": images, "annotations": anns, "categories": [{"id": i, "name": f"c{i}"} for i in (1, 2, 3)]}
    ds = coco_to_dataset(gt, results, clip=False)
    for iou in (0.5, 0.75):
        seg, box = evaluate(ds, iou=iou, confidence=0.3), evaluate(ds, iou=iou, confidence=0.3, iou_type="bbox")
        assert seg.iou_type == "segm" and box.iou_type == "bbox"
        np.testing.assert_array_equal(seg.outcomes.pred_code, box.outcomes.pred_code)
        np.testing.assert_array_equal(seg.outcomes.gt_code, box.outcomes.gt_code)
        np.testing.assert_array_equal(seg.confusion.counts, box.confusion.counts)
        np.testing.assert_allclose(seg.coco_segm.stats, box.coco.stats, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_segm_confusion_matrix_invariants(seed):
    gt, results = make_segm_case(300 + seed, num_images=6, num_classes=3, bbox="yes")
    ds = coco_to_dataset(gt, results, clip=False)
    ev = evaluate(ds, confidence=0.2)
    assert ev.iou_type == "segm"
    cm = ev.confusion.counts
    k = len(ds.categories)
    n_gt = np.bincount(ds.gt.class_idx[~ds.gt.iscrowd], minlength=k)
    np.testing.assert_array_equal(cm[:k].sum(axis=1), n_gt)
    from vecexplore.eval.outcomes import PredOutcome

    counted = (ds.pred.score >= ev.confidence) & (ev.outcomes.pred_code != PredOutcome.IGNORED)
    np.testing.assert_array_equal(cm[:, :k].sum(axis=0), np.bincount(ds.pred.class_idx[counted], minlength=k))
    assert (ev.outcomes.pred_code == PredOutcome.TP).any()  # the case exercises matches, not only misses


def test_iou_type_segm_without_masks_is_a_config_error():
    gt, results = make_segm_case(3, num_images=2, num_classes=1, bbox="yes")
    for r in results:
        r.pop("segmentation")
    ds = coco_to_dataset(gt, results, clip=False)
    assert evaluate(ds).iou_type == "bbox"
    with pytest.raises(ConfigError, match="needs masks"):
        evaluate(ds, iou_type="segm")


def run_cli(args):
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
        except SystemExit as exc:
            code = exc.code or 0
    return code, out.getvalue(), err.getvalue()


def test_cli_evaluate_json_has_coco_segm(tmp_path):
    gt, results = make_segm_case(8, num_images=10, num_classes=3, bbox="yes")
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(results))
    code, out, err = run_cli(["evaluate", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json"),
                              "--no-clip", "--json", str(tmp_path / "m.json")])
    assert code == 0, err
    doc = json.loads((tmp_path / "m.json").read_text())
    assert list(doc["coco_segm"]) == list(doc["coco"])
    assert doc["operating_point"]["iou_type"] == "segm"
    assert all("segm_AP" in r and "segm_AP50" in r for r in doc["per_class"])
    ds = load_coco(tmp_path / "gt.json", tmp_path / "pred.json", clip=False, check_images=False)
    ev = evaluate(ds)
    assert doc["coco_segm"]["AP"] == pytest.approx(ev.coco_segm.as_dict()["AP"], abs=1e-12)
    assert "COCO masks" in out and "mask IoU" in out
    code, out, err = run_cli(["evaluate", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json"),
                              "--no-clip", "--iou-type", "bbox", "--json", str(tmp_path / "b.json")])
    assert code == 0, err
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["operating_point"]["iou_type"] == "bbox" and b["coco_segm"] == doc["coco_segm"]


def test_cli_bad_mask_exits_2_without_traceback(tmp_path):
    gt = _gt([[1, 1, 6, 1, 6]])
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text("[]")
    code, out, err = run_cli(["evaluate", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json")])
    assert code == 2
    assert "Traceback" not in out + err
    assert "odd number of coordinates" in out + err and "annotations[0] (id 7)" in out + err


def test_rle_polygons_trace_the_mask():
    m = np.zeros((H, W), np.uint8)
    m[2:8, 3:12] = 1
    m[12:18, 20:28] = 1
    polys = rle_polygons(mu.encode(np.asfortranarray(m)))
    assert len(polys) == 2
    back = mu.merge(mu.frPyObjects([(p + 0.5).ravel().tolist() for p in polys], H, W))
    assert mu.iou([back], [mu.encode(np.asfortranarray(m))], [0])[0, 0] > 0.7
    assert rle_polygons(mu.encode(np.asfortranarray(np.zeros((H, W), np.uint8)))) == []


def test_boxes_rle_is_checked_and_sliced_with_the_rows():
    from vecexplore.errors import ValidationError
    from vecexplore.types import Boxes

    rle = mu.encode(np.asfortranarray(np.ones((4, 4), np.uint8)))
    with pytest.raises(ValidationError, match=r"boxes\.rle: expected length 2"):
        Boxes(image_idx=[0, 0], class_idx=[0, 0], xywh=[[0, 0, 4, 4]] * 2, object_id=[1, 2], rle=[rle])
    b = Boxes(image_idx=[0, 0], class_idx=[0, 1], xywh=[[0, 0, 4, 4]] * 2, object_id=[1, 2], rle=[rle, dict(rle)])
    assert b.has_masks and len(b[np.array([False, True])].rle) == 1
    assert b[np.array([1])].rle[0] is b.rle[1]


@pytest.mark.parametrize("n", [1, 255, 256, 600])
def test_mask_areas_of_many_masks_match_one_at_a_time(n):
    """pycocotools 2.0.11 ``area`` of >= 256 masks at once overflows a uint8 under NumPy 2."""
    from pycocotools import mask as mu

    from vecexplore.io.masks import mask_areas

    rng = np.random.default_rng(n)
    rles = []
    for _ in range(n):
        x, y = rng.uniform(0, 30, 2)
        w, h = rng.uniform(1, 30, 2)
        rles.append(mu.frPyObjects([[x, y, x + w, y, x + w, y + h, x, y + h]], 64, 64)[0])
    expected = np.array([float(mu.area(r)) for r in rles])
    np.testing.assert_array_equal(mask_areas(np.array(rles, dtype=object)), expected)
