"""Bring labels fixed in a labeling tool back into the original COCO ground truth.

Label Studio and CVAT export COCO with their own numbering: images from 0 (or 1),
categories in their own order, and file names that carry the tool's view of the path
(Label Studio: the local-files path as it resolved it, e.g. ``../data/images/0001.jpg``;
CVAT: the name in the task). :func:`merge_coco` matches each relabeled image to the
original whose ``file_name`` ends in the most path components the same (at least the
base name; ``../data/images/0001.jpg`` matches ``images/0001.jpg`` rather than
``other/0001.jpg``; a tie is an error), and categories by name; it
then replaces those images' annotations, and keeps every other image, annotation,
category and field of the original as it was. New annotations get ids above the
original's largest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from vecexplore.errors import InputError


@dataclass(frozen=True)
class MergeReport:
    """Images whose annotations were replaced, and the annotation counts on them before and after."""

    n_images: int
    n_before: int
    n_after: int


def _records(doc: Any, key: str, path) -> list[dict]:
    if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
        raise InputError(f"not a COCO file: no '{key}' list", path=path)
    for i, rec in enumerate(doc[key]):
        if not isinstance(rec, dict):
            raise InputError("must be an object", path=path, record=f"{key}[{i}]")
    return doc[key]


def _parts(name: str) -> tuple[str, ...]:
    return tuple(p for p in PurePosixPath(str(name).replace("\\", "/")).parts if p not in (".", "/"))


def _common_tail(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def match_images(gt_images: list[dict], names: list[str], *, path=None) -> list[int]:
    """For each relabeled file name, the position in ``gt_images`` of its original: the one whose
    ``file_name`` shares the most trailing path components with it (at least the base name).

    Raises:
        InputError: a name matches no original, or two originals equally well.
    """
    by_last: dict[str, list[tuple[tuple[str, ...], int]]] = {}
    for j, im in enumerate(gt_images):
        parts = _parts(im.get("file_name", ""))
        if parts:
            by_last.setdefault(parts[-1], []).append((parts, j))
    out = []
    for i, name in enumerate(names):
        parts = _parts(name)
        found = [(_common_tail(p, parts), j) for p, j in by_last.get(parts[-1] if parts else "", [])]
        if not found:
            raise InputError(f"image {name!r} is not an image of the original ground truth", path=path,
                             record=f"images[{i}]")
        found.sort(reverse=True)
        if len(found) > 1 and found[0][0] == found[1][0]:
            raise InputError(f"image {name!r} matches several original images equally well", path=path,
                             record=f"images[{i}]")
        out.append(found[0][1])
    return out


def merge_coco(gt: dict, relabeled: dict, *, gt_path=None, relabeled_path=None) -> tuple[dict, MergeReport]:
    """The original ``gt`` with the annotations of the images in ``relabeled`` replaced by
    ``relabeled``'s (see the module docstring). Neither input is modified.

    Raises:
        InputError: a malformed record, an image or category of ``relabeled`` that the
            original lacks, or an original image relabeled twice; naming the file and record.
    """
    gt_images = _records(gt, "images", gt_path)
    gt_anns = _records(gt, "annotations", gt_path)
    gt_cats = _records(gt, "categories", gt_path)
    images = _records(relabeled, "images", relabeled_path)
    anns = _records(relabeled, "annotations", relabeled_path)
    cats = _records(relabeled, "categories", relabeled_path)
    cat_by_name = {str(c.get("name")): c.get("id") for c in gt_cats}
    cat_map = {}
    for i, c in enumerate(cats):
        if str(c.get("name")) not in cat_by_name:
            raise InputError(f"category {c.get('name')!r} is not a category of the original ground truth "
                             f"({', '.join(sorted(cat_by_name))})", path=relabeled_path, record=f"categories[{i}]")
        cat_map[c.get("id")] = cat_by_name[str(c.get("name"))]
    pos = match_images(gt_images, [str(im.get("file_name", "")) for im in images], path=relabeled_path)
    image_map, seen = {}, {}
    for i, (im, j) in enumerate(zip(images, pos, strict=True)):
        if j in seen:
            raise InputError(f"images[{seen[j]}] and images[{i}] are both the original image "
                             f"{gt_images[j].get('file_name')!r}", path=relabeled_path, record=f"images[{i}]")
        seen[j] = i
        image_map[im.get("id")] = gt_images[j]["id"]
    replaced = set(image_map.values())
    next_id = max((int(a["id"]) for a in gt_anns if isinstance(a.get("id"), int)), default=0) + 1
    new = []
    for i, a in enumerate(anns):
        where = f"annotations[{i}]"
        if a.get("image_id") not in image_map:
            raise InputError(f"image_id {a.get('image_id')!r} is not in its 'images'", path=relabeled_path, record=where)
        if a.get("category_id") not in cat_map:
            raise InputError(f"category_id {a.get('category_id')!r} is not in its 'categories'", path=relabeled_path,
                             record=where)
        box = a.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            raise InputError(f"bbox must be [x, y, w, h], got {box!r}", path=relabeled_path, record=where)
        rec = {"id": next_id, "image_id": image_map[a["image_id"]], "category_id": cat_map[a["category_id"]],
               "bbox": [float(v) for v in box], "area": float(a.get("area") or box[2] * box[3]),
               "iscrowd": int(bool(a.get("iscrowd", 0)))}
        if a.get("segmentation"):
            rec["segmentation"] = a["segmentation"]
        new.append(rec)
        next_id += 1
    kept = [a for a in gt_anns if a.get("image_id") not in replaced]
    out = {**gt, "annotations": kept + new}
    return out, MergeReport(len(replaced), len(gt_anns) - len(kept), len(new))


def read_coco(path) -> dict:
    """A COCO file, or the one COCO JSON inside a tool's export zip (Label Studio's
    ``result.json``, CVAT's ``annotations/instances_default.json``)."""
    import json
    import zipfile

    from vecexplore.io._read import read_json, require_file

    path = require_file(path)
    if not zipfile.is_zipfile(path):
        return read_json(path)
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.endswith(".json") and not n.startswith("__MACOSX")]
        if len(names) != 1:
            raise InputError(f"expected one COCO .json in the zip, found {len(names)}: {names[:5]}", path=path)
        try:
            return json.loads(z.read(names[0]))
        except (ValueError, zipfile.BadZipFile) as exc:
            raise InputError(f"{names[0]}: not valid JSON ({exc})", path=path) from None


__all__ = ["MergeReport", "match_images", "merge_coco", "read_coco"]
