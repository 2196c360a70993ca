"""COCO detection metrics: differential tests against pycocotools (the oracle).

Random small cases, each built as COCO dicts (what pycocotools reads) and
converted to our Boxes; every case compares the 12 stats, the full precision /
recall / scores arrays and per-class AP / AP50 within 1e-9.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import sys
from pathlib import Path

import numpy as np
import pytest

from vecexplore.errors import ConfigError, ValidationError
from vecexplore.eval.coco import STAT_NAMES, CocoParams, coco_metrics, coco_metrics_of
from vecexplore.eval.iou import box_iou
from vecexplore.types import Boxes, Categories, Dataset, ImageTable

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

ATOL = 1e-9
FLAVOURS = ("generic", "grid", "crowd", "ties", "many", "sparse", "id0")


# ---------------------------------------------------------------- case generator

def _box(rng, flavour, size=200.0):
    if flavour == "grid":  # integer grid of 8 px: IoUs land exactly on thresholds, areas on 32² / 96²
        x, y = rng.integers(0, 12, 2) * 8.0
        w, h = rng.choice([1, 2, 3, 4, 6, 8, 12, 16], 2) * 8.0
        return [float(x), float(y), float(w), float(h)]
    s = float(np.exp(rng.uniform(np.log(2), np.log(180))))
    ar = float(np.exp(rng.normal(0, 0.5)))
    w, h = max(s * ar, 0.5), max(s / ar, 0.5)
    x, y = rng.uniform(0, size - min(w, size - 1)), rng.uniform(0, size - min(h, size - 1))
    return [float(v) for v in (round(x, 2), round(y, 2), round(w, 2) or 0.01, round(h, 2) or 0.01)]


def _jitter(rng, box, flavour, scale=0.15):
    if flavour == "grid":
        dx, dy, dw, dh = rng.integers(-1, 2, 4) * 8.0
        return [box[0] + dx, box[1] + dy, max(box[2] + dw, 8.0), max(box[3] + dh, 8.0)]
    x, y, w, h = box
    j = rng.normal(0, scale, 4)
    return [float(v) for v in (round(x + j[0] * w, 2), round(y + j[1] * h, 2), max(round(w * (1 + j[2]), 2), 0.01),
                               max(round(h * (1 + j[3]), 2), 0.01))]


def make_case(seed: int, flavour: str):
    """COCO dicts: (gt_dataset, results). Ids are non-contiguous and out of order."""
    rng = np.random.default_rng(seed)
    n_img = int(rng.integers(1, 9))
    n_cls = int(rng.integers(1, 6))
    image_ids = rng.choice(np.arange(1, 5000), n_img, replace=False)
    cat_ids = rng.choice(np.arange(1, 300), n_cls, replace=False)
    gt_classes = cat_ids[: max(1, n_cls - 1)] if n_cls > 2 and rng.random() < 0.5 else cat_ids  # unused category
    p_crowd = {"crowd": 0.4, "generic": 0.08}.get(flavour, 0.05)
    anns, results = [], []
    ann_ids = rng.choice(np.arange(1, 10**6), 400, replace=False).tolist()
    if flavour == "id0":
        ann_ids[: 3] = [0, *ann_ids[1:3]]
        rng.shuffle(ann_ids[:6])
    for img in image_ids:
        n_gt = 0 if rng.random() < 0.2 else int(rng.integers(1, 9 if flavour != "sparse" else 3))
        img_gt = []
        for _ in range(n_gt):
            box = _box(rng, flavour)
            crowd = int(rng.random() < p_crowd)
            if flavour == "grid":
                area = box[2] * box[3]
            else:
                area = box[2] * box[3] * float(rng.uniform(0.4, 1.0))
                if rng.random() < 0.1:
                    area = float(rng.choice([32.0**2, 96.0**2]))
            ann = {"id": int(ann_ids.pop(0)), "image_id": int(img), "category_id": int(rng.choice(gt_classes)),
                   "bbox": box, "area": area, "iscrowd": crowd}
            anns.append(ann)
            img_gt.append(ann)
        if rng.random() < 0.15:
            continue  # no predictions in this image
        for ann in img_gt:
            copies = 0 if rng.random() < 0.25 else 1 + int(rng.random() < 0.3) + int(flavour == "crowd") * 2
            for _ in range(copies):
                cat = ann["category_id"] if rng.random() < 0.85 else int(rng.choice(cat_ids))
                results.append({"image_id": int(img), "category_id": cat, "bbox": _jitter(rng, ann["bbox"], flavour)})
        for _ in range(int(rng.poisson(2 if flavour != "sparse" else 0.5))):
            results.append({"image_id": int(img), "category_id": int(rng.choice(cat_ids)), "bbox": _box(rng, flavour)})
        if flavour == "many" and rng.random() < 0.6:
            cat = int(rng.choice(cat_ids))
            base = img_gt[0]["bbox"] if img_gt else _box(rng, flavour)
            for _ in range(int(rng.integers(95, 140))):
                results.append({"image_id": int(img), "category_id": cat, "bbox": _jitter(rng, base, flavour, 0.3)})
    for r in results:
        if flavour == "ties":
            r["score"] = float(rng.choice([-0.0, 0.0, 0.2, 0.5, 0.5, 0.9]))  # -0.0 ties with 0.0
        elif flavour == "grid":
            r["score"] = float(rng.integers(0, 5)) / 4
        else:
            r["score"] = round(float(rng.random()), 2)
    order = rng.permutation(len(results))
    results = [results[i] for i in order]
    if len(results) > 3 and rng.random() < 0.3:
        results.append(copy.deepcopy(results[0]))  # exact duplicate prediction
    images = [{"id": int(i), "width": 200, "height": 200, "file_name": f"{i}.jpg"} for i in image_ids]
    categories = [{"id": int(c), "name": f"c{c}"} for c in cat_ids]
    return {"images": images, "annotations": anns, "categories": categories}, results


# ---------------------------------------------------------------- converters and oracle

def to_dataset(gt_dict, results) -> Dataset:
    images = ImageTable(image_id=[im["id"] for im in gt_dict["images"]],
                        file_name=[im["file_name"] for im in gt_dict["images"]],
                        width=[im["width"] for im in gt_dict["images"]],
                        height=[im["height"] for im in gt_dict["images"]])
    cats = Categories.from_mapping({c["id"]: c["name"] for c in gt_dict["categories"]})

    def boxes(anns, prediction):
        n = len(anns)
        return Boxes(
            image_idx=images.index_of_ids([a["image_id"] for a in anns]) if n else np.zeros(0, np.int64),
            class_idx=cats.index_of_ids([a["category_id"] for a in anns]) if n else np.zeros(0, np.int64),
            xywh=np.array([a["bbox"] for a in anns], np.float64).reshape(n, 4),
            object_id=np.arange(1, n + 1) if prediction else [a["id"] for a in anns],
            score=np.array([a["score"] for a in anns], np.float64) if prediction else None,
            iscrowd=None if prediction else np.array([bool(a["iscrowd"]) for a in anns], bool),
            area=None if prediction else np.array([a["area"] for a in anns], np.float64),
        )

    return Dataset(task="detection", images=images, categories=cats,
                   gt=boxes(gt_dict["annotations"], False), pred=boxes(results, True))


def pycoco(gt_dict, results, params: CocoParams | None = None) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = copy.deepcopy(gt_dict)
        cg.createIndex()
        if results:
            cd = cg.loadRes(copy.deepcopy(results))
        else:  # loadRes cannot take an empty list
            cd = COCO()
            cd.dataset = {"images": copy.deepcopy(gt_dict["images"]), "annotations": [],
                          "categories": copy.deepcopy(gt_dict["categories"])}
            cd.createIndex()
        ev = COCOeval(cg, cd, "bbox")
        if params is not None:
            ev.params.iouThrs = np.array(params.iou_thresholds)
            ev.params.recThrs = np.array(params.recall_thresholds)
            ev.params.maxDets = list(params.max_dets)
            ev.params.areaRng = [list(r) for r in params.area_ranges]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _oracle_per_class(precision: np.ndarray, t: int | None) -> np.ndarray:
    out = []
    for k in range(precision.shape[2]):
        p = precision[:, :, k, 0, -1] if t is None else precision[t, :, k, 0, -1]
        p = p[p > -1]
        out.append(np.mean(p) if p.size else np.nan)
    return np.array(out)


def assert_same(ours, ev: COCOeval) -> None:
    np.testing.assert_allclose(ours.stats, np.asarray(ev.stats), rtol=0, atol=ATOL)
    for name in ("precision", "recall", "scores"):
        np.testing.assert_allclose(getattr(ours, name), ev.eval[name], rtol=0, atol=ATOL, err_msg=name)
    np.testing.assert_allclose(ours.per_class_ap, _oracle_per_class(ev.eval["precision"], None), rtol=0, atol=ATOL)
    t50 = np.flatnonzero(ev.params.iouThrs == 0.5)
    ap50 = _oracle_per_class(ev.eval["precision"], int(t50[0])) if t50.size else np.full(len(ours.per_class_ap), np.nan)
    np.testing.assert_allclose(ours.per_class_ap50, ap50, rtol=0, atol=ATOL)


# ---------------------------------------------------------------- differential tests

@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("seed", range(12))
def test_matches_pycocotools_on_random_cases(seed, flavour):
    gt_dict, results = make_case(1000 * FLAVOURS.index(flavour) + seed, flavour)
    ds = to_dataset(gt_dict, results)
    ours = coco_metrics_of(ds)
    assert_same(ours, pycoco(gt_dict, results))


@pytest.mark.parametrize("case", ["no_predictions", "no_gt", "nothing", "only_crowd", "gt_without_predictions_of_class"])
def test_matches_pycocotools_on_empty_edges(case):
    gt_dict, results = make_case(7, "generic")
    if case in ("no_predictions", "nothing"):
        results = []
    if case in ("no_gt", "nothing"):
        gt_dict["annotations"] = []
    if case == "only_crowd":
        for a in gt_dict["annotations"]:
            a["iscrowd"] = 1
    if case == "gt_without_predictions_of_class":
        first = gt_dict["categories"][0]["id"]
        gt_dict["annotations"].append({"id": 10**7, "image_id": gt_dict["images"][0]["id"], "category_id": first,
                                       "bbox": [1.0, 1.0, 30.0, 30.0], "area": 900.0, "iscrowd": 0})
        results = [r for r in results if r["category_id"] != first]
    ours = coco_metrics_of(to_dataset(gt_dict, results))
    ev = pycoco(gt_dict, results)
    assert_same(ours, ev)
    if case in ("no_gt", "nothing", "only_crowd"):
        assert (ours.stats == -1).all() and np.isnan(ours.per_class_ap).all()


@pytest.mark.parametrize("params", [
    CocoParams(iou_thresholds=(0.3, 0.5, 0.7)),
    CocoParams(max_dets=(2, 5, 20)),
    CocoParams(max_dets=(1, 10, 300)),  # stats[0] is -1: pycocotools' literal maxDets=100
    CocoParams(recall_thresholds=(0.0, 0.25, 0.5, 0.75, 1.0)),
    CocoParams(recall_thresholds=(0.05, 0.5, 0.5, 0.95)),  # no 0, a repeated threshold
    CocoParams(area_ranges=((0, 1e10), (0, 20.0**2), (20.0**2, 60.0**2), (60.0**2, 1e10))),
    CocoParams(iou_thresholds=(0.75, 0.5, 0.95, 1.0)),  # unsorted, and IoU 1 (capped at 1 - 1e-10)
], ids=["iou3", "maxdets-small", "maxdets-300", "rec5", "rec-no-zero", "areas", "iou-unsorted"])
@pytest.mark.parametrize("seed", range(3))
def test_matches_pycocotools_with_custom_params(params, seed):
    gt_dict, results = make_case(50 + seed, ("many", "grid", "generic")[seed])
    ours = coco_metrics_of(to_dataset(gt_dict, results), params=params)
    assert_same(ours, pycoco(gt_dict, results, params))


def test_realistic_synthetic_generator_matches_pycocotools(monkeypatch):
    spec = importlib.util.spec_from_file_location("coco_synth", Path(__file__).parents[1] / "benchmarks" / "coco_synth.py")
    synth = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "coco_synth", synth)  # dataclasses look their module up
    spec.loader.exec_module(synth)
    case = synth.make_synthetic_coco(num_images=120, num_classes=7, seed=3)
    ours = coco_metrics_of(case.dataset)
    assert_same(ours, pycoco(case.coco_gt(), case.coco_results()))
    assert 0 < ours.stats[0] < 1


def test_matches_through_coco_loader():
    coco_io = pytest.importorskip("vecexplore.io.coco")
    for flavour in ("crowd", "ties", "generic"):
        gt_dict, results = make_case(77, flavour)
        ds = coco_io.coco_to_dataset(copy.deepcopy(gt_dict), copy.deepcopy(results))
        assert_same(coco_metrics_of(ds), pycoco(gt_dict, results))


# ---------------------------------------------------------------- properties and API

@pytest.mark.parametrize("seed", range(5))
def test_numba_iou_is_bit_identical_to_box_iou(seed):
    from vecexplore.eval.coco_kernels import iou_matrix

    rng = np.random.default_rng(seed)
    dt = np.column_stack([rng.uniform(0, 50, (40, 2)), rng.uniform(0.01, 40, (40, 2))])
    gt = np.column_stack([rng.uniform(0, 50, (30, 2)), rng.uniform(0.01, 40, (30, 2))])
    gt[:5] = dt[:5]  # identical boxes
    crowd = rng.random(30) < 0.3
    assert np.array_equal(iou_matrix(dt, gt, crowd), box_iou(dt, gt, crowd))


def test_image_order_decides_cross_image_ties():
    # Two images, one class, equal scores: which detection is "first" depends on sorted image ids.
    gt_dict = {"images": [{"id": 9, "width": 10, "height": 10, "file_name": "a"},
                          {"id": 3, "width": 10, "height": 10, "file_name": "b"}],
               "categories": [{"id": 1, "name": "x"}],
               "annotations": [{"id": 1, "image_id": 9, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0},
                               {"id": 2, "image_id": 3, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0},
                               {"id": 3, "image_id": 3, "category_id": 1, "bbox": [5, 5, 5, 5], "area": 25, "iscrowd": 0}]}
    results = [{"image_id": 9, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5},
               {"image_id": 3, "category_id": 1, "bbox": [9, 0, 1, 1], "score": 0.5}]
    ds = to_dataset(gt_dict, results)
    ours = coco_metrics_of(ds)
    assert_same(ours, pycoco(gt_dict, results))
    # image idx order (ids ignored) puts the TP first and gives a different, wrong-for-pycocotools curve
    naive = coco_metrics(ds.gt, ds.pred, num_images=2, num_classes=1)
    assert not np.allclose(naive.precision, ours.precision)


@pytest.mark.parametrize("dw", [0.0, 1e-5, 0.5])
def test_iou_threshold_one_is_capped_like_pycocotools(dw):
    # IoU 1 - 1e-11 matches at threshold 1.0 because pycocotools caps thresholds at 1 - 1e-10
    gt_dict = {"images": [{"id": 1, "width": 10**6, "height": 10, "file_name": "a"}],
               "categories": [{"id": 1, "name": "x"}],
               "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 1e6, 1.0],
                                "area": 1e6, "iscrowd": 0}]}
    results = [{"image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 1e6 - dw, 1.0], "score": 0.9}]
    params = CocoParams(iou_thresholds=(0.5, 1.0))
    ours = coco_metrics_of(to_dataset(gt_dict, results), params=params)
    assert_same(ours, pycoco(gt_dict, results, params))
    assert ours.recall[1, 0, 0, -1] == (1.0 if dw < 1e-4 else 0.0)


def test_pr_curve_and_as_dict():
    gt_dict, results = make_case(3, "generic")
    m = coco_metrics_of(to_dataset(gt_dict, results))
    assert list(m.as_dict()) == list(STAT_NAMES)
    rec, prec = m.pr_curve(None, iou=0.5)
    assert rec.shape == prec.shape == (101,)
    defined = [k for k in range(m.num_gt.shape[0]) if m.num_gt[k, 0] > 0]
    curves = np.array([m.pr_curve(k, iou=0.5)[1] for k in range(m.num_gt.shape[0])])
    np.testing.assert_allclose(prec, curves[defined].mean(axis=0))
    assert np.isnan(curves[[k for k in range(len(curves)) if k not in defined]]).all()
    assert (np.diff(curves[defined], axis=1) <= 0).all()  # interpolated precision never rises with recall
    np.testing.assert_allclose(curves[defined].mean(axis=1), m.per_class_ap50[defined], rtol=0, atol=ATOL)
    with pytest.raises(ConfigError, match=r"iou=0\.52"):
        m.pr_curve(0, iou=0.52)
    with pytest.raises(ConfigError, match="area"):
        m.pr_curve(0, area="tiny")


@pytest.mark.parametrize("kwargs, match", [
    ({"iou_thresholds": ()}, "iou_thresholds"),
    ({"iou_thresholds": (0.5, 1.5)}, "iou_thresholds"),
    ({"recall_thresholds": (0.5, 0.2)}, "recall_thresholds"),
    ({"max_dets": (10, 1, 100)}, "max_dets"),
    ({"max_dets": (1, 100)}, "max_dets"),
    ({"area_ranges": ((0, 1), (2, 1), (0, 1), (0, 1))}, "area_ranges"),
])
def test_params_are_validated(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        CocoParams(**kwargs)


def test_params_defaults_are_pycocotools():
    from pycocotools.cocoeval import Params

    p, ref = CocoParams(), Params(iouType="bbox")
    assert np.array_equal(p.iou_thresholds, ref.iouThrs) and np.array_equal(p.recall_thresholds, ref.recThrs)
    assert list(p.max_dets) == ref.maxDets and [list(r) for r in p.area_ranges] == ref.areaRng
    assert hash(p) == hash(CocoParams()) and p.cache_key() == CocoParams().cache_key()


@pytest.mark.parametrize("bad, match", [
    ("class", "class_idx"),
    ("image", "image_idx"),
    ("dup_ids", "duplicate"),
    ("gt_scores", "ground truth"),
])
def test_bad_inputs_raise_validation_errors(bad, match):
    ds = to_dataset(*make_case(5, "generic"))
    gt, pred, n, k, ids = ds.gt, ds.pred, ds.num_images, len(ds.categories), ds.images.image_id
    if bad == "class":
        k = 0 if len(gt) or len(pred) else k
    if bad == "image":
        n, ids = 0, None
    if bad == "dup_ids":
        ids = np.zeros(n, np.int64) if n > 1 else None
        if ids is None:
            pytest.skip("one image")
    if bad == "gt_scores":
        gt = pred
    with pytest.raises(ValidationError, match=match):
        coco_metrics(gt, pred, num_images=n, num_classes=k, image_ids=ids)
