"""Trust findings: a class with too few examples to trust, an evaluation set too small to rank classes,
ground truth that is likely wrong.

The first two have severity ``TRUST_WEIGHT × (interval width − allowed width)``;
``label_errors`` has the share of the run's errors that the likely label errors
account for (see :mod:`vecexplore.analysis.recommend`). They describe the
evaluation, not a failure mode, so they are never merged with failure findings.
"""

from __future__ import annotations

import math

import numpy as np

from vecexplore.analysis.recbase import TRUST_WEIGHT, Context, Recommendation, sel


def _needed(p: float, half: float, z: float) -> int:
    """Normal-approximation sample size for a half-width ``half`` at rate p (clipped to [0.1, 0.9])."""
    p = min(max(p, 0.1), 0.9)
    return math.ceil(z * z * p * (1 - p) / (half * half))


def few_examples(ctx: Context) -> list[Recommendation]:
    t, out = ctx.cp.table, []
    n_col, hit = ("n_gt", "tp") if ctx.det else ("n", "correct")
    metric = "recall" if ctx.det else "accuracy"
    unit = "objects" if ctx.det else "images"
    width_max = ctx.cfg.few_examples_width
    for r in t.itertuples(index=False):
        n, k = int(getattr(r, n_col)), int(r.class_idx)
        if n == 0:
            continue  # nothing to measure; predictions of it show up as false positives
        p = int(getattr(r, hit)) / n
        lo, hi = ctx.interval(int(getattr(r, hit)), n)
        if hi - lo <= width_max:
            continue
        need = _needed(p, width_max / 2, ctx.cfg.z)
        images = _gt_images(ctx, [k])
        evidence = (f"{n} {r.name} {unit}: {metric} {p:.2f} [{lo:.2f}, {hi:.2f}], interval width {hi - lo:.2f} "
                    f"> {width_max:.2f}; for width {width_max:.2f}: n = z²·p(1−p)/(w/2)² = "
                    f"{ctx.cfg.z:.2f}²·{min(max(p, .1), .9):.2f}·{1 - min(max(p, .1), .9):.2f}/{width_max / 2:.2f}² ≈ {need}")
        out.append(Recommendation(
            "few_examples", f"{r.name}: too few examples ({n}) to trust its {metric}", evidence,
            f"Add at least {max(need - n, 1)} more labelled {r.name} {unit} to the evaluation set before acting on its numbers.",
            TRUST_WEIGHT * (hi - lo - width_max), sel(images, class_idx=k, outcome="gt"),
            {"class_idx": k, "n": n, metric: p, "ci_low": lo, "ci_high": hi, "needed": need}))
    return out


def _gt_images(ctx: Context, classes) -> np.ndarray:
    if ctx.det:
        gt = ctx.ev.dataset.gt
        sel = np.isin(gt.class_idx, classes) & ~gt.iscrowd
        return np.unique(gt.image_idx[sel])
    return np.flatnonzero(np.isin(ctx.ev.arrays["label"], classes)).astype(np.int64)


def eval_size(ctx: Context) -> list[Recommendation]:
    out, z = [], ctx.cfg.z
    metric = "recall" if ctx.det else "accuracy"
    unit = "GT objects" if ctx.det else "labelled images"
    n, hits = ctx.n_pos, ctx.n_found
    n_images = ctx.ev.dataset.num_images
    if n:
        p = hits / n
        lo, hi = ctx.interval(hits, n)
        half, target = (hi - lo) / 2, ctx.cfg.eval_half_width
        if half > target:
            need = _needed(p, target, z)
            more_images = math.ceil(max(need - n, 0) / (n / n_images))
            pc = min(max(p, 0.1), 0.9)
            evidence = (f"{metric} {p:.2f} ± {half:.2f} (95 %, n = {n} {unit}); for ± {target:.2f}: "
                        f"n = z²·p(1−p)/h² = {z:.2f}²·{pc:.2f}·{1 - pc:.2f}/{target:.2f}² ≈ {need} {unit}")
            out.append(Recommendation(
                "small_eval_set", f"The evaluation set is too small: {metric} is only known to ± {half:.2f}",
                evidence, f"Add about {more_images} more images (≈ {max(need - n, 0)} more {unit}) to the evaluation set.",
                TRUST_WEIGHT * 2 * (half - target), sel(np.arange(n_images), all=True),
                {metric: p, "n": n, "half_width": half, "target": target, "needed": need,
                 "more_images": more_images}))
    t = ctx.cp.table
    n_col, hit = ("n_gt", "tp") if ctx.det else ("n", "correct")
    has = t[t[n_col] > 0]
    if len(has) >= 2:
        rates = has[hit].to_numpy() / has[n_col].to_numpy()
        best, worst = int(np.argmax(rates)), int(np.argmin(rates))
        (blo, bhi), (wlo, whi) = ctx.interval(has[hit].iloc[best], has[n_col].iloc[best]), \
            ctx.interval(has[hit].iloc[worst], has[n_col].iloc[worst])
        gap = rates[best] - rates[worst]
        if gap >= 0.05 and whi >= blo:
            b, w = has.iloc[best], has.iloc[worst]
            need = _needed(float(rates.mean()), gap / 2, z)
            evidence = (f"{metric} ranges from {rates[worst]:.2f} ({w['name']}, [{wlo:.2f}, {whi:.2f}]) to "
                        f"{rates[best]:.2f} ({b['name']}, [{blo:.2f}, {bhi:.2f}]) but the 95 % intervals overlap; "
                        f"to separate a gap of {gap:.2f}: n = z²·p(1−p)/(gap/2)² ≈ {need} {unit} per class")
            out.append(Recommendation(
                "small_eval_set", f"Class differences in {metric} are within the noise of this evaluation set",
                evidence, f"Add {unit} until each class has about {need} before ranking classes by {metric}.",
                TRUST_WEIGHT * (whi - blo), sel(_gt_images(ctx, [int(w["class_idx"]), int(b["class_idx"])]),
                                                  class_idx=[int(w["class_idx"]), int(b["class_idx"])], outcome="gt"),
                {"best": {"class_idx": int(b["class_idx"]), metric: float(rates[best]), "ci": [blo, bhi]},
                 "worst": {"class_idx": int(w["class_idx"]), metric: float(rates[worst]), "ci": [wlo, whi]},
                 "needed_per_class": need}))
    return out


#: Words for the label-issue kinds (:mod:`vecexplore.analysis.label_issues`).
ISSUE_WORDS = {"wrong_class": "wrong class", "missing": "missing label", "spurious": "spurious label",
               "bad_box": "badly drawn box", "wrong_label": "wrong label"}


def label_errors(ctx: Context, issues) -> list[Recommendation]:
    """"N images are likely mislabeled: review these first", selecting them (the ``likely`` issues)."""
    likely = issues[issues["likely"]]
    if not len(likely):
        return []
    images = np.unique(likely["image_idx"].to_numpy(np.int64))
    counts = likely["kind"].value_counts()
    parts = ", ".join(f"{int(n)} {ISSUE_WORDS.get(k, k)}" for k, n in counts.items())
    errors = ctx.n_errors
    share = min(len(likely) / errors, 1.0) if errors else 0.0
    what = ("a confident prediction contradicts the ground truth, or a GT of a class the model finds "
            "elsewhere has nothing near it")
    evidence = (f"{len(likely)} likely label errors ({parts}) on {len(images)} images: {what}; "
                f"they account for up to {share:.0%} of the run's {errors} errors")
    n = len(images)
    return [Recommendation(
        "label_errors", f"{n} image{'s are' if n != 1 else ' is'} likely mislabeled: review these first", evidence,
        "Review these images, most likely first (the app's \"Label errors\" tab), and fix their labels "
        "before trusting the numbers or retraining.",
        share, sel(images, label_issues=True),
        {"n_images": n, "n_issues": len(likely), "kinds": {str(k): int(v) for k, v in counts.items()},
         "share_of_errors": share})]
