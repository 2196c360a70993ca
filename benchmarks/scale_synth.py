"""Write a :mod:`coco_synth` case to disk fast: GT JSON and results as JSON, JSON Lines, Parquet.

Nothing is built per record in Python: Arrow formats the numbers (integers, and
floats by the shortest text that reads back to the same float64, so every
format holds the same values), joins each record's text and hands back one
buffer that is written as it is, in blocks of ``block`` records. Every file is
written to a temporary name and renamed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def _num(a: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(a), pa.string())


def _records(parts: list) -> pa.Array:
    """One text per row: the parts (str literals or string arrays) concatenated."""
    return pc.binary_join_element_wise(*parts, "")


def _buffer(text: pa.Array) -> memoryview:
    """The concatenated bytes of a string array (its data buffer between the first and last offset)."""
    text = text if isinstance(text, pa.Array) else text.combine_chunks()
    offsets = np.frombuffer(text.buffers()[1], np.int32, len(text) + 1, text.offset * 4)
    return memoryview(text.buffers()[2])[offsets[0]:offsets[-1]]


def _write_blocks(f, n: int, block: int, make, *, sep: bytes) -> None:
    """Write ``make(lo, hi)`` (a string array) for every block, ``sep`` between records."""
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        data = _buffer(_records([make(lo, hi), sep.decode()]))
        f.write(data[:len(data) - len(sep)] if hi == n else data)


def _atomic(path: Path):
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")

    class _Ctx:
        def __enter__(self):
            self.f = open(tmp, "wb")
            return self.f

        def __exit__(self, et, ev, tb):
            self.f.close()
            if et is None:
                os.replace(tmp, path)
            else:
                tmp.unlink(missing_ok=True)

    return _Ctx()


def write_gt_json(ds, path: Path, *, block: int = 1_000_000) -> None:
    im, gt, cats = ds.images, ds.gt, ds.categories
    ids = im.image_id
    with _atomic(path) as f:
        f.write(b'{"images": [')
        _write_blocks(f, len(ids), block, lambda lo, hi: _records([
            '{"id": ', _num(ids[lo:hi]), ', "file_name": "', pa.array(im.file_name[lo:hi].tolist(), pa.string()),
            '", "width": ', _num(im.width[lo:hi]), ', "height": ', _num(im.height[lo:hi]), "}"]), sep=b", ")
        f.write(b'], "annotations": [')
        img, cls = ids[gt.image_idx], cats.ids[gt.class_idx]
        _write_blocks(f, len(img), block, lambda lo, hi: _records([
            '{"id": ', _num(gt.object_id[lo:hi]), ', "image_id": ', _num(img[lo:hi]), ', "category_id": ',
            _num(cls[lo:hi]), ', "bbox": [', *_box(gt.xywh[lo:hi]), '], "area": ', _num(gt.area[lo:hi]),
            ', "iscrowd": ', _num(gt.iscrowd[lo:hi].astype(np.int8)), "}"]), sep=b", ")
        f.write(b'], "categories": [')
        f.write(", ".join(f'{{"id": {c}, "name": "{n}"}}' for c, n in zip(cats.ids.tolist(), cats.names.tolist(),
                                                                           strict=True)).encode())
        f.write(b"]}")


def _box(xywh: np.ndarray) -> list:
    return [_num(xywh[:, 0]), ", ", _num(xywh[:, 1]), ", ", _num(xywh[:, 2]), ", ", _num(xywh[:, 3])]


def _result_text(ds, lo: int, hi: int) -> pa.Array:
    p = ds.pred
    return _records(['{"image_id": ', _num(ds.images.image_id[p.image_idx[lo:hi]]), ', "category_id": ',
                     _num(ds.categories.ids[p.class_idx[lo:hi]]), ', "bbox": [', *_box(p.xywh[lo:hi]),
                     '], "score": ', _num(p.score[lo:hi]), "}"])


def write_results(ds, path: Path, fmt: str, *, block: int = 1_000_000) -> None:
    """The predictions as a results JSON list, JSON Lines or Parquet (``bbox`` a list column)."""
    n = len(ds.pred.score)
    if fmt == "parquet":
        p = ds.pred
        table = pa.table({"image_id": ds.images.image_id[p.image_idx], "category_id": ds.categories.ids[p.class_idx],
                          "bbox": pa.FixedSizeListArray.from_arrays(pa.array(p.xywh.reshape(-1)), 4),
                          "score": p.score})
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        return
    with _atomic(path) as f:
        if fmt == "json":
            f.write(b"[")
            _write_blocks(f, n, block, lambda lo, hi: _result_text(ds, lo, hi), sep=b",\n")
            f.write(b"]")
        else:
            _write_blocks(f, n, block, lambda lo, hi: _records([_result_text(ds, lo, hi), "\n"]), sep=b"")
