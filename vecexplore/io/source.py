"""Where a dataset comes from (:class:`DatasetSource`) and :func:`load_dataset`.

One frozen, validated description of the inputs, shared by every command that
reads a dataset (``check-data``, ``evaluate``, ``build``). Format detection
(``format=None``), in order:

* no ``gt`` → ``yolo`` (labels found by Ultralytics' rule);
* ``gt`` a ``.json`` file → ``coco``; a ``.csv`` file → ``csv``;
* ``gt`` a folder whose sub-folders hold more images than it holds ``.txt`` files
  → ``imagefolder``; otherwise a folder with ``.txt`` files → ``yolo``.

Defaults filled by :meth:`DatasetSource.resolved`: the images root is the GT
file's folder for ``coco``/``csv``, the GT folder for ``imagefolder``, and for
``yolo`` the ``labels`` → ``images`` sibling of ``gt`` or ``path``/``val`` of a
``data.yaml`` given as names. YOLO names default to ``classes.txt`` in the labels
folder.

That folder is *the images root*: images whose real path (symlinks followed) lies
outside it are refused before any is opened, unless ``allow_outside_root`` (see
:mod:`vecexplore.io.paths`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, get_args

from vecexplore.errors import ConfigError, InputError
from vecexplore.io._common import LoadReport
from vecexplore.io.files import check_regular
from vecexplore.types import Dataset

InputFormat = Literal["coco", "yolo", "csv", "imagefolder"]
FORMATS: tuple[str, ...] = get_args(InputFormat)
#: Formats whose GT file can also carry the predictions (``pred`` optional).
_PRED_OPTIONAL = frozenset({"csv"})
_DETECT_SAMPLE = 5000  # files looked at to tell a YOLO labels folder from an ImageFolder


@dataclass(frozen=True, kw_only=True)
class DatasetSource:
    """The inputs of one evaluated dataset.

    Attributes:
        gt: ground truth: COCO JSON, classification CSV, YOLO labels folder or
            ImageFolder root. May be None for YOLO when ``images`` is given.
        pred: predictions: COCO results JSON, CSV, or YOLO predictions folder.
            Optional only for ``csv`` (one file may carry both).
        images: the folder image paths resolve against (see module doc for defaults).
        format: one of :data:`FORMATS`, or None to detect it from ``gt``.
        names: class names: a YOLO ``data.yaml``, a text file (one per line), a
            comma-separated string, or a tuple of names. YOLO needs them; for CSV
            and ImageFolder they add classes; COCO refuses them.
        clip: clip boxes crossing the image border to it before evaluating
            (opt-in). The default, False, keeps them as given, which is what
            pycocotools evaluates, so the default metrics are pycocotools'.
        allow_outside_root: read images whose real path lies outside ``images``
            (``../x.jpg``, absolute paths elsewhere, symlinks pointing out) instead
            of refusing them.
    """

    gt: Path | None = None
    pred: Path | None = None
    images: Path | None = None
    format: InputFormat | None = None
    names: str | tuple[str, ...] | None = None
    clip: bool = False
    allow_outside_root: bool = False

    def __post_init__(self):
        for key in ("gt", "pred", "images"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, Path):
                if not isinstance(value, (str, os.PathLike)):
                    raise ConfigError(f"{key}: expected a path, got {type(value).__name__}")
                object.__setattr__(self, key, Path(value))
        if self.format is not None and self.format not in FORMATS:
            raise ConfigError(f"format: must be one of {', '.join(FORMATS)} (or left out to detect it), got {self.format!r}")
        if isinstance(self.names, os.PathLike):
            object.__setattr__(self, "names", os.fspath(self.names))
        elif self.names is not None and not isinstance(self.names, str):
            object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        for key in ("clip", "allow_outside_root"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"{key}: expected a bool, got {getattr(self, key)!r}")
        if self.gt is None and self.images is None and not _is_yaml(self.names):
            raise ConfigError("no ground truth given: pass --gt (or, for YOLO, --images or a data.yaml as --names)")
        if self.format is not None:
            self._check_required(self.format)

    def _check_required(self, fmt: str) -> None:
        if self.gt is None and fmt != "yolo":
            raise ConfigError(f"the {fmt} format needs --gt")
        if self.pred is None and fmt not in _PRED_OPTIONAL:
            raise ConfigError(f"the {fmt} format needs --pred (the model's predictions)")
        if fmt == "coco" and self.names is not None:
            raise ConfigError("--names is not used with COCO input: the classes come from the GT file's categories")

    def resolved(self) -> DatasetSource:
        """This source with the format detected and default paths filled (reads the disk)."""
        fmt = self.format or detect_format(self)
        self._check_required(fmt)
        images = self.images
        if fmt in ("coco", "csv") and images is None:
            images = self.gt.parent
        elif fmt == "imagefolder":
            if images is not None and images.resolve() != self.gt.resolve():
                raise ConfigError("ImageFolder images are the files under --gt; leave --images out")
            images = self.gt
        elif fmt == "yolo" and images is None:
            images = _yolo_images_default(self)
        return replace(self, format=fmt, images=images)


def detect_format(source: DatasetSource) -> InputFormat:
    """The input format implied by ``source.gt`` (see the module doc)."""
    gt = source.gt
    if gt is None:
        return "yolo"
    if not gt.exists():
        raise InputError("ground truth not found", path=gt)
    if not gt.is_dir():
        check_regular(gt)  # a FIFO or device is refused here, never read
    if gt.is_file():
        suffix = gt.suffix.lower()
        if suffix == ".json":
            return "coco"
        if suffix == ".csv":
            return "csv"
        raise ConfigError(f"{gt}: cannot tell the input format from the extension; pass --format ({', '.join(FORMATS)})")
    # Count label and image files (a bounded sample): a YOLO labels folder holds
    # .txt files and few or no images; an ImageFolder holds images in sub-folders.
    n_txt = n_nested_images = seen = 0
    for directory, dirs, files in os.walk(gt):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in files:
            if f.endswith(".txt") and f != "classes.txt":
                n_txt += 1
            elif directory != os.fspath(gt) and os.path.splitext(f)[1].lower() in _image_exts():
                n_nested_images += 1
        seen += len(files)
        if seen > _DETECT_SAMPLE:
            break
    if n_nested_images > n_txt:
        return "imagefolder"
    if n_txt:
        return "yolo"
    raise ConfigError(f"{gt}: a folder with neither YOLO .txt labels nor class sub-folders of images; pass --format")


def _image_exts():
    from vecexplore.io.paths import IMAGE_EXTENSIONS

    return IMAGE_EXTENSIONS


def _yolo_images_default(source: DatasetSource) -> Path:
    from vecexplore.io.yolo import images_dir_for

    if source.gt is not None:
        guess = images_dir_for(source.gt)
        if guess is not None and guess.is_dir():
            return guess
    if _is_yaml(source.names):
        from vecexplore.io._read import read_yaml

        path = Path(source.names)
        data = read_yaml(path)
        if isinstance(data, dict) and isinstance(data.get("val"), str):
            base = Path(data["path"]) if isinstance(data.get("path"), str) else Path()
            base = base if base.is_absolute() else path.parent / base
            return base / data["val"]
    raise ConfigError("YOLO input needs --images (the images folder), or a data.yaml with 'val' as --names")


def _is_yaml(names) -> bool:
    return isinstance(names, str) and Path(names).suffix.lower() in {".yaml", ".yml"}


def _yolo_names(source: DatasetSource) -> dict[int, str]:
    from vecexplore.io._read import read_names

    if source.names is not None:
        return read_names(source.names)[0]
    from vecexplore.io.yolo import labels_dir_for

    labels = source.gt if source.gt is not None else labels_dir_for(source.images)
    if labels is not None and (labels / "classes.txt").is_file():
        return read_names(labels / "classes.txt")[0]
    raise ConfigError("YOLO input needs class names: pass --names data.yaml (or a names file, or 'cat,dog,…')")


def load_dataset(source, *, check_images: bool = True, progress: bool = False,
                 report: LoadReport | None = None) -> Dataset:
    """Load, validate and convert the inputs ``source`` describes.

    ``source`` is a :class:`DatasetSource`, or a :class:`~vecexplore.io.splits.SplitSource`
    (several GT files merged into one dataset with splits; see :mod:`vecexplore.io.splits`).

    Args:
        check_images: report every image the annotations name that is not on disk
            (:class:`MissingImagesError`), then every image outside the images root
            (:class:`OutsideRootError`, unless ``source.allow_outside_root``), before
            reading any image header. Images whose headers are read are checked
            against the root even when this is False.
        progress: show a progress bar while reading image headers.
        report: filled with what the load changed (clipped boxes, unreadable images).

    Raises:
        InputError (and subclasses) for bad or missing inputs, ConfigError for
        inconsistent options. Never anything else for bad user input.
    """
    from vecexplore.io.splits import SplitSource, load_split_dataset

    if isinstance(source, SplitSource):
        return load_split_dataset(source, check_images=check_images, progress=progress, report=report)
    if not isinstance(source, DatasetSource):
        raise ConfigError(f"load_dataset: expected a DatasetSource or a SplitSource, got {type(source).__name__}")
    src = source.resolved()
    common = {"progress": progress, "report": report, "allow_outside_root": src.allow_outside_root}
    if src.format == "coco":
        from vecexplore.io.coco import load_coco

        return load_coco(src.gt, src.pred, images_root=src.images, clip=src.clip, check_images=check_images, **common)
    if src.format == "yolo":
        from vecexplore.io.yolo import load_yolo

        return load_yolo(images=src.images, names=_yolo_names(src), gt=src.gt, pred=src.pred, clip=src.clip, **common)
    names = None
    if src.names is not None:
        from vecexplore.io._read import read_names

        names = list(read_names(src.names)[0].values())
    if src.format == "csv":
        from vecexplore.io.classification import load_classification_csv

        return load_classification_csv(src.gt, src.pred, images_root=src.images, names=names,
                                       check_images=check_images, **common)
    from vecexplore.io.classification import load_imagefolder

    return load_imagefolder(src.gt, src.pred, names=names, **common)
