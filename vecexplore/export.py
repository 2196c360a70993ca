"""Export a selection of a run's images for relabeling or data collection.

Selections are sets of ``image_idx``; every export lists images in
``image_idx`` order, so the same selection always gives byte-identical files.

Formats:
    csv / json  one row per image with its ids, path, split, outcomes, cluster, x/y
                (classification: ``label`` and ``prediction`` as class names)
    txt         one absolute image path per line (for data-collection scripts)
    coco        a COCO ground-truth subset: the images, their GT annotations
                (crowd included) and all categories; loads in pycocotools/FiftyOne;
                beside it, ``<stem>.predictions.json``: the model's predictions on
                those images as a COCO results list (every score, no threshold)
    yolo        the same subset as a YOLO folder (labels/*.txt, data.yaml, images.txt)
    label-studio  Label Studio JSON tasks: the image (path, or a local-files URL under
                ``document_root``), the GT as annotations, the predictions at the run's
                operating point as pre-annotations with scores, in percent coordinates;
                beside it, ``<stem>.label_config.xml`` to create the project with
                (:mod:`vecexplore.labeltools.label_studio`)
    cvat        a zip CVAT imports: ``annotations.xml`` in CVAT for images 1.1 (GT boxes,
                mask polygons or classification tags), with ``with_images`` the image
                files too (:mod:`vecexplore.labeltools.cvat`)

Object selections (the app's object level: rows of the objects table, GT rows
then prediction rows) export with :func:`object_coco_files` — a COCO subset of
*those* objects only (the picked GT as annotations, the picked predictions as
results) and the images they are on — and, on request, :func:`object_crops`:
each object's crop (the build's crop window) as a PNG file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Literal

import numpy as np

from vecexplore.atomic import disk_full_error, make_unique_dir
from vecexplore.errors import ConfigError, InputError
from vecexplore.store import Run, atomic_write_bytes, atomic_write_text, json_safe

ExportFormat = Literal["csv", "json", "coco", "yolo", "txt", "label-studio", "cvat"]
FORMATS: tuple[str, ...] = ("csv", "json", "coco", "yolo", "txt", "label-studio", "cvat")

# Columns of images.parquet that are internal plumbing, not useful in an export.
_HIDDEN_COLUMNS = ("gt_class_idx", "pred_class_idx")


# ---------------------------------------------------------------- selections


def select_clusters(run: Run, clusters) -> np.ndarray:
    """Images of the given clusters (noise, -1, is allowed: it selects unclustered images)."""
    images = run.images
    wanted = np.asarray(list(clusters), dtype=np.int64)
    known = set(images["cluster"].unique().tolist())
    unknown = sorted(set(wanted.tolist()) - known)
    if unknown:
        raise ConfigError(f"unknown cluster id(s) {unknown}; this run has clusters {sorted(k for k in known if k >= 0)}")
    return np.flatnonzero(np.isin(images["cluster"].to_numpy(), wanted)).astype(np.int64)


def select_from_file(run: Run, path: str | Path) -> np.ndarray:
    """Images listed in a text file, one per line: an image id, a file name as in the
    annotations, or an absolute path. Blank lines and ``#`` comments are skipped.
    Every unknown line is reported. The file must be a regular file within the input
    size limit (:mod:`vecexplore.io.files`)."""
    from vecexplore.io._read import read_text

    path = Path(path)
    lines = read_text(path).splitlines()
    images = run.images
    by_id = {int(v): i for i, v in enumerate(images["image_id"].to_numpy())}
    by_name = {str(v): i for i, v in enumerate(images["file_name"].to_numpy())}
    by_path = {str(p): i for i, p in enumerate(image_paths(run))}
    picked, unknown = [], []
    for lineno, raw in enumerate(lines, 1):
        item = raw.strip()
        if not item or item.startswith("#"):
            continue
        if re.fullmatch(r"-?\d{1,19}", item) and int(item) in by_id:  # longer is no int64 (nor int()-able)
            picked.append(by_id[int(item)])
        elif item in by_name:
            picked.append(by_name[item])
        elif item in by_path:
            picked.append(by_path[item])
        else:
            unknown.append(f"line {lineno}: {item!r}")
    if unknown:
        more = f" … and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise InputError(f"{len(unknown)} entries are not images of this run: {', '.join(unknown[:10])}{more}", path=path)
    return np.unique(np.asarray(picked, dtype=np.int64))


def _class_names(run: Run, images):
    """``images`` with classification's ``label`` / ``prediction`` as class names ("" = none)."""
    if run.task != "classification":
        return images
    names = np.asarray([str(c["name"]) for c in run.categories] + [""], dtype=object)
    out = images.copy()
    for col in ("label", "prediction"):
        if col in out:
            out[col] = names[out[col].to_numpy(np.int64)]  # -1 (none) picks the trailing ""
    return out


def query_columns(run: Run) -> dict[str, np.ndarray]:
    """The columns a ``--where`` condition can use: the run's image table (outcomes at the build's
    operating point, properties, ids, split, cluster, ...; classification's ``label`` and
    ``prediction`` as class names), without internal plumbing; and ``label_issue`` (the image's
    highest label-issue score, 0 = none) and ``label_error`` (it has a likely label error;
    :mod:`vecexplore.analysis.label_issues`)."""
    from vecexplore.analysis.label_issues import image_scores, of_run

    images = _class_names(run, run.images)
    cols = {c: images[c].to_numpy() for c in images.columns if c not in _HIDDEN_COLUMNS}
    issues = of_run(run)
    cols["label_issue"] = image_scores(issues, len(images))
    likely = np.zeros(len(images), bool)
    likely[issues["image_idx"].to_numpy(np.int64)[issues["likely"].to_numpy(bool)]] = True
    cols["label_error"] = likely
    return cols


def select_where(run: Run, expression: str) -> np.ndarray:
    """Images for which a condition holds, e.g. ``"error_rate > 0.5 and split == 'val'"`` or
    ``"'hard' in tags"`` (the language of :mod:`vecexplore.query`)."""
    from vecexplore.query import evaluate
    from vecexplore.selections import load_tags

    mask = evaluate(expression, query_columns(run), n=len(run.images), tags=load_tags(run), what="--where")
    return np.flatnonzero(mask).astype(np.int64)


def select_saved(run: Run, names) -> np.ndarray:
    """Images of the saved selections ``names`` (their union)."""
    from vecexplore.selections import load_selection

    parts = [load_selection(run, n) for n in names]
    return np.unique(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)


def select_text(run: Run, phrase: str, top: int = 100) -> np.ndarray:
    """The ``top`` images closest to ``phrase`` by the run's CLIP text tower (:mod:`vecexplore.text_search`),
    as sorted ``image_idx``.

    Raises:
        WeightsError: the run has random weights, or its model cannot be loaded.
        ConfigError: an empty phrase or a bad ``top``.
    """
    from vecexplore.text_search import TextSearch

    return np.sort(TextSearch(run).search(phrase, top).image_idx)


def select_images(run: Run, *, clusters=None, images_file: str | Path | None = None, where: str | None = None,
                  saved=None, text: str | None = None, text_top: int = 100) -> np.ndarray:
    """The images every given selector picks (their intersection), as sorted ``image_idx``:
    ``clusters`` (:func:`select_clusters`), ``images_file`` (:func:`select_from_file`),
    ``where`` (:func:`select_where`), ``saved`` selection names (:func:`select_saved`),
    ``text`` a phrase whose ``text_top`` closest images are taken (:func:`select_text`).

    Raises:
        ConfigError: no selector given, or an unknown cluster or selection name.
        InputError: a bad images file.
        WeightsError: ``text`` on a run whose text search is off.
    """
    chosen = []
    if clusters:
        chosen.append(select_clusters(run, clusters))
    if images_file is not None:
        chosen.append(select_from_file(run, images_file))
    if where:
        chosen.append(select_where(run, where))
    if saved:
        chosen.append(select_saved(run, saved))
    if text is not None:
        chosen.append(select_text(run, text, text_top))
    if not chosen:
        raise ConfigError("choose images with --cluster, --images-file, --where, --selection or --text")
    selection = chosen[0]
    for other in chosen[1:]:
        selection = np.intersect1d(selection, other)
    return selection


# ---------------------------------------------------------------- writers


def image_paths(run: Run) -> list[str]:
    """Absolute path of every image (file names resolved against the run's images root)."""
    root = run.manifest.get("inputs", {}).get("images_root")
    out = []
    for name in run.images["file_name"].to_numpy():
        p = Path(name)
        if not p.is_absolute() and root:
            p = Path(root) / p
        out.append(str(p))
    return out


def image_rows(run: Run, image_idx: np.ndarray):
    """The export table: one row per selected image, image_idx order, with an absolute path."""
    rows = _class_names(run, run.images.iloc[np.sort(image_idx)])
    paths = image_paths(run)
    rows.insert(rows.columns.get_loc("file_name") + 1, "path", [paths[i] for i in rows["image_idx"]])
    return rows.drop(columns=[c for c in _HIDDEN_COLUMNS if c in rows.columns])


def export_selection(
    run: Run, image_idx: np.ndarray, *, fmt: ExportFormat, out: str | Path, force: bool = False,
    document_root: str | Path | None = None, with_images: bool = False,
) -> Path:
    """Write the selected images in ``fmt`` to ``out`` (a file; a directory for yolo).

    Files and the yolo folder are written atomically, with the user's umask.

    Args:
        document_root: label-studio only: reference images as Label Studio local files
            (``/data/local-files/?d=<path relative to it>``) instead of by path.
        with_images: cvat only: put the image files in the zip too.

    Raises:
        ConfigError: unknown format, empty selection, or ``out`` exists without ``force``.
        DiskFullError: no space (or quota) left; nothing is left at ``out``.
    """
    out = Path(out)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    image_idx = np.unique(np.asarray(image_idx, dtype=np.int64))
    if image_idx.size == 0:
        raise ConfigError("the selection is empty; nothing to export")
    if out.exists() and not force:
        raise ConfigError(f"{out}: already exists; pass --force to overwrite")
    if fmt in ("coco", "yolo") and run.task != "detection":
        raise ConfigError(f"{fmt} export is for detection runs; use csv, json, txt, label-studio or cvat")
    if document_root is not None and fmt != "label-studio":
        raise ConfigError("--document-root is for the label-studio format")
    if with_images and fmt != "cvat":
        raise ConfigError("--with-images is for the cvat format")
    if fmt == "txt":
        paths = image_paths(run)
        atomic_write_text(out, "".join(f"{paths[i]}\n" for i in image_idx))
    elif fmt == "csv":
        atomic_write_bytes(out, image_rows(run, image_idx).to_csv(index=False).encode())
    elif fmt == "json":
        records = image_rows(run, image_idx).to_dict(orient="records")
        atomic_write_text(out, json.dumps(json_safe(records), indent=1) + "\n")
    elif fmt == "coco":
        gt, results = coco_files(run, image_idx)
        atomic_write_text(out, gt)
        try:
            atomic_write_text(predictions_path(out), results)
        except BaseException:  # never a GT subset without the predictions the export promised
            out.unlink(missing_ok=True)
            raise
    elif fmt == "label-studio":
        from vecexplore.labeltools.label_studio import config_path, write_label_studio

        if config_path(out).exists() and not force:
            raise ConfigError(f"{config_path(out)}: already exists; pass --force to overwrite")
        write_label_studio(run, image_idx, out, document_root=document_root)
    elif fmt == "cvat":
        from vecexplore.labeltools.cvat import write_cvat

        write_cvat(run, image_idx, out, with_images=with_images)
    else:
        _write_yolo_dir(run, image_idx, out, force=force)
    return out


def predictions_path(out: str | Path) -> Path:
    """Where a COCO export puts the predictions: ``relabel.json`` → ``relabel.predictions.json``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.predictions{out.suffix or '.json'}")


def coco_files(run: Run, image_idx: np.ndarray) -> tuple[str, str]:
    """(GT subset, predictions results list) of ``image_idx`` as COCO JSON texts."""
    from vecexplore.io.coco import to_coco_gt, to_coco_results

    ds = run.dataset()
    return json.dumps(to_coco_gt(ds, image_idx)) + "\n", json.dumps(to_coco_results(ds, image_idx)) + "\n"


def _object_rows(ds, rows) -> tuple[np.ndarray, np.ndarray]:
    """(GT rows, prediction rows) of objects-table ``rows`` (sorted unique), checked against ``ds``."""
    rows = np.unique(np.asarray(rows, np.int64))
    m, total = len(ds.gt), len(ds.gt) + len(ds.pred)
    if rows.size == 0:
        raise ConfigError("the object selection is empty; nothing to export")
    if rows[0] < 0 or rows[-1] >= total:
        bad = int(rows[0] if rows[0] < 0 else rows[-1])
        raise ConfigError(f"object row {bad} is not in this run (objects.parquet has {total} rows)")
    return rows[rows < m], rows[rows >= m] - m


def object_coco_files(run: Run, rows: np.ndarray) -> tuple[str, str]:
    """(GT subset, predictions results list) of the objects in ``rows`` (objects-table rows) as COCO JSON
    texts: the images those objects are on (image_idx order), only the picked GT annotations and only
    the picked predictions; every category."""
    from dataclasses import replace

    from vecexplore.io.coco import to_coco_gt, to_coco_results

    ds = run.dataset()
    if ds.task != "detection":
        raise ConfigError("an object export is for detection runs")
    gt_rows, pred_rows = _object_rows(ds, rows)
    images = np.unique(np.concatenate([ds.gt.image_idx[gt_rows], ds.pred.image_idx[pred_rows]]))
    sub = replace(ds, gt=ds.gt[gt_rows], pred=ds.pred[pred_rows])
    return json.dumps(to_coco_gt(sub, images)) + "\n", json.dumps(to_coco_results(sub, images)) + "\n"


def object_crops(run: Run, rows: np.ndarray):
    """Yield ``(file name, PNG bytes)`` of each object's crop in ``rows`` (objects-table rows), cut with the
    build's crop settings (:mod:`vecexplore.embed.crops`) from one decode per image, in row order per image.

    Names are ``gt-<annotation id>_image-<image id>_<class>.png`` or ``pred-<id>_…``. Objects on an image that
    cannot be decoded now are skipped; the last item is ``("MISSING.txt", text)`` listing them, when any.
    """
    import io

    from vecexplore.embed.crops import CropConfig, cut_crops
    from vecexplore.io.images import DecodeError, open_rgb

    ds = run.dataset()
    gt_rows, pred_rows = _object_rows(ds, rows)
    crop = run.manifest.get("config", {}).get("crop") or {}
    config = CropConfig(padding=float(crop.get("padding", 0.25)), min_size=int(crop.get("min_size", 32)))
    kind = np.r_[np.zeros(len(gt_rows), bool), np.ones(len(pred_rows), bool)]
    boxes = np.concatenate([ds.gt.xywh[gt_rows], ds.pred.xywh[pred_rows]])
    image = np.concatenate([ds.gt.image_idx[gt_rows], ds.pred.image_idx[pred_rows]])
    ids = np.concatenate([ds.gt.object_id[gt_rows], ds.pred.object_id[pred_rows]])
    cls = np.concatenate([ds.gt.class_idx[gt_rows], ds.pred.class_idx[pred_rows]])
    names = [re.sub(r"[^A-Za-z0-9_.-]+", "-", str(n)).strip("-.") or "class" for n in ds.categories.names]
    paths = image_paths(run)
    missing = []
    for i in np.unique(image):
        on = np.flatnonzero(image == i)
        image_id = int(ds.images.image_id[i])
        try:
            img = open_rgb(paths[i])
        except DecodeError as exc:
            missing.append(f"image {image_id}: {exc}")
            continue
        xyxy = np.concatenate([boxes[on, :2], boxes[on, :2] + boxes[on, 2:]], axis=1)
        for j, c in zip(on, cut_crops(img, xyxy, config), strict=True):
            buf = io.BytesIO()
            c.save(buf, format="PNG")  # lossless: the pixels the model embedded
            yield f"{'pred' if kind[j] else 'gt'}-{int(ids[j])}_image-{image_id}_{names[cls[j]]}.png", buf.getvalue()
    if missing:
        yield "MISSING.txt", "".join(f"{m}\n" for m in missing).encode()


def _write_yolo_dir(run: Run, image_idx: np.ndarray, out: Path, *, force: bool) -> None:
    from vecexplore.io.yolo import write_yolo

    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")
    with disk_full_error(out, _yolo_bytes(run, image_idx)):
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_unique_dir(out.parent, f".{out.name}.")
    mode = tmp.stat().st_mode & 0o7777  # what mkdir gives under the user's umask
    try:
        with disk_full_error(out, _yolo_bytes(run, image_idx)):
            write_yolo(run.dataset(), tmp, image_idx=image_idx)
            os.chmod(tmp, mode)  # write_yolo's folder comes from mkdtemp (0700): give it the umask's mode
            if out.exists():
                shutil.rmtree(out)
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _yolo_bytes(run: Run, image_idx: np.ndarray) -> int:
    """About what a YOLO folder of the selection takes: a 4 kB block per file (per image a
    label file and an image symlink, per image with predictions one more, the folders)
    and ~80 bytes per box line."""
    objects = run.objects
    rows = np.isin(objects["image_idx"].to_numpy(), image_idx)
    with_pred = np.unique(objects["image_idx"].to_numpy()[rows & (objects["kind"] == "pred").to_numpy()])
    return int((2 * len(image_idx) + len(with_pred) + 4) * 4096 + rows.sum() * 80)


def describe_selection(how: str, n: int) -> str:
    """A file-name-safe description like ``cluster-3_42-images``."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", how).strip("-.")[:60] or "selection"  # never a hidden file
    return f"{slug}_{n}-images"


__all__ = [
    "FORMATS",
    "coco_files",
    "describe_selection",
    "export_selection",
    "image_paths",
    "image_rows",
    "object_coco_files",
    "object_crops",
    "predictions_path",
    "query_columns",
    "select_clusters",
    "select_from_file",
    "select_images",
    "select_saved",
    "select_where",
]
