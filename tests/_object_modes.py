"""Generated detection data with a planted object-level failure mode.

Images (160×120) have varied backgrounds (flat, gradient, noise, stripes, in
random colours) and several objects each, of four shape classes in random
colours, each either small (6–10 px) or large (18–36 px). The synthetic detector
finds every object with probability ``p_hit`` (a tight box, a high score) and
adds a few low-scored false positives, except for the planted mode: **small
objects of class ``planted_class`` are never found**, on any background. So the
images holding a planted object look like every other image, and only the
objects say what fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle", "diamond")
W, H = 160, 120


def _background(rng) -> Image.Image:
    style = rng.integers(4)
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    if style == 0:
        arr = np.broadcast_to(c0, (H, W, 3)).astype(np.float64)
    elif style == 1:
        t = np.linspace(0, 1, W)[None, :, None]
        arr = c0 * (1 - t) + c1 * t + np.zeros((H, 1, 1))
    elif style == 2:
        arr = c0 + rng.normal(0, 40, (H, W, 3))
    else:
        stripes = ((np.arange(W) // rng.integers(4, 16)) % 2)[None, :, None]
        arr = np.where(stripes, c0, c1) + np.zeros((H, 1, 1))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _draw(draw, cls: int, x0, y0, s, colour) -> None:
    x1, y1 = x0 + s, y0 + s
    if cls == 0:
        draw.ellipse([x0, y0, x1, y1], fill=colour)
    elif cls == 1:
        draw.rectangle([x0, y0, x1, y1], fill=colour)
    elif cls == 2:
        draw.polygon([(x0 + s / 2, y0), (x1, y1), (x0, y1)], fill=colour)
    else:
        draw.polygon([(x0 + s / 2, y0), (x1, y0 + s / 2), (x0 + s / 2, y1), (x0, y0 + s / 2)], fill=colour)


def generate(out: Path, *, n: int, seed: int, planted_class: int = 2, objects_per_image: tuple[int, int] = (4, 7),
             p_small: float = 0.35, p_hit: float = 0.9) -> dict:
    """Write ``images/``, ``annotations.json`` and ``predictions.json`` under ``out``.

    Returns:
        ``{"planted_ann_ids": [...], "planted_image_ids": [...]}``: the GT objects of the
        mode (small, class ``planted_class``) and the images holding one.
    """
    rng = np.random.default_rng(seed)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, anns, preds, planted, planted_images = [], [], [], [], set()
    for i in range(n):
        img = _background(rng)
        draw = ImageDraw.Draw(img)
        k = int(rng.integers(objects_per_image[0], objects_per_image[1] + 1))
        for _ in range(k):
            cls = int(rng.integers(len(CLASSES)))
            small = bool(rng.random() < p_small)
            s = int(rng.integers(6, 11) if small else rng.integers(18, 37))
            x0, y0 = int(rng.integers(0, W - s)), int(rng.integers(0, H - s))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            _draw(draw, cls, x0, y0, s, colour)
            ann_id = len(anns) + 1
            anns.append({"id": ann_id, "image_id": i + 1, "category_id": cls + 1,
                         "bbox": [x0, y0, s + 1, s + 1], "area": float((s + 1) ** 2), "iscrowd": 0})
            if small and cls == planted_class:
                planted.append(ann_id)
                planted_images.add(i + 1)
                continue
            if rng.random() < p_hit:
                j = rng.normal(0, 0.04 * s, 4)
                preds.append({"image_id": i + 1, "category_id": cls + 1, "score": float(rng.uniform(0.6, 1.0)),
                              "bbox": [x0 + j[0], y0 + j[1], s + 1 + j[2], s + 1 + j[3]]})
        for _ in range(int(rng.poisson(0.6))):  # low-scored clutter
            s = int(rng.integers(8, 30))
            preds.append({"image_id": i + 1, "category_id": int(rng.integers(len(CLASSES))) + 1,
                          "score": float(rng.uniform(0.05, 0.7)),
                          "bbox": [float(rng.integers(0, W - s)), float(rng.integers(0, H - s)), s, s]})
        name = f"img{i:04d}.png"
        img.save(out / "images" / name)
        images.append({"id": i + 1, "file_name": name, "width": W, "height": H})
    coco = {"images": images, "annotations": anns,
            "categories": [{"id": c + 1, "name": name} for c, name in enumerate(CLASSES)]}
    (out / "annotations.json").write_text(json.dumps(coco))
    (out / "predictions.json").write_text(json.dumps(preds))
    return {"planted_ann_ids": planted, "planted_image_ids": sorted(planted_images)}


def precision_recall(selected, planted) -> tuple[float, float]:
    sel, pl = set(selected), set(planted)
    hit = len(sel & pl)
    return (hit / len(sel) if sel else 0.0), (hit / len(pl) if pl else 0.0)


def build_and_measure(base: Path, *, n: int, seed: int, model: str = "vecexplore-tiny-vit") -> dict:
    """Generate, build (``--level both``, random weights) and measure how the planted mode is isolated.

    Returns:
        ``object``: precision, recall and rank of the object slice (GT objects) that best
        isolates the planted objects (best F1 among all ranked object slices);
        ``image``: precision and recall, on images holding a planted object, of the best
        image-level slice (clusters.parquet, best F1), and its rank.
    """
    import pandas as pd

    from vecexplore.builder import BuildConfig, build_run
    from vecexplore.embed.pipeline import EmbedConfig
    from vecexplore.io.source import DatasetSource
    from vecexplore.mapping import MapConfig

    data = Path(base) / f"data-{n}-{seed}"
    truth = generate(data, n=n, seed=seed)
    result = build_run(BuildConfig(
        source=DatasetSource(gt=data / "annotations.json", pred=data / "predictions.json", images=data / "images"),
        out=Path(base) / f"run-{n}-{seed}",
        embed=EmbedConfig(model=model, weights="random", device="cpu", num_workers=0),
        map=MapConfig(seed=seed), cache_dir=Path(base) / "cache", scan_workers=0, level="both"))
    objects = pd.read_parquet(result.out / "objects.parquet")
    slices = pd.read_parquet(result.out / "object_slices.parquet")
    images = pd.read_parquet(result.out / "images.parquet")
    clusters = pd.read_parquet(result.out / "clusters.parquet")
    ann_ids = objects["object_id"].to_numpy()

    def best(rows, to_units, planted):
        top = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "rank": None}
        for row in rows:
            p, r = precision_recall(to_units(row), planted)
            f1 = 2 * p * r / (p + r) if p + r else 0.0
            if f1 > top["f1"]:
                top = {"precision": p, "recall": r, "f1": f1, "rank": int(row["rank"])}
        return top

    gt_slices = [row for row in slices.to_dict("records") if row["kind"] == "gt"]
    obj = best(gt_slices, lambda row: ann_ids[np.asarray(row["object_idx"], np.int64)].tolist(),
               truth["planted_ann_ids"])
    obj["n_slices"] = len(slices)
    image_ids = images["image_id"].to_numpy()
    labels = images["cluster"].to_numpy()

    def slice_images(row):
        return image_ids[np.isin(labels, list(row["members"]))].tolist()

    img = best(clusters.to_dict("records"), slice_images, truth["planted_image_ids"])
    img["n_slices"] = len(clusters)
    return {"object": obj, "image": img, "n_images": n, "n_objects": int(result.n_objects_mapped),
            "n_planted": len(truth["planted_ann_ids"]), "n_planted_images": len(truth["planted_image_ids"]),
            "timings": result.timings}
