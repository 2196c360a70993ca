"""A paired interval on the change of a mean per-image error rate between two models.

Both models are scored on the same images, so the change of a cluster's mean
error rate is the mean of the per-image differences ``d_i = e_B(i) - e_A(i)``
(detection: ``(fp + fn) / (tp + fp + fn)`` per image, in [0, 1]; classification:
0 or 1). Pairing matters: the two rates share every image, so their difference
varies far less than two independent rates would, and an unpaired interval would
call real changes noise.

The interval is a **percentile bootstrap over images**: resample the cluster's
images with replacement (``n_boot`` times, a local ``numpy.random.Generator``
seeded by ``seed``), take the mean of ``d`` over each resample, and report the
``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of those means (numpy's
default linear interpolation). Resampling images, not the two rates separately,
is what keeps the pairing. It makes no assumption on the distribution of ``d``
(detection rates are continuous, classification's are 0/1) and is checked for
coverage on simulated paired data in ``tests/test_compare_interval.py``.
"""

from __future__ import annotations

import numpy as np

#: Default confidence level and bootstrap resamples of :func:`paired_bootstrap_ci`.
LEVEL = 0.95
N_BOOT = 2000
#: Most resample-by-image draws held in memory at once (rows × images).
_CHUNK = 4_000_000


def bootstrap_means(diff: np.ndarray, *, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """(n_boot,) float64: the mean of ``diff`` over ``n_boot`` resamples of its entries.

    Resample ``r`` draws ``len(diff)`` indices uniformly with replacement from the
    generator ``default_rng(seed)`` (in chunks of rows whose size depends only on
    ``len(diff)``, so the same inputs and seed give the same means).
    """
    diff = np.asarray(diff, np.float64)
    if diff.ndim != 1 or diff.size == 0:
        raise ValueError(f"diff must be a non-empty 1-D array, got shape {diff.shape}")
    if not np.isfinite(diff).all():
        raise ValueError("diff has NaN or infinite values")
    rng = np.random.default_rng(seed)
    m = diff.size
    rows = max(1, _CHUNK // m)
    out = np.empty(n_boot, np.float64)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = rng.integers(0, m, size=(stop - start, m))
        out[start:stop] = diff[idx].mean(axis=1)
    return out


def paired_bootstrap_ci(err_a: np.ndarray, err_b: np.ndarray, *, level: float = LEVEL,
                        n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float, float]:
    """``(delta, low, high)``: the mean of ``err_b - err_a`` and its percentile bootstrap interval.

    Args:
        err_a, err_b: (m,) per-image error rates of the same m images under A and B.
        level: two-sided confidence level in (0, 1).
        n_boot: bootstrap resamples (≥ 100).
        seed: seed of the resampling generator (same inputs and seed → same interval).

    Raises:
        ValueError: lengths differ, no images, non-finite rates, or a bad level/n_boot.
    """
    err_a = np.asarray(err_a, np.float64)
    err_b = np.asarray(err_b, np.float64)
    if err_a.shape != err_b.shape or err_a.ndim != 1:
        raise ValueError(f"err_a and err_b must be 1-D of one length, got {err_a.shape} and {err_b.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 100:
        raise ValueError(f"n_boot must be at least 100, got {n_boot}")
    diff = err_b - err_a
    means = bootstrap_means(diff, n_boot=n_boot, seed=seed)
    low, high = np.quantile(means, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(diff.mean()), float(low), float(high)
