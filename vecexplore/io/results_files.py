"""COCO results files besides one JSON array: JSON Lines and Parquet.

The format is told by the predictions file's extension (:func:`results_format`):

* ``.jsonl`` / ``.ndjson``: one result object per line (split on ``\\n``; a
  ``\\r`` before it and lines of whitespace only are allowed), the same keys as
  in a results JSON list (``image_id``, ``category_id``, ``bbox``, ``score``,
  optional ``id`` and ``segmentation``);
* ``.parquet``: one row per result; columns ``image_id``, ``category_id``
  (integers), ``score`` (number), the box as ``bbox`` (a list of 4 numbers) or as
  ``bbox_x``, ``bbox_y``, ``bbox_w``, ``bbox_h``; optional ``id`` (integer, null =
  none) and ``segmentation`` (COCO polygons or RLE as a nested value, or as JSON
  text);
* anything else: the results JSON of :mod:`vecexplore.io.coco`.

:func:`read_results` returns :class:`Results`: the box columns as arrays (no
Python object per detection: the C reader for JSON Lines, Arrow for Parquet) or,
when the file is unusual or carries masks, the records as the JSON path would
have them; the loader then runs the same checks as for a JSON file. Errors name
the file and the line (JSON Lines, from 1) or row (Parquet, from 0):
:func:`relabel` turns the loader's ``[i]`` positions into those.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from vecexplore.errors import InputError
from vecexplore.io._read import read_json_bytes, read_text, require_file

ResultsFormat = Literal["json", "jsonl", "parquet"]
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
_INT64_MAX = np.iinfo(np.int64).max
_BOX_COLUMNS = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")


def results_format(path: str | Path) -> ResultsFormat:
    """``"jsonl"``, ``"parquet"`` or ``"json"`` by the file's extension (case-insensitive)."""
    return _SUFFIXES.get(Path(path).suffix.lower(), "json")  # type: ignore[return-value]


@dataclass
class Results:
    """A results file, read: exactly one of ``columns`` / ``records`` is set.

    Attributes:
        columns: ``image_id, category_id (n,) int64``, ``bbox (n, 4) float64``,
            ``score (n,) float64``, ``id (n,) int64`` with ``id_given (n,) bool``
            (what :func:`vecexplore.io._coco_records._parse_objects` takes).
        records: the result objects, as ``json.loads`` gives them.
        where: position ``i`` → ``"line 7"`` / ``"row 6"``, for messages.
    """

    columns: dict | None
    records: list | None
    where: Callable[[int], str]

    def __len__(self) -> int:
        return len(self.records) if self.columns is None else len(self.columns["image_id"])

    def as_records(self) -> list:
        """The results as COCO result dicts (the masks path takes records)."""
        if self.records is not None:
            return self.records
        c = self.columns
        out = [{"image_id": i, "category_id": k, "bbox": b, "score": s}
               for i, k, b, s in zip(c["image_id"].tolist(), c["category_id"].tolist(), c["bbox"].tolist(),
                                     c["score"].tolist(), strict=True)]
        for rec, oid, given in zip(out, c["id"].tolist(), c["id_given"].tolist(), strict=True):
            if given:
                rec["id"] = oid
        return out


def read_results(path: str | Path, fmt: ResultsFormat, *, want_records: bool = False) -> Results:
    """Read a JSON Lines or Parquet results file (``fmt`` from :func:`results_format`).

    ``want_records``: hand back records even when columns would do (masks on the GT side).

    Raises:
        InputError: unreadable, not that format, empty (JSON Lines), or a bad line
            or row (naming it). Checks of the values (ids known, boxes positive,
            scores in [0, 1]) are the loader's, as for a JSON file.
    """
    if fmt == "jsonl":
        return _read_jsonl(path, want_records)
    if fmt == "parquet":
        return _read_parquet(path, want_records)
    raise ValueError(f"read_results: not a JSON Lines or Parquet format: {fmt!r}")


def relabel(exc: InputError, results: Results, pred_name: str) -> InputError:
    """The loader's error about results record ``[i]`` with ``i`` named as a line or row."""
    if exc.path is None or str(exc.path) != pred_name or exc.record is None:
        return exc
    m = re.match(r"\[(\d+)\](.*)", exc.record)
    if m is None:
        return exc
    detail = re.sub(r"\(also \[(\d+)\]\)", lambda a: f"(also {results.where(int(a.group(1)))})", exc.detail)
    return InputError(detail, path=pred_name, record=results.where(int(m.group(1))) + m.group(2))


# ---------------------------------------------------------------- JSON Lines


def _read_jsonl(path, want_records: bool) -> Results:
    data = read_json_bytes(path)
    if data is None:
        read_text(path)  # names the problem (missing, not a regular file, too large, unreadable)
        raise InputError("cannot read", path=path)
    if not want_records:  # the C reader hands back None at a record with a "segmentation" key
        from vecexplore.io._coco_records import _column_arrays

        try:
            from vecexplore import _native
        except ImportError:
            _native = None
        cols = None if _native is None else _native.parse_coco_lines(data, True)
        if cols is not None:
            return Results(columns=_column_arrays(cols, predictions=True), records=None,
                           where=lambda i: f"line {i + 1}")  # no blank lines is the common case
    return _jsonl_records(data, path)


def _jsonl_records(data: bytes, path) -> Results:
    """Line by line with the json module: every problem named by its line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", path=path) from None
    records, lines = [], []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip(" \t\r"):
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InputError(f"invalid JSON at column {exc.colno}: {exc.msg}", path=path, record=f"line {n}") from None
        except (RecursionError, ValueError) as exc:
            raise InputError(f"invalid JSON: {exc}", path=path, record=f"line {n}") from None
        lines.append(n)
    if not records:
        raise InputError("no results: a JSON Lines results file holds one result object per line "
                         "(write [] to a .json file for a model with no predictions)", path=path)
    return Results(columns=None, records=records, where=lambda i: f"line {lines[i]}")


# ---------------------------------------------------------------- Parquet


def _read_parquet(path, want_records: bool) -> Results:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = require_file(path)
    try:
        table = pq.ParquetFile(path).read()  # not read_table: its dataset layer imports pandas (~0.4 s)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file ({exc})", path=path) from None
    names = set(table.column_names)
    box_cols = [c for c in _BOX_COLUMNS if c in names]
    if "bbox" in names and box_cols:
        raise InputError(f"has both a 'bbox' column and {', '.join(box_cols)}: give the box one way", path=path)
    masks = "segmentation" in names
    needed = ["image_id", "category_id", "score"]
    if not masks:  # a mask stands in for a missing box, as in a results JSON
        needed += ["bbox"] if "bbox" in names or not box_cols else list(_BOX_COLUMNS)
    missing = [c for c in needed if c not in names]
    if missing:
        have = ", ".join(table.column_names) or "none"
        raise InputError(f"missing column{'s' if len(missing) > 1 else ''} {', '.join(repr(c) for c in missing)} "
                         f"(columns: {have}); the box is 'bbox' (list of 4) or bbox_x, bbox_y, bbox_w, bbox_h",
                         path=path)
    where = lambda i: f"row {i}"  # noqa: E731
    if masks or want_records:
        return Results(columns=None, records=_parquet_records(table, path, box_cols), where=where)
    n = table.num_rows
    image_id = _int_column(table, "image_id", path, required=True)
    category_id = _int_column(table, "category_id", path, required=True)
    score = _float_column(table["score"], "score", path)
    if "bbox" in names:
        bbox = _bbox_list(table["bbox"], path)
    else:
        bbox = np.column_stack([_float_column(table[c], c, path) for c in _BOX_COLUMNS]) if n else np.zeros((0, 4))
    if "id" in names:
        oid, given = _int_column(table, "id", path, required=False)
    else:
        oid, given = np.zeros(n, np.int64), np.zeros(n, np.bool_)
    cols = {"image_id": image_id[0], "category_id": category_id[0], "bbox": np.ascontiguousarray(bbox, np.float64),
            "score": score, "id": oid, "id_given": given}
    return Results(columns=cols, records=None, where=where)


def _chunked(col):
    import pyarrow as pa

    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _first_null(arr) -> int | None:
    if arr.null_count == 0:
        return None
    valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False))
    return int(np.argmin(valid))


def _int_column(table, name: str, path, *, required: bool) -> tuple[np.ndarray, np.ndarray]:
    """An integer column as ``(int64 values, given)``; floats holding whole numbers are accepted
    (as ``1.0`` is in JSON). Nulls: an error when ``required``, else not given."""
    import pyarrow as pa

    arr = _chunked(table[name])
    n = len(arr)
    bad = _first_null(arr)
    if bad is not None and required:
        raise InputError(f"{name} is missing (null)", path=path, record=f"row {bad}")
    given = np.ones(n, np.bool_) if arr.null_count == 0 else np.asarray(arr.is_valid().to_numpy(zero_copy_only=False))
    t = arr.type
    if pa.types.is_integer(t):
        values = arr.fill_null(0).to_numpy()
        if pa.types.is_unsigned_integer(t) and t.bit_width == 64 and n and (values > _INT64_MAX).any():
            i = int(np.argmax(values > _INT64_MAX))
            raise InputError(f"{name} {int(values[i])} does not fit in a signed 64-bit integer", path=path,
                             record=f"row {i}")
        return values.astype(np.int64), given
    if pa.types.is_floating(t):
        values = arr.fill_null(0).to_numpy().astype(np.float64)
        ok = np.isfinite(values) & (values == np.floor(values)) & (np.abs(values) < 2.0 ** 63)
        if not ok.all():
            i = int(np.argmin(ok))
            raise InputError(f"{name} must be an integer, got {values[i]!r}", path=path, record=f"row {i}")
        return values.astype(np.int64), given
    i = 0 if bad != 0 else int(np.argmax(given))
    raise InputError(f"{name} must be an integer, got {arr[i].as_py()!r} (a {t} column)", path=path,
                     record=f"row {i}")


def _float_column(col, name: str, path) -> np.ndarray:
    import pyarrow as pa

    arr = _chunked(col)
    bad = _first_null(arr)
    if bad is not None:
        raise InputError(f"{name} is missing (null)", path=path, record=f"row {bad}")
    if not (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)):
        raise InputError(f"{name} must be a number, got {arr[0].as_py()!r} (a {arr.type} column)", path=path,
                         record="row 0")
    return np.asarray(arr.to_numpy(), dtype=np.float64)


def _bbox_list(col, path) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = _chunked(col)
    n = len(arr)
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type)):
        raise InputError(f"bbox must be a list of 4 numbers [x, y, w, h], got {arr[0].as_py()!r} "
                         f"(a {arr.type} column)", path=path, record="row 0")
    bad = _first_null(arr)
    if bad is not None:
        raise InputError("bbox is missing (null)", path=path, record=f"row {bad}")
    lengths = np.asarray(pc.list_value_length(arr).to_numpy(zero_copy_only=False))
    if n and (lengths != 4).any():
        i = int(np.argmax(lengths != 4))
        raise InputError(f"bbox must be a list of 4 numbers [x, y, w, h], got {arr[i].as_py()!r}", path=path,
                         record=f"row {i}")
    values = _chunked(pc.list_flatten(arr))
    if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type) or pa.types.is_null(values.type)):
        raise InputError(f"bbox must be a list of 4 numbers [x, y, w, h], got {arr[0].as_py()!r}", path=path,
                         record="row 0")
    if values.null_count:
        i = _first_null(values) // 4
        raise InputError(f"bbox must be a list of 4 numbers [x, y, w, h], got {arr[i].as_py()!r}", path=path,
                         record=f"row {i}")
    return np.asarray(values.to_numpy(), dtype=np.float64).reshape(n, 4)


def _parquet_records(table, path, box_cols: list[str]) -> list:
    """Every row as a result dict (nulls left out; JSON text in ``segmentation`` parsed)."""
    rows = table.to_pylist()
    out = []
    for i, row in enumerate(rows):
        rec = {k: v for k, v in row.items() if v is not None and k not in _BOX_COLUMNS}
        if box_cols:
            box = [row.get(c) for c in _BOX_COLUMNS]
            if all(v is not None for v in box):
                rec["bbox"] = box
            elif any(v is not None for v in box):
                raise InputError(f"bbox columns {', '.join(_BOX_COLUMNS)} must all be set, got {box!r}", path=path,
                                 record=f"row {i}")
        seg = rec.get("segmentation")
        if isinstance(seg, str):
            try:
                rec["segmentation"] = json.loads(seg)
            except json.JSONDecodeError as exc:
                raise InputError(f"segmentation is not valid JSON text ({exc.msg})", path=path,
                                 record=f"row {i}") from None
        out.append(rec)
    return out
