"""Instance-segmentation metrics: differential tests against pycocotools ``COCOeval(..., "segm")``.

Random cases (polygon, uncompressed-RLE and crowd-RLE ground truth; compressed-RLE
and polygon results, with and without ``bbox``; tied scores; images with more
than 100 detections) are read by our COCO loader and by pycocotools; the 12
stats, the precision / recall / scores arrays and per-class AP must agree
within 1e-9.
"""

from __future__ import annotations

import contextlib
import copy
import io
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vecexplore.errors import ValidationError
from vecexplore.eval.coco import coco_metrics_of
from vecexplore.eval.segm import has_masks, segm_metrics, segm_metrics_of
from vecexplore.io.coco import coco_to_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from segm_synth import make_segm_case

ATOL = 1e-9


def _pycocotools(gt: dict, results: list, iou_type: str = "segm") -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results)) if results else COCO()
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _compare(gt: dict, results: list, iou_type: str = "segm"):
    ds = coco_to_dataset(gt, results, clip=False)
    assert has_masks(ds)
    ours = segm_metrics_of(ds) if iou_type == "segm" else coco_metrics_of(ds)
    ref = _pycocotools(gt, results, iou_type)
    np.testing.assert_allclose(ours.stats, ref.stats, atol=ATOL, rtol=0)
    for name in ("precision", "recall", "scores"):
        np.testing.assert_allclose(getattr(ours, name), ref.eval[name], atol=ATOL, rtol=0, err_msg=name)
    ref_ap = ref.eval["precision"][:, :, :, 0, -1]
    for k in range(ref_ap.shape[2]):
        col = ref_ap[:, :, k]
        col = col[col > -1]
        want = np.mean(col) if col.size else np.nan
        np.testing.assert_allclose(ours.per_class_ap[k], want, atol=ATOL, rtol=0, equal_nan=True)
    return ours


@pytest.mark.parametrize("seed", range(24))
def test_segm_equals_pycocotools_random(seed):
    gt, results = make_segm_case(seed, p_crowd=0.1 if seed % 3 else 0.4)
    if not results or not gt["annotations"]:
        pytest.skip("degenerate case (pycocotools cannot load empty results)")
    _compare(gt, results)


@pytest.mark.parametrize("seed", range(4))
def test_segm_more_than_100_detections_per_image(seed):
    gt, results = make_segm_case(100 + seed, num_images=3, num_classes=2, many=True, bbox="yes")
    assert max(np.bincount([r["image_id"] for r in results])) > 100
    _compare(gt, results)


@pytest.mark.parametrize("seed", range(4))
def test_segm_mask_only_results_use_mask_area(seed):
    """Results without bbox: pycocotools sets area = mask area and bbox = toBbox(mask)."""
    gt, results = make_segm_case(200 + seed, num_images=5, num_classes=3, bbox="no")
    ds = coco_to_dataset(gt, results, clip=False)
    from pycocotools import mask as mu

    want = [float(mu.area({"size": r["segmentation"]["size"], "counts": r["segmentation"]["counts"].encode()}))
            for r in results]
    np.testing.assert_array_equal(ds.pred.area, want)
    _compare(gt, results)
    _compare(gt, results, iou_type="bbox")  # the same inputs evaluated as boxes


def test_segm_ties_are_broken_like_pycocotools():
    """Identical masks with equal scores in several images: order decides, as pycocotools."""
    gt, results = make_segm_case(7, num_images=4, num_classes=1, bbox="yes")
    for r in results:
        r["score"] = 0.5
    _compare(gt, results)


def test_segm_of_dataset_without_masks_is_none():
    gt, results = make_segm_case(3, num_images=2, num_classes=1, bbox="yes")
    for a in gt["annotations"]:
        a.pop("segmentation")
    ds = coco_to_dataset(gt, results, clip=False)
    assert ds.gt.rle is None and ds.pred.rle is not None
    assert segm_metrics_of(ds) is None
    with pytest.raises(ValidationError, match="no masks"):
        segm_metrics(ds.gt, ds.pred, num_images=ds.num_images, num_classes=len(ds.categories))


def test_segm_differs_from_bbox_where_masks_differ():
    """A detection whose box matches but whose mask does not: TP for bbox, FP for segm."""
    gt = {"images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 40}],
          "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 200.0,
                           "bbox": [0.0, 0.0, 20.0, 20.0],
                           "segmentation": [[0, 0, 20, 0, 0, 20]]}]}  # lower-left triangle of the box
    results = [{"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [0.0, 0.0, 20.0, 20.0],
                "segmentation": [[20, 0, 20, 20, 0, 20]]}]  # the other triangle
    ds = coco_to_dataset(gt, results, clip=False)
    assert coco_metrics_of(ds).as_dict()["AP50"] == pytest.approx(1.0)
    m = _compare(gt, results)
    assert m.as_dict()["AP50"] == 0.0
