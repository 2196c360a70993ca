"""A small evaluated detection dataset with planted failure modes, independent of vecexplore.demo.

Its own scenes (axis-aligned shapes on two-colour gradients, 160–240 px), its own
modes and its own simulated detector; only JPEG encoding is shared. Each mode
covers a share of the images drawn uniformly from [5 %, 15 %] per seed:

* ``murk``: darkness (mean luma 4–12 %) on even seeds, fog (60–75 % grey haze)
  on odd seeds; the detector misses 75 % of the objects.
* ``texture``: a fine high-contrast checkerboard background (2–4 px cells); the
  detector fires 2–4 confident false positives of one class (chosen per seed).
* ``blur``: a Gaussian blur of 2.5–4 px over an otherwise clean scene; 70 % of
  the boxes are badly placed (IoU ≈ 0.2–0.4: a localisation error and a miss).
  Appearance barely changes, so only the property analysis can find it.
* ``cast``: a strong colour cast (per-seed hue); objects are mostly of two
  classes (chosen per seed) that the detector takes for each other 70 % of the time.

Clean images (and the modes' other objects) see a uniform, structureless
detector: 90 % found, 2 % taken for a random class, 0.08 background false
positives per image. Scenes carry fine grain (which blur removes) and sensor
noise (doubled in the dark). ``generate(out, n=..., seed=...)`` writes
``images/``, ``annotations.json`` and ``predictions.json`` and returns the
planted image ids; :func:`score` grades a ranked list of slices against them.
"""

from __future__ import annotations

import colorsys
import json
from pathlib import Path

import numpy as np

from vecexplore.demo.scene import encode_jpeg

CLASSES = ("box", "disc", "ring", "bar", "kite")
MODES = ("murk", "texture", "blur", "cast")
SHARE = (0.05, 0.15)


def _rgb(h, s, v) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32) * 255


def _scene(rng, mode: str, pair: tuple[int, int]):
    w, h = (int(v) for v in rng.integers(160, 241, 2))
    hue = rng.uniform()
    a, b = (_rgb(hue + rng.uniform(-0.1, 0.1), rng.uniform(0.1, 0.45), rng.uniform(0.35, 0.75)) for _ in range(2))
    t = np.linspace(0, 1, w, dtype=np.float32)[None, :, None] if rng.uniform() < 0.5 else \
        np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    bg = np.broadcast_to(a * (1 - t) + b * t, (h, w, 3)).copy()
    bg += rng.normal(0, rng.uniform(4, 10), (h, w, 1))  # fine scene detail (grain, foliage), which blur removes
    if mode == "texture":
        cell = int(rng.integers(2, 5))
        yy, xx = np.mgrid[0:h, 0:w]
        check = ((yy // cell + xx // cell) % 2).astype(bool)
        bg = np.where(check[..., None], _rgb(rng.uniform(), 0.6, 0.95), _rgb(rng.uniform(), 0.6, 0.2))
    objects, short = [], min(w, h)
    for _ in range(int(rng.integers(1, 5))):
        cls = int(pair[rng.integers(2)]) if mode == "cast" and rng.uniform() < 0.8 else int(rng.integers(len(CLASSES)))
        for _try in range(20):
            r = rng.uniform(0.08, 0.22) * short
            rw, rh = (3 * r, r) if CLASSES[cls] == "bar" and rng.uniform() < 0.5 else \
                     (r, 3 * r) if CLASSES[cls] == "bar" else (r, r)
            rw, rh = min(rw, w / 2 - 2), min(rh, h / 2 - 2)
            cx, cy = rng.uniform(rw + 1, w - rw - 1), rng.uniform(rh + 1, h - rh - 1)
            box = (cx - rw, cy - rh, cx + rw, cy + rh)
            if all(box[0] > o[1][2] + 2 or o[1][0] > box[2] + 2 or box[1] > o[1][3] + 2 or o[1][1] > box[3] + 2
                   for o in objects):
                objects.append((cls, box, _rgb(rng.uniform(), rng.uniform(0.5, 0.9), rng.uniform(0.1, 1.0))))
                break
    return bg, objects


def _render(rng, mode: str, variant: str, cast_gain: np.ndarray, bg, objects):
    from PIL import Image, ImageDraw, ImageFilter

    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for cls, (x0, y0, x1, y1), colour in objects:
        fill = tuple(int(c) for c in colour)
        name = CLASSES[cls]
        if name in ("box", "bar"):
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        elif name == "disc":
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif name == "ring":
            draw.ellipse((x0, y0, x1, y1), outline=fill, width=max(2, int((x1 - x0) / 6)))
        else:
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill)
    if mode == "blur":
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(2.5, 4.0)))
    arr = np.asarray(img, np.float32)
    if mode == "murk" and variant == "dark":
        arr *= rng.uniform(0.04, 0.12) * 255 / max(float(arr.mean()), 1.0)
    elif mode == "murk":
        f = rng.uniform(0.6, 0.75)
        arr = arr * (1 - f) + rng.uniform(200, 235) * f
    elif mode == "cast":
        arr = arr * cast_gain
    noise = rng.uniform(1.0, 2.5) * (2 if mode == "murk" and variant == "dark" else 1)  # low light: high gain
    arr += rng.normal(0, noise, arr.shape)
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))


def _shifted(box, rng):
    """A box of the same size moved by 45–60 % of its extent along one axis (IoU ≈ 0.25–0.4)."""
    x0, y0, x1, y1 = box
    f = rng.uniform(0.45, 0.6) * rng.choice([-1, 1])
    if rng.uniform() < 0.5:
        dx, dy = f * (x1 - x0), 0.0
    else:
        dx, dy = 0.0, f * (y1 - y0)
    return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)


def _detect(rng, mode: str, objects, size, pair, fp_class):
    """(class_idx, xyxy, score) predictions of the simulated detector for one image."""
    w, h = size
    out = []
    for cls, box, _ in objects:
        if mode == "murk":
            if rng.uniform() < 0.25:
                out.append((cls, box, rng.uniform(0.5, 0.8)))
            continue
        if mode == "blur" and rng.uniform() < 0.7:
            out.append((cls, _shifted(box, rng), rng.uniform(0.5, 0.95)))
            continue
        if mode == "cast" and cls in pair and rng.uniform() < 0.7:
            out.append((pair[1] if cls == pair[0] else pair[0], box, rng.uniform(0.5, 0.95)))
            continue
        u = rng.uniform()
        if u < 0.9:
            jit = rng.normal(0, 0.03, 4) * np.r_[box[2] - box[0], box[3] - box[1], box[2] - box[0], box[3] - box[1]]
            out.append((cls, tuple(np.asarray(box) + jit), rng.uniform(0.5, 1.0)))
        elif u < 0.92:
            out.append((int((cls + rng.integers(1, len(CLASSES))) % len(CLASSES)), box, rng.uniform(0.5, 0.9)))
    extra = [(int(rng.integers(len(CLASSES))), 0.3, 0.9)] * int(rng.poisson(0.08))
    if mode == "texture":
        extra += [(fp_class, 0.55, 0.95)] * int(rng.integers(2, 5))
    for cls, lo, hi in extra:
        bw, bh = rng.uniform(0.1, 0.25) * w, rng.uniform(0.1, 0.25) * h
        x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        out.append((cls, (x, y, x + bw, y + bh), rng.uniform(lo, hi)))
    return out


def generate(out: str | Path, *, n: int, seed: int) -> dict[str, list[int]]:
    """Write the dataset to ``out`` (COCO files + images/) and return ``{mode: [image_id, ...]}`` (ids 1-based)."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    master = np.random.default_rng([seed, 11])
    counts = [round(master.uniform(*SHARE) * n) for _ in MODES]
    assign = np.full(n, "clean", object)
    order, start = master.permutation(n), 0
    for mode, c in zip(MODES, counts, strict=True):
        assign[order[start:start + c]] = mode
        start += c
    pair = tuple(int(c) for c in master.choice(len(CLASSES), 2, replace=False))
    fp_class = int(master.choice([c for c in range(len(CLASSES)) if c not in pair]))
    variant = "dark" if seed % 2 == 0 else "fog"
    gain = _rgb(master.uniform(), 0.65, 1.0) / 255
    images, annotations, predictions = [], [], []
    for i, child in enumerate(np.random.SeedSequence([seed, 12]).spawn(n)):
        rng = np.random.default_rng(child)
        mode = str(assign[i])
        bg, objects = _scene(rng, mode, pair)
        h, w = bg.shape[:2]
        img = _render(rng, mode, variant, gain, bg, objects)
        name = f"images/{i + 1:05d}.jpg"
        (out / name).write_bytes(encode_jpeg(img))
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        for cls, (x0, y0, x1, y1), _ in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": cls + 1,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
        for cls, (x0, y0, x1, y1), score in _detect(rng, mode, objects, (w, h), pair, fp_class):
            predictions.append({"image_id": i + 1, "category_id": cls + 1,
                                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], "score": float(score)})
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": k + 1, "name": c} for k, c in enumerate(CLASSES)]}
    (out / "annotations.json").write_text(json.dumps(coco))
    (out / "predictions.json").write_text(json.dumps(predictions))
    return {m: [i + 1 for i in range(n) if assign[i] == m] for m in MODES}


def score(slices: list[dict], planted: dict[str, np.ndarray], *, n_images: int) -> dict[str, dict]:
    """How each planted mode appears among the top K slices (K = number of modes).

    Args:
        slices: ranked findings, each with ``selection["image_idx"]``.
        planted: mode → image_idx of its images.
        n_images: images in the run.

    Returns:
        mode → ``{"hits": [(rank, precision, recall, kind), ...], "ok": bool}``: a
        top-K slice *describes* a mode when most of its images are the mode's
        (precision > 1/2); the mode is ``ok`` when exactly one slice describes it
        and that one has precision ≥ 0.8 and recall ≥ 0.6.
    """
    k = len(planted)
    out = {}
    for mode, idx in planted.items():
        want = np.zeros(n_images, bool)
        want[idx] = True
        hits = []
        for rank, rec in enumerate(slices[:k], 1):
            got = np.zeros(n_images, bool)
            got[rec["selection"]["image_idx"]] = True
            both = int((got & want).sum())
            precision, recall = both / max(int(got.sum()), 1), both / max(int(want.sum()), 1)
            if precision > 0.5:
                hits.append((rank, precision, recall, rec["kind"]))
        out[mode] = {"hits": hits, "ok": len(hits) == 1 and hits[0][1] >= 0.8 and hits[0][2] >= 0.6}
    return out
