"""Evaluated datasets with planted label errors (independent of vecexplore.demo).

:func:`detection_with_errors` draws true objects, a detector that finds most
of them (score 0.5 + 0.49·Beta(5, 2), box jitter), confuses some with another class at
Beta(2, 4), misses some, and fires on background at low-to-medium scores; then
corrupts the ground truth: ``swap`` of the GT boxes get another class, and
``delete`` of the *well-detected* objects (a prediction of its class with IoU
≥ 0.7 and score ≥ 0.8) lose their GT. It returns the dataset and the planted
sets: annotation ids of swapped GT, prediction ids on deleted objects.

:func:`classification_with_errors` draws labels and per-class probabilities of
a decent classifier (Dirichlet noise around the true class), then swaps
``swap`` of the labels.
"""

from __future__ import annotations

import numpy as np

from vecexplore.types import Boxes, Categories, Dataset, ImageTable, Labels


def _put(imgs, classes, boxes, scores, image, cls, box, score) -> None:
    imgs.append(image)
    classes.append(cls)
    boxes.append(box)
    scores.append(score)


def detection_with_errors(*, n_images: int, seed: int, n_classes: int = 5, swap: float = 0.05,
                          delete: float = 0.05):
    rng = np.random.default_rng(seed)
    size = 640.0
    g_img, g_cls, g_box = [], [], []
    for i in range(n_images):
        for _ in range(int(rng.integers(1, 6))):
            w, h = rng.uniform(30, 200, 2)
            x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
            g_img.append(i)
            g_cls.append(int(rng.integers(n_classes)))
            g_box.append([x, y, w, h])
    g_img, g_cls, g_box = np.array(g_img), np.array(g_cls), np.array(g_box)
    m = len(g_img)
    p_img, p_cls, p_box, p_score = [], [], [], []
    for j in range(m):
        u = rng.random()
        jitter = g_box[j] + rng.normal(0, 0.04, 4) * np.r_[g_box[j][2:], g_box[j][2:]]
        if u < 0.80:  # found
            _put(p_img, p_cls, p_box, p_score, g_img[j], g_cls[j], jitter, 0.5 + 0.49 * rng.beta(5, 2))
        elif u < 0.88:  # confused with another class, less sure
            other = int((g_cls[j] + rng.integers(1, n_classes)) % n_classes)
            _put(p_img, p_cls, p_box, p_score, g_img[j], other, jitter, rng.beta(2, 4))
        # else missed
    for i in range(n_images):  # background false positives
        for _ in range(int(rng.poisson(0.6))):
            w, h = rng.uniform(20, 120, 2)
            box = [rng.uniform(0, size - w), rng.uniform(0, size - h), w, h]
            _put(p_img, p_cls, p_box, p_score, i, int(rng.integers(n_classes)), box, rng.beta(2, 5))
    p_img, p_cls, p_box, p_score = np.array(p_img), np.array(p_cls), np.array(p_box), np.array(p_score)
    p_box[:, 2:] = np.maximum(p_box[:, 2:], 1.0)
    gt_ids = np.arange(1, m + 1)
    pred_ids = np.arange(1, len(p_img) + 1)

    # Plant: swapped classes.
    n_swap = round(swap * m)
    swapped = rng.choice(m, n_swap, replace=False)
    true_cls = g_cls.copy()
    g_cls = g_cls.copy()
    g_cls[swapped] = (g_cls[swapped] + rng.integers(1, n_classes, n_swap)) % n_classes
    # Plant: deleted GT of well-detected objects (not among the swapped).
    from vecexplore.eval.iou import box_iou

    well = []
    for j in np.setdiff1d(np.arange(m), swapped):
        on = np.flatnonzero((p_img == g_img[j]) & (p_cls == true_cls[j]) & (p_score >= 0.8))
        if len(on):
            iou = box_iou(p_box[on], g_box[[j]])[:, 0]
            if iou.max() >= 0.7:
                well.append((j, int(on[np.argmax(iou)])))
    n_del = round(delete * m)
    pick = rng.choice(len(well), min(n_del, len(well)), replace=False)
    deleted_gt = np.array([well[q][0] for q in pick], np.int64)
    deleted_pred_ids = {int(pred_ids[well[q][1]]) for q in pick}
    keep = np.setdiff1d(np.arange(m), deleted_gt)

    images = ImageTable(image_id=np.arange(100, 100 + n_images), file_name=np.array(
        [f"img{i}.jpg" for i in range(n_images)], object), width=np.full(n_images, 640), height=np.full(n_images, 640))
    gt = Boxes(image_idx=g_img[keep], class_idx=g_cls[keep], xywh=g_box[keep], object_id=gt_ids[keep],
               iscrowd=np.zeros(len(keep), bool))
    pred = Boxes(image_idx=p_img, class_idx=p_cls, xywh=p_box, object_id=pred_ids, score=p_score,
                 iscrowd=np.zeros(len(p_img), bool))
    ds = Dataset(task="detection", images=images, categories=Categories.from_names(
        [f"c{k}" for k in range(n_classes)]), gt=gt, pred=pred)
    return ds, {"swapped": {int(gt_ids[j]) for j in swapped}, "deleted": deleted_pred_ids}


def classification_with_errors(*, n_images: int, seed: int, n_classes: int = 6, swap: float = 0.05):
    rng = np.random.default_rng(seed)
    true = rng.integers(n_classes, size=n_images)
    alpha = np.ones((n_images, n_classes))
    alpha[np.arange(n_images), true] = 12.0
    hard = rng.random(n_images) < 0.15  # a share of genuinely ambiguous images: the model hesitates
    alpha[hard] = 1.0
    alpha[hard, true[hard]] = 3.0
    probs = np.stack([rng.dirichlet(a) for a in alpha])
    label = true.copy()
    n_swap = round(swap * n_images)
    swapped = rng.choice(n_images, n_swap, replace=False)
    label[swapped] = (label[swapped] + rng.integers(1, n_classes, n_swap)) % n_classes
    idx = np.arange(n_images)
    images = ImageTable(image_id=np.arange(n_images), file_name=np.array([f"{i}.jpg" for i in idx], object),
                        width=np.full(n_images, 32), height=np.full(n_images, 32))
    pred_cls = np.argmax(probs, axis=1)
    ds = Dataset(task="classification", images=images,
                 categories=Categories.from_names([f"k{c}" for c in range(n_classes)]),
                 gt=Labels(image_idx=idx, class_idx=label),
                 pred=Labels(image_idx=idx, class_idx=pred_cls, score=probs[idx, pred_cls], scores=probs))
    return ds, {"swapped": {int(i) for i in swapped}}
