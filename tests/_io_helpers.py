"""Helpers shared by the io tests: tiny images on disk, JSON/text writers, and a
field-by-field Dataset comparison."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vecexplore.types import Boxes, Dataset, Labels


def make_image(path: Path, size: tuple[int, int], *, orientation: int | None = None) -> Path:
    """Write a ``size`` = (width, height) image (format from the suffix)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, (90, 120, 150))
    if orientation is None:
        img.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.save(path, exif=exif.tobytes())
    return path


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def coco_gt(n_images: int = 3, *, size=(64, 48)) -> dict:
    """A small valid COCO GT dict: categories out of id order, a crowd box, an image without GT."""
    return {
        "images": [{"id": 100 + i, "file_name": f"img{i}.png", "width": size[0], "height": size[1]} for i in range(n_images)],
        "categories": [{"id": 7, "name": "dog"}, {"id": 2, "name": "cat"}, {"id": 5, "name": "bird"}],
        "annotations": [
            {"id": 11, "image_id": 100, "category_id": 2, "bbox": [1.5, 2.25, 10.0, 8.0], "area": 70.0, "iscrowd": 0,
             "segmentation": [[1, 2, 3, 4, 5, 6]]},
            {"id": 12, "image_id": 100, "category_id": 7, "bbox": [20.0, 10.0, 5.5, 6.0]},
            {"id": 13, "image_id": 101, "category_id": 5, "bbox": [0.0, 0.0, 30.0, 20.0], "iscrowd": 1},
        ],
    }


def coco_pred() -> list[dict]:
    return [
        {"image_id": 100, "category_id": 2, "bbox": [1.0, 2.0, 10.0, 8.0], "score": 0.9},
        {"image_id": 101, "category_id": 5, "bbox": [2.0, 2.0, 5.0, 5.0], "score": 0.4},
        {"image_id": 102, "category_id": 7, "bbox": [3.0, 4.0, 5.0, 6.0], "score": 0.4},
    ]


def write_coco(tmp: Path, gt: dict | None = None, pred=None, *, images: bool = True) -> tuple[Path, Path]:
    gt = coco_gt() if gt is None else gt
    pred = coco_pred() if pred is None else pred
    if images:
        for im in gt["images"]:
            make_image(tmp / im["file_name"], (im.get("width") or 32, im.get("height") or 32))
    return write_json(tmp / "instances.json", gt), write_json(tmp / "predictions.json", pred)


def assert_same_objects(a: Boxes | Labels, b: Boxes | Labels, *, atol: float = 0.0) -> None:
    assert type(a) is type(b)
    for name in ("image_idx", "class_idx", "object_id", "iscrowd"):
        if hasattr(a, name):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("xywh", "area", "score", "scores"):
        x, y = getattr(a, name, None), getattr(b, name, None)
        assert (x is None) == (y is None), name
        if x is None:
            continue
        if atol == 0.0 or name == "score":
            np.testing.assert_array_equal(x, y, err_msg=name)
        else:
            np.testing.assert_allclose(x, y, rtol=0, atol=atol, err_msg=name)


def assert_same_dataset(a: Dataset, b: Dataset, *, atol: float = 0.0, metadata: bool = True) -> None:
    """Equal task, images (ids, names, sizes, split[, metadata]), categories, GT and predictions."""
    assert a.task == b.task
    for name in ("image_id", "file_name", "width", "height"):
        np.testing.assert_array_equal(getattr(a.images, name), getattr(b.images, name), err_msg=name)
    assert (a.images.split is None) == (b.images.split is None)
    if a.images.split is not None:
        assert a.images.split.tolist() == b.images.split.tolist()
    if metadata:
        assert a.images.metadata.keys() == b.images.metadata.keys()
        for key in a.images.metadata:
            assert a.images.metadata[key].tolist() == b.images.metadata[key].tolist(), key
    np.testing.assert_array_equal(a.categories.ids, b.categories.ids)
    assert a.categories.names.tolist() == b.categories.names.tolist()
    assert_same_objects(a.gt, b.gt, atol=atol)
    assert_same_objects(a.pred, b.pred, atol=atol)


def add_demo_masks(data: Path) -> None:
    """The demo's boxes as polygon masks: GT the box's inscribed octagon, predictions their box."""
    gt = json.loads((data / "annotations.json").read_text())
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        a["segmentation"] = [[x + w * 0.3, y, x + w * 0.7, y, x + w, y + h * 0.3, x + w, y + h * 0.7,
                              x + w * 0.7, y + h, x + w * 0.3, y + h, x, y + h * 0.7, x, y + h * 0.3]]
    (data / "annotations.json").write_text(json.dumps(gt))
    pred = json.loads((data / "predictions.json").read_text())
    recs = pred["annotations"] if isinstance(pred, dict) else pred
    for r in recs:
        x, y, w, h = r["bbox"]
        r["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    (data / "predictions.json").write_text(json.dumps(pred))
