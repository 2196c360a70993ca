"""Helpers shared by the loaders: the load report, border clipping, duplicate ids,
the signed 64-bit range every id column must fit."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vecexplore.errors import InputError
from vecexplore.types import ImageTable

log = logging.getLogger("vecexplore.io")

#: The range of every integer that becomes an int64 column (ids, sizes, class ids).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def fits_int64(value: int | float) -> bool:
    """Whether an integral ``value`` (int, or float with an integer value) fits in int64."""
    return INT64_MIN <= value <= INT64_MAX


def out_of_range(key: str, value) -> str:
    """The message for an integer field that does not fit in int64."""
    return f"{key} {value!r} is out of range (must fit in a signed 64-bit integer)"


CLIP_NOTE = "--clip is on: metrics use the clipped boxes, so they are not pycocotools' numbers"
CROSSING_NOTE = "informational: evaluated as given, as pycocotools does; --clip clips them to the border"


@dataclass
class LoadReport:
    """What a load changed or could not do, for summaries (``vecexplore check-data``).

    Attributes:
        crossing: input file → number of its boxes that cross the image border
            (informational: counted whether or not they are clipped).
        clipped: input file → number of its boxes clipped to the image border
            (only with the opt-in ``clip``).
        unreadable: file names of images whose header could not be read (size 0).
        outside_root: file names of images accepted outside the images root
            (``allow_outside_root``).
        shared_files: one ``(resolved path, image ids)`` per file that several image
            records name.
        notes: other things the user should know, one sentence each.
    """

    crossing: dict[str, int] = field(default_factory=dict)
    clipped: dict[str, int] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    outside_root: list[str] = field(default_factory=list)
    shared_files: list[tuple[str, list[int]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        """Record ``message`` and log it as a warning."""
        self.notes.append(message)
        log.warning("%s", message)


def clip_to_images(
    xywh: np.ndarray,
    image_idx: np.ndarray,
    images: ImageTable,
    *,
    clip: bool,
    path: str | Path,
    locate: Callable[[int], tuple[str, str | None]],
    report: LoadReport | None,
) -> np.ndarray:
    """Count boxes crossing their image's border, and clip them when asked.

    Boxes inside the image are returned bit-exact; boxes crossing the border are
    kept as given (``clip=False``, the default of every loader: what pycocotools
    evaluates) or get ``x, y, w, h`` recomputed from the clipped corners
    (``clip=True``). Images of unknown size (0) are never touched. The crossing
    count goes to ``report.crossing`` (and an info log line) either way; with
    ``clip``, one warning per file counts the clipped boxes.

    Args:
        xywh: (n, 4) float64 COCO boxes, already checked finite with ``w, h > 0``.
        image_idx: (n,) int64 rows of ``images``.
        path: the file (or folder) the boxes came from, for the warning and ``report``.
        locate: position → ``(file, record)`` naming that box's input for an error,
            e.g. ``("instances.json", "annotations[3] (id 17)")``.

    Raises:
        InputError: a box lies entirely outside its (known-size) image.
    """
    if len(xywh) == 0:
        return xywh
    width = images.width[image_idx].astype(np.float64)
    height = images.height[image_idx].astype(np.float64)
    known = (width > 0) & (height > 0)
    x1, y1 = xywh[:, 0], xywh[:, 1]
    x2, y2 = x1 + xywh[:, 2], y1 + xywh[:, 3]
    cx1, cy1 = np.maximum(x1, 0.0), np.maximum(y1, 0.0)
    cx2, cy2 = np.minimum(x2, width), np.minimum(y2, height)
    outside = known & ((cx2 <= cx1) | (cy2 <= cy1))
    if outside.any():
        i = int(np.argmax(outside))
        j = int(image_idx[i])
        where, record = locate(i)
        raise InputError(
            f"box {xywh[i].tolist()} lies entirely outside its image "
            f"(image id {int(images.image_id[j])}, {int(images.width[j])}x{int(images.height[j])})",
            path=where,
            record=record,
        )
    crosses = known & ((x1 < 0) | (y1 < 0) | (x2 > width) | (y2 > height))
    n = int(crosses.sum())
    if n == 0:
        return xywh
    if report is not None:
        report.crossing[str(path)] = report.crossing.get(str(path), 0) + n
    if not clip:
        log.info("%s: %d box(es) cross the image border (%s)", path, n, CROSSING_NOTE)
        return xywh
    out = xywh.copy()
    out[crosses] = np.stack([cx1, cy1, cx2 - cx1, cy2 - cy1], axis=1)[crosses]
    log.warning("%s: clipped %d box(es) that extend past the image border (%s)", path, n, CLIP_NOTE)
    if report is not None:
        report.clipped[str(path)] = report.clipped.get(str(path), 0) + n
    return out


def first_duplicate(values: np.ndarray) -> tuple[int, int] | None:
    """``(first, second)`` positions of the earliest repeated value, or None.

    ``second`` is the smallest position whose value occurred before; ``first`` is
    that value's first position.
    """
    values = np.asarray(values)
    if len(values) < 2:
        return None
    order = np.argsort(values, kind="stable")
    same = values[order][1:] == values[order][:-1]
    if not same.any():
        return None
    second = int(order[1:][same].min())
    first = int(np.flatnonzero(values == values[second])[0])
    return first, second


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small objects.

    Parsing a large JSON file creates millions of dicts and lists that are all
    alive; each automatic collection then walks them again for nothing (it doubles
    the time of a COCO load). Reference counting still frees garbage; the
    collector's previous state is restored on exit.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
