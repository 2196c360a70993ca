"""Property importance: which property best predicts where the model fails.

Each property is scored against an error signal with two measures:

* mutual information (in nats), which catches any dependence, monotone or not
  (dark *and* over-bright images failing); it is the ranking key;
* Spearman rank correlation, whose sign gives the direction shown to the user
  ("lower brightness → more errors").

Mutual information is the plug-in estimate over the same quantile bins the
"performance by property" panel shows (:func:`~vecexplore.analysis.bins.quantile_edges`:
:data:`PROPERTY_BINS` for the property, :data:`ERROR_BINS` for the error signal,
fewer when values repeat), with the Miller–Madow bias correction
``+ ((m_x − 1) + (m_y − 1) − (m_xy − 1)) / 2n`` (``m`` = occupied cells), clipped
at 0. A k-NN (Kraskov) estimator was tried first and rejected: both the error
signal (per-image error rates are small fractions with many ties) and count
properties (objects per image) are discrete, and on such data it reported the
*granularity* of the error rate (an image with one object can only score 0 or
1) as information, ranking "number of objects" above planted brightness
failures on the demo.

Image properties are scored against the per-image error rate, object properties
against whether each ground-truth object was missed. Inputs above
:data:`MAX_SAMPLES` are subsampled (seeded).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_SAMPLES = 200_000
PROPERTY_BINS = 10
ERROR_BINS = 5


@dataclass(frozen=True)
class Importance:
    """One property's importance.

    Attributes:
        prop: property name.
        level: "image" or "object".
        mutual_information: nats, ≥ 0.
        spearman: rank correlation with the error signal in [-1, 1] (NaN if constant).
        direction: "higher" when larger values go with more errors, "lower" when
            smaller values do, "none" when |spearman| < 0.05.
        n: samples used.
    """

    prop: str
    level: str
    mutual_information: float
    spearman: float
    direction: str
    n: int

    def sentence(self) -> str:
        if self.direction == "none":
            return f"{self.prop}: weak relation to errors (MI {self.mutual_information:.3f})"
        return (
            f"{self.direction} {self.prop} → more errors "
            f"(Spearman {self.spearman:+.2f}, MI {self.mutual_information:.3f})"
        )


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def _entropy(counts: np.ndarray, n: int) -> tuple[float, int]:
    counts = counts[counts > 0]
    p = counts / n
    return float(-(p * np.log(p)).sum()), int(counts.size)


def binned_mutual_information(x: np.ndarray, y: np.ndarray, *, x_bins: int = PROPERTY_BINS,
                              y_bins: int = ERROR_BINS) -> float:
    """Miller–Madow-corrected plug-in MI (nats, ≥ 0) of two finite (n,) arrays over quantile bins."""
    from vecexplore.analysis.bins import assign_bins, quantile_edges

    bx = assign_bins(x, quantile_edges(x, x_bins))
    by = assign_bins(y, quantile_edges(y, y_bins))
    n = len(bx)
    if n == 0:
        return 0.0
    ny = int(by.max()) + 1
    hx, mx = _entropy(np.bincount(bx), n)
    hy, my = _entropy(np.bincount(by), n)
    hxy, mxy = _entropy(np.bincount(bx * ny + by), n)
    mi = hx + hy - hxy + ((mx - 1) + (my - 1) - (mxy - 1)) / (2 * n)
    return max(float(mi), 0.0)


#: Below this mutual information (nats) a property has no direction: it shows as "0.000".
MIN_MI = 0.0005


def score_property(values, error, *, prop: str, level: str, seed: int = 0) -> Importance:
    """Importance of one property for an error signal (both (n,), NaNs dropped pairwise)."""
    x = np.asarray(values, dtype=np.float64)
    y = np.asarray(error, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size > MAX_SAMPLES:
        keep = np.random.default_rng(seed).choice(x.size, MAX_SAMPLES, replace=False)
        x, y = x[keep], y[keep]
    if x.size < 10 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Importance(prop, level, 0.0, float("nan"), "none", int(x.size))
    mi = binned_mutual_information(x, y)
    rho = _spearman(x, y)
    # No information (the estimator clips at 0, and the page shows MI to 3 decimals) means no direction,
    # whatever the rank correlation says.
    weak = not np.isfinite(rho) or abs(rho) < 0.05 or not mi >= MIN_MI
    direction = "none" if weak else ("higher" if rho > 0 else "lower")
    return Importance(prop, level, mi, rho, direction, int(x.size))


def rank_properties(
    image_props: dict[str, np.ndarray],
    image_error: np.ndarray,
    object_props: dict[str, np.ndarray] | None = None,
    object_missed: np.ndarray | None = None,
    *,
    seed: int = 0,
) -> list[Importance]:
    """Score every property and return them by mutual information, strongest first.

    Ties (equal MI) are broken by |Spearman| then by name, so the order is deterministic.
    """
    out = [score_property(v, image_error, prop=k, level="image", seed=seed) for k, v in image_props.items()]
    if object_props and object_missed is not None and len(object_missed):
        out += [
            score_property(v, np.asarray(object_missed, np.float64), prop=k, level="object", seed=seed)
            for k, v in object_props.items()
        ]
    return sorted(
        out,
        key=lambda imp: (-imp.mutual_information, -abs(np.nan_to_num(imp.spearman)), imp.prop),
    )
