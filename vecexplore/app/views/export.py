"""Export the selection from the page: write it under ``RUN/exports/`` and download it in the browser.

The status line says what the last export wrote, or why it failed; it follows
the selection: once the selection changes, it says the selection is not exported yet.

:func:`write_export` names the file after the selection
(:func:`vecexplore.export.describe_selection`) and never overwrites one: the
name is reserved with an exclusive create (safe across sessions and
processes) and a counter is added when it is taken.

At the object level, with objects selected, the COCO format exports *the
objects*: ``annotations.json`` holds only the selected GT objects and
``predictions.json`` only the selected predictions, on the images they are on
(:func:`vecexplore.export.object_coco_files`); the format "COCO + crops" (runs
with an object map) also puts every selected object's crop in the zip as
``crops/*.png``. The other formats export the images of the selection.
"""

from __future__ import annotations

import html
import logging
import os
from pathlib import Path

import numpy as np

from vecexplore.app import client, ui
from vecexplore.app.view import View
from vecexplore.errors import ConfigError, VecexploreError
from vecexplore.store.layout import EXPORTS

log = logging.getLogger(__name__)

#: Page formats: (value, label, extension); coco is for detection runs only.
#: label-studio is one zip: ``tasks.json`` and ``label_config.xml`` (see :func:`_write_label_studio_zip`).
FORMATS = (("coco", "COCO subset", "zip"), ("coco-crops", "COCO + crops", "zip"),
           ("label-studio", "Label Studio tasks", "zip"),
           ("cvat", "CVAT archive", "zip"), ("csv", "CSV table", "csv"),
           ("json", "JSON records", "json"), ("txt", "List of paths", "txt"))


def formats(task: str, *, objects: bool = False) -> list[tuple[str, str]]:
    """(value, label) of the page's formats: coco for detection, "coco-crops" for runs with an object map."""
    return [(v, label) for v, label, _ in FORMATS
            if (task == "detection" or not v.startswith("coco")) and (objects or v != "coco-crops")]


def export_status(text: str, *, code: str | None = None, error: bool = False) -> str:
    """The status line's HTML: ``text`` and an optional ``code`` part (a path), both escaped;
    an error is styled as one (``vx-error``) so a failure never reads like the last success."""
    import html

    body = html.escape(text) + (f"<code>{html.escape(code)}</code>" if code is not None else "")
    return f"<span class='vx-error'>{body}</span>" if error else body


def write_export(run, image_idx: np.ndarray, *, fmt: str, how: str, objects: np.ndarray | None = None,
                 crops: bool = False) -> Path:
    """Write ``image_idx`` of ``run`` in ``fmt`` to a new file directly under ``RUN/exports/``.

    ``objects`` (objects-table rows) with ``fmt="coco"``: the COCO subset of those objects, and
    with ``crops`` their crops too (see the module doc); ``image_idx`` is then their images.

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
    if fmt.startswith("coco") and run.task != "detection":
        raise ConfigError("coco export is for detection runs; use csv, json or txt")
    if fmt == "coco-crops":
        if objects is None:
            raise ConfigError("COCO + crops exports objects: switch the map to Objects and select some")
        fmt, crops = "coco", True
    folder = Path(run.path) / EXPORTS
    folder.mkdir(parents=True, exist_ok=True)
    by_object = objects is not None and fmt == "coco"
    if by_object:
        objects = np.unique(np.asarray(objects, np.int64))
        if objects.size == 0:
            raise ConfigError("the object selection is empty; nothing to export")
        stem = describe_selection(f"{how}-{fmt}", int(objects.size)).replace("-images", "-objects")
    else:
        stem = describe_selection(f"{how}-{fmt}" if ext == "zip" else how, int(image_idx.size))
    for n in range(1, 10_000):
        out = folder / (f"{stem}.{ext}" if n == 1 else f"{stem}-{n}.{ext}")
        try:
            os.close(os.open(out, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        try:
            if by_object:  # the objects, not their whole images
                return _write_object_coco_zip(run, objects, out, crops=crops)
            if fmt == "coco":  # one download: the GT subset and the predictions on it
                return _write_coco_zip(run, image_idx, out)
            if fmt == "label-studio":  # one download: the tasks and the config to create the project with
                return _write_label_studio_zip(run, image_idx, out)
            return export_selection(run, image_idx, fmt=fmt, out=out, force=True)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
    raise ConfigError(f"{folder}: too many exports named {stem}.*; remove some")


def _write_coco_zip(run, image_idx: np.ndarray, out: Path) -> Path:
    """``out`` (a .zip, atomically): ``annotations.json`` (the COCO GT subset) and
    ``predictions.json`` (the predictions on those images, as a COCO results list)."""
    import zipfile

    from vecexplore.atomic import atomic_write
    from vecexplore.export import coco_files

    gt, results = coco_files(run, image_idx)

    def write(fh) -> None:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("annotations.json", gt)
            z.writestr("predictions.json", results)
    atomic_write(out, write)
    return out


def _write_object_coco_zip(run, rows: np.ndarray, out: Path, *, crops: bool) -> Path:
    """``out`` (a .zip, atomically): ``annotations.json`` and ``predictions.json`` of the objects in
    ``rows`` (:func:`vecexplore.export.object_coco_files`) and, with ``crops``, ``crops/<name>.png``
    for each (:func:`vecexplore.export.object_crops`)."""
    import zipfile

    from vecexplore.atomic import atomic_write
    from vecexplore.export import object_coco_files, object_crops

    gt, results = object_coco_files(run, rows)

    def write(fh) -> None:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("annotations.json", gt)
            z.writestr("predictions.json", results)
            if crops:
                for name, body in object_crops(run, rows):
                    z.writestr(f"crops/{name}", body)
    atomic_write(out, write)
    return out


def _write_label_studio_zip(run, image_idx: np.ndarray, out: Path) -> Path:
    """``out`` (a .zip, atomically): ``tasks.json`` (Label Studio tasks with the GT and the
    predictions) and ``label_config.xml``. Images are Label Studio local files under the run's
    images root when every image lies in it (:func:`~vecexplore.labeltools.label_studio.images_root_of`),
    else absolute paths; ``README.txt`` says how to import and serve them."""
    import json
    import zipfile

    from vecexplore.atomic import atomic_write
    from vecexplore.labeltools.label_studio import (
        images_root_of,
        import_hint,
        label_config,
        run_tasks,
    )

    root = images_root_of(run, image_idx)
    ds, tasks = run_tasks(run, image_idx, document_root=root)
    hint = "\n".join(import_hint(Path("tasks.json"), config="label_config.xml", document_root=root)) + "\n"

    def write(fh) -> None:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("tasks.json", json.dumps(tasks, indent=1) + "\n")
            z.writestr("label_config.xml", label_config(ds))
            z.writestr("README.txt", hint)
    atomic_write(out, write)
    return out


def _reason(exc: Exception) -> str:
    """What went wrong, for a person: our errors carry their message; an OSError its path and strerror."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


class ExportView(View):
    """Format and button (in the gallery's bar), and the status beside the header: the selection in
    words, and what its last export wrote or why it failed (while the selection is the one exported)."""

    name = "export"
    slot = "gallery"
    depends = frozenset({"export", "selection", "level"})

    def __init__(self, ctx):
        super().__init__(ctx)
        from bokeh.models import Button, CustomJS, Div, Row, Select

        self.objects = getattr(self.data, "object_map", None) is not None
        opts = formats(self.task, objects=self.objects)
        self.format = Select(value=opts[0][0], options=opts, name="export-format", width=124,
                             html_attributes={"title": "Export the selection as"})
        self.button = Button(label="Export", name="export-button", button_type="primary", width=76,
                             html_attributes={"title": "Write the selection under RUN/exports/ and download it"})
        self.trigger = ui.text_div(text="", name="export-url", visible=False)
        self.trigger.js_on_change("text", CustomJS(code=ui.js("download")))
        self.row = Row(self.format, self.button, self.trigger, name="export-bar", css_classes=["vx-export-bar"])
        self.status = Div(text="", name="export-status", css_classes=["vx-export-status"], width=260)
        self._serial = 0

    def layout(self):
        return self.row

    def layouts(self) -> dict:
        return {"gallery.bar": self.row, "header": self.status}

    def compute(self, d):
        from vecexplore.app.views.header import selection_text

        e, sel = d.state.export, d.selection
        if e is not None and same_selection(e.images, sel):
            note = export_status(e.text, error=e.error)
        elif sel is None:
            note = ""
        else:
            note = export_status("Not exported yet.")
        text = f"<div class='vx-seltext'>{html.escape(selection_text(d))}</div><div class='vx-note'>{note}</div>"
        return {"serial": 0 if e is None else e.serial, "url": "" if e is None else e.url, "status": text}

    def apply(self, p) -> None:
        if p["serial"] != self._serial and p["url"]:
            self.trigger.text = p["url"]  # a new text downloads (download.js)
        self._serial = p["serial"]
        self.status.text = p["status"]

    def wire(self, session) -> None:
        values = {v for v, _ in formats(self.task, objects=self.objects)}

        def click():
            fmt = client.choice(self.format.value, values)
            if fmt is None:
                ui.refused("export-format", self.format.value)
                return
            session.run(lambda: self._export(session, fmt))

        self.button.on_click(click)

    def _export(self, session, fmt: str) -> None:
        """Write the selection (a job of its own); the result comes back as an Exported event."""
        from vecexplore.app.events import Exported

        d = session.derived
        sel = d.selection
        objects = d.object_selection if d.state.level == "objects" else None  # the objects the gallery shows
        if objects is not None and fmt.startswith("coco"):
            return self._export_objects(session, d, objects, crops=fmt == "coco-crops")
        if sel is None:
            session.emit(Exported("Nothing is selected: lasso points, click a matrix cell or a cluster row first.",
                                  images=None, error=True))
            return
        try:
            path = write_export(self.data.run, sel, fmt=fmt, how=d.describe())
        except Exception as exc:  # a failure must never leave the last success on screen
            if not isinstance(exc, (VecexploreError, OSError)):
                log.exception("export of %d images failed", len(sel))
            session.emit(Exported(f"Export failed: {_reason(exc)}", images=sel, error=True))
            return
        log.info("exported %d images to %s", len(sel), path)
        session.emit(Exported(f"Wrote {len(sel):,} images to {path}", images=sel, path=str(path),
                              url=f"{self.ctx.url_base}/export/{path.name}|{path.name}"))


    def _export_objects(self, session, d, objects: np.ndarray, *, crops: bool) -> None:
        from vecexplore.app.events import Exported

        sel = d.selection
        try:
            path = write_export(self.data.run, sel, fmt="coco", how=d.describe(), objects=objects, crops=crops)
        except Exception as exc:
            if not isinstance(exc, (VecexploreError, OSError)):
                log.exception("export of %d objects failed", len(objects))
            session.emit(Exported(f"Export failed: {_reason(exc)}", images=sel, error=True))
            return
        log.info("exported %d objects to %s", len(objects), path)
        with_crops = " with their crops" if crops else ""
        session.emit(Exported(f"Wrote {len(objects):,} objects on {len(sel):,} images{with_crops} to {path}",
                              images=sel, path=str(path), url=f"{self.ctx.url_base}/export/{path.name}|{path.name}"))


def same_selection(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return a is b or (a.shape == b.shape and np.array_equal(a, b))
