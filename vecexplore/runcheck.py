"""Checking a whole run when it is opened, so that nothing fails later.

:func:`validate_run` looks at every file of a run — parquet schemas and row
counts (metadata, not the tables), ``.npy`` headers, the JSON documents, the
thumbnail index — and raises :class:`~vecexplore.errors.RunStoreError` for the
first one at fault: ``<file>: <what is wrong>; rebuild with --force``.
``info``, ``export`` and ``serve`` open runs with :func:`open_run`.

Thumbnails are the exception: they are a cache of the image files, so a
damaged thumbnail store is a warning (logged, and returned) and the app shows
the "unreadable" placeholder in their place. Optional files
(``analysis.json``, ``recommendations.json``, ``class_scores.npy``,
``label_issues.parquet``, ``near_duplicates.parquet``, ``leakage.json``,
``words.json``) may be
absent; when present they must be sound.
"""

from __future__ import annotations

import logging
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from vecexplore.eval.operating_point import valid_confidence, valid_iou
from vecexplore.store import MANIFEST, REBUILD_HINT, Run, broken_file, json_kind
from vecexplore.store.layout import (
    ANALYSIS,
    CATEGORIES,
    CLASS_SCORES,
    CLUSTER_TREE,
    CLUSTERS,
    COMPARE,
    EMBEDDINGS,
    IMAGES,
    LABEL_ISSUES,
    METRICS,
    METRICS_B,
    OBJECTS,
    OBJECTS_B,
    RECOMMENDATIONS,
    table_file,
)

log = logging.getLogger(__name__)

#: Manifest blocks every consumer reads, and the counts the tables must agree with.
MANIFEST_BLOCKS = ("counts", "inputs", "config", "model")
COUNTS = ("images", "categories", "gt", "pred")

# Column kinds: "int", "float" (an int column is accepted), "bool", "str".
IMAGE_COLUMNS = {
    "image_idx": "int", "image_id": "int", "file_name": "str", "width": "int", "height": "int",
    "x": "float", "y": "float", "cluster": "int", "readable": "bool", "unreadable_reason": "str",
}
CLASSIFICATION_COLUMNS = {"gt_class_idx": "int", "pred_class_idx": "int", "pred_score": "float"}
OBJECT_COLUMNS = {
    "object_id": "int", "kind": "str", "image_idx": "int", "class_idx": "int", "score": "float",
    "outcome": "str", "x": "float", "y": "float", "w": "float", "h": "float", "area": "float", "iscrowd": "bool",
}
CLUSTER_COLUMNS = {
    "cluster": "int", "rank": "int", "size": "int", "error_rate": "float", "ci_low": "float",
    "ci_high": "float", "lift": "float", "dominant_error": "str", "top_classes": "str",
}
LABEL_ISSUE_COLUMNS = {
    "image_idx": "int", "image_id": "int", "kind": "str", "score": "float", "likely": "bool",
    "class_idx": "int", "suggested_class_idx": "int",
}
DUPLICATE_COLUMNS = {
    "image_idx_a": "int", "image_idx_b": "int", "image_id_a": "int", "image_id_b": "int",
    "similarity": "float", "exact": "bool", "split_a": "str", "split_b": "str", "cross_split": "bool",
}
#: Top-level blocks of metrics.json per task, and their JSON types.
METRICS_BLOCKS = {
    "detection": {"coco": dict, "operating_point": dict, "per_class": list},
    "classification": {"macro": dict, "weighted": dict, "per_class": list},
}


def open_run(path: str | Path) -> Run:
    """Open ``path`` as a :class:`Run` and :func:`validate_run` it.

    Raises:
        RunStoreError: not a run, or a file of it is missing or damaged.
    """
    run = Run(path)
    validate_run(run)
    return run


def validate_run(run: Run) -> list[str]:
    """Check every file of ``run``; return the warnings (damaged thumbnails), also logged.

    Parsed JSON documents stay cached in ``run``, so checking costs a consumer
    that reads them anyway only the parquet metadata, three small columns and
    the thumbnail index.

    Raises:
        RunStoreError: the first missing or damaged file, named, with what is wrong.
    """
    n, k = _check_manifest(run)
    _check_categories(run, k)
    clusters_of_images = _check_images(run, n, k)
    if run.task == "detection":
        counts = run.manifest["counts"]
        _check_table(run, OBJECTS, OBJECT_COLUMNS, rows=counts["gt"] + counts["pred"],
                     rows_say=f"counts.gt + counts.pred = {counts['gt']} + {counts['pred']}")
        _check_range(run, OBJECTS, "image_idx", 0, n)
        _check_range(run, OBJECTS, "class_idx", 0, k)
        _check_object_map(run, counts["gt"] + counts["pred"])
    _check_table(run, CLUSTERS, CLUSTER_COLUMNS)
    clusters = _slice_members(run)
    if clusters != clusters_of_images:
        raise broken_file(run.path / table_file(CLUSTERS),
                          f"lists clusters {_few(clusters - clusters_of_images) or 'none'} that images.parquet has not, "
                          f"and lacks {_few(clusters_of_images - clusters) or 'none'} that it has")
    _check_cluster_tree(run, len(clusters_of_images))
    _check_metrics(run)
    _check_analysis(run)
    _check_recommendations(run, n)
    if (run.path / table_file(LABEL_ISSUES)).exists():
        _check_table(run, LABEL_ISSUES, LABEL_ISSUE_COLUMNS)
        _check_range(run, LABEL_ISSUES, "image_idx", 0, n)
    _check_duplicates(run, n)
    _check_words(run)
    _check_array(run, EMBEDDINGS, rows=n, dim=_int_or_none(run.manifest["model"].get("dim")))
    if "comparison" in run.manifest:
        _check_comparison(run, n, k)
    if (run.path / CLASS_SCORES).exists():
        _check_array(run, CLASS_SCORES, rows=n, dim=k, floating=True)
    from vecexplore.thumbs import check_thumbs

    warnings = []
    problem = check_thumbs(run.path, n)
    if problem is not None:
        warnings.append(f"{problem}: thumbnails show as placeholders; {REBUILD_HINT} to restore them")
    for message in warnings:
        log.warning("%s", message)
    return warnings


# ---------------------------------------------------------------- the manifest


def _check_manifest(run: Run) -> tuple[int, int]:
    """(image count, category count) after checking the blocks every consumer reads."""
    path = run.path / MANIFEST
    manifest = run.manifest
    for block in MANIFEST_BLOCKS:
        if not isinstance(manifest.get(block), dict):
            raise broken_file(path, f'"{block}" is {_what(manifest.get(block))}, expected an object')
    counts = manifest["counts"]
    for key in COUNTS:
        if _int_or_none(counts.get(key)) is None or counts[key] < 0:
            raise broken_file(path, f'"counts.{key}" is {_what(counts.get(key))}, expected a count')
    config = manifest["config"]
    iou = config.get("iou")
    if iou is not None and not valid_iou(iou):
        raise broken_file(path, f'"config.iou" is {_what(iou)}, expected a number in (0, 1]')
    conf = config.get("confidence")
    if conf is not None and not valid_confidence(conf):
        raise broken_file(path, f'"config.confidence" is {_what(conf)}, expected null or a number in [0, 1]')
    root = manifest["inputs"].get("images_root")
    if root is not None and not isinstance(root, str):
        raise broken_file(path, f'"inputs.images_root" is {_what(root)}, expected a path')
    if manifest.get("status", "complete") != "complete":
        raise broken_file(path, f"status is {manifest.get('status')!r}: the build did not finish")
    return counts["images"], counts["categories"]


# ---------------------------------------------------------------- tables


def _parquet(run: Run, name: str):
    """(schema, row count) of ``name.parquet`` from its footer."""
    import pyarrow.parquet as pq

    path = run.path / f"{name}.parquet"
    if not path.exists():
        raise broken_file(path, "missing")
    try:
        meta = pq.read_metadata(path)
        return meta.schema.to_arrow_schema(), meta.num_rows
    except Exception as exc:  # pyarrow raises several types for a file that is not parquet
        raise broken_file(path, f"not a readable parquet file ({type(exc).__name__}: {exc})") from None


def _check_table(run: Run, name: str, columns: dict[str, str], *, rows: int | None = None, rows_say: str = "") -> int:
    schema, num_rows = _parquet(run, name)
    path = run.path / f"{name}.parquet"
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise broken_file(path, f"missing column(s) {', '.join(missing)}")
    if num_rows:  # an empty table's text columns have no type to check
        for column, kind in columns.items():
            arrow_type = schema.field(column).type
            if not _is_kind(arrow_type, kind):
                raise broken_file(path, f"column {column} is {arrow_type}, expected {_KIND_NAMES[kind]}")
    if rows is not None and num_rows != rows:
        raise broken_file(path, f"{num_rows} rows, but {MANIFEST} says {rows} ({rows_say})")
    return num_rows


def _check_images(run: Run, n: int, k: int) -> set[int]:
    """Check images.parquet; returns the cluster ids its images are in (noise left out)."""
    columns = dict(IMAGE_COLUMNS, **(CLASSIFICATION_COLUMNS if run.task == "classification" else {}))
    _check_table(run, IMAGES, columns, rows=n, rows_say="counts.images")
    if not np.array_equal(_column(run, IMAGES, "image_idx"), np.arange(n)):
        raise broken_file(run.path / table_file(IMAGES), "image_idx is not 0, 1, …, N-1 in row order")
    if run.task == "classification":
        for column in ("gt_class_idx", "pred_class_idx"):
            _check_range(run, IMAGES, column, -1, k)
    labels = _column(run, IMAGES, "cluster")
    return set(np.unique(labels[labels >= 0]).tolist())


# ---------------------------------------------------------------- failure slices (issue 11)


def _slice_members(run: Run) -> set[int]:
    """The clusters clusters.parquet covers: each row's ``members`` (a merged slice, 4+9, lists several;
    runs built before slices merged have one row per cluster and no such column). Each cluster once."""
    schema, num_rows = _parquet(run, CLUSTERS)
    path = run.path / table_file(CLUSTERS)
    if "members" not in schema.names or num_rows == 0:  # an empty table's column has no type to check
        return set(_column(run, CLUSTERS, "cluster").tolist())
    import pyarrow as pa

    if not (pa.types.is_list(schema.field("members").type) and pa.types.is_integer(schema.field("members").type.value_type)):
        raise broken_file(path, f"column members is {schema.field('members').type}, expected lists of integers")
    rows = [[int(m) for m in ms] for ms in _column(run, CLUSTERS, "members")]
    ids = _column(run, CLUSTERS, "cluster").tolist()
    flat = [m for ms in rows for m in ms]
    if len(flat) != len(set(flat)) or any(not ms or int(c) != min(ms) for c, ms in zip(ids, rows, strict=True)):
        raise broken_file(path, "members do not partition the clusters (each slice is named by its smallest cluster)")
    return set(flat)


def _check_cluster_tree(run: Run, n_clusters: int) -> None:
    """cluster_tree.parquet (optional: older runs have none) is a hierarchy over the run's clusters."""
    from vecexplore.errors import ValidationError
    from vecexplore.mapping.hierarchy import TREE_COLUMNS, ClusterTree

    if not (run.path / table_file(CLUSTER_TREE)).exists():
        return
    kinds = {"node": "int", "parent": "int", "size": "int", "lambda_birth": "float"}
    _check_table(run, CLUSTER_TREE, {c: kinds[c] for c in TREE_COLUMNS})
    path = run.path / table_file(CLUSTER_TREE)
    import pandas as pd

    frame = pd.DataFrame({c: _column(run, CLUSTER_TREE, c) for c in TREE_COLUMNS})
    try:
        tree = ClusterTree.from_frame(frame, n_clusters)
    except ValidationError as exc:
        raise broken_file(path, str(exc)) from None
    parents = set(tree.parent[tree.parent >= 0].tolist())
    leaves = [v for v in range(len(tree.parent)) if v not in parents]
    if leaves != list(range(n_clusters)):
        raise broken_file(path, f"its leaves are nodes {_few(set(leaves))}, expected the {n_clusters} clusters 0..K-1")


def _column(run: Run, name: str, column: str) -> np.ndarray:
    """One column of ``name.parquet`` (its schema already checked) as a NumPy array."""
    import pyarrow.parquet as pq

    path = run.path / f"{name}.parquet"
    try:
        return pq.read_table(path, columns=[column]).column(0).to_numpy()
    except Exception as exc:  # a damaged data page behind a sound footer
        raise broken_file(path, f"unreadable column {column} ({type(exc).__name__}: {exc})") from None


def _check_range(run: Run, name: str, column: str, low: int, high: int) -> None:
    values = _column(run, name, column)
    bad = (values < low) | (values >= high)
    if bad.any():
        raise broken_file(run.path / f"{name}.parquet",
                          f"{int(bad.sum())} value(s) of {column} outside [{low}, {high}), e.g. {int(values[bad][0])}")


def _few(values: set[int], shown: int = 5) -> str:
    items = sorted(values)
    return ", ".join(map(str, items[:shown])) + (" …" if len(items) > shown else "")


_KIND_NAMES = {"int": "integers", "float": "numbers", "bool": "booleans", "str": "text"}


def _is_kind(arrow_type, kind: str) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_null(arrow_type):  # every value missing: nothing to misread
        return True
    if kind == "int":
        return pa.types.is_integer(arrow_type)
    if kind == "float":
        return pa.types.is_floating(arrow_type) or pa.types.is_integer(arrow_type)
    if kind == "bool":
        return pa.types.is_boolean(arrow_type)
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def _check_comparison(run: Run, n: int, k: int) -> None:
    """A run written by ``vecexplore compare``: B's columns, B's objects and metrics, compare.json."""
    _check_table(run, IMAGES, {"change": "str", "b_error_rate": "float"})
    if run.task == "detection":
        _check_table(run, OBJECTS_B, OBJECT_COLUMNS)
        _check_range(run, OBJECTS_B, "image_idx", 0, n)
        _check_range(run, OBJECTS_B, "class_idx", 0, k)
    _document(run, METRICS_B, dict)
    doc = _document(run, COMPARE, dict)
    for key in ("regressions", "improvements"):
        rows = doc.get(key)
        if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("members"), list)
                                                 for r in rows):
            raise broken_file(run.path / COMPARE, f'"{key}" is not a list of clusters')


def _check_duplicates(run: Run, n: int) -> None:
    """near_duplicates.parquet and leakage.json (optional, but together: one without the other
    is a damaged run)."""
    from vecexplore.store.layout import LEAKAGE, NEAR_DUPLICATES

    table = run.path / table_file(NEAR_DUPLICATES)
    doc_path = run.path / LEAKAGE
    if not table.exists() and not doc_path.exists():
        return
    for path in (table, doc_path):
        if not path.exists():
            raise broken_file(path, f"missing (the build writes {table.name} and {doc_path.name} together)")
    _check_table(run, NEAR_DUPLICATES, DUPLICATE_COLUMNS)
    for column in ("image_idx_a", "image_idx_b"):
        _check_range(run, NEAR_DUPLICATES, column, 0, n)
    sim = _column(run, NEAR_DUPLICATES, "similarity")
    if len(sim) and not ((sim >= -1.0) & (sim <= 1.0 + 1e-6)).all():
        raise broken_file(table, "similarity outside [-1, 1]")
    doc = _document(run, LEAKAGE, dict)
    t = doc.get("threshold")
    if not (_is_number(t) and 0 < t <= 1):
        raise broken_file(doc_path, f'"threshold" is {_what(t)}, expected a number in (0, 1]')
    idx = doc.get("leaking_image_idx")
    if not isinstance(idx, list) or not all(_int_or_none(v) is not None and 0 <= v < n for v in idx):
        raise broken_file(doc_path, f'"leaking_image_idx" is not a list of image indices 0…{n - 1}')
    for key in ("n_eval", "n_leaking"):
        if _int_or_none(doc.get(key)) is None or doc[key] < 0:
            raise broken_file(doc_path, f'"{key}" is {_what(doc.get(key))}, expected a count')
    metrics = doc.get("metrics")
    if metrics is not None and not (isinstance(metrics, dict) and all(
            metrics.get(k) is None or isinstance(metrics.get(k), dict) for k in ("all", "without_leaking"))):
        raise broken_file(doc_path, '"metrics" is not {"all": {...}, "without_leaking": {...}}')


def _check_words(run: Run) -> None:
    """words.json (optional: older runs have none) and, when its words are not hidden, the
    text embeddings it was computed from (one row per vocabulary entry)."""
    from vecexplore.store.layout import TEXT_EMBEDDINGS, WORDS

    path = run.path / WORDS
    if not path.exists():
        return
    doc = _document(run, WORDS, dict)
    hidden = doc.get("hidden")
    if hidden is not None and not isinstance(hidden, str):
        raise broken_file(path, f'"hidden" is {_what(hidden)}, expected null or a reason')
    vocab = doc.get("vocabulary")
    if not isinstance(vocab, list) or not all(isinstance(v, dict) and isinstance(v.get("phrase"), str)
                                              and isinstance(v.get("group"), str) for v in vocab):
        raise broken_file(path, '"vocabulary" is not a list of {"group", "phrase", "prompt"}')
    clusters = doc.get("clusters")
    if not isinstance(clusters, list) or not all(isinstance(c, dict) and isinstance(c.get("words"), list)
                                                 for c in clusters):
        raise broken_file(path, '"clusters" is not a list of {"cluster", "members", "words": [...]}')
    if hidden is None:
        _check_array(run, TEXT_EMBEDDINGS, rows=len(vocab), dim=_int_or_none(run.manifest["model"].get("dim")))


# ---------------------------------------------------------------- arrays


def _check_object_map(run: Run, n_objects: int) -> None:
    """The object-level map (optional): object_embeddings.npy has one row per mapped object
    (obj_row 0..M-1, each once) and object_slices.parquet names objects of the table."""
    from vecexplore.store.layout import OBJECT_EMBEDDINGS, OBJECT_SLICES

    if not (run.path / OBJECT_EMBEDDINGS).exists():
        return
    rows = _column(run, OBJECTS, "obj_row") if "obj_row" in _parquet(run, OBJECTS)[0].names else None
    if rows is None:
        raise broken_file(run.path / table_file(OBJECTS), f"has no obj_row column but the run has {OBJECT_EMBEDDINGS}")
    used = np.sort(rows[rows >= 0])
    if not np.array_equal(used, np.arange(len(used))):
        raise broken_file(run.path / table_file(OBJECTS), "obj_row is not 0..M-1 over the mapped objects, each once")
    _check_array(run, OBJECT_EMBEDDINGS, rows=len(used), dim=_int_or_none(run.manifest["model"].get("dim")))
    if (run.path / table_file(OBJECT_SLICES)).exists():
        path = run.path / table_file(OBJECT_SLICES)
        if "object_idx" not in _parquet(run, OBJECT_SLICES)[0].names:
            raise broken_file(path, "has no column object_idx")
        for members in _column(run, OBJECT_SLICES, "object_idx"):
            try:
                values = [int(m) for m in (members if members is not None else [])]
            except (TypeError, ValueError):
                raise broken_file(path, f"object_idx holds {_what(members)}, not lists of object rows") from None
            bad = [m for m in values if not 0 <= m < n_objects]
            if bad:
                raise broken_file(run.path / table_file(OBJECT_SLICES),
                                  f"object_idx {bad[0]} outside the objects table [0, {n_objects})")


def _check_array(run: Run, name: str, *, rows: int, dim: int | None = None, floating: bool = True) -> None:
    array = run.array(name, mmap=True)
    path = run.path / name
    if array.ndim != 2 or len(array) != rows or (dim is not None and array.shape[1] != dim):
        want = f"({rows}, {dim if dim is not None else 'D'})"
        raise broken_file(path, f"shape {array.shape}, expected {want}")
    if floating and not np.issubdtype(array.dtype, np.floating):
        raise broken_file(path, f"dtype {array.dtype}, expected floating point")


# ---------------------------------------------------------------- JSON documents


def _check_categories(run: Run, k: int) -> None:
    path = run.path / CATEGORIES
    cats = run.json(CATEGORIES)
    if not isinstance(cats, list):
        raise broken_file(path, f"a JSON {json_kind(cats)}, expected a list of {{\"id\", \"name\"}}")
    for i, c in enumerate(cats):
        if not (isinstance(c, dict) and _int_or_none(c.get("id")) is not None and isinstance(c.get("name"), str)):
            raise broken_file(path, f"entry {i} is {_what(c)}, expected {{\"id\": integer, \"name\": text}}")
    if len(cats) != k:
        raise broken_file(path, f"{len(cats)} categories, but {MANIFEST} says {k} (counts.categories)")
    if len({c["id"] for c in cats}) != len(cats):
        raise broken_file(path, "category ids are not unique")


def _check_metrics(run: Run) -> None:
    path = run.path / METRICS
    metrics = _document(run, METRICS, dict)
    if metrics.get("task") != run.task:
        raise broken_file(path, f'"task" is {_what(metrics.get("task"))}, the run is {run.task}')
    for key, kind in METRICS_BLOCKS[run.task].items():
        value = metrics.get(key)
        if value is not None and not isinstance(value, kind):
            raise broken_file(path, f'"{key}" is {_what(value)}, expected {_JSON_NAMES[kind]}')
    if run.task == "classification":
        acc = metrics.get("accuracy")
        if acc is not None and not _is_number(acc):
            raise broken_file(path, f'"accuracy" is {_what(acc)}, expected a number')


def _check_analysis(run: Run) -> None:
    if not (run.path / ANALYSIS).exists():
        return
    path = run.path / ANALYSIS
    analysis = _document(run, ANALYSIS, dict)
    op = analysis.get("operating_point")
    if op is not None and not isinstance(op, dict):
        raise broken_file(path, f'"operating_point" is {_what(op)}, expected an object')
    importance = analysis.get("importance", [])
    if not isinstance(importance, list) or not all(isinstance(r, dict) and isinstance(r.get("prop"), str)
                                                   for r in importance):
        raise broken_file(path, '"importance" is not a list of {"prop": name, ...}')


def _check_recommendations(run: Run, n: int) -> None:
    if not (run.path / RECOMMENDATIONS).exists():
        return
    path = run.path / RECOMMENDATIONS
    recs = _document(run, RECOMMENDATIONS, list)
    for i, rec in enumerate(recs):
        if not isinstance(rec, dict):
            raise broken_file(path, f"entry {i} is {_what(rec)}, expected an object")
        selection = rec.get("selection", {})
        idx = selection.get("image_idx", []) if isinstance(selection, dict) else None
        if not isinstance(idx, list) or not all(_int_or_none(v) is not None and 0 <= v < n for v in idx):
            raise broken_file(path, f'entry {i}: "selection.image_idx" is not a list of image indices 0…{n - 1}')


_JSON_NAMES = {dict: "an object", list: "a list"}


def _document(run: Run, name: str, kind: type) -> Any:
    doc = run.json(name)
    if not isinstance(doc, kind):
        raise broken_file(run.path / name, f"a JSON {json_kind(doc)}, expected {_JSON_NAMES[kind]}")
    return doc


def _what(value: Any) -> str:
    """A short description of a JSON value for a message: ``a list``, ``null``, ``the string 'x'``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    return f"the number {value}"


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


__all__ = ["open_run", "validate_run"]
