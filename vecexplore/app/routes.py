"""HTTP routes that bring a run's images and exports to the browser.

Four routes per run, under ``url_base = f"/vx/{key}"``:

``GET {url_base}/thumb/{image_id}``
    The packed 160 px JPEG thumbnail of the build (``image/jpeg``), cached by
    the browser for a day and revalidated by an ETag derived from the image's
    content digest.
``GET {url_base}/image/{image_id}``
    The full image, decoded with :func:`~vecexplore.io.images.open_rgb` (EXIF
    orientation, CMYK, 16-bit, transparency all handled) and re-encoded: PNG
    when the source file is a PNG, JPEG otherwise. The served pixel grid is the
    image table's coordinate frame (``width`` × ``height``, the frame box
    coordinates are in) scaled by ``s = min(1, MAX_SIDE / max(width, height))``;
    the header ``X-Vecexplore-Scale`` carries ``s``. So a page that places the
    image over ``[0, width] × [0, height]`` in data units draws boxes on the
    right pixels even when the file's own size differs from the table's.
``GET {url_base}/crop/{row}``
    A run with an object map (:mod:`vecexplore.app.objects`): the crop of the
    object in row ``row`` of the objects table, the build's crop window (context
    padding, minimum size) as a 128 px JPEG. It is cut from the thumbnail when
    the window covers 128 thumbnail pixels, else from the image (a JPEG decoded
    at a reduced scale where that still gives 128 px); crops are kept in a
    per-run LRU cache (:data:`CROP_CACHE` crops) and cached by the browser with
    an ETag of the image's digest and the row. ``row`` must be the canonical
    decimal form of a row of the table (any other is 404).
``GET {url_base}/export/{file_name}``
    A file written by the page directly inside ``RUN/exports/``, as an
    attachment (``application/json``, ``text/csv``, ``text/plain`` or
    ``application/zip``).

Unreadable images (undecodable at build time, or missing/corrupt now, or, for a
run built without ``--allow-outside-root``, resolving outside the run's images
root now: a symlink changed since the build) get a generated grey placeholder PNG with a cross and the word "unreadable", HTTP 200
and the header ``X-Vecexplore-Unreadable: 1`` (never cached), so an ``<img>``
always shows something and a script can still tell.

Everything else is 404, decided by pure functions tested without a server: an
image id must be the canonical decimal form of an id of this run (``..``,
absolute paths, percent-encoded or double-encoded traversal, backslashes, NUL
bytes, signs other than one leading ``-``, leading zeros, non-ASCII digits and
unknown ids are all refused), and an export name must be a plain file name
(letters, digits, ``._-``, not starting with a dot) of a regular file whose
resolved path lies directly in ``RUN/exports``.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import io
import logging
import math
import os
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vecexplore.store.layout import EXPORTS

log = logging.getLogger(__name__)

#: Longest side of a served full image, in pixels.
MAX_SIDE = 2048
#: JPEG quality of served full images.
JPEG_QUALITY = 90
#: Browser cache lifetime of thumbnails and full images (seconds); ETags revalidate after.
CACHE_SECONDS = 86400
#: Sub-directory of a run where page exports are written and served from.
#: Content types of the export files the route serves, by suffix; other suffixes are 404.
EXPORT_TYPES: dict[str, str] = {
    ".json": "application/json",
    ".csv": "text/csv; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".zip": "application/zip",
}
UNREADABLE_HEADER = "X-Vecexplore-Unreadable"
SCALE_HEADER = "X-Vecexplore-Scale"

_ID_RE = re.compile(r"0|-?[1-9][0-9]{0,18}")
_EXPORT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_INT64_MAX = 2**63 - 1
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


#: Crops kept per run by the crop route (about 5 kB each).
CROP_CACHE = 4096

# ---------------------------------------------------------------- pure validation


def parse_object_row(raw: str | None, n: int) -> int | None:
    """The objects-table row a URL segment spells (canonical decimal, ``0 <= row < n``), or None."""
    value = parse_image_id(raw)
    return value if value is not None and 0 <= value < n else None


def parse_image_id(raw: str | None) -> int | None:
    """The integer image id a URL segment spells, or None.

    Only the canonical decimal form is accepted (``"42"``, ``"-7"``, ``"0"``):
    no ``+``, no leading zeros, no whitespace, ASCII digits only, within int64.
    ``raw`` is the segment after Tornado's single percent-decoding, so
    ``%2e%2e%2f`` arrives as ``../`` and is refused here; a double-encoded
    ``%252e`` arrives as ``%2e`` and is refused too.
    """
    if raw is None or not _ID_RE.fullmatch(raw):
        return None
    value = int(raw)
    return value if -_INT64_MAX - 1 <= value <= _INT64_MAX else None


def lookup_image(data: Any, raw: str | None) -> int | None:
    """``image_idx`` of the image whose id ``raw`` spells in ``data`` (a RunData), or None."""
    image_id = parse_image_id(raw)
    if image_id is None:
        return None
    idx = int(data.index_of_image_id(image_id))
    return idx if idx >= 0 else None


def export_file(exports_dir: str | Path, raw: str | None) -> Path | None:
    """The file ``raw`` names directly inside ``exports_dir``, or None.

    Refused: anything but a plain name (no separators, ``..``, NUL, leading
    dot, characters outside ``[A-Za-z0-9._-]``), a suffix not in
    :data:`EXPORT_TYPES`, a missing file or a directory, and a symlink (its
    target may lie outside ``exports_dir`` or have another type).
    """
    if raw is None or not _EXPORT_NAME_RE.fullmatch(raw) or ".." in raw:
        return None
    if Path(raw).suffix.lower() not in EXPORT_TYPES:
        return None
    base = Path(exports_dir)
    try:
        resolved_base = base.resolve(strict=True)
        candidate = (base / raw).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if candidate.parent != resolved_base or candidate.name != raw or not candidate.is_file():
        return None
    return candidate


def served_size(table_size: tuple[int, int], decoded_size: tuple[int, int], max_side: int = MAX_SIDE) -> tuple[tuple[int, int], float]:
    """``((w, h), s)``: the size a full image is served at, and its scale to the table frame.

    The served frame is the table's ``(width, height)`` scaled by
    ``s = min(1, max_side / max(width, height))``; when the table has no size
    (0), the decoded size is used instead and ``s`` is relative to it.
    """
    tw, th = table_size
    if tw <= 0 or th <= 0:
        tw, th = decoded_size
    s = min(1.0, max_side / max(tw, th, 1))
    return (max(1, round(tw * s)), max(1, round(th * s))), s


# ---------------------------------------------------------------- rendering


@dataclass(frozen=True)
class Rendered:
    """An encoded image ready to send: bytes, content type and scale to the table frame."""

    body: bytes
    content_type: str
    scale: float
    unreadable: bool = False


def _is_png(path: Path) -> bool:
    from vecexplore.errors import InputError
    from vecexplore.io.files import open_regular

    try:
        with open_regular(path) as f:  # never blocks on a FIFO swapped in after the decode
            return f.read(8) == _PNG_MAGIC
    except (OSError, InputError):
        return False


def render_full_image(path: str | Path, table_size: tuple[int, int], *, max_side: int = MAX_SIDE) -> Rendered:
    """Decode ``path`` and encode it in the table's frame (see the module doc).

    An undecodable file gives the placeholder (``unreadable=True``) instead of raising.
    """
    from PIL import Image

    from vecexplore.io.images import DecodeError, open_rgb

    path = Path(path)
    tw, th = table_size
    hint = None
    if tw > 0 and th > 0 and max(tw, th) > max_side:
        # Lets JPEGs decode at a reduced DCT scale; the short side still >= its target.
        hint = math.ceil(min(tw, th) * max_side / max(tw, th))
    try:
        img = open_rgb(path, size_hint=hint)
    except DecodeError as exc:
        log.warning("%s", exc)
        return placeholder_image(table_size, max_side=max_side)
    (w, h), scale = served_size(table_size, img.size, max_side)
    if img.size != (w, h):
        img = img.resize((w, h), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    if _is_png(path):
        img.save(buf, format="PNG", compress_level=3)
        content_type = "image/png"
    else:
        img.save(buf, format="JPEG", quality=JPEG_QUALITY)
        content_type = "image/jpeg"
    return Rendered(buf.getvalue(), content_type, scale)


@functools.lru_cache(maxsize=64)
def _placeholder_png(w: int, h: int) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (w, h), (200, 200, 200))
    draw = ImageDraw.Draw(img)
    line = max(1, min(w, h) // 40)
    draw.line([(0, 0), (w - 1, h - 1)], fill=(150, 150, 150), width=line)
    draw.line([(0, h - 1), (w - 1, 0)], fill=(150, 150, 150), width=line)
    text = "unreadable"
    left, top, right, bottom = draw.textbbox((0, 0), text)
    tx, ty = (w - (right - left)) // 2, (h - (bottom - top)) // 2
    draw.rectangle([tx - 4, ty - 3, tx + right - left + 4, ty + bottom - top + 3], fill=(200, 200, 200))
    draw.text((tx - left, ty - top), text, fill=(90, 90, 90))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def placeholder_image(table_size: tuple[int, int] = (0, 0), *, max_side: int = 320) -> Rendered:
    """The grey "unreadable" PNG, in the table's aspect ratio (160 px square when unknown)."""
    tw, th = table_size
    if tw <= 0 or th <= 0:
        tw = th = 160
    (w, h), _ = served_size((tw, th), (tw, th), max_side)
    return Rendered(_placeholder_png(w, h), "image/png", w / tw, unreadable=True)


# ---------------------------------------------------------------- tornado handlers


class RunFiles:
    """Everything the handlers of one run need, prepared once (read-only afterwards).

    Args:
        data: the run's :class:`~vecexplore.app.data.RunData`.
    """

    def __init__(self, data: Any):
        self.data = data
        self.width = data.images.width
        self.height = data.images.height
        self.readable = data.images.readable
        images = data.run.images
        digests = images["digest"].to_numpy(object) if "digest" in images else np.full(len(images), "", object)
        run_tag = hashlib.sha1(str(data.run.manifest.get("created", "")).encode()).hexdigest()[:8]
        self.digests = np.array([d if d else f"run-{run_tag}-{i}" for i, d in enumerate(digests)], dtype=object)
        self.exports_dir = Path(data.run.path) / EXPORTS
        # Defence in depth: the build refused images outside the root; check again at serve time.
        inputs = data.run.manifest.get("inputs", {})
        self.allow_outside_root = bool(inputs.get("allow_outside_root", False))
        root = inputs.get("images_root")
        self.real_root = os.path.realpath(root) if root else None
        self._crops: collections.OrderedDict[int, Rendered] = collections.OrderedDict()  # row → crop, LRU
        self._crop_lock = threading.Lock()

    def servable(self, path: Path) -> bool:
        """Whether the full image at ``path`` may be served: under the images root (real
        paths), or anywhere for a run built with ``--allow-outside-root``."""
        from vecexplore.io.paths import is_inside

        if self.allow_outside_root:
            return True
        return self.real_root is not None and is_inside(os.path.realpath(path), self.real_root)

    def table_size(self, idx: int) -> tuple[int, int]:
        return int(self.width[idx]), int(self.height[idx])

    def crop(self, row: int) -> Rendered:
        """The crop of objects-table ``row`` (see the module doc); cached, thread-safe."""
        with self._crop_lock:
            hit = self._crops.get(row)
            if hit is not None:
                self._crops.move_to_end(row)
                return hit
        rendered = render_object_crop(self, row)
        if not rendered.unreadable:
            with self._crop_lock:
                self._crops[row] = rendered
                while len(self._crops) > CROP_CACHE:
                    self._crops.popitem(last=False)
        return rendered


def render_object_crop(files: RunFiles, row: int) -> Rendered:
    """Cut the crop of objects-table ``row`` (from the thumbnail or the image, see the module doc)."""
    from PIL import Image

    from vecexplore.app.objects import CROP_SIDE, crop_box, crop_source, render_crop
    from vecexplore.io.images import DecodeError, open_rgb
    from vecexplore.thumbs import THUMB_SIZE

    data = files.data
    omap = data.object_map
    idx = int(omap.image_idx[row])
    size = files.table_size(idx)
    window, _ = crop_box(omap, row, *size)
    if not files.readable[idx]:
        return placeholder_image((CROP_SIDE, CROP_SIDE), max_side=CROP_SIDE)
    thumb = data.thumbs.get(idx) if crop_source(window, size, THUMB_SIZE) == "thumb" else None
    if thumb is not None:
        with Image.open(io.BytesIO(thumb)) as img:
            return Rendered(render_crop(img, window, size), "image/jpeg", 1.0)
    path = Path(data.image_path(idx))
    if not path.exists() or not files.servable(path):
        return placeholder_image((CROP_SIDE, CROP_SIDE), max_side=CROP_SIDE)
    side = max(float(window[2] - window[0]), 1.0)
    short = min(size) if min(size) > 0 else None
    hint = None if short is None else max(1, min(short, math.ceil(short * CROP_SIDE / side)))
    try:
        img = open_rgb(path, size_hint=hint)
    except DecodeError as exc:
        log.warning("%s", exc)
        return placeholder_image((CROP_SIDE, CROP_SIDE), max_side=CROP_SIDE)
    ow, oh = img.info.get("original_size", img.size)
    frame = size if size[0] > 0 and size[1] > 0 else (ow, oh)
    return Rendered(render_crop(img, window, frame), "image/jpeg", 1.0)


_EXECUTOR: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    """Decoding threads shared by every run of the process (the IOLoop never decodes)."""
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="vx-images")
    return _EXECUTOR


def _handler_classes():
    """The Tornado handler classes (built on first use: tornado is imported lazily)."""
    from tornado.ioloop import IOLoop
    from tornado.web import HTTPError, RequestHandler

    class _Base(RequestHandler):
        def initialize(self, files: Callable[[], RunFiles]) -> None:
            self._files_source = files

        async def prepare(self) -> None:
            # The source may load the run on first use: never on the IOLoop thread.
            self.files = await IOLoop.current().run_in_executor(None, self._files_source)

        def decode_argument(self, value: bytes, name: str | None = None) -> str:
            # Invalid UTF-8 would be a 400 from Tornado; it is just another bad name here.
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                return ""

        def set_default_headers(self) -> None:
            self.set_header("X-Content-Type-Options", "nosniff")

        def write_error(self, status_code: int, **kwargs) -> None:
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(f"{status_code} {self._reason}\n")

        def _image_idx(self, raw: str) -> int:
            idx = lookup_image(self.files.data, raw)
            if idx is None:
                raise HTTPError(404)
            return idx

        def _send(self, rendered: Rendered, etag: str | None) -> None:
            self.set_header("Content-Type", rendered.content_type)
            if rendered.unreadable:
                self.set_header(UNREADABLE_HEADER, "1")
                self.set_header("Cache-Control", "no-cache")
            else:
                self.set_header("Cache-Control", f"public, max-age={CACHE_SECONDS}")
                if etag:
                    self.set_header("ETag", etag)
            self.set_header(SCALE_HEADER, f"{rendered.scale:.6g}")
            self.finish(rendered.body)

        def _not_modified(self, etag: str) -> bool:
            self.set_header("ETag", etag)
            if self.check_etag_header():
                self.set_header("Cache-Control", f"public, max-age={CACHE_SECONDS}")
                self.set_status(304)
                self.finish()
                return True
            self.clear_header("ETag")
            return False

        def compute_etag(self) -> str | None:
            return None  # ours are set explicitly; never hash bodies

    class ThumbHandler(_Base):
        def get(self, raw: str) -> None:
            idx = self._image_idx(raw)
            body = self.files.data.thumbs.get(idx)
            if body is None:
                self._send(placeholder_image(), None)
                return
            etag = f'"t-{self.files.digests[idx]}"'
            if self._not_modified(etag):
                return
            from vecexplore.thumbs import THUMB_SIZE

            w, h = self.files.table_size(idx)
            self._send(Rendered(body, "image/jpeg", THUMB_SIZE / max(w, h, 1)), etag)

    class ImageHandler(_Base):
        async def get(self, raw: str) -> None:
            idx = self._image_idx(raw)
            files = self.files
            path = Path(files.data.image_path(idx))
            try:
                st = path.stat()
                stamp = f"{st.st_mtime_ns}-{st.st_size}"
            except OSError:
                stamp = None
            if stamp is None or not files.readable[idx] or not files.servable(path):
                if stamp is not None and files.readable[idx]:
                    log.warning("not serving %s: outside the run's images root %s", path, files.real_root)
                self._send(placeholder_image(files.table_size(idx)), None)
                return
            key = f"{files.digests[idx]}|{stamp}|{MAX_SIDE}|{JPEG_QUALITY}".encode()
            etag = f'"f-{hashlib.sha1(key).hexdigest()[:20]}"'
            if self._not_modified(etag):
                return
            rendered = await IOLoop.current().run_in_executor(
                _executor(), render_full_image, path, files.table_size(idx)
            )
            self._send(rendered, None if rendered.unreadable else etag)

    class CropHandler(_Base):
        async def get(self, raw: str) -> None:
            files = self.files
            omap = getattr(files.data, "object_map", None)
            row = None if omap is None else parse_object_row(raw, len(omap))
            if row is None:
                raise HTTPError(404)
            etag = f'"c-{files.digests[int(omap.image_idx[row])]}-{row}"'
            if self._not_modified(etag):
                return
            rendered = await IOLoop.current().run_in_executor(_executor(), files.crop, row)
            self._send(rendered, None if rendered.unreadable else etag)

    class ExportHandler(_Base):
        async def get(self, raw: str) -> None:
            path = export_file(self.files.exports_dir, raw)
            if path is None:
                raise HTTPError(404)
            self.set_header("Content-Type", EXPORT_TYPES[path.suffix.lower()])
            self.set_header("Content-Disposition", f'attachment; filename="{path.name}"')
            self.set_header("Cache-Control", "no-store")
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    self.write(chunk)
                    await self.flush()
            self.finish()

    return ThumbHandler, ImageHandler, ExportHandler, CropHandler


@functools.lru_cache(maxsize=1)
def handler_classes():
    """``(ThumbHandler, ImageHandler, ExportHandler, CropHandler)``, created once per process."""
    return _handler_classes()


def route_patterns(data: Any, *, url_base: str) -> list[tuple[str, type, dict]]:
    """Tornado URL specs serving ``data``'s thumbnails, images and exports under ``url_base``.

    ``url_base`` is like ``"/vx/run-1"`` (no trailing slash). The patterns
    match one raw path segment (``[^/]+``); Tornado percent-decodes it once
    before the handlers validate it.
    """
    files = RunFiles(data)
    return route_patterns_lazy(lambda: files, url_base=url_base)


def route_patterns_lazy(files: Callable[[], RunFiles], *, url_base: str) -> list[tuple[str, type, dict]]:
    """Like :func:`route_patterns`, for a run loaded on first request: ``files()``
    returns its :class:`RunFiles` (called in a worker thread, must be thread-safe)."""
    thumb, image, export, crop = handler_classes()
    base = re.escape(url_base.rstrip("/"))
    kwargs = {"files": files}
    return [
        (rf"{base}/thumb/([^/]+)", thumb, kwargs),
        (rf"{base}/image/([^/]+)", image, kwargs),
        (rf"{base}/export/([^/]+)", export, kwargs),
        (rf"{base}/crop/([^/]+)", crop, kwargs),
    ]


__all__ = [
    "CACHE_SECONDS",
    "EXPORT_TYPES",
    "MAX_SIDE",
    "Rendered",
    "RunFiles",
    "export_file",
    "handler_classes",
    "lookup_image",
    "parse_image_id",
    "parse_object_row",
    "placeholder_image",
    "render_full_image",
    "render_object_crop",
    "route_patterns",
    "route_patterns_lazy",
    "served_size",
]
