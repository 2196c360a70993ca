"""Failure slices: per-cluster outcome statistics, ranked by how surely a cluster is worse.

A cluster's failure rate is the mean per-image ``error_rate`` of its images; its
lift is that over the whole dataset's mean (every image, noise included). The
rank orders clusters by ``score = ci_low - overall``: the lower end of a Wilson
95 % interval on the cluster's rate, against the overall rate. A large cluster
that is a little worse thus outranks a tiny one that looks much worse by chance.
HDBSCAN noise (-1) is never a slice. :func:`cluster_confusion` gives a cluster's
own confusion matrix from the evaluation engine.

Detection approximation: per-image error rates are fractions, not 0/1 outcomes.
The interval still uses ``n = size`` (images) and ``p = mean error rate`` (as if
each image were one Bernoulli trial with that mean). Images are the unit we
sample and act on, so this is the right ``n``; per-image rates vary less than
0/1 outcomes, so the interval is conservative (wider) for detection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from vecexplore.errors import ValidationError
from vecexplore.eval.outcomes import ERROR_TYPES, FP_COLUMNS
from vecexplore.rates import ratio, wilson_interval
from vecexplore.types import TASKS

if TYPE_CHECKING:
    import pandas as pd

    from vecexplore.eval.confusion import ConfusionMatrix

DETECTION_COUNTS: tuple[str, ...] = (
    "n_gt", "n_pred", "tp", "fp", *FP_COLUMNS, "fn", "fn_missed",
)  # fmt: skip
CLASSIFICATION_COUNTS: tuple[str, ...] = (
    "n_correct",
    "n_incorrect",
    "n_misclassified",
    "n_no_prediction",
)
TOP_CLASSES = 3
"""How many classes ``top_classes`` names."""


def slice_table(
    per_image: pd.DataFrame,
    labels: np.ndarray,
    *,
    task: str,
    objects: pd.DataFrame | None = None,
    class_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per cluster (never noise), ranked worst first.

    Args:
        per_image: the per-image outcome table (DESIGN.md contract), one row per
            image; ``labels[i]`` is the cluster of row i.
        labels: (n,) int cluster ids, -1 = noise.
        task: "detection" or "classification".
        objects: detection objects table, for class statistics; None leaves the
            class columns empty (detection) — classification reads classes from
            ``per_image``.
        class_names: name per class_idx; None names classes by their index.

    Returns:
        DataFrame sorted by ``rank``, columns: ``cluster, rank, size, error_rate,
        ci_low, ci_high, lift, score``; detection: the counts of
        :data:`DETECTION_COUNTS` summed over the cluster, ``precision`` and
        ``recall`` (pooled, NaN when undefined); classification: the counts of
        :data:`CLASSIFICATION_COUNTS` and ``accuracy``; then ``dominant_error``
        (detection: the largest of :data:`~vecexplore.eval.outcomes.ERROR_TYPES`; classification:
        "misclassified" or "no_prediction"; "none" without errors),
        ``top_classes`` ("person: 12, car: 3"; GT classes), ``most_missed_class`` /
        ``most_missed_count`` (GT not found: FN incl. confused, or a wrong
        classification), ``most_confused`` / ``most_confused_count`` ("cat → dog":
        ground truth → prediction). Ties in the class columns go to the lower
        class_idx; "" where there is nothing to name.
        ``lift`` is NaN when the overall rate is 0; ``rank`` 1 is the worst:
        ``score`` descending, then size descending, then cluster id.
    """
    import pandas as pd

    if task not in TASKS:
        raise ValidationError(f"slice table: task must be one of {TASKS}, got {task!r}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != len(per_image):
        raise ValidationError(
            f"slice table: labels has shape {labels.shape}; the per-image table has {len(per_image)} rows"
        )
    labels = labels.astype(np.int64)
    counts = DETECTION_COUNTS if task == "detection" else ("label", "prediction", "correct")
    _require(per_image, ("image_idx", "error_rate", *counts), "per-image table")
    rate = per_image["error_rate"].to_numpy(dtype=np.float64)
    bad = ~((rate >= 0) & (rate <= 1))
    if bad.any():
        pos = int(np.argmax(bad))
        raise ValidationError(
            f"per-image table: image_idx {per_image['image_idx'].iloc[pos]}: "
            f"error_rate {rate[pos]} is not in [0, 1]"
        )
    overall = float(rate.mean()) if rate.size else float("nan")

    ids, code = np.unique(labels[labels >= 0], return_inverse=True)
    member = labels >= 0
    k = ids.size
    size = np.bincount(code, minlength=k).astype(np.int64)
    error_rate = np.bincount(code, weights=rate[member], minlength=k) / np.maximum(size, 1)
    low, high = wilson_interval(error_rate * size, size)
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = error_rate / overall if overall > 0 else np.full(k, np.nan)
    cols: dict[str, object] = {
        "cluster": ids.astype(np.int64),
        "size": size,
        "error_rate": error_rate,
        "ci_low": low,
        "ci_high": high,
        "lift": lift,
        "score": low - overall,
    }
    names = _namer(class_names)
    if task == "detection":
        sums = {c: _sum(per_image[c], member, code, k) for c in DETECTION_COUNTS}
        cols.update(sums)
        cols["precision"] = ratio(sums["tp"], sums["tp"] + sums["fp"])
        cols["recall"] = ratio(sums["tp"], sums["tp"] + sums["fn"])
        cols["dominant_error"] = _dominant(
            np.stack([sums[c] for c in ERROR_TYPES], axis=1), ERROR_TYPES
        )
        cols.update(_detection_classes(objects, per_image, labels, ids, names))
    else:
        cols.update(_classification_columns(per_image, member, code, k, names))
    table = pd.DataFrame(cols)
    table = table.sort_values(
        ["score", "size", "cluster"], ascending=[False, False, True], kind="stable"
    )
    table.insert(1, "rank", np.arange(1, k + 1, dtype=np.int64))
    return table.reset_index(drop=True)


def _require(df, columns, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValidationError(f"{what}: missing column(s) {missing}")


def _sum(series, member, code, k) -> np.ndarray:
    values = series.to_numpy(dtype=np.float64)[member]
    return np.rint(np.bincount(code, weights=values, minlength=k)).astype(np.int64)


def _dominant(totals: np.ndarray, types: Sequence[str]) -> list[str]:
    """Name of each row's largest column (first on ties), "none" for an all-zero row."""
    if totals.shape[0] == 0:
        return []
    best = totals.argmax(axis=1)
    return [types[b] if totals[i, b] > 0 else "none" for i, b in enumerate(best)]


def _namer(class_names: Sequence[str] | None):
    def name(c: int) -> str:
        if class_names is not None and 0 <= c < len(class_names):
            return str(class_names[c])
        return str(c)

    return name


def _per_cluster_counts(
    cluster: np.ndarray, values: np.ndarray, ids: np.ndarray
) -> list[list[tuple[int, int]]]:
    """For each id in ``ids``: (value, count) pairs, count descending then value ascending."""
    out: list[list[tuple[int, int]]] = [[] for _ in ids]
    if cluster.size == 0:
        return out
    pairs, counts = np.unique(np.stack([cluster, values], axis=1), axis=0, return_counts=True)
    order = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))
    pos = np.searchsorted(ids, pairs[order, 0])
    for p, (_, v), c in zip(pos, pairs[order], counts[order], strict=True):
        out[p].append((int(v), int(c)))
    return out


def _class_columns(
    ids: np.ndarray,
    gt: tuple[np.ndarray, np.ndarray],
    missed: tuple[np.ndarray, np.ndarray],
    confused: tuple[np.ndarray, np.ndarray, np.ndarray],
    name,
) -> dict[str, list]:
    """Class histogram, most-missed class and most-confused pair per cluster.

    ``gt`` and ``missed`` are (cluster, class_idx) arrays; ``confused`` is
    (cluster, gt class_idx, predicted class_idx).
    """
    hist = _per_cluster_counts(*gt, ids)
    miss = _per_cluster_counts(*missed, ids)
    n_cls = int(max([1, *(int(a.max()) + 1 for a in confused[1:] if a.size)]))
    conf = _per_cluster_counts(confused[0], confused[1] * n_cls + confused[2], ids)
    return {
        "top_classes": [", ".join(f"{name(c)}: {n}" for c, n in h[:TOP_CLASSES]) for h in hist],
        "most_missed_class": [name(m[0][0]) if m else "" for m in miss],
        "most_missed_count": np.array([m[0][1] if m else 0 for m in miss], dtype=np.int64),
        "most_confused": [
            f"{name(f[0][0] // n_cls)} → {name(f[0][0] % n_cls)}" if f else "" for f in conf
        ],
        "most_confused_count": np.array([f[0][1] if f else 0 for f in conf], dtype=np.int64),
    }


def _detection_classes(objects, per_image, labels, ids, name) -> dict[str, list]:
    if objects is None:
        empty = [""] * ids.size
        zeros = np.zeros(ids.size, np.int64)
        return {
            "top_classes": empty, "most_missed_class": empty, "most_missed_count": zeros,
            "most_confused": empty, "most_confused_count": zeros,
        }  # fmt: skip
    _require(
        objects, ("kind", "image_idx", "class_idx", "outcome", "match_class_idx"), "objects table"
    )
    image_idx = per_image["image_idx"].to_numpy(dtype=np.int64)
    lookup = np.full(int(image_idx.max()) + 1 if image_idx.size else 0, -1, np.int64)
    lookup[image_idx] = labels
    obj_image = objects["image_idx"].to_numpy(dtype=np.int64)
    unknown = (obj_image < 0) | (obj_image >= lookup.size)
    if unknown.any():
        pos = int(np.argmax(unknown))
        raise ValidationError(
            f"objects table: row {pos}: image_idx {obj_image[pos]} is not in the per-image table"
        )
    cl = lookup[obj_image]
    kind = objects["kind"].to_numpy(dtype=object)
    outcome = objects["outcome"].to_numpy(dtype=object)
    cls = objects["class_idx"].to_numpy(dtype=np.int64)
    match_cls = objects["match_class_idx"].to_numpy(dtype=np.int64)
    gt = (kind == "gt") & (outcome != "crowd") & (cl >= 0)
    missed = gt & np.isin(outcome, ["fn", "confused"])
    conf = (kind == "pred") & (outcome == "fp_class") & (cl >= 0) & (match_cls >= 0)
    return _class_columns(
        ids,
        (cl[gt], cls[gt]),
        (cl[missed], cls[missed]),
        (cl[conf], match_cls[conf], cls[conf]),
        name,
    )


def _classification_columns(per_image, member, code, k, name) -> dict[str, object]:
    label = per_image["label"].to_numpy(dtype=np.int64)[member]
    pred = per_image["prediction"].to_numpy(dtype=np.int64)[member]
    correct = per_image["correct"].to_numpy(dtype=bool)[member]
    no_pred = ~correct & (pred < 0)
    wrong = ~correct & (pred >= 0)
    size = np.bincount(code, minlength=k)
    n_correct = np.bincount(code, weights=correct, minlength=k).astype(np.int64)
    out: dict[str, object] = {
        "n_correct": n_correct,
        "n_incorrect": (size - n_correct).astype(np.int64),
        "n_misclassified": np.bincount(code, weights=wrong, minlength=k).astype(np.int64),
        "n_no_prediction": np.bincount(code, weights=no_pred, minlength=k).astype(np.int64),
        "accuracy": n_correct / np.maximum(size, 1),
    }
    out["dominant_error"] = _dominant(
        np.stack([out["n_misclassified"], out["n_no_prediction"]], axis=1),
        ("misclassified", "no_prediction"),
    )
    ids = np.arange(k)
    has_gt = label >= 0
    missed = has_gt & ~correct
    conf = has_gt & (pred >= 0) & (pred != label)
    out.update(
        _class_columns(
            ids,
            (code[has_gt], label[has_gt]),
            (code[missed], label[missed]),
            (code[conf], label[conf], pred[conf]),
            name,
        )
    )
    return out


def cluster_confusion(confusion: ConfusionMatrix, labels: np.ndarray, *, cluster: int) -> ConfusionMatrix:
    """The confusion matrix of one cluster's images, by the evaluation engine.

    Args:
        confusion: the whole dataset's matrix at the operating point
            (``Evaluation.confusion``; detection or classification).
        labels: (n,) cluster id per image in ImageTable order, -1 = noise.
        cluster: a cluster id present in ``labels`` (noise is no slice).

    Returns:
        ``confusion.subset(labels == cluster)``: same rows/columns (GT × prediction,
        detection with background last); its cells know their images and objects.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != confusion.num_images:
        raise ValidationError(
            f"cluster confusion: labels has shape {labels.shape}; the matrix covers {confusion.num_images} images"
        )
    if cluster < 0 or not (labels == cluster).any():
        raise ValidationError(f"cluster confusion: no cluster {cluster} (noise, -1, is never a slice)")
    return confusion.subset(labels == cluster)
