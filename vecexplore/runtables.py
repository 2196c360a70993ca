"""The run store's tables, assembled from the pipeline's aligned arrays.

``images.parquet`` (one row per image, image_idx order):
    image_idx, image_id, file_name, width, height, [split], the per-image outcome
    columns of the evaluation at the build's operating point, x, y (UMAP, NaN
    for unreadable images), cluster (-1 = noise or unreadable), cluster_prob,
    readable, unreadable_reason, digest, the image properties of
    :mod:`vecexplore.properties`; classification adds gt_class_idx,
    pred_class_idx, pred_score (the raw prediction, whatever the threshold).

``objects.parquet`` (detection; GT rows in input order, then predictions in
input order — the order is the metrics' tie-break, so keep it):
    the evaluation's objects table + x, y, w, h, area, iscrowd + the object
    properties of :mod:`vecexplore.properties`; with masks, ``mask_counts``
    (compressed COCO RLE counts, bytes; the size is the image's; null for
    objects without a mask).
"""

from __future__ import annotations

import numpy as np

from vecexplore.errors import ValidationError
from vecexplore.properties import object_properties, table_properties

#: Most points kept per confidence curve in metrics.json (the optimum is always kept).
MAX_CURVE_POINTS = 400


def image_table(dataset, per_image, xy, labels, prob, readable, reasons, digests, pixel_props):
    """The images table (see module docstring); every array is (N,) in image_idx order."""
    n = dataset.num_images
    for name, arr in (("per_image", per_image), ("xy", xy), ("labels", labels), ("readable", readable)):
        if len(arr) != n:
            raise ValidationError(f"images table: {name} has {len(arr)} rows, expected {n}")
    df = dataset.images.to_pandas()
    outcome_cols = [c for c in per_image.columns if c != "image_idx"]
    for c in outcome_cols:
        df[c] = per_image[c].to_numpy()
    df["x"] = np.asarray(xy, np.float32)[:, 0]
    df["y"] = np.asarray(xy, np.float32)[:, 1]
    df["cluster"] = np.asarray(labels, np.int64)
    df["cluster_prob"] = np.asarray(prob, np.float32)
    df["readable"] = np.asarray(readable, bool)
    df["unreadable_reason"] = np.asarray([r if r else "" for r in reasons], dtype=object)
    df["digest"] = np.asarray([d or "" for d in digests], dtype=object)
    for name, values in pixel_props.items():
        df[name] = values
    n_objects = np.zeros(n, np.int64)
    if dataset.task == "detection":
        gt = dataset.gt
        np.add.at(n_objects, gt.image_idx[~gt.iscrowd], 1)
    props = table_properties(dataset.images.width, dataset.images.height, n_objects)
    for name, values in props.items():
        if name not in ("width", "height"):  # the raw columns are already there
            df[name] = values
    if dataset.task == "classification":
        gt_cls = np.full(n, -1, np.int64)
        gt_cls[dataset.gt.image_idx] = dataset.gt.class_idx
        pred_cls = np.full(n, -1, np.int64)
        pred_cls[dataset.pred.image_idx] = dataset.pred.class_idx
        pred_score = np.full(n, np.nan)
        pred_score[dataset.pred.image_idx] = dataset.pred.score
        df["gt_class_idx"], df["pred_class_idx"], df["pred_score"] = gt_cls, pred_cls, pred_score
    return df


def object_table(dataset, objects):
    """The objects table: the evaluation's rows + boxes + object properties."""
    gt, pred = dataset.gt, dataset.pred
    ids = np.concatenate([gt.object_id, pred.object_id])
    if len(objects) != len(ids) or not np.array_equal(objects["object_id"].to_numpy(), ids):
        raise ValidationError("objects table: evaluation rows are not GT-then-predictions in input order")
    df = objects.copy()
    df["kind"] = df["kind"].astype(str)
    df["outcome"] = df["outcome"].astype(str)
    xywh = np.concatenate([gt.xywh, pred.xywh])
    for j, name in enumerate("xywh"):
        df[name] = xywh[:, j]
    df["area"] = np.concatenate([gt.area, pred.area])
    df["iscrowd"] = np.concatenate([gt.iscrowd, pred.iscrowd])
    if gt.rle is not None or pred.rle is not None:  # masks: compressed RLE counts (null where none)
        counts = [None if objs.rle is None else rle["counts"] for objs in (gt, pred)
                  for rle in (objs.rle if objs.rle is not None else [None] * len(objs))]
        df["mask_counts"] = np.array([c.encode("ascii") if isinstance(c, str) else c for c in counts], dtype=object)
    # Separately per kind: a GT box's overlaps count other GT, a prediction's other predictions.
    w, h = dataset.images.width, dataset.images.height
    props_gt = object_properties(gt.xywh, gt.image_idx, w, h)
    props_pred = object_properties(pred.xywh, pred.image_idx, w, h)
    props = {k: np.concatenate([props_gt[k], props_pred[k]]) for k in props_gt}
    for name, values in props.items():
        df[name] = values
    return df


def _thin(curve_conf: np.ndarray, keep_idx: int | None, limit: int = MAX_CURVE_POINTS) -> np.ndarray:
    n = len(curve_conf)
    if n <= limit:
        return np.arange(n)
    idx = np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))
    if keep_idx is not None:
        idx = np.unique(np.append(idx, keep_idx))
    return idx


def _curve_json(curve) -> dict:
    conf = np.asarray(curve.confidence)
    f1 = np.asarray(curve.f1, np.float64)
    best = int(np.nanargmax(f1)) if len(f1) and np.isfinite(f1).any() else None
    idx = _thin(conf, best)
    out = {name: np.asarray(getattr(curve, name))[idx].tolist() for name in ("confidence", "precision", "recall", "f1")}
    out["optimal"] = list(curve.optimal())
    return out


def sweep_json(ev) -> dict:
    """Precision/recall/F1 vs confidence, overall and per class, thinned for metrics.json."""
    return {
        "overall": _curve_json(ev.sweep.overall),
        "per_class": [_curve_json(c) for c in ev.sweep.per_class],
    }
