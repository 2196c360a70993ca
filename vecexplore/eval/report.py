"""The text report of an evaluation: plain lines (:func:`report_text`, what the
CLI writes to a pipe or file, without importing rich) or rich renderables
(:func:`build_report`, for a terminal: the same text, headings in bold).

Detection: the operating point (with a note when it is the F1-optimal
default), COCO AP/AR, precision / recall / F1 at the operating point, counts of
each error type, a per-class table, the confusion matrix (when the classes fit
on a screen) and the top confusions. Classification: accuracy, macro / weighted
averages, top-k and ROC AUC where available, coverage, a per-class table, the
confusion matrix and the top confusions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rich.console import Group

    from vecexplore.eval.confusion import ConfusionMatrix
    from vecexplore.eval.evaluate import ClassificationEvaluation, DetectionEvaluation, Evaluation

#: Confusion matrices with more rows than this are summarised by their top confusions only.
MAX_MATRIX = 12


def build_report(evaluation: Evaluation, *, max_classes: int = 30, top: int = 10) -> Group:
    """The report of ``evaluation`` as rich renderables.

    Args:
        evaluation: a detection or classification evaluation.
        max_classes: per-class rows shown (classes with the most ground truth first).
        top: number of top confusions listed.
    """
    from rich.console import Group
    return Group(*(_Line(line.text, style=line.style or "") for line in _lines(evaluation, max_classes, top)))


def report_text(evaluation: Evaluation, *, max_classes: int = 30, top: int = 10) -> str:
    """The report of ``evaluation`` as plain text (the lines of :func:`build_report`)."""
    return "".join(line.text + "\n" for line in _lines(evaluation, max_classes, top))


@dataclass(frozen=True)
class _Line:
    """A paragraph of the report (may hold newlines), with a rich style name or None."""

    text: str
    style: str | None = None


def _lines(evaluation: Evaluation, max_classes: int, top: int) -> list[_Line]:
    parts = (_detection if evaluation.task == "detection" else _classification)(evaluation, max_classes, top)
    out: list[_Line] = []
    for part in parts:
        out.extend(part if isinstance(part, list) else [part])
    return out


def _cell_len(text: str) -> int:
    """Terminal cells of ``text`` (wide characters count 2)."""
    if text.isascii():
        return len(text)
    from rich.cells import cell_len

    return cell_len(text)


def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    return f"{float(v):.{digits}f}"


def _table(title: str, columns: list[str], rows: list[list], *, first_left: bool = True):
    """A compact table under a bold heading (a heading line, so narrow tables do not wrap it).

    Laid out as rich's ``Table(show_edge=False, pad_edge=False)`` draws it, but as
    preformatted text: measuring a rich Table cell by cell took longer than the
    whole evaluation of a COCO-sized set.
    """
    cells = [[c if isinstance(c, str) else _fmt(c) for c in row] for row in rows]
    widths = [max([_cell_len(col), *(_cell_len(r[i]) for r in cells)]) for i, col in enumerate(columns)]
    last = len(columns) - 1

    def line(values: list[str], sep: str) -> str:
        out = []
        for i, (v, w) in enumerate(zip(values, widths, strict=True)):
            pad = " " * (w - _cell_len(v))
            v = v + pad if (i == 0 and first_left) else pad + v
            out.append((" " if i else "") + v + (" " if i < last else ""))
        return sep.join(out)

    rule = "╇".join("━" * (w + (i > 0) + (i < last)) for i, w in enumerate(widths))
    table = [_Line(line(list(columns), "┃"), "bold"), _Line("\n".join([rule, *(line(r, "│") for r in cells)]))]
    return [_Line(""), _Line(title, "bold"), *table] if title else table


def _segm_parts(ev: DetectionEvaluation) -> list:
    """The mask AP/AR tables (pycocotools segm), when the inputs carry masks."""
    segm = getattr(ev, "coco_segm", None)
    if segm is None:
        return []
    m = segm.as_dict()
    names = list(m)
    return [_table("COCO masks (pycocotools segm-equal; -1 = undefined)", names[:6], [[m[k] for k in names[:6]]],
                   first_left=False),
            _table("", names[6:], [[m[k] for k in names[6:]]], first_left=False)]


def _operating_point_note(ev: DetectionEvaluation) -> str:
    best_c, best_f1 = ev.optimal
    kind = "mask IoU" if getattr(ev, "iou_type", "bbox") == "segm" else "IoU"
    head = f"Operating point: {kind} ≥ {ev.iou:g}, confidence ≥ {ev.confidence:.4g}"
    if ev.confidence_is_default:
        if math.isnan(best_c):
            return head + " (no predictions to choose a confidence from)"
        return head + f" — the F1-optimal confidence (F1 {best_f1:.3f}); pass --conf to choose another"
    return head + f" (given; the F1-optimal confidence is {_fmt(best_c, 4)} with F1 {_fmt(best_f1)})"


def _coco_title(ds) -> str:
    if ds.boxes_clipped:
        from vecexplore.eval.evaluate import CLIPPED_NOTE

        return f"COCO ({CLIPPED_NOTE}; -1 = undefined)"
    return "COCO (pycocotools-equal; -1 = undefined)"


def _detection(ev: DetectionEvaluation, max_classes: int, top: int) -> list:
    ds = ev.dataset
    t = ev.totals
    coco = ev.coco.as_dict()
    names = list(coco)
    parts = [
        _Line(f"Detection: {ds.num_images:,} images, {len(ds.categories):,} classes, "
             f"{len(ds.gt):,} ground-truth boxes ({int(ds.gt.iscrowd.sum()):,} crowd), "
             f"{len(ds.pred):,} predictions", "bold"),
        _Line(_operating_point_note(ev)),
        _table(_coco_title(ds), names[:6], [[coco[k] for k in names[:6]]], first_left=False),
        _table("", names[6:], [[coco[k] for k in names[6:]]], first_left=False),
        *_segm_parts(ev),
        _table("At the operating point", ["precision", "recall", "F1", "TP", "FP", "FN", "ignored (crowd)"],
               [[t["precision"], t["recall"], t["f1"], t["tp"], t["fp"], t["fn"], t["n_ignored"]]], first_left=False),
    ]
    errors = ev.error_types
    total = sum(errors.values())
    parts.append(_table("Error types (FP types, and missed = FN without a wrong-class box on it)",
                        ["type", "count", "share"],
                        [[k, v, f"{v / total:.1%}" if total else "-"] for k, v in errors.items()]))
    c = ev.class_columns_with_ap()
    order = np.lexsort((c["class_idx"], -c["n_gt"]))  # most GT first, ties by class
    segm = "segm_AP" in c
    keys = ("name", "n_gt", "AP", "AP50", *(("segm_AP", "segm_AP50") if segm else ()),
            "precision", "recall", "f1", "tp", "fp", "fn")
    rows = [[c["name"][k] if key == "name" else c[key][k] for key in keys] for k in order[:max_classes]]
    n = len(order)
    title = "Per class" + (f" (the {max_classes} with the most GT of {n})" if n > max_classes else "")
    parts.append(_table(title, ["class", "GT", "AP", "AP50", *(["mask AP", "mask AP50"] if segm else []),
                                "precision", "recall", "F1", "TP", "FP", "FN"], rows))
    parts.extend(_confusion_parts(ev.confusion, top))
    return parts


def _classification(ev: ClassificationEvaluation, max_classes: int, top: int) -> list:
    ds, m = ev.dataset, ev.metrics
    used, labelled = ev.coverage
    best_c, best_f1 = ev.optimal
    head = f"Operating point: confidence ≥ {ev.confidence:.4g}"
    if ev.confidence_is_default:
        head += " (default: every prediction accepted)"
    head += f"; coverage {used:,} of {labelled:,} labelled images"
    if not math.isnan(best_c):
        head += f"; the selective F1 is best at {best_c:.4g} (F1 {best_f1:.3f})"
    headline = [["accuracy", m.accuracy], ["macro precision", m.macro["precision"]],
                ["macro recall", m.macro["recall"]], ["macro F1", m.macro["f1"]],
                ["weighted F1", m.weighted["f1"]]]
    headline += [[f"top-{k} accuracy", v] for k, v in m.top_k.items()]
    if m.roc_auc is not None:
        headline.append(["ROC AUC", m.roc_auc])
    parts = [
        _Line(f"Classification: {ds.num_images:,} images, {len(ds.categories):,} classes, "
             f"{len(ds.gt):,} labels, {len(ds.pred):,} predictions", "bold"),
        _Line(head),
        _table("Metrics (equal to scikit-learn's)", ["metric", "value"], headline),
    ]
    order = np.lexsort((np.arange(len(m.support)), -m.support))[:max_classes]
    rows = [[str(ds.categories.names[k]), int(m.support[k]), m.precision[k], m.recall[k], m.f1[k]] for k in order]
    title = "Per class" + (f" (the {max_classes} most frequent of {len(m.support)})"
                           if len(m.support) > max_classes else "")
    parts.append(_table(title, ["class", "support", "precision", "recall", "F1"], rows))
    parts.extend(_confusion_parts(ev.confusion, top))
    return parts


def _confusion_parts(cm: ConfusionMatrix, top: int) -> list:
    parts = []
    labels = list(cm.labels)
    if len(labels) <= MAX_MATRIX:
        short = [lab if len(lab) <= 10 else lab[:9] + "…" for lab in labels]
        rows = [[short[i], *[int(v) for v in cm.counts[i]]] for i in range(len(labels))]
        parts.append(_table("Confusion matrix (rows = ground truth, columns = prediction)", ["gt \\ pred", *short], rows))
    else:
        parts.append(_Line(f"Confusion matrix: {len(labels)} × {len(labels)} — see --plots or --json"))
    row_sum = cm.counts.sum(axis=1)
    rows = [[labels[i], labels[j], c, f"{c / row_sum[i]:.1%}" if row_sum[i] else "-"]
            for i, j, c in cm.top_confusions(top)]
    if rows:
        parts.append(_table("Top confusions", ["ground truth", "predicted", "count", "of the row"], rows))
    return parts
