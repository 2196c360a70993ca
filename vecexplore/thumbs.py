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

Thumbnails are a cache of the image files, so a damaged store never stops the
app: :class:`ThumbStore` answers None for any record it cannot vouch for (a
missing or unreadable index, a record past the end of ``thumbs.bin``, bytes
that are not a JPEG) and the routes send the "unreadable" placeholder, never
a broken or empty JPEG. :func:`check_thumbs` says what is wrong, for warnings.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vecexplore.atomic import atomic_write_array
from vecexplore.progress import progress_bar
from vecexplore.properties import PIXEL_PROPERTIES, analysis_image, pixel_properties
from vecexplore.store.layout import THUMBS_DATA, THUMBS_INDEX

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
    paths = [str(p) for p in paths]
    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 0 and len(chunks) > 1 else None
    try:
        results = pool.map(_scan_chunk, chunks) if pool is not None else map(_scan_chunk, chunks)
        return write_scan(len(paths), out_dir, results, progress=progress)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def write_scan(n: int, out_dir: str | Path, results: Iterable[list[tuple[bytes | None, dict | None, str | None]]],
               *, progress: bool = False) -> ScanResult:
    """Write the thumbnail store from ``results``: lists of :func:`_scan_one` outcomes, in
    image order, ``n`` in all. Every engine's scan ends here, so their stores are the same bytes."""
    out_dir = Path(out_dir)
    props = {name: np.full(n, np.nan) for name in PIXEL_PROPERTIES}
    ok = np.zeros(n, dtype=bool)
    error = np.full(n, None, dtype=object)
    index = np.zeros((n, 2), dtype=np.int64)
    offset = 0
    i = 0
    with open(out_dir / THUMBS_DATA, "wb") as packed, progress_bar(
        "thumbnails", total=n, unit="img", enabled=progress
    ) as bar:
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
    if i != n:
        raise ValueError(f"write_scan: {i} results for {n} images")
    atomic_write_array(out_dir / THUMBS_INDEX, index)
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


_JPEG_START = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"
#: Records :func:`check_thumbs` looks into (spread over the store) to tell a JPEG store from garbage.
_SAMPLED = 8


class _Damaged(Exception):
    """The store (index or packed file) cannot be used at all."""


def _open_store(run_dir: Path, num_images: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(index (N, 2) int64, packed bytes memmap)``; raises :class:`_Damaged` saying why."""
    index_path, data_path = run_dir / THUMBS_INDEX, run_dir / THUMBS_DATA
    try:
        index = np.load(index_path, allow_pickle=False)
    except FileNotFoundError:
        raise _Damaged(f"{index_path}: missing") from None
    except (OSError, ValueError, EOFError) as exc:
        raise _Damaged(f"{index_path}: unreadable ({type(exc).__name__}: {exc})") from None
    if index.ndim != 2 or index.shape[1] != 2 or not np.issubdtype(index.dtype, np.integer):
        raise _Damaged(f"{index_path}: expected an (N, 2) integer array, got {index.shape} {index.dtype}")
    if num_images is not None and len(index) != num_images:
        raise _Damaged(f"{index_path}: {len(index)} rows for {num_images} images")
    try:
        size = data_path.stat().st_size
        data = np.memmap(data_path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
    except (OSError, ValueError) as exc:
        raise _Damaged(f"{data_path}: unreadable ({type(exc).__name__}: {exc})") from None
    return index.astype(np.int64, copy=False), data


def _record(index: np.ndarray, data: np.ndarray, image_idx: int) -> bytes | None:
    offset, length = (int(v) for v in index[image_idx])
    if length <= 0 or offset < 0 or offset + length > len(data):
        return None
    body = bytes(data[offset : offset + length])
    return body if body.startswith(_JPEG_START) and body.endswith(_JPEG_END) else None


def check_thumbs(run_dir: str | Path, num_images: int | None = None) -> str | None:
    """What is wrong with a run's thumbnail store, or None when it looks sound.

    Checks the index's shape, that every record lies inside ``thumbs.bin``, and
    that a few records spread over the store are JPEGs. Cheap: the packed file
    is not read beyond those records.
    """
    run_dir = Path(run_dir)
    try:
        index, data = _open_store(run_dir, num_images)
    except _Damaged as exc:
        return str(exc)
    present = np.flatnonzero(index[:, 1] > 0)
    if ((index[:, 0] < 0) | (index[:, 1] < 0)).any():
        return f"{run_dir / THUMBS_INDEX}: negative offsets or lengths"
    ends = index[present, 0] + index[present, 1]
    if len(present) and int(ends.max()) > len(data):
        n_out = int((ends > len(data)).sum())
        return f"{run_dir / THUMBS_DATA}: {n_out} of {len(present)} thumbnails lie past its end ({len(data)} bytes); truncated"
    sample = present[np.unique(np.linspace(0, len(present) - 1, min(_SAMPLED, len(present))).astype(np.int64))]
    bad = [int(i) for i in sample if _record(index, data, int(i)) is None]
    if bad:
        return f"{run_dir / THUMBS_DATA}: thumbnails {bad} are not JPEG images; damaged"
    return None


class ThumbStore:
    """Read thumbnails of a run by ``image_idx`` (memory-mapped, safe to share across threads).

    Never raises on a damaged store: :attr:`problem` is None when the store
    opened, else what is wrong (every :meth:`get` is then None). Records are
    checked one by one as they are read.

    Args:
        run_dir: the run directory.
        num_images: the run's image count, when known: an index of another
            length is refused as damaged.
    """

    def __init__(self, run_dir: str | Path, *, num_images: int | None = None):
        self.problem: str | None = None
        try:
            self._index, self._data = _open_store(Path(run_dir), num_images)
        except _Damaged as exc:
            self.problem = str(exc)
            self._index = np.zeros((num_images or 0, 2), np.int64)
            self._data = np.zeros(0, np.uint8)

    def __len__(self) -> int:
        return len(self._index)

    def get(self, image_idx: int) -> bytes | None:
        """JPEG bytes of the thumbnail, or None when there is none to trust: the image
        had none, idx is out of range, or the record is empty, past the end of the
        packed file or not a JPEG."""
        if not 0 <= image_idx < len(self._index):
            return None
        return _record(self._index, self._data, image_idx)
