"""The object level of the app: the run's object map, object outcomes, and object crops (pure, Bokeh-free).

A run built with ``--level objects|both`` has an object map
(:mod:`vecexplore.mapping.objects`): every non-crowd GT object and every
prediction counted at the build's operating point has a crop embedding, a 2-D
UMAP position and an HDBSCAN cluster. The app then offers an *object level*
beside the image level: the scatter shows objects, selections pick objects.

Objects are named by their **row** in the objects table (``objects.parquet``):
GT rows ``0..m-1`` in input order, then prediction rows ``m..m+n-1`` (the order
of ``dataset.gt`` then ``dataset.pred``). An object selection is a sorted int64
array of rows; the images it covers are ``image_idx[rows]``.

Outcomes use the objects table's vocabulary
(:data:`vecexplore.eval.outcomes.OBJECT_OUTCOMES`), at the session's operating
point: a mapped prediction that falls below the confidence threshold is
``below_threshold`` there.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from vecexplore.eval.outcomes import (
    COUNTED,
    ERROR_TYPE_NAMES,
    FP_COLUMNS,
    OBJECT_OUTCOMES,
    GtOutcome,
    object_outcome_codes,
)

#: Outcomes that are errors: a GT object not found, or a false positive of any type.
ERROR_OUTCOMES: tuple[str, ...] = (GtOutcome.FN.label, GtOutcome.CONFUSED.label, *FP_COLUMNS)
_IS_ERROR = np.isin(np.array(OBJECT_OUTCOMES, object), ERROR_OUTCOMES)
#: Crops are served at this side (pixels); a gallery tile is ~112 px.
CROP_SIDE = 128


def _outcome_colours() -> dict[str, str]:
    from vecexplore.app import ui

    fp = {col: ui.ERROR_TYPE_COLOURS[name] for col, name in zip(FP_COLUMNS, ERROR_TYPE_NAMES, strict=False)}
    return {"tp": ui.TP_COLOUR, "fn": ui.MISSED_COLOUR, "confused": "#d62728", "crowd": ui.IGNORED_COLOUR, **fp,
            "ignored": ui.IGNORED_COLOUR, "below_threshold": ui.NAN_COLOUR}


#: The colour of each object outcome (the scatter's points, the gallery's frames): the detail
#: view's and the gallery's colours for the same outcomes.
OUTCOME_COLOURS: dict[str, str] = _outcome_colours()


def _frozen(arr) -> np.ndarray:
    arr = np.ascontiguousarray(arr)
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class ObjectMap:
    """The run's object map, read-only arrays over the objects table's rows (GT, then predictions).

    Attributes:
        num_gt: m, the number of GT rows (rows ≥ m are predictions).
        image_idx: (M,) int64 image of each object.
        class_idx: (M,) int64.
        xywh: (M, 4) float64 box in the image table's pixels.
        score: (M,) float64 prediction score (NaN for GT).
        mapped: (M,) bool the object has a crop embedding and a position (``obj_mapped``).
        x, y: (M,) float32 object UMAP position (NaN where not mapped).
        cluster: (M,) int64 crop cluster (-1 = noise or not mapped).
        points: (P,) int64 the mapped rows, ascending: the object scatter's rows.
        slices: the object slice table (``object_slices.parquet``; empty when the run has none).
        crop: (padding, min_size) of the build's crops.
    """

    num_gt: int
    image_idx: np.ndarray
    class_idx: np.ndarray
    xywh: np.ndarray
    score: np.ndarray
    mapped: np.ndarray
    x: np.ndarray
    y: np.ndarray
    cluster: np.ndarray
    points: np.ndarray
    slices: object
    crop: tuple[float, int]

    def __len__(self) -> int:
        return len(self.image_idx)

    def is_pred(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(rows, np.int64) >= self.num_gt

    def rows_of_images(self, images: np.ndarray, *, mapped_only: bool = True) -> np.ndarray:
        """Sorted rows of the objects on ``images`` (only mapped objects by default)."""
        hit = np.isin(self.image_idx, np.asarray(images, np.int64))
        if mapped_only:
            hit &= self.mapped
        return np.flatnonzero(hit).astype(np.int64)


def load_object_map(run, dataset) -> ObjectMap | None:
    """The :class:`ObjectMap` of a run; None for a run without one (``--level images``, classification)."""
    if dataset.task != "detection":
        return None
    objects = run.objects
    if "obj_row" not in objects:
        return None
    import pandas as pd

    from vecexplore.store.layout import OBJECT_SLICES, table_file

    gt, pred = dataset.gt, dataset.pred
    if len(objects) != len(gt) + len(pred):
        from vecexplore.errors import RunStoreError

        raise RunStoreError(f"{run.path}: objects.parquet has {len(objects)} rows, the dataset "
                            f"{len(gt) + len(pred)} objects")
    mapped = objects["obj_mapped"].to_numpy(bool)
    slices = run.table(OBJECT_SLICES) if (run.path / table_file(OBJECT_SLICES)).exists() else pd.DataFrame()
    crop = run.manifest.get("config", {}).get("crop") or {}
    return ObjectMap(
        num_gt=len(gt),
        image_idx=_frozen(np.concatenate([gt.image_idx, pred.image_idx]).astype(np.int64)),
        class_idx=_frozen(np.concatenate([gt.class_idx, pred.class_idx]).astype(np.int64)),
        xywh=_frozen(np.concatenate([gt.xywh, pred.xywh]).astype(np.float64)),
        score=_frozen(np.concatenate([np.full(len(gt), np.nan), pred.score]).astype(np.float64)),
        mapped=_frozen(mapped),
        x=_frozen(objects["obj_x"].to_numpy(np.float32)),
        y=_frozen(objects["obj_y"].to_numpy(np.float32)),
        cluster=_frozen(objects["obj_cluster"].to_numpy(np.int64)),
        points=_frozen(np.flatnonzero(mapped).astype(np.int64)),
        slices=slices,
        crop=(float(crop.get("padding", 0.25)), int(crop.get("min_size", 32))),
    )


# ---------------------------------------------------------------- outcomes at the operating point


@dataclass(frozen=True, eq=False)
class ObjectOutcomesView:
    """Every object's outcome at one operating point, (M,) over the objects table's rows.

    Attributes:
        code: int64 index into :data:`~vecexplore.eval.outcomes.OBJECT_OUTCOMES`.
        error: float64 1 for an error outcome (:data:`ERROR_OUTCOMES`), else 0 (the gallery's
            "worst first" key).
        score: float64 the prediction's score where it exists at the operating point, NaN otherwise
            (GT, or below the threshold): the gallery's confidence key.
    """

    code: np.ndarray
    error: np.ndarray
    score: np.ndarray


def object_outcomes(evaluation, omap: ObjectMap) -> ObjectOutcomesView:
    """:class:`ObjectOutcomesView` of ``evaluation`` (a detection evaluation of the run's dataset)."""
    oc = evaluation.outcomes
    code = object_outcome_codes(oc.gt_code, oc.pred_code)
    exists = np.r_[np.zeros(omap.num_gt, bool), oc.pred_code < COUNTED]
    score = np.where(exists, omap.score, np.nan)
    return ObjectOutcomesView(code=code, error=_IS_ERROR[code].astype(np.float64), score=score)


def outcome_label(code: int) -> str:
    return OBJECT_OUTCOMES[int(code)]


# ---------------------------------------------------------------- selections


def object_selection_of(pick: np.ndarray | None, image_selection: np.ndarray | None, omap: ObjectMap, *,
                        classes: tuple[int, ...] = (), universe: np.ndarray | None = None) -> np.ndarray | None:
    """The selected objects (sorted rows), None = no selection (every mapped object shows).

    * an object pick: the picked objects whose image passes the filters (``universe``, (N,) bool
      or None) and, with a class filter, whose own class is one of ``classes``;
    * no object pick but an image selection (a saved selection, a query, an image-level pick):
      the mapped objects on those images, with the same class rule;
    * neither: None.
    """
    if pick is not None:
        rows = np.asarray(pick, np.int64)
        if universe is not None:
            rows = rows[np.asarray(universe, bool)[omap.image_idx[rows]]]
    elif image_selection is not None:
        rows = omap.rows_of_images(image_selection)
    else:
        return None
    if classes:
        rows = rows[np.isin(omap.class_idx[rows], np.asarray(classes, np.int64))]
    return rows


def images_of(rows: np.ndarray, omap: ObjectMap) -> np.ndarray:
    """Sorted unique image_idx of object ``rows``."""
    return np.unique(omap.image_idx[np.asarray(rows, np.int64)])


def cell_rows(confusion, row: int, col: int, dataset) -> np.ndarray:
    """Sorted object-table rows of the objects in confusion cell (row, col): the cell's GT (by
    annotation id) and its predictions (by prediction id, offset by the GT count)."""
    ids = confusion.cell_objects(row, col)
    gt_rows = _rows_of_ids(dataset.gt.object_id, ids.gt)
    pred_rows = _rows_of_ids(dataset.pred.object_id, ids.pred) + len(dataset.gt)
    return np.sort(np.concatenate([gt_rows, pred_rows])).astype(np.int64)


def _rows_of_ids(object_id: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Rows of ``wanted`` ids in ``object_id`` (unique per kind, :class:`~vecexplore.types.Boxes`)."""
    wanted = np.asarray(wanted, np.int64)
    if wanted.size == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(object_id, kind="stable")
    pos = np.searchsorted(object_id[order], wanted)
    return order[pos].astype(np.int64)


# ---------------------------------------------------------------- crops


def crop_box(omap: ObjectMap, row: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(window, box) of object ``row`` in the image table's pixels: its crop window ``x0, y0, x1, y1``
    (the build's padding and minimum size, :func:`vecexplore.embed.crops.crop_windows`) and its box
    ``x0, y0, x1, y1``. Used to cut the crop and to draw the box on its tile."""
    from vecexplore.embed.crops import CropConfig, crop_windows

    x, y, w, h = omap.xywh[row]
    box = np.array([x, y, x + w, y + h], np.float64)
    window = crop_windows(box[None], (1.0, 1.0), CropConfig(padding=omap.crop[0], min_size=omap.crop[1]))[0]
    return window.astype(np.float64), box


def box_in_tile(window: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The box as fractions ``(l, t, r, b)`` of its square crop window (0..1, y down), clipped to it."""
    side = max(float(window[2] - window[0]), 1e-9)
    frac = (box - np.r_[window[:2], window[:2]]) / side
    return np.clip(frac, 0.0, 1.0)


def render_crop(image, window: np.ndarray, table_size: tuple[int, int], *, side: int = CROP_SIDE) -> bytes:
    """A JPEG of ``window`` (table pixels) cut from a decoded PIL ``image`` of any size (the full
    image, a reduced decode or the thumbnail: the window is scaled to it), resized to ``side``²;
    the part of the window outside the image is black (as the embedded crops)."""
    from PIL import Image

    tw, th = table_size
    w, h = image.size
    sx, sy = (w / tw if tw > 0 else 1.0), (h / th if th > 0 else 1.0)
    x0, y0, x1, y1 = (float(v) for v in window)
    box = (round(x0 * sx), round(y0 * sy), max(round(x1 * sx), round(x0 * sx) + 1),
           max(round(y1 * sy), round(y0 * sy) + 1))
    crop = image.convert("RGB").crop(box).resize((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    crop.save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def crop_source(window: np.ndarray, table_size: tuple[int, int], thumb_side: int, *, side: int = CROP_SIDE) -> str:
    """Where a crop is cut from: ``"thumb"`` when the window covers at least ``side`` pixels of the
    thumbnail (no decode of the full image), else ``"image"``."""
    tw, th = table_size
    if tw <= 0 or th <= 0:
        return "image"
    scale = thumb_side / max(tw, th)
    return "thumb" if (window[2] - window[0]) * scale >= side else "image"


__all__ = [
    "CROP_SIDE", "ERROR_OUTCOMES", "OUTCOME_COLOURS", "ObjectMap", "ObjectOutcomesView", "box_in_tile", "cell_rows", "crop_box",
    "crop_source", "images_of", "load_object_map", "object_outcomes", "object_selection_of", "outcome_label",
    "render_crop",
]  # fmt: skip
