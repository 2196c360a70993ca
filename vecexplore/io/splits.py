"""One dataset from several ground-truth files: splits.

``--gt val.json --pred val_pred.json --gt test.json --pred test_pred.json``
builds one :class:`~vecexplore.types.Dataset` whose images carry a split, so
that every view can filter by it. COCO and classification CSV only. Rules:

* **Pairs.** The i-th ``--pred`` belongs to the i-th ``--gt``; the counts must
  match (CSV may leave every ``--pred`` out when the GT files carry the
  predictions). ``--images``, ``--format``, ``--names`` and ``--clip`` apply
  to every pair. Every file must have the same format.
* **Split of an image.** Its own split when the file gives one (a COCO image's
  ``split`` key, a CSV ``split`` column), else the stem of its GT file
  (``val`` for ``val.json``); when two GT files share a stem, ``parent/stem``.
* **Classes.** COCO: every file must list the same categories (ids and names);
  the first difference is an error. CSV: the union of the files' classes, sorted
  by name as for one file; per-class score columns, if any, must be in every
  predictions file and name the same classes.
* **Ids.** Image, annotation and prediction ids are kept when no two files share
  one. Otherwise each file's ids are shifted above those of the files before
  it (``new = old + shift``; order within a file is kept). Every image keeps
  ``metadata["source_id"]`` (its id in its own file) and ``metadata["source_file"]``
  (its GT file).
* **Paths.** Each file's images resolve against its own root (``--images`` or the
  GT file's folder); when the roots differ, the dataset's root is their common
  folder and file names become relative to it.

Image order: the files in the order given, each in its own order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vecexplore.errors import ConfigError, InputError
from vecexplore.io._common import INT64_MAX
from vecexplore.io.source import DatasetSource
from vecexplore.types import Boxes, Categories, Dataset, ImageTable, Labels

log = logging.getLogger(__name__)

SPLIT_FORMATS = ("coco", "csv")
_ID_KIND = {"gt": "annotation", "pred": "prediction"}  # for messages


@dataclass(frozen=True, kw_only=True)
class SplitSource:
    """Several :class:`DatasetSource` pairs loaded as one dataset (see the module docstring)."""

    parts: tuple[DatasetSource, ...]

    def __post_init__(self):
        parts = tuple(self.parts)
        if len(parts) < 2:
            raise ConfigError("a split source needs at least two --gt files")
        if not all(isinstance(p, DatasetSource) for p in parts):
            raise ConfigError("split source parts must be DatasetSource objects")
        object.__setattr__(self, "parts", parts)

    @property
    def format(self) -> str | None:
        return self.parts[0].format

    @property
    def allow_outside_root(self) -> bool:
        """Whether images outside their part's root are read (the same for every part)."""
        return self.parts[0].allow_outside_root

    def resolved(self) -> SplitSource:
        """Every part resolved; all in one format, COCO or CSV."""
        parts = tuple(p.resolved() for p in self.parts)
        formats = sorted({p.format for p in parts})
        if len(formats) > 1:
            raise ConfigError(f"every --gt file must have the same format; got {', '.join(formats)}")
        if formats[0] not in SPLIT_FORMATS:
            raise ConfigError(f"several --gt files work for COCO and CSV inputs only, not {formats[0]}")
        return SplitSource(parts=parts)


def source_for(*, gt: Sequence[Path], pred: Sequence[Path], **common) -> DatasetSource | SplitSource:
    """The source for ``--gt``/``--pred`` given ``len(gt)`` times (one file: a plain DatasetSource).

    Raises:
        ConfigError: the counts do not pair up.
    """
    gt, pred = list(gt), list(pred)
    if len(gt) <= 1:
        if len(pred) > 1:
            raise ConfigError(f"--pred given {len(pred)} times but --gt {len(gt)} time(s); give them in pairs")
        return DatasetSource(gt=gt[0] if gt else None, pred=pred[0] if pred else None, **common)
    if pred and len(pred) != len(gt):
        raise ConfigError(f"--gt given {len(gt)} times but --pred {len(pred)} times; give them in pairs: "
                          "--gt a.json --pred a_pred.json --gt b.json --pred b_pred.json")
    pairs = zip(gt, pred or [None] * len(gt), strict=True)
    return SplitSource(parts=tuple(DatasetSource(gt=g, pred=p, **common) for g, p in pairs))


def load_split_dataset(source: SplitSource, *, check_images: bool = True, progress: bool = False,
                       report=None) -> Dataset:
    """Load every pair and merge them (:func:`merge_datasets`)."""
    from vecexplore.io.source import load_dataset

    src = source.resolved()
    parts = [load_dataset(p, check_images=check_images, progress=progress, report=report) for p in src.parts]
    files = [str(p.gt) for p in src.parts]
    return merge_datasets(parts, splits=split_names(files), files=files)


def split_names(files: Sequence[str | Path]) -> list[str]:
    """The default split of each GT file: its stem, or ``parent/stem`` where stems repeat."""
    paths = [Path(f) for f in files]
    stems = [p.stem for p in paths]
    return [f"{p.parent.name}/{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]


def merge_datasets(parts: Sequence[Dataset], *, splits: Sequence[str], files: Sequence[str]) -> Dataset:
    """One dataset from several (pure; see the module docstring for the rules).

    Args:
        parts: datasets of the same task, in order.
        splits: the default split of each part's images (used where an image has none).
        files: each part's GT file, for messages and ``metadata["source_file"]``.

    Raises:
        InputError: different tasks, or categories that do not agree.
    """
    if not (len(parts) == len(splits) == len(files)) or not parts:
        raise ConfigError("merge_datasets: parts, splits and files must have the same non-zero length")
    task = parts[0].task
    for ds, f in zip(parts[1:], files[1:], strict=True):
        if ds.task != task:
            raise InputError(f"is a {ds.task} dataset but {files[0]} is {task}", path=f)
    categories, class_maps = _categories(parts, files)
    images, roots = _images(parts, splits, files)
    offsets = np.cumsum([0] + [ds.num_images for ds in parts[:-1]])

    def objects(name: str):
        items = [getattr(ds, name) for ds in parts]
        image_idx = np.concatenate([o.image_idx + off for o, off in zip(items, offsets, strict=True)])
        class_idx = np.concatenate([m[o.class_idx] for o, m in zip(items, class_maps, strict=True)])
        if task == "classification":
            return _labels(items, image_idx, class_idx, parts, files)
        return Boxes(
            image_idx=image_idx, class_idx=class_idx, xywh=np.concatenate([o.xywh for o in items]),
            object_id=_unique_ids([o.object_id for o in items], files, _ID_KIND[name]),
            score=None if items[0].score is None else np.concatenate([o.score for o in items]),
            iscrowd=np.concatenate([o.iscrowd for o in items]), area=np.concatenate([o.area for o in items]),
            rle=None if any(o.rle is None for o in items) else np.concatenate([o.rle for o in items]),
        )

    return Dataset(task=task, images=images, categories=categories, gt=objects("gt"), pred=objects("pred"),
                   images_root=roots, sources=tuple(s for ds in parts for s in ds.sources),
                   boxes_clipped=any(ds.boxes_clipped for ds in parts))


def _categories(parts, files) -> tuple[Categories, list[np.ndarray]]:
    first = parts[0].categories
    if parts[0].task == "detection":
        for ds, f in zip(parts[1:], files[1:], strict=True):
            cats = ds.categories
            if not np.array_equal(cats.ids, first.ids) or not np.array_equal(cats.names, first.names):
                raise InputError(f"categories differ from {files[0]}: {_difference(first, cats)}", path=f)
        return first, [np.arange(len(first))] * len(parts)
    names = sorted({str(n) for ds in parts for n in ds.categories.names})
    merged = Categories.from_names(names)
    maps = [merged.index_of_names(ds.categories.names) for ds in parts]
    return merged, maps


def _difference(a: Categories, b: Categories) -> str:
    names_a = dict(zip(a.ids.tolist(), a.names.tolist(), strict=True))
    names_b = dict(zip(b.ids.tolist(), b.names.tolist(), strict=True))
    for cid in sorted(set(names_a) | set(names_b)):
        if names_a.get(cid) != names_b.get(cid):
            return f"category id {cid} is {names_b.get(cid)!r} here and {names_a.get(cid)!r} there"
    return "the lists differ"


def _unique_ids(ids: list[np.ndarray], files: Sequence[str], what: str) -> np.ndarray:
    """Concatenated ids, each part shifted above the previous ones when any id repeats.

    Raises:
        InputError: a shifted id would not fit in int64 (``what`` names the ids,
            ``files[k]`` the file of part k).
    """
    flat = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    if np.unique(flat).size == flat.size:
        return flat
    out, top = [], None
    for part, file in zip(ids, files, strict=True):
        shift = 0 if top is None or part.size == 0 else max(0, top + 1 - int(part.min()))
        if part.size and int(part.max()) + shift > INT64_MAX:  # Python ints: no silent wrap
            raise InputError(f"{what} ids repeat across files, and shifting this file's ids above those "
                             f"before it (by {shift}) would pass {INT64_MAX}, the largest int64; "
                             f"renumber the {what} ids of one file", path=file)
        shifted = part + shift
        out.append(shifted)
        if shifted.size:
            top = int(shifted.max()) if top is None else max(top, int(shifted.max()))
    return np.concatenate(out)


def _images(parts, splits, files) -> tuple[ImageTable, str | None]:
    roots = [ds.images_root for ds in parts]
    names = [np.asarray(ds.images.file_name, dtype=object) for ds in parts]
    root = roots[0]
    if len({None if r is None else os.path.realpath(r) for r in roots}) > 1:
        real = [os.path.realpath(r or ".") for r in roots]
        try:
            root = os.path.commonpath(real)
        except ValueError:  # different drives: absolute paths, no root
            root = None
        names = [np.array([f if os.path.isabs(f) else
                           (os.path.join(r, f) if root is None else os.path.relpath(os.path.join(r, f), root))
                           for f in fn], dtype=object) for fn, r in zip(names, real, strict=True)]
    file_name = np.concatenate(names)
    seen = np.array([os.path.normpath(f) for f in file_name], dtype=object)
    if np.unique(seen).size < seen.size:
        log.warning("the same image file appears in more than one --gt file (or twice in one)")
    split = []
    for ds, default in zip(parts, splits, strict=True):
        own = ds.images.split
        split += [default if own is None or own[j] is None else own[j] for j in range(ds.num_images)]
    metadata = {"source_id": np.concatenate([ds.images.image_id for ds in parts]),
                "source_file": np.array([f for ds, f in zip(parts, files, strict=True) for _ in range(ds.num_images)],
                                        dtype=object)}
    keys = sorted({k for ds in parts for k in ds.images.metadata} - set(metadata))
    for key in keys:
        col = []
        for ds in parts:
            values = ds.images.metadata.get(key)
            col += [None] * ds.num_images if values is None else values.tolist()
        metadata[key] = np.array(col, dtype=object)
    table = ImageTable(
        image_id=_unique_ids([ds.images.image_id for ds in parts], files, "image"), file_name=file_name,
        width=np.concatenate([ds.images.width for ds in parts]),
        height=np.concatenate([ds.images.height for ds in parts]), split=split, metadata=metadata,
    )
    return table, root


def _labels(items: list[Labels], image_idx, class_idx, parts, files) -> Labels:
    if items[0].score is None:  # ground truth
        return Labels(image_idx=image_idx, class_idx=class_idx)
    with_scores = [o.scores is not None for o in items]
    scores = None
    if any(with_scores):
        names = [list(ds.categories.names) for ds in parts]
        for ok, ds_names, f in zip(with_scores, names, files, strict=True):
            if not ok or ds_names != names[0]:
                have = "no per-class score columns" if not ok else f"score columns for {ds_names}"
                raise InputError(f"per-class scores must name the same classes in every predictions file; "
                                 f"this pair has {have}, {files[0]} has {names[0]}", path=f)
        scores = np.concatenate([o.scores for o in items])
    return Labels(image_idx=image_idx, class_idx=class_idx, score=np.concatenate([o.score for o in items]),
                  scores=scores)


__all__ = ["SPLIT_FORMATS", "SplitSource", "load_split_dataset", "merge_datasets", "source_for", "split_names"]
