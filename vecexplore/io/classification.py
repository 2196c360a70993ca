"""Image classification: CSV ground truth and predictions, ImageFolder ground truth,
and :func:`to_csv`.

Formats:

* GT CSV: ``file_name,label`` (an optional ``split`` column → ``ImageTable.split``).
* Predictions CSV: ``file_name,prediction,score[,score_<class>...]``; ``score`` may
  be left out when per-class scores are given (it is then the predicted class's).
  One file may carry both (an empty ``prediction`` = no prediction for that image).
* ImageFolder: one sub-folder per class (sorted, torchvision's convention), images
  anywhere inside it; predictions by CSV with ``file_name`` relative to the root.

Classes are the union of the GT labels, the ``score_<class>`` columns and the
given names, sorted by name; category ids are 0..K-1 in that order. Images keep
the GT file's row order (ImageFolder: class, then path order); ``image_id`` is
0..N-1. Per-class score columns, if any, must cover every class and are reordered
to category order. Image sizes are read from the headers (0 if unreadable).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vecexplore.errors import ConfigError, InputError
from vecexplore.io._common import LoadReport
from vecexplore.io._read import image_sizes, read_csv, require_dir, warn_unreadable
from vecexplore.io.paths import IMAGE_EXTENSIONS, check_image_paths, check_images_exist, image_paths
from vecexplore.types import Categories, Dataset, ImageTable, Labels

SCORE_PREFIX = "score_"


@dataclass
class GtRows:
    """Parsed ground truth: parallel lists in file order; ``lines`` for messages."""

    path: str
    file_names: list[str]
    labels: list[str]
    lines: list[int]
    split: list[str | None] | None = None


@dataclass
class PredRows:
    """Parsed predictions: parallel lists in file order.

    ``score`` is NaN where the file gives per-class scores only; ``scores`` maps a
    class name to its column (one value per row).
    """

    path: str
    file_names: list[str]
    labels: list[str]
    score: list[float]
    lines: list[int]
    scores: dict[str, list[float]] | None = None


def load_classification_csv(
    gt: str | Path,
    pred: str | Path | None = None,
    *,
    images_root: str | Path | None = None,
    names: Sequence[str] | None = None,
    check_images: bool = True,
    allow_outside_root: bool = False,
    progress: bool = False,
    report: LoadReport | None = None,
) -> Dataset:
    """Read a GT CSV and a predictions CSV (or one CSV carrying both; ``pred=None``).

    Every image header is read (sizes), so images outside ``images_root`` are
    refused whatever ``check_images`` says, unless ``allow_outside_root``.

    Raises:
        InputError: missing columns; bad or missing values (file and line named);
            a prediction label that is not a known class; a prediction for a file
            without GT; duplicate files. MissingImagesError: images not on disk.
            OutsideRootError: images outside ``images_root`` (all listed).
    """
    header, rows = read_csv(gt)
    gt_rows = parse_gt_csv(header, rows, path=str(gt))
    if pred is None:
        if "prediction" not in header:
            raise InputError("no predictions: the file has no 'prediction' column and no predictions file was given", path=gt)
        pred_rows = parse_pred_csv(header, rows, path=str(gt))
    else:
        pheader, prows = read_csv(pred)
        pred_rows = parse_pred_csv(pheader, prows, path=str(pred))
    if check_images:
        check_images_exist(gt_rows.file_names, images_root)
    check_image_paths(gt_rows.file_names, images_root, allow_outside_root=allow_outside_root, report=report)
    sources = (str(gt),) if pred is None else (str(gt), str(pred))
    return _with_sizes(gt_rows, pred_rows, names, images_root, progress, report, sources)


def load_imagefolder(
    root: str | Path,
    pred: str | Path,
    *,
    names: Sequence[str] | None = None,
    allow_outside_root: bool = False,
    progress: bool = False,
    report: LoadReport | None = None,
) -> Dataset:
    """Read ImageFolder ground truth (``root/<class>/**/<image>``) and a predictions
    CSV whose ``file_name`` is relative to ``root``. ``images_root`` is ``root``; images
    reached through symlinks that point out of it are refused unless
    ``allow_outside_root`` (:class:`OutsideRootError`)."""
    root = require_dir(root, what="ImageFolder root")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise InputError("no class sub-folders (ImageFolder expects ROOT/<class>/<image>)", path=root)
    files, labels = [], []
    for cls in classes:
        for directory, dirs, fnames in sorted(os.walk(root / cls, followlinks=True)):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for fname in sorted(fnames):
                if not fname.startswith(".") and os.path.splitext(fname)[1].lower() in IMAGE_EXTENSIONS:
                    files.append(Path(os.path.relpath(os.path.join(directory, fname), root)).as_posix())
                    labels.append(cls)
    if not files:
        raise InputError("no images in the class sub-folders (empty dataset)", path=root)
    gt_rows = GtRows(path=str(root), file_names=files, labels=labels, lines=[0] * len(files))
    check_image_paths(files, root, allow_outside_root=allow_outside_root, report=report)
    pheader, prows = read_csv(pred)
    pred_rows = parse_pred_csv(pheader, prows, path=str(pred))
    names = sorted(set(classes) | set(names or ()))  # empty class folders are classes too
    return _with_sizes(gt_rows, pred_rows, names, root, progress, report, (str(root), str(pred)))


def _with_sizes(gt_rows, pred_rows, names, root, progress, report, sources) -> Dataset:
    width, height, unreadable = image_sizes(image_paths(gt_rows.file_names, root), progress=progress)
    bad = [gt_rows.file_names[k] for k in unreadable]
    warn_unreadable(bad, root=root)
    if report is not None:
        report.unreadable.extend(bad)
    return classification_to_dataset(gt=gt_rows, pred=pred_rows, names=names, width=width, height=height,
                                     images_root=root, sources=sources)


def parse_gt_csv(header: list[str], rows: list[tuple[int, list[str]]], *, path: str) -> GtRows:
    """Columns ``file_name`` and ``label`` (required), ``split`` (optional)."""
    _require_columns(header, ("file_name", "label"), path)
    fi, li = header.index("file_name"), header.index("label")
    si = header.index("split") if "split" in header else None
    out = GtRows(path=path, file_names=[], labels=[], lines=[], split=[] if si is not None else None)
    for line, fields in rows:
        for col, idx in (("file_name", fi), ("label", li)):
            if not fields[idx]:
                raise InputError(f"empty {col}", path=path, record=f"line {line}")
        out.file_names.append(fields[fi])
        out.labels.append(fields[li])
        out.lines.append(line)
        if si is not None:
            out.split.append(fields[si] or None)
    return out


def parse_pred_csv(header: list[str], rows: list[tuple[int, list[str]]], *, path: str) -> PredRows:
    """Columns ``file_name``, ``prediction``, ``score`` (optional when ``score_<class>``
    columns exist). Rows with an empty ``prediction`` are skipped (no prediction)."""
    score_cols = {h[len(SCORE_PREFIX):]: k for k, h in enumerate(header) if h.startswith(SCORE_PREFIX) and len(h) > len(SCORE_PREFIX)}
    _require_columns(header, ("file_name", "prediction") + (() if score_cols else ("score",)), path)
    fi, pi = header.index("file_name"), header.index("prediction")
    si = header.index("score") if "score" in header else None
    out = PredRows(path=path, file_names=[], labels=[], score=[], lines=[],
                   scores={c: [] for c in score_cols} if score_cols else None)
    for line, fields in rows:
        if not fields[pi]:
            continue
        where = f"line {line}"
        if not fields[fi]:
            raise InputError("empty file_name", path=path, record=where)
        out.file_names.append(fields[fi])
        out.labels.append(fields[pi])
        out.lines.append(line)
        out.score.append(np.nan if si is None else _score(fields[si], "score", path, where))
        for cls, k in score_cols.items():
            out.scores[cls].append(_score(fields[k], header[k], path, where))
    return out


def _score(text: str, column: str, path: str, where: str) -> float:
    if not text:
        raise InputError(f"empty {column}", path=path, record=where)
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{column} is not a number: {text!r}", path=path, record=where) from None
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise InputError(f"{column} must be in [0, 1], got {text}", path=path, record=where)
    return value


def _require_columns(header: list[str], required: Sequence[str], path: str) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"missing required column(s) {missing}; found {header}", path=path, record="line 1")


def classification_to_dataset(
    *,
    gt: GtRows,
    pred: PredRows,
    names: Sequence[str] | None = None,
    width: np.ndarray | None = None,
    height: np.ndarray | None = None,
    images_root: str | Path | None = None,
    sources: tuple[str, ...] = (),
) -> Dataset:
    """The pure converter: parsed rows → :class:`Dataset` (sizes default to 0, unknown)."""
    n = len(gt.file_names)
    if n == 0:
        raise InputError("no rows: no images (empty dataset)", path=gt.path)
    first: dict[str, int] = {}
    for k, f in enumerate(gt.file_names):
        if f in first:
            raise InputError(f"duplicate file_name {f!r} (also line {gt.lines[first[f]]})", path=gt.path, record=f"line {gt.lines[k]}")
        first[f] = k
    classes = sorted(set(gt.labels) | set(pred.scores or ()) | set(names or ()))
    categories = Categories.from_names(classes)
    lookup = {c: i for i, c in enumerate(classes)}
    if pred.scores is not None:
        missing = [c for c in classes if c not in pred.scores]
        if missing:
            raise InputError(f"per-class score columns must cover every class; missing: "
                             f"{[SCORE_PREFIX + c for c in missing]}", path=pred.path, record="line 1")
    seen: dict[str, int] = {}
    image_idx, class_idx = np.empty(len(pred.file_names), np.int64), np.empty(len(pred.file_names), np.int64)
    for k, (f, label) in enumerate(zip(pred.file_names, pred.labels, strict=True)):
        where = f"line {pred.lines[k]}"
        if f not in first:
            raise InputError(f"prediction for {f!r}, which has no ground truth", path=pred.path, record=where)
        if f in seen:
            raise InputError(f"second prediction for {f!r} (also line {pred.lines[seen[f]]})", path=pred.path, record=where)
        seen[f] = k
        if label not in lookup:
            raise InputError(f"prediction {label!r} is not a known class (known: {_head(classes)})", path=pred.path, record=where)
        image_idx[k], class_idx[k] = first[f], lookup[label]
    score = np.array(pred.score, np.float64)
    scores = None
    if pred.scores is not None:
        scores = np.array([pred.scores[c] for c in classes], np.float64).T.reshape(len(score), len(classes))
        no_score = np.isnan(score)
        score[no_score] = scores[np.flatnonzero(no_score), class_idx[no_score]]
    images = ImageTable(image_id=np.arange(n), file_name=np.array(gt.file_names, dtype=object),
                        width=np.zeros(n, np.int64) if width is None else width,
                        height=np.zeros(n, np.int64) if height is None else height, split=gt.split)
    gt_labels = Labels(image_idx=np.arange(n), class_idx=np.array([lookup[c] for c in gt.labels], np.int64))
    pred_labels = Labels(image_idx=image_idx, class_idx=class_idx, score=score, scores=scores)
    return Dataset(task="classification", images=images, categories=categories, gt=gt_labels, pred=pred_labels,
                   images_root=None if images_root is None else str(images_root), sources=sources)


def _head(values: list[str], k: int = 10) -> str:
    return ", ".join(values[:k]) + (f" … and {len(values) - k} more" if len(values) > k else "")


def to_csv(dataset: Dataset, path: str | Path | None = None, *,
           image_idx: Sequence[int] | np.ndarray | None = None) -> str:
    """The dataset as one CSV carrying GT and predictions; written atomically to
    ``path`` if given. Columns: ``file_name,label[,split],prediction,score``, then
    ``score_<class>`` in category order when per-class scores exist. Images without
    a prediction have empty prediction cells. Every image needs a GT label.
    """
    import csv

    if dataset.task != "classification":
        raise ConfigError(f"CSV export needs a classification dataset, got {dataset.task}")
    ds = dataset if image_idx is None else dataset.subset(image_idx)
    n, names = len(ds.images), ds.categories.names.tolist()
    label = np.full(n, -1, np.int64)
    label[ds.gt.image_idx] = ds.gt.class_idx
    if (label < 0).any():
        missing = ds.images.file_name[label < 0].tolist()
        raise ConfigError(f"CSV export needs a label for every image; {len(missing)} have none: {_head(missing)}")
    pred_row = np.full(n, -1, np.int64)
    pred_row[ds.pred.image_idx] = np.arange(len(ds.pred))
    has_scores = ds.pred.scores is not None
    header = ["file_name", "label"] + (["split"] if ds.images.split is not None else []) + ["prediction", "score"]
    header += [SCORE_PREFIX + c for c in names] if has_scores else []
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for j in range(n):
        row = [ds.images.file_name[j], names[label[j]]]
        if ds.images.split is not None:
            row.append(ds.images.split[j] or "")
        k = pred_row[j]
        if k < 0:
            row += [""] * (2 + (len(names) if has_scores else 0))
        else:
            row += [names[ds.pred.class_idx[k]], repr(float(ds.pred.score[k]))]
            row += [repr(v) for v in ds.pred.scores[k].tolist()] if has_scores else []
        writer.writerow(row)
    text = buf.getvalue()
    if path is not None:
        from vecexplore.store import atomic_write_text

        atomic_write_text(path, text)
    return text
