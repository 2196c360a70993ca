"""Rates: one home for the safe ratio, precision / recall / F1 and the Wilson interval.

Two rules for an empty denominator, each chosen once and named where it is used:

* ``empty=nan`` (the default): nothing to measure. Detection precision with no
  predictions, recall with no GT, a cluster's rate with no images — DESIGN's
  contract for the per-image and per-class tables.
* ``empty=0.0``: scikit-learn's ``zero_division=0``, which the classification
  metrics follow so that they equal ``sklearn.metrics`` on the user's files.

F1 is ``2·tp / (2·tp + fp + fn)``: the harmonic mean of precision and recall
where both exist, and defined (0) when one of them is empty but errors exist.
"""

from __future__ import annotations

import math

import numpy as np


def ratio(num, den, *, empty: float = np.nan) -> np.ndarray:
    """``num / den`` elementwise as float64, ``empty`` where ``den`` is 0 (no warning)."""
    num, den = np.broadcast_arrays(np.asarray(num, np.float64), np.asarray(den, np.float64))
    return np.divide(num, den, out=np.full(den.shape, float(empty)), where=den != 0)


def scalar_ratio(num, den, *, empty: float = math.nan) -> float:
    """``num / den`` as a Python float, ``empty`` when ``den`` is 0."""
    return float(num) / float(den) if den else float(empty)


def precision_recall_f1(tp, fp, fn, *, empty: float = np.nan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 (float64 arrays broadcast from the counts)."""
    tp, fp, fn = (np.asarray(a, np.float64) for a in (tp, fp, fn))
    return ratio(tp, tp + fp, empty=empty), ratio(tp, tp + fn, empty=empty), ratio(2 * tp, 2 * tp + fp + fn, empty=empty)


def scalar_precision_recall_f1(tp, fp, fn, *, empty: float = math.nan) -> tuple[float, float, float]:
    """:func:`precision_recall_f1` of scalar counts, as Python floats."""
    return (scalar_ratio(tp, tp + fp, empty=empty), scalar_ratio(tp, tp + fn, empty=empty),
            scalar_ratio(2 * tp, 2 * tp + fp + fn, empty=empty))


def wilson_interval(successes, n, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion, vectorised.

    Args:
        successes: array-like, 0 ≤ successes ≤ n; may be fractional (``p * n``).
        n: array-like of trial counts ≥ 0 (broadcast with ``successes``).
        z: normal quantile (1.96 → 95 %).

    Returns:
        ``(low, high)`` float64 arrays in [0, 1]. ``n = 0`` gives (0, 1), the
        formula's limit: nothing is known. p = 0 gives low = 0 and p = 1 high = 1
        exactly.

    Raises:
        ValueError: negative n, or successes outside [0, n].
    """
    s = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    s, n = np.broadcast_arrays(s, n)
    if (n < 0).any() or (s < 0).any() or (s > n).any() or not np.isfinite(s).all():
        raise ValueError("wilson_interval: need 0 <= successes <= n")
    empty = n == 0
    n_safe = np.where(empty, 1.0, n)
    p = np.where(empty, 0.0, s / n_safe)
    z2 = z * z
    denom = 1.0 + z2 / n_safe
    centre = (p + z2 / (2 * n_safe)) / denom
    half = z / denom * np.sqrt(p * (1 - p) / n_safe + z2 / (4 * n_safe * n_safe))
    low = np.clip(centre - half, 0.0, 1.0)
    high = np.clip(centre + half, 0.0, 1.0)
    low = np.where((p == 0) | empty, 0.0, low)
    high = np.where((p == 1) | empty, 1.0, high)
    return low, high


__all__ = ["precision_recall_f1", "ratio", "scalar_precision_recall_f1", "scalar_ratio", "wilson_interval"]
