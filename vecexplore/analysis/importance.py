"""Property importance: which property best predicts where the model fails.

Each property is scored against an error signal with two measures:

* mutual information (scikit-learn's k-NN estimator, in nats), which catches
  any dependence, monotone or not; it is the ranking key;
* Spearman rank correlation, whose sign gives the direction shown to the user
  ("lower brightness → more errors").

Image properties are scored against the per-image error rate, object properties
against whether each ground-truth object was missed. Large inputs are
subsampled (seeded) to bound the cost of the k-NN estimator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_SAMPLES = 20_000


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


def score_property(values, error, *, prop: str, level: str, seed: int = 0) -> Importance:
    """Importance of one property for an error signal (both (n,), NaNs dropped pairwise)."""
    from sklearn.feature_selection import mutual_info_regression

    x = np.asarray(values, dtype=np.float64)
    y = np.asarray(error, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    rng = np.random.default_rng(seed)
    if x.size > MAX_SAMPLES:
        keep = rng.choice(x.size, MAX_SAMPLES, replace=False)
        x, y = x[keep], y[keep]
    if x.size < 10 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Importance(prop, level, 0.0, float("nan"), "none", int(x.size))
    # Tiny seeded jitter breaks ties of discrete properties (counts), as the k-NN estimator assumes continuity.
    scale = np.std(x) or 1.0
    jittered = x + rng.normal(0, 1e-10 * scale, x.size)
    mi = float(mutual_info_regression(jittered[:, None], y, n_neighbors=3, random_state=seed)[0])
    rho = _spearman(x, y)
    direction = "none" if not np.isfinite(rho) or abs(rho) < 0.05 else ("higher" if rho > 0 else "lower")
    return Importance(prop, level, max(mi, 0.0), rho, direction, int(x.size))


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
