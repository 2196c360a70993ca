"""Performance by property: outcome rates per quantile bin of a property.

Detection: for an image property, images are binned and each bin reports
precision (Σtp / Σ(tp+fp)) and FN rate (Σfn / Σn_gt) over its images. For an
object property, ground-truth objects are binned for the FN rate (share of GT
not matched) and predictions for precision (share of TP among counted
predictions), so "small objects are missed" is measured on objects, not images.
Classification: accuracy per bin of images.

Every bin carries the rows it holds, so a click on a bar can select its images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vecexplore.rates import ratio


def quantile_edges(values: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Bin edges for the finite values.

    With at most ``n_bins`` distinct values (object counts, image widths of a
    uniform dataset) every value gets a bin of its own: edges are the sorted
    values with the last repeated. Otherwise the edges are unique quantiles
    (observed values, so fewer bins when values repeat).

    Returns:
        (m + 1,) float64 edges, m ≤ n_bins; empty when there is no finite value.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.zeros(0)
    # Quantiles first (a partition, O(n)); only when two coincide can there be
    # ≤ n_bins distinct values, so only then is the O(n log n) unique needed.
    edges = np.quantile(v, np.linspace(0, 1, n_bins + 1), method="nearest")
    if (np.diff(edges) > 0).all():
        return edges
    uniq = np.unique(v)
    if uniq.size <= n_bins:
        return np.append(uniq, uniq[-1])
    return np.unique(edges)


def assign_bins(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each value: bin i holds [edges[i], edges[i+1]) and the last bin is closed.

    Returns:
        (n,) int64, -1 for non-finite values or when there are no edges.
    """
    v = np.asarray(values, dtype=np.float64)
    out = np.full(v.shape, -1, dtype=np.int64)
    if edges.size < 2:
        return out
    ok = np.isfinite(v)
    out[ok] = np.clip(np.searchsorted(edges[1:-1], v[ok], side="right"), 0, edges.size - 2)
    return out


@dataclass(frozen=True)
class BinTable:
    """Outcome rates per bin of one property.

    Attributes:
        prop: the property name.
        edges: (m + 1,) bin edges.
        count: (m,) rows (images or objects) per bin.
        rate: dict name -> (m,) float64 rate per bin (NaN where undefined):
            detection ``precision`` and ``fn_rate``; classification ``accuracy``.
        overall: dict name -> the same rate over everything (the reference line).
        image_idx: list of m arrays, the images each bin selects.
    """

    prop: str
    edges: np.ndarray
    count: np.ndarray
    rate: dict
    overall: dict
    image_idx: list

    def labels(self) -> list[str]:
        """Human bin labels: ``"0.12–0.31"``, or the value itself for one-value bins."""
        if self.edges.size >= 2 and self.edges[-1] == self.edges[-2]:  # one bin per distinct value
            return [_fmt(v) for v in self.edges[:-1]]
        return [f"{_fmt(lo)}–{_fmt(hi)}" for lo, hi in zip(self.edges[:-1], self.edges[1:], strict=True)]

    def to_pandas(self):
        import pandas as pd

        df = pd.DataFrame({"bin": np.arange(len(self.count)), "label": self.labels(), "count": self.count})
        for name, values in self.rate.items():
            df[name] = values
        return df


def _fmt(x: float) -> str:
    """A bin edge for people: 3 significant digits, never scientific notation (0.0000143, 12,345)."""
    x = float(x)
    if not np.isfinite(x):
        return str(x)
    if abs(x) >= 1e4:
        return f"{x:,.0f}"
    return np.format_float_positional(x, precision=3, unique=False, fractional=False, trim="-")


def _grouped(bins: np.ndarray, m: int, weights: np.ndarray) -> np.ndarray:
    ok = bins >= 0
    return np.bincount(bins[ok], weights=np.asarray(weights, np.float64)[ok], minlength=m)


def _members(m: int, *pairs: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
    """Sorted unique images per bin from (bin, image) pairs (bin -1 = none), via one (m, N) bitmap."""
    n_images = max((int(img.max()) + 1 for _, img in pairs if img.size), default=0)
    hits = np.zeros((m, n_images), bool)
    for bins, images in pairs:
        ok = bins >= 0
        hits[bins[ok], images[ok]] = True
    return [np.flatnonzero(row).astype(np.int64) for row in hits]


def image_property_bins(values: np.ndarray, per_image, *, task: str, prop: str, n_bins: int = 10,
                        edges: np.ndarray | None = None) -> BinTable:
    """Bin images by an image property.

    Args:
        values: (N,) property per image (NaN = unknown, left out).
        per_image: the evaluation's per-image table (columns per the outcome contract).
        task: "detection" or "classification".
        edges: bin edges to use (default: ``n_bins`` quantiles of ``values``).
    """
    edges = quantile_edges(values, n_bins) if edges is None else np.asarray(edges, np.float64)
    bins = assign_bins(values, edges)
    m = max(edges.size - 1, 0)
    count = _grouped(bins, m, np.ones(len(bins))).astype(np.int64)
    idx = np.arange(len(bins))
    members = [idx[bins == b] for b in range(m)]
    if task == "detection":
        tp, fp, fn, n_gt = (per_image[c].to_numpy(np.float64) for c in ("tp", "fp", "fn", "n_gt"))
        rate = {
            "precision": ratio(_grouped(bins, m, tp), _grouped(bins, m, tp + fp)),
            "fn_rate": ratio(_grouped(bins, m, fn), _grouped(bins, m, n_gt)),
        }
        overall = {
            "precision": float(ratio(np.array([tp.sum()]), np.array([(tp + fp).sum()]))[0]),
            "fn_rate": float(ratio(np.array([fn.sum()]), np.array([n_gt.sum()]))[0]),
        }
    else:
        labelled = per_image["label"].to_numpy() >= 0
        correct = per_image["correct"].to_numpy(bool) & labelled
        rate = {"accuracy": ratio(_grouped(bins, m, correct), _grouped(bins, m, labelled))}
        overall = {"accuracy": float(correct.sum() / labelled.sum()) if labelled.any() else float("nan")}
    return BinTable(prop, edges, count, rate, overall, members)


def object_property_bins(
    gt_values: np.ndarray,
    gt_missed: np.ndarray,
    gt_image_idx: np.ndarray,
    pred_values: np.ndarray,
    pred_is_tp: np.ndarray,
    pred_counted: np.ndarray,
    pred_image_idx: np.ndarray,
    *,
    prop: str,
    n_bins: int = 10,
    edges: np.ndarray | None = None,
) -> BinTable:
    """Bin detection objects by an object property.

    Args:
        gt_values, gt_missed, gt_image_idx: per non-crowd GT object: property, not
            matched as TP at the operating point, image.
        pred_values, pred_is_tp, pred_counted, pred_image_idx: per prediction:
            property, TP, counted at the operating point (above the confidence
            threshold and not ignored), image.
        edges: precomputed bin edges (e.g. quantiles of the GT values, which do not
            move with the confidence threshold); default: quantiles of the GT and
            counted prediction values together.

    Returns:
        A BinTable with ``fn_rate`` from GT and ``precision`` from predictions;
        ``count`` counts GT objects; each bin selects the images of its objects.
    """
    gt_values = np.asarray(gt_values, np.float64)
    pred_values = np.asarray(pred_values, np.float64)
    if edges is None:
        edges = quantile_edges(np.concatenate([gt_values, pred_values[np.asarray(pred_counted, bool)]]), n_bins)
    m = max(edges.size - 1, 0)
    gb = assign_bins(gt_values, edges)
    pb = assign_bins(pred_values, edges)
    counted = np.asarray(pred_counted, bool)
    pb = np.where(counted, pb, -1)
    missed = np.asarray(gt_missed, bool)
    tp = np.asarray(pred_is_tp, bool) & counted
    rate = {
        "precision": ratio(_grouped(pb, m, tp), _grouped(pb, m, counted)),
        "fn_rate": ratio(_grouped(gb, m, missed), _grouped(gb, m, np.ones(len(gb)))),
    }
    overall = {
        "precision": float(tp.sum() / counted.sum()) if counted.any() else float("nan"),
        "fn_rate": float(missed.mean()) if missed.size else float("nan"),
    }
    members = _members(m, (gb, np.asarray(gt_image_idx, np.int64)), (pb, np.asarray(pred_image_idx, np.int64)))
    count = _grouped(gb, m, np.ones(len(gb))).astype(np.int64)
    return BinTable(prop, edges, count, rate, overall, members)
