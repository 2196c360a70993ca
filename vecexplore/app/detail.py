"""The detail view of one image: the full image with GT and predictions drawn, or its class scores.

The image is an ImageURL (``{url_base}/image/{image_id}``) in a figure whose y
axis points down, so data coordinates are pixel coordinates and COCO boxes draw
as they are. GT: solid green; predictions: dashed, coloured by outcome (TP blue,
FP types warm, ignored grey); predictions below the confidence threshold do not
exist at the operating point and are not drawn. :func:`detection_boxes` and
:func:`classification_scores` (pure) say what is drawn.
"""

from __future__ import annotations

import numpy as np

from vecexplore.app import ui
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
    gt["colour"] = np.full(len(g), ui.GT_COLOUR, object)
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


class DetailPanel:
    """Image figure with GT / prediction layers and toggles; classification adds a score chart."""

    def __init__(self, *, task: str, url_base: str, frame_w: int = 680, frame_h: int = 360):
        from bokeh.models import CheckboxGroup, ColumnDataSource, CustomJS, Div, Range1d
        from bokeh.plotting import figure

        self.task, self.url_base = task, url_base
        if task == "classification":
            frame_w -= 310  # room for the score chart beside the image
        self.frame = (frame_w, frame_h)
        self.image = ColumnDataSource(data={"url": [], "x": [], "y": [], "w": [], "h": []}, name="detail-image")
        self.gt = ColumnDataSource(data={k: [] for k in _BOX_KEYS}, name="detail-gt")
        self.pred = ColumnDataSource(data={k: [] for k in _BOX_KEYS}, name="detail-pred")
        self.figure = figure(frame_width=frame_w, frame_height=frame_h, name="detail", css_classes=["vx-detail"],
                             tools="pan,wheel_zoom,reset", toolbar_location="right",
                             x_range=Range1d(0, 1), y_range=Range1d(1, 0), min_border=2)
        self.figure.axis.visible = False
        self.figure.grid.visible = False
        self.figure.background_fill_color = "#f4f5f7"
        self.figure.image_url(url="url", x="x", y="y", w="w", h="h", anchor="top_left", source=self.image)
        label_style = dict(text_font_size="10px", text_color="#ffffff", background_fill_alpha=0.85,
                           padding=1)
        gt_boxes = self.figure.quad(left="left", right="right", top="top", bottom="bottom", source=self.gt,
                                    fill_alpha=0, line_color="colour", line_width=2, name="detail-gt-boxes")
        gt_labels = self.figure.text("left", "top", text="label", source=self.gt, text_baseline="bottom",
                                     background_fill_color="colour", **label_style)
        pred_boxes = self.figure.quad(left="left", right="right", top="top", bottom="bottom", source=self.pred,
                                      fill_alpha=0, line_color="colour", line_width=2, line_dash="dashed",
                                      name="detail-pred-boxes")
        pred_labels = self.figure.text("left", "bottom", text="label", source=self.pred, text_baseline="top",
                                       background_fill_color="colour", **label_style)
        self.toggles = CheckboxGroup(labels=["Ground truth", "Predictions", "Labels"], active=[0, 1, 2],
                                     inline=True, name="detail-toggles", visible=task == "detection")
        self.toggles.js_on_change("active", CustomJS(code=ui.js("detail_toggles"), args={
            "gt": [gt_boxes], "pred": [pred_boxes], "gt_labels": [gt_labels], "pred_labels": [pred_labels]}))
        self.info = Div(text="<span class='vx-muted'>Click a point or a thumbnail to see the image.</span>",
                        name="detail-info", css_classes=["vx-detail-info"])
        self.scores = self.score_figure = None
        if task == "classification":
            self.scores = ColumnDataSource(data={k: [] for k in ("y", "score", "name", "text", "colour")},
                                           name="detail-scores")
            f = figure(width=300, height=170, name="detail-scores-figure", tools="", toolbar_location=None,
                       visible=False,  # shown with the first image: an empty axis explains nothing
                       x_range=Range1d(0, 1.45), y_range=Range1d(4.6, -0.6), min_border=4)
            f.hbar(y="y", right="score", height=0.7, source=self.scores, fill_color="colour", line_color=None)
            f.text(x="score", y="y", text="text", source=self.scores, text_baseline="middle", x_offset=4,
                   text_font_size="11px", text_color="#111111")
            f.yaxis.visible = False
            f.grid.visible = False
            f.outline_line_color = None
            f.xaxis.axis_label = "score"
            self.score_figure = f

    def show(self, *, data, evaluation, image_idx: int) -> None:
        """Draw ``image_idx`` at ``evaluation``'s operating point (-1 clears the view)."""
        empty = {k: [] for k in _BOX_KEYS}
        if image_idx < 0:
            self.image.data = {"url": [], "x": [], "y": [], "w": [], "h": []}
            self.gt.data, self.pred.data = empty, dict(empty)
            if self.score_figure is not None:
                self.score_figure.visible = False
                self.scores.data = {k: [] for k in self.scores.data}
            return
        info = data.images
        w, h = int(info.width[image_idx]), int(info.height[image_idx])
        image_id = int(info.image_id[image_idx])
        (x0, x1), (yb, yt) = fit_ranges(w, h, *self.frame)
        self.figure.x_range.update(start=x0, end=x1)
        self.figure.y_range.update(start=yb, end=yt)
        self.image.data = {"url": [f"{self.url_base}/image/{image_id}"], "x": [0.0], "y": [0.0],
                           "w": [float(w or 1)], "h": [float(h or 1)]}
        self.show_objects(data=data, evaluation=evaluation, image_idx=image_idx)

    def show_objects(self, *, data, evaluation, image_idx: int) -> None:
        """Redraw the boxes / scores and the caption (the operating point moved; the image did not)."""
        if image_idx < 0:
            return
        info = data.images
        name = str(info.file_name[image_idx])
        image_id = int(info.image_id[image_idx])
        link = f"<a href='{self.url_base}/image/{image_id}' target='_blank'>open full size</a>"
        head = f"<b>{_escape(name)}</b> <span class='vx-muted'>id {image_id} · {info.width[image_idx]}×{info.height[image_idx]} px · cluster {info.cluster[image_idx]} · {link}</span>"
        if not info.readable[image_idx]:
            head += f"<div class='vx-warn'>unreadable: {_escape(str(info.unreadable_reason[image_idx]))}</div>"
        if self.task == "detection":
            gt, pred = detection_boxes(data, evaluation, image_idx)
            self.gt.data, self.pred.data = gt, pred
            n_tp = int((pred["outcome"] == "tp").sum())
            n_fp = int(np.char.startswith(pred["outcome"].astype(str), "fp_").sum()) if len(pred["outcome"]) else 0
            n_fn = int(np.isin(gt["outcome"], ["fn", "confused"]).sum())
            self.info.text = (f"{head}<div>{len(gt['left'])} GT · {len(pred['left'])} predictions ≥ "
                              f"{evaluation.confidence:.3f} · TP {n_tp} · FP {n_fp} · FN {n_fn}</div>")
        else:
            sc = classification_scores(data, evaluation, image_idx)
            self.scores.data = sc
            self.score_figure.visible = True
            lab = int(evaluation.arrays["label"][image_idx])
            acc = int(evaluation.accepted[image_idx])
            raw = int(evaluation.arrays["prediction"][image_idx])
            score = float(evaluation.arrays["score"][image_idx])
            names = data.class_names
            verdict = ("correct" if lab >= 0 and acc == lab else "no prediction at this threshold" if acc < 0
                       else "incorrect")
            self.info.text = (f"{head}<div>label <b>{_escape(names[lab]) if lab >= 0 else '–'}</b> · prediction "
                              f"<b>{_escape(names[raw]) if raw >= 0 else '–'}</b> ({score:.3f}) · {verdict}</div>")


def _escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


__all__ = ["DetailPanel", "classification_scores", "detection_boxes", "fit_ranges"]
