"""What changed from model A to model B, per image and per failure slice (pure functions).

Per image (:func:`image_change`): an image is *wrong* under a model when its
error rate is above 0 (detection: any false positive or miss at that model's
operating point; classification: the label is not predicted). Its change is

* ``fixed``: wrong under A, right under B;
* ``regressed``: right under A, wrong under B;
* ``both_wrong`` / ``both_right``.

Per slice (:func:`slice_changes`): the slices are A's (``clusters.parquet`` of
run A, a merged slice covering all its ``members``). A slice's ``delta`` is B's
mean per-image error rate minus A's over its images, with a paired bootstrap
interval (:mod:`vecexplore.compare.interval`). :func:`ranked` splits them into
``regressions`` (delta > 0, surest first: highest ``ci_low``) and
``improvements`` (delta < 0, surest first: lowest ``ci_high``); ``sure`` says
whether the interval excludes 0.
"""

from __future__ import annotations

import numpy as np

from vecexplore.compare.interval import LEVEL, N_BOOT, paired_bootstrap_ci

#: Change codes of :func:`image_change`, in code order.
CHANGES: tuple[str, ...] = ("both_right", "fixed", "regressed", "both_wrong")


def image_change(err_a: np.ndarray, err_b: np.ndarray) -> np.ndarray:
    """(N,) object str: each image's change (module docstring) from its two error rates."""
    wrong_a = np.asarray(err_a, np.float64) > 0
    wrong_b = np.asarray(err_b, np.float64) > 0
    code = wrong_a.astype(np.int64) + 2 * wrong_b.astype(np.int64)  # 0 right/right, 1 fixed, 2 regressed, 3 both
    return np.asarray(CHANGES, dtype=object)[code]


def slice_changes(slices, labels: np.ndarray, err_a: np.ndarray, err_b: np.ndarray, *,
                  level: float = LEVEL, n_boot: int = N_BOOT, seed: int = 0) -> list[dict]:
    """One dict per slice of A: ``cluster, members, size, error_a, error_b, delta, ci_low, ci_high,
    sure, fixed, regressed, both_wrong, both_right`` (counts of images), in ``slices`` order.

    Args:
        slices: A's clusters table (``cluster`` and optionally ``members`` columns).
        labels: (N,) int64 HDBSCAN cluster of each image (-1 = noise, never a slice).
        err_a, err_b: (N,) float per-image error rates under A and B, same image order.
        seed: the bootstrap of slice ``c`` uses ``seed + c``, so a slice's interval does
            not depend on which other slices there are.
    """
    labels = np.asarray(labels, np.int64)
    err_a = np.asarray(err_a, np.float64)
    err_b = np.asarray(err_b, np.float64)
    if not (len(labels) == len(err_a) == len(err_b)):
        raise ValueError(f"labels, err_a, err_b have {len(labels)}, {len(err_a)}, {len(err_b)} rows")
    change = image_change(err_a, err_b)
    out = []
    members_col = slices.get("members", None)
    for j, cid in enumerate(slices["cluster"].to_numpy()):
        members = [int(m) for m in members_col.iloc[j]] if members_col is not None else [int(cid)]
        rows = np.flatnonzero(np.isin(labels, members))
        if rows.size == 0:
            continue
        delta, low, high = paired_bootstrap_ci(err_a[rows], err_b[rows], level=level, n_boot=n_boot,
                                               seed=seed + int(cid))
        counts = {k: int((change[rows] == k).sum()) for k in CHANGES}
        out.append({
            "cluster": int(cid), "members": members, "size": int(rows.size),
            "error_a": float(err_a[rows].mean()), "error_b": float(err_b[rows].mean()),
            "delta": delta, "ci_low": low, "ci_high": high, "sure": bool(low > 0 or high < 0),
            **counts,
        })
    return out


def ranked(changes: list[dict]) -> tuple[list[dict], list[dict]]:
    """``(regressions, improvements)``, each surest first (module docstring), with a 1-based ``rank``.

    Ties break on the larger ``|delta|``, then the smaller cluster id.
    """
    worse = sorted((c for c in changes if c["delta"] > 0), key=lambda c: (-c["ci_low"], -c["delta"], c["cluster"]))
    better = sorted((c for c in changes if c["delta"] < 0), key=lambda c: (c["ci_high"], c["delta"], c["cluster"]))
    return ([{**c, "rank": i} for i, c in enumerate(worse, 1)],
            [{**c, "rank": i} for i, c in enumerate(better, 1)])
