"""Image paths: resolving annotation file names against the images root, listing
image folders, and reporting every missing image before any heavy work starts."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from vecexplore.errors import MissingImagesError
from vecexplore.types import ImageTable

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
