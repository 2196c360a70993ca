"""Input loaders and writers: COCO, YOLO / Ultralytics, classification CSV, ImageFolder.

Every loader is a pure converter (parsed records → :class:`~vecexplore.types.Dataset`)
plus a thin file reader; every bad input raises an
:class:`~vecexplore.errors.InputError` naming the file, the record and the problem.
Importing this package loads only NumPy and the standard library (PIL and PyYAML
are imported by the functions that read images and YAML).
"""

from __future__ import annotations

import importlib

#: name → the submodule that defines it; imported on first use (PEP 562), so that
#: ``vecexplore evaluate`` on COCO files does not import the YOLO and CSV loaders.
_WHERE = {
    "LoadReport": "_common",
    "classification_to_dataset": "classification",
    "load_classification_csv": "classification",
    "load_imagefolder": "classification",
    "to_csv": "classification",
    "coco_to_dataset": "coco",
    "load_coco": "coco",
    "to_coco_gt": "coco",
    "to_coco_results": "coco",
    "check_images_exist": "paths",
    "find_missing_images": "paths",
    "list_images": "paths",
    "resolve_image_path": "paths",
    "FORMATS": "source",
    "DatasetSource": "source",
    "InputFormat": "source",
    "load_dataset": "source",
    "load_yolo": "yolo",
    "parse_yolo_labels": "yolo",
    "write_yolo": "yolo",
    "yolo_to_dataset": "yolo",
}


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'vecexplore.io' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"vecexplore.io.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "FORMATS",
    "DatasetSource",
    "InputFormat",
    "LoadReport",
    "check_images_exist",
    "classification_to_dataset",
    "coco_to_dataset",
    "find_missing_images",
    "list_images",
    "load_classification_csv",
    "load_coco",
    "load_dataset",
    "load_imagefolder",
    "load_yolo",
    "parse_yolo_labels",
    "resolve_image_path",
    "to_coco_gt",
    "to_coco_results",
    "to_csv",
    "write_yolo",
    "yolo_to_dataset",
]
