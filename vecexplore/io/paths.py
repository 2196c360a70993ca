"""Image paths: resolving annotation file names against the images root, listing
image folders, and reporting every missing image, and every image outside the
root, before any heavy work starts.

**The images root** is the folder relative file names resolve against: ``--images``,
or by default the GT file's folder (COCO, CSV), the ImageFolder root, the YOLO
images folder (see :mod:`vecexplore.io.source`); the current directory for a
loader called with ``images_root=None``. An image is *inside* it when its path,
with every symlink followed and ``..`` folded (``os.path.realpath``), lies under the
root's own real path. ``../../etc/passwd``, an absolute path elsewhere and a
symlink (file or folder) that points out are *outside*: refused unless the caller
allows them (``--allow-outside-root``), so that reading a dataset never reads, and
the app never serves, files the dataset's folder does not hold.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from vecexplore.errors import MissingImagesError, OutsideRootError
from vecexplore.types import ImageTable

log = logging.getLogger("vecexplore.io")

#: File extensions (lower case) taken as images when a folder is listed: the union of
#: torchvision's ImageFolder and Ultralytics' image formats that PIL opens.
IMAGE_EXTENSIONS = frozenset(
    {".bmp", ".jpeg", ".jpg", ".mpo", ".png", ".pgm", ".ppm", ".tif", ".tiff", ".webp"}
)

# Below this many files in one directory, stat each; above it, list the directory once.
_LISTDIR_MIN = 64


def resolve_image_path(file_name: str, root: str | Path | None) -> Path:
    """The file an annotation's ``file_name`` names.

    An absolute ``file_name`` is used as is; a relative one is joined to ``root``
    (the current directory when ``root`` is None).
    """
    path = Path(file_name)
    if path.is_absolute() or root is None:
        return path
    return Path(root) / path


def image_paths(images: ImageTable | Sequence[str], root: str | Path | None) -> list[Path]:
    """:func:`resolve_image_path` for every image, in image order."""
    names = images.file_name if isinstance(images, ImageTable) else images
    return [resolve_image_path(n, root) for n in names]


def find_missing_images(images: ImageTable | Sequence[str], root: str | Path | None) -> list[str]:
    """The file names (as given, in image order, each once) that are not on disk.

    Never opens a file: names are grouped by directory and each crowded directory is
    listed once (a name not in the listing is confirmed with a ``stat``, so case-
    insensitive file systems agree with ``os.path.exists``); sparse ones are
    ``stat``-ed name by name.
    """
    names = [str(n) for n in (images.file_name if isinstance(images, ImageTable) else images)]
    base_dir = "" if root is None else os.fspath(root)
    by_dir: dict[str, list[tuple[int, str]]] = {}
    for i, name in enumerate(names):  # split once per name, join once per directory
        head, sep, base = name.replace(os.sep, "/").rpartition("/")
        by_dir.setdefault(head or sep, []).append((i, base))
    missing: set[int] = set()
    for head, items in by_dir.items():
        directory = os.path.join(base_dir, head) if head else base_dir
        listing: set[str] | None = None
        if len(items) >= _LISTDIR_MIN:
            try:
                listing = set(os.listdir(directory or "."))
            except OSError:
                listing = set()
        for i, base in items:
            if listing is not None and base in listing:
                continue
            if not base or not os.path.exists(os.path.join(directory, base)):
                missing.add(i)
    seen: set[str] = set()
    out = []
    for i in sorted(missing):
        if names[i] not in seen:
            seen.add(names[i])
            out.append(names[i])
    return out


def check_images_exist(images: ImageTable | Sequence[str], root: str | Path | None) -> None:
    """Raise :class:`MissingImagesError` listing every missing image, if any."""
    missing = find_missing_images(images, root)
    if missing:
        raise MissingImagesError(missing, root=root)


def real_paths(images: ImageTable | Sequence[str], root: str | Path | None) -> list[str]:
    """The real path (absolute, symlinks followed, ``..`` folded) of every image, in
    image order; the file need not exist.

    Cheap on large folders: each directory is resolved once and listed once (a
    ``scandir`` tells which entries are symlinks); only symlinked files are resolved
    one by one.
    """
    names = [str(n) for n in (images.file_name if isinstance(images, ImageTable) else images)]
    base_dir = "" if root is None else os.fspath(root)
    by_dir: dict[str, list[tuple[int, str]]] = {}
    for i, name in enumerate(names):
        head, tail = os.path.split(os.path.join(base_dir, name))
        by_dir.setdefault(head, []).append((i, tail))
    out = [""] * len(names)
    for head, items in by_dir.items():
        real_dir = os.path.realpath(head or os.curdir)
        links: set[str] | None = None
        if len(items) >= _LISTDIR_MIN:
            try:
                with os.scandir(head or os.curdir) as entries:
                    links = {e.name for e in entries if e.is_symlink()}
            except OSError:
                links = set()
        for i, tail in items:
            full = os.path.join(head, tail)
            linked = tail in links if links is not None else os.path.islink(full)
            out[i] = os.path.realpath(full) if linked or tail in ("", ".", "..") else os.path.join(real_dir, tail)
    return out


def is_inside(real: str, real_root: str) -> bool:
    """Whether the real path ``real`` lies under (or is) the real path ``real_root``."""
    real, real_root = os.path.normcase(real), os.path.normcase(real_root)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def check_image_paths(
    images: ImageTable | Sequence[str],
    root: str | Path | None,
    *,
    allow_outside_root: bool = False,
    image_ids: Sequence[int] | None = None,
    report=None,
) -> None:
    """Before any image is opened: refuse images outside the root, report shared files.

    Args:
        images: the images (or their file names), in image order.
        root: the images root (None = the current directory; see the module doc).
        allow_outside_root: accept images outside the root (one warning, and their
            names in ``report.outside_root``) instead of refusing them.
        image_ids: ids for the shared-file report (default: positions).
        report: a :class:`~vecexplore.io.LoadReport` to fill, if given.

    Raises:
        OutsideRootError: images resolve outside the root (all listed) and
            ``allow_outside_root`` is False.

    Several image records naming one file (same real path) are a warning, not an
    error: COCO allows it and each record is still evaluated on its own, but the
    file is then counted, shown and clustered once per record.
    """
    names = [str(n) for n in (images.file_name if isinstance(images, ImageTable) else images)]
    if image_ids is None:
        image_ids = images.image_id.tolist() if isinstance(images, ImageTable) else list(range(len(names)))
    real = real_paths(names, root)
    real_root = os.path.realpath(os.curdir if root is None else root)
    outside = list(dict.fromkeys((n, r) for n, r in zip(names, real, strict=True) if not is_inside(r, real_root)))
    if outside and not allow_outside_root:
        raise OutsideRootError(outside, root=root if root is not None else os.getcwd())
    if outside:
        head = ", ".join(n for n, _ in outside[:5]) + (" …" if len(outside) > 5 else "")
        log.warning("reading %d image(s) outside the images root %s (--allow-outside-root): %s",
                    len(outside), root, head)
        if report is not None:
            report.outside_root.extend(n for n, _ in outside)
    by_file: dict[str, list[int]] = {}
    for i, r in enumerate(real):
        by_file.setdefault(r, []).append(i)
    shared = [(r, [int(image_ids[i]) for i in rows]) for r, rows in by_file.items() if len(rows) > 1]
    if shared:
        head = ", ".join(f"{r} (image ids {', '.join(map(str, ids[:4]))}{' …' if len(ids) > 4 else ''})"
                         for r, ids in shared[:3])
        log.warning("%d file(s) are named by more than one image record (each record is kept): %s%s",
                    len(shared), head, " …" if len(shared) > 3 else "")
        if report is not None:
            report.shared_files.extend(shared)


def list_images(root: str | Path) -> list[str]:
    """Image files under ``root`` (recursive, following links), as POSIX paths
    relative to ``root``, sorted by that path. Hidden files and folders are skipped."""
    root = os.fspath(root)
    out = []
    for directory, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel_dir = os.path.relpath(directory, root)
        for name in files:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            rel = name if rel_dir == "." else os.path.join(rel_dir, name)
            out.append(Path(rel).as_posix())
    out.sort()
    return out
