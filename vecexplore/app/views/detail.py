"""The detail view of one image: the full image with GT and predictions drawn, or its class scores.

The image is an ImageURL (``{url_base}/image/{image_id}``) in a figure whose y
axis points down, so data coordinates are pixel coordinates and COCO boxes draw
as they are; its thumbnail is drawn first underneath, so the view shows the
image at once and sharpens when the full one arrives. GT: solid — found green,
missed orange, taken for another class red; predictions: dashed, coloured by
outcome (TP blue, FP types warm, ignored grey); predictions below the
confidence threshold do not exist at the operating point and are not drawn.
Labels are placed where they do not overlap another (:func:`place_labels`);
one that fits nowhere is left to the hover. :func:`detection_boxes` and
:func:`classification_scores` (pure) say what is drawn.
"""

from __future__ import annotations

import html

import numpy as np

from vecexplore.app import client, ui
from vecexplore.app import events as ev
from vecexplore.app.view import View
from vecexplore.eval.outcomes import GtOutcome, PredOutcome

_PRED_STYLE = {
    PredOutcome.TP: ("TP", ui.TP_COLOUR),
    PredOutcome.FP_DUPLICATE: ("FP duplicate", ui.ERROR_TYPE_COLOURS["duplicate"]),
    PredOutcome.FP_CLASS: ("FP class", ui.ERROR_TYPE_COLOURS["class"]),
    PredOutcome.FP_LOCALIZATION: ("FP loc", ui.ERROR_TYPE_COLOURS["localization"]),
    PredOutcome.FP_BOTH: ("FP both", ui.ERROR_TYPE_COLOURS["both"]),
    PredOutcome.FP_BACKGROUND: ("FP background", ui.ERROR_TYPE_COLOURS["background"]),
    PredOutcome.IGNORED: ("ignored", ui.IGNORED_COLOUR),
}
_GT_NOTE = {GtOutcome.TP: "", GtOutcome.FN: " · missed", GtOutcome.CONFUSED: " · confused", GtOutcome.CROWD: " · crowd"}
_GT_COLOUR = {GtOutcome.TP: ui.GT_COLOUR, GtOutcome.FN: ui.MISSED_COLOUR, GtOutcome.CONFUSED: "#d62728",
              GtOutcome.CROWD: ui.IGNORED_COLOUR}
#: Label size estimate at the view's 10 px font (a label is never measured by the server).
CHAR_PX, LABEL_PX = 6.0, 13.0
_BOX_KEYS = ("left", "right", "top", "bottom", "label", "colour", "outcome")


def _boxes(xywh: np.ndarray) -> dict[str, np.ndarray]:
    xywh = np.asarray(xywh, np.float64).reshape(-1, 4)
    return {"left": xywh[:, 0], "right": xywh[:, 0] + xywh[:, 2], "top": xywh[:, 1],
            "bottom": xywh[:, 1] + xywh[:, 3]}


def detection_boxes(data, evaluation, image_idx: int) -> tuple[dict, dict]:
    """(GT columns, prediction columns) of one image at ``evaluation``'s operating point.

    Columns: ``left, right, top, bottom`` (pixels, y down), ``label`` ("cat · missed";
    "cat 0.87 · FP loc"), ``colour``, ``outcome`` (the objects-table outcome string).
    Predictions below the threshold are left out; objects keep input order.
    """
    ds, out = data.dataset, evaluation.outcomes
    names = data.class_names
    g = data.gt_index.rows(image_idx)
    gcode = out.gt_code[g]
    gt = _boxes(ds.gt.xywh[g])
    gt["label"] = np.array([f"{names[c]}{_GT_NOTE[GtOutcome(k)]}" for c, k in zip(ds.gt.class_idx[g], gcode,
                                                                                   strict=True)], object)
    gt["colour"] = np.array([_GT_COLOUR[GtOutcome(k)] for k in gcode], object)
    gt["outcome"] = np.array([GtOutcome(k).label for k in gcode], object)
    p = data.pred_index.rows(image_idx)
    pcode = out.pred_code[p]
    keep = pcode != PredOutcome.BELOW_THRESHOLD
    p, pcode = p[keep], pcode[keep]
    pred = _boxes(ds.pred.xywh[p])
    styles = [_PRED_STYLE[PredOutcome(k)] for k in pcode]
    pred["label"] = np.array([f"{names[c]} {s:.2f} · {st[0]}" for c, s, st in
                              zip(ds.pred.class_idx[p], ds.pred.score[p], styles, strict=True)], object)
    pred["colour"] = np.array([st[1] for st in styles], object)
    pred["outcome"] = np.array([PredOutcome(k).label for k in pcode], object)
    return gt, pred


def classification_scores(data, evaluation, image_idx: int, top: int = 5) -> dict[str, np.ndarray]:
    """The image's top-``top`` class scores (or just its predicted class's score without per-class scores).

    Columns: ``y`` (0 = best), ``score``, ``name``, ``text``, ``colour`` (green: the label;
    red: a wrong accepted prediction; grey: others).
    """
    pred = data.dataset.pred
    row = int(data.pred_row[image_idx])
    label = int(evaluation.arrays["label"][image_idx])
    accepted = int(evaluation.accepted[image_idx])
    if row < 0:
        cls, score = np.zeros(0, np.int64), np.zeros(0)
    elif pred.scores is not None:
        s = pred.scores[row]
        cls = np.argsort(-s, kind="stable")[:top]
        score = s[cls]
    else:
        cls, score = np.array([pred.class_idx[row]]), np.array([pred.score[row]])
    colour = [ui.CORRECT_COLOURS[0] if c == label else ui.CORRECT_COLOURS[1] if c == accepted else "#9aa5b1"
              for c in cls]
    names = [data.class_names[c] for c in cls]
    return {"y": np.arange(len(cls), dtype=np.float64), "score": np.asarray(score, np.float64),
            "name": np.array(names, object), "text": np.array([f"{n}  {s:.3f}" for n, s in zip(names, score,
                                                                                              strict=True)], object),
            "colour": np.array(colour, object)}


def fit_ranges(width: float, height: float, frame_w: int, frame_h: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """((x0, x1), (y_bottom, y_top)) showing a ``width × height`` image whole and undistorted (y down)."""
    w, h = (float(width), float(height)) if width > 0 and height > 0 else (1.0, 1.0)
    scale = min(frame_w / w, frame_h / h)
    xs, ys = frame_w / scale, frame_h / scale
    return ((-(xs - w) / 2, w + (xs - w) / 2), (h + (ys - h) / 2, -(ys - h) / 2))


def place_labels(boxes: list[dict], px_per_unit: float) -> list[dict]:
    """Where each box's label goes, so that no two labels overlap.

    ``boxes``: dicts with ``left, right, top, bottom`` (image pixels, y down) and
    ``label``. Tried in order: above the box's top-left corner, below its
    bottom-left corner, inside its top-left corner. Returns, per box, ``x, y``
    (the label's anchor) and ``baseline`` ("bottom" or "top"), or ``shown=False``
    when every place collides (the hover still names it). Larger boxes go first.
    """
    unit = 1.0 / max(px_per_unit, 1e-9)
    placed: list[tuple[float, float, float, float]] = []
    out = [None] * len(boxes)
    order = sorted(range(len(boxes)), key=lambda i: -(boxes[i]["right"] - boxes[i]["left"])
                   * (boxes[i]["bottom"] - boxes[i]["top"]))
    for i in order:
        b = boxes[i]
        w = (CHAR_PX * len(b["label"]) + 4) * unit
        h = LABEL_PX * unit
        spots = [(b["left"], b["top"], "bottom", b["top"] - h), (b["left"], b["bottom"], "top", b["bottom"]),
                 (b["left"], b["top"], "top", b["top"])]
        out[i] = {"x": b["left"], "y": b["top"], "baseline": "bottom", "shown": False}
        for x, y, baseline, top in spots:
            rect = (x, top, x + w, top + h)
            if all(rect[2] <= r[0] or rect[0] >= r[2] or rect[3] <= r[1] or rect[1] >= r[3] for r in placed):
                placed.append(rect)
                out[i] = {"x": x, "y": y, "baseline": baseline, "shown": True}
                break
    return out


def label_columns(cols: dict, px_per_unit: float) -> dict[str, np.ndarray]:
    """Label glyph columns (``x, y, text, colour, baseline, kind``) of the boxes in ``cols`` that have room."""
    n = len(cols["left"])
    boxes = [{k: cols[k][i] for k in ("left", "right", "top", "bottom", "label")} for i in range(n)]
    spots = place_labels(boxes, px_per_unit)
    keep = [i for i in range(n) if spots[i]["shown"]]
    return {"x": np.array([spots[i]["x"] for i in keep], np.float64),
            "y": np.array([spots[i]["y"] for i in keep], np.float64),
            "text": np.array([cols["label"][i] for i in keep], object),
            "colour": np.array([cols["colour"][i] for i in keep], object),
            "baseline": np.array([spots[i]["baseline"] for i in keep], object),
            "kind": np.array([cols["kind"][i] for i in keep], object)}


class DetailView(View):
    name = "detail"
    slot = "detail"
    depends = frozenset({"op", "detail", "selection", "gallery"})

    def __init__(self, ctx):
        super().__init__(ctx)
        from bokeh.models import (
            CDSView,
            CheckboxGroup,
            Column,
            ColumnDataSource,
            CustomJS,
            Div,
            GroupFilter,
            HoverTool,
            Range1d,
            Row,
        )
        from bokeh.plotting import figure

        task, self.url_base = self.task, ctx.url_base
        self.image = ColumnDataSource(data={"url": [], "x": [], "y": [], "w": [], "h": []}, name="detail-image")
        self.thumb = ColumnDataSource(data={"url": [], "x": [], "y": [], "w": [], "h": []}, name="detail-thumb")
        self.gt = ColumnDataSource(data={k: [] for k in _BOX_KEYS}, name="detail-gt")
        self.pred = ColumnDataSource(data={k: [] for k in _BOX_KEYS}, name="detail-pred")
        self.labels = ColumnDataSource(data={k: [] for k in ("x", "y", "text", "colour", "baseline", "kind")},
                                       name="detail-labels")
        self.figure = figure(sizing_mode="stretch_both", min_height=160, name="detail", css_classes=["vx-detail"],
                             tools="pan,wheel_zoom,reset", toolbar_location="right",
                             x_range=Range1d(0, 1), y_range=Range1d(1, 0), min_border=2)
        self.figure.axis.visible = False
        self.figure.grid.visible = False
        self.figure.background_fill_color = "#f4f5f7"
        self.figure.image_url(url="url", x="x", y="y", w="w", h="h", anchor="top_left", source=self.thumb)
        self.figure.image_url(url="url", x="x", y="y", w="w", h="h", anchor="top_left", source=self.image)
        gt_boxes = self.figure.quad(left="left", right="right", top="top", bottom="bottom", source=self.gt,
                                    fill_alpha=0, line_color="colour", line_width=2, name="detail-gt-boxes")
        pred_boxes = self.figure.quad(left="left", right="right", top="top", bottom="bottom", source=self.pred,
                                      fill_alpha=0, line_color="colour", line_width=2, line_dash="dashed",
                                      name="detail-pred-boxes")
        labels = {}
        for kind in ("gt", "pred"):
            labels[kind] = self.figure.text(
                "x", "y", text="text", source=self.labels, view=CDSView(filter=GroupFilter(column_name="kind",
                                                                                         group=kind)),
                text_baseline="baseline", text_font_size="10px", text_color="#ffffff", background_fill_color="colour",
                background_fill_alpha=0.85, padding=1, name=f"detail-{kind}-labels")
        self.figure.add_tools(HoverTool(renderers=[gt_boxes, pred_boxes], tooltips=[("", "@label"),
                                                                                    ("outcome", "@outcome")]))
        self.toggles = CheckboxGroup(labels=["Ground truth", "Predictions", "Labels"], active=[0, 1, 2],
                                     inline=True, name="detail-toggles", visible=task == "detection")
        self.toggles.js_on_change("active", CustomJS(code=ui.js("detail_toggles"), args={
            "gt": [gt_boxes], "pred": [pred_boxes], "gt_labels": [labels["gt"]], "pred_labels": [labels["pred"]]}))
        from bokeh.models import RadioButtonGroup

        # A comparison run draws model A's or model B's predictions (GT outcomes follow the model).
        self.model_toggle = RadioButtonGroup(labels=["Model A", "Model B"], active=0, name="detail-model",
                                             css_classes=["vx-detail-model"],
                                             visible=self.data.comparison is not None)
        self.info = Div(text="<span class='vx-muted'>Click a point or a thumbnail to see the image.</span>",
                        name="detail-info", css_classes=["vx-detail-info"], sizing_mode="stretch_width")
        self.scores = self.score_figure = None
        body = self.figure
        if task == "classification":
            self.scores = ColumnDataSource(data={k: [] for k in ("y", "score", "name", "text", "colour")},
                                           name="detail-scores")
            f = figure(width=260, sizing_mode="stretch_height", min_height=120, name="detail-scores-figure",
                       tools="", toolbar_location=None,
                       visible=False,  # shown with the first image: an empty axis explains nothing
                       x_range=Range1d(0, 1.0), y_range=Range1d(4.6, -0.6), min_border=4, min_border_right=8)
            f.hbar(y="y", right="score", height=0.7, source=self.scores, fill_color="colour", line_color=None)
            f.text(x=0.01, y="y", text="text", source=self.scores, text_baseline="middle",
                   text_font_size="11px", text_color="#111111")
            f.yaxis.visible = False
            f.grid.visible = False
            f.outline_line_color = None
            f.xaxis.axis_label = "score"
            self.score_figure = f
            body = Row(self.figure, f, sizing_mode="stretch_both")
        self.root = Column(self.info, body, sizing_mode="stretch_both", css_classes=["vx-detail-body"])
        self.bar = Row(self.model_toggle, self.toggles) if self.data.comparison is not None else None
        self._shown = -1

    def layout(self):
        return self.root

    def layouts(self) -> dict:
        if self.data.comparison is None:
            return {"detail.bar": self.toggles, "detail": self.root}
        return {"detail.bar": self.bar, "detail": self.root}

    def compute(self, d):
        i = d.detail
        if i < 0:
            return {"image_idx": -1}
        info = self.data.images
        w, h = int(info.width[i]), int(info.height[i])
        fw, fh = ui.frame_size(self.figure)
        fw, fh = fw or 600, fh or 320
        (x0, x1), (yb, yt) = fit_ranges(w, h, fw, fh)
        out = {"image_idx": i, "new": i != self._shown, "ranges": ((x0, x1), (yb, yt)),
               "image": {"url": [f"{self.url_base}/image/{int(info.image_id[i])}"], "x": [0.0], "y": [0.0],
                         "w": [float(w or 1)], "h": [float(h or 1)]},
               "thumb": f"{self.url_base}/thumb/{int(info.image_id[i])}"}
        ev_, source, model = d.evaluation, self.data, ""
        comp = self.data.comparison
        out["model"] = 0
        if comp is not None:  # a comparison: each model at its build operating point
            b = d.state.detail_model == "b"
            ev_, source = (comp.eval_b, comp.b) if b else (comp.eval_a, self.data)
            model, out["model"] = ("Model B · " if b else "Model A · "), int(b)
        if self.task == "detection":
            gt, pred = detection_boxes(source, ev_, i)
            both = {k: np.concatenate([gt[k], pred[k]]) for k in ("left", "right", "top", "bottom", "label", "colour")}
            both["kind"] = np.array(["gt"] * len(gt["left"]) + ["pred"] * len(pred["left"]), object)
            out.update(gt=gt, pred=pred, labels=label_columns(both, fw / max(x1 - x0, 1e-9)))
            out["info"] = self._info_detection(i, gt, pred, ev_.confidence, model)
        else:
            out["scores"] = classification_scores(source, ev_, i)
            out["info"] = self._info_classification(i, ev_, model)
        return out

    def wire(self, session) -> None:
        def on_model(_attr, _old, new):
            if session.applying:
                return
            if client.choice(new, range(2)) is None:
                ui.refused(self.model_toggle.name, new)
                return
            session.emit(ev.SetView.of(detail_model=("a", "b")[new]))

        self.model_toggle.on_change("active", on_model)

    def _head(self, i: int) -> str:
        info = self.data.images
        name, image_id = str(info.file_name[i]), int(info.image_id[i])
        link = f"<a href='{self.url_base}/image/{image_id}' target='_blank'>open full size</a>"
        head = (f"<b>{_escape(name)}</b> <span class='vx-muted'>id {image_id} · {info.width[i]}×{info.height[i]} px · "
                f"cluster {info.cluster[i]} · {link}</span>")
        if not info.readable[i]:
            head += f"<div class='vx-warn'>unreadable: {_escape(str(info.unreadable_reason[i]))}</div>"
        return head

    def _info_detection(self, i: int, gt: dict, pred: dict, confidence: float, model: str = "") -> str:
        n_tp = int((pred["outcome"] == "tp").sum())
        n_fp = int(np.char.startswith(pred["outcome"].astype(str), "fp_").sum()) if len(pred["outcome"]) else 0
        n_fn = int(np.isin(gt["outcome"], ["fn", "confused"]).sum())
        return (f"{self._head(i)}<div>{model}{len(gt['left'])} GT · {len(pred['left'])} predictions ≥ {confidence:.3f} · "
                f"TP {n_tp} · FP {n_fp} · FN {n_fn}</div>")

    def _info_classification(self, i: int, evaluation, model: str = "") -> str:
        lab = int(evaluation.arrays["label"][i])
        acc = int(evaluation.accepted[i])
        raw = int(evaluation.arrays["prediction"][i])
        score = float(evaluation.arrays["score"][i])
        names = self.data.class_names
        verdict = ("correct" if lab >= 0 and acc == lab else "no prediction at this threshold (counts as wrong)"
                   if acc < 0 else "incorrect")
        return (f"{self._head(i)}<div>{model}label <b>{_escape(names[lab]) if lab >= 0 else '–'}</b> · prediction "
                f"<b>{_escape(names[raw]) if raw >= 0 else '–'}</b> ({score:.3f}) · {verdict}</div>")

    def apply(self, p) -> None:
        empty = {k: [] for k in _BOX_KEYS}
        if p["image_idx"] < 0:
            self._shown = -1
            self.image.data = {"url": [], "x": [], "y": [], "w": [], "h": []}
            self.thumb.data = dict(self.image.data)
            self.gt.data, self.pred.data = empty, dict(empty)
            self.labels.data = {k: [] for k in self.labels.data}
            if self.score_figure is not None:
                self.score_figure.visible = False
            return
        if p["new"]:
            (x0, x1), (yb, yt) = p["ranges"]
            self.figure.x_range.update(start=x0, end=x1)
            self.figure.y_range.update(start=yb, end=yt)
            self.thumb.data = {**p["image"], "url": [p["thumb"]]}
            self.image.data = p["image"]
        self._shown = p["image_idx"]
        if self.task == "detection":
            self.gt.data, self.pred.data, self.labels.data = p["gt"], p["pred"], p["labels"]
        else:
            self.scores.data = p["scores"]
            self.score_figure.visible = True
        self.info.text = p["info"]
        if self.model_toggle.active != p["model"]:
            self.model_toggle.active = p["model"]


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


__all__ = ["DetailView", "classification_scores", "detection_boxes", "fit_ranges", "place_labels"]
