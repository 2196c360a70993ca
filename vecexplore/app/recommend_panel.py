"""Recommendations: the run's ranked findings, each with a button that selects its images.

The list shown first is the build's (``RUN/recommendations.json``, computed at
the build's operating point, which ``analysis.json`` records); the caption says
so. When the session's operating point differs, a button recomputes the list at
the current one (:func:`vecexplore.analysis.recommend.recommend` on the whole
run, in the session's worker thread). A finding's button picks exactly its
``selection["image_idx"]`` (replacing the selection; the class and split filters
still apply, as to every pick); a cluster finding picks as a click on that
slice's row does. A finding that explains others (``merged``, see
:mod:`vecexplore.analysis.findings`) is one row that names them and the kinds
of evidence (cluster, property, class) it carries.
"""

from __future__ import annotations

import html

import numpy as np

from vecexplore.errors import RunStoreError

#: Rows on the page (``RecommendConfig.max_total`` is 12).
MAX_ROWS = 12
_KIND_NAMES = {"cluster": "cluster", "class_fn": "missed", "class_fp": "false positives", "confusion": "confusion",
               "property": "property", "few_examples": "too few examples", "small_eval_set": "small eval set"}


def build_recommendations(run) -> tuple[list[dict], dict | None]:
    """(recommendations as JSON dicts, ranked; the build's operating point or None) of a run.

    Runs built without the analysis stage have neither file: an empty list.
    """
    try:
        recs = run.json("recommendations.json")
    except RunStoreError:
        return [], None
    try:
        op = run.json("analysis.json").get("operating_point")
    except RunStoreError:
        op = None
    return list(recs), op


def how_of(rec: dict, rank: int) -> str:
    """The pick's description: ``cluster N`` for a cluster finding (the clusters table highlights it)."""
    sel = rec.get("selection", {})
    if rec.get("kind") == "cluster" and "cluster" in sel:
        return f"cluster {int(sel['cluster'])}"
    return f"recommendation {rank}"


def image_idx_of(rec: dict) -> np.ndarray:
    return np.asarray(rec.get("selection", {}).get("image_idx", []), np.int64)


def recommendation_html(rec: dict, rank: int, *, max_merged: int = 3) -> str:
    """One finding; a merged one (``rec["merged"]``) lists the kinds of evidence it carries and the findings it explains."""
    e = html.escape
    kind = _KIND_NAMES.get(str(rec.get("kind")), str(rec.get("kind")))
    merged = list(rec.get("merged") or [])
    also = ""
    if merged:
        kinds = " · ".join(e(str(k)) for k in rec.get("evidence_kinds") or [])
        items = "".join(f"<li>{e(str(m.get('title', '')))}</li>" for m in merged[:max_merged])
        more = f"<li>… and {len(merged) - max_merged} more</li>" if len(merged) > max_merged else ""
        also = (f"<div class='vx-rec-also'>One failure, {len(merged) + 1} findings (evidence: {kinds}); "
                f"this one also explains:<ul>{items}{more}</ul></div>")
    return (f"<div class='vx-rec'><div class='vx-rec-title'><span class='vx-rank'>{rank}</span>"
            f"<span class='vx-chip'>{e(kind)}</span> {e(str(rec.get('title', '')))}</div>"
            f"<div class='vx-rec-evidence'>{e(str(rec.get('evidence', '')))}</div>{also}"
            f"<div class='vx-rec-action'>→ {e(str(rec.get('action', '')))}</div></div>")


def op_text(op: dict | None, task: str) -> str:
    if not op:
        return "an unknown operating point"
    iou = f"IoU {float(op['iou']):.2f}, " if task == "detection" and op.get("iou") is not None else ""
    return f"{iou}confidence ≥ {float(op['confidence']):.3f}"


def same_op(op: dict | None, *, iou: float, confidence: float, task: str) -> bool:
    if not op:
        return False
    same = abs(float(op["confidence"]) - confidence) < 5e-4
    if task == "detection" and op.get("iou") is not None:
        same &= abs(float(op["iou"]) - iou) < 1e-9
    return bool(same)


class RecommendPanel:
    """A fixed pool of rows (text + select button); ``show`` fills the first ones and hides the rest."""

    def __init__(self, *, width: int = 630):
        from bokeh.models import Button, Column, Div, Row

        from vecexplore.app.ui import text_div

        self.caption = text_div(text="", name="recommendations-caption", css_classes=["vx-caption"], width=width)
        self.refresh = Button(label="Recompute at this operating point", name="recommendations-refresh", width=220,
                              button_type="default")
        self.texts = [Div(text="", name=f"rec-{i}", width=width - 150, css_classes=["vx-rec-div"])
                      for i in range(MAX_ROWS)]
        self.buttons = [Button(label="", name=f"rec-select-{i}", width=120, button_type="primary",
                               css_classes=["vx-rec-select"]) for i in range(MAX_ROWS)]
        self.rows = [Row(t, b, visible=False, css_classes=["vx-rec-row"]) for t, b in zip(self.texts, self.buttons,
                                                                                              strict=True)]
        self.list = Column(*self.rows, name="recommendations", css_classes=["vx-recs"], height=490, width=width)
        self.recs: list[dict] = []

    def layout(self, sheet):
        from bokeh.models import Column

        return Column(self.caption, self.refresh, self.list, stylesheets=[sheet])

    def show(self, recs: list[dict]) -> None:
        self.recs = list(recs[:MAX_ROWS])
        for i, (row, text, button) in enumerate(zip(self.rows, self.texts, self.buttons, strict=True)):
            if i < len(self.recs):
                n = len(image_idx_of(self.recs[i]))
                text.text = recommendation_html(self.recs[i], i + 1)
                button.label = f"Select {n:,} image{'s' if n != 1 else ''}"
                button.disabled = n == 0
            row.visible = i < len(self.recs)

    def show_caption(self, text: str, *, can_refresh: bool) -> None:
        self.caption.text = text
        self.refresh.disabled = not can_refresh
