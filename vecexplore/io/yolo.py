"""YOLO / Ultralytics detection: ``labels/*.txt`` ground truth, prediction txt files,
class names from ``data.yaml``; and :func:`write_yolo`.

Layout read by :func:`load_yolo`:

* images: every image file under the images folder (recursive, sorted by relative
  POSIX path); ``image_id`` = 0..N-1 in that order, ``file_name`` = relative path.
* ground truth: for image ``sub/a.jpg``, ``GT_DIR/sub/a.txt`` (or ``GT_DIR/a.txt``
  for a flat folder), lines ``class cx cy w h`` normalised to [0, 1]; segment lines
  ``class x1 y1 x2 y2 …`` (Ultralytics segmentation labels) become their bounding
  box and, when every object of the dataset is a segment, its mask
  (``Boxes.rle``, see :mod:`vecexplore.io.masks`). Without ``GT_DIR``, Ultralytics' convention: the last ``images`` folder of
  the image's path replaced by ``labels``. An image without a label file has no GT.
* predictions: the same naming under the predictions folder, lines
  ``class cx cy w h conf`` (Ultralytics ``save_txt=True, save_conf=True``), or
  ``class x1 y1 … xk yk conf`` from a segmentation model (a mask, as for GT).
* ``class`` is a key of the names mapping: it becomes the category id.
* image sizes come from the headers (EXIF orientation applied); an unreadable
  header gives size 0 and that image's boxes stay in normalised units (scale 1;
  IoU is scale-invariant within an image), with one warning naming the images.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from vecexplore.errors import ConfigError, InputError
from vecexplore.io._common import LoadReport, clip_to_images, fits_int64, out_of_range
from vecexplore.io._read import image_sizes, read_text, require_dir, warn_unreadable
from vecexplore.io.masks import mask_outline
from vecexplore.io.paths import check_image_paths, list_images, resolve_image_path
from vecexplore.types import Boxes, Categories, Dataset, ImageTable

log = logging.getLogger(__name__)

_IGNORED_LABEL_FILES = frozenset({"classes"})  # LabelImg writes labels/classes.txt


def load_yolo(
    *,
    images: str | Path,
    names: Mapping[int, str],
    gt: str | Path | None = None,
    pred: str | Path | None = None,
    clip: bool = False,
    allow_outside_root: bool = False,
    progress: bool = False,
    report: LoadReport | None = None,
) -> Dataset:
    """Read a YOLO dataset and (optionally) a folder of YOLO predictions.

    Args:
        images: the images folder (scanned recursively).
        names: ``{class id: name}`` (see :func:`vecexplore.io._read.read_names`).
        gt: the labels folder; None = Ultralytics' ``images/`` → ``labels/`` rule.
        pred: the predictions folder (6 fields per line); None = no predictions.
        clip: clip boxes crossing the image border (opt-in; default: as given).
        allow_outside_root: accept images reached through symlinks that point out
            of ``images`` (refused by default: :class:`OutsideRootError`).

    Raises:
        InputError: no images; a malformed line, an unknown class (file and line
            named); a prediction file that matches no image.
    """
    root = require_dir(images, what="images folder")
    rel = list_images(root)
    if not rel:
        raise InputError("no images found (empty dataset)", path=root)
    check_image_paths(rel, root, allow_outside_root=allow_outside_root, report=report)
    gt_files = _match(rel, root, gt, what="labels", strict=False, report=report)
    pred_files = [None] * len(rel) if pred is None else _match(rel, root, pred, what="predictions", strict=True, report=report)
    width, height, unreadable = image_sizes([root / r for r in rel], progress=progress)
    bad = [rel[k] for k in unreadable]
    warn_unreadable(bad, root=root)
    if report is not None:
        report.unreadable.extend(bad)
    ids = set(names)
    gt_polys = [None if f is None else [] for f in gt_files]
    pred_polys = [None if f is None else [] for f in pred_files]
    gt_rows = [None if f is None else parse_yolo_labels(read_text(f), path=f, predictions=False, class_ids=ids,
                                                        polygons=gt_polys[j]) for j, f in enumerate(gt_files)]
    pred_rows = [None if f is None else parse_yolo_labels(read_text(f), path=f, predictions=True, class_ids=ids,
                                                          polygons=pred_polys[j]) for j, f in enumerate(pred_files)]
    sources = tuple(str(p) for p in (gt if gt is not None else root, pred) if p is not None)
    return yolo_to_dataset(
        file_names=rel, width=width, height=height, names=names, gt=gt_rows, pred=pred_rows,
        gt_files=[None if f is None else str(f) for f in gt_files],
        pred_files=[None if f is None else str(f) for f in pred_files],
        gt_name=str(gt) if gt is not None else "labels", pred_name=str(pred),
        clip=clip, images_root=str(root), sources=sources, report=report,
        gt_polygons=gt_polys, pred_polygons=pred_polys,
    )


def parse_yolo_labels(text: str, *, path: str | Path, predictions: bool, class_ids: set[int] | None = None,
                      polygons: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Parse one YOLO label file.

    ``polygons``, when given, receives one entry per row: the segment's (k, 2)
    normalised points, or None for a box line.

    Returns:
        ``(rows, lines)``: rows (n, 5) float64 ``class cx cy w h`` (GT) or (n, 6)
        with ``conf`` (predictions), normalised units; lines (n,) int64, the 1-based
        line of each row. Blank lines are skipped.

    Raises:
        InputError naming the file and line: wrong field count, a non-number, a
        non-integer, unknown or out-of-range (beyond int64) class, a non-finite value, ``w``/``h`` <= 0, a
        confidence outside [0, 1].
    """
    width = 6 if predictions else 5
    rows, lines = [], []
    for ln, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"line {ln}"
        try:
            values = [float(v) for v in fields]
        except ValueError:
            bad = next(v for v in fields if not _is_float(v))
            raise InputError(f"not a number: {bad!r}", path=path, record=where) from None
        n = len(values)
        segment = None
        coords = values[1:-1] if predictions else values[1:]
        if n > width:  # segment: class x1 y1 … xk yk [conf] (k >= 3)
            if len(coords) % 2:
                raise InputError(f"segment has an odd number of coordinates ({len(coords)})", path=path, record=where)
            if len(coords) < 6:
                raise InputError(f"segment has {len(coords) // 2} points; a polygon needs at least 3",
                                 path=path, record=where)
            if not all(np.isfinite(coords)):
                raise InputError(f"non-finite value in {line.strip()!r}", path=path, record=where)
            segment = np.asarray(coords, np.float64).reshape(-1, 2)
            xs, ys = segment[:, 0], segment[:, 1]
            x1, x2, y1, y2 = float(xs.min()), float(xs.max()), float(ys.min()), float(ys.max())
            conf = [values[-1]] if predictions else []
            values = [values[0], (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, *conf]
        elif n != width:
            hint = " (save predictions with save_conf=True)" if predictions and n == 5 else ""
            fmt = "class cx cy w h conf" if predictions else "class cx cy w h"
            raise InputError(f"expected {width} fields ({fmt}), got {n}{hint}", path=path, record=where)
        if not all(np.isfinite(values)):
            raise InputError(f"non-finite value in {line.strip()!r}", path=path, record=where)
        cls = values[0]
        if not cls.is_integer() or cls < 0:
            raise InputError(f"class must be a non-negative integer, got {fields[0]!r}", path=path, record=where)
        if not fits_int64(cls):
            raise InputError(out_of_range("class", fields[0]), path=path, record=where)
        if class_ids is not None and int(cls) not in class_ids:
            raise InputError(f"class {int(cls)} is not in the class names ({_id_range(class_ids)})", path=path, record=where)
        if values[3] <= 0 or values[4] <= 0:
            axis, value = ("width", values[3]) if values[3] <= 0 else ("height", values[4])
            raise InputError(f"box has non-positive {axis} ({axis[0]}={value!r})", path=path, record=where)
        if predictions and not 0.0 <= values[5] <= 1.0:
            raise InputError(f"confidence must be in [0, 1], got {values[5]!r}", path=path, record=where)
        rows.append(values)
        lines.append(ln)
        if polygons is not None:
            polygons.append(segment)
    return np.array(rows, np.float64).reshape(-1, width), np.array(lines, np.int64)


def yolo_to_dataset(
    *,
    file_names: Sequence[str],
    width: np.ndarray,
    height: np.ndarray,
    names: Mapping[int, str],
    gt: Sequence[tuple[np.ndarray, np.ndarray] | None],
    pred: Sequence[tuple[np.ndarray, np.ndarray] | None],
    gt_files: Sequence[str | None] | None = None,
    pred_files: Sequence[str | None] | None = None,
    gt_name: str = "labels",
    pred_name: str = "predictions",
    clip: bool = False,
    images_root: str | None = None,
    sources: tuple[str, ...] = (),
    report: LoadReport | None = None,
    gt_polygons: Sequence[list | None] | None = None,
    pred_polygons: Sequence[list | None] | None = None,
) -> Dataset:
    """The pure converter: per-image parsed label rows → :class:`Dataset`.

    Args:
        file_names, width, height: the images (N,), in image order; size 0 = unknown.
        gt, pred: per image, ``parse_yolo_labels`` output or None (no file).
        gt_files, pred_files: per image, the file each came from (for messages).
        gt_name, pred_name: the folders, for the clipping warning and report.
        gt_polygons, pred_polygons: per image, the ``polygons`` that
            :func:`parse_yolo_labels` filled (None entries for images without a
            file). When every object of a side is a segment, that side gets
            masks (``Boxes.rle``, rasterised at the image size by pycocotools).

    Object ids are 1, 2, … in image order then line order, for GT and predictions.
    """
    n = len(file_names)
    images = ImageTable(image_id=np.arange(n), file_name=np.array(list(file_names), dtype=object),
                        width=width, height=height)
    categories = Categories.from_mapping(dict(names))
    scale = np.stack([np.where(images.width > 0, images.width, 1), np.where(images.height > 0, images.height, 1)], 1)
    boxes = []
    for per_image, files, kind, name, polys in ((gt, gt_files, "labels", gt_name, gt_polygons),
                                                (pred, pred_files, "predictions", pred_name, pred_polygons)):
        parts = [(j, rows, lines) for j, item in enumerate(per_image) if item is not None
                 for rows, lines in [item] if len(rows)]
        ncol = 6 if kind == "predictions" else 5
        image_idx = np.concatenate([np.full(len(r), j, np.int64) for j, r, _ in parts]) if parts else np.zeros(0, np.int64)
        rows = np.concatenate([r for _, r, _ in parts]) if parts else np.zeros((0, ncol))
        lines = np.concatenate([ln for _, _, ln in parts]) if parts else np.zeros(0, np.int64)
        s = scale[image_idx].astype(np.float64)
        xywh = np.stack([(rows[:, 1] - rows[:, 3] / 2) * s[:, 0], (rows[:, 2] - rows[:, 4] / 2) * s[:, 1],
                         rows[:, 3] * s[:, 0], rows[:, 4] * s[:, 1]], axis=1)

        def locate(i, image_idx=image_idx, lines=lines, files=files, kind=kind):
            j = int(image_idx[i])
            return (files[j] if files is not None and files[j] else f"{kind} of {file_names[j]}"), f"line {int(lines[i])}"

        xywh = clip_to_images(xywh, image_idx, images, clip=clip, path=name, locate=locate, report=report)
        class_idx = categories.index_of_ids(rows[:, 0].astype(np.int64))
        if (class_idx < 0).any():
            i = int(np.argmax(class_idx < 0))
            where, record = locate(i)
            raise InputError(f"class {int(rows[i, 0])} is not in the class names", path=where, record=record)
        rle = _segment_masks(polys, per_image, image_idx, images, locate)
        if rle is not None:
            from vecexplore.io.masks import mask_areas
        boxes.append(Boxes(image_idx=image_idx, class_idx=class_idx, xywh=xywh, object_id=np.arange(1, len(rows) + 1),
                           score=rows[:, 5] if kind == "predictions" else None, rle=rle,
                           area=None if rle is None else mask_areas(rle)))  # masks: COCO's area is the mask's
    return Dataset(task="detection", images=images, categories=categories, gt=boxes[0], pred=boxes[1],
                   images_root=images_root, sources=sources, boxes_clipped=clip)


def _segment_masks(polys, per_image, image_idx: np.ndarray, images: ImageTable, locate) -> np.ndarray | None:
    """Masks of YOLO-seg objects (rows in ``image_idx`` order), or None unless every object is a segment."""
    if polys is None:
        return None
    flat = [p for j, item in enumerate(per_image) if item is not None and len(item[0]) for p in (polys[j] or [])]
    if not flat or len(flat) != len(image_idx) or any(p is None for p in flat):
        if flat and any(p is not None for p in flat):
            log.warning("some YOLO label lines are segments and some boxes: the masks are not used")
        return None
    from vecexplore.io.masks import polygon_rles

    w, h = images.width[image_idx], images.height[image_idx]
    pixels = [p * np.array([wi, hi], np.float64) for p, wi, hi in zip(flat, w.tolist(), h.tolist(), strict=True)]
    return polygon_rles(pixels, h, w, locate)


def labels_dir_for(images: str | Path) -> Path | None:
    """Ultralytics' rule: the images folder with its last ``images`` component
    replaced by ``labels``; None if the path has no ``images`` component."""
    parts = list(Path(images).parts)
    for k in range(len(parts) - 1, -1, -1):
        if parts[k] == "images":
            parts[k] = "labels"
            return Path(*parts)
    return None


def images_dir_for(labels: str | Path) -> Path | None:
    """The inverse of :func:`labels_dir_for`."""
    parts = list(Path(labels).parts)
    for k in range(len(parts) - 1, -1, -1):
        if parts[k] == "labels":
            parts[k] = "images"
            return Path(*parts)
    return None


# ---------------------------------------------------------------- writer


def write_yolo(dataset: Dataset, out_dir: str | Path, image_idx: Sequence[int] | np.ndarray | None = None, *,
               link: Literal["symlink", "copy", "none"] = "symlink") -> Path:
    """Write a detection dataset as an Ultralytics-style YOLO folder.

    Layout (``REL`` = the image's ``file_name`` if relative and inside the root,
    else its base name)::

        out_dir/data.yaml           path: <out_dir>, val: images, names: {0: …}
        out_dir/images/REL          symlink to the image (absolute), a copy, or
                                    nothing (``link="none"``)
        out_dir/labels/REL.txt      ``class cx cy w h`` per non-crowd GT box, one
                                    file per image (empty for background images)
        out_dir/predictions/REL.txt ``class cx cy w h conf``, images with predictions

    Objects with masks are written as YOLO-seg lines, ``class x1 y1 … xk yk``
    (``… conf`` for predictions): the outline of the mask's largest part.

    ``class`` is the ``class_idx`` (0..K-1), as Ultralytics requires; the original
    category ids are not kept. Crowd GT boxes are left out (YOLO has no crowd
    regions; Ultralytics' COCO converter drops them too). Coordinates are written
    with full float precision. Images of unknown size keep the normalised units
    they were read in. The folder is built beside ``out_dir`` and renamed into
    place; ``out_dir`` must not exist or be empty.
    """
    if dataset.task != "detection":
        raise ConfigError(f"YOLO export needs a detection dataset, got {dataset.task}")
    ds = dataset if image_idx is None else dataset.subset(image_idx)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"{out_dir}: exists and is not an empty folder; choose a new output folder")
    rel = export_names(ds.images)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        _write_labels(ds, tmp / "labels", rel, ds.gt[~ds.gt.iscrowd], write_empty=True)
        _write_labels(ds, tmp / "predictions", rel, ds.pred, write_empty=False)
        if link != "none":
            for j, r in enumerate(rel):
                src = resolve_image_path(str(ds.images.file_name[j]), ds.images_root).absolute()
                dst = tmp / "images" / r
                dst.parent.mkdir(parents=True, exist_ok=True)
                if link == "symlink":
                    os.symlink(src, dst)
                else:
                    shutil.copy2(src, dst)
        n_crowd = int(ds.gt.iscrowd.sum())
        if n_crowd:
            log.warning("YOLO export: left out %d crowd ground-truth box(es) (YOLO has no crowd regions)", n_crowd)
        import yaml

        names = {i: str(n) for i, n in enumerate(ds.categories.names)}
        meta = {"path": str(out_dir.absolute()), "val": "images", "names": names}
        (tmp / "data.yaml").write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True), encoding="utf-8")
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write_labels(ds: Dataset, folder: Path, rel: list[str], boxes: Boxes, *, write_empty: bool) -> None:
    scale = np.stack([np.where(ds.images.width > 0, ds.images.width, 1),
                      np.where(ds.images.height > 0, ds.images.height, 1)], 1).astype(np.float64)
    s = scale[boxes.image_idx]
    x, y, w, h = boxes.xywh.T
    cols = [(x + w / 2) / s[:, 0], (y + h / 2) / s[:, 1], w / s[:, 0], h / s[:, 1]]
    if boxes.score is not None:
        cols.append(boxes.score)
    values = np.stack(cols, axis=1).tolist()
    if boxes.rle is not None:  # YOLO-seg: class x1 y1 … xk yk [conf], the mask's outline
        values = [[*(mask_outline(rle, xywh).reshape(-1, 2) / si).ravel().tolist(), *v[4:]] for rle, xywh, si, v in
                  zip(boxes.rle, boxes.xywh, s, values, strict=True)]
    lines: dict[int, list[str]] = {}
    for j, c, v in zip(boxes.image_idx.tolist(), boxes.class_idx.tolist(), values, strict=True):
        lines.setdefault(j, []).append(" ".join([str(c), *map(repr, v)]))
    for j, r in enumerate(rel):
        if j not in lines and not write_empty:
            continue
        path = folder / Path(r).with_suffix(".txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{ln}\n" for ln in lines.get(j, [])), encoding="utf-8")


def export_name(file_name: str) -> str:
    """The name an image gets inside an export folder or archive: its ``file_name`` if relative
    and inside the root, else its base name."""
    p = Path(file_name)
    if p.is_absolute() or ".." in p.parts:
        return p.name
    return p.as_posix()


def export_names(images: ImageTable) -> list[str]:
    """:func:`export_name` of every image, in table order.

    Raises:
        ConfigError: two images would get the same name.
    """
    rel = [export_name(str(f)) for f in images.file_name]
    seen: dict[str, int] = {}
    for j, r in enumerate(rel):
        if r in seen:
            raise ConfigError(f"images {images.image_id[seen[r]]} and {images.image_id[j]} would both be written as {r}")
        seen[r] = j
    return rel


# ---------------------------------------------------------------- matching label files to images


def _match(rel: list[str], root: Path, folder: str | Path | None, *, what: str, strict: bool,
           report: LoadReport | None) -> list[Path | None]:
    """The label file of every image (None = none). Files are matched by relative
    path without extension, falling back to the bare stem for a flat folder.
    Unmatched files are an error for predictions (``strict``) and a note for GT."""
    if folder is None:
        out = []
        for r in rel:
            labels = labels_dir_for(root / r)
            if labels is None:
                raise ConfigError(f"{root}: no labels folder given and the images are not under an 'images' folder; pass --gt LABELS_DIR")
            f = labels.with_suffix(".txt")
            out.append(f if f.exists() else None)  # a FIFO or folder named so is refused when read, not skipped
        return out
    folder = require_dir(folder, what=f"{what} folder")
    files: dict[str, Path] = {}
    for directory, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if name.endswith(".txt") and not name.startswith("."):
                path = Path(directory, name)
                files[path.relative_to(folder).with_suffix("").as_posix()] = path
    stems: dict[str, int] = {}
    for r in rel:
        stem = Path(r).stem
        stems[stem] = stems.get(stem, 0) + 1
    out, used = [], set()
    for r in rel:
        key = Path(r).with_suffix("").as_posix()
        if key not in files and "/" in key and stems[Path(r).stem] == 1 and Path(r).stem in files:
            key = Path(r).stem
        out.append(files.get(key))
        if key in files:
            used.add(key)
    orphans = sorted(k for k in files if k not in used and k not in _IGNORED_LABEL_FILES)
    if orphans:
        head = ", ".join(f"{k}.txt" for k in orphans[:10]) + (f" … and {len(orphans) - 10} more" if len(orphans) > 10 else "")
        message = f"{len(orphans)} {what} file(s) match no image under {root}: {head}"
        if strict:
            raise InputError(message, path=folder)
        if report is not None:
            report.note(f"{folder}: {message} (ignored)")
        else:
            log.warning("%s: %s (ignored)", folder, message)
    return out


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _id_range(ids: set[int]) -> str:
    ordered = sorted(ids)
    if ordered == list(range(len(ordered))):
        return f"0..{len(ordered) - 1}"
    return ", ".join(map(str, ordered[:20])) + (" …" if len(ordered) > 20 else "")
