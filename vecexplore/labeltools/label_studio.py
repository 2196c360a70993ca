"""Label Studio tasks of a selection, and the labeling config to create the project with.

One task per image, in ``image_idx`` order::

    {"data": {"image": REF, "image_id", "file_name", "split", "cluster", "error_rate"},
     "annotations": [{"result": [GT regions]}],
     "predictions": [{"model_version", "score", "result": [predicted regions, each with "score"]}]}

``REF`` is the image's absolute path, or with a *document root* Label Studio's
local-files URL ``/data/local-files/?d=<path relative to the root>`` (Label Studio
serves those when started with ``LOCAL_FILES_SERVING_ENABLED=true`` and
``LOCAL_FILES_DOCUMENT_ROOT=<root>``).

Regions use Label Studio's units: ``x, y, width, height`` (and polygon points) in
percent of ``original_width`` / ``original_height`` (:func:`to_percent`). Boxes are
``rectanglelabels`` (from ``label``), masks ``polygonlabels`` (from ``polygon``),
classification ``choices`` (from ``choice``), all on ``image``.

Predictions are those the run counts: at or above its operating point's
confidence (below it they "do not exist", as everywhere in vecexplore); a task's
prediction ``score`` is the mean of its regions' scores (0 with none), the
predicted class's score for classification. Every image of a detection run has
complete GT, so an image without objects gets an annotation with an empty result
(labeled: nothing there); a classification image without a label gets none.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import numpy as np

from vecexplore.errors import ConfigError
from vecexplore.labeltools import outline, rows_by_image
from vecexplore.types import Dataset

IMAGE = "image"
BOX = "label"
POLYGON = "polygon"
CHOICE = "choice"
LOCAL_FILES_URL = "/data/local-files/?d="


# ---------------------------------------------------------------- coordinates


def _sizes(values: np.ndarray, width, height) -> np.ndarray:
    """Per value the image size it is measured in: width for even positions, height for odd."""
    w = np.asarray(width, np.float64)[..., None]
    h = np.asarray(height, np.float64)[..., None]
    return np.where(np.arange(values.shape[-1]) % 2 == 0, w, h)


def to_percent(values, width, height) -> np.ndarray:
    """Pixels → percent of the image size (Label Studio's units).

    Args:
        values: (..., 2k) float, alternating x-like and y-like values: a COCO box
            ``x, y, w, h`` or a polygon ``x1, y1, …, xk, yk``.
        width, height: the image size in pixels, > 0; scalars or (...,) per row.
    """
    v = np.asarray(values, np.float64)
    return v / _sizes(v, width, height) * 100.0


def from_percent(values, width, height) -> np.ndarray:
    """Percent of the image size → pixels; the inverse of :func:`to_percent`."""
    v = np.asarray(values, np.float64)
    return v * _sizes(v, width, height) / 100.0


# ---------------------------------------------------------------- config


def region_kinds(dataset: Dataset) -> tuple[str, ...]:
    """The controls the tasks use: ``choice``; or ``label`` (boxes) and/or ``polygon`` (masks)."""
    if dataset.task == "classification":
        return (CHOICE,)
    masks = [objs.rle is not None for objs in (dataset.gt, dataset.pred)]
    return tuple(k for k, used in ((BOX, not all(masks)), (POLYGON, any(masks))) if used)


def label_config(dataset: Dataset) -> str:
    """The labeling config XML for :func:`tasks` of ``dataset``: its image, and one label per
    category (names escaped) for each kind of region the tasks use."""
    labels = "".join(f"    <Label value={quoteattr(str(n))}/>\n" for n in dataset.categories.names)
    choices = "".join(f"    <Choice value={quoteattr(str(n))}/>\n" for n in dataset.categories.names)
    tags = {BOX: f'  <RectangleLabels name="{BOX}" toName="{IMAGE}">\n{labels}  </RectangleLabels>\n',
            POLYGON: f'  <PolygonLabels name="{POLYGON}" toName="{IMAGE}">\n{labels}  </PolygonLabels>\n',
            CHOICE: f'  <Choices name="{CHOICE}" toName="{IMAGE}" choice="single" showInline="true">\n{choices}  </Choices>\n'}
    body = "".join(tags[k] for k in region_kinds(dataset))
    return f'<View>\n  <Image name="{IMAGE}" value="${IMAGE}" zoom="true"/>\n{body}</View>\n'


# ---------------------------------------------------------------- tasks


def image_ref(path: str, document_root: str | Path | None) -> str:
    """The task's image: ``path`` itself, or its local-files URL under ``document_root``.

    Raises:
        ConfigError: ``path`` is not inside ``document_root``.
    """
    if document_root is None:
        return path
    root = os.path.abspath(document_root)
    rel = os.path.relpath(os.path.abspath(path), root)
    if rel == os.curdir or rel.split(os.sep, 1)[0] == os.pardir:
        raise ConfigError(f"{path}: not inside the document root {root}; Label Studio serves local files "
                          "only from under LOCAL_FILES_DOCUMENT_ROOT (choose a root above every image)")
    return LOCAL_FILES_URL + quote(Path(rel).as_posix(), safe="/")


def tasks(dataset: Dataset, *, images: list[str], data: list[dict] | None = None,
          min_score: float = 0.0, model_version: str = "vecexplore") -> list[dict]:
    """Label Studio tasks of every image of ``dataset`` (see the module docstring).

    Args:
        images: the ``data.image`` value of each image (table order).
        data: more ``data`` fields per image (ids, cluster, ...).
        min_score: predictions below this score are left out.

    Raises:
        ConfigError: an image with regions has no known size (percent units need it).
    """
    n = len(dataset.images)
    if len(images) != n or (data is not None and len(data) != n):
        raise ValueError(f"images/data: expected {n} entries, got {len(images)}/{len(data or [])}")
    names = [str(c) for c in dataset.categories.names]
    if dataset.task == "classification":
        make = _choices_tasks(dataset, names, min_score)
    else:
        make = _region_tasks(dataset, names, min_score)
    out = []
    for j, (gt, predictions) in enumerate(make):
        fields = {IMAGE: images[j], **(data[j] if data is not None else {})}
        out.append({"data": fields, "annotations": gt,
                    "predictions": [{"model_version": model_version, **p} for p in predictions]})
    return out


def _choices_tasks(ds: Dataset, names: list[str], min_score: float):
    n = len(ds.images)
    gt = dict(zip(ds.gt.image_idx.tolist(), ds.gt.class_idx.tolist(), strict=True))
    pred = {j: (c, s) for j, c, s in zip(ds.pred.image_idx.tolist(), ds.pred.class_idx.tolist(),
                                         ds.pred.score.tolist(), strict=True) if s >= min_score}

    def choice(c: int, **extra) -> dict:
        return {"id": "choice", "type": "choices", "from_name": CHOICE, "to_name": IMAGE,
                "value": {"choices": [names[c]]}, **extra}

    for j in range(n):
        annotations = [{"result": [choice(gt[j])]}] if j in gt else []
        predictions = []
        if j in pred:
            c, s = pred[j]
            predictions = [{"score": s, "result": [choice(c, score=s)]}]
        yield annotations, predictions


def _region_tasks(ds: Dataset, names: list[str], min_score: float):
    n = len(ds.images)
    keep_gt = np.flatnonzero(~ds.gt.iscrowd)
    keep_pred = np.flatnonzero(ds.pred.score >= min_score)
    gt_rows = [keep_gt[r] for r in rows_by_image(ds.gt.image_idx[keep_gt], n)]
    pred_rows = [keep_pred[r] for r in rows_by_image(ds.pred.image_idx[keep_pred], n)]
    for j in range(n):
        w, h = int(ds.images.width[j]), int(ds.images.height[j])
        if (len(gt_rows[j]) or len(pred_rows[j])) and (w <= 0 or h <= 0):
            raise ConfigError(f"image {ds.images.image_id[j]} ({ds.images.file_name[j]}): its size is unknown, "
                              "and Label Studio places regions in percent of it; leave it out of the selection")
        gt = [_region(ds.gt, r, names, w, h, "gt") for r in gt_rows[j].tolist()]
        pred = [_region(ds.pred, r, names, w, h, "pred") for r in pred_rows[j].tolist()]
        scores = [p["score"] for p in pred]
        yield [{"result": gt}], [{"score": float(np.mean(scores)) if scores else 0.0, "result": pred}]


def _region(boxes, row: int, names: list[str], w: int, h: int, prefix: str) -> dict:
    label = names[int(boxes.class_idx[row])]
    poly = outline(boxes, row)
    if poly is None:
        x, y, bw, bh = to_percent(boxes.xywh[row], w, h).tolist()
        kind, value = "rectanglelabels", {"x": x, "y": y, "width": bw, "height": bh, "rotation": 0}
        from_name = BOX
    else:
        kind, value = "polygonlabels", {"points": to_percent(poly, w, h).tolist(), "closed": True}
        from_name = POLYGON
    region = {"id": f"{prefix}{int(boxes.object_id[row])}", "type": kind, "from_name": from_name,
              "to_name": IMAGE, "original_width": w, "original_height": h, "image_rotation": 0,
              "value": {**value, kind: [label]}}
    if boxes.score is not None:
        region["score"] = float(boxes.score[row])
    return region


# ---------------------------------------------------------------- writing


@dataclass(frozen=True)
class LabelStudioExport:
    """What :func:`write_label_studio` wrote: the tasks file, the config beside it and counts
    (GT regions, predicted regions, crowd GT regions left out)."""

    tasks: Path
    config: Path
    n_tasks: int
    n_annotations: int
    n_predictions: int
    n_crowd: int
    document_root: str | None


def config_path(out: str | Path) -> Path:
    """Where the labeling config goes: ``relabel.json`` → ``relabel.label_config.xml``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.label_config.xml")


def run_tasks(run, image_idx: np.ndarray, *, document_root: str | Path | None = None) -> tuple[Dataset, list[dict]]:
    """(the selection's dataset, its tasks) for a run: images by path or local-files URL, the
    run's ids, split, cluster and error rate as data, predictions at its operating point."""
    from vecexplore.atomic import json_safe
    from vecexplore.export import image_paths

    image_idx = np.sort(np.asarray(image_idx, np.int64))
    ds = run.dataset().subset(image_idx)
    paths = image_paths(run)
    rows = run.images.iloc[image_idx]
    cols = [c for c in ("image_id", "file_name", "split", "cluster", "error_rate", "correct") if c in rows]
    data = json_safe(rows[cols].to_dict(orient="records"))
    refs = [image_ref(paths[i], document_root) for i in image_idx.tolist()]
    conf = float((run.metrics.get("operating_point") or {}).get("confidence") or 0.0)
    return ds, tasks(ds, images=refs, data=data, min_score=conf, model_version=Path(run.path).name)


def images_root_of(run, image_idx: np.ndarray) -> str | None:
    """The run's images root when every selected image lies inside it (then it can be Label
    Studio's LOCAL_FILES_DOCUMENT_ROOT), else None."""
    from vecexplore.export import image_paths

    root = (run.manifest.get("inputs") or {}).get("images_root")
    if not root:
        return None
    paths = image_paths(run)
    try:
        for i in np.asarray(image_idx, np.int64).tolist():
            image_ref(paths[i], root)
    except ConfigError:
        return None
    return os.path.abspath(root)


def write_label_studio(run, image_idx: np.ndarray, out: str | Path, *,
                       document_root: str | Path | None = None) -> LabelStudioExport:
    """Write the tasks of ``image_idx`` to ``out`` (JSON) and the labeling config beside it
    (:func:`config_path`), each atomically; a failure leaves neither."""
    from vecexplore.atomic import atomic_write_text

    out = Path(out)
    ds, items = run_tasks(run, image_idx, document_root=document_root)
    cfg = config_path(out)
    atomic_write_text(cfg, label_config(ds))
    try:
        atomic_write_text(out, json.dumps(items, indent=1) + "\n")
    except BaseException:
        cfg.unlink(missing_ok=True)
        raise
    n_gt = sum(len(a["result"]) for t in items for a in t["annotations"])
    n_pred = sum(len(p["result"]) for t in items for p in t["predictions"])
    n_crowd = int(ds.gt.iscrowd.sum()) if ds.task == "detection" else 0
    return LabelStudioExport(out, cfg, len(items), n_gt, n_pred, n_crowd,
                             None if document_root is None else os.path.abspath(document_root))


def import_hint(tasks_file: str | Path, *, config: str | Path | None = None,
                document_root: str | Path | None = None) -> list[str]:
    """How to bring an export into Label Studio, for a person (the CLI prints it).

    ``config`` is the labeling config file (default: :func:`config_path` of ``tasks_file``)."""
    tasks_file = Path(tasks_file)
    config = config_path(tasks_file) if config is None else Path(config)
    lines = [f"labeling config: {config}",
             "import: Label Studio → Create Project → Labeling Setup → Custom template: paste the config; "
             f"then Data Import: {tasks_file.name}",
             "  or: curl -H 'Authorization: Token $TOKEN' -H 'Content-Type: application/json' "
             f"-X POST $LABEL_STUDIO_URL/api/projects/$PROJECT/import --data @{tasks_file}"]
    if document_root is not None:
        root = os.path.abspath(document_root)
        lines += ["images load as local files: start Label Studio with LOCAL_FILES_SERVING_ENABLED=true "
                  f"LOCAL_FILES_DOCUMENT_ROOT={root}, and give the project a local-files source storage "
                  f"(Settings → Cloud Storage → Add Source Storage → Local files) whose absolute path, at or "
                  f"below {root}, holds the images (no need to sync it)"]
    else:
        lines.append("images are referenced by absolute path; pass --document-root DIR to reference them as "
                     "Label Studio local files (LOCAL_FILES_DOCUMENT_ROOT=DIR), so that they show in the editor")
    return lines


__all__ = [
    "LabelStudioExport",
    "config_path",
    "from_percent",
    "image_ref",
    "images_root_of",
    "import_hint",
    "label_config",
    "region_kinds",
    "run_tasks",
    "tasks",
    "to_percent",
    "write_label_studio",
]
