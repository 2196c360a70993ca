"""A CVAT archive of a selection: ``annotations.xml`` in "CVAT for images 1.1", zipped.

Layout of the zip (what CVAT's "CVAT 1.1" import and its own dataset export use)::

    annotations.xml   <annotations><version>1.1</version><meta><task>… <labels> (the run's
                      categories, in order) …</task></meta>
                      <image id="0" name="REL" width="W" height="H"> one per image
                        <box label="cat" xtl ytl xbr ybr …/>        GT boxes, pixels
                        <polygon label="cat" points="x1,y1;x2,y2;…"/> GT masks (outline)
                        <tag label="cat"/>                          classification GT
                      </image>
    images/REL        the image files, with ``with_images`` (to import as a dataset
                      into a project; to import annotations into a task, leave them out)

``REL`` is the image's file name relative to the images root (its base name when
absolute or outside), as in the YOLO export; ``id`` is the image's position in the
archive (CVAT's frame number). Only the ground truth goes in: CVAT imports what it
reads as annotations, and the model's predictions are no labels (Label Studio takes
them as pre-annotations). Coordinates are written with full float precision; crowd
GT regions are left out. The zip is byte-identical for the same selection.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vecexplore.errors import InputError
from vecexplore.labeltools import outline, rows_by_image
from vecexplore.types import Dataset

ANNOTATIONS = "annotations.xml"
IMAGES = "images"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed zip timestamps: the same selection gives the same bytes


def _num(v: float) -> str:
    return repr(float(v))


def cvat_xml(dataset: Dataset, names: list[str], *, title: str = "vecexplore selection") -> str:
    """The CVAT for images 1.1 XML of ``dataset``'s GT; ``names[j]`` is image j's ``name``."""
    if len(names) != len(dataset.images):
        raise ValueError(f"names: expected {len(dataset.images)}, got {len(names)}")
    labels = [str(c) for c in dataset.categories.names]
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    for key, value in (("id", "0"), ("name", title), ("size", str(len(names))), ("mode", "annotation"),
                       ("overlap", "0"), ("start_frame", "0"), ("stop_frame", str(max(len(names) - 1, 0)))):
        ET.SubElement(task, key).text = value
    node = ET.SubElement(task, "labels")
    for name in labels:
        label = ET.SubElement(node, "label")
        ET.SubElement(label, "name").text = name
        ET.SubElement(label, "type").text = "tag" if dataset.task == "classification" else "any"
        ET.SubElement(label, "attributes")
    n = len(names)
    gt = dataset.gt
    if dataset.task == "classification":
        rows = rows_by_image(gt.image_idx, n)
    else:
        keep = np.flatnonzero(~gt.iscrowd)
        rows = [keep[r] for r in rows_by_image(gt.image_idx[keep], n)]
    for j in range(n):
        image = ET.SubElement(root, "image", id=str(j), name=names[j],
                              width=str(int(dataset.images.width[j])), height=str(int(dataset.images.height[j])))
        for r in rows[j].tolist():
            label = labels[int(gt.class_idx[r])]
            if dataset.task == "classification":
                ET.SubElement(image, "tag", label=label, source="manual")
                continue
            poly = outline(gt, r)
            common = {"label": label, "source": "manual", "occluded": "0", "z_order": "0"}
            if poly is None:
                x, y, w, h = gt.xywh[r].tolist()
                ET.SubElement(image, "box", **common, xtl=_num(x), ytl=_num(y), xbr=_num(x + w), ybr=_num(y + h))
            else:
                points = ";".join(f"{_num(px)},{_num(py)}" for px, py in poly.tolist())
                ET.SubElement(image, "polygon", **common, points=points)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


@dataclass(frozen=True)
class CvatExport:
    """What :func:`write_cvat` wrote: the zip, and counts (images, GT shapes, crowd GT left out)."""

    path: Path
    n_images: int
    n_shapes: int
    n_crowd: int
    with_images: bool


def write_cvat(run, image_idx: np.ndarray, out: str | Path, *, with_images: bool = False) -> CvatExport:
    """Write the CVAT zip of ``image_idx`` to ``out`` atomically (see the module docstring).

    Raises:
        ConfigError: two images would get the same name in the archive.
        InputError: with ``with_images``, an image file cannot be read.
    """
    from vecexplore.atomic import atomic_write
    from vecexplore.export import image_paths
    from vecexplore.io.yolo import export_names

    image_idx = np.sort(np.asarray(image_idx, np.int64))
    ds = run.dataset().subset(image_idx)
    names = export_names(ds.images)
    xml = cvat_xml(ds, names, title=f"vecexplore {Path(run.path).name}").encode()
    paths = [image_paths(run)[i] for i in image_idx.tolist()] if with_images else []

    def write(fh) -> None:
        with zipfile.ZipFile(fh, "w") as z:
            z.writestr(zipfile.ZipInfo(ANNOTATIONS, _EPOCH), xml, compress_type=zipfile.ZIP_DEFLATED)
            for name, src in zip(names if with_images else [], paths, strict=True):
                try:
                    data = Path(src).read_bytes()
                except OSError as exc:
                    raise InputError(f"cannot read the image for the archive: {exc.strerror or exc}", path=src) from None
                z.writestr(zipfile.ZipInfo(f"{IMAGES}/{name}", _EPOCH), data, compress_type=zipfile.ZIP_STORED)

    atomic_write(out, write)
    crowd = int(ds.gt.iscrowd.sum()) if ds.task == "detection" else 0
    return CvatExport(Path(out), len(names), len(ds.gt) - crowd, crowd, with_images)


__all__ = ["ANNOTATIONS", "IMAGES", "CvatExport", "cvat_xml", "write_cvat"]
