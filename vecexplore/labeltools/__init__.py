"""Hand a selection to the labeling tools people already use.

* :mod:`~vecexplore.labeltools.label_studio`: Label Studio JSON tasks (the image,
  the GT as ``annotations``, the model's predictions as ``predictions`` with
  scores) and the labeling config that goes with them;
* :mod:`~vecexplore.labeltools.cvat`: a zip CVAT imports (CVAT for images 1.1 XML,
  optionally with the images).

Both are pure functions of a :class:`~vecexplore.types.Dataset` subset plus a
thin writer; :func:`vecexplore.export.export_selection` routes to them.

Shared conventions: crowd GT regions are left out (neither tool has them;
Ultralytics' YOLO export drops them too) and counted; an object with a mask is
written as one polygon, its mask's largest outer contour
(:func:`vecexplore.io.masks.mask_outline`); an object without one as a box.
"""

from __future__ import annotations

import numpy as np

from vecexplore.types import Boxes


def rows_by_image(image_idx: np.ndarray, n_images: int) -> list[np.ndarray]:
    """For each of ``n_images`` images, the rows of ``image_idx`` that belong to it (input order)."""
    order = np.argsort(image_idx, kind="stable")
    bounds = np.searchsorted(image_idx[order], np.arange(n_images + 1))
    return [order[bounds[j]:bounds[j + 1]] for j in range(n_images)]


def outline(boxes: Boxes, row: int) -> np.ndarray | None:
    """(k, 2) pixel polygon of object ``row``'s mask, or None when the objects carry no masks."""
    if boxes.rle is None:
        return None
    from vecexplore.io.masks import mask_outline

    return mask_outline(boxes.rle[row], boxes.xywh[row]).reshape(-1, 2)


__all__ = ["outline", "rows_by_image"]
