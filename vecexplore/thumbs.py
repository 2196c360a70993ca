"""One streaming pass over the images: thumbnails for the app + pixel properties.

Every image is decoded once at reduced scale (JPEG DCT scaling via
``open_rgb(size_hint=...)``), its thumbnail is appended to a packed file and its
pixel properties are computed from the same pixels. Work is spread over worker
processes; results are consumed in order, so memory stays bounded by the pool's
in-flight chunks whatever the image count.

The packed store (``thumbs.bin`` + ``thumbs.npy``) keeps 100k thumbnails in two
files: ``thumbs.npy`` is ``(N, 2) int64`` ``(offset, length)`` into ``thumbs.bin``;
length 0 means no thumbnail (the image could not be decoded).

:func:`find_undecodable` runs the same decode without thumbnails, for
``vecexplore check-data``: it lists exactly the images a build will mark unreadable.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vecexplore.progress import progress_bar
from vecexplore.properties import PIXEL_PROPERTIES, analysis_image, pixel_properties

log = logging.getLogger(__name__)

THUMB_SIZE = 160
THUMB_QUALITY = 80
#: The ``open_rgb`` size hint of the scan's one decode per image.
SCAN_SIZE_HINT = THUMB_SIZE * 2
_CHUNK = 32


@dataclass(frozen=True)
class ScanResult:
    """Per-image outputs of :func:`scan_images`, aligned to the input paths.

    Attributes:
        properties: dict name -> (N,) float64 (NaN where undecodable), keys
            :data:`~vecexplore.properties.PIXEL_PROPERTIES`.
        ok: (N,) bool, decoded.
        error: (N,) object, reason where not ok, else None.
    """

    properties: dict
    ok: np.ndarray
    error: np.ndarray


def _scan_one(path: str) -> tuple[bytes | None, dict | None, str | None]:
    from vecexplore.io.images import DecodeError, open_rgb

    try:
        img = open_rgb(path, size_hint=SCAN_SIZE_HINT)
    except DecodeError as exc:
        return None, None, exc.reason
    props = pixel_properties(analysis_image(img))
    thumb = img.copy()
    thumb.thumbnail((THUMB_SIZE, THUMB_SIZE))
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=THUMB_QUALITY, optimize=True)
    return buf.getvalue(), props, None


def _scan_chunk(paths: list[str]) -> list[tuple[bytes | None, dict | None, str | None]]:
    return [_scan_one(p) for p in paths]


def scan_images(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    workers: int | None = None,
    progress: bool = False,
) -> ScanResult:
    """Write ``thumbs.bin``/``thumbs.npy`` into ``out_dir`` and return pixel properties.

    Args:
        paths: image files in image-table order.
        out_dir: the (temporary) run directory being written.
        workers: decoding processes; None → ``min(4, cpu_count)``; 0 → in this process.
        progress: draw a progress bar (images/s).
    """
    out_dir = Path(out_dir)
    paths = [str(p) for p in paths]
    n = len(paths)
    props = {name: np.full(n, np.nan) for name in PIXEL_PROPERTIES}
    ok = np.zeros(n, dtype=bool)
    error = np.full(n, None, dtype=object)
    index = np.zeros((n, 2), dtype=np.int64)
    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    chunks = [paths[i : i + _CHUNK] for i in range(0, n, _CHUNK)]
    offset = 0
    with open(out_dir / "thumbs.bin", "wb") as packed, progress_bar(
        "thumbnails", total=n, unit="img", enabled=progress
    ) as bar:
        if workers > 0 and len(chunks) > 1:
            pool = ProcessPoolExecutor(max_workers=workers)
            results = pool.map(_scan_chunk, chunks)
        else:
            pool = None
            results = map(_scan_chunk, chunks)
        try:
            i = 0
            for chunk in results:
                for thumb, p, reason in chunk:
                    if thumb is None:
                        error[i] = reason
                    else:
                        ok[i] = True
                        packed.write(thumb)
                        index[i] = (offset, len(thumb))
                        offset += len(thumb)
                        for name, value in p.items():
                            props[name][i] = value
                    i += 1
                bar.advance(len(chunk))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    np.save(out_dir / "thumbs.npy", index, allow_pickle=False)
    log.info("thumbnails: %d written, %d undecodable", int(ok.sum()), int(n - ok.sum()))
    return ScanResult(properties=props, ok=ok, error=error)


def _check_one(path: str) -> str | None:
    from vecexplore.io.images import DecodeError, open_rgb

    try:
        open_rgb(path, size_hint=SCAN_SIZE_HINT)
    except DecodeError as exc:
        return exc.reason
    return None


def _check_chunk(paths: list[str]) -> list[str | None]:
    return [_check_one(p) for p in paths]


def find_undecodable(paths: Sequence[str | Path], *, workers: int | None = None,
                     progress: bool = False) -> list[tuple[int, str]]:
    """The images a build will mark unreadable, found by the scan's own decode.

    Every image is decoded exactly as :func:`scan_images` decodes it (``open_rgb`` at
    :data:`SCAN_SIZE_HINT`; the embedding's decode refuses the same files), without
    making thumbnails: zero-byte, truncated, not an image, a directory or FIFO,
    too large, a decompression bomb.

    Args:
        paths: image files in image-table order.
        workers: decoding processes; None → ``min(4, cpu_count)``; 0 → in this process.
        progress: draw a progress bar (images/s).

    Returns:
        ``(position, reason)`` of each undecodable image, in order.
    """
    paths = [str(p) for p in paths]
    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    bad: list[tuple[int, str]] = []
    with progress_bar("decoding images", total=len(paths), unit="img", enabled=progress) as bar:
        pool = ProcessPoolExecutor(max_workers=workers) if workers > 0 and len(chunks) > 1 else None
        try:
            results = pool.map(_check_chunk, chunks) if pool is not None else map(_check_chunk, chunks)
            i = 0
            for chunk in results:
                bad.extend((i + k, reason) for k, reason in enumerate(chunk) if reason is not None)
                i += len(chunk)
                bar.advance(len(chunk))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    return bad


class ThumbStore:
    """Read thumbnails of a run by ``image_idx`` (memory-mapped, safe to share across threads)."""

    def __init__(self, run_dir: str | Path):
        run_dir = Path(run_dir)
        self._index = np.load(run_dir / "thumbs.npy")
        size = (run_dir / "thumbs.bin").stat().st_size
        self._data = np.memmap(run_dir / "thumbs.bin", dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)

    def __len__(self) -> int:
        return len(self._index)

    def get(self, image_idx: int) -> bytes | None:
        """JPEG bytes of the thumbnail, or None when the image had none (or idx is out of range)."""
        if not 0 <= image_idx < len(self._index):
            return None
        offset, length = self._index[image_idx]
        if length == 0:
            return None
        return bytes(self._data[offset : offset + length])
