"""Property findings: the tail of a property where the model surely makes one kind of error more often.

With random or weak embedding weights clusters follow appearance, and a mode
appearance does not separate (blur of an otherwise ordinary scene) lands inside
ordinary clusters; property findings find it on the images directly.

A claim is about one error type at a time (detection: the TIDE types of
:data:`~vecexplore.eval.outcomes.ERROR_TYPES`, each image counting its share
``count / (tp + fp + fn)``; classification: misclassified, no prediction),
because two failure modes often share one side of a property (blur and a
colour cast both lower sharpness) but rarely the kind of error: one tail of the
overall error rate would join them, the tails of "badly placed boxes" and "taken
for another class" keep them apart.

For each image property, each side (low, high) and each error type,
:func:`best_tail` picks the threshold ``t`` whose tail (``value ≤ t``, or
``≥ t``) has the largest Bernoulli log-likelihood ratio of its rate against the
run's (Kulldorff's scan statistic, the standard one for hot spots): it grows
over images that fail alike and stops where ordinary images would dilute it,
rather than running on through images that fail a little more than average
(the conservative excess ``(Wilson lower bound − rate) × size``, which
severity counts, is nearly flat there and would not place the cut). A group of
tied values is taken or left whole. No bin count or share is assumed, so a mode
of 5 % and one of 15 % are cut alike. Object properties (detection) do the same
on non-crowd GT objects, with "not found". A tail needs ``min_errors`` errors of
its type and its Wilson 95 % lower bound above the run's rate; otherwise no finding.

The number of objects is not scanned for image-level tails: it is the per-image
rate's denominator, so one error among few outcomes weighs more by arithmetic,
not because the model fails there.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from vecexplore.analysis.describe import ERROR_WORDS, WORDS, augmentation
from vecexplore.analysis.findings import Candidate, Population
from vecexplore.analysis.quality import image_properties_of, image_values
from vecexplore.analysis.recbase import Context, Recommendation, sel
from vecexplore.eval.outcomes import ERROR_TYPES
from vecexplore.properties import OBJECT_PROPERTIES
from vecexplore.rates import wilson_interval

#: Image properties not scanned for image-level tails (see the module docstring).
RATE_DENOMINATOR = ("n_objects",)


def best_tail(values: np.ndarray, errors: np.ndarray, base: float, *, min_errors: float,
              z: float = 1.96) -> tuple[float, float] | None:
    """``(t, excess)`` of the best lower tail ``value ≤ t`` (module docstring); None if no tail holds.

    Args:
        values: (u,) finite float, one per unit.
        errors: (u,) errors per unit in [0, 1].
        base: the run's rate to beat.
        min_errors: a tail needs at least this many errors.
        z: normal quantile of the Wilson bound.

    Returns:
        The threshold (a value present in ``values``) and the tail's
        ``(Wilson lower bound − base) × size``.
    """
    if len(values) == 0:
        return None
    order = np.argsort(values, kind="stable")
    v, s = values[order], np.cumsum(errors[order], dtype=np.float64)
    m = np.arange(1, len(v) + 1, dtype=np.float64)
    end = np.r_[v[1:] != v[:-1], True]  # last unit of each group of tied values
    v, s, m = v[end], s[end], m[end]
    low, _ = wilson_interval(np.minimum(s, m), m, z=z)
    holds = (s >= min_errors) & (low > base)
    if not holds.any():
        return None
    best = int(np.argmax(np.where(holds, _llr(s, m, base), -np.inf)))
    return float(v[best]), float((low[best] - base) * m[best])


def _llr(s: np.ndarray, m: np.ndarray, base: float) -> np.ndarray:
    """Bernoulli log-likelihood ratio of a tail's rate ``s / m`` against ``base`` (0 where not above it)."""
    p = np.clip(s / m, 1e-12, 1 - 1e-12)
    b = min(max(base, 1e-12), 1 - 1e-12)
    return np.where(p > b, s * np.log(p / b) + (m - s) * np.log((1 - p) / (1 - b)), 0.0)


def error_shares(ctx: Context) -> dict[str, np.ndarray]:
    """Error type → (N,) per-image share of that error (module docstring); types the run never makes are left out."""
    per_image = ctx.ev.per_image
    if ctx.det:
        total = (per_image["tp"] + per_image["fp"] + per_image["fn"]).to_numpy(np.float64)
        denom = np.maximum(total, 1.0)
        shares = {e: per_image[e].to_numpy(np.float64) / denom for e in ERROR_TYPES}
    else:
        correct = per_image["correct"].to_numpy(bool)
        pred = per_image["prediction"].to_numpy(np.int64)
        labelled = per_image["label"].to_numpy(np.int64) >= 0
        shares = {"misclassified": (labelled & ~correct & (pred >= 0)).astype(np.float64),
                  "no_prediction": (labelled & ~correct & (pred < 0)).astype(np.float64)}
    return {e: v for e, v in shares.items() if v.sum() > 0}


def property_candidates(ctx: Context, readable: np.ndarray, importance) -> list[Candidate]:
    """Property-tail findings over the ``readable`` images ((N,) bool), with the claims that make them."""
    imp = {(i.prop, i.level): i for i in importance}
    shares = error_shares(ctx)
    pops = {e: Population(ctx.images_pop.image_idx, v) for e, v in shares.items()}
    out = []
    for prop in image_properties_of(ctx.run, ctx.ev.task):
        if prop in RATE_DENOMINATOR:
            continue
        values = image_values(ctx.run.images, prop)
        idx = np.flatnonzero(readable & np.isfinite(values))
        for side, sign in (("low", 1.0), ("high", -1.0)):
            x = sign * values[idx]
            for error, share in shares.items():
                tail = best_tail(x, share[idx], float(share.mean()), min_errors=ctx.cfg.min_errors, z=ctx.cfg.z)
                if tail is not None:
                    out.append(_image_tail(ctx, prop, side, error, pops[error], values, idx[x <= tail[0]], tail[1],
                                           imp.get((prop, "image"))))
    objects = ctx.run.objects if ctx.det else None
    for prop in OBJECT_PROPERTIES if objects is not None else ():
        if prop not in objects.columns:
            continue
        values = objects[prop].to_numpy(np.float64)[ctx.gt_rows]
        units = np.flatnonzero(readable[ctx.gt_image] & np.isfinite(values))
        for side, sign in (("low", 1.0), ("high", -1.0)):
            x = sign * values[units]
            tail = best_tail(x, ctx.gt_missed[units].astype(np.float64), ctx.fn_rate,
                             min_errors=ctx.cfg.min_errors, z=ctx.cfg.z)
            if tail is not None:
                out.append(_object_tail(ctx, prop, side, values, units[x <= tail[0]], tail[1],
                                        imp.get((prop, "object"))))
    return out


def _agrees(imp, side: str) -> bool:
    """Whether the property's importance (its overall direction) speaks for this side's tail."""
    return imp is not None and imp.direction == {"low": "lower", "high": "higher"}[side]


def _where(prop: str, side: str, lo: float, hi: float) -> str:
    return f"{prop} ≤ {hi:.3g}" if side == "low" else f"{prop} ≥ {lo:.3g}"


def _image_tail(ctx: Context, prop, side, error, pop, values, chosen, excess, imp) -> Candidate:
    mask = np.zeros(ctx.ev.dataset.num_images, bool)
    mask[chosen] = True
    d = ctx.describe(mask)
    lo, hi = float(values[chosen].min()), float(values[chosen].max())
    word = WORDS.get((prop, side), f"{side}-{prop}")
    where = _where(prop, side, lo, hi)
    share = pop.errors
    n, base = len(chosen), float(share.mean())
    rate = float(share[chosen].mean())
    low, high = ctx.interval(float(share[chosen].sum()), n)
    what = ERROR_WORDS.get(error, error)
    lift = f"{rate / base:.1f}× as many {what} as average" if base > 0 else f"more {what}"
    evidence = (f"{n} images with {where} ({n / len(values):.0%} of all): {what} are {rate:.2f} of their "
                f"outcomes [{low:.2f}, {high:.2f}] vs {base:.2f} overall; error rate {d.error_rate:.2f} vs "
                f"{ctx.overall:.2f}")
    traits = "; ".join(t.phrase() for t in d.image_traits() if t.prop != prop)
    if traits:
        evidence += f"; {traits}"
    if _agrees(imp, side):
        evidence += f"; {imp.sentence()}"
    aug = augmentation(prop, side)
    action = f"Collect and label more {word} images" + (f"; until then, train with {aug}." if aug else ".")
    rec = Recommendation(
        "property", f"{word[0].upper() + word[1:]} images ({where}): {lift}", evidence, action,
        ctx.share(excess, True),
        sel(chosen, property=prop, level="image", side=side, error=error, range=[lo, hi]),
        {"prop": prop, "level": "image", "side": side, "error": error, "range": [lo, hi], "count": n,
         "rate": rate, "ci_low": low, "ci_high": high, "overall_rate": base, "error_rate": d.error_rate,
         "overall_error_rate": ctx.overall, "importance": asdict(imp) if imp is not None else None,
         "description": d.to_json()})
    return Candidate(rec, mask, [ctx.test(pop, chosen, base)])


def _object_tail(ctx: Context, prop, side, values, chosen, excess, imp) -> Candidate:
    images = np.unique(ctx.gt_image[chosen])
    mask = np.zeros(ctx.ev.dataset.num_images, bool)
    mask[images] = True
    lo, hi = float(values[chosen].min()), float(values[chosen].max())
    word = WORDS.get((prop, side), f"{side}-{prop}")
    where = _where(prop, side, lo, hi)
    n, missed = len(chosen), int(ctx.gt_missed[chosen].sum())
    low, high = ctx.interval(missed, n)
    evidence = (f"{n} GT objects with {where} in {len(images)} images: {missed} not found, "
                f"FN rate {missed / n:.2f} [{low:.2f}, {high:.2f}] vs {ctx.fn_rate:.2f} overall")
    if _agrees(imp, side):
        evidence += f"; {imp.sentence()}"
    aug = augmentation(prop, side)
    action = f"Collect and label more images with {word} objects" + (f"; until then, train with {aug}." if aug else ".")
    rec = Recommendation(
        "property", f"The model misses more {word} objects ({where})", evidence, action, ctx.share(excess, False),
        sel(images, property=prop, level="object", side=side, range=[lo, hi]),
        {"prop": prop, "level": "object", "side": side, "range": [lo, hi], "count": n, "missed": missed,
         "fn_rate": missed / n, "ci_low": low, "ci_high": high, "overall_fn_rate": ctx.fn_rate,
         "importance": asdict(imp) if imp is not None else None})
    return Candidate(rec, mask, [ctx.test(ctx.gt_pop, chosen, ctx.fn_rate)])
