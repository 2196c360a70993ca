"""Shared file readers for the loaders: JSON, text, CSV, class names, image headers.

Every failure is an :class:`~vecexplore.errors.InputError` naming the file (and the
line, where there is one). Only regular files are read, and text files only up to
the input size limit (:mod:`vecexplore.io.files`), both checked before reading. PIL
and PyYAML are imported inside the functions.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vecexplore.errors import InputError
from vecexplore.io._common import fits_int64, out_of_range
from vecexplore.io.files import check_regular, max_input_bytes, open_regular

log = logging.getLogger(__name__)

# EXIF orientations 5-8 are transposes or 90° rotations: the displayed image is h × w.
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112
_NAMES_FILE_SUFFIXES = frozenset({".yaml", ".yml", ".txt", ".names"})
_EXIF_FORMATS = frozenset({"JPEG", "MPO", "WEBP", "TIFF"})  # EXIF is in the header: no decode
#: Most classes ``nc`` may declare without names (``class_0 …`` are made for each).
MAX_CLASSES = 1_000_000


def require_file(path: str | Path, *, what: str = "file") -> Path:
    """``path`` as a Path, or InputError if it does not exist or is not a regular
    file (a directory, FIFO, socket or device); never opens it."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} not found", path=path)
    if path.is_dir():
        raise InputError(f"expected a {what}, got a directory", path=path)
    check_regular(path)
    return path


def require_dir(path: str | Path, *, what: str = "directory") -> Path:
    """``path`` as a Path, or InputError if it is not an existing directory."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} not found", path=path)
    if not path.is_dir():
        raise InputError(f"expected a {what}, got a file", path=path)
    return path


def read_text(path: str | Path) -> str:
    """The UTF-8 text of a file (a leading BOM is dropped, newlines translated).

    Raises:
        InputError: missing, not a regular file, above the input size limit
            (:func:`vecexplore.io.files.max_input_bytes`; checked before reading),
            unreadable, or not UTF-8.
    """
    path = require_file(path)
    try:
        with io.TextIOWrapper(open_regular(path, max_bytes=max_input_bytes()), encoding="utf-8-sig") as f:
            return f.read()  # universal newlines, as Path.read_text
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=path) from None


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; invalid JSON → InputError with line and column.

    ``NaN`` and ``Infinity`` literals are accepted by the parser (Python writes
    them) so that the loaders can refuse them with a message naming the record.
    """
    fast = _read_json_fast(path)
    if fast is not _FAILED:
        return fast
    text = read_text(path)  # the standard parser: its messages, NaN literals, huge integers
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", path=path) from None
    except RecursionError:
        raise InputError("invalid JSON: nested too deeply", path=path) from None
    except ValueError as exc:  # an integer literal of more than 4300 digits
        raise InputError(f"invalid JSON: {exc}", path=path) from None


_FAILED = object()
#: 19 digits in a row: an integer literal that may not fit in 64 bits (or a long
#: mantissa, or digits in a string: the standard parser is then used, to be safe).
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


def _has_long_digits(data: bytes) -> bool:
    try:
        from vecexplore._native import has_digit_run
    except ImportError:
        return _LONG_DIGITS.search(data) is not None
    return has_digit_run(data, 19)


def read_json_bytes(path: str | Path) -> bytes | None:
    """The bytes of a JSON file (a UTF-8 BOM removed) under the same checks as
    :func:`read_json`, or None when they fail (``read_json`` then names the problem)."""
    try:
        path = require_file(path)
        with open_regular(path, max_bytes=max_input_bytes()) as f:
            data = f.read()
    except (InputError, OSError):
        return None
    return data[3:] if data.startswith(b"\xef\xbb\xbf") else data


def _read_json_fast(path: str | Path) -> Any:
    """orjson's parse of a valid file (several times faster than ``json``), or
    ``_FAILED`` whenever anything is unusual (no orjson, a read error, invalid JSON,
    NaN literals, integers beyond 64 bits): :func:`read_json` then takes the
    standard path, which gives the same values and names every problem."""
    try:
        import orjson
    except ImportError:
        return _FAILED
    data = read_json_bytes(path)
    if data is None:
        return _FAILED
    try:
        if _has_long_digits(data):  # orjson reads integers beyond 64 bits as floats: not ours to round
            return _FAILED
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return _FAILED


def read_csv(path: str | Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Read a comma-separated file with a header row.

    Returns:
        ``(header, rows)``: the stripped column names, and ``(line, fields)`` per
        data row, ``line`` being the 1-based line number in the file (the header is
        line 1) for messages. Blank rows are skipped. Every row must have as many
        fields as the header.
    """
    import csv  # here: only CSV inputs need it

    text = read_text(path)
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = next(reader, None)
        if header is None:
            raise InputError("empty CSV file (no header row)", path=path)
        header = [h.strip() for h in header]
        dup = sorted({h for h in header if header.count(h) > 1})
        if dup:
            raise InputError(f"duplicate column(s) {dup}", path=path, record="line 1")
        rows = []
        for fields in reader:
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise InputError(
                    f"expected {len(header)} fields (as in the header), got {len(fields)}",
                    path=path,
                    record=f"line {reader.line_num}",
                )
            rows.append((reader.line_num, [f.strip() for f in fields]))
    except csv.Error as exc:
        raise InputError(f"malformed CSV: {exc}", path=path, record=f"line {reader.line_num}") from None
    return header, rows


# ---------------------------------------------------------------- class names


def read_names(spec: str | Path | Sequence[str]) -> tuple[dict[int, str], Path | None]:
    """Class names from a YOLO ``data.yaml``, a text file (one per line) or a list.

    Args:
        spec: a path to ``*.yaml``/``*.yml`` (``names`` as a list or ``{id: name}``;
            ``nc`` alone gives ``class_0 …``), a path to another existing file (one
            name per line, blank lines skipped), a comma-separated string, or a
            sequence of names.

    Returns:
        ``({id: name}, yaml_path_or_None)``; ids are 0..K-1 except for a YAML dict.
    """
    if not isinstance(spec, (str, Path)):
        return _check_names({i: str(n).strip() for i, n in enumerate(spec)}, None), None
    path = Path(spec)
    # A names-file suffix means a file (a typo then says "not found", not "one class").
    if path.suffix.lower() in _NAMES_FILE_SUFFIXES or path.is_file():
        if path.suffix.lower() in {".yaml", ".yml"}:
            return _check_names(_names_from_yaml(read_yaml(path), path), path), path
        lines = [ln.strip() for ln in read_text(path).splitlines()]
        return _check_names(dict(enumerate(ln for ln in lines if ln)), path), None
    return _check_names({i: n.strip() for i, n in enumerate(str(spec).split(","))}, None), None


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file (safe loader); syntax errors name the line."""
    import yaml

    text = read_text(path)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise InputError(f"invalid YAML{where}: {getattr(exc, 'problem', None) or exc}", path=path) from None


def _names_from_yaml(data: Any, path: Path) -> dict[int, str]:
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping with 'names', got {type(data).__name__}", path=path)
    names = data.get("names")
    if names is None:
        nc = data.get("nc")
        if type(nc) is int and nc > MAX_CLASSES:
            raise InputError(f"nc is {nc}; at most {MAX_CLASSES:,} classes are supported", path=path)
        if type(nc) is int and nc > 0:
            return {i: f"class_{i}" for i in range(nc)}
        raise InputError("missing required key 'names' (or 'nc')", path=path)
    if isinstance(names, list):
        out = dict(enumerate(names))
    elif isinstance(names, dict):
        out = {}
        for key, name in names.items():
            if type(key) is not int or key < 0:
                raise InputError(f"names: class id must be a non-negative integer, got {key!r}", path=path)
            if not fits_int64(key):
                raise InputError(f"names: {out_of_range('class id', key)}", path=path)
            out[key] = name
    else:
        raise InputError(f"names: expected a list or a mapping, got {type(names).__name__}", path=path)
    for key, name in out.items():
        if not isinstance(name, (str, int, float)) or isinstance(name, bool):
            raise InputError(f"names[{key}]: expected a string, got {type(name).__name__}", path=path)
    nc = data.get("nc")
    if type(nc) is int and nc != len(out):
        raise InputError(f"nc is {nc} but names lists {len(out)} classes", path=path)
    return {k: str(v).strip() for k, v in sorted(out.items())}


def _check_names(names: dict[int, str], path: Path | None) -> dict[int, str]:
    where = {} if path is None else {"path": path}
    if not names:
        raise InputError("no class names given", **where)
    seen: dict[str, int] = {}
    for key, name in names.items():
        if not name:
            raise InputError(f"class {key}: empty class name", **where)
        if name in seen:
            raise InputError(f"class name {name!r} given twice (classes {seen[name]} and {key})", **where)
        seen[name] = key
    return names


# ---------------------------------------------------------------- image headers


def image_size(path: str | Path) -> tuple[int, int] | None:
    """``(width, height)`` as displayed, from the header only; None if unreadable
    (a FIFO, socket, device or directory is unreadable and never opened).

    Opens lazily (no pixel decode) and applies the EXIF orientation as
    Ultralytics' ``exif_size`` does: orientations 5-8 swap width and height.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        f = open_regular(path, what="an image file")
    except InputError:
        return None
    try:
        with f, Image.open(f) as img:
            width, height = img.size
            if img.format in _EXIF_FORMATS:
                try:
                    orientation = img.getexif().get(_EXIF_ORIENTATION)
                except Exception:  # a broken EXIF block must not lose the size
                    orientation = None
                if orientation in _SWAPPING_ORIENTATIONS:
                    width, height = height, width
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return None
    if width <= 0 or height <= 0:
        return None
    return int(width), int(height)


def image_sizes(paths: Sequence[str | Path], *, progress: bool = False) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Header sizes of many images.

    Returns:
        ``(width, height, unreadable)``: (N,) int64 arrays, 0 where the header could
        not be read, and the positions of those images.
    """
    from vecexplore.progress import progress_bar

    width = np.zeros(len(paths), np.int64)
    height = np.zeros(len(paths), np.int64)
    unreadable = []
    with progress_bar("reading image sizes", total=len(paths), unit="img", enabled=progress) as bar:
        for i, path in enumerate(paths):
            size = image_size(path)
            if size is None:
                unreadable.append(i)
            else:
                width[i], height[i] = size
            bar.advance()
    return width, height, unreadable


def warn_unreadable(names: Sequence[str], *, root: str | Path | None) -> None:
    """One warning naming images whose header could not be read (size unknown)."""
    if not names:
        return
    head = ", ".join(names[:10])
    more = f" … and {len(names) - 10} more" if len(names) > 10 else ""
    where = f" under {root}" if root is not None else ""
    log.warning("could not read the size of %d image(s)%s (kept with unknown size): %s%s", len(names), where, head, more)
