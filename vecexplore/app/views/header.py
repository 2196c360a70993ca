"""The header bar: what this run is, and its metrics at the operating point — whole run beside selection.

:func:`header_html` (pure) renders the numbers :class:`~vecexplore.app.derive.Derived`
computes; the view is one Div whose text is replaced on every update (a few KB).
Every metric's definition is in its column title (a hover away, :data:`DEFINITIONS`).
"""

from __future__ import annotations

import html
import math

from vecexplore.app.view import View

#: What each header metric means (the column's hover text).
DEFINITIONS: dict[str, str] = {
    "mAP": "COCO AP: mean over IoU 0.50:0.05:0.95 and classes, 101-point interpolated (pycocotools); "
           "independent of the confidence threshold; whole run only",
    "AP50": "COCO AP at IoU 0.50 (pycocotools); whole run only",
    "Mask mAP": "COCO segm AP: as mAP, with mask IoU (pycocotools iouType 'segm'); whole run only",
    "Mask AP50": "COCO segm AP at mask IoU 0.50 (pycocotools iouType 'segm'); whole run only",
    "Box mAP": "COCO bbox AP of the same predictions' boxes (pycocotools iouType 'bbox'); whole run only",
    "Precision": "TP / (TP + FP) of the predictions at or above the confidence threshold",
    "Recall": "TP / (TP + FN): share of the non-crowd ground-truth objects found",
    "F1": "2 TP / (2 TP + FP + FN)",
    "TP": "predictions matched to a ground-truth object of their class (IoU ≥ threshold)",
    "FP": "predictions that match nothing of their class: duplicate, wrong class, localization, both, background",
    "FN": "non-crowd ground-truth objects no prediction of their class matched",
    "Error rate": "mean over images of (FP + FN) / (TP + FP + FN); 0 for an image with neither",
    "Images": "images counted",
    "Accuracy": "correct / labelled images; a prediction below the confidence threshold counts as wrong",
    "Coverage": "labelled images whose prediction is at or above the confidence threshold / labelled images",
    "Macro F1": "per-class F1 (precision = correct / predicted, recall = correct / labelled, a rejected "
                "prediction counting as none), averaged over the classes labelled or predicted",
    "Correct": "labelled images whose accepted prediction is the label",
    "Incorrect": "labelled images that are not correct (wrong, or rejected below the threshold)",
    "Labelled": "images with a label",
}


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, int):
        return f"{v:,}"
    v = float(v)
    return "–" if math.isnan(v) else f"{v:.{digits}f}"


def metric_rows(task: str, run: dict, selection: dict | None, coco: dict,
                segm: dict | None = None) -> list[tuple[str, str, str]]:
    """(metric, whole-run value, selection value) rows as displayed; "–" where undefined.

    Detection: mAP and AP50 are COCO numbers over the whole run (independent of
    the operating point) and have no selection value. With masks (``segm``, the
    run's ``coco_segm``) the mask numbers lead and the box mAP follows.
    """
    sel = selection or {}
    if task == "detection":
        if segm:
            rows = [("Mask mAP", _fmt(segm.get("AP")), "whole run"), ("Mask AP50", _fmt(segm.get("AP50")), ""),
                    ("Box mAP", _fmt(coco.get("AP")), "")]
        else:
            rows = [("mAP", _fmt(coco.get("AP")), "whole run"), ("AP50", _fmt(coco.get("AP50")), "")]
        keys = (("Precision", "precision"), ("Recall", "recall"), ("F1", "f1"), ("TP", "tp"), ("FP", "fp"),
                ("FN", "fn"), ("Error rate", "error_rate"), ("Images", "images"))
    else:
        rows = []
        keys = (("Accuracy", "accuracy"), ("Coverage", "coverage"), ("Macro F1", "macro_f1"), ("Correct", "correct"),
                ("Incorrect", "incorrect"), ("Labelled", "labelled"), ("Images", "images"))
    for title, key in keys:
        rows.append((title, _fmt(run.get(key)), _fmt(sel.get(key)) if selection is not None else "–"))
    return rows


def header_html(*, key: str, task: str, model: dict, num_images: int, unreadable: int, iou: float | None,
                confidence: float, optimal: float, run: dict, selection: dict | None, coco: dict,
                clipped: bool = False, iou_type: str = "bbox", segm: dict | None = None) -> str:
    """The header's HTML (every string from the data escaped; classes styled by ``static/app.css``)."""
    e = html.escape
    weights = str(model.get("weights", "?"))
    banner = ""
    if model.get("random"):
        reason = model.get("fallback_reason")
        extra = f" ({reason})" if reason else ""
        tip = ("Random weights: the embedding model is untrained, so the map and the clusters group images by "
               f"low-level pixel statistics, not by content{extra}.")
        banner = f" <span class='vx-banner' title='{e(tip, quote=True)}'>random weights</span>"
    kind = ("<span title='Outcomes, error types and the confusion matrix match objects by mask IoU "
            "(--iou-type segm)'>mask IoU</span>") if iou_type == "segm" else "IoU"
    op = f"{kind} {iou:.2f} · " if iou is not None else ""
    rows = metric_rows(task, run, selection, coco, segm)
    def title(t: str) -> str:
        text = DEFINITIONS.get(t, t)
        return text.replace("(pycocotools)", "(on boxes clipped to the image border: not pycocotools')") if clipped else text

    head = "".join(f"<th title='{e(title(t), quote=True)}'>{e(t)}</th>" for t, _, _ in rows)
    run_cells = "".join(f"<td>{v}</td>" for _, v, _ in rows)
    sel_cells = "".join(f"<td class='vx-muted'>{v}</td>" if v == "whole run" else f"<td>{v}</td>"
                        for _, _, v in rows)
    unread = f" <span class='vx-warn'>({unreadable:,} unreadable)</span>" if unreadable else ""
    clip = (" <span class='vx-warn' title='Boxes crossing the image border were clipped before evaluating, so "
            "these numbers are not pycocotools&#x27;.'>clipped boxes</span>") if clipped else ""
    return (
        f"<div class='vx-header-box'>"
        f"<div class='vx-id'><div class='vx-brand'>vecexplore <span class='vx-run'>{e(key)}</span>{banner}</div>"
        f"<div class='vx-sub'><span class='vx-chip'>{e(task)}</span> {e(str(model.get('model', '?')))} / "
        f"<b>{e(weights)}</b> · {num_images:,} images{unread}{clip}</div>"
        f"<div class='vx-sub'>{op}confidence ≥ <b>{confidence:.3f}</b> "
        f"<span class='vx-muted'>(F1-optimal {optimal:.3f})</span></div></div>"
        f"<table class='vx-metrics'><tr><th></th>{head}</tr>"
        f"<tr><td class='vx-rowname'>Whole run</td>{run_cells}</tr>"
        f"<tr class='vx-sel'><td class='vx-rowname'>Selection</td>{sel_cells}</tr></table></div>"
    )


def selection_text(d) -> str:
    """The selection in words, with its size (shown beside the header, with the export status)."""
    sel = d.selection
    if sel is None:
        return "Nothing selected: the views show the whole run. Lasso or tap points, click a cell, bar or row."
    n = len(sel)
    return f"Selection: {d.describe()} — {n:,} image{'s' if n != 1 else ''}"


class HeaderView(View):
    name = "header"
    slot = "header"
    depends = frozenset({"op", "selection"})

    def __init__(self, ctx):
        super().__init__(ctx)
        from bokeh.models import Div

        self.div = Div(text="", name="header", css_classes=["vx-header", "vx-header-div"], sizing_mode="stretch_width")

    def layout(self):
        return self.div

    def compute(self, d) -> str:
        data, s = self.data, d.state
        return header_html(key=data.key, task=self.task, model=data.model, num_images=data.num_images,
                           unreadable=int((~data.images.readable).sum()),
                           iou=s.iou if self.task == "detection" else None, confidence=s.confidence,
                           optimal=d.optimal, run=d.run_summary, selection=d.selection_summary, coco=data.coco,
                           clipped=data.run.boxes_clipped is True,
                           iou_type=getattr(data.base, "iou_type", "bbox"), segm=data.coco_segm)

    def apply(self, text: str) -> None:
        if self.div.text != text:
            self.div.text = text
