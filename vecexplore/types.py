"""The data model: small frozen types of parallel NumPy arrays, validated once.

Conventions (contracts every module relies on):

* An image is addressed by ``image_idx``: its row in :class:`ImageTable`.
  The user's own id is ``ImageTable.image_id[image_idx]``.
* A class is addressed by ``class_idx``: its row in :class:`Categories`, whose
  rows are sorted by category id (pycocotools' order). The user's own id is
  ``Categories.ids[class_idx]``.
* Detection boxes are stored as COCO ``xywh`` in absolute pixels, float64.
  pycocotools computes IoU and areas from ``x, y, w, h``; keeping exactly those
  numbers (rather than ``xyxy``, from which ``w`` would be re-derived as
  ``(x + w) - x`` and may differ in the last bit) is what lets our metrics equal
  pycocotools to 1e-9. ``Boxes.xyxy`` is a derived view.
* Object order is the input's order; it is the tie-break for equal scores, as in
  pycocotools.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Literal

import numpy as np

from vecexplore.errors import ValidationError

Task = Literal["detection", "classification"]
TASKS: tuple[Task, ...] = ("detection", "classification")


def _as_array(name: str, value, dtype, ndim: int, length: int | None = None, width: int | None = None):
    """Convert ``value`` to ``dtype`` and check its shape, naming the field on failure."""
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{name}: cannot convert to {np.dtype(dtype).name}: {exc}") from None
    if arr.ndim != ndim:
        raise ValidationError(f"{name}: expected {ndim}-D array, got shape {arr.shape}")
    if length is not None and arr.shape[0] != length:
        raise ValidationError(f"{name}: expected length {length}, got {arr.shape[0]}")
    if width is not None and arr.shape[1] != width:
        raise ValidationError(f"{name}: expected shape (n, {width}), got {arr.shape}")
    arr = np.ascontiguousarray(arr)
    arr.flags.writeable = False
    return arr


def _check_index(name: str, arr: np.ndarray, upper: int | None) -> None:
    if arr.size and arr.min() < 0:
        raise ValidationError(f"{name}: negative index at position {int(np.argmin(arr))}")
    if upper is not None and arr.size and arr.max() >= upper:
        pos = int(np.argmax(arr >= upper))
        raise ValidationError(f"{name}: index {int(arr[pos])} at position {pos} is out of range (< {upper})")


def _check_unique(name: str, arr: np.ndarray) -> None:
    if arr.size == 0:
        return
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise ValidationError(f"{name}: duplicate values {dup[:10].tolist()}")


def selection_mask(images, n: int) -> np.ndarray | None:
    """A selection of images as an (n,) bool mask.

    Args:
        images: None (no selection; returned as None), an (n,) bool mask, or
            image_idx values in [0, n) (any order, duplicates allowed).
        n: number of images.

    Raises:
        ValidationError: a mask of the wrong shape or an index out of range.
    """
    if images is None:
        return None
    arr = np.asarray(images)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValidationError(f"selection mask: expected shape ({n},), got {arr.shape}")
        return arr
    arr = arr.astype(np.int64).reshape(-1)
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise ValidationError(f"selection: image_idx must be in [0, {n}), got {int(arr.min())}..{int(arr.max())}")
    mask = np.zeros(n, bool)
    mask[arr] = True
    return mask


class _Sliceable:
    """Mixin: ``obj[mask_or_indices]`` slices every array field together."""

    def __getitem__(self, index):
        index = np.asarray(index)
        kwargs = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray) and value.ndim >= 1 and f.metadata.get("rows", True):
                kwargs[f.name] = value[index]
            else:
                kwargs[f.name] = value
        return type(self)(**kwargs)

    def __len__(self) -> int:
        first = fields(self)[0]
        return len(getattr(self, first.name))


@dataclass(frozen=True, eq=False)
class Categories:
    """The class vocabulary, sorted by id.

    Attributes:
        ids: (K,) int64, strictly increasing user category ids.
        names: (K,) object array of str, unique, non-empty.
    """

    ids: np.ndarray
    names: np.ndarray

    def __post_init__(self):
        ids = _as_array("categories.ids", self.ids, np.int64, 1)
        names = _as_array("categories.names", [str(n) for n in self.names], object, 1, len(ids))
        _check_unique("categories.ids", ids)
        _check_unique("categories.names", names)
        if any(n == "" for n in names):
            raise ValidationError("categories.names: empty class name")
        order = np.argsort(ids, kind="stable")
        if (order != np.arange(len(ids))).any():
            ids, names = ids[order], names[order]
            ids.flags.writeable = names.flags.writeable = False
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "names", names)

    @classmethod
    def from_names(cls, names: Iterable[str], *, start: int = 0) -> Categories:
        """Categories with ids ``start, start + 1, ...`` in the given order."""
        names = list(names)
        return cls(ids=np.arange(start, start + len(names)), names=np.array(names, dtype=object))

    @classmethod
    def from_mapping(cls, mapping: Mapping[int, str]) -> Categories:
        """Categories from ``{id: name}``."""
        ids = np.array(list(mapping.keys()), dtype=np.int64)
        return cls(ids=ids, names=np.array([mapping[i] for i in mapping], dtype=object))

    def __len__(self) -> int:
        return len(self.ids)

    def index_of_ids(self, ids) -> np.ndarray:
        """Map category ids to ``class_idx``; -1 where an id is unknown."""
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self.ids, ids)
        pos = np.clip(pos, 0, max(len(self.ids) - 1, 0))
        ok = (self.ids[pos] == ids) if len(self.ids) else np.zeros(ids.shape, bool)
        return np.where(ok, pos, -1).astype(np.int64)

    def index_of_names(self, names) -> np.ndarray:
        """Map class names to ``class_idx``; -1 where a name is unknown."""
        lookup = {n: i for i, n in enumerate(self.names)}
        return np.array([lookup.get(str(n), -1) for n in names], dtype=np.int64)


@dataclass(frozen=True, eq=False)
class ImageTable(_Sliceable):
    """One row per image.

    Attributes:
        image_id: (N,) int64, unique user ids (COCO ``id``; 0..N-1 for formats without ids).
        file_name: (N,) object array of str, the path as the annotations give it,
            relative to the images root unless absolute.
        width, height: (N,) int64, pixels; 0 = unknown (the image header could not
            be read; the image is then reported as unreadable, never dropped).
        split: (N,) object array of str or None.
        metadata: optional mapping of column name -> (N,) array (e.g. COCO extra fields).
    """

    image_id: np.ndarray
    file_name: np.ndarray
    width: np.ndarray
    height: np.ndarray
    split: np.ndarray | None = None
    metadata: dict = field(default_factory=dict, metadata={"rows": False})

    def __post_init__(self):
        image_id = _as_array("images.image_id", self.image_id, np.int64, 1)
        n = len(image_id)
        _check_unique("images.image_id", image_id)
        file_name = _as_array("images.file_name", [str(f) for f in self.file_name], object, 1, n)
        width = _as_array("images.width", self.width, np.int64, 1, n)
        height = _as_array("images.height", self.height, np.int64, 1, n)
        for name, arr in (("images.width", width), ("images.height", height)):
            if arr.size and arr.min() < 0:
                pos = int(np.argmin(arr))
                raise ValidationError(f"{name}: must be >= 0, got {int(arr[pos])} for image id {int(image_id[pos])}")
        split = None
        if self.split is not None:
            split = _as_array("images.split", [None if s is None else str(s) for s in self.split], object, 1, n)
        metadata = {}
        for key, col in dict(self.metadata).items():
            metadata[key] = _as_array(f"images.metadata[{key!r}]", col, object if np.asarray(col).dtype.kind in "OU" else None, 1, n)
        object.__setattr__(self, "image_id", image_id)
        object.__setattr__(self, "file_name", file_name)
        object.__setattr__(self, "width", width)
        object.__setattr__(self, "height", height)
        object.__setattr__(self, "split", split)
        object.__setattr__(self, "metadata", metadata)

    def __getitem__(self, index):
        # Metadata columns are sliced here, not by _Sliceable (they live in a dict):
        # building the new table with the unsliced columns would fail its length check.
        index = np.asarray(index)
        return ImageTable(
            image_id=self.image_id[index],
            file_name=self.file_name[index],
            width=self.width[index],
            height=self.height[index],
            split=None if self.split is None else self.split[index],
            metadata={k: v[index] for k, v in self.metadata.items()},
        )

    def index_of_ids(self, ids) -> np.ndarray:
        """Map image ids to ``image_idx``; -1 where an id is unknown."""
        ids = np.asarray(ids, dtype=np.int64)
        dense = self._index_by_table(ids)
        if dense is not None:
            return dense
        order = np.argsort(self.image_id, kind="stable")
        sorted_ids = self.image_id[order]
        if len(sorted_ids) == 0:
            return np.full(ids.shape, -1, np.int64)
        pos = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
        return np.where(sorted_ids[pos] == ids, order[pos], -1).astype(np.int64)

    def _index_by_table(self, ids: np.ndarray) -> np.ndarray | None:
        """:meth:`index_of_ids` by a dense id → row table, when the ids are unique and their span
        is at most 8 × (queries + images) entries (a random binary search per query was 2 s of
        10M predictions); None otherwise."""
        n = len(self.image_id)
        if n == 0 or ids.size < 1024:
            return None
        lo, hi = int(self.image_id.min()), int(self.image_id.max())
        span = hi - lo + 1
        if span > 8 * (ids.size + n):
            return None
        table = np.full(span, -1, np.int64)
        table[self.image_id - lo] = np.arange(n, dtype=np.int64)
        if np.count_nonzero(table >= 0) != n:  # repeated ids: the first one's row, by the sorted search
            return None
        flat = ids.reshape(-1)
        out = np.full(flat.shape, -1, np.int64)
        inside = (flat >= lo) & (flat <= hi)
        out[inside] = table[flat[inside] - lo]
        return out.reshape(ids.shape)

    def to_pandas(self):
        import pandas as pd

        df = pd.DataFrame(
            {
                "image_idx": np.arange(len(self), dtype=np.int64),
                "image_id": self.image_id,
                "file_name": self.file_name,
                "width": self.width,
                "height": self.height,
            }
        )
        if self.split is not None:
            df["split"] = self.split
        for key, col in self.metadata.items():
            df[f"meta_{key}"] = col
        return df


@dataclass(frozen=True, eq=False)
class Boxes(_Sliceable):
    """Detection objects (ground truth or predictions) of a whole dataset.

    Attributes:
        image_idx: (n,) int64, row in the image table.
        class_idx: (n,) int64, row in :class:`Categories`.
        xywh: (n, 4) float64, COCO ``[x, y, w, h]`` in pixels, finite, ``w, h > 0``.
        object_id: (n,) int64, unique (COCO annotation id; 1-based input order for
            predictions without ids, as pycocotools ``loadRes`` numbers them).
        score: (n,) float64 in [0, 1] for predictions; None for ground truth.
        iscrowd: (n,) bool; all False for predictions.
        area: (n,) float64, the area used for COCO's small/medium/large ranges
            (the annotation's ``area`` for GT, ``w * h`` for predictions; the
            mask area for predictions read from mask-only COCO results, as
            pycocotools ``loadRes`` sets it).
        rle: (n,) object array of compressed COCO RLE dicts
            (``{"size": [h, w], "counts": bytes}``, pycocotools' format), one
            instance mask per object; None when the objects carry no masks.
            Built and validated by :mod:`vecexplore.io.masks`.
    """

    image_idx: np.ndarray
    class_idx: np.ndarray
    xywh: np.ndarray
    object_id: np.ndarray
    score: np.ndarray | None = None
    iscrowd: np.ndarray | None = None
    area: np.ndarray | None = None
    rle: np.ndarray | None = None

    def __post_init__(self):
        image_idx = _as_array("boxes.image_idx", self.image_idx, np.int64, 1)
        n = len(image_idx)
        class_idx = _as_array("boxes.class_idx", self.class_idx, np.int64, 1, n)
        xywh = _as_array("boxes.xywh", np.asarray(self.xywh, np.float64).reshape(-1, 4) if n == 0 else self.xywh, np.float64, 2, n, 4)
        object_id = _as_array("boxes.object_id", self.object_id, np.int64, 1, n)
        _check_index("boxes.image_idx", image_idx, None)
        _check_index("boxes.class_idx", class_idx, None)
        _check_unique("boxes.object_id", object_id)
        bad = ~np.isfinite(xywh).all(axis=1)
        if bad.any():
            pos = int(np.argmax(bad))
            raise ValidationError(f"boxes.xywh: non-finite box {xywh[pos].tolist()} (object id {int(object_id[pos])})")
        bad = (xywh[:, 2] <= 0) | (xywh[:, 3] <= 0)
        if bad.any():
            pos = int(np.argmax(bad))
            raise ValidationError(f"boxes.xywh: width and height must be > 0, got {xywh[pos].tolist()} (object id {int(object_id[pos])})")
        score = None
        if self.score is not None:
            score = _as_array("boxes.score", self.score, np.float64, 1, n)
            bad = ~np.isfinite(score) | (score < 0) | (score > 1)
            if bad.any():
                pos = int(np.argmax(bad))
                raise ValidationError(f"boxes.score: must be in [0, 1], got {score[pos]} (object id {int(object_id[pos])})")
        iscrowd = _as_array("boxes.iscrowd", np.zeros(n, bool) if self.iscrowd is None else self.iscrowd, bool, 1, n)
        area = _as_array("boxes.area", xywh[:, 2] * xywh[:, 3] if self.area is None else self.area, np.float64, 1, n)
        rle = None
        if self.rle is not None:
            rle = np.empty(n, object)
            if len(self.rle) != n:
                raise ValidationError(f"boxes.rle: expected length {n}, got {len(self.rle)}")
            rle[:] = list(self.rle)
            rle.flags.writeable = False
        for name, value in (("image_idx", image_idx), ("class_idx", class_idx), ("xywh", xywh), ("object_id", object_id),
                            ("score", score), ("iscrowd", iscrowd), ("area", area), ("rle", rle)):
            object.__setattr__(self, name, value)

    @classmethod
    def empty(cls, *, predictions: bool) -> Boxes:
        z = np.zeros(0, np.int64)
        return cls(z, z, np.zeros((0, 4)), z, score=np.zeros(0) if predictions else None)

    @property
    def is_prediction(self) -> bool:
        return self.score is not None

    @property
    def has_masks(self) -> bool:
        return self.rle is not None

    @property
    def xyxy(self) -> np.ndarray:
        """(n, 4) float64 ``[x1, y1, x2, y2]``."""
        out = self.xywh.copy()
        out[:, 2:] += out[:, :2]
        return out

    def to_pandas(self, images: ImageTable | None = None, categories: Categories | None = None):
        import pandas as pd

        df = pd.DataFrame(
            {
                "object_id": self.object_id,
                "image_idx": self.image_idx,
                "class_idx": self.class_idx,
                "x": self.xywh[:, 0],
                "y": self.xywh[:, 1],
                "w": self.xywh[:, 2],
                "h": self.xywh[:, 3],
                "area": self.area,
                "iscrowd": self.iscrowd,
            }
        )
        if self.score is not None:
            df["score"] = self.score
        if images is not None:
            df.insert(2, "image_id", images.image_id[self.image_idx])
        if categories is not None:
            df["category_id"] = categories.ids[self.class_idx]
            df["category"] = categories.names[self.class_idx]
        return df


@dataclass(frozen=True, eq=False)
class Labels(_Sliceable):
    """Classification ground truth or predictions: at most one row per image.

    Attributes:
        image_idx: (n,) int64, unique rows in the image table.
        class_idx: (n,) int64, the label (GT) or predicted class.
        score: (n,) float64 in [0, 1], the predicted class's score; None for GT.
        scores: (n, K) float64 per-class scores (columns in :class:`Categories`
            order), optional; finite and in [0, 1].
    """

    image_idx: np.ndarray
    class_idx: np.ndarray
    score: np.ndarray | None = None
    scores: np.ndarray | None = None

    def __post_init__(self):
        image_idx = _as_array("labels.image_idx", self.image_idx, np.int64, 1)
        n = len(image_idx)
        class_idx = _as_array("labels.class_idx", self.class_idx, np.int64, 1, n)
        _check_index("labels.image_idx", image_idx, None)
        _check_index("labels.class_idx", class_idx, None)
        _check_unique("labels.image_idx", image_idx)
        score = None
        if self.score is not None:
            score = _as_array("labels.score", self.score, np.float64, 1, n)
            bad = ~np.isfinite(score) | (score < 0) | (score > 1)
            if bad.any():
                pos = int(np.argmax(bad))
                raise ValidationError(f"labels.score: must be in [0, 1], got {score[pos]} (image_idx {int(image_idx[pos])})")
        scores = None
        if self.scores is not None:
            scores = _as_array("labels.scores", self.scores, np.float64, 2, n)
            bad = ~(np.isfinite(scores) & (scores >= 0) & (scores <= 1)).all(axis=1)
            if bad.any():
                pos = int(np.argmax(bad))
                raise ValidationError(f"labels.scores: per-class scores must be in [0, 1] (image_idx {int(image_idx[pos])})")
        for name, value in (("image_idx", image_idx), ("class_idx", class_idx), ("score", score), ("scores", scores)):
            object.__setattr__(self, name, value)

    @property
    def is_prediction(self) -> bool:
        return self.score is not None


@dataclass(frozen=True, eq=False)
class Dataset:
    """An evaluated dataset: images, classes, ground truth and one model's predictions.

    Attributes:
        task: ``"detection"`` (``gt``/``pred`` are :class:`Boxes`) or
            ``"classification"`` (:class:`Labels`).
        images: the image table; every ``image_idx`` below indexes it.
        categories: the classes; every ``class_idx`` below indexes it.
        gt: ground truth.
        pred: predictions (``score`` set).
        images_root: directory relative image paths resolve against, if known.
        sources: the input files this dataset was read from (for hashing and messages).
        boxes_clipped: the loader clipped boxes crossing the image border (the
            opt-in ``clip``); metrics are then not pycocotools' numbers.
    """

    task: Task
    images: ImageTable
    categories: Categories
    gt: Boxes | Labels
    pred: Boxes | Labels
    images_root: str | None = None
    sources: tuple[str, ...] = ()
    boxes_clipped: bool = False

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValidationError(f"dataset.task: must be one of {TASKS}, got {self.task!r}")
        kind = Boxes if self.task == "detection" else Labels
        for name in ("gt", "pred"):
            value = getattr(self, name)
            if not isinstance(value, kind):
                raise ValidationError(f"dataset.{name}: a {self.task} dataset needs {kind.__name__}, got {type(value).__name__}")
        if self.gt.is_prediction:
            raise ValidationError("dataset.gt: ground truth must not carry scores")
        if not self.pred.is_prediction:
            raise ValidationError("dataset.pred: predictions must carry scores")
        if len(self.images) == 0:
            raise ValidationError("dataset: no images")
        n, k = len(self.images), len(self.categories)
        if k == 0:
            raise ValidationError("dataset: no categories")
        for name in ("gt", "pred"):
            value = getattr(self, name)
            _check_index(f"dataset.{name}.image_idx", value.image_idx, n)
            _check_index(f"dataset.{name}.class_idx", value.class_idx, k)
        if isinstance(self.pred, Labels) and self.pred.scores is not None and self.pred.scores.shape[1] != k:
            raise ValidationError(f"dataset.pred.scores: expected {k} columns (one per class), got {self.pred.scores.shape[1]}")

    @property
    def num_images(self) -> int:
        return len(self.images)

    def subset(self, image_idx) -> Dataset:
        """The dataset restricted to the given images (re-indexed, order kept)."""
        image_idx = np.asarray(image_idx, dtype=np.int64)
        remap = np.full(len(self.images), -1, np.int64)
        remap[image_idx] = np.arange(len(image_idx))

        def take(objs):
            sub = objs[np.flatnonzero(remap[objs.image_idx] >= 0)]
            return replace(sub, image_idx=remap[sub.image_idx])

        return Dataset(
            task=self.task,
            images=self.images[image_idx],
            categories=self.categories,
            gt=take(self.gt),
            pred=take(self.pred),
            images_root=self.images_root,
            sources=self.sources,
            boxes_clipped=self.boxes_clipped,
        )
