"""Instance masks: COCO ``segmentation`` (polygons, RLE, compressed RLE) and YOLO-seg
polygons → validated compressed RLE, with pycocotools as the codec.

Every mask becomes one compressed RLE (``{"size": [h, w], "counts": bytes}``),
built exactly as pycocotools ``COCO.annToRLE`` builds it, so that mask IoU and
mask area are pycocotools' own numbers:

* polygons (a list of ``[x1, y1, x2, y2, …]`` lists) → ``frPyObjects(polys, h, w)``
  then ``merge``;
* uncompressed RLE (``counts`` a list of run lengths) → ``frPyObjects``;
* compressed RLE (``counts`` a string) is kept as given.

Bad masks are refused, naming the file and record: polygons with an odd number
of coordinates, fewer than 3 points, non-finite or non-numeric values, an empty
polygon list; an RLE whose ``size`` is not the image's ``[height, width]``,
whose counts are negative, are not integers or do not sum to ``height * width``
(a compressed string is decoded by a small checker for that, never by the C
decoder, which would write past its buffer); a mask on an image of unknown size.

Ground truth (predictions) carry masks only when every annotation (result) has a
non-empty ``segmentation``: a COCO file whose annotations have an empty or
absent ``segmentation`` (box-only exports write ``[]``) is a box dataset; one
where only some have masks is read as boxes too, with a warning naming the
first record without one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from vecexplore.errors import InputError
from vecexplore.types import Dataset, ImageTable

_NUM = (int, float)
log = logging.getLogger(__name__)


def _mask_utils():
    from pycocotools import mask as mask_utils  # lazy: a C extension, needed only for masks

    return mask_utils


def has_segmentation(record: Any) -> bool:
    """True when a COCO record has a non-empty ``segmentation``."""
    if type(record) is not dict:
        return False
    seg = record.get("segmentation")
    return seg is not None and not (isinstance(seg, list) and len(seg) == 0)


def any_segmentation(gt: Any, pred: Any) -> bool:
    """True when a COCO GT object or results list has a record with a non-empty ``segmentation``."""
    anns = gt.get("annotations") if type(gt) is dict else None
    return any(map(has_segmentation, anns or [])) or any(map(has_segmentation, _pred_list(pred) or []))


def _check_polygons(seg: list) -> str | None:
    """The problem with a polygon list, or None."""
    if not seg:
        return "segmentation is an empty polygon list"
    for j, poly in enumerate(seg):
        if type(poly) is not list:
            return f"segmentation[{j}] must be a list of coordinates [x1, y1, x2, y2, ...], got {type(poly).__name__}"
        if len(poly) % 2:
            return f"segmentation[{j}] has an odd number of coordinates ({len(poly)})"
        if len(poly) < 6:
            return f"segmentation[{j}] has {len(poly) // 2} point(s); a polygon needs at least 3"
        for v in poly:
            if type(v) not in _NUM:
                return f"segmentation[{j}] has a non-numeric coordinate {v!r}"
            if not math.isfinite(v):
                return f"segmentation[{j}] has a non-finite coordinate {v!r}"
    return None


def _check_size(seg: dict, h: int, w: int) -> str | None:
    size = seg.get("size")
    if type(size) is not list or len(size) != 2 or not all(type(v) is int for v in size):
        return f"RLE size must be [height, width] integers, got {size!r}"
    if size != [h, w]:
        return f"RLE size {size} disagrees with the image's [height, width] = [{h}, {w}]"
    return None


def _check_counts(counts: list, h: int, w: int) -> str | None:
    if not counts or not all(type(c) is int for c in counts):
        return "RLE counts must be a non-empty list of integers"
    if min(counts) < 0:
        return f"RLE counts must be >= 0, got {min(counts)}"
    if max(counts) >= 2**32:
        return f"RLE count {max(counts)} does not fit in 32 bits"
    total = sum(counts)
    if total != h * w:
        return f"RLE counts sum to {total}, not height * width = {h * w}"
    return None


def rle_string_problem(counts: bytes, h: int, w: int) -> str | None:
    """Check a compressed RLE string (pycocotools' ``rleFrString`` format): the problem, or None.

    Decodes run lengths only to check them (characters in ``'0'..'o'``, no
    value cut off by the end of the string, counts in ``[0, 2**32)`` summing to
    ``h * w``); the mask itself is always decoded by pycocotools.
    """
    from vecexplore.io._rle_check import check_rle_bytes

    code, value = check_rle_bytes(np.frombuffer(counts, np.uint8), h * w)
    return {
        0: None,
        1: f"compressed RLE counts has an invalid character at position {value}",
        2: "compressed RLE counts ends in the middle of a value",
        3: f"compressed RLE counts decodes to a count out of range ({value})",
        4: f"compressed RLE counts sum to {value}, not height * width = {h * w}",
    }[code]


def to_rle(seg: Any, h: int, w: int) -> tuple[dict | None, str | None]:
    """One COCO ``segmentation`` → ``(compressed RLE, None)`` or ``(None, problem)``.

    Args:
        seg: polygons, an uncompressed RLE dict or a compressed RLE dict.
        h, w: the image's height and width in pixels (> 0).
    """
    mu = _mask_utils()
    if h <= 0 or w <= 0:
        return None, "the image's size is unknown (width/height 0); a mask needs it"
    if type(seg) is list:
        problem = _check_polygons(seg)
        if problem:
            return None, problem
        return mu.merge(mu.frPyObjects(seg, h, w)), None
    if type(seg) is dict:
        problem = _check_size(seg, h, w)
        if problem:
            return None, problem
        counts = seg.get("counts")
        if type(counts) is list:
            problem = _check_counts(counts, h, w)
            if problem:
                return None, problem
            return mu.frPyObjects(seg, h, w), None
        if type(counts) in (str, bytes):
            raw = counts.encode("ascii", "replace") if type(counts) is str else counts
            problem = rle_string_problem(raw, h, w)
            if problem:
                return None, problem
            return {"size": [h, w], "counts": raw}, None
        return None, f"RLE counts must be a list of integers or a string, got {type(counts).__name__}"
    return None, f"segmentation must be a list of polygons or an RLE object, got {type(seg).__name__}"


def _image_sizes(gt: Any) -> dict:
    """``{image id: (height, width)}`` from raw COCO ``images`` (what parsed; the parser names the rest)."""
    out = {}
    for r in gt.get("images", []) if type(gt) is dict else []:
        if type(r) is dict and type(r.get("id")) is int:
            h, w = r.get("height"), r.get("width")
            out[r["id"]] = (h if type(h) is int else 0, w if type(w) is int else 0)
    return out


def _pred_list(pred: Any) -> list | None:
    if isinstance(pred, dict):
        pred = pred.get("annotations")
    return pred if isinstance(pred, list) else None


def results_with_boxes(gt: Any, pred: Any, *, pred_name: str) -> tuple[Any, bool]:
    """Give mask-only COCO results a ``bbox`` (pycocotools' ``loadRes``: ``toBbox`` of the mask).

    Returns:
        ``(pred, mask_area)``: ``pred`` with copies of the records that lacked a
        ``bbox`` (the user's objects are not changed), and whether prediction
        areas are mask areas — pycocotools' rule: when the first result has no
        ``bbox``, every result's ``area`` is its mask area, else ``w * h``.
    """
    recs = _pred_list(pred)
    if not recs or not any(type(r) is dict and "bbox" not in r and has_segmentation(r) for r in recs):
        first = recs[0] if recs else None
        return pred, bool(type(first) is dict and "bbox" not in first and has_segmentation(first))
    sizes = _image_sizes(gt)
    mu = _mask_utils()
    out = list(recs)
    list_name = "annotations" if isinstance(pred, dict) else ""
    for i, r in enumerate(recs):
        if type(r) is not dict or "bbox" in r or not has_segmentation(r) or r.get("image_id") not in sizes:
            continue  # the parser reports what is wrong with the record itself
        h, w = sizes[r["image_id"]]
        rle, problem = to_rle(r["segmentation"], h, w)
        if problem:
            raise InputError(problem, path=pred_name, record=_label(list_name, i, r))
        box = [float(v) for v in mu.toBbox(rle)]
        if box[2] <= 0 or box[3] <= 0:
            raise InputError("mask is empty (no pixel inside the image) and there is no bbox", path=pred_name,
                             record=_label(list_name, i, r))
        out[i] = {**r, "bbox": box}
    first = recs[0]
    mask_area = type(first) is dict and "bbox" not in first
    return ({**pred, "annotations": out} if isinstance(pred, dict) else out), mask_area


def _label(list_name: str, i: int, r: Any) -> str:
    oid = r.get("id") if type(r) is dict else None
    return f"{list_name}[{i}]" + (f" (id {oid})" if type(oid) is int else "")


def _rles(recs: Sequence, image_idx: np.ndarray, images: ImageTable, *, path: str,
          list_name: str) -> np.ndarray | None:
    """The records' masks, or None (with a warning) when some records have none."""
    has = [has_segmentation(r) for r in recs]
    if not any(has):
        return None
    if not all(has):
        i = has.index(False)
        log.warning("%s: %s has no segmentation while %d of %d records have one: masks not used (box evaluation only)",
                    path, _label(list_name, i, recs[i]), sum(has), len(has))
        return None
    out = np.empty(len(recs), object)
    heights, widths = images.height[image_idx].tolist(), images.width[image_idx].tolist()
    for i, r in enumerate(recs):
        rle, problem = to_rle(r["segmentation"], heights[i], widths[i])
        if problem:
            raise InputError(problem, path=path, record=_label(list_name, i, r))
        out[i] = rle
    return out


def with_coco_masks(dataset: Dataset, gt: Any, pred: Any, *, gt_name: str, pred_name: str,
                    pred_mask_area: bool) -> Dataset:
    """``dataset`` (just parsed from ``gt``/``pred``) with the masks of its COCO records.

    Each side carries masks when every one of its records has a non-empty
    ``segmentation`` (see the module docstring).
    With ``pred_mask_area`` (see :func:`results_with_boxes`) prediction areas are
    mask areas.
    """
    anns = gt.get("annotations") if type(gt) is dict else None
    anns = anns or []
    g = dataset.gt
    rle = _rles(anns, g.image_idx, dataset.images, path=gt_name, list_name="annotations")
    if rle is not None:
        g = replace(g, rle=rle)
    recs = _pred_list(pred) or []
    p = dataset.pred
    rle = _rles(recs, p.image_idx, dataset.images, path=pred_name,
                list_name="annotations" if isinstance(pred, dict) else "")
    if rle is not None:
        p = replace(p, rle=rle, area=mask_areas(rle) if pred_mask_area else p.area)
    if g is dataset.gt and p is dataset.pred:
        return dataset
    return replace(dataset, gt=g, pred=p)


def mask_areas(rle: np.ndarray) -> np.ndarray:
    """(n,) float64 pixel count of each mask (pycocotools ``area``)."""
    if len(rle) == 0:
        return np.zeros(0)
    # pycocotools 2.0.11 ``area`` of 256 or more masks at once raises OverflowError (a uint8 count
    # under NumPy 2): measure in blocks of 255.
    mu, rles = _mask_utils(), list(rle)
    return np.concatenate([np.asarray(mu.area(rles[i:i + 255]), np.float64) for i in range(0, len(rles), 255)])


def mask_boxes(rle: np.ndarray) -> np.ndarray:
    """(n, 4) float64 ``xywh`` bounding box of each mask (pycocotools ``toBbox``)."""
    if len(rle) == 0:
        return np.zeros((0, 4))
    return np.asarray(_mask_utils().toBbox(list(rle)), np.float64).reshape(-1, 4)


def polygon_rles(polygons: Sequence[np.ndarray], heights: np.ndarray, widths: np.ndarray,
                 locate: Callable[[int], tuple[str, str]]) -> np.ndarray:
    """Pixel-unit polygons ((k, 2) float64 each, one per object) → compressed RLEs.

    ``locate(i)`` names object ``i`` (file, record) when its mask is refused.
    """
    out = np.empty(len(polygons), object)
    for i, poly in enumerate(polygons):
        rle, problem = to_rle([np.asarray(poly, np.float64).ravel().tolist()], int(heights[i]), int(widths[i]))
        if problem:
            path, record = locate(i)
            raise InputError(problem, path=path, record=record)
        out[i] = rle
    return out


def rle_polygons(rle: dict) -> list[np.ndarray]:
    """Outer contours of a mask as pixel polygons ((k, 2) float64 each), for drawing and export.

    Traced on the decoded mask with matplotlib's contour generator (half-pixel
    precision); an empty mask has none.
    """
    import contourpy

    m = _mask_utils().decode(rle)
    if not m.any():
        return []
    padded = np.pad(m, 1).astype(np.float64)
    gen = contourpy.contour_generator(z=padded, name="serial")
    out = []
    for line in gen.lines(0.5):
        pts = np.asarray(line, np.float64) - 1.0
        if len(pts) > 1 and (pts[0] == pts[-1]).all():
            pts = pts[:-1]  # closed: the first point repeated
        prev, nxt = np.roll(pts, 1, axis=0), np.roll(pts, -1, axis=0)
        cross = (pts[:, 0] - prev[:, 0]) * (nxt[:, 1] - pts[:, 1]) - (pts[:, 1] - prev[:, 1]) * (nxt[:, 0] - pts[:, 0])
        pts = pts[cross != 0]  # corners only: collinear steps add nothing
        if len(pts) >= 3:
            out.append(pts)
    return out


def mask_outline(rle: dict, xywh: np.ndarray) -> np.ndarray:
    """(2k,) pixel ``x1 y1 … xk yk`` of a mask's largest outer contour (the most corners), for
    formats with one polygon per object (YOLO-seg, Label Studio, CVAT); its box's corners if the
    mask is empty."""
    polys = rle_polygons(rle)
    if not polys:
        x, y, w, h = xywh
        return np.array([x, y, x + w, y, x + w, y + h, x, y + h], np.float64)
    return max(polys, key=len).ravel()

