"""COCO detection: ground-truth JSON and results-format predictions, and writers.

:func:`coco_to_dataset` is the pure converter (parsed JSON in, :class:`Dataset`
out); :func:`load_coco` is the thin file reader around it. Conventions:

* images keep file order (``image_idx`` = position in ``images``); categories are
  sorted by id; annotations and predictions keep file order.
* ``bbox`` values are kept bit-exact as float64 (unless ``clip`` clips them to the border).
* GT ``area`` is the annotation's own ``area`` when present (pycocotools uses it
  for the small/medium/large ranges), else ``w * h``; ``iscrowd`` defaults to 0.
* Predictions keep their ``id`` when every one has one; otherwise they are
  numbered 1, 2, … in file order, as pycocotools ``loadRes`` does.
* Unknown scalar image keys (``license``, ``coco_url`` …) become
  ``ImageTable.metadata`` (as text when one key mixes kinds, e.g. numbers and
  strings, or holds an integer beyond int64); an image ``split`` key becomes ``ImageTable.split``;
  other non-scalar fields are ignored; ``segmentation`` becomes ``Boxes.rle``
  (see :mod:`vecexplore.io.masks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vecexplore.errors import ConfigError, InputError
from vecexplore.io import masks
from vecexplore.io._coco_records import _parse, _parse_objects, _Parsed, parse_native
from vecexplore.io._common import LoadReport, clip_to_images, no_gc
from vecexplore.io._read import image_sizes, read_json, read_json_bytes, warn_unreadable
from vecexplore.io.paths import check_image_paths, check_images_exist, image_paths
from vecexplore.io.results_files import read_results, relabel, results_format
from vecexplore.types import Boxes, Dataset, ImageTable


def load_coco(
    gt: str | Path,
    pred: str | Path | None = None,
    *,
    images_root: str | Path | None = None,
    clip: bool = False,
    check_images: bool = True,
    allow_outside_root: bool = False,
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
        clip: clip boxes crossing the image border (opt-in; by default they are
            evaluated as given, as pycocotools does; see :func:`clip_to_images`).
        check_images: raise :class:`MissingImagesError` (listing all) if images are
            not on disk, and :class:`OutsideRootError` (listing all) for images
            outside ``images_root`` (see :mod:`vecexplore.io.paths`). Images without
            ``width``/``height`` read them from the header (and are checked so even
            when ``check_images`` is False).
        allow_outside_root: accept images outside ``images_root`` instead.
        report: filled with border-crossing and clip counts, unreadable, outside-root and shared images.
    """
    with no_gc():
        if pred is not None and results_format(pred) != "json":
            parsed, gt_obj, pred_obj, pred_mask_area = _read_with_results_file(gt, pred)
        else:
            parsed, gt_obj, pred_obj, pred_mask_area = _read_json_files(gt, pred)
    if check_images:
        check_images_exist(parsed.images, images_root)
        check_image_paths(parsed.images, images_root, allow_outside_root=allow_outside_root, report=report)
    if parsed.size_missing.any():
        if not check_images:  # only the headers about to be read
            idx = np.flatnonzero(parsed.size_missing)
            check_image_paths(parsed.images.file_name[idx].tolist(), images_root, allow_outside_root=allow_outside_root,
                              image_ids=parsed.images.image_id[idx].tolist(), report=report)
        parsed.images = _fill_sizes(parsed.images, parsed.size_missing, images_root, progress, report)
    sources = (str(gt),) if pred is None else (str(gt), str(pred))
    dataset = _assemble(parsed, clip=clip, images_root=images_root, sources=sources, report=report)
    if gt_obj is None:
        return dataset
    with no_gc():
        try:
            return masks.with_coco_masks(dataset, gt_obj, pred_obj, gt_name=str(gt), pred_name=str(pred),
                                         pred_mask_area=pred_mask_area)  # segm hook
        except InputError as exc:
            if isinstance(pred_obj, _Relabelled):
                raise relabel(exc, pred_obj.results, str(pred)) from None
            raise


def _read_json_files(gt, pred) -> tuple[_Parsed, Any, Any, bool]:
    """Parse a GT JSON and a results JSON: ``(parsed, gt_obj, pred_obj, pred_mask_area)``, the
    JSON objects None unless masks need them."""
    gt_bytes = read_json_bytes(gt)
    pred_bytes = None if pred is None or gt_bytes is None else read_json_bytes(pred)  # the GT's error first
    parsed = gt_obj = pred_obj = None
    pred_mask_area = False
    # The C reader takes boxes only: it hands back None at a record with a "segmentation" key,
    # and the file goes the standard way (segm hook).
    if gt_bytes is not None and (pred is None or pred_bytes is not None):
        parsed = parse_native(gt_bytes, pred_bytes, gt_name=str(gt), pred_name=str(pred))
    del gt_bytes, pred_bytes
    if parsed is None:  # the standard way: every problem named
        gt_obj = read_json(gt)
        pred_obj = [] if pred is None else read_json(pred)
        pred_obj, pred_mask_area = masks.results_with_boxes(gt_obj, pred_obj, pred_name=str(pred))  # segm hook
        parsed = _parse(gt_obj, pred_obj, gt_name=str(gt), pred_name=str(pred))
        if not masks.any_segmentation(gt_obj, pred_obj):  # box-only: free the JSON before the image checks
            gt_obj = pred_obj = None
    return parsed, gt_obj, pred_obj, pred_mask_area


def _read_with_results_file(gt, pred) -> tuple[_Parsed, Any, Any, bool]:
    """:func:`_read_json_files` for a JSON Lines or Parquet results file
    (:mod:`vecexplore.io.results_files`). Box-only: the results' columns go straight into the
    checks; with masks on either side, the records take the JSON path. Errors about a result
    name its line (JSON Lines) or row (Parquet)."""
    pred_name = str(pred)
    gt_bytes = read_json_bytes(gt)
    gt_masks = gt_bytes is None or b'"segmentation"' in gt_bytes
    parsed = None if gt_masks else parse_native(gt_bytes, None, gt_name=str(gt), pred_name=pred_name)
    del gt_bytes
    gt_obj = None
    if parsed is None:
        gt_obj = read_json(gt)
        parsed = _parse(gt_obj, [], gt_name=str(gt), pred_name=pred_name)  # the GT's errors first
    results = read_results(pred, results_format(pred), want_records=gt_masks)
    try:
        if results.columns is not None:
            parsed.pred = _parse_objects(None, path=pred_name, list_name="", predictions=True, images=parsed.images,
                                         categories=parsed.categories, columns=results.columns)
            return parsed, None, None, False
        if gt_obj is None:
            gt_obj = read_json(gt)
        pred_obj, pred_mask_area = masks.results_with_boxes(gt_obj, results.records, pred_name=pred_name)
        parsed = _parse(gt_obj, pred_obj, gt_name=str(gt), pred_name=pred_name)
        if not masks.any_segmentation(gt_obj, pred_obj):
            return parsed, None, None, pred_mask_area
        # the mask checks run in load_coco: record labels are turned into lines there too
        return parsed, gt_obj, _Relabelled(pred_obj, results), pred_mask_area
    except InputError as exc:
        raise relabel(exc, results, pred_name) from None


class _Relabelled(list):
    """Results records that remember their file's lines or rows (for the mask checks' errors)."""

    def __init__(self, records: list, results):
        super().__init__(records)
        self.results = results


def coco_to_dataset(
    gt: dict,
    pred: list | dict | None = None,
    *,
    gt_name: str = "gt",
    pred_name: str = "predictions",
    clip: bool = False,
    images_root: str | Path | None = None,
    report: LoadReport | None = None,
) -> Dataset:
    """The pure converter: parsed COCO JSON → :class:`Dataset` (no file access).

    ``gt_name``/``pred_name`` name the inputs in error messages. Images without
    ``width``/``height`` get size 0 (unknown; never clipped).
    """
    with no_gc():
        pred, pred_mask_area = masks.results_with_boxes(gt, [] if pred is None else pred, pred_name=pred_name)
        parsed = _parse(gt, pred, gt_name=gt_name, pred_name=pred_name)
    dataset = _assemble(parsed, clip=clip, images_root=images_root, sources=(), report=report)
    return masks.with_coco_masks(dataset, gt, pred, gt_name=gt_name, pred_name=pred_name,
                                 pred_mask_area=pred_mask_area)  # segm hook


# ---------------------------------------------------------------- writers


def to_coco_gt(dataset: Dataset, image_idx: Sequence[int] | np.ndarray | None = None) -> dict:
    """A COCO ground-truth dict (``images``, ``annotations``, ``categories``).

    Images carry ``id, file_name, width, height`` and ``split`` and metadata keys
    where set; annotations ``id, image_id, category_id, bbox, area, iscrowd`` and,
    with masks, ``segmentation`` as compressed RLE.
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
    _add_segmentation(annotations, gt)
    categories = [{"id": i, "name": n} for i, n in zip(ds.categories.ids.tolist(), ds.categories.names.tolist(), strict=True)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _add_segmentation(records: list[dict], objs: Boxes) -> None:
    """Masks, when the objects carry them, as compressed RLE ``segmentation`` (exact; counts as text)."""
    if objs.rle is None:
        return
    for rec, rle in zip(records, objs.rle, strict=True):
        counts = rle["counts"]
        rec["segmentation"] = {"size": list(rle["size"]),
                               "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def to_coco_results(dataset: Dataset, image_idx: Sequence[int] | np.ndarray | None = None) -> list[dict]:
    """Predictions in the COCO results format (``id, image_id, category_id, bbox, score``),
    in dataset order; ``image_idx`` restricts to those images."""
    ds = _detection(dataset, image_idx)
    p = ds.pred
    out = [
        {"id": oid, "image_id": iid, "category_id": cid, "bbox": box, "score": score}
        for oid, iid, cid, box, score in zip(
            p.object_id.tolist(), ds.images.image_id[p.image_idx].tolist(),
            ds.categories.ids[p.class_idx].tolist(), p.xywh.tolist(), p.score.tolist(), strict=True)
    ]
    _add_segmentation(out, p)
    return out


def _detection(dataset: Dataset, image_idx) -> Dataset:
    if dataset.task != "detection":
        raise ConfigError(f"COCO export needs a detection dataset, got {dataset.task}")
    return dataset if image_idx is None else dataset.subset(image_idx)


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
                   images_root=None if images_root is None else str(images_root), sources=sources,
                   boxes_clipped=clip)
