"""Synthetic evaluated datasets and run tables for the quality / recommendation tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vecexplore.analysis.quality import RunTables
from vecexplore.eval.evaluate import evaluate
from vecexplore.mapping.slices import slice_table
from vecexplore.properties import table_properties
from vecexplore.store.tables import object_table
from vecexplore.types import Boxes, Categories, Dataset, ImageTable, Labels

PIXEL = ("brightness", "contrast", "sharpness", "colorfulness")


def detection_dataset(seed: int = 0, *, n_images: int = 80, k: int = 3, p_find=None, p_flip: float = 0.1,
                      fp_rate: float = 0.5, crowd: float = 0.03, max_objects: int = 5,
                      min_objects: int = 0) -> Dataset:
    """Random GT boxes; each found (jittered box, own class, high score) with probability
    ``p_find[i]`` (default 0.75), taken for another class with ``p_flip``; background FPs
    (low scores) at ``fp_rate`` per image; a few duplicates and crowd regions."""
    rng = np.random.default_rng(seed)
    W = rng.integers(150, 260, n_images)
    H = rng.integers(150, 260, n_images)
    p_find = np.full(n_images, 0.75) if p_find is None else np.asarray(p_find, float)
    g_img, g_cls, g_box, g_crowd, p_img, p_cls, p_box, p_score = ([] for _ in range(8))
    for i in range(n_images):
        for _ in range(rng.integers(min_objects, max_objects + 1)):
            w, h = rng.uniform(8, 70, 2)
            x, y = rng.uniform(0, W[i] - w), rng.uniform(0, H[i] - h)
            c = int(rng.integers(k))
            g_img.append(i), g_cls.append(c), g_box.append([x, y, w, h]), g_crowd.append(rng.random() < crowd)
            r = rng.random()
            if r < p_find[i] + p_flip:
                cls = c if r < p_find[i] else int((c + 1 + rng.integers(k - 1)) % k)
                jit = rng.normal(0, 1.0, 4)
                box = [x + jit[0], y + jit[1], max(w + jit[2], 2), max(h + jit[3], 2)]
                p_img.append(i), p_cls.append(cls), p_box.append(box), p_score.append(rng.uniform(0.5, 1))
                if rng.random() < 0.05:  # duplicate
                    p_img.append(i), p_cls.append(cls), p_box.append(box), p_score.append(rng.uniform(0.3, 0.6))
        for _ in range(rng.poisson(fp_rate)):
            w, h = rng.uniform(8, 40, 2)
            p_img.append(i), p_cls.append(int(rng.integers(k))), p_score.append(rng.uniform(0.05, 0.7))
            p_box.append([rng.uniform(0, W[i] - w), rng.uniform(0, H[i] - h), w, h])
    gt = Boxes(np.array(g_img, np.int64), np.array(g_cls, np.int64), np.array(g_box).reshape(-1, 4),
               np.arange(1, len(g_img) + 1), iscrowd=np.array(g_crowd, bool))
    pred = Boxes(np.array(p_img, np.int64), np.array(p_cls, np.int64), np.array(p_box).reshape(-1, 4),
                 np.arange(1, len(p_img) + 1), score=np.array(p_score))
    images = ImageTable(np.arange(1, n_images + 1), [f"{i}.jpg" for i in range(n_images)], W, H)
    return Dataset("detection", images, Categories.from_names([f"c{j}" for j in range(k)]), gt, pred)


def classification_dataset(seed: int = 0, *, n_images: int = 200, k: int = 4, p_correct=None) -> Dataset:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, k, n_images)
    p_correct = np.full(n_images, 0.8) if p_correct is None else np.asarray(p_correct, float)
    ok = rng.random(n_images) < p_correct
    pred = np.where(ok, label, (label + 1 + rng.integers(0, k - 1, n_images)) % k)
    images = ImageTable(np.arange(n_images), [f"{i}.jpg" for i in range(n_images)], np.full(n_images, 100),
                        np.full(n_images, 80))
    return Dataset("classification", images, Categories.from_names([f"k{j}" for j in range(k)]),
                   Labels(np.arange(n_images), label),
                   Labels(np.arange(n_images), pred, score=rng.uniform(0.3, 1, n_images)))


def run_tables(ds: Dataset, ev=None, *, props: dict | None = None, labels=None, seed: int = 0):
    """(RunTables, ev, clusters) in the run-store layout for a synthetic dataset.

    ``props``: pixel properties per image (default uniform random); ``labels``: cluster
    per image (default all noise)."""
    rng = np.random.default_rng(seed)
    ev = evaluate(ds) if ev is None else ev
    n = ds.num_images
    images = ds.images.to_pandas()
    for c in ev.per_image.columns:
        if c != "image_idx":
            images[c] = ev.per_image[c].to_numpy()
    props = props or {}
    for p in PIXEL:
        images[p] = props.get(p, rng.uniform(0, 1, n))
    n_objects = np.zeros(n, np.int64)
    if ds.task == "detection":
        np.add.at(n_objects, ds.gt.image_idx[~ds.gt.iscrowd], 1)
    for name, values in table_properties(ds.images.width, ds.images.height, n_objects).items():
        if name not in ("width", "height"):
            images[name] = values
    labels = np.full(n, -1) if labels is None else np.asarray(labels)
    images["cluster"] = labels
    images["readable"] = True
    objects = object_table(ds, ev.objects) if ds.task == "detection" else None
    clusters = slice_table(ev.per_image, labels, task=ds.task, objects=ev.objects if objects is not None else None,
                           class_names=list(ds.categories.names))
    return RunTables(images, objects), ev, clusters


def objects_frame(ev) -> pd.DataFrame:
    """The evaluation's objects table with plain string columns."""
    obj = ev.objects.copy()
    obj["kind"], obj["outcome"] = obj["kind"].astype(str), obj["outcome"].astype(str)
    return obj
