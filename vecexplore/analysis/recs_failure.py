"""Failure findings of clusters, classes and confused pairs, each with the claim that makes it one.

See :mod:`vecexplore.analysis.recommend` for the kinds and the severity;
:mod:`vecexplore.analysis.findings` for how a claim lets one finding explain another.
"""

from __future__ import annotations

import math

import numpy as np

from vecexplore.analysis.findings import Candidate
from vecexplore.analysis.recbase import (
    Context,
    Recommendation,
    action_for,
    adjectives,
    augmentations,
    cluster_title,
    div,
    evidence_text,
    sel,
)
from vecexplore.analysis.slicing import members_of
from vecexplore.mapping.hierarchy import members_text
from vecexplore.rates import scalar_precision_recall_f1


def cluster_candidates(ctx: Context, clusters) -> list[Candidate]:
    """Every slice of the table whose error rate, FN rate or FP rate is surely above the run's.

    A merged slice (``members`` of several clusters) is one finding over all its clusters' images.
    """
    labels = ctx.run.images["cluster"].to_numpy()
    out = []
    for row in clusters.itertuples(index=False):
        c, members = int(row.cluster), members_of(row)
        mask = np.isin(labels, members)
        image, *objects = [ctx.image_test(mask), *(ctx.object_tests(mask) if ctx.det else [])]
        object_excess = max([t.excess() for t in objects], default=0.0)
        if not image.holds() and object_excess <= 0:
            continue
        d = ctx.describe(mask)
        if d.dominant_error == "none" or sum(d.errors.values()) < ctx.cfg.min_errors:
            continue
        severity = max(ctx.share(image.excess(), True), ctx.share(object_excess, False))
        head = (f"error rate {d.error_rate:.2f} [{d.ci_low:.2f}, {d.ci_high:.2f}] "
                f"vs {ctx.overall:.2f} overall")
        if len(members) > 1:
            head += f" (clusters {', '.join(map(str, members))}: siblings in the cluster hierarchy that fail alike)"
        words = str(getattr(row, "words", "") or "")
        if words:  # CLIP's words for the slice (vecexplore.analysis.words; absent with random weights)
            head += f"; CLIP describes these images as: {words}"
        rec = Recommendation(
            "cluster", cluster_title(members_text(members), d, float(row.lift)), evidence_text(d, head),
            action_for(d, ctx), severity, sel(d.image_idx, cluster=c, clusters=members),
            {"cluster": c, "members": members, "size": int(row.size), "error_rate": d.error_rate,
             "ci_low": d.ci_low, "ci_high": d.ci_high, "overall_error_rate": ctx.overall,
             "description": d.to_json(), **({"words": words} if words else {})})
        out.append(Candidate(rec, mask, [image, *objects]))
    return out


def class_candidates(ctx: Context) -> list[Candidate]:
    """Class FN, class FP and confusion findings with their claims (per class / pair, on GT or predictions)."""
    n = ctx.ev.dataset.num_images
    out = []
    for rec in _class_fn(ctx):
        units = np.flatnonzero(ctx.gt_class == rec.numbers["class_idx"])
        out.append(Candidate(rec, _mask(rec, n), [ctx.test(ctx.gt_pop, units, ctx.fn_rate)]))
    for rec in _class_fp(ctx):
        units = np.flatnonzero(ctx.pr_class == rec.numbers["class_idx"])
        out.append(Candidate(rec, _mask(rec, n), [ctx.test(ctx.pr_pop, units, ctx.fp_rate)]))
    for rec in _confusions(ctx):
        a, b = rec.numbers["gt"], rec.numbers["pred"]
        g, t = ctx.gt_class, ctx.gt_taken_as
        units = np.flatnonzero((g == a) | (g == b))
        confused = (((g == a) & (t == b)) | ((g == b) & (t == a)))[units]
        out.append(Candidate(rec, _mask(rec, n), [ctx.test(ctx.confused_pop, units, ctx.conf_rate, errors=confused)]))
    return out


def _mask(rec: Recommendation, n: int) -> np.ndarray:
    mask = np.zeros(n, bool)
    mask[rec.image_idx] = True
    return mask


def _class_fn(ctx: Context) -> list[Recommendation]:
    t, out = ctx.cp.table, []
    n_col = "n_gt" if ctx.det else "n"
    for r in t.itertuples(index=False):
        n = int(getattr(r, n_col))
        fn = int(r.fn) if ctx.det else n - int(r.correct)
        if n == 0 or fn < ctx.cfg.min_errors:
            continue
        lo, hi = ctx.interval(fn, n)
        if lo <= ctx.fn_rate:
            continue
        k = int(r.class_idx)
        images = ctx.cp.images_for(k, "fn")
        d = ctx.describe(images)
        missed = int(r.missed) if ctx.det else int(r.no_prediction)
        miscls = int(r.misclassified)
        other = np.argsort(-ctx.cp.confused_as[k], kind="stable")[:2]
        taken = ", ".join(f"{ctx.names[j]} {ctx.cp.confused_as[k, j]}" for j in other if ctx.cp.confused_as[k, j])
        split = (f"{missed} {'missed' if ctx.det else 'without a prediction'}, "
                 f"{miscls} taken for another class" + (f" ({taken})" if taken else ""))
        if ctx.det:
            evidence = (f"{fn} of {n} {r.name} objects not found: FN rate {fn / n:.2f} [{lo:.2f}, {hi:.2f}] "
                        f"vs {ctx.fn_rate:.2f} overall ({split})")
        else:
            evidence = (f"{fn} of {n} {r.name} images classified wrongly: error rate {fn / n:.2f} "
                        f"[{lo:.2f}, {hi:.2f}] vs {ctx.fn_rate:.2f} overall ({split})")
        traits = "; ".join(tr.phrase() for tr in d.traits[:2])
        if traits:
            evidence += f"; in their {d.size} images: {traits}"
        adj = adjectives(d)
        like = f" like these ({adj} images)" if adj else ""
        if miscls > missed and taken:
            lost = "not found" if ctx.det else "classified wrongly"
            action = (f"Most {r.name} {lost} are taken for {taken.split(' ')[0]}: review the labels of these "
                      f"{d.size} images, then add examples that tell the classes apart.")
        else:
            action = f"Collect and label more {r.name} examples{like}; check that the missed ones are labelled correctly."
        out.append(Recommendation(
            "class_fn", (f"{r.name}: {fn / n:.0%} of its objects are not found" if ctx.det
                         else f"{r.name}: {fn / n:.0%} of its images are classified wrongly"), evidence, action,
            ctx.share((lo - ctx.fn_rate) * n, False), sel(images, class_idx=k, outcome="fn"),
            {"class_idx": k, "n": n, "fn": fn, "missed": missed, "misclassified": miscls, "fn_rate": fn / n,
             "ci_low": lo, "ci_high": hi, "overall_fn_rate": ctx.fn_rate}))
    return out


def _threshold_hint(ctx: Context, k: int) -> tuple[str, dict]:
    """Raise class k's threshold to its F1-optimal confidence, if that gains F1 (detection)."""
    curve = ctx.ev.sweep.per_class[k]
    best_c, _ = curve.optimal()
    if not ctx.det or not math.isfinite(best_c) or best_c <= ctx.ev.confidence:
        return "", {}
    now, then = curve.at(ctx.ev.confidence), curve.at(best_c)

    p0, r0, f0 = scalar_precision_recall_f1(*now)
    p1, r1, f1 = scalar_precision_recall_f1(*then)
    if not f1 - f0 >= 0.01:
        return "", {}
    name = ctx.names[k]
    text = (f"raise the threshold for {name} from {ctx.ev.confidence:.2f} to {best_c:.2f} (its F1-optimal): "
            f"precision {p0:.2f} → {p1:.2f}, recall {r0:.2f} → {r1:.2f}, F1 {f0:.2f} → {f1:.2f}")
    return text, {"threshold": best_c, "precision": [p0, p1], "recall": [r0, r1], "f1": [f0, f1]}


def _class_fp(ctx: Context) -> list[Recommendation]:
    t, out = ctx.cp.table, []
    tp_col = "tp" if ctx.det else "correct"
    for r in t.itertuples(index=False):
        fp, n_pred = int(r.fp), int(getattr(r, tp_col)) + int(r.fp)
        if fp < ctx.cfg.min_errors:
            continue
        lo, hi = ctx.interval(fp, n_pred)
        if lo <= ctx.fp_rate:
            continue
        k = int(r.class_idx)
        images = ctx.cp.images_for(k, "fp")
        d = ctx.describe(images)
        if ctx.det:
            kinds = {"background": r.fp_background, "another class's object": r.fp_class,
                     "a badly placed box": int(r.fp_localization) + int(r.fp_both), "a duplicate": r.fp_duplicate}
        else:
            col = ctx.cp.confused_as[:, k]
            kinds = {f"{ctx.names[j]} images": col[j] for j in np.argsort(-col, kind="stable")[:3]}
        split = ", ".join(f"{int(v)} on {w}" for w, v in sorted(kinds.items(), key=lambda kv: -kv[1]) if v)
        evidence = (f"{fp} of {n_pred} {r.name} predictions are false: FP rate {fp / n_pred:.2f} "
                    f"[{lo:.2f}, {hi:.2f}] vs {ctx.fp_rate:.2f} overall ({split})")
        traits = "; ".join(tr.phrase() for tr in d.image_traits()[:2])
        if traits:
            evidence += f"; in their {d.size} images: {traits}"
        hint, numbers = _threshold_hint(ctx, k)
        adj = adjectives(d)
        if ctx.det and r.fp_background >= fp / 2:
            bg = f"{adj} backgrounds" if adj else "these backgrounds"
            action = f"Add hard negatives of {bg} (images without {r.name}) to training"
        elif ctx.det:
            action = f"Review the {r.name} boxes in these {d.size} images against the labels"
        else:
            action = f"Review the labels of these {d.size} images and add examples of the classes taken for {r.name}"
        action += f"; {hint}." if hint else "."
        if hint:
            evidence += f"; per-class sweep: {hint.split(': ', 1)[1]}"
        out.append(Recommendation(
            "class_fp", f"{r.name}: {fp / n_pred:.0%} of its predictions are false positives", evidence, action,
            ctx.share((lo - ctx.fp_rate) * n_pred, False), sel(images, class_idx=k, outcome="fp"),
            {"class_idx": k, "n_pred": n_pred, "fp": fp, "fp_rate": fp / n_pred, "ci_low": lo, "ci_high": hi,
             "overall_fp_rate": ctx.fp_rate, "by_type": {w: int(v) for w, v in kinds.items()},
             "threshold": numbers}))
    return out


def _confusions(ctx: Context) -> list[Recommendation]:
    c = ctx.cp.confused_as
    n_of = ctx.cp.table["n_gt" if ctx.det else "n"].to_numpy()
    k = len(c)
    pairs = [(int(c[a, b] + c[b, a]), a, b) for a in range(k) for b in range(a + 1, k)]
    pairs = sorted((p for p in pairs if p[0] >= ctx.cfg.min_errors), key=lambda p: (-p[0], p[1], p[2]))
    out = []
    for total, a, b in pairs:
        if c[b, a] > c[a, b]:
            a, b = b, a
        na, nb, names = int(n_of[a]), int(n_of[b]), ctx.names
        images = np.union1d(ctx.cp.images_for(a, "confused_as", other=b), ctx.cp.images_for(b, "confused_as", other=a))
        d = ctx.describe(images)
        unit = "objects" if ctx.det else "images"
        evidence = (f"{c[a, b]} {names[a]} {unit} taken for {names[b]} ({div(c[a, b], na):.0%} of {names[a]}) "
                    f"and {c[b, a]} {names[b]} for {names[a]} ({div(c[b, a], nb):.0%} of {names[b]}), "
                    f"in {d.size} images")
        traits = "; ".join(t.phrase() for t in d.image_traits()[:2])
        if traits:
            evidence += f"; {traits}"
        adj, augs = adjectives(d), augmentations(d)
        cond = f" in {adj} conditions" if adj else ""
        aug = f" ({augs})" if augs else ""
        action = (f"Review and relabel these {d.size} images first; if the labels are right, consider merging "
                  f"{names[a]} and {names[b]}, or add examples that tell them apart{cond}{aug}.")
        both = c[b, a] > 0
        title = (f"{names[a]} and {names[b]} are confused with each other ({total} {unit})" if both
                 else f"{names[a]} is taken for {names[b]} ({total} {unit})")
        severity = ctx.share(ctx.low(total, na + nb) * (na + nb), False)
        cells = [[a, b], [b, a]] if both else [[a, b]]
        out.append(Recommendation(
            "confusion", title, evidence, action, severity, sel(images, cells=cells),
            {"gt": a, "pred": b, "count": int(c[a, b]), "reverse_count": int(c[b, a]), "n_gt": [na, nb]}))
    return out
