"""Writing what ``mine`` found: the ranked list, its contact sheet, the unreadable images.

Beside ``OUT`` (``mined.txt``) go ``mined.sheet.png`` (the top :data:`SHEET_IMAGES`
as a grid of thumbnails captioned ``#rank score``) and, when some pool images
could not be embedded, ``mined.unreadable.csv`` (``path,reason``). Every file is
written atomically (temp file + rename).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from vecexplore.errors import ConfigError
from vecexplore.store import atomic_write_bytes, atomic_write_text

MineFormat = Literal["txt", "csv", "label-studio"]
FORMATS: tuple[str, ...] = ("txt", "csv", "label-studio")

#: Images on the contact sheet, and its layout in pixels.
SHEET_IMAGES = 48
SHEET_COLUMNS = 8
THUMB = 160
CAPTION = 18
PAD = 4


def sheet_path(out: str | Path) -> Path:
    """``mined.txt`` → ``mined.sheet.png`` (beside it)."""
    out = Path(out)
    return out.with_name(f"{out.stem}.sheet.png")


def unreadable_path(out: str | Path) -> Path:
    """``mined.txt`` → ``mined.unreadable.csv`` (beside it)."""
    out = Path(out)
    return out.with_name(f"{out.stem}.unreadable.csv")


def label_studio_task(path: str) -> dict:
    """One Label Studio task that shows the image at ``path`` and nothing else.

    The one place mined images become Label Studio tasks: when vecexplore's
    Label Studio exporter (GT and predictions as annotations) lands, point this at it.
    """
    return {"data": {"image": path}}


def ranked_text(paths: Sequence[str], scores: np.ndarray, fmt: MineFormat) -> str:
    """The ranked list, best first, as ``fmt``: ``txt`` one path per line; ``csv``
    ``rank,path,score`` (rank from 1, score with 6 decimals); ``label-studio`` a JSON
    list of tasks (:func:`label_studio_task`)."""
    if fmt == "txt":
        return "".join(f"{p}\n" for p in paths)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["rank", "path", "score"])
        writer.writerows([r, p, f"{float(s):.6f}"] for r, (p, s) in enumerate(zip(paths, scores, strict=True), 1))
        return buf.getvalue()
    if fmt == "label-studio":
        return json.dumps([label_studio_task(p) for p in paths], indent=1) + "\n"
    raise ConfigError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")


def sheet_size(n: int) -> tuple[int, int]:
    """``(width, height)`` in pixels of the contact sheet of ``n`` images (at most :data:`SHEET_IMAGES`)."""
    n = min(n, SHEET_IMAGES)
    cols = min(n, SHEET_COLUMNS) or 1
    rows = max(1, math.ceil(n / SHEET_COLUMNS))
    return cols * (THUMB + PAD) + PAD, rows * (THUMB + CAPTION + PAD) + PAD


def contact_sheet(paths: Sequence[str], scores: np.ndarray) -> bytes:
    """A PNG grid of the first :data:`SHEET_IMAGES` images, each captioned ``#rank score``
    (an image that cannot be decoded gets a grey tile)."""
    from PIL import Image, ImageDraw

    from vecexplore.io.images import DecodeError, open_rgb

    paths = list(paths)[:SHEET_IMAGES]
    sheet = Image.new("RGB", sheet_size(len(paths)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (path, score) in enumerate(zip(paths, scores, strict=False)):
        x = PAD + (i % SHEET_COLUMNS) * (THUMB + PAD)
        y = PAD + (i // SHEET_COLUMNS) * (THUMB + CAPTION + PAD)
        try:
            img = open_rgb(path, size_hint=THUMB)
            img.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
        except DecodeError:
            img = Image.new("RGB", (THUMB, THUMB), (200, 200, 200))
        sheet.paste(img, (x + (THUMB - img.width) // 2, y + (THUMB - img.height) // 2))
        draw.text((x + 2, y + THUMB + 3), f"#{i + 1}  {float(score):.3f}", fill=(0, 0, 0))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def write_mined(out: str | Path, paths: Sequence[str], scores: np.ndarray, *, fmt: MineFormat,
                unreadable: Sequence[tuple[str, str]] = ()) -> dict[str, Path]:
    """Write the ranked list to ``out``, its contact sheet and the unreadable-image report
    beside it (a stale report of an earlier run is removed when there is none).

    Returns:
        ``{"out", "sheet"}`` and ``"unreadable"`` when written.
    """
    out = Path(out)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    written = {"out": out, "sheet": sheet_path(out)}
    atomic_write_bytes(written["sheet"], contact_sheet(paths, scores))
    report = unreadable_path(out)
    if unreadable:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["path", "reason"])
        writer.writerows(unreadable)
        atomic_write_text(report, buf.getvalue())
        written["unreadable"] = report
    else:
        report.unlink(missing_ok=True)
    atomic_write_text(out, ranked_text(paths, scores, fmt))  # last: the list appears when all is written
    return written


__all__ = [
    "FORMATS",
    "SHEET_IMAGES",
    "contact_sheet",
    "label_studio_task",
    "ranked_text",
    "sheet_path",
    "sheet_size",
    "unreadable_path",
    "write_mined",
]
