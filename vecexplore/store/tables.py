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
from vecexplore.store.layout import CLASS_SCORES

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


def dataset_of(run):
    """The evaluated :class:`~vecexplore.types.Dataset` rebuilt from a run's tables (the
    inverse of :func:`image_table` / :func:`object_table`); see :meth:`vecexplore.store.Run.dataset`."""
    from vecexplore.types import Boxes, Categories, Dataset, ImageTable, Labels

    images = run.images
    table = ImageTable(
        image_id=images["image_id"].to_numpy(),
        file_name=images["file_name"].to_numpy(object),
        width=images["width"].to_numpy(),
        height=images["height"].to_numpy(),
        split=images["split"].to_numpy(object) if "split" in images else None,
    )
    cats = Categories(
        ids=np.array([c["id"] for c in run.categories], np.int64),
        names=np.array([c["name"] for c in run.categories], object),
    )
    if run.task == "detection":
        obj = run.objects

        def boxes(rows, predictions: bool):
            return Boxes(
                image_idx=rows["image_idx"].to_numpy(),
                class_idx=rows["class_idx"].to_numpy(),
                xywh=rows[["x", "y", "w", "h"]].to_numpy(np.float64),
                object_id=rows["object_id"].to_numpy(),
                score=rows["score"].to_numpy(np.float64) if predictions else None,
                iscrowd=rows["iscrowd"].to_numpy(bool),
                area=rows["area"].to_numpy(np.float64),
                rle=_masks(rows, table),
            )

        gt = boxes(obj[obj["kind"] == "gt"], False)
        pred = boxes(obj[obj["kind"] == "pred"], True)
    else:
        has_gt = images["gt_class_idx"].to_numpy() >= 0
        has_pred = images["pred_class_idx"].to_numpy() >= 0
        idx = np.arange(len(images))
        scores_path = run.path / CLASS_SCORES
        scores = run.array(scores_path.name)[has_pred] if scores_path.exists() else None
        gt = Labels(image_idx=idx[has_gt], class_idx=images["gt_class_idx"].to_numpy()[has_gt])
        pred = Labels(
            image_idx=idx[has_pred],
            class_idx=images["pred_class_idx"].to_numpy()[has_pred],
            score=images["pred_score"].to_numpy(np.float64)[has_pred],
            scores=scores,
        )
    inputs = run.manifest.get("inputs", {})
    ds = Dataset(
        task=run.task,
        images=table,
        categories=cats,
        gt=gt,
        pred=pred,
        images_root=inputs.get("images_root"),
        boxes_clipped=run.boxes_clipped is True,
    )
    return ds


def _masks(rows, images) -> np.ndarray | None:
    """The objects' compressed RLEs from ``mask_counts`` (None unless every row has one)."""
    if "mask_counts" not in rows or len(rows) == 0 or rows["mask_counts"].isna().any():
        return None
    idx = rows["image_idx"].to_numpy()
    h, w = images.height[idx].tolist(), images.width[idx].tolist()
    out = np.empty(len(rows), object)
    out[:] = [{"size": [hi, wi], "counts": bytes(c)} for hi, wi, c in zip(h, w, rows["mask_counts"], strict=True)]
    return out
