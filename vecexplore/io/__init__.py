"""Input loaders and writers: COCO, YOLO / Ultralytics, classification CSV, ImageFolder.

Every loader is a pure converter (parsed records → :class:`~vecexplore.types.Dataset`)
plus a thin file reader; every bad input raises an
:class:`~vecexplore.errors.InputError` naming the file, the record and the problem.
Importing this package loads only NumPy and the standard library (PIL and PyYAML
are imported by the functions that read images and YAML).
"""

from __future__ import annotations

from vecexplore.io._common import LoadReport
from vecexplore.io.classification import (
    classification_to_dataset,
    load_classification_csv,
    load_imagefolder,
    to_csv,
)
from vecexplore.io.coco import coco_to_dataset, load_coco, to_coco_gt, to_coco_results
from vecexplore.io.paths import (
    check_images_exist,
    find_missing_images,
    list_images,
    resolve_image_path,
)
from vecexplore.io.source import FORMATS, DatasetSource, InputFormat, load_dataset
from vecexplore.io.yolo import load_yolo, parse_yolo_labels, write_yolo, yolo_to_dataset

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
