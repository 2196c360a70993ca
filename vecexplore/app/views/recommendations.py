"""Recommendations: the run's ranked findings, each with a button that selects its images.

The list shown first is the build's (``RUN/recommendations.json``, computed at
the build's operating point, which ``analysis.json`` records); the caption says
so. When the session's operating point differs, a button recomputes the list at
the current one (:func:`vecexplore.analysis.recommend.recommend` on the whole
run, in the session's worker thread). A finding that explains others
(``merged``, see :mod:`vecexplore.analysis.findings`) is one row that names them
and the kinds of evidence (cluster, property, class) it carries. A finding's
button picks exactly its
``selection["image_idx"]`` (replacing the selection; the class and split filters
still apply, as to every pick); a cluster finding picks as a click on that
cluster's row does.
"""

from __future__ import annotations

import html

import numpy as np

from vecexplore.app import events as ev
from vecexplore.app import ui
from vecexplore.app.view import View
from vecexplore.errors import RunStoreError
from vecexplore.store.layout import ANALYSIS, RECOMMENDATIONS

#: Rows on the page (``RecommendConfig.max_total`` is 12).
MAX_ROWS = 12
_KIND_NAMES = {"cluster": "cluster", "class_fn": "low recall", "class_fp": "false positives", "confusion": "confusion",
               "property": "property", "label_errors": "label errors", "few_examples": "too few examples", "small_eval_set": "small eval set"}


def build_recommendations(run) -> tuple[list[dict], dict | None]:
    """(recommendations as JSON dicts, ranked; the build's operating point or None) of a run.

    Runs built without the analysis stage have neither file: an empty list.
    """
    try:
        recs = run.json(RECOMMENDATIONS)
    except RunStoreError:
        return [], None
    try:
        op = run.json(ANALYSIS).get("operating_point")
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
    """One finding; a merged one (``rec["merged"]``) lists the kinds of evidence it carries and the findings
    it explains."""
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


def caption_of(recs: list[dict], op: dict | None, *, iou: float, confidence: float, task: str) -> tuple[str, bool]:
    """(caption, whether a recomputation would change anything) for a list computed at ``op``."""
    here_op = f"{f'IoU {iou:.2f}, ' if task == 'detection' else ''}confidence ≥ {confidence:.3f}"
    if not recs and op is None:
        return ("This run has no recommendations (it was built without the analysis stage). "
                "Compute them at the current operating point:", True)
    at = op_text(op, task)
    if same_op(op, iou=iou, confidence=confidence, task=task):
        return f"{len(recs)} findings on the whole run at {at} (the current operating point), strongest first.", False
    return (f"{len(recs)} findings on the whole run at {at}; the app is now at {here_op}, so their numbers may "
            "differ.", True)


class RecommendationsView(View):
    name = "recommendations"
    slot = "tab"
    title = "Findings"
    depends = frozenset({"op", "selection"})

    def __init__(self, ctx):
        super().__init__(ctx)
        from bokeh.models import Button, Column, Div, Row

        self.recs, self.op = build_recommendations(self.data.run)
        self.caption = ui.text_div(text="", name="recommendations-caption", css_classes=["vx-caption"],
                                   sizing_mode="stretch_width")
        self.refresh = Button(label="Recompute at this operating point", name="recommendations-refresh", width=230,
                              button_type="default")
        self.texts = [Div(text="", name=f"rec-{i}", sizing_mode="stretch_width", css_classes=["vx-rec-div"])
                      for i in range(MAX_ROWS)]
        self.buttons = [Button(label="", name=f"rec-select-{i}", width=130, button_type="primary",
                               css_classes=["vx-rec-select"]) for i in range(MAX_ROWS)]
        self.rows = [Row(t, b, visible=False, css_classes=["vx-rec-row"], sizing_mode="stretch_width")
                     for t, b in zip(self.texts, self.buttons, strict=True)]
        self.list = Column(*self.rows, name="recommendations", css_classes=["vx-recs"], sizing_mode="stretch_both")
        self.root = Column(Row(self.refresh, self.caption, css_classes=["vx-toolbar"], sizing_mode="stretch_width"),
                           self.list, sizing_mode="stretch_both", css_classes=["vx-tab-body"])
        self._shown: list[dict] = []

    def layout(self):
        return self.root

    def compute(self, d):
        s = d.state
        caption, can = caption_of(self.recs, self.op, iou=s.iou, confidence=s.confidence, task=self.task)
        marked = [int(m) for m in s.marked(self.name)]
        return {"recs": list(self.recs), "caption": caption, "can_refresh": can, "marked": marked}

    def apply(self, p) -> None:
        self._show(p["recs"], p["marked"])
        self.caption.text = p["caption"]
        self.refresh.disabled = not p["can_refresh"]

    def _show(self, recs: list[dict], marked: list[int]) -> None:
        self._shown = list(recs[:MAX_ROWS])
        for i, (row, text, button) in enumerate(zip(self.rows, self.texts, self.buttons, strict=True)):
            if i < len(self._shown):
                n = len(image_idx_of(self._shown[i]))
                text.text = recommendation_html(self._shown[i], i + 1)
                button.label = ("Selected" if i in marked else f"Select {n:,} image{'s' if n != 1 else ''}")
                button.button_type = "success" if i in marked else "primary"
                button.disabled = n == 0
            row.visible = i < len(self._shown)

    def wire(self, session) -> None:
        for i, button in enumerate(self.buttons):
            button.on_click(lambda i=i: self._pick(session, i))
        self.refresh.on_click(lambda: session.run(lambda: self._recompute(session)))

    def _pick(self, session, i: int) -> None:
        if i >= len(self._shown):
            return
        rec = self._shown[i]
        session.emit(ev.Select(image_idx_of(rec), how_of(rec, i + 1), marks=((self.name, i),)))

    def _recompute(self, session):
        """Recompute the findings on the whole run at the session's operating point (a job of its own)."""
        from vecexplore.analysis.recommend import recommend
        from vecexplore.analysis.slicing import failure_slice_table

        d = session.derived
        evaluation, s = d.evaluation, d.state
        clusters = failure_slice_table(self.data.run, evaluation, self.data.images.cluster, self.data.tree,
                                       objects=evaluation.objects if self.task == "detection" else None,
                                       class_names=list(self.data.class_names))
        recs = [r.to_json() for r in recommend(self.data.run, evaluation, clusters=clusters)]
        op = {"confidence": float(evaluation.confidence)}
        if self.task == "detection":
            op["iou"] = float(evaluation.iou)
        caption, can = caption_of(recs, op, iou=s.iou, confidence=s.confidence, task=self.task)

        def apply():
            self.recs, self.op = recs, op
            self._show(recs, [])
            self.caption.text = caption
            self.refresh.disabled = not can
        return apply
