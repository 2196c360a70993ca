"""The parts every kind of finding shares: config, :class:`Recommendation`, the run's reference rates, wording.

See :mod:`vecexplore.analysis.recommend` for what the findings are and how they rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vecexplore.analysis.describe import (
    ERROR_WORDS,
    Description,
    augmentation,
    describe_images,
    error_count,
)
from vecexplore.analysis.findings import EVIDENCE_KIND, Population, RateTest
from vecexplore.analysis.quality import class_performance, object_arrays
from vecexplore.errors import ConfigError
from vecexplore.rates import scalar_ratio, wilson_interval

KINDS = ("cluster", "class_fn", "class_fp", "confusion", "property", "label_errors", "few_examples",
         "small_eval_set")
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
            after merging, counted by the kind of the finding that leads each merged one.
            ``max_properties`` is 4: the pixel properties are four (brightness,
            contrast, sharpness, colourfulness), so one tail each on average.
        max_total: at most this many recommendations in all.
    """

    z: float = 1.96
    min_errors: int = 5
    few_examples_width: float = 0.2
    eval_half_width: float = 0.05
    max_clusters: int = 5
    max_classes: int = 3
    max_confusions: int = 3
    max_properties: int = 4
    max_total: int = 12

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
        merged: the findings this one explains (:mod:`vecexplore.analysis.findings`),
            each as its own ``to_json()`` (without ``merged``), most severe first.
    """

    kind: str
    title: str
    evidence: str
    action: str
    severity: float
    selection: dict = field(default_factory=dict)
    numbers: dict = field(default_factory=dict)
    merged: tuple = ()

    @property
    def image_idx(self) -> np.ndarray:
        return np.asarray(self.selection.get("image_idx", []), np.int64)

    @property
    def evidence_kinds(self) -> list[str]:
        """"cluster", "property", "class": the kinds of evidence this finding and the ones it explains carry."""
        kinds = {EVIDENCE_KIND.get(k) for k in (self.kind, *(m["kind"] for m in self.merged))}
        return [k for k in ("cluster", "property", "class") if k in kinds]

    def to_json(self) -> dict:
        out = {"kind": self.kind, "title": self.title, "evidence": self.evidence, "action": self.action,
               "severity": round(float(self.severity), 6), "selection": self.selection, "numbers": self.numbers,
               "evidence_kinds": self.evidence_kinds}
        if self.merged:
            out["merged"] = list(self.merged)
        return out


class Context:
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
        self.fn_rate = div(self.n_pos - self.n_found, self.n_pos)
        self.fp_rate = div(self.n_pred - self.n_found, self.n_pred)
        self._units()

    def _units(self) -> None:
        """Per-unit arrays of the claims (:class:`RateTest`): ground truth and counted predictions.

        ``gt_*``: non-crowd GT objects (classification: labelled images), with
        ``gt_missed`` (not found) and ``gt_taken_as`` (the class it was taken
        for, -1 if none); ``pr_*``: counted predictions (classification:
        predictions on labelled images) with ``pr_wrong``.
        """
        ev = self.ev
        if self.det:
            gt, pred, out = ev.dataset.gt, ev.dataset.pred, ev.outcomes
            oa = object_arrays(ev)
            taken = np.full(len(gt), -1, np.int64)
            mt = out.matching
            taken[mt.pair_gt[out.fp_class]] = pred.class_idx[mt.pair_pred[out.fp_class]]
            keep = oa.gt_keep
            self.gt_rows = np.flatnonzero(keep)  # rows of the kept GT in ev.dataset.gt (and the objects table)
            self.gt_image, self.gt_class = gt.image_idx[keep], gt.class_idx[keep]
            self.gt_missed, self.gt_taken_as = oa.gt_missed[keep], taken[keep]
            counted = oa.pred_counted
            self.pr_image, self.pr_class, self.pr_wrong = (pred.image_idx[counted], pred.class_idx[counted],
                                                           ~oa.pred_tp[counted])
        else:
            label, acc = ev.arrays["label"], ev.accepted
            has = np.flatnonzero(label >= 0)
            self.gt_rows = np.zeros(0, np.int64)
            self.gt_image, self.gt_class = has, label[has]
            self.gt_missed = acc[has] != label[has]
            self.gt_taken_as = np.where((acc[has] >= 0) & self.gt_missed, acc[has], -1)
            pr = has[acc[has] >= 0]
            self.pr_image, self.pr_class, self.pr_wrong = pr, acc[pr], acc[pr] != label[pr]
        self.conf_rate = div(int((self.gt_taken_as >= 0).sum()), len(self.gt_image))

        n = ev.dataset.num_images
        self.images_pop = Population(np.arange(n, dtype=np.int64), self.rate)
        self.gt_pop = Population(self.gt_image, self.gt_missed.astype(np.float64))
        self.pr_pop = Population(self.pr_image, self.pr_wrong.astype(np.float64))
        self.confused_pop = Population(self.gt_image, (self.gt_taken_as >= 0).astype(np.float64))

    def test(self, population: Population, units, base: float, errors=None) -> RateTest:
        """A claim over ``population[units]`` against ``base`` (``errors``: the claim's own, if not the population's)."""
        return RateTest(population, np.asarray(units, np.int64), base, self.cfg.min_errors, self.cfg.z,
                        None if errors is None else np.asarray(errors, np.float64))

    def image_test(self, mask: np.ndarray) -> RateTest:
        """The images of ``mask`` have a mean error rate surely above the run's."""
        return self.test(self.images_pop, np.flatnonzero(mask), self.overall)

    def object_tests(self, mask: np.ndarray) -> list[RateTest]:
        """The GT on ``mask``'s images is missed, or its predictions are wrong, surely more than the run's."""
        return [self.test(self.gt_pop, np.flatnonzero(mask[self.gt_image]), self.fn_rate),
                self.test(self.pr_pop, np.flatnonzero(mask[self.pr_image]), self.fp_rate)]

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


def div(a, b) -> float:
    return scalar_ratio(a, b)


def sel(image_idx, **descriptive) -> dict:
    return {"image_idx": [int(i) for i in np.unique(np.asarray(image_idx, np.int64))], **descriptive}


def adjectives(d: Description, limit: int = 2) -> str:
    return ", ".join(t.word for t in d.image_traits()[:limit])


def augmentations(d: Description, limit: int = 2) -> str:
    augs = []
    for t in d.traits:
        a = augmentation(t.prop, t.side)
        if a and a not in augs:
            augs.append(a)
    return " and ".join(augs[:limit])


def action_for(d: Description, ctx: Context) -> str:
    """A concrete suggestion for a set of images, from its dominant error and its traits."""
    adj = adjectives(d)
    like = f"{adj} images" if adj else "images like these"
    small = [t.word for t in d.object_traits()[:1]]
    augs = augmentations(d)
    meanwhile = f"; until then, train with {augs}" if augs else ""
    names = ctx.names
    e = d.dominant_error
    if e in ("fn_missed", "no_prediction", "misclassified"):
        objs = f" with {small[0]} objects" if small else ""
        most = "most missed" if d.task == "detection" else "most often wrong"
        who = f" ({most}: {d.counts_text(d.missed, 2)})" if d.missed else ""
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


def cluster_title(label: str, d: Description, lift: float) -> str:
    """E.g. "Cluster 4: 58 dark images fail 3.1× as often as average — mostly missed objects";
    a merged slice ``label`` "4+9" reads "Clusters 4+9: ..."."""
    adj = adjectives(d)
    what = f"{adj} images" if adj else "images"
    err = ERROR_WORDS.get(d.dominant_error, d.dominant_error)
    lift_text = f" fail {lift:.1f}× as often as average" if math.isfinite(lift) and lift > 1 else ""
    return f"Cluster{'s' if '+' in label else ''} {label}: {d.size} {what}{lift_text} — mostly {err}"


def evidence_text(d: Description, head: str) -> str:
    parts = [head, *(t.phrase() for t in d.traits[:2])]
    errs = ", ".join(error_count(n, k) for k, n in sorted(d.errors.items(), key=lambda kv: -kv[1])[:2] if n)
    if errs:
        parts.append(f"errors: {errs}")
    if d.missed:
        parts.append(f"{d.missed_word}: {d.counts_text(d.missed)}")
    if d.confusions:
        parts.append("confused: " + ", ".join(f"{d.names[a]} → {d.names[b]} {n}" for a, b, n in d.confusions[:2]))
    return "; ".join(parts)
