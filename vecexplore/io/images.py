"""Robust image decoding shared by the embedding pipeline and the app.

:func:`open_rgb` turns any file Pillow can read into an 8-bit RGB image the way a
person would see it, or raises :class:`DecodeError` with a short reason:

* EXIF orientation is applied (``ImageOps.exif_transpose``); a broken EXIF block
  leaves the pixels as stored.
* Modes: ``1``/``L``/``CMYK``/``YCbCr``/``RGBX`` → RGB by Pillow's conversion;
  16-bit ``I;16*`` is scaled to 8 bits (``v * 255 / 65535`` rounded half up, never clipped);
  32-bit ``I`` is read as 16-bit data when it lies in ``[0, 65535]`` (that is what
  16-bit PNG/TIFF decode to), otherwise stretched min→0, max→255; float ``F`` is
  read as ``[0, 1]`` when it lies there, otherwise stretched the same way.
* Transparency (``RGBA``, ``LA``, ``PA``, ``P``/``L``/``RGB`` with a ``tRNS``
  colour, premultiplied ``RGBa``/``La``) is composited over mid-grey
  :data:`BACKGROUND` ``(128, 128, 128)``: neutral for CLIP, whose normalisation
  mean is about 0.45, and distinct from both black and white content.
* Multi-frame files (GIF, TIFF) give their first frame.
* Colour profiles (ICC) are not applied.

Size policy (decompression bombs and legitimately huge images):

* Pillow's own bomb guard applies at open: more than ``2 × PIL.Image.MAX_IMAGE_PIXELS``
  (≈179 Mpx by default, e.g. 20000×20000) → ``DecodeError("decompression bomb …")``.
  Users who trust their data can raise ``Image.MAX_IMAGE_PIXELS``.
* Images above :data:`MAX_DECODE_PIXELS` (4096² ≈ 16.8 Mpx) are returned reduced to
  fit it, aspect ratio kept. JPEGs are decoded directly at a reduced DCT scale
  (``Image.draft``), so a 12000×12000 JPEG is never held at full size.
* Formats that cannot decode at reduced scale (PNG, TIFF, …) are decoded fully,
  but only up to :data:`MAX_FULL_DECODE_PIXELS` (8192² ≈ 67 Mpx, ≈200 MB as RGB);
  beyond that → ``DecodeError("too large …")``.
* The size of the file's image (after EXIF rotation) is kept in
  ``image.info["original_size"]`` so callers can rescale box coordinates.

Truncated files are errors: every decode is forced to completion and
``ImageFile.LOAD_TRUNCATED_IMAGES`` is never touched.

Only regular files are opened: a directory, FIFO, socket or device is a
``DecodeError`` ("not a regular file (a FIFO)") decided by ``stat``
alone, so a FIFO among the images never blocks a build (:mod:`vecexplore.io.files`).
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import warnings
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vecexplore.errors import InputError
from vecexplore.io.files import open_regular

log = logging.getLogger(__name__)

BACKGROUND: tuple[int, int, int] = (128, 128, 128)
MAX_DECODE_PIXELS: int = 4096 * 4096
MAX_FULL_DECODE_PIXELS: int = 8192 * 8192
# Bumped whenever decoding could produce different pixels for the same file; part
# of embedding cache keys so a policy change never mixes old and new vectors.
DECODE_VERSION: str = "decode-v1"

_DRAFTABLE = ("JPEG", "MPO")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class DecodeError(InputError):
    """An image file could not be decoded.

    ``str(err)`` is ``"<path>: <reason>"``; ``err.reason`` is the short reason alone
    ("zero-byte file", "truncated image data", …), suitable for a table column.
    """

    def __init__(self, reason: str, *, path: str | Path):
        self.reason = reason
        super().__init__(reason, path=path)


def _target_size(size: tuple[int, int], size_hint: int | None) -> tuple[int, int]:
    """The size an image of ``size`` is delivered at: at most :data:`MAX_DECODE_PIXELS`
    pixels, and with its shorter side reduced to ``size_hint`` when given; aspect kept."""
    w, h = size
    scale = 1.0
    if w * h > MAX_DECODE_PIXELS:
        scale = math.sqrt(MAX_DECODE_PIXELS / (w * h))
    if size_hint is not None and min(w, h) > size_hint:
        scale = min(scale, size_hint / min(w, h))
    if scale >= 1.0:
        return w, h
    return max(1, round(w * scale)), max(1, round(h * scale))


_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)


def _sniff(f: BinaryIO) -> str | None:
    """The image format a file's first bytes claim, if any (to tell truncated from foreign)."""
    try:
        f.seek(0)
        head = f.read(12)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _SIGNATURES if head.startswith(magic)), None)


def open_image_file(path: str | Path) -> BinaryIO:
    """Open an image file for reading, refusing what is not a regular file unopened.

    Raises:
        DecodeError: missing, a directory, FIFO, socket or device, or unreadable.
    """
    try:
        return open_regular(path, what="an image file")
    except InputError as exc:
        raise DecodeError(exc.detail, path=path) from None


def _open(f: BinaryIO, path: Path) -> Image.Image:
    """Pillow's lazy open of the already opened file ``f`` (``path`` names it in errors)."""
    try:
        if os.fstat(f.fileno()).st_size == 0:
            raise DecodeError("zero-byte file", path=path)
        with warnings.catch_warnings():
            # Between MAX_IMAGE_PIXELS and twice that Pillow only warns; our own
            # size policy below decides what to do with such images.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(f)
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"decompression bomb: {exc}", path=path) from None
    except UnidentifiedImageError:
        kind = _sniff(f)
        if kind:
            raise DecodeError(f"truncated or corrupt {kind} header", path=path) from None
        raise DecodeError("not an image (format not recognised)", path=path) from None
    except Exception as exc:  # any plugin may raise anything on a malformed header
        raise DecodeError(f"unreadable header: {type(exc).__name__}: {exc}", path=path) from None


def _load(im: Image.Image, path: Path, size_hint: int | None) -> None:
    """Decode the pixels, at reduced JPEG scale when the image is big."""
    w, h = im.size
    target = _target_size((w, h), size_hint)
    if im.format in _DRAFTABLE and target != (w, h):
        # DCT scaling to the smallest of 1/1, 1/2, 1/4, 1/8 that keeps >= target.
        im.draft(None, target)
    dw, dh = im.size
    if dw * dh > MAX_FULL_DECODE_PIXELS:
        raise DecodeError(
            f"too large: {w}×{h} pixels; {im.format or 'this format'} cannot be decoded at reduced "
            f"size and the limit for a full decode is {MAX_FULL_DECODE_PIXELS:,} pixels",
            path=path,
        )
    try:
        im.load()
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg or "premature end" in msg.lower():
            raise DecodeError("truncated image data", path=path) from None
        raise DecodeError(f"corrupt image data: {msg}", path=path) from None
    except Exception as exc:
        raise DecodeError(f"corrupt image data: {type(exc).__name__}: {exc}", path=path) from None


def _scale_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """16-bit / 32-bit int / float pixel data → uint8, by the rules in the module doc."""
    a = arr.astype(np.float64)
    if mode.startswith("I;16"):
        lo, hi = 0.0, 65535.0
    elif a.size == 0:
        lo, hi = 0.0, 1.0
    elif mode == "I" and a.min() >= 0 and a.max() <= 65535:
        lo, hi = 0.0, 65535.0
    elif mode == "F" and a.min() >= 0 and a.max() <= 1:
        lo, hi = 0.0, 1.0
    else:
        finite = a[np.isfinite(a)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if hi <= lo:
            hi = lo + 1.0
    a = np.nan_to_num(a, nan=lo, posinf=hi, neginf=lo)
    out = np.floor((np.clip(a, lo, hi) - lo) * 255.0 / (hi - lo) + 0.5)  # round half up
    return out.astype(np.uint8)


def _composite(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_rgb(im: Image.Image, path: Path) -> Image.Image:
    """8-bit RGB pixels of ``im``; ``im`` itself when it already is plain RGB."""
    mode = im.mode
    try:
        if mode == "RGB" and "transparency" not in im.info:
            return im
        if mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in im.info):
            return _composite(im.convert("RGBA"))
        if mode.startswith("I") or mode == "F":
            return Image.fromarray(_scale_to_uint8(np.asarray(im), mode), mode="L").convert("RGB")
        return im.convert("RGB")
    except (ValueError, OSError) as exc:
        raise DecodeError(f"cannot convert mode {mode} to RGB: {exc}", path=path) from None


def _shrink(im: Image.Image, target: tuple[int, int]) -> Image.Image:
    """Downscale to ``target`` if larger (before the mode conversion, to save memory)."""
    if im.size[0] <= target[0] and im.size[1] <= target[1]:
        return im
    if im.mode in ("1", "P", "PA"):  # resizing indices would need NEAREST: go to colours first
        im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
    elif im.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        im = im.convert("I")  # resize does not filter 16-bit modes; I keeps the values
    return im.resize(target, Image.Resampling.BICUBIC, reducing_gap=3.0)


def open_rgb(path: str | Path, *, size_hint: int | None = None) -> Image.Image:
    """Decode an image file to 8-bit RGB, oriented as its EXIF says.

    Args:
        path: the image file.
        size_hint: if given, the caller will resize to about this many pixels on
            the shorter side (thumbnails, model input): a JPEG may then be decoded
            at a reduced DCT scale (1/2, 1/4, 1/8: several times faster) chosen so
            that its shorter side stays ≥ ``size_hint``. Nothing is resized further.
            None (the default) keeps full resolution up to :data:`MAX_DECODE_PIXELS`.

    Returns:
        A loaded ``RGB`` image, independent of the file (the file is closed).
        ``image.info["original_size"]`` is the file's ``(width, height)`` after EXIF
        rotation; ``image.size`` is smaller only for images above the size policy
        or JPEGs reduced for ``size_hint``.

    Raises:
        DecodeError: zero-byte, missing, unreadable, not an image, truncated,
            corrupt, or over the size policy (see the module docstring).
    """
    path = Path(path)
    with open_image_file(path) as f:
        return _decode(f, path, size_hint)


def _decode(f: BinaryIO, path: Path, size_hint: int | None) -> Image.Image:
    """:func:`open_rgb` on the open file ``f``; the result does not need ``f``."""
    im = _open(f, path)
    try:
        stored = im.size
        _load(im, path, size_hint)
        img = _shrink(im, _target_size(stored, None))
        before = img.size
        try:
            # in place: no extra copy of a large image when nothing needs turning
            ImageOps.exif_transpose(img, in_place=True)
        except Exception as exc:  # malformed EXIF must not lose a decodable image
            log.debug("%s: ignoring unreadable EXIF orientation: %s", path, exc)
        quarter_turn = img.size != before
        rgb = _to_rgb(img, path)
    except BaseException:
        im.close()
        raise
    if rgb is im and getattr(im, "n_frames", 1) > 1:
        rgb = im.copy()  # detach from the still-open multi-frame file
    if rgb is not im:
        im.close()
    rgb.info = {"original_size": stored[::-1] if quarter_turn else stored}
    return rgb


def file_digest(path: str | Path, *, chunk_size: int = 1 << 20, what: str = "a file") -> str:
    """Content hash of a file: BLAKE2b-160 of its bytes, hex (40 characters), streamed.

    ``what`` names the expected file in the refusal of a directory ("an image file").

    Raises:
        InputError: the file is missing, not a regular file, or unreadable.
    """
    h = hashlib.blake2b(digest_size=20)
    try:
        with open_regular(path, what=what) as f:  # a FIFO is refused, never waited on
            while chunk := f.read(chunk_size):
                h.update(chunk)
    except InputError as exc:
        raise InputError(f"cannot read file: {exc.detail}", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}", path=path) from None
    return h.hexdigest()


def make_thumbnail(
    path: str | Path,
    size: int,
    *,
    format: Literal["JPEG", "PNG", "WEBP"] = "JPEG",
    quality: int = 85,
) -> bytes:
    """Encode a thumbnail of an image whose longer side is at most ``size`` pixels.

    Decodes with :func:`open_rgb` (so orientation, modes and transparency are
    handled as everywhere else) and never upscales.

    Returns:
        The encoded file's bytes in ``format``.

    Raises:
        DecodeError: the image cannot be decoded.
        ValueError: ``size`` < 1 or an unknown format.
    """
    if size < 1:
        raise ValueError(f"thumbnail size must be >= 1, got {size}")
    if format not in ("JPEG", "PNG", "WEBP"):
        raise ValueError(f"unknown thumbnail format {format!r}; use JPEG, PNG or WEBP")
    img = open_rgb(path, size_hint=size)
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    kwargs = {"quality": quality} if format in ("JPEG", "WEBP") else {"optimize": False}
    img.save(buf, format=format, **kwargs)
    return buf.getvalue()
