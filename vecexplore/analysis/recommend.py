"""Recommendations: a short ranked list of concrete findings, each leading to its images.

:func:`recommend` looks at an evaluated run and returns :class:`Recommendation`\\ s
of these kinds (:data:`KINDS`):

* ``cluster`` — a failure cluster: its error rate is surely above the run's
  (the slice ranking's Wilson lower bound), or, for detection, its FN rate or FP
  rate over objects is; described by its distinctive properties and classes.
* ``class_fn`` / ``class_fp`` — a class whose FN rate (GT not found) or FP rate
  (its predictions that are wrong) is surely above the run's (Wilson 95 % lower
  bound above the overall rate). A class-FP finding proposes the class's
  F1-optimal threshold when raising it gains F1 (numbers from the per-class sweep).
* ``confusion`` — a pair of classes taken for each other (both directions).
* ``property`` — the strongest properties of :func:`~vecexplore.analysis.quality.property_importance`
  whose extreme quantile bin (lowest for "lower → more errors", highest
  otherwise) is surely worse than the run.
* ``few_examples`` — a class whose recall (classification: accuracy) 95 % Wilson
  interval is wider than ``few_examples_width``: its numbers cannot be trusted.
* ``small_eval_set`` — the overall recall (accuracy) interval's half-width is
  above ``eval_half_width``, or the best and worst classes' intervals overlap.
  Sample sizes use the normal approximation ``n = z²·p(1−p)/h²`` for a
  half-width ``h`` at rate ``p`` (p clipped to [0.1, 0.9]).

**Severity** (the ranking key, descending; ties by :data:`KINDS` order, then
title): for failure findings, the share of the run's errors the finding
explains *beyond* the run's average rate, counted conservatively with the Wilson
lower bound: ``(low − overall) × trials / errors``. Image-level findings
(clusters, image properties) count per-image error-rate mass (``errors`` = the
sum of per-image error rates); object-level findings (classes, confusions,
object properties) count objects (``errors`` = FP + FN of the run;
classification: wrong or missing predictions). A confusion has no expected
rate: its lower bound itself counts. For trust findings (``few_examples``,
``small_eval_set``): ``TRUST_WEIGHT × (interval width − allowed width)``, so a
class with a handful of examples ranks with a medium failure, not above all.

**Selections** (``Recommendation.selection``, JSON): ``image_idx`` is always
present — the sorted image_idx of exactly the images behind the evidence (what
the app selects on a click); one of these describes what they are::

    {"all": true}                                   every image
    {"cluster": 4}                                  a cluster
    {"class_idx": 2, "outcome": "fn" | "fp" | "gt"} images with a GT of the class not found /
                                                    a false positive of the class / a GT of the class
    {"class_idx": [2, 5], "outcome": "gt"}          images with a GT of either class
    {"cells": [[gt, pred], ...]}                    confusion-matrix cells (rows = GT, columns = prediction)
    {"property": "brightness", "level": "image" | "object", "bin": 0, "n_bins": 10, "range": [lo, hi]}
                                                    a bin of the performance-by-property panel
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from vecexplore.analysis.describe import (
    ERROR_WORDS,
    WORDS,
    Description,
    augmentation,
    describe_images,
)
from vecexplore.analysis.quality import class_performance, property_importance, property_performance
from vecexplore.errors import ConfigError
from vecexplore.mapping.slices import wilson_interval

KINDS = ("cluster", "class_fn", "class_fp", "confusion", "property", "few_examples", "small_eval_set")
TRUST_WEIGHT = 0.25


@dataclass(frozen=True)
class RecommendConfig:
    """Thresholds of :func:`recommend` (frozen, validated).

    Attributes:
        z: normal quantile of every interval (1.96 → 95 %).
        min_errors: a class, pair, cluster or bin finding needs at least this many errors.
        few_examples_width: per-class recall (accuracy) interval width above which
            a class has too few examples to trust.
        eval_half_width: overall recall (accuracy) half-width above which the set is too small.
        max_clusters, max_classes, max_confusions, max_properties: at most this many of each kind
            (``max_classes`` per kind: FN and FP).
        max_total: at most this many recommendations in all.
        min_mutual_information: a property finding needs at least this MI (nats).
    """

    z: float = 1.96
    min_errors: int = 5
    few_examples_width: float = 0.2
    eval_half_width: float = 0.05
    max_clusters: int = 5
    max_classes: int = 3
    max_confusions: int = 3
    max_properties: int = 2
    max_total: int = 12
    min_mutual_information: float = 0.02

    def __post_init__(self):
        if not self.z > 0:
            raise ConfigError(f"recommendations: z must be > 0, got {self.z}")
        for name in ("few_examples_width", "eval_half_width"):
            if not 0 < getattr(self, name) < 1:
                raise ConfigError(f"recommendations: {name} must be in (0, 1), got {getattr(self, name)}")
        for name in ("min_errors", "max_clusters", "max_classes", "max_confusions", "max_properties", "max_total"):
            if getattr(self, name) < 0:
                raise ConfigError(f"recommendations: {name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class Recommendation:
    """One finding.

    Attributes:
        kind: one of :data:`KINDS`.
        title: one line, plain language.
        evidence: the numbers behind it, as text; ``numbers`` holds them as data.
        action: a concrete suggestion that follows from the evidence.
        severity: the ranking score (module docstring), higher first.
        selection: JSON selector of the images behind the evidence (module docstring).
        numbers: JSON-able dict of the evidence's numbers.
    """

    kind: str
    title: str
    evidence: str
    action: str
    severity: float
    selection: dict = field(default_factory=dict)
    numbers: dict = field(default_factory=dict)

    @property
    def image_idx(self) -> np.ndarray:
        return np.asarray(self.selection.get("image_idx", []), np.int64)

    def to_json(self) -> dict:
        return {"kind": self.kind, "title": self.title, "evidence": self.evidence, "action": self.action,
                "severity": round(float(self.severity), 6), "selection": self.selection, "numbers": self.numbers}


def recommend(run, ev, *, clusters=None, importance=None,
              config: RecommendConfig | None = None) -> list[Recommendation]:
    """Ranked findings of an evaluated run (see the module docstring).

    Args:
        run: a :class:`~vecexplore.store.Run` or :class:`~vecexplore.analysis.quality.RunTables`
            aligned with ``ev`` (images with ``cluster`` and properties; objects for detection).
        ev: the evaluation at the operating point the findings are about.
        clusters: the slice table (:func:`~vecexplore.mapping.slices.slice_table`); default ``run.clusters``.
        importance: :func:`~vecexplore.analysis.quality.property_importance` output; computed if None.
        config: thresholds.
    """
    ctx = _Context(run, ev, config or RecommendConfig())
    if clusters is None:
        clusters = run.clusters
    if importance is None:
        importance = property_importance(run, ev)
    recs = [*_clusters(ctx, clusters), *_class_fn(ctx), *_class_fp(ctx), *_confusions(ctx),
            *_properties(ctx, importance), *_few_examples(ctx), *_eval_size(ctx)]
    recs.sort(key=lambda r: (-r.severity, KINDS.index(r.kind), r.title))
    return recs[: ctx.cfg.max_total]


class _Context:
    def __init__(self, run, ev, cfg: RecommendConfig):
        self.run, self.ev, self.cfg = run, ev, cfg
        self.det = ev.task == "detection"
        self.names = ev.class_names
        self.cp = class_performance(ev)
        t = self.cp.table
        self.rate = ev.per_image["error_rate"].to_numpy(np.float64)
        self.mass = float(self.rate.sum())
        self.overall = float(self.rate.mean())
        if self.det:
            self.n_errors = int(t["fp"].sum() + t["fn"].sum())
            self.n_pos, self.n_found = int(t["n_gt"].sum()), int(t["tp"].sum())
            self.n_pred = int(t["tp"].sum() + t["fp"].sum())
        else:
            self.n_pos, self.n_found = int(t["n"].sum()), int(t["correct"].sum())
            self.n_errors = self.n_pos - self.n_found
            self.n_pred = int(t["correct"].sum() + t["fp"].sum())
        self.fn_rate = _div(self.n_pos - self.n_found, self.n_pos)
        self.fp_rate = _div(self.n_pred - self.n_found, self.n_pred)

    def low(self, successes, n) -> float:
        return float(wilson_interval(successes, n, z=self.cfg.z)[0])

    def interval(self, successes, n) -> tuple[float, float]:
        lo, hi = wilson_interval(successes, n, z=self.cfg.z)
        return float(lo), float(hi)

    def describe(self, image_idx) -> Description:
        return describe_images(self.run, self.ev, image_idx)

    def share(self, excess: float, image_level: bool) -> float:
        total = self.mass if image_level else self.n_errors
        return max(excess, 0.0) / total if total > 0 else 0.0


def _div(a, b) -> float:
    return float(a) / float(b) if b else float("nan")


def _sel(image_idx, **descriptive) -> dict:
    return {"image_idx": [int(i) for i in np.unique(np.asarray(image_idx, np.int64))], **descriptive}


def _adjectives(d: Description, limit: int = 2) -> str:
    return ", ".join(t.word for t in d.image_traits()[:limit])


def _augmentations(d: Description, limit: int = 2) -> str:
    augs = []
    for t in d.traits:
        a = augmentation(t.prop, t.side)
        if a and a not in augs:
            augs.append(a)
    return " and ".join(augs[:limit])


def _action(d: Description, ctx: _Context) -> str:
    """A concrete suggestion for a set of images, from its dominant error and its traits."""
    adj = _adjectives(d)
    like = f"{adj} images" if adj else "images like these"
    small = [t.word for t in d.object_traits()[:1]]
    augs = _augmentations(d)
    meanwhile = f"; until then, train with {augs}" if augs else ""
    names = ctx.names
    e = d.dominant_error
    if e in ("fn_missed", "no_prediction", "misclassified"):
        objs = f" with {small[0]} objects" if small else ""
        who = f" (most missed: {d.counts_text(d.missed, 2)})" if d.missed else ""
        return f"Collect and label more {like}{objs}{who}{meanwhile}."
    if e in ("fp_class", "misclassified") and d.confusions and 3 * d.confusions[0][2] >= d.errors[e]:
        a, b, n = d.confusions[0]
        cond = f" in {adj} conditions" if adj else ""
        aug = f" ({augs})" if augs else ""
        return (f"Review the labels of these {d.size} images first ({names[a]} taken for {names[b]} {n}×); "
                f"if they are right, add training examples that tell {names[a]} from {names[b]}{cond}{aug}.")
    if e == "fp_background":
        total = sum(n for _, n in d.false_positives)
        cls = ", ".join(names[c] for c, n in d.false_positives[:2] if n >= 0.2 * total) or "any class"
        return (f"Add {like} without objects to training as hard negatives (the model fires {cls} on "
                f"their background); raise the threshold of {cls} if that is not enough.")
    if e in ("fp_localization", "fp_both"):
        return ("Check these images' boxes against your labelling guideline (badly placed boxes dominate); "
                "if the labels are right, train longer or at a higher input resolution.")
    if e == "fp_duplicate":
        return "Duplicate detections dominate: lower the NMS IoU threshold or check that NMS runs per class."
    return f"Inspect these {d.size} images and collect more {like}."


def _cluster_title(c: int, d: Description, lift: float) -> str:
    adj = _adjectives(d)
    what = f"{adj} images" if adj else "images"
    err = ERROR_WORDS.get(d.dominant_error, d.dominant_error)
    lift_text = f" fail {lift:.1f}× as often as average" if math.isfinite(lift) and lift > 1 else ""
    return f"Cluster {c}: {d.size} {what}{lift_text} — mostly {err}"


def _evidence(d: Description, head: str) -> str:
    parts = [head, *(t.phrase() for t in d.traits[:2])]
    errs = ", ".join(f"{n} {ERROR_WORDS.get(k, k)}" for k, n in sorted(d.errors.items(), key=lambda kv: -kv[1])[:2] if n)
    if errs:
        parts.append(f"errors: {errs}")
    if d.missed:
        parts.append(f"not found: {d.counts_text(d.missed)}")
    if d.confusions:
        parts.append("confused: " + ", ".join(f"{d.names[a]} → {d.names[b]} {n}" for a, b, n in d.confusions[:2]))
    return "; ".join(parts)


def _clusters(ctx: _Context, clusters) -> list[Recommendation]:
    labels = ctx.run.images["cluster"].to_numpy()
    out = []
    for row in clusters.itertuples(index=False):
        c, size = int(row.cluster), int(row.size)
        image_excess = (float(row.ci_low) - ctx.overall) * size
        object_excess = 0.0
        if ctx.det:
            fn, n_gt, fp, n_pred = int(row.fn), int(row.n_gt), int(row.fp), int(row.n_pred)
            if fn >= ctx.cfg.min_errors:
                object_excess = max(object_excess, (ctx.low(fn, n_gt) - ctx.fn_rate) * n_gt)
            if fp >= ctx.cfg.min_errors:
                object_excess = max(object_excess, (ctx.low(fp, n_pred) - ctx.fp_rate) * n_pred)
        if image_excess <= 0 and object_excess <= 0:
            continue
        d = ctx.describe(labels == c)
        if d.dominant_error == "none" or sum(d.errors.values()) < ctx.cfg.min_errors:
            continue
        severity = max(ctx.share(image_excess, True), ctx.share(object_excess, False))
        head = (f"error rate {d.error_rate:.2f} [{row.ci_low:.2f}, {row.ci_high:.2f}] "
                f"vs {ctx.overall:.2f} overall")
        out.append(Recommendation(
            "cluster", _cluster_title(c, d, float(row.lift)), _evidence(d, head), _action(d, ctx), severity,
            _sel(d.image_idx, cluster=c),
            {"cluster": c, "size": size, "error_rate": d.error_rate, "ci_low": float(row.ci_low),
             "ci_high": float(row.ci_high), "overall_error_rate": ctx.overall, "description": d.to_json()}))
        if len(out) >= ctx.cfg.max_clusters:
            break
    return out


def _class_fn(ctx: _Context) -> list[Recommendation]:
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
        unit = "objects" if ctx.det else "images"
        missed = int(r.missed) if ctx.det else int(r.no_prediction)
        miscls = int(r.misclassified)
        other = np.argsort(-ctx.cp.confused_as[k], kind="stable")[:2]
        taken = ", ".join(f"{ctx.names[j]} {ctx.cp.confused_as[k, j]}" for j in other if ctx.cp.confused_as[k, j])
        split = (f"{missed} {'missed' if ctx.det else 'without a prediction'}, "
                 f"{miscls} taken for another class" + (f" ({taken})" if taken else ""))
        evidence = (f"{fn} of {n} {r.name} {unit} not found: FN rate {fn / n:.2f} [{lo:.2f}, {hi:.2f}] "
                    f"vs {ctx.fn_rate:.2f} overall ({split})")
        traits = "; ".join(tr.phrase() for tr in d.traits[:2])
        if traits:
            evidence += f"; in their {d.size} images: {traits}"
        adj = _adjectives(d)
        like = f" like these ({adj} images)" if adj else ""
        if miscls > missed and taken:
            action = (f"Most {r.name} not found are taken for {taken.split(' ')[0]}: review the labels of these "
                      f"{d.size} images, then add examples that tell the classes apart.")
        else:
            action = f"Collect and label more {r.name} examples{like}; check that the missed ones are labelled correctly."
        out.append(Recommendation(
            "class_fn", f"{r.name}: {fn / n:.0%} of its {unit} are not found", evidence, action,
            ctx.share((lo - ctx.fn_rate) * n, False), _sel(images, class_idx=k, outcome="fn"),
            {"class_idx": k, "n": n, "fn": fn, "missed": missed, "misclassified": miscls, "fn_rate": fn / n,
             "ci_low": lo, "ci_high": hi, "overall_fn_rate": ctx.fn_rate}))
    out.sort(key=lambda r: -r.severity)
    return out[: ctx.cfg.max_classes]


def _threshold_hint(ctx: _Context, k: int) -> tuple[str, dict]:
    """Raise class k's threshold to its F1-optimal confidence, if that gains F1 (detection)."""
    curve = ctx.ev.sweep.per_class[k]
    best_c, _ = curve.optimal()
    if not ctx.det or not math.isfinite(best_c) or best_c <= ctx.ev.confidence:
        return "", {}
    now, then = curve.at(ctx.ev.confidence), curve.at(best_c)

    def prf(tp, fp, fn):
        return _div(tp, tp + fp), _div(tp, tp + fn), _div(2 * tp, 2 * tp + fp + fn)

    p0, r0, f0 = prf(*now)
    p1, r1, f1 = prf(*then)
    if not f1 - f0 >= 0.01:
        return "", {}
    name = ctx.names[k]
    text = (f"raise the threshold for {name} from {ctx.ev.confidence:.2f} to {best_c:.2f} (its F1-optimal): "
            f"precision {p0:.2f} → {p1:.2f}, recall {r0:.2f} → {r1:.2f}, F1 {f0:.2f} → {f1:.2f}")
    return text, {"threshold": best_c, "precision": [p0, p1], "recall": [r0, r1], "f1": [f0, f1]}


def _class_fp(ctx: _Context) -> list[Recommendation]:
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
        adj = _adjectives(d)
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
            ctx.share((lo - ctx.fp_rate) * n_pred, False), _sel(images, class_idx=k, outcome="fp"),
            {"class_idx": k, "n_pred": n_pred, "fp": fp, "fp_rate": fp / n_pred, "ci_low": lo, "ci_high": hi,
             "overall_fp_rate": ctx.fp_rate, "by_type": {w: int(v) for w, v in kinds.items()},
             "threshold": numbers}))
    out.sort(key=lambda r: -r.severity)
    return out[: ctx.cfg.max_classes]


def _confusions(ctx: _Context) -> list[Recommendation]:
    c = ctx.cp.confused_as
    n_of = ctx.cp.table["n_gt" if ctx.det else "n"].to_numpy()
    k = len(c)
    pairs = [(int(c[a, b] + c[b, a]), a, b) for a in range(k) for b in range(a + 1, k)]
    pairs = sorted((p for p in pairs if p[0] >= ctx.cfg.min_errors), key=lambda p: (-p[0], p[1], p[2]))
    out = []
    for total, a, b in pairs[: ctx.cfg.max_confusions]:
        if c[b, a] > c[a, b]:
            a, b = b, a
        na, nb, names = int(n_of[a]), int(n_of[b]), ctx.names
        images = np.union1d(ctx.cp.images_for(a, "confused_as", other=b), ctx.cp.images_for(b, "confused_as", other=a))
        d = ctx.describe(images)
        unit = "objects" if ctx.det else "images"
        evidence = (f"{c[a, b]} {names[a]} {unit} taken for {names[b]} ({_div(c[a, b], na):.0%} of {names[a]}) "
                    f"and {c[b, a]} {names[b]} for {names[a]} ({_div(c[b, a], nb):.0%} of {names[b]}), "
                    f"in {d.size} images")
        traits = "; ".join(t.phrase() for t in d.image_traits()[:2])
        if traits:
            evidence += f"; {traits}"
        adj, augs = _adjectives(d), _augmentations(d)
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
            "confusion", title, evidence, action, severity, _sel(images, cells=cells),
            {"gt": a, "pred": b, "count": int(c[a, b]), "reverse_count": int(c[b, a]), "n_gt": [na, nb]}))
    return out


def _properties(ctx: _Context, importance) -> list[Recommendation]:
    out = []
    for imp in importance:
        if len(out) >= ctx.cfg.max_properties:
            break
        if imp.direction == "none" or imp.mutual_information < ctx.cfg.min_mutual_information:
            continue
        bt = property_performance(ctx.run, ctx.ev, imp.prop)
        if len(bt.count) < 2:
            continue
        b = 0 if imp.direction == "lower" else len(bt.count) - 1
        side = "low" if b == 0 else "high"
        images = bt.image_idx[b]
        lo_v, hi_v = float(bt.edges[b]), float(bt.edges[b + 1])
        where = f"{imp.prop} ≤ {hi_v:.3g}" if side == "low" else f"{imp.prop} ≥ {lo_v:.3g}"
        pos = "lowest" if side == "low" else "highest"
        rates = ", ".join(f"{name.replace('_', ' ')} {bt.rate[name][b]:.2f} vs {bt.overall[name]:.2f} overall"
                          for name in bt.rate if math.isfinite(bt.rate[name][b]))
        if imp.level == "image":
            rate = ctx.rate[images]
            n, err = len(images), float(rate.mean()) if len(images) else 0.0
            excess = (ctx.low(err * n, n) - ctx.overall) * n
            enough = float(rate.sum()) >= ctx.cfg.min_errors
            head = f"{n} images with {where} ({pos} of {len(bt.count)} bins): error rate {err:.2f} vs {ctx.overall:.2f}; {rates}"
            severity = ctx.share(excess, True)
        else:
            n = int(bt.count[b])
            missed = round(float(bt.rate["fn_rate"][b]) * n) if n else 0
            excess = (ctx.low(missed, n) - ctx.fn_rate) * n
            enough = missed >= ctx.cfg.min_errors
            head = f"{n} GT objects with {where} ({pos} of {len(bt.count)} bins, in {len(images)} images): {rates}"
            severity = ctx.share(excess, False)
        if excess <= 0 or not enough:
            continue
        word = WORDS.get((imp.prop, side), f"{side}-{imp.prop}")
        aug = augmentation(imp.prop, side)
        what = f"{word} images" if imp.level == "image" else f"images with {word} objects"
        action = f"Collect and label more {what}" + (f"; until then, train with {aug}." if aug else ".")
        evidence = f"{head}; {imp.sentence()}"
        out.append(Recommendation(
            "property", f"The model fails more on {what} ({imp.direction} {imp.prop} → more errors)", evidence,
            action, severity,
            _sel(images, property=imp.prop, level=imp.level, bin=b, n_bins=len(bt.count), range=[lo_v, hi_v]),
            {"importance": asdict(imp), "bin": b, "range": [lo_v, hi_v], "count": int(bt.count[b]),
             "rates": {k: float(v[b]) for k, v in bt.rate.items()}, "overall": dict(bt.overall)}))
    return out


def _needed(p: float, half: float, z: float) -> int:
    """Normal-approximation sample size for a half-width ``half`` at rate p (clipped to [0.1, 0.9])."""
    p = min(max(p, 0.1), 0.9)
    return math.ceil(z * z * p * (1 - p) / (half * half))


def _few_examples(ctx: _Context) -> list[Recommendation]:
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
            TRUST_WEIGHT * (hi - lo - width_max), _sel(images, class_idx=k, outcome="gt"),
            {"class_idx": k, "n": n, metric: p, "ci_low": lo, "ci_high": hi, "needed": need}))
    return out


def _gt_images(ctx: _Context, classes) -> np.ndarray:
    if ctx.det:
        gt = ctx.ev.dataset.gt
        sel = np.isin(gt.class_idx, classes) & ~gt.iscrowd
        return np.unique(gt.image_idx[sel])
    return np.flatnonzero(np.isin(ctx.ev.arrays["label"], classes)).astype(np.int64)


def _eval_size(ctx: _Context) -> list[Recommendation]:
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
                TRUST_WEIGHT * 2 * (half - target), _sel(np.arange(n_images), all=True),
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
                TRUST_WEIGHT * (whi - blo), _sel(_gt_images(ctx, [int(w["class_idx"]), int(b["class_idx"])]),
                                                  class_idx=[int(w["class_idx"]), int(b["class_idx"])], outcome="gt"),
                {"best": {"class_idx": int(b["class_idx"]), metric: float(rates[best]), "ci": [blo, bhi]},
                 "worst": {"class_idx": int(w["class_idx"]), metric: float(rates[worst]), "ci": [wlo, whi]},
                 "needed_per_class": need}))
    return out
