"""The header: what this run is, and its metrics at the operating point — whole run beside selection.

:func:`header_html` (pure) renders the numbers that :mod:`vecexplore.app.state`
computes; the panel is one Div whose text is replaced on every update (a few KB).
"""

from __future__ import annotations

import html
import math


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, int):
        return f"{v:,}"
    v = float(v)
    return "–" if math.isnan(v) else f"{v:.{digits}f}"


def metric_rows(task: str, run: dict, selection: dict | None, coco: dict) -> list[tuple[str, str, str]]:
    """(metric, whole-run value, selection value) rows as displayed; "–" where undefined.

    Detection: mAP and AP50 are COCO numbers over the whole run (independent of
    the operating point) and have no selection value.
    """
    sel = selection or {}
    if task == "detection":
        rows = [("mAP", _fmt(coco.get("AP")), "whole run only"), ("AP50", _fmt(coco.get("AP50")), "")]
        keys = (("Precision", "precision"), ("Recall", "recall"), ("F1", "f1"), ("TP", "tp"), ("FP", "fp"),
                ("FN", "fn"), ("Error rate", "error_rate"), ("Images", "images"))
    else:
        rows = []
        keys = (("Accuracy", "accuracy"), ("Macro F1", "macro_f1"), ("Correct", "correct"),
                ("Incorrect", "incorrect"), ("Labelled", "labelled"), ("Images", "images"))
    for title, key in keys:
        rows.append((title, _fmt(run.get(key)), _fmt(sel.get(key)) if selection is not None else "–"))
    return rows


def header_html(*, key: str, task: str, model: dict, num_images: int, unreadable: int, iou: float | None,
                confidence: float, optimal: float, run: dict, selection: dict | None, selection_text: str,
                coco: dict) -> str:
    """The header's HTML (escaped user strings; classes styled by ``static/app.css``)."""
    e = html.escape
    weights = str(model.get("weights", "?"))
    banner = ""
    if model.get("random"):
        reason = model.get("fallback_reason")
        extra = f" ({e(str(reason))})" if reason else ""
        banner = (f"<div class='vx-banner'>Random weights{extra}: the embedding model is untrained, so the map "
                  "and the clusters group images by low-level pixel statistics, not by content.</div>")
    op = f"IoU {iou:.2f} · " if iou is not None else ""
    rows = metric_rows(task, run, selection, coco)
    head = "".join(f"<th>{e(t)}</th>" for t, _, _ in rows)
    run_cells = "".join(f"<td>{v}</td>" for _, v, _ in rows)
    sel_cells = "".join(f"<td class='vx-muted'>{v}</td>" if v == "whole run only" else f"<td>{v}</td>"
                        for _, _, v in rows)
    unread = f" <span class='vx-warn'>({unreadable:,} unreadable)</span>" if unreadable else ""
    return (
        f"{banner}<div class='vx-header'>"
        f"<div class='vx-id'><div class='vx-brand'>vecexplore <span class='vx-run'>{e(key)}</span></div>"
        f"<div class='vx-sub'><span class='vx-chip'>{e(task)}</span> {e(str(model.get('model', '?')))} · "
        f"weights <b>{e(weights)}</b> · {num_images:,} images{unread}</div>"
        f"<div class='vx-sub'>operating point: {op}confidence ≥ <b>{confidence:.3f}</b> "
        f"<span class='vx-muted'>(F1-optimal {optimal:.3f})</span></div></div>"
        f"<table class='vx-metrics'><tr><th></th>{head}</tr>"
        f"<tr><td class='vx-rowname'>Whole run</td>{run_cells}</tr>"
        f"<tr class='vx-sel'><td class='vx-rowname'>Selection</td>{sel_cells}</tr></table>"
        f"<div class='vx-seltext'>{e(selection_text)}</div></div>"
    )


class HeaderPanel:
    def __init__(self, *, sheet, width: int = 1540):
        from bokeh.models import Div

        self.div = Div(text="", name="header", css_classes=["vx-header-div"], stylesheets=[sheet],
                       width=width)

    def show(self, text: str) -> None:
        if self.div.text != text:
            self.div.text = text
