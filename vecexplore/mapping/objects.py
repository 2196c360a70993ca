"""The object-level map: which objects are mapped, their boxes, their columns in the objects table.

An object is *mapped* when it is a non-crowd GT object or a prediction counted at
the build's operating point (TP or an FP type: not ignored, not below the
confidence threshold). Mapped objects are embedded from their crops
(:mod:`vecexplore.embed.crops`), then projected and clustered exactly like images
(:func:`vecexplore.mapping.build_map`: kNN → UMAP 2-D + UMAP ~10-D → HDBSCAN).

Columns added to ``objects.parquet`` (every row; ``-1``/NaN where not mapped):

* ``obj_mapped`` bool: mapped, with a crop that was embedded (its image decodable);
* ``obj_row`` int64: the row of ``object_embeddings.npy`` (-1 for objects not mapped);
* ``obj_x``, ``obj_y`` float32: 2-D UMAP of the crop (NaN when not ``obj_mapped``);
* ``obj_cluster`` int64: HDBSCAN cluster of the crop (-1 = noise or not mapped);
* ``obj_cluster_prob`` float32.
"""

from __future__ import annotations

import numpy as np

#: Prediction outcomes that are not counted at the operating point (never mapped).
UNCOUNTED = ("ignored", "below_threshold")
#: Object columns of the object-level map (see the module docstring).
OBJECT_MAP_COLUMNS = ("obj_mapped", "obj_row", "obj_x", "obj_y", "obj_cluster", "obj_cluster_prob")


def mapped_objects(objects) -> np.ndarray:
    """(n,) bool over the objects table: non-crowd GT and counted predictions."""
    kind = objects["kind"].astype(str).to_numpy()
    outcome = objects["outcome"].astype(str).to_numpy()
    gt = (kind == "gt") & (outcome != "crowd")
    pred = (kind == "pred") & ~np.isin(outcome, UNCOUNTED)
    return gt | pred


def object_boxes(dataset, mask: np.ndarray):
    """:class:`~vecexplore.embed.crops.ObjectBoxes` of the masked rows (GT rows, then predictions)."""
    from vecexplore.embed.crops import ObjectBoxes

    gt, pred = dataset.gt, dataset.pred
    mask = np.asarray(mask, bool)
    if len(mask) != len(gt) + len(pred):
        raise ValueError(f"object mask has {len(mask)} rows, the dataset {len(gt) + len(pred)} objects")
    xywh = np.concatenate([gt.xywh, pred.xywh])[mask]
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    return ObjectBoxes(np.concatenate([gt.image_idx, pred.image_idx])[mask], xyxy)


def with_object_map(objects, mask, xy, labels, prob, ok):
    """A copy of the objects table with the object-map columns (module docstring).

    ``xy (m, 2)``, ``labels (m,)``, ``prob (m,)`` and ``ok (m,)`` are aligned to the
    ``mask`` rows in table order (the :func:`object_boxes` order).
    """
    mask = np.asarray(mask, bool)
    rows = np.flatnonzero(mask)
    m = len(rows)
    for name, arr in (("xy", xy), ("labels", labels), ("prob", prob), ("ok", ok)):
        if len(arr) != m:
            raise ValueError(f"object map: {name} has {len(arr)} rows, {m} objects are mapped")
    n = len(objects)
    df = objects.copy()
    mapped = np.zeros(n, bool)
    mapped[rows] = np.asarray(ok, bool)
    row = np.full(n, -1, np.int64)
    row[rows] = np.arange(m)
    x = np.full(n, np.nan, np.float32)
    y = np.full(n, np.nan, np.float32)
    x[rows], y[rows] = np.asarray(xy, np.float32)[:, 0], np.asarray(xy, np.float32)[:, 1]
    cluster = np.full(n, -1, np.int64)
    cluster[rows] = np.asarray(labels, np.int64)
    p = np.zeros(n, np.float32)
    p[rows] = np.asarray(prob, np.float32)
    df["obj_mapped"], df["obj_row"], df["obj_x"], df["obj_y"] = mapped, row, x, y
    df["obj_cluster"], df["obj_cluster_prob"] = cluster, p
    return df
