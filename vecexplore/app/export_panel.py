"""Export the selection from the page: write it under ``RUN/exports/`` and download it in the browser.

:func:`write_export` names the file after the selection
(:func:`vecexplore.export.describe_selection`) and never overwrites one: the
name is reserved with an exclusive create (safe across sessions and
processes) and a counter is added when it is taken.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vecexplore.errors import ConfigError

#: Page formats: (value, label, extension); coco is for detection runs only.
FORMATS = (("coco", "COCO subset (relabeling)", "json"), ("csv", "CSV table", "csv"),
           ("json", "JSON records", "json"), ("txt", "Text list of paths", "txt"))


def formats(task: str) -> list[tuple[str, str]]:
    return [(v, label) for v, label, _ in FORMATS if task == "detection" or v != "coco"]


def export_status(text: str, *, code: str | None = None, error: bool = False) -> str:
    """The status line's HTML: ``text`` and an optional ``code`` part (a path), both escaped;
    an error is styled as one (``vx-error``) so a failure never reads like the last success."""
    import html

    body = html.escape(text) + (f"<code>{html.escape(code)}</code>" if code is not None else "")
    return f"<span class='vx-error'>{body}</span>" if error else body


def write_export(run, image_idx: np.ndarray, *, fmt: str, how: str) -> Path:
    """Write ``image_idx`` of ``run`` in ``fmt`` to a new file directly under ``RUN/exports/``.

    Raises:
        ConfigError: empty selection or a format this run cannot export.
    """
    from vecexplore.export import describe_selection, export_selection

    ext = {v: e for v, _, e in FORMATS}.get(fmt)
    if ext is None:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(v for v, _, _ in FORMATS)}")
    image_idx = np.unique(np.asarray(image_idx, np.int64))
    if image_idx.size == 0:
        raise ConfigError("the selection is empty; nothing to export")
    if fmt == "coco" and run.task != "detection":
        raise ConfigError("coco export is for detection runs; use csv, json or txt")
    folder = Path(run.path) / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    stem = describe_selection(f"{how}-{fmt}" if fmt == "coco" else how, int(image_idx.size))
    for n in range(1, 10_000):
        out = folder / (f"{stem}.{ext}" if n == 1 else f"{stem}-{n}.{ext}")
        try:
            os.close(os.open(out, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        try:
            return export_selection(run, image_idx, fmt=fmt, out=out, force=True)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
    raise ConfigError(f"{folder}: too many exports named {stem}.*; remove some")


class ExportPanel:
    """Format select, button, status line and the hidden Div that triggers the browser download."""

    def __init__(self, *, task: str, width: int = 240, sheet=None):
        from bokeh.models import Button, CustomJS, Div, Select

        from vecexplore.app import ui

        opts = formats(task)
        self.format = Select(title="Export the selection as", value=opts[0][0], options=opts, name="export-format",
                             width=width)
        self.button = Button(label="Export selection", name="export-button", button_type="primary", width=width)
        self.status = Div(text="", name="export-status", css_classes=["vx-export-status"], width=width,
                          stylesheets=[sheet] if sheet is not None else [])
        self.trigger = ui.text_div(text="", name="export-url", visible=False)
        self.trigger.js_on_change("text", CustomJS(code=ui.js("download")))

    @property
    def widgets(self) -> list:
        return [self.format, self.button, self.status, self.trigger]
