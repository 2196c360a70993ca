"""Synthetic scenes of simple shapes: sampling (seeded, pure) and rendering to JPEG.

A :class:`Scene` is every parameter needed to draw one image; :func:`render_scene`
is a pure function of it, so rendering can run anywhere (another process) and
still give the same bytes. The planted failure modes differ from clean scenes in
*global* image statistics, because a randomly initialised ViT mostly sees those:

* ``dark_small_missed``: near-black night scenes (mean luma < 40/255), dim objects.
* ``blur_confusion``: out-of-focus, foggy scenes: heavy Gaussian blur of the whole
  image (radius 6–10 px at 512 px) under a bright grey haze (mean luma ~0.65–0.85,
  low contrast and saturation). Blur alone is not enough: an embedder that sees
  the image at 64–224 px barely tells a blurred smooth scene from a sharp one.
* ``texture_false_positives``: a saturated yellow/purple wavy "zebra" stripe
  background of high spatial frequency that no other scene uses.

Clean scenes use smooth, mid-brightness backgrounds (gradients, soft clouds, flat
colour) with mild lighting variation and occasional mild blur.
"""

from __future__ import annotations

import colorsys
import io
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

CLASSES: tuple[str, ...] = ("circle", "hexagon", "square", "triangle", "star", "cross")
#: The two classes the simulated model confuses under blur (class_idx into CLASSES).
CONFUSED_PAIR: tuple[int, int] = (0, 1)
#: The class the simulated model hallucinates on the striped texture.
TEXTURE_FP_CLASS: int = 5

Mode = Literal["clean", "dark_small_missed", "blur_confusion", "texture_false_positives"]
PLANTED_MODES: tuple[str, ...] = ("dark_small_missed", "blur_confusion", "texture_false_positives")
SceneTask = Literal["detection", "classification"]

JPEG_QUALITY = 90
_MIN_SIDE, _MAX_SIDE = 256, 640
_R_MIN = 6.0  # smallest circumradius: a ~12 px object, COCO "small"


@dataclass(frozen=True)
class SceneObject:
    """One drawn shape. ``bbox`` is its tight COCO ``[x, y, w, h]`` box (floats, pixels)."""

    class_idx: int
    cx: float
    cy: float
    radius: float  # circumradius in pixels
    angle: float  # rotation in radians (ignored for circles)
    fill: tuple[int, int, int]
    outline: tuple[int, int, int]
    outline_width: int
    bbox: tuple[float, float, float, float]


@dataclass(frozen=True)
class Scene:
    """Everything needed to render one image; ``crowd`` members share one crowd box."""

    width: int
    height: int
    mode: Mode
    background: str  # linear | radial | clouds | flat | night | zebra
    colors: tuple[tuple[int, int, int], ...]  # background colours, meaning depends on kind
    bg_angle: float
    bg_period: float  # zebra stripe period in px
    gain: float  # global lighting multiplier
    light_angle: float
    light_strength: float  # 0 = even lighting; relative gain across the image
    blur_radius: float  # Gaussian blur radius in px, 0 = none
    target_luma: float  # night scenes are scaled to this mean luma (0..255); 0 = unused
    haze: float  # fraction blended towards ``haze_color`` (fog), 0 = none
    haze_color: tuple[int, int, int]
    noise_sigma: float  # additive sensor noise, 0..255 scale
    noise_seed: int
    objects: tuple[SceneObject, ...]
    crowd: tuple[SceneObject, ...] = ()
    crowd_bbox: tuple[float, float, float, float] | None = None

    @property
    def crowd_class(self) -> int | None:
        return self.crowd[0].class_idx if self.crowd else None


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (round(r * 255), round(g * 255), round(b * 255))


def _luma(c) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def shape_vertices(class_idx: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray | None:
    """(k, 2) float64 polygon vertices of a shape with circumradius ``r``; None for a circle."""
    name = CLASSES[class_idx]
    if name == "circle":
        return None
    if name == "star":
        k = np.arange(10)
        radii = np.where(k % 2 == 0, r, 0.45 * r)
        theta = angle + k * math.pi / 5
    elif name == "cross":
        a = 0.33  # arm half-width relative to arm length
        pts = [(a, 1), (a, a), (1, a), (1, -a), (a, -a), (a, -1), (-a, -1), (-a, -a), (-1, -a), (-1, a), (-a, a), (-a, 1)]
        pts_arr = np.array(pts) * (r / math.hypot(1, a))
        radii = np.hypot(pts_arr[:, 0], pts_arr[:, 1])
        theta = np.arctan2(pts_arr[:, 1], pts_arr[:, 0]) + angle
    else:
        sides = {"hexagon": 6, "square": 4, "triangle": 3}[name]
        k = np.arange(sides)
        radii = np.full(sides, r)
        theta = angle + k * 2 * math.pi / sides
    return np.stack([cx + radii * np.cos(theta), cy + radii * np.sin(theta)], axis=1)


def _make_object(rng, class_idx, cx, cy, r, bg_luma, *, dim: bool) -> SceneObject:
    angle = 0.0 if CLASSES[class_idx] == "circle" else float(rng.uniform(0, 2 * math.pi))
    verts = shape_vertices(class_idx, cx, cy, r, angle)
    if verts is None:
        x0, y0, x1, y1 = cx - r, cy - r, cx + r, cy + r
    else:
        x0, y0 = verts.min(axis=0)
        x1, y1 = verts.max(axis=0)
    x0, y0 = round(float(x0), 2), round(float(y0), 2)
    bbox = (x0, y0, round(float(x1) - x0, 2), round(float(y1) - y0, 2))
    hue, sat = rng.uniform(), rng.uniform(0.55, 1.0)
    if dim:
        val = rng.uniform(0.18, 0.42)
    else:
        val = rng.uniform(0.6, 1.0)
        if abs(_luma(_hsv(hue, sat, val)) - bg_luma) < 50:
            val = rng.uniform(0.15, 0.35)  # a dark object where a bright one would not stand out
    fill = _hsv(hue, sat, val)
    outline = tuple(int(c * 0.45) for c in fill)
    width = max(1, min(4, round(r / 14)))
    return SceneObject(class_idx, float(cx), float(cy), float(r), angle, fill, outline, width, bbox)


def _overlaps(box, placed, gap=3.0) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] + gap and b[0] < x1 + gap and y0 < b[3] + gap and b[1] < y1 + gap for b in placed)


def _sample_background(rng, mode: Mode):
    """(kind, colours, angle, period) for a mode; clean kinds are smooth and mid-bright."""
    angle = float(rng.uniform(0, 2 * math.pi))
    if mode == "dark_small_missed":
        h = rng.uniform()
        return "night", (_hsv(h, rng.uniform(0.2, 0.7), rng.uniform(0.02, 0.07)), _hsv(h + 0.1, 0.5, rng.uniform(0.0, 0.04))), angle, 0.0
    if mode == "texture_false_positives":
        jitter = rng.integers(-12, 13, size=6)
        yellow = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip((246, 206, 24), jitter[:3], strict=True))
        purple = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip((62, 14, 84), jitter[3:], strict=True))
        return "zebra", (yellow, purple), angle, float(rng.uniform(7.0, 12.0))
    kind = str(rng.choice(["linear", "radial", "clouds", "flat"], p=[0.35, 0.2, 0.3, 0.15]))
    h = rng.uniform()
    colors = tuple(_hsv(h + rng.uniform(-0.15, 0.15), rng.uniform(0.05, 0.45), rng.uniform(0.4, 0.78)) for _ in range(9))
    return kind, colors, angle, 0.0


def sample_scene(rng: np.random.Generator, *, mode: Mode, task: SceneTask, crowd: bool = False) -> Scene:
    """Sample one scene's parameters from ``rng`` (the image's own stream).

    Detection scenes hold 1–6 non-overlapping objects of mixed sizes (blur scenes
    favour the confused pair; night scenes favour small objects) and, if
    ``crowd``, a tight group of 6–12 tiny objects of one class annotated by one
    crowd box. Classification scenes hold one large, roughly centred object.
    """
    width, height = (int(v) for v in rng.integers(_MIN_SIDE, _MAX_SIDE + 1, size=2))
    short = min(width, height)
    kind, colors, bg_angle, period = _sample_background(rng, mode)
    dark = mode == "dark_small_missed"
    bg_luma = float(np.mean([_luma(c) for c in colors]))

    def pick_class() -> int:
        if mode == "blur_confusion" and rng.uniform() < 0.6:
            return CONFUSED_PAIR[int(rng.integers(2))]
        return int(rng.integers(len(CLASSES)))

    objects: list[SceneObject] = []
    members: list[SceneObject] = []
    crowd_bbox = None
    if task == "classification":
        r = float(rng.uniform(0.25, 0.42)) * short
        cx = width / 2 + rng.uniform(-0.08, 0.08) * width
        cy = height / 2 + rng.uniform(-0.08, 0.08) * height
        cx, cy = float(np.clip(cx, r + 2, width - r - 2)), float(np.clip(cy, r + 2, height - r - 2))
        objects.append(_make_object(rng, pick_class(), cx, cy, r, bg_luma, dim=dark))
    else:
        placed: list[tuple[float, float, float, float]] = []
        if crowd:
            side = float(rng.uniform(0.2, 0.3)) * short
            gx, gy = rng.uniform(2, width - side - 2), rng.uniform(2, height - side - 2)
            cls = int(rng.integers(len(CLASSES)))
            for _ in range(int(rng.integers(6, 13))):
                r = float(rng.uniform(4.0, 7.0))
                cx, cy = rng.uniform(gx + r, gx + side - r), rng.uniform(gy + r, gy + side - r)
                members.append(_make_object(rng, cls, cx, cy, r, bg_luma, dim=False))
            x0 = min(m.bbox[0] for m in members)
            y0 = min(m.bbox[1] for m in members)
            x1 = max(m.bbox[0] + m.bbox[2] for m in members)
            y1 = max(m.bbox[1] + m.bbox[3] for m in members)
            crowd_bbox = (round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2))
            placed.append((x0, y0, x1, y1))
        r_max = (0.25 if dark else 0.3) * short
        for _ in range(int(rng.integers(1, 7))):
            cls = pick_class()
            for _attempt in range(30):
                r = float(math.exp(rng.uniform(math.log(_R_MIN), math.log(r_max))))
                cx, cy = rng.uniform(r + 2, width - r - 2), rng.uniform(r + 2, height - r - 2)
                box = (cx - r, cy - r, cx + r, cy + r)
                if not _overlaps(box, placed):
                    placed.append(box)
                    objects.append(_make_object(rng, cls, cx, cy, r, bg_luma, dim=dark))
                    break

    blur = 0.0
    if mode == "blur_confusion":
        blur = float(rng.uniform(6.0, 10.0)) * max(width, height) / 512
    elif mode == "clean" and rng.uniform() < 0.15:
        blur = float(rng.uniform(0.6, 1.4)) * max(width, height) / 512
    return Scene(
        width=width,
        height=height,
        mode=mode,
        background=kind,
        colors=colors,
        bg_angle=bg_angle,
        bg_period=period,
        gain=float(rng.uniform(0.85, 1.12)),
        light_angle=float(rng.uniform(0, 2 * math.pi)),
        light_strength=float(rng.uniform(0.0, 0.25)),
        blur_radius=blur,
        target_luma=float(rng.uniform(12.0, 32.0)) if dark else 0.0,
        haze=float(rng.uniform(0.55, 0.7)) if mode == "blur_confusion" else 0.0,
        haze_color=_hsv(rng.uniform(0.5, 0.7), rng.uniform(0.0, 0.06), rng.uniform(0.88, 0.95)),
        noise_sigma=float(rng.uniform(2.0, 5.0)) if dark else 0.0,
        noise_seed=int(rng.integers(2**63)),
        objects=tuple(objects),
        crowd=tuple(members),
        crowd_bbox=crowd_bbox,
    )


def _ramp(h: int, w: int, angle: float) -> np.ndarray:
    """(h, w) float32 in [-1, 1]: position along direction ``angle``."""
    y = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    t = x * np.float32(math.cos(angle)) + y * np.float32(math.sin(angle))
    return t / np.float32(max(abs(math.cos(angle)) + abs(math.sin(angle)), 1e-6))


def _background(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float32 background in 0..255."""
    from PIL import Image

    h, w = scene.height, scene.width
    c = np.asarray(scene.colors, dtype=np.float32)
    if scene.background == "zebra":
        y = np.arange(h, dtype=np.float32)[:, None]
        x = np.arange(w, dtype=np.float32)[None, :]
        ca, sa = np.float32(math.cos(scene.bg_angle)), np.float32(math.sin(scene.bg_angle))
        u = x * ca + y * sa
        v = y * ca - x * sa
        u = u + np.float32(2.2 * scene.bg_period) * np.sin(v * np.float32(2 * math.pi / (6 * scene.bg_period)))
        stripe = (u / np.float32(scene.bg_period)) % np.float32(1.0) < np.float32(0.5)
        return np.where(stripe[..., None], c[0], c[1])
    if scene.background == "clouds":
        grid = np.asarray(scene.colors, dtype=np.uint8)[rng.permutation(9)].reshape(3, 3, 3)
        small = Image.fromarray(grid, "RGB").resize((w, h), Image.Resampling.BICUBIC)
        return np.asarray(small, dtype=np.float32)
    if scene.background == "flat":
        return np.broadcast_to(c[0], (h, w, 3)).astype(np.float32)
    if scene.background == "radial":
        y = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
        x = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
        t = np.clip(np.sqrt(x * x + y * y) / np.float32(1.414), 0, 1)
    else:  # linear and night: a two-colour gradient
        t = (_ramp(h, w, scene.bg_angle) + 1) / 2
    return c[0] * (1 - t[..., None]) + c[1] * t[..., None]


def render_scene(scene: Scene):
    """Draw ``scene``; returns a PIL RGB image of size (width, height)."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(scene.noise_seed)
    bg = _background(scene, rng)
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for obj in (*scene.crowd, *scene.objects):
        verts = shape_vertices(obj.class_idx, obj.cx, obj.cy, obj.radius, obj.angle)
        if verts is None:
            r = obj.radius
            box = [obj.cx - r, obj.cy - r, obj.cx + r, obj.cy + r]
            draw.ellipse(box, fill=obj.fill, outline=obj.outline, width=obj.outline_width)
        else:
            pts = [(float(x), float(y)) for x, y in verts]
            draw.polygon(pts, fill=obj.fill, outline=obj.outline, width=obj.outline_width)

    arr = np.asarray(img, dtype=np.float32)
    light = np.float32(scene.gain) * (1 + np.float32(scene.light_strength) * _ramp(scene.height, scene.width, scene.light_angle))
    arr = arr * light[..., None]
    if scene.noise_sigma > 0:
        arr = arr + rng.normal(0.0, scene.noise_sigma, size=arr.shape).astype(np.float32)
    if scene.target_luma > 0:
        mean = float((arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean())
        if mean > scene.target_luma:
            arr = arr * np.float32(scene.target_luma / mean)
    if scene.haze > 0:
        arr = arr * np.float32(1 - scene.haze) + np.asarray(scene.haze_color, dtype=np.float32) * np.float32(scene.haze)
    img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")
    if scene.blur_radius > 0:
        img = img.filter(ImageFilter.GaussianBlur(scene.blur_radius))
    return img


def encode_jpeg(img) -> bytes:
    """JPEG bytes at :data:`JPEG_QUALITY`, no metadata (deterministic for equal pixels)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()
