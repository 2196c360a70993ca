"""Are two runs on the same data? The checks ``vecexplore compare`` makes before anything else.

Two runs are comparable when they have the same task, the same categories (ids
and names, in the same order, so class indices mean the same), the same images
(by ``file_name``, in any order) and the same ground truth on every image:
detection, the same multiset of ``(class, x, y, w, h, iscrowd)`` GT boxes;
classification, the same label. Each refusal is a :class:`CompareError` that
says how they differ and names the first image that does.
"""

from __future__ import annotations

import numpy as np

from vecexplore.errors import CompareError
from vecexplore.store import Run


def align_images(a: Run, b: Run) -> np.ndarray:
    """(N,) int64: for each image of ``a`` (image_idx order), its row in ``b``.

    Raises:
        CompareError: the runs differ in task, categories, images or ground truth.
    """
    name_a, name_b = str(a.path), str(b.path)
    if a.task != b.task:
        raise CompareError(f"{name_a} is a {a.task} run and {name_b} a {b.task} run; compare needs one task")
    cats_a = [(int(c["id"]), str(c["name"])) for c in a.categories]
    cats_b = [(int(c["id"]), str(c["name"])) for c in b.categories]
    if cats_a != cats_b:
        only_b = [n for i, n in cats_b if (i, n) not in cats_a]
        only_a = [n for i, n in cats_a if (i, n) not in cats_b]
        what = (f"{name_b} has {_count(len(only_b), 'class', 'classes')} {name_a} lacks, first: {only_b[0]}" if only_b
                else f"{name_a} has {_count(len(only_a), 'class', 'classes')} {name_b} lacks, first: {only_a[0]}"
                if only_a else "the same classes in another order")
        raise CompareError(f"the runs' categories differ: {what}")
    files_a = a.images["file_name"].astype(str).to_numpy()
    files_b = b.images["file_name"].astype(str).to_numpy()
    for run, files in ((a, files_a), (b, files_b)):
        uniq, counts = np.unique(files, return_counts=True)
        if (counts > 1).any():
            raise CompareError(f"{run.path}: file name {uniq[counts > 1][0]} names several images; "
                               "compare matches images by file name")
    set_a, set_b = set(files_a.tolist()), set(files_b.tolist())
    for run_x, run_y, y, files in ((name_b, name_a, set_a, files_b), (name_a, name_b, set_b, files_a)):
        extra = [f for f in files.tolist() if f not in y]
        if extra:
            raise CompareError(f"{run_x} has {_count(len(extra), 'image', 'images')} {run_y} lacks, first: {extra[0]}")
    row_of = {f: i for i, f in enumerate(files_b.tolist())}
    order = np.array([row_of[f] for f in files_a.tolist()], np.int64)
    _check_gt(a, b, order, files_a)
    return order


def _check_gt(a: Run, b: Run, order: np.ndarray, files_a: np.ndarray) -> None:
    n = len(order)
    if a.task == "classification":
        ga = a.images["gt_class_idx"].to_numpy()
        gb = b.images["gt_class_idx"].to_numpy()[order]
        bad = np.flatnonzero(ga != gb)
        if bad.size:
            names = [c["name"] for c in a.categories]

            def label(v):
                return names[v] if v >= 0 else "none"

            i = int(bad[0])
            raise CompareError(f"GT differs on {_count(bad.size, 'image', 'images')}, first: {files_a[i]} "
                               f"(label {label(ga[i])} in {a.path}, {label(gb[i])} in {b.path})")
        return
    inverse = np.empty(n, np.int64)
    inverse[order] = np.arange(n)
    ka = _gt_keys(a.objects, np.arange(n), n)
    kb = _gt_keys(b.objects, inverse, n)
    bad = [i for i in range(n) if ka[i] != kb[i]]
    if bad:
        i = bad[0]
        how = (f"{len(ka[i])} GT boxes in {a.path}, {len(kb[i])} in {b.path}" if len(ka[i]) != len(kb[i])
               else "boxes or classes differ")
        raise CompareError(f"GT differs on {_count(len(bad), 'image', 'images')}, first: {files_a[i]} ({how})")


def _gt_keys(objects, to_a: np.ndarray, n: int) -> list[list[tuple]]:
    """Per image (in A's order) the sorted GT boxes ``(class_idx, x, y, w, h, iscrowd)``."""
    gt = objects[objects["kind"] == "gt"]
    keys: list[list[tuple]] = [[] for _ in range(n)]
    cols = [gt[c].to_numpy() for c in ("image_idx", "class_idx", "x", "y", "w", "h", "iscrowd")]
    for img, cls, x, y, w, h, crowd in zip(*cols, strict=True):
        keys[int(to_a[img])].append((int(cls), float(x), float(y), float(w), float(h), bool(crowd)))
    for k in keys:
        k.sort()
    return keys


def _count(k: int, one: str, many: str) -> str:
    return f"{k} {one if k == 1 else many}"
