"""COCO JSON records → validated columns (the parsing half of :mod:`vecexplore.io.coco`).

Every record is checked for shape, keys and types; a bad one raises InputError
naming the file, the list and index (and id), and the problem. Integer fields
(ids, ``image_id``, ``category_id``, ``width``, ``height``) must fit in a signed
64-bit integer; numbers (``bbox``, ``score``, ``area``) must fit in a float64 and a
box's corners and area must stay finite. The common case
(well-formed input) is checked column-wise at C speed; only when that finds
something unexpected does a record-by-record pass run to name the culprit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from vecexplore.cpus import usable_cpus
from vecexplore.errors import InputError
from vecexplore.io._common import first_duplicate, fits_int64, out_of_range
from vecexplore.types import Categories, ImageTable

_NUM = (int, float)
_IMAGE_KEYS = ("id", "file_name", "width", "height", "split")
_SCALAR = (str, int, float, bool, type(None))


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


def parse_native(gt: bytes, pred: bytes | None, *, gt_name: str, pred_name: str) -> _Parsed | None:
    """:func:`_parse` of the files' bytes with the C reader (``vecexplore._native.parse_coco``),
    which puts the annotation records straight into columns; None when the extension is
    missing, the reader hands back (anything unusual), or any check fails: the caller
    then parses the standard way, whose errors name the file, record and problem."""
    try:
        from vecexplore import _native
    except ImportError:
        return None
    g, p = _parse_both(_native.parse_coco, gt, pred)
    if g is None or p is None:
        return None
    (doc, g_cols), (p_doc, p_cols) = g, p
    if not isinstance(doc, dict) or (pred is not None and p_cols is None):
        return None
    try:
        for key in ("images", "categories"):
            if key not in doc:
                return None
        images, size_missing = _parse_images(doc["images"], gt_name)
        categories = _parse_categories(doc["categories"], gt_name)
        gt_objs = _parse_objects(None, path=gt_name, list_name="annotations", predictions=False, images=images,
                                 categories=categories, columns=_column_arrays(g_cols, predictions=False))
        pred_objs = _parse_objects(None, path=pred_name, list_name="annotations" if isinstance(p_doc, dict) else "",
                                   predictions=True, images=images, categories=categories,
                                   columns=_column_arrays(p_cols, predictions=True))
    except InputError:
        return None
    return _Parsed(images, size_missing, categories, gt_objs, pred_objs)


#: Results files from this size are read in a second thread, beside the ground truth.
_THREADED_FROM_BYTES = 1 << 20


def _parse_both(parse_coco, gt: bytes, pred: bytes | None):
    """``(parse_coco(gt, False), parse_coco(pred, True))``; ``(None, None)`` for the second without
    ``pred``. The C reader releases the GIL while it reads annotation records, so with a second
    CPU a large results file is read in a thread while the ground truth is read here."""
    if pred is None:
        return parse_coco(gt, False), (None, None)
    if len(pred) < _THREADED_FROM_BYTES or len(gt) < _THREADED_FROM_BYTES or usable_cpus() < 2:
        return parse_coco(gt, False), parse_coco(pred, True)
    import threading

    out: list = [None]
    reader = threading.Thread(target=lambda: out.__setitem__(0, parse_coco(pred, True)), name="results-reader")
    reader.start()
    try:
        g = parse_coco(gt, False)
    finally:
        reader.join()
    return g, out[0]


def _column_arrays(cols: dict | None, *, predictions: bool) -> dict:
    """The C reader's column buffers as (writable) arrays; no records = empty columns."""
    n = 0 if cols is None else cols["n"]

    def arr(key, dtype, shape=None):
        if cols is None:
            a = np.zeros(0, dtype)
        else:  # the C reader hands over bytearrays: writable, so no copy
            a = np.frombuffer(cols[key], dtype)
            a = a if a.flags.writeable else a.copy()
        return a.reshape(shape if shape is not None else n)

    out = {"image_id": arr("image_id", np.int64), "category_id": arr("category_id", np.int64),
           "bbox": arr("bbox", np.float64, (n, 4)), "id": arr("id", np.int64), "id_given": arr("id_given", np.bool_),
           "score": arr("score", np.float64) if predictions else None}
    if not predictions:
        out.update(iscrowd=arr("iscrowd", np.bool_), area=arr("area", np.float64),
                   area_given=arr("area_given", np.bool_))
    return out


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(type(value), type(value).__name__)


def _is_int(value: Any) -> bool:
    return type(value) is int or (type(value) is float and value.is_integer())


def _is_id(value: Any) -> bool:
    """An integer that fits in int64 (what a record label may show as its id)."""
    return _is_int(value) and fits_int64(value)


def _too_big_for_float(value: Any) -> bool:
    """An int beyond float64 (JSON ``1e400`` is already ``inf``; ``10**400`` is an int)."""
    return type(value) is int and not -1.7976931348623157e308 <= value <= 1.7976931348623157e308


def _record_id(r: Any, where: str, required: tuple[str, ...], path: str) -> int:
    """Check that a record is an object with the ``required`` keys and an integer ``id``; return the id."""
    if type(r) is not dict:
        raise InputError(f"expected an object, got {_kind(r)}", path=path, record=where)
    for key in required:
        if key not in r:
            raise InputError(f"missing required key '{key}'", path=path, record=where)
    if not _is_int(r["id"]):
        raise InputError(f"id must be an integer, got {r['id']!r}", path=path, record=where)
    if not fits_int64(r["id"]):
        raise InputError(out_of_range("id", r["id"]), path=path, record=where)
    return int(r["id"])


def _parse_images(recs: Any, path: str) -> tuple[ImageTable, np.ndarray]:
    if not isinstance(recs, list):
        raise InputError(f"'images' must be a list, got {_kind(recs)}", path=path)
    if not recs:
        raise InputError("'images' is empty: no images (empty dataset)", path=path)
    cols = _image_columns_fast(recs)
    ids, names, width, height, size_missing, split, extra = cols if cols is not None else _image_columns_checked(recs, path)
    dup = first_duplicate(ids)
    if dup is not None:
        a, b = dup
        raise InputError(f"duplicate image id (also images[{a}])", path=path, record=f"images[{b}] (id {ids[b]})")
    metadata = {k: _metadata_column(v) for k, v in extra.items() if all(type(x) in _SCALAR for x in v)}
    table = ImageTable(image_id=ids, file_name=np.array(names, dtype=object), width=width, height=height,
                       split=None if all(s is None for s in split) else split, metadata=metadata)
    return table, size_missing


def _image_columns_checked(recs: list, path: str):
    """Record by record: raise on the first bad key or value (naming it), else the image columns."""
    n = len(recs)
    ids, names = np.empty(n, np.int64), []
    width, height = np.zeros(n, np.int64), np.zeros(n, np.int64)
    size_missing = np.zeros(n, bool)
    split: list[str | None] = []
    extra: dict[str, list] = {}
    for i, r in enumerate(recs):
        ids[i] = _record_id(r, f"images[{i}]", ("id", "file_name"), path)
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
                if not fits_int64(v):
                    raise InputError(out_of_range(key, v), path=path, record=where)
            width[i], height[i] = int(w), int(h)
        s = r.get("split")
        if s is not None and type(s) is not str:
            raise InputError(f"split must be a string, got {s!r}", path=path, record=where)
        split.append(s)
        for key, v in r.items():
            if key not in _IMAGE_KEYS:
                extra.setdefault(key, [None] * n)[i] = v
    return ids, names, width, height, size_missing, split, extra


def _image_columns_fast(recs: list):
    """The image columns of well-formed records (every check of
    :func:`_image_columns_checked`, column-wise; sizes all given), or None at the first
    surprise: the checked pass then names the record."""
    if _types(recs) - {dict}:
        return None
    try:
        ids, names = list(map(itemgetter("id"), recs)), list(map(itemgetter("file_name"), recs))
    except KeyError:
        return None
    width, height = [r.get("width") for r in recs], [r.get("height") for r in recs]
    split = [r.get("split") for r in recs]
    if (_types(ids) - {int} or _types(names) - {str} or not all(names) or _types(width) - {int}
            or _types(height) - {int} or _types(split) - {str, type(None)}):
        return None
    try:
        ids_a, width_a, height_a = np.array(ids, np.int64), np.array(width, np.int64), np.array(height, np.int64)
    except OverflowError:
        return None
    if (width_a < 0).any() or (height_a < 0).any():
        return None
    keys = [k for k in dict.fromkeys(chain.from_iterable(recs)) if k not in _IMAGE_KEYS]  # first-seen order
    extra = {k: [r.get(k) for r in recs] for k in keys}
    return ids_a, names, width_a, height_a, np.zeros(len(recs), bool), split, extra


def _metadata_column(values: list) -> list:
    """An extra image key's values as one column type the run store can write: kept
    when they are all text, all booleans, or all numbers whose integers fit int64
    (None anywhere); otherwise (mixed kinds, a bigger integer) as text."""
    kinds = {bool if type(x) is bool else str if type(x) is str else float
             for x in values if x is not None}
    big = any(type(x) is int and not fits_int64(x) for x in values)
    if len(kinds) <= 1 and not big:
        return values
    return [None if x is None else str(x) for x in values]


def _parse_categories(recs: Any, path: str) -> Categories:
    if not isinstance(recs, list):
        raise InputError(f"'categories' must be a list, got {_kind(recs)}", path=path)
    if not recs:
        raise InputError("'categories' is empty: no classes", path=path)
    ids, names = np.empty(len(recs), np.int64), []
    for i, r in enumerate(recs):
        where = f"categories[{i}]"
        ids[i] = _record_id(r, where, ("id", "name"), path)
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
                   images: ImageTable, categories: Categories, columns: dict | None = None) -> _Objects:
    """The objects of one annotation list: from its records, or from ``columns``
    (what :func:`parse_native` read straight from the file; ``recs`` is then None)."""
    if columns is None and not isinstance(recs, list):
        raise InputError(f"'{list_name or 'predictions'}' must be a list, got {_kind(recs)}", path=path)
    n = len(recs) if columns is None else len(columns["image_id"])

    def label(i: int) -> str:
        if columns is not None:  # the same text as from the record
            oid = int(columns["id"][i]) if columns["id_given"][i] else None
        else:
            r = recs[i]
            oid = r.get("id") if type(r) is dict else None
        return f"{list_name}[{i}]" + (f" (id {oid})" if _is_id(oid) else "")

    def fail(i: int, message: str):
        raise InputError(message, path=path, record=label(i))

    def bbox_of(i: int):  # for messages; parse_native's caller re-reads the file the standard way on any error
        return recs[i]["bbox"] if columns is None else xywh[i].tolist()

    native = columns if columns is not None else _columns_native(recs, predictions)
    if native is not None:
        cols = native
        arrays = native["image_id"], native["category_id"], native["bbox"], native["score"]
    else:
        cols = _columns_fast(recs, predictions)
        arrays = None if cols is None else _arrays(cols, n, predictions)
    if arrays is None:  # a surprise, or a number too big for its column: name the record
        cols = _columns_checked(recs, predictions, fail)
        arrays = _arrays(cols, n, predictions)
        assert arrays is not None, "the checked pass refuses every value that overflows"
    image_id, category_id, xywh, score = arrays
    bad = ~np.isfinite(xywh).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        fail(i, f"bbox has a non-finite value {bbox_of(i)!r}")
    with np.errstate(over="ignore"):
        extent = np.stack([xywh[:, 0] + xywh[:, 2], xywh[:, 1] + xywh[:, 3], xywh[:, 2] * xywh[:, 3]], axis=1)
    bad = ~np.isfinite(extent).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        fail(i, f"bbox {bbox_of(i)!r} is too large (x + w, y + h or w * h overflows a float)")
    bad = (xywh[:, 2] <= 0) | (xywh[:, 3] <= 0)
    if bad.any():
        i = int(np.argmax(bad))
        axis, value = ("width", float(xywh[i, 2])) if xywh[i, 2] <= 0 else ("height", float(xywh[i, 3]))
        fail(i, f"bbox has non-positive {axis} ({axis[0]}={value!r})")
    iscrowd = area = None
    if predictions:
        bad = ~np.isfinite(score) | (score < 0) | (score > 1)
        if bad.any():
            i = int(np.argmax(bad))
            fail(i, f"score must be in [0, 1], got {float(score[i])!r}")
    elif native is not None:
        iscrowd, area = native["iscrowd"], np.where(native["area_given"], native["area"], np.nan)
        bad = native["area_given"] & (~np.isfinite(area) | (area < 0))
        if bad.any():
            i = int(np.argmax(bad))
            fail(i, f"area must be a finite number >= 0, got {float(area[i])!r}")
    else:
        iscrowd = np.array(cols["iscrowd"], bool).reshape(n)
        try:
            area = np.array([np.nan if a is None else a for a in cols["area"]], np.float64).reshape(n)
        except OverflowError:  # an int area beyond float64 (the fast pass does not look)
            i = next(k for k, a in enumerate(cols["area"]) if _too_big_for_float(a))
            fail(i, f"area must be a finite number >= 0, got {cols['area'][i]!r}")
        given = np.array([a is not None for a in cols["area"]], bool).reshape(n)
        bad = given & (~np.isfinite(area) | (area < 0))
        if bad.any():
            i = int(np.argmax(bad))
            fail(i, f"area must be a finite number >= 0, got {float(area[i])!r}")
    image_idx = images.index_of_ids(image_id)
    if (image_idx < 0).any():
        i = int(np.argmax(image_idx < 0))
        fail(i, f"unknown image_id {image_id[i]} (not in the ground truth's images)")
    class_idx = categories.index_of_ids(category_id)
    if (class_idx < 0).any():
        i = int(np.argmax(class_idx < 0))
        fail(i, f"unknown category_id {category_id[i]} (not in the ground truth's categories)")
    if native is not None:
        all_ids = n > 0 and bool(native["id_given"].all())
        object_id = native["id"] if all_ids or not predictions else np.arange(1, n + 1, dtype=np.int64)
    elif predictions and (n == 0 or any(v is None for v in cols["id"])):
        object_id = np.arange(1, n + 1, dtype=np.int64)  # loadRes numbering
    else:
        object_id = np.array(cols["id"], np.int64).reshape(n)  # _arrays checked that they fit
    dup = first_duplicate(object_id)
    if dup is not None:
        a, b = dup
        fail(b, f"duplicate annotation id {object_id[b]} (also {list_name}[{a}])")
    return _Objects(path, label, image_idx, class_idx, xywh, object_id, score, iscrowd, area)


def _arrays(cols: dict, n: int, predictions: bool):
    """``(image_id, category_id, xywh, score)`` arrays of the columns, or None when a
    value does not fit its dtype (an id beyond int64, a number beyond float64)."""
    try:
        ids = [v for v in cols["id"] if v is not None]
        np.array(ids, np.int64)  # only checked here; converted where they are used
        image_id = np.array(cols["image_id"], np.int64).reshape(n)
        category_id = np.array(cols["category_id"], np.int64).reshape(n)
        xywh = np.array(cols["bbox"], np.float64).reshape(n, 4)
        score = np.array(cols["score"], np.float64).reshape(n) if predictions else None
    except OverflowError:
        return None
    return image_id, category_id, xywh, score


def _columns_native(recs: list, predictions: bool) -> dict | None:
    """The columns as arrays, filled by the C extension from well-formed records
    (the same acceptance as :func:`_columns_fast` plus :func:`_arrays`); None when
    the extension is missing or at the first surprise (the Python passes then run)."""
    try:
        from vecexplore import _native
    except ImportError:
        return None
    if type(recs) is not list:
        return None
    n = len(recs)
    out = {"image_id": np.empty(n, np.int64), "category_id": np.empty(n, np.int64),
           "bbox": np.empty((n, 4), np.float64), "score": np.empty(n if predictions else 0, np.float64),
           "id": np.empty(n, np.int64), "id_given": np.empty(n, np.bool_)}
    gt_cols = {"iscrowd": np.empty(n, np.bool_), "area": np.empty(n, np.float64), "area_given": np.empty(n, np.bool_)}
    if not predictions:
        out.update(gt_cols)
    ok = _native.coco_columns(recs, predictions, out["image_id"], out["category_id"], out["bbox"], out["score"],
                              out["id"], out["id_given"], *(gt_cols[k] for k in ("iscrowd", "area", "area_given")))
    if not ok:
        return None
    if not predictions:
        out["score"] = None
    return out


def _types(values) -> set:
    return set(map(type, values))


def _columns_fast(recs: list, predictions: bool) -> dict | None:
    """The columns of well-formed records, checked column-wise; None at the first
    surprise (the checked pass then names the record)."""
    keys = ("image_id", "category_id", "bbox", "score") if predictions else ("image_id", "category_id", "bbox")
    try:
        if _types(recs) - {dict}:
            return None
        cols = dict(zip(keys, zip(*map(itemgetter(*keys), recs), strict=True), strict=True)) if recs else {k: () for k in keys}
    except (KeyError, TypeError):
        return None
    ids = [r.get("id") for r in recs]
    id_types = _types(ids)
    if not (id_types <= {int} or (predictions and id_types <= {int, type(None)})):
        return None
    if _types(cols["image_id"]) - {int} or _types(cols["category_id"]) - {int}:
        return None
    boxes = cols["bbox"]
    if _types(boxes) - {list} or set(map(len, boxes)) - {4} or _types(chain.from_iterable(boxes)) - {int, float}:
        return None
    cols["id"] = ids
    if predictions:
        if _types(cols["score"]) - {int, float}:
            return None
        return cols
    crowd = [r.get("iscrowd", 0) for r in recs]
    if _types(crowd) - {int, bool} or set(crowd) - {0, 1}:
        return None
    area = [r.get("area") for r in recs]
    if _types(area) - {int, float, type(None)}:
        return None
    cols["iscrowd"], cols["area"] = crowd, area
    return cols


def _columns_checked(recs: list, predictions: bool, fail: Callable[[int, str], None]) -> dict:
    """Record by record: raise on the first bad key or type (naming it), else the columns."""
    required = ("image_id", "category_id", "bbox", "score") if predictions else ("id", "image_id", "category_id", "bbox")
    cols: dict[str, list] = {k: [] for k in ("id", "image_id", "category_id", "bbox", "score", "iscrowd", "area")}
    for i, r in enumerate(recs):
        if type(r) is not dict:
            fail(i, f"expected an object, got {_kind(r)}")
        for key in required:
            if key not in r:
                fail(i, f"missing required key '{key}'")
        for key in ("id", "image_id", "category_id"):
            v = r.get(key)
            if v is not None and not _is_int(v):
                fail(i, f"{key} must be an integer, got {v!r}")
            if v is not None and not fits_int64(v):
                fail(i, out_of_range(key, v))
            cols[key].append(None if v is None else int(v))
        bb = r["bbox"]
        if type(bb) is not list or len(bb) != 4 or not all(type(v) in _NUM for v in bb):
            fail(i, f"bbox must be a list of 4 numbers [x, y, w, h], got {bb!r}")
        if any(map(_too_big_for_float, bb)):
            fail(i, f"bbox has a non-finite value {bb!r}")
        cols["bbox"].append(bb)
        if predictions:
            s = r["score"]
            if type(s) not in _NUM:
                fail(i, f"score must be a number, got {s!r}")
            if _too_big_for_float(s):
                fail(i, f"score must be in [0, 1], got {s!r}")
            cols["score"].append(s)
        else:
            crowd = r.get("iscrowd", 0)
            if type(crowd) not in (int, bool) or crowd not in (0, 1):
                fail(i, f"iscrowd must be 0 or 1, got {crowd!r}")
            cols["iscrowd"].append(bool(crowd))
            a = r.get("area")
            if a is not None and (type(a) not in _NUM or _too_big_for_float(a)):
                fail(i, f"area must be a finite number >= 0, got {a!r}")
            cols["area"].append(a)
    return cols
