"""COCO loading: conventions, clipping, round trips, and agreement with pycocotools."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging

import numpy as np
import pytest
from _io_helpers import (
    assert_same_dataset,
    coco_gt,
    coco_pred,
    make_image,
    write_coco,
    write_json,
)

from vecexplore.io import LoadReport, coco_to_dataset, load_coco, to_coco_gt, to_coco_results


def test_conventions(tmp_path):
    gt_path, pred_path = write_coco(tmp_path)
    ds = load_coco(gt_path, pred_path, images_root=tmp_path)
    assert ds.task == "detection"
    assert ds.images.image_id.tolist() == [100, 101, 102]  # file order
    assert ds.categories.ids.tolist() == [2, 5, 7]  # sorted by id
    assert ds.categories.names.tolist() == ["cat", "bird", "dog"]
    assert ds.gt.object_id.tolist() == [11, 12, 13]
    assert ds.gt.class_idx.tolist() == [0, 2, 1]
    assert ds.gt.image_idx.tolist() == [0, 0, 1]
    assert ds.gt.area.tolist() == [70.0, 5.5 * 6.0, 600.0]  # own area if given, else w*h
    assert ds.gt.iscrowd.tolist() == [False, False, True]
    assert ds.pred.object_id.tolist() == [1, 2, 3]  # loadRes numbering
    assert ds.pred.score.tolist() == [0.9, 0.4, 0.4]  # file order kept (tie-break)
    assert ds.pred.image_idx.tolist() == [0, 1, 2]
    assert ds.images_root == str(tmp_path)
    assert ds.sources == (str(gt_path), str(pred_path))


@pytest.mark.parametrize(
    "pred, ids",
    [
        ([], []),  # a model that predicted nothing
        ({"annotations": coco_pred(), "images": [], "categories": []}, [1, 2, 3]),
        ([dict(p, id=i) for p, i in zip(coco_pred(), (30, 10, 20), strict=True)], [30, 10, 20]),  # own ids kept
        ([dict(coco_pred()[0], id=5), *coco_pred()[1:]], [1, 2, 3]),  # partial ids: renumbered
    ],
)
def test_prediction_forms(tmp_path, pred, ids):
    gt_path, pred_path = write_coco(tmp_path, pred=pred)
    ds = load_coco(gt_path, pred_path, images_root=tmp_path)
    assert ds.pred.object_id.tolist() == ids


@pytest.mark.parametrize("annotations", ["absent", "null", "empty"])
def test_gt_without_annotations(tmp_path, annotations):
    gt = coco_gt()
    if annotations == "absent":
        del gt["annotations"]
    else:
        gt["annotations"] = None if annotations == "null" else []
    gt_path, pred_path = write_coco(tmp_path, gt=gt)
    ds = load_coco(gt_path, pred_path, images_root=tmp_path)
    assert len(ds.gt) == 0 and len(ds.pred) == 3


def test_split_and_scalar_metadata():
    gt = coco_gt()
    gt["images"][0].update(split="train", license=3, coco_url="http://x/0.jpg", nested={"a": 1})
    gt["images"][2].update(split="val", license=1)
    ds = coco_to_dataset(gt, [])
    assert ds.images.split.tolist() == ["train", None, "val"]
    assert set(ds.images.metadata) == {"license", "coco_url"}  # non-scalar 'nested' dropped
    assert ds.images.metadata["license"].tolist() == [3, None, 1]
    assert ds.images.metadata["coco_url"].tolist() == ["http://x/0.jpg", None, None]


def test_missing_sizes_read_from_headers(tmp_path):
    gt = coco_gt()
    for im in gt["images"]:
        del im["width"], im["height"]
    gt_path, pred_path = write_coco(tmp_path, gt=gt, images=False)
    make_image(tmp_path / "img0.png", (40, 30))
    make_image(tmp_path / "img1.jpg", (40, 30), orientation=6)  # rotated 90°: displayed 30 x 40
    (tmp_path / "img2.png").write_bytes(b"not an image")
    gt["images"][1]["file_name"] = "img1.jpg"
    write_json(gt_path, gt)
    report = LoadReport()
    ds = load_coco(gt_path, pred_path, images_root=tmp_path, report=report)
    assert ds.images.width.tolist() == [40, 30, 0]
    assert ds.images.height.tolist() == [30, 40, 0]
    assert report.unreadable == ["img2.png"]


def test_boxes_are_bit_exact():
    rng = np.random.default_rng(0)
    boxes = [[float(v) for v in row] for row in rng.uniform(0.001, 20, (50, 4))]
    gt = coco_gt(size=(1000, 1000))
    gt["annotations"] = [{"id": i + 1, "image_id": 100, "category_id": 2, "bbox": b} for i, b in enumerate(boxes)]
    pred = [{"image_id": 101, "category_id": 5, "bbox": b, "score": 0.5} for b in boxes]
    ds = coco_to_dataset(json.loads(json.dumps(gt)), json.loads(json.dumps(pred)))
    assert ds.gt.xywh.tolist() == boxes and ds.pred.xywh.tolist() == boxes
    assert ds.gt.area.tolist() == [b[2] * b[3] for b in boxes]


def test_border_boxes_are_kept_as_given_by_default(caplog):
    gt = coco_gt()  # images are 64 x 48
    gt["annotations"] += [
        {"id": 20, "image_id": 101, "category_id": 2, "bbox": [-4.0, 40.0, 10.0, 20.0]},
        {"id": 21, "image_id": 101, "category_id": 2, "bbox": [60.0, -1.0, 10.0, 3.0]},
    ]
    pred = [*coco_pred(), {"image_id": 102, "category_id": 2, "bbox": [50.0, 40.0, 20.0, 20.0], "score": 0.3}]
    report = LoadReport()
    with caplog.at_level(logging.WARNING):
        ds = coco_to_dataset(gt, pred, gt_name="gt.json", pred_name="pred.json", report=report)
    assert ds.gt.xywh.tolist() == [a["bbox"] for a in gt["annotations"]]
    assert ds.pred.xywh[-1].tolist() == [50.0, 40.0, 20.0, 20.0]
    assert ds.gt.area[-2:].tolist() == [200.0, 30.0]  # no own area: the given box's
    assert not ds.boxes_clipped
    assert report.crossing == {"gt.json": 2, "pred.json": 1} and report.clipped == {}
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [m for m in said if "border" in m or "clip" in m], said  # the count is informational only


def test_clipping_warns_once_per_file(caplog):
    gt = coco_gt()  # images are 64 x 48
    gt["annotations"] += [
        {"id": 20, "image_id": 101, "category_id": 2, "bbox": [-4.0, 40.0, 10.0, 20.0]},
        {"id": 21, "image_id": 101, "category_id": 2, "bbox": [60.0, -1.0, 10.0, 3.0]},
    ]
    pred = [*coco_pred(), {"image_id": 102, "category_id": 2, "bbox": [50.0, 40.0, 20.0, 20.0], "score": 0.3}]
    report = LoadReport()
    with caplog.at_level(logging.WARNING):
        ds = coco_to_dataset(gt, pred, gt_name="gt.json", pred_name="pred.json", report=report, clip=True)
    assert ds.boxes_clipped
    assert ds.gt.xywh[-2:].tolist() == [[0.0, 40.0, 6.0, 8.0], [60.0, 0.0, 4.0, 2.0]]
    assert ds.gt.xywh[:3].tolist() == [a["bbox"] for a in gt["annotations"][:3]]  # inside: untouched
    assert ds.gt.area[-2:].tolist() == [48.0, 8.0]  # no own area: the clipped box's
    assert ds.pred.xywh[-1].tolist() == [50.0, 40.0, 14.0, 8.0]
    assert report.clipped == {"gt.json": 2, "pred.json": 1} == report.crossing
    messages = [r.getMessage() for r in caplog.records if "clipped" in r.getMessage()]
    assert len(messages) == 2
    assert "gt.json: clipped 2 box(es)" in messages[0] and "not pycocotools" in messages[0]
    kept = coco_to_dataset(gt, pred)
    assert kept.gt.xywh[-2:].tolist() == [[-4.0, 40.0, 10.0, 20.0], [60.0, -1.0, 10.0, 3.0]]


def test_unknown_size_is_never_clipped():
    gt = coco_gt()
    gt["images"][1].update(width=0, height=0)
    gt["annotations"].append({"id": 20, "image_id": 101, "category_id": 2, "bbox": [500.0, 500.0, 10.0, 20.0]})
    ds = coco_to_dataset(gt, [])
    assert ds.gt.xywh[-1].tolist() == [500.0, 500.0, 10.0, 20.0]


# ---------------------------------------------------------------- round trips and pycocotools


def _random_coco(seed: int, *, n_images=8, n_gt=40, n_pred=60):
    rng = np.random.default_rng(seed)
    cat_ids = rng.choice(100, size=4, replace=False) + 1
    images = [{"id": int(i), "file_name": f"d/{i}.jpg", "width": int(rng.integers(50, 200)), "height": int(rng.integers(50, 200))}
              for i in rng.choice(10_000, size=n_images, replace=False)]
    if seed % 2:
        for im in images:
            im["split"] = str(rng.choice(["train", "val"]))

    def box(im):
        w, h = rng.uniform(1, im["width"] / 2), rng.uniform(1, im["height"] / 2)
        return [float(rng.uniform(0, im["width"] - w)), float(rng.uniform(0, im["height"] - h)), float(w), float(h)]

    gt_ims = [images[k] for k in rng.integers(0, n_images, n_gt)]
    anns = [{"id": int(aid), "image_id": im["id"], "category_id": int(rng.choice(cat_ids)), "bbox": box(im),
             "iscrowd": int(rng.uniform() < 0.1)} for aid, im in zip(rng.choice(10**6, n_gt, replace=False) + 1, gt_ims, strict=True)]
    for a in anns[::3]:
        a["area"] = float(rng.uniform(1, 100))
    preds = [{"image_id": im["id"], "category_id": int(rng.choice(cat_ids)), "bbox": box(im),
              "score": float(np.round(rng.uniform(), 2))} for im in (images[k] for k in rng.integers(0, n_images, n_pred))]
    cats = [{"id": int(c), "name": f"class{c}"} for c in cat_ids]
    return {"images": images, "annotations": anns, "categories": cats}, preds


@pytest.mark.parametrize("seed", range(6))
def test_round_trip(seed, tmp_path):
    gt, pred = _random_coco(seed)
    ds = coco_to_dataset(gt, pred)
    again = coco_to_dataset(to_coco_gt(ds), to_coco_results(ds))
    assert_same_dataset(ds, again)
    # through files, and restricted to a subset of images
    keep = np.array([5, 1, 2])
    write_json(tmp_path / "gt.json", to_coco_gt(ds, keep))
    write_json(tmp_path / "pred.json", to_coco_results(ds, keep))
    sub = load_coco(tmp_path / "gt.json", tmp_path / "pred.json", check_images=False)
    assert_same_dataset(ds.subset(keep), sub)


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_pycocotools(seed):
    from pycocotools.coco import COCO

    gt, pred = _random_coco(seed)
    ds = coco_to_dataset(gt, pred, clip=False)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = to_coco_gt(ds)  # our writer's output is a valid pycocotools dataset
        coco.createIndex()
        res = coco.loadRes(copy.deepcopy(pred))
    assert sorted(coco.getImgIds()) == sorted(ds.images.image_id.tolist())
    assert coco.getCatIds() == ds.categories.ids.tolist()
    anns = [coco.anns[int(i)] for i in ds.gt.object_id]
    assert [a["bbox"] for a in anns] == ds.gt.xywh.tolist()
    assert [a["area"] for a in anns] == ds.gt.area.tolist()
    assert [a["iscrowd"] for a in anns] == ds.gt.iscrowd.astype(int).tolist()
    assert [a["image_id"] for a in anns] == ds.images.image_id[ds.gt.image_idx].tolist()
    # predictions: loadRes numbers them 1.. in file order and takes area = w * h
    dets = [res.anns[int(i)] for i in ds.pred.object_id]
    assert [d["bbox"] for d in dets] == ds.pred.xywh.tolist()
    assert [d["area"] for d in dets] == ds.pred.area.tolist()
    assert [d["score"] for d in dets] == ds.pred.score.tolist()
    assert [d["category_id"] for d in dets] == ds.categories.ids[ds.pred.class_idx].tolist()


def test_integral_float_ids_are_accepted():
    """Some exporters write ids as 100.0: the record-by-record pass accepts them."""
    gt, pred = coco_gt(), coco_pred()
    gt["annotations"][0]["image_id"] = 100.0
    pred[1]["category_id"] = 5.0
    pred[2]["score"] = 1  # an int score is a number too
    ds = coco_to_dataset(gt, pred)
    expected = coco_to_dataset(coco_gt(), [*coco_pred()[:2], dict(coco_pred()[2], score=1.0)])
    assert_same_dataset(ds, expected)
