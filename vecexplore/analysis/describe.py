"""Describe a set of images (a failure cluster, the images behind a finding) by what sets it apart.

A **trait** is a property side on which the set is over-represented: the share
of its images in the lowest (or highest) decile of an image property over the
whole run, against that share over the whole run (10 % unless values repeat
at the edge). Detection sets are also described by their *missed* objects
(GT not found: missed or misclassified) against every non-crowd GT object, so
"the objects it misses are small" is measured on objects. A trait is reported
when the share is at least ``min_share`` and ``min_lift`` times the run's, the
Wilson 95 % lower bound of the share is above the run's share, and at least
``min_count`` rows have it.

Besides traits a :class:`Description` carries the set's error rate, its error
types, its dominant classes, most-missed classes, false-positive classes and
confused pairs, so that recommendations can say "cluster 4: 58 images, error
rate 0.71 vs 0.18 overall; 93 % have brightness in the lowest decile; mostly
triangle missed".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vecexplore.analysis.quality import (
    cached,
    image_properties_of,
    image_values,
    object_arrays,
)
from vecexplore.errors import ValidationError
from vecexplore.eval.outcomes import COUNTED, ERROR_TYPES, PredOutcome
from vecexplore.properties import OBJECT_PROPERTIES
from vecexplore.rates import wilson_interval
from vecexplore.types import selection_mask

#: Plain words for a property side, used in titles and actions.
WORDS = {
    ("brightness", "low"): "dark", ("brightness", "high"): "bright",
    ("contrast", "low"): "low-contrast", ("contrast", "high"): "high-contrast",
    ("sharpness", "low"): "blurry", ("sharpness", "high"): "sharp, finely textured",
    ("colorfulness", "low"): "grey, desaturated", ("colorfulness", "high"): "very colourful",
    ("width", "low"): "narrow", ("width", "high"): "wide",
    ("height", "low"): "short", ("height", "high"): "tall",
    ("aspect_ratio", "low"): "portrait", ("aspect_ratio", "high"): "panoramic",
    ("n_objects", "low"): "sparse", ("n_objects", "high"): "crowded",
    ("relative_area", "low"): "small", ("relative_area", "high"): "large",
    ("box_aspect_ratio", "low"): "tall, thin", ("box_aspect_ratio", "high"): "wide, flat",
    ("border_distance", "low"): "cut-off (at the border)", ("border_distance", "high"): "centred",
    ("n_overlapping", "low"): "isolated", ("n_overlapping", "high"): "overlapping",
}
#: The training-time augmentation that counters a property side (where there is one).
AUGMENT = {
    "brightness": "brightness/exposure augmentation", "contrast": "contrast augmentation",
    ("sharpness", "low"): "blur augmentation", ("sharpness", "high"): "texture/noise augmentation",
    "colorfulness": "colour-jitter and greyscale augmentation",
    ("relative_area", "low"): "zoom-out/scale augmentation or a higher input resolution",
    ("border_distance", "low"): "crop/translate augmentation",
    ("n_objects", "high"): "mosaic/copy-paste augmentation",
}

#: Plain words for the error types of :class:`Description.errors`.
ERROR_WORDS = {
    "fn_missed": "missed objects", "fp_class": "objects taken for another class",
    "fp_background": "false positives on background", "fp_localization": "poorly placed boxes",
    "fp_both": "poorly placed boxes of the wrong class", "fp_duplicate": "duplicate detections",
    "misclassified": "misclassified images", "no_prediction": "no prediction above the threshold",
    "none": "no errors",
}

#: The same, for a count of one ("1 poorly placed box", not "1 poorly placed boxes").
ERROR_WORD_ONE = {
    "fn_missed": "missed object", "fp_class": "object taken for another class",
    "fp_background": "false positive on background", "fp_localization": "poorly placed box",
    "fp_both": "poorly placed box of the wrong class", "fp_duplicate": "duplicate detection",
    "misclassified": "misclassified image", "no_prediction": "image without a prediction above the threshold",
}


def error_count(n: int, error: str) -> str:
    """E.g. "1 poorly placed box", "3 poorly placed boxes"."""
    words = ERROR_WORD_ONE if n == 1 else ERROR_WORDS
    return f"{n} {words.get(error, error)}"


def augmentation(prop: str, side: str) -> str | None:
    return AUGMENT.get((prop, side)) or AUGMENT.get(prop)


@dataclass(frozen=True)
class Trait:
    """One property side the set is over-represented on.

    Attributes:
        prop: property name; level: "image" or "object" (the set's missed GT objects).
        side: "low" (values ≤ ``threshold``, the run's 10th percentile) or "high" (≥ the 90th).
        share: fraction of the set's rows on that side; base: the same fraction over the run.
        count, total: rows on that side / rows in the set.
    """

    prop: str
    level: str
    side: str
    threshold: float
    share: float
    base: float
    count: int
    total: int

    @property
    def word(self) -> str:
        return WORDS.get((self.prop, self.side), f"{self.side} {self.prop}")

    def phrase(self) -> str:
        """E.g. "84% in the lowest brightness decile (≤ 0.038; 10% of all images)"."""
        who = "" if self.level == "image" else " of its missed objects"
        edge = "lowest" if self.side == "low" else "highest"
        op = "≤" if self.side == "low" else "≥"
        rows = "images" if self.level == "image" else "GT objects"
        return (f"{self.share:.0%}{who} in the {edge} {self.prop} decile "
                f"({op} {self.threshold:.3g}; {self.base:.0%} of all {rows})")

    def to_json(self) -> dict:
        return {"prop": self.prop, "level": self.level, "side": self.side, "threshold": self.threshold,
                "share": self.share, "base": self.base, "count": self.count, "total": self.total,
                "phrase": self.phrase()}


@dataclass(frozen=True, eq=False)
class Description:
    """What sets a set of images apart (see the module docstring).

    Attributes:
        image_idx: (n,) int64 sorted, the images described.
        error_rate: mean per-image error rate of the set; overall_error_rate: of the run.
        ci_low, ci_high: Wilson 95 % interval of ``error_rate`` (n = images, as slices do).
        traits: distinctive property sides, largest excess share first.
        errors: error type → count in the set (detection: TIDE types of
            :data:`~vecexplore.eval.outcomes.ERROR_TYPES`; classification:
            ``misclassified``, ``no_prediction``).
        dominant_error: the largest error type ("none" without errors).
        classes / missed / false_positives: (class_idx, count), most first: GT
            classes; GT not found (missed or misclassified; classification: wrong
            or no prediction); predicted classes of false positives (detection:
            FP other than FP-class; classification: wrong predictions).
        confusions: (gt class_idx, predicted class_idx, count), most first.
        names: class names.
        task: "detection" or "classification" (the wording of :meth:`summary` follows it).
    """

    image_idx: np.ndarray
    error_rate: float
    overall_error_rate: float
    ci_low: float
    ci_high: float
    traits: tuple[Trait, ...]
    errors: dict
    dominant_error: str
    classes: tuple
    missed: tuple
    false_positives: tuple
    confusions: tuple
    names: tuple[str, ...] = field(default=())
    task: str = "detection"

    @property
    def missed_word(self) -> str:
        """What :attr:`missed` counts, in the task's words."""
        return "not found" if self.task == "detection" else "wrong"

    @property
    def size(self) -> int:
        return len(self.image_idx)

    def image_traits(self) -> list[Trait]:
        return [t for t in self.traits if t.level == "image"]

    def object_traits(self) -> list[Trait]:
        return [t for t in self.traits if t.level == "object"]

    def counts_text(self, pairs, limit: int = 3) -> str:
        return ", ".join(f"{self.names[c]} {n}" for c, n in pairs[:limit])

    def summary(self) -> str:
        """One sentence: size, error rate against the run, traits, what goes wrong."""
        parts = [f"{self.size} images, error rate {self.error_rate:.2f} vs {self.overall_error_rate:.2f} overall"]
        parts += [t.phrase() for t in self.traits[:3]]
        if self.dominant_error != "none":
            parts.append(f"mostly {ERROR_WORDS.get(self.dominant_error, self.dominant_error)}")
        if self.missed:
            parts.append(f"{self.missed_word}: {self.counts_text(self.missed)}")
        if self.confusions:
            a, b, n = self.confusions[0]
            parts.append(f"{self.names[a]} taken for {self.names[b]} {n}×")
        return "; ".join(parts)

    def to_json(self) -> dict:
        def pairs(items):
            return [{"class_idx": int(c), "name": self.names[c], "count": int(n)} for c, n in items]

        return {
            "n_images": self.size, "error_rate": self.error_rate, "overall_error_rate": self.overall_error_rate,
            "ci_low": self.ci_low, "ci_high": self.ci_high, "traits": [t.to_json() for t in self.traits],
            "errors": dict(self.errors), "dominant_error": self.dominant_error,
            "classes": pairs(self.classes), "missed": pairs(self.missed),
            "false_positives": pairs(self.false_positives),
            "confusions": [{"gt": self.names[a], "pred": self.names[b], "gt_class_idx": int(a),
                            "pred_class_idx": int(b), "count": int(n)} for a, b, n in self.confusions],
            "summary": self.summary(),
        }


def _deciles(values: np.ndarray) -> tuple[float, float, float, float] | None:
    """(10th percentile, 90th, share ≤ the 10th, share ≥ the 90th) of the finite values; None if degenerate."""
    v = values[np.isfinite(values)]
    if v.size < 10 or np.ptp(v) == 0:
        return None
    lo, hi = np.quantile(v, [0.1, 0.9], method="nearest")
    return float(lo), float(hi), float((v <= lo).mean()), float((v >= hi).mean())


def _side_traits(values: np.ndarray, members: np.ndarray, deciles, *, prop: str, level: str,
                 min_lift: float, min_count: int, min_share: float) -> list[Trait]:
    """Traits of one property: ``values`` over the reference population, ``members`` (bool) the set."""
    if deciles is None:
        return []
    lo, hi, base_lo, base_hi = deciles
    v = values[members]
    v = v[np.isfinite(v)]
    total = len(v)
    if total == 0:
        return []
    out = []
    for side, count, base in (("low", int((v <= lo).sum()), base_lo), ("high", int((v >= hi).sum()), base_hi)):
        share = count / total
        low, _ = wilson_interval(count, total)
        if count >= min_count and base < 1 and share >= max(min_lift * base, min_share) and float(low) > base:
            out.append(Trait(prop, level, side, float(lo if side == "low" else hi), share, base, count, total))
    return out


def _top(pairs_counts: np.ndarray, limit: int) -> tuple:
    idx = np.flatnonzero(pairs_counts)
    order = idx[np.lexsort((idx, -pairs_counts[idx]))][:limit]
    return tuple((int(i), int(pairs_counts[i])) for i in order)


def describe_images(run, ev, image_idx, *, min_lift: float = 2.5, min_share: float = 0.3,
                    min_count: int = 3, limit: int = 5) -> Description:
    """Describe a set of images of ``run`` at the operating point of ``ev`` (see :class:`Description`)."""
    n = ev.dataset.num_images
    mask = selection_mask(image_idx, n)
    if mask is None:
        mask = np.ones(n, bool)
    images = run.images
    if len(images) != n:
        raise ValidationError(f"run has {len(images)} images but the evaluation {n}")
    k = len(ev.class_names)
    rate = ev.per_image["error_rate"].to_numpy(np.float64)
    size = int(mask.sum())
    err = float(rate[mask].mean()) if size else float("nan")
    low, high = wilson_interval(err * size if size else 0.0, size)
    readable = images["readable"].to_numpy(bool) if "readable" in images else np.ones(n, bool)
    traits: list[Trait] = []
    for prop in image_properties_of(run, ev.task):
        values = np.where(readable, image_values(images, prop), np.nan)
        deciles = cached(images, ("deciles", prop), lambda values=values: _deciles(values))
        traits += _side_traits(values, mask, deciles, prop=prop, level="image", min_lift=min_lift,
                               min_count=min_count, min_share=min_share)
    if ev.task == "detection":
        gt, pred, out = ev.dataset.gt, ev.dataset.pred, ev.outcomes
        oa = object_arrays(ev)
        objects = run.objects
        m = len(gt)
        set_missed = oa.gt_missed & mask[gt.image_idx]
        for prop in OBJECT_PROPERTIES:
            if objects is not None and prop in objects.columns:
                values = objects[prop].to_numpy(np.float64)[:m][oa.gt_keep]
                deciles = cached(objects, ("gt_deciles", prop), lambda values=values: _deciles(values))
                traits += _side_traits(values, set_missed[oa.gt_keep], deciles, prop=prop, level="object",
                                       min_lift=min_lift, min_count=min_count, min_share=min_share)
        per_image = ev.per_image
        errors = {c: int(per_image[c].to_numpy()[mask].sum()) for c in ERROR_TYPES}
        g_in = oa.gt_keep & mask[gt.image_idx]
        classes = np.bincount(gt.class_idx[g_in], minlength=k)
        missed = np.bincount(gt.class_idx[set_missed], minlength=k)
        code = out.pred_code
        fp = (code < COUNTED) & (code != PredOutcome.TP) & (code != PredOutcome.FP_CLASS) & mask[pred.image_idx]
        fps = np.bincount(pred.class_idx[fp], minlength=k)
        mt = out.matching
        p, g = mt.pair_pred[out.fp_class], mt.pair_gt[out.fp_class]
        keep = mask[gt.image_idx[g]]
        pairs = np.bincount(gt.class_idx[g[keep]] * k + pred.class_idx[p[keep]], minlength=k * k)
    else:
        label, acc = ev.arrays["label"], ev.accepted
        lab = (label >= 0) & mask
        wrong = lab & (acc >= 0) & (acc != label)
        errors = {"misclassified": int(wrong.sum()), "no_prediction": int((lab & (acc < 0)).sum())}
        classes = np.bincount(label[lab], minlength=k)
        missed = np.bincount(label[lab & (acc != label)], minlength=k)
        fps = np.bincount(acc[wrong], minlength=k)
        pairs = np.bincount(label[wrong] * k + acc[wrong], minlength=k * k)
    traits.sort(key=lambda t: (-(t.share - t.base), t.level, t.prop))
    dominant = max(errors, key=lambda e: errors[e]) if any(errors.values()) else "none"
    conf = _top(pairs, limit)
    return Description(
        image_idx=np.flatnonzero(mask).astype(np.int64), error_rate=err, overall_error_rate=float(rate.mean()),
        ci_low=float(low), ci_high=float(high), traits=tuple(traits), errors=errors, dominant_error=dominant,
        classes=_top(classes, limit), missed=_top(missed, limit), false_positives=_top(fps, limit),
        confusions=tuple((c // k, c % k, cnt) for c, cnt in conf), names=tuple(ev.class_names),
        task=ev.task,
    )


def describe_cluster(run, ev, cluster: int, *, labels: np.ndarray | None = None, **kwargs) -> Description:
    """:func:`describe_images` of one cluster's images (``labels`` default: the run's ``cluster`` column)."""
    labels = run.images["cluster"].to_numpy() if labels is None else np.asarray(labels)
    if cluster < 0 or not (labels == cluster).any():
        raise ValidationError(f"no cluster {cluster} in this run (noise, -1, is never a slice)")
    return describe_images(run, ev, labels == cluster, **kwargs)
