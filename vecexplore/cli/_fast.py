"""``vecexplore evaluate`` without Typer, for the common, well-formed invocation.

Typer 0.29 imports pydantic to coerce every option that is not a flag: about
0.3 s, as long as evaluating a COCO-sized set. :func:`parse_evaluate` accepts
exactly ``evaluate``'s options with values Typer would take as they are and
returns :func:`vecexplore.cli._evaluate.run_evaluate`'s keyword arguments;
anything else (``--help``, an unknown, misspelt or repeated single option, a
value out of range or not plainly written, a missing value) returns None and
Typer parses the command line with its own messages. A test holds this table to
the Typer command's parameters and compares both parsers on a table of command
lines.
"""

from __future__ import annotations

import re
from pathlib import Path

#: option → (keyword, kind). Kinds: "paths" (repeatable), "path", "str", "format", "flag",
#: "unit" (a float in [0, 1]), "count" (an int >= 0), "iou_type" (auto | segm | bbox).
OPTIONS: dict[str, tuple[str, str]] = {
    "--gt": ("gt", "paths"),
    "--pred": ("pred", "paths"),
    "--images": ("images", "path"),
    "--format": ("format", "format"),
    "--names": ("names", "str"),
    "--clip": ("clip", "flag"),
    "--no-clip": ("no_clip", "flag"),
    "--allow-outside-root": ("allow_outside_root", "flag"),
    "--iou": ("iou", "unit"),
    "--iou-type": ("iou_type", "iou_type"),
    "--conf": ("conf", "unit"),
    "--json": ("json_out", "path"),
    "--plots": ("plots", "path"),
    "--top": ("top", "count"),
}
DEFAULTS = {"gt": None, "pred": None, "images": None, "format": "auto", "names": None, "clip": False,
            "no_clip": False, "allow_outside_root": False, "iou": 0.5, "conf": None, "json_out": None,
            "plots": None, "top": 10, "iou_type": None}
_FORMATS = ("auto", "coco", "yolo", "csv", "imagefolder")
_IOU_TYPES = {"auto": None, "segm": "segm", "bbox": "bbox"}  # run_evaluate's value of each --iou-type
_UNIT = re.compile(r"(0|1)?(\.[0-9]+)?|0\.|1\.")  # 0, 1, .5, 0.25, 1.0 …: what float() and Typer read alike
_COUNT = re.compile(r"[0-9]{1,9}")


def parse_evaluate(args: list[str]) -> dict | None:
    """Keyword arguments for ``run_evaluate`` from the words after ``evaluate``, or None."""
    out = dict(DEFAULTS)
    seen: set[str] = set()
    i = 0
    while i < len(args):
        word = args[i]
        name, eq, inline = word.partition("=")
        if name not in OPTIONS:
            return None
        key, kind = OPTIONS[name]
        if kind == "flag":
            if eq:
                return None
            out[key] = True
            i += 1
            continue
        if eq:
            value = inline
        elif i + 1 < len(args):
            value = args[i + 1]
            i += 1
        else:
            return None
        i += 1
        if not value or value.startswith("-"):
            return None  # Typer decides what an option-looking value means
        if kind == "paths":
            out[key] = [*(out[key] or []), Path(value)]
            continue
        if key in seen:
            return None  # a repeated single option: Typer's rule applies
        seen.add(key)
        if kind == "path":
            out[key] = Path(value)
        elif kind == "str":
            out[key] = value
        elif kind == "format":
            if value.lower() not in _FORMATS:
                return None
            out[key] = value.lower()
        elif kind == "iou_type":
            if value.lower() not in _IOU_TYPES:
                return None
            out[key] = _IOU_TYPES[value.lower()]
        elif kind == "unit":
            if not _UNIT.fullmatch(value) or value in ("", ".") or not 0.0 <= float(value) <= 1.0:
                return None
            out[key] = float(value)
        elif kind == "count":
            if not _COUNT.fullmatch(value):
                return None
            out[key] = int(value)
    return out
