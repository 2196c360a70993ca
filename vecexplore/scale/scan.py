"""The thumbnail/property scan as a Ray Data pipeline.

CPU tasks run the local scan's own per-image function (:func:`vecexplore.thumbs._scan_one`:
one reduced decode, pixel properties, a JPEG thumbnail) and the driver writes the
thumbnail store through :func:`vecexplore.thumbs.write_scan` in image order, so the
store and the properties are byte for byte the local engine's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from vecexplore.properties import PIXEL_PROPERTIES
from vecexplore.scale.cluster import path_dataset, quiet_data_context
from vecexplore.thumbs import ScanResult, write_scan

#: Images per scan task.
_SCAN_BLOCK = 32


def _scan_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from vecexplore.thumbs import _scan_one

    n = len(batch["row"])
    thumbs = np.full(n, b"", dtype=object)
    props = np.full((n, len(PIXEL_PROPERTIES)), np.nan)
    errors = np.full(n, "", dtype=object)
    for k, path in enumerate(batch["path"]):
        thumb, p, reason = _scan_one(str(path))
        if thumb is None:
            errors[k] = reason
        else:
            thumbs[k] = thumb
            props[k] = [p[name] for name in PIXEL_PROPERTIES]
    return {"row": batch["row"], "thumb": thumbs, "props": props, "error": errors}


def in_order(batches: Iterable[dict[str, np.ndarray]], n: int) -> Iterator[list]:
    """Results of rows in any order → lists of ``(thumb, props, reason)`` in row order.

    Rows that arrive ahead of the next one wait in memory (Ray keeps a bounded number
    of blocks in flight, so this does not grow with ``n``).
    """
    pending: dict[int, tuple] = {}
    following = 0
    for batch in batches:
        for r, thumb, props, err in zip(batch["row"].tolist(), batch["thumb"], batch["props"], batch["error"],
                                        strict=True):
            if err:
                pending[int(r)] = (None, None, str(err))
            else:
                pending[int(r)] = (bytes(thumb), {name: float(v) for name, v in zip(PIXEL_PROPERTIES, props, strict=True)},
                                   None)
        chunk = []
        while following in pending:
            chunk.append(pending.pop(following))
            following += 1
        if chunk:
            yield chunk
    if following != n or pending:
        raise RuntimeError(f"the Ray scan returned {following + len(pending)} of {n} images")


def scan_images_ray(paths: Sequence[str | Path], out_dir: str | Path, *, progress: bool = False) -> ScanResult:
    """:func:`vecexplore.thumbs.scan_images` on the connected Ray cluster: the same store
    in ``out_dir`` and the same properties."""
    quiet_data_context()
    paths = [str(p) for p in paths]
    if not paths:
        return write_scan(0, out_dir, [], progress=progress)
    ds = path_dataset(paths, np.arange(len(paths)), _SCAN_BLOCK).map_batches(
        _scan_batch, batch_size=None, batch_format="numpy")
    batches = ds.iter_batches(batch_size=None, batch_format="numpy")
    return write_scan(len(paths), out_dir, in_order(batches, len(paths)), progress=progress)
