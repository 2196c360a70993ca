"""A simulated model with planted failure modes, driven by each scene's ground truth.

The "model" never looks at pixels: it decides per object, from the scene's mode
and the object's size and class, what a plausible detector or classifier would
output, using the image's own random stream. Clean scenes get a good model
(~90% recall, tight boxes, confident scores, a few duplicates, localisation
errors and low-score junk); planted scenes get the failure named by their mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vecexplore.demo.scene import CLASSES, CONFUSED_PAIR, TEXTURE_FP_CLASS, Scene
from vecexplore.eval.iou import pair_iou

#: Simulated outcome of a detection, as the generator intended it (not as evaluated).
DETECTION_OUTCOMES: tuple[str, ...] = (
    "tp", "duplicate", "mislocalized", "confused", "background", "texture_fp", "crowd", "junk",
)
CLASSIFICATION_OUTCOMES: tuple[str, ...] = ("correct", "wrong")

_SMALL, _MEDIUM = 32.0**2, 96.0**2  # COCO area ranges
# Probability that an object of (small, medium, large) area is detected at all, per mode.
_RECALL = {
    "clean": (0.85, 0.93, 0.97),
    "texture_false_positives": (0.85, 0.93, 0.97),
    "dark_small_missed": (0.07, 0.45, 0.9),
    "blur_confusion": (0.88, 0.92, 0.95),
}


@dataclass(frozen=True)
class SimulatedDetection:
    """One predicted box: COCO ``bbox`` [x, y, w, h] (2 decimals), score in (0, 1) (4 decimals)."""

    class_idx: int
    bbox: tuple[float, float, float, float]
    score: float
    outcome: str  # one of DETECTION_OUTCOMES


@dataclass(frozen=True)
class SimulatedLabel:
    """One classification: ``scores`` (K,) per-class probabilities (4 decimals, sum exactly 1)."""

    prediction: int
    scores: tuple[float, ...]
    outcome: str  # one of CLASSIFICATION_OUTCOMES


_NOT_CROWD = np.zeros(1, bool)


def _iou(a, b) -> float:
    return float(pair_iou(np.asarray([a], np.float64), np.asarray([b], np.float64), _NOT_CROWD)[0])


def _clip_box(x0, y0, x1, y1, width, height):
    """Clip xyxy to the image and return a rounded COCO xywh box, or None if degenerate."""
    x0, x1 = max(0.0, min(x0, width)), max(0.0, min(x1, width))
    y0, y1 = max(0.0, min(y0, height)), max(0.0, min(y1, height))
    x0, y0 = round(x0, 2), round(y0, 2)
    w, h = round(x1 - x0, 2), round(y1 - y0, 2)
    if w < 2 or h < 2:
        return None
    return (x0, y0, w, h)


def _jitter(rng, box, scale, width, height):
    """``box`` with each edge moved by N(0, scale * side): IoU mostly > 0.75 for scale 0.04."""
    x, y, w, h = box
    d = rng.normal(0.0, scale, size=4) * np.array([w, h, w, h])
    return _clip_box(x + d[0], y + d[1], x + w + d[2], y + h + d[3], width, height)


def _mislocalize(rng, box, width, height):
    """A box around ``box`` whose IoU with it lies in [0.2, 0.45], or None."""
    x, y, w, h = box
    for _ in range(20):
        target = rng.uniform(0.2, 0.45)
        # A shift of s·side along one axis gives IoU (1 - s) / (1 + s).
        s = (1 - target) / (1 + target)
        axis = rng.integers(2)
        sign = rng.choice([-1.0, 1.0])
        dx, dy = (sign * s * w, 0.0) if axis == 0 else (0.0, sign * s * h)
        cand = _clip_box(x + dx, y + dy, x + w + dx, y + h + dy, width, height)
        if cand is not None and 0.2 <= _iou(cand, box) <= 0.45:
            return cand
    return None


def _free_box(rng, scene: Scene, lo: float, hi: float, max_iou: float):
    """A square-ish box of side in [lo, hi]·short side overlapping every GT box by < ``max_iou``."""
    short = min(scene.width, scene.height)
    gts = [o.bbox for o in scene.objects] + ([scene.crowd_bbox] if scene.crowd_bbox else [])
    for _ in range(20):
        side = rng.uniform(lo, hi) * short
        w, h = side * rng.uniform(0.8, 1.25), side * rng.uniform(0.8, 1.25)
        x, y = rng.uniform(0, scene.width - w), rng.uniform(0, scene.height - h)
        cand = _clip_box(x, y, x + w, y + h, scene.width, scene.height)
        if cand is not None and all(_iou(cand, g) < max_iou for g in gts):
            return cand
    return None


def _score(rng, lo: float, hi: float, a: float = 1.0, b: float = 1.0) -> float:
    return round(float(lo + (hi - lo) * rng.beta(a, b)), 4)


def simulate_detections(scene: Scene, rng: np.random.Generator) -> list[SimulatedDetection]:
    """Predictions of the simulated detector on one scene, sorted by score (stable, descending).

    Clean and texture scenes: per-object recall 0.85/0.93/0.97 (small/medium/large),
    TP scores mostly 0.6–0.99, 1.5% class errors, 3% localisation errors (IoU 0.2–0.45),
    4% duplicates; ~0.25 low-score (0.05–0.4) background FP and ~1.5 junk boxes
    (0.01–0.12) per image; 1–3 ignored detections inside a crowd box.
    Night scenes: recall 0.07/0.45/0.9 and low scores (0.3–0.7).
    Blur scenes: the confused pair is swapped 70% of the time with plausible scores.
    Texture scenes: additionally 2–5 confident FP of :data:`TEXTURE_FP_CLASS` on the stripes.
    """
    out: list[SimulatedDetection] = []
    w_img, h_img = scene.width, scene.height
    mode = scene.mode
    recall = _RECALL[mode]
    k = len(CLASSES)
    for obj in scene.objects:
        area = obj.bbox[2] * obj.bbox[3]
        size = 0 if area < _SMALL else (1 if area < _MEDIUM else 2)
        if rng.uniform() >= recall[size]:
            continue
        cls, outcome = obj.class_idx, "tp"
        if mode == "dark_small_missed":
            score = _score(rng, 0.3, 0.7)
        elif mode == "blur_confusion":
            score = _score(rng, 0.45, 0.88, 3, 2)
        else:
            score = _score(rng, 0.45, 0.99, 4, 1.6) if size == 0 else _score(rng, 0.55, 0.995, 5, 1.5)
        if mode == "blur_confusion" and cls in CONFUSED_PAIR and rng.uniform() < 0.7:
            cls, outcome = CONFUSED_PAIR[1 - CONFUSED_PAIR.index(cls)], "confused"
        elif rng.uniform() < 0.015:
            cls, outcome = int((cls + rng.integers(1, k)) % k), "confused"
        box = None
        if outcome == "tp" and mode != "blur_confusion" and rng.uniform() < 0.03:
            box = _mislocalize(rng, obj.bbox, w_img, h_img)
            if box is not None:
                outcome, score = "mislocalized", _score(rng, 0.3, 0.7)
        if box is None:
            scale = 0.07 if mode in ("blur_confusion", "dark_small_missed") else 0.035
            box = _jitter(rng, obj.bbox, scale, w_img, h_img)
        if box is None:
            continue
        out.append(SimulatedDetection(cls, box, score, outcome))
        if outcome == "tp" and rng.uniform() < 0.04:
            dup = _jitter(rng, obj.bbox, 0.06, w_img, h_img)
            if dup is not None:
                out.append(SimulatedDetection(cls, dup, round(score * float(rng.uniform(0.3, 0.7)), 4), "duplicate"))

    for member in scene.crowd[: int(rng.integers(1, 4))]:
        box = _jitter(rng, member.bbox, 0.05, w_img, h_img)
        if box is not None:
            out.append(SimulatedDetection(member.class_idx, box, _score(rng, 0.25, 0.75), "crowd"))
    if mode == "texture_false_positives":
        for _ in range(int(rng.integers(2, 6))):
            box = _free_box(rng, scene, 0.08, 0.22, 0.05)
            if box is not None:
                out.append(SimulatedDetection(TEXTURE_FP_CLASS, box, _score(rng, 0.35, 0.85, 2, 1.5), "texture_fp"))
    for _ in range(int(rng.poisson(0.25))):
        box = _free_box(rng, scene, 0.05, 0.2, 0.1)
        if box is not None:
            out.append(SimulatedDetection(int(rng.integers(k)), box, _score(rng, 0.05, 0.4), "background"))
    for _ in range(int(rng.poisson(1.5))):
        box = _free_box(rng, scene, 0.03, 0.35, 1.01)
        if box is not None:
            out.append(SimulatedDetection(int(rng.integers(k)), box, _score(rng, 0.01, 0.12), "junk"))
    order = sorted(range(len(out)), key=lambda i: -out[i].score)  # sorted() is stable
    return [out[i] for i in order]


def round_probabilities(p: np.ndarray, prediction: int, decimals: int = 4) -> tuple[float, ...]:
    """Round probabilities to ``decimals`` so they sum exactly to 1 and ``prediction`` is the unique max.

    Largest-remainder rounding on integer units of 10**-decimals; ties for the
    maximum are broken towards ``prediction`` by moving one unit to it.
    """
    unit = 10**decimals
    scaled = np.asarray(p, dtype=np.float64) / np.sum(p) * unit
    units = np.floor(scaled).astype(np.int64)
    rest = int(unit - units.sum())
    order = np.argsort(-(scaled - units), kind="stable")
    units[order[:rest]] += 1
    for j in np.flatnonzero(units >= units[prediction]):
        if j != prediction:
            moved = units[j] - units[prediction] + 1
            units[j] -= moved
            units[prediction] += moved
    return tuple(round(int(u) / unit, decimals) for u in units)


def simulate_label(scene: Scene, rng: np.random.Generator) -> SimulatedLabel:
    """The simulated classifier's softmax on one single-object scene.

    Clean: ~94% correct with confident scores. Night: ~35% correct, flat
    (low-confidence) scores. Blur: the confused pair is swapped ~70% of the time.
    Texture: 85% predicted as :data:`TEXTURE_FP_CLASS`.
    """
    k = len(CLASSES)
    true = scene.objects[0].class_idx
    logits = rng.normal(0.0, 0.8, size=k)
    other = int((true + rng.integers(1, k)) % k)
    mode = scene.mode
    if mode == "dark_small_missed":
        target, boost = (true if rng.uniform() < 0.35 else other), rng.uniform(0.8, 1.8)
    elif mode == "blur_confusion" and true in CONFUSED_PAIR:
        partner = CONFUSED_PAIR[1 - CONFUSED_PAIR.index(true)]
        target, boost = (partner if rng.uniform() < 0.75 else true), rng.uniform(1.5, 3.5)
        logits[partner if target == true else true] += rng.uniform(0.5, 1.5)  # the runner-up is the look-alike
    elif mode == "texture_false_positives" and rng.uniform() < 0.85:
        target, boost = TEXTURE_FP_CLASS, rng.uniform(2.0, 4.5)
    else:
        target, boost = (true if rng.uniform() < 0.94 else other), rng.uniform(3.0, 6.0)
    logits[target] += boost
    p = np.exp(logits - logits.max())
    prediction = int(np.argmax(p))
    scores = round_probabilities(p, prediction)
    return SimulatedLabel(prediction, scores, "correct" if prediction == true else "wrong")
