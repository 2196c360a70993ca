"""COCO detection: ground-truth JSON and results-format predictions, and writers.

:func:`coco_to_dataset` is the pure converter (parsed JSON in, :class:`Dataset`
out); :func:`load_coco` is the thin file reader around it. Conventions:

* images keep file order (``image_idx`` = position in ``images``); categories are
  sorted by id; annotations and predictions keep file order.
* ``bbox`` values are kept bit-exact as float64 (unless clipped to the border).
* GT ``area`` is the annotation's own ``area`` when present (pycocotools uses it
  for the small/medium/large ranges), else ``w * h``; ``iscrowd`` defaults to 0.
* Predictions keep their ``id`` when every one has one; otherwise they are
  numbered 1, 2, … in file order, as pycocotools ``loadRes`` does.
* Unknown scalar image keys (``license``, ``coco_url`` …) become
  ``ImageTable.metadata``; an image ``split`` key becomes ``ImageTable.split``;
  ``segmentation`` and other non-scalar fields are ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vecexplore.errors import ConfigError, InputError
from vecexplore.io._common import LoadReport, clip_to_images, first_duplicate
from vecexplore.io._read import image_sizes, read_json, warn_unreadable
from vecexplore.io.paths import check_images_exist, image_paths
from vecexplore.types import Boxes, Categories, Dataset, ImageTable

_NUM = (int, float)
_IMAGE_KEYS = ("id", "file_name", "width", "height", "split")
_SCALAR = (str, int, float, bool, type(None))


def load_coco(
    gt: str | Path,
    pred: str | Path | None = None,
    *,
    images_root: str | Path | None = None,
    clip: bool = True,
    check_images: bool = True,
    progress: bool = False,
    report: LoadReport | None = None,
) -> Dataset:
    """Read a COCO ground-truth file and (optionally) a predictions file.

    Args:
        gt: ``instances.json``-style file with ``images``, ``categories`` and
            (optionally) ``annotations``.
        pred: COCO results file: a list of ``{image_id, category_id, bbox, score}``
            or a dict with such an ``annotations`` list; None = no predictions.
        images_root: directory that relative ``file_name``\\s resolve against.
        clip: clip boxes crossing the image border (see :func:`clip_to_images`).
        check_images: raise :class:`MissingImagesError` (listing all) if images are
            not on disk. Images without ``width``/``height`` read them from the header.
        report: filled with clip counts and unreadable images, if given.
    """
    gt_obj = read_json(gt)
    pred_obj = [] if pred is None else read_json(pred)
    parsed = _parse(gt_obj, pred_obj, gt_name=str(gt), pred_name=str(pred))
    if check_images:
        check_images_exist(parsed.images, images_root)
    if parsed.size_missing.any():
        parsed.images = _fill_sizes(parsed.images, parsed.size_missing, images_root, progress, report)
    sources = (str(gt),) if pred is None else (str(gt), str(pred))
    return _assemble(parsed, clip=clip, images_root=images_root, sources=sources, report=report)


def coco_to_dataset(
    gt: dict,
    pred: list | dict | None = None,
    *,
    gt_name: str = "gt",
    pred_name: str = "predictions",
    clip: bool = True,
    images_root: str | Path | None = None,
    report: LoadReport | None = None,
) -> Dataset:
    """The pure converter: parsed COCO JSON → :class:`Dataset` (no file access).

    ``gt_name``/``pred_name`` name the inputs in error messages. Images without
    ``width``/``height`` get size 0 (unknown; never clipped).
    """
    parsed = _parse(gt, [] if pred is None else pred, gt_name=gt_name, pred_name=pred_name)
    return _assemble(parsed, clip=clip, images_root=images_root, sources=(), report=report)


# ---------------------------------------------------------------- writers


def to_coco_gt(dataset: Dataset, image_idx: Sequence[int] | np.ndarray | None = None) -> dict:
    """A COCO ground-truth dict (``images``, ``annotations``, ``categories``).

    Images carry ``id, file_name, width, height`` and ``split`` and metadata keys
    where set; annotations ``id, image_id, category_id, bbox, area, iscrowd``.
    ``image_idx`` restricts to those images (in that order).
    """
    ds = _detection(dataset, image_idx)
    images = []
    split = ds.images.split
    meta = {k: v.tolist() for k, v in ds.images.metadata.items()}
    for j, (iid, name, w, h) in enumerate(
        zip(ds.images.image_id.tolist(), ds.images.file_name.tolist(), ds.images.width.tolist(),
            ds.images.height.tolist(), strict=True)
    ):
        rec: dict[str, Any] = {"id": iid, "file_name": name, "width": w, "height": h}
        if split is not None and split[j] is not None:
            rec["split"] = split[j]
        for key, col in meta.items():
            if col[j] is not None:
                rec[key] = col[j]
        images.append(rec)
    gt = ds.gt
    image_id = ds.images.image_id[gt.image_idx].tolist()
    category_id = ds.categories.ids[gt.class_idx].tolist()
    annotations = [
        {"id": oid, "image_id": iid, "category_id": cid, "bbox": box, "area": area, "iscrowd": int(crowd)}
        for oid, iid, cid, box, area, crowd in zip(
            gt.object_id.tolist(), image_id, category_id, gt.xywh.tolist(), gt.area.tolist(),
            gt.iscrowd.tolist(), strict=True)
    ]
    categories = [{"id": i, "name": n} for i, n in zip(ds.categories.ids.tolist(), ds.categories.names.tolist(), strict=True)]
    return {"images": images, "annotations": annotations, "categories": categories}


def to_coco_results(dataset: Dataset, image_idx: Sequence[int] | np.ndarray | None = None) -> list[dict]:
    """Predictions in the COCO results format (``id, image_id, category_id, bbox, score``),
    in dataset order; ``image_idx`` restricts to those images."""
    ds = _detection(dataset, image_idx)
    p = ds.pred
    return [
        {"id": oid, "image_id": iid, "category_id": cid, "bbox": box, "score": score}
        for oid, iid, cid, box, score in zip(
            p.object_id.tolist(), ds.images.image_id[p.image_idx].tolist(),
            ds.categories.ids[p.class_idx].tolist(), p.xywh.tolist(), p.score.tolist(), strict=True)
    ]


def _detection(dataset: Dataset, image_idx) -> Dataset:
    if dataset.task != "detection":
        raise ConfigError(f"COCO export needs a detection dataset, got {dataset.task}")
    return dataset if image_idx is None else dataset.subset(image_idx)


# ---------------------------------------------------------------- parsing


@dataclass
class _Objects:
    """Validated raw columns of one annotation list, before clipping."""

    path: str
    label: Callable[[int], str]  # position → record label, for messages after parsing
    image_idx: np.ndarray
    class_idx: np.ndarray
    xywh: np.ndarray
    object_id: np.ndarray
    score: np.ndarray | None
    iscrowd: np.ndarray | None
    area: np.ndarray | None


@dataclass
class _Parsed:
    images: ImageTable
    size_missing: np.ndarray
    categories: Categories
    gt: _Objects
    pred: _Objects


def _parse(gt: Any, pred: Any, *, gt_name: str, pred_name: str) -> _Parsed:
    if not isinstance(gt, dict):
        raise InputError(f"expected a COCO object with 'images' and 'categories' at the top level, got {_kind(gt)}", path=gt_name)
    for key in ("images", "categories"):
        if key not in gt:
            raise InputError(f"missing required key '{key}'", path=gt_name)
    images, size_missing = _parse_images(gt["images"], gt_name)
    categories = _parse_categories(gt["categories"], gt_name)
    annotations = gt.get("annotations")
    annotations = [] if annotations is None else annotations
    gt_objs = _parse_objects(annotations, path=gt_name, list_name="annotations", predictions=False,
                             images=images, categories=categories)
    if isinstance(pred, dict):
        if "annotations" not in pred:
            raise InputError("expected a list of predictions, or an object with an 'annotations' list", path=pred_name)
        pred, list_name = pred["annotations"], "annotations"
    elif isinstance(pred, list):
        list_name = ""
    else:
        raise InputError(f"expected a list of predictions, got {_kind(pred)}", path=pred_name)
    pred_objs = _parse_objects(pred, path=pred_name, list_name=list_name, predictions=True,
                               images=images, categories=categories)
    return _Parsed(images, size_missing, categories, gt_objs, pred_objs)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(type(value), type(value).__name__)


def _is_int(value: Any) -> bool:
    return type(value) is int or (type(value) is float and value.is_integer())


def _parse_images(recs: Any, path: str) -> tuple[ImageTable, np.ndarray]:
    if not isinstance(recs, list):
        raise InputError(f"'images' must be a list, got {_kind(recs)}", path=path)
    if not recs:
        raise InputError("'images' is empty: no images (empty dataset)", path=path)
    n = len(recs)
    ids, names = np.empty(n, np.int64), []
    width, height = np.zeros(n, np.int64), np.zeros(n, np.int64)
    size_missing = np.zeros(n, bool)
    split: list[str | None] = []
    extra: dict[str, list] = {}
    for i, r in enumerate(recs):
        where = f"images[{i}]"
        if type(r) is not dict:
            raise InputError(f"expected an object, got {_kind(r)}", path=path, record=where)
        for key in ("id", "file_name"):
            if key not in r:
                raise InputError(f"missing required key '{key}'", path=path, record=where)
        if not _is_int(r["id"]):
            raise InputError(f"id must be an integer, got {r['id']!r}", path=path, record=where)
        ids[i] = int(r["id"])
        where = f"images[{i}] (id {ids[i]})"
        name = r["file_name"]
        if type(name) is not str or not name:
            raise InputError(f"file_name must be a non-empty string, got {name!r}", path=path, record=where)
        names.append(name)
        w, h = r.get("width"), r.get("height")
        if w is None or h is None:
            size_missing[i] = True
        else:
            for key, v in (("width", w), ("height", h)):
                if not _is_int(v) or v < 0:
                    raise InputError(f"{key} must be a non-negative integer, got {v!r}", path=path, record=where)
            width[i], height[i] = int(w), int(h)
        s = r.get("split")
        if s is not None and type(s) is not str:
            raise InputError(f"split must be a string, got {s!r}", path=path, record=where)
        split.append(s)
        for key, v in r.items():
            if key not in _IMAGE_KEYS:
                extra.setdefault(key, [None] * n)[i] = v
    dup = first_duplicate(ids)
    if dup is not None:
        a, b = dup
        raise InputError(f"duplicate image id (also images[{a}])", path=path, record=f"images[{b}] (id {ids[b]})")
    metadata = {k: v for k, v in extra.items() if all(type(x) in _SCALAR for x in v)}
    table = ImageTable(image_id=ids, file_name=np.array(names, dtype=object), width=width, height=height,
                       split=None if all(s is None for s in split) else split, metadata=metadata)
    return table, size_missing


def _parse_categories(recs: Any, path: str) -> Categories:
    if not isinstance(recs, list):
        raise InputError(f"'categories' must be a list, got {_kind(recs)}", path=path)
    if not recs:
        raise InputError("'categories' is empty: no classes", path=path)
    ids, names = np.empty(len(recs), np.int64), []
    for i, r in enumerate(recs):
        where = f"categories[{i}]"
        if type(r) is not dict:
            raise InputError(f"expected an object, got {_kind(r)}", path=path, record=where)
        for key in ("id", "name"):
            if key not in r:
                raise InputError(f"missing required key '{key}'", path=path, record=where)
        if not _is_int(r["id"]):
            raise InputError(f"id must be an integer, got {r['id']!r}", path=path, record=where)
        ids[i] = int(r["id"])
        if type(r["name"]) is not str or not r["name"].strip():
            raise InputError(f"name must be a non-empty string, got {r['name']!r}", path=path, record=f"{where} (id {ids[i]})")
        names.append(r["name"])
    for values, what in ((ids, "category id"), (np.array(names, dtype=object), "category name")):
        dup = first_duplicate(values)
        if dup is not None:
            a, b = dup
            raise InputError(f"duplicate {what} (also categories[{a}])", path=path, record=f"categories[{b}] (id {ids[b]})")
    return Categories(ids=ids, names=np.array(names, dtype=object))


def _parse_objects(recs: Any, *, path: str, list_name: str, predictions: bool,
                   images: ImageTable, categories: Categories) -> _Objects:
    if not isinstance(recs, list):
        raise InputError(f"'{list_name or 'predictions'}' must be a list, got {_kind(recs)}", path=path)
    n = len(recs)
    required = ("image_id", "category_id", "bbox", "score") if predictions else ("id", "image_id", "category_id", "bbox")
    image_id, category_id = np.empty(n, np.int64), np.empty(n, np.int64)
    object_id, boxes = np.zeros(n, np.int64), []
    score = np.empty(n, np.float64) if predictions else None
    iscrowd = None if predictions else np.zeros(n, bool)
    area = None if predictions else np.full(n, np.nan)
    all_ids = True

    def label(i: int) -> str:
        r = recs[i]
        oid = r.get("id") if type(r) is dict else None
        return f"{list_name}[{i}]" + (f" (id {oid})" if _is_int(oid) else "")

    def fail(i: int, message: str):
        raise InputError(message, path=path, record=label(i))

    for i, r in enumerate(recs):
        if type(r) is not dict:
            fail(i, f"expected an object, got {_kind(r)}")
        for key in required:
            if key not in r:
                fail(i, f"missing required key '{key}'")
        for key, arr in (("image_id", image_id), ("category_id", category_id)):
            v = r[key]
            if not _is_int(v):
                fail(i, f"{key} must be an integer, got {v!r}")
            arr[i] = v
        oid = r.get("id")
        if oid is None:
            all_ids = False
        elif not _is_int(oid):
            fail(i, f"id must be an integer, got {oid!r}")
        else:
            object_id[i] = oid
        bb = r["bbox"]
        if type(bb) is not list or len(bb) != 4 or not all(type(v) in _NUM for v in bb):
            fail(i, f"bbox must be a list of 4 numbers [x, y, w, h], got {bb!r}")
        boxes.append(bb)
        if predictions:
            s = r["score"]
            if type(s) not in _NUM:
                fail(i, f"score must be a number, got {s!r}")
            score[i] = s
        else:
            crowd = r.get("iscrowd", 0)
            if crowd not in (0, 1) or type(crowd) not in (int, bool):
                fail(i, f"iscrowd must be 0 or 1, got {crowd!r}")
            iscrowd[i] = bool(crowd)
            a = r.get("area")
            if a is not None:
                if type(a) not in _NUM or not np.isfinite(a) or a < 0:
                    fail(i, f"area must be a finite number >= 0, got {a!r}")
                area[i] = a
    xywh = np.array(boxes, dtype=np.float64).reshape(n, 4)
    bad = ~np.isfinite(xywh).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        fail(i, f"bbox has a non-finite value {recs[i]['bbox']!r}")
    bad = (xywh[:, 2] <= 0) | (xywh[:, 3] <= 0)
    if bad.any():
        i = int(np.argmax(bad))
        axis, value = ("width", float(xywh[i, 2])) if xywh[i, 2] <= 0 else ("height", float(xywh[i, 3]))
        fail(i, f"bbox has non-positive {axis} ({axis[0]}={value!r})")
    if predictions:
        bad = ~np.isfinite(score) | (score < 0) | (score > 1)
        if bad.any():
            i = int(np.argmax(bad))
            fail(i, f"score must be in [0, 1], got {float(score[i])!r}")
    image_idx = images.index_of_ids(image_id)
    if (image_idx < 0).any():
        i = int(np.argmax(image_idx < 0))
        fail(i, f"unknown image_id {image_id[i]} (not in the ground truth's images)")
    class_idx = categories.index_of_ids(category_id)
    if (class_idx < 0).any():
        i = int(np.argmax(class_idx < 0))
        fail(i, f"unknown category_id {category_id[i]} (not in the ground truth's categories)")
    if predictions and not all_ids:
        object_id = np.arange(1, n + 1, dtype=np.int64)
    dup = first_duplicate(object_id)
    if dup is not None:
        a, b = dup
        fail(b, f"duplicate annotation id {object_id[b]} (also {list_name}[{a}])")
    return _Objects(path, label, image_idx, class_idx, xywh, object_id, score, iscrowd, area)


def _fill_sizes(images: ImageTable, missing: np.ndarray, root, progress: bool, report: LoadReport | None) -> ImageTable:
    """Read the header size of images whose JSON record lacks width/height."""
    idx = np.flatnonzero(missing)
    paths = image_paths(images.file_name[idx].tolist(), root)
    w, h, unreadable = image_sizes(paths, progress=progress)
    width, height = images.width.copy(), images.height.copy()
    width[idx], height[idx] = w, h
    bad = [str(images.file_name[idx[k]]) for k in unreadable]
    warn_unreadable(bad, root=root)
    if report is not None:
        report.unreadable.extend(bad)
    return ImageTable(image_id=images.image_id, file_name=images.file_name, width=width, height=height,
                      split=images.split, metadata=images.metadata)


def _assemble(parsed: _Parsed, *, clip: bool, images_root, sources: tuple[str, ...],
              report: LoadReport | None) -> Dataset:
    boxes = []
    for objs in (parsed.gt, parsed.pred):
        xywh = clip_to_images(objs.xywh, objs.image_idx, parsed.images, clip=clip, path=objs.path,
                              locate=lambda i, o=objs: (o.path, o.label(i)), report=report)
        area = None
        if objs.area is not None:
            area = np.where(np.isnan(objs.area), xywh[:, 2] * xywh[:, 3], objs.area)
        boxes.append(Boxes(image_idx=objs.image_idx, class_idx=objs.class_idx, xywh=xywh, object_id=objs.object_id,
                           score=objs.score, iscrowd=objs.iscrowd, area=area))
    return Dataset(task="detection", images=parsed.images, categories=parsed.categories, gt=boxes[0], pred=boxes[1],
                   images_root=None if images_root is None else str(images_root), sources=sources)
