"""The detail view of one image: the full image with GT and predictions drawn, or its class scores.

The image is an ImageURL (``{url_base}/image/{image_id}``) in a figure whose y
axis points down, so data coordinates are pixel coordinates and COCO boxes draw
as they are; its thumbnail is drawn first underneath, so the view shows the
image at once and sharpens when the full one arrives. GT: solid — found green,
missed orange, taken for another class red; predictions: dashed, coloured by
outcome (TP blue, FP types warm, ignored grey); predictions below the
confidence threshold do not exist at the operating point and are not drawn.
Labels are placed where they do not overlap another (:func:`place_labels`);
one that fits nowhere is left to the hover. With masks (``Boxes.rle``), each
object's mask is drawn as filled patches (its outline traced from the decoded
RLE) in the box's colour, and a second toggle group shows boxes, masks or both.
:func:`detection_boxes`, :func:`detection_masks` and :func:`classification_scores`
(pure) say what is drawn. An object opened from the object level (a crop in the
gallery, a point of the object map) is outlined in :data:`FOCUS_COLOUR` over its
own box (:func:`focus_box`), and the info line names it.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

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


_MASK_KEYS = ("xs", "ys", "colour", "label", "outcome")


def detection_masks(data, evaluation, image_idx: int, gt: dict, pred: dict) -> tuple[dict, dict]:
    """(GT patches, prediction patches) of one image's masks, for the objects :func:`detection_boxes` drew.

    ``gt``/``pred`` are that function's columns (their colours and labels are reused).
    Columns: ``xs, ys`` (per object, pixel outline points; an object with several
    parts has them separated by NaN, Bokeh's ``patches`` convention), ``colour``,
    ``label``, ``outcome``. Empty when that side carries no masks; an empty mask
    draws nothing.
    """
    from vecexplore.io.masks import rle_polygons

    ds, out = data.dataset, evaluation.outcomes
    g = data.gt_index.rows(image_idx)
    p = data.pred_index.rows(image_idx)
    p = p[out.pred_code[p] != PredOutcome.BELOW_THRESHOLD]
    result = []
    for objs, rows, cols in ((ds.gt, g, gt), (ds.pred, p, pred)):
        patches = {k: [] for k in _MASK_KEYS}
        if objs.rle is not None:
            for j, row in enumerate(rows.tolist()):
                parts = rle_polygons(objs.rle[row])
                if not parts:
                    continue
                xs = np.concatenate([np.r_[q[:, 0], np.nan] for q in parts])[:-1]
                ys = np.concatenate([np.r_[q[:, 1], np.nan] for q in parts])[:-1]
                for key, value in (("xs", xs + 0.5), ("ys", ys + 0.5), ("colour", cols["colour"][j]),
                                   ("label", cols["label"][j]), ("outcome", cols["outcome"][j])):
                    patches[key].append(value)  # + 0.5: pixel centres, the image spans [0, w] × [0, h]
        result.append({k: (v if k in ("xs", "ys") else np.array(v, object)) for k, v in patches.items()})
    return result[0], result[1]


#: Outline of the object opened from the object level.
FOCUS_COLOUR = "#00d5ff"


def focus_box(data, image_idx: int, object_row: int, codes) -> dict[str, np.ndarray]:
    """Box columns of the highlighted object (``object_row`` of the objects table) when it lies on
    ``image_idx``; empty otherwise. ``codes``: the object outcome codes at the operating point."""
    from vecexplore.app.objects import outcome_label

    omap = getattr(data, "object_map", None)
    if omap is None or not 0 <= object_row < len(omap) or int(omap.image_idx[object_row]) != image_idx:
        return {k: np.zeros(0, object if k in ("label", "colour", "outcome") else np.float64) for k in _BOX_KEYS}
    cols = _boxes(omap.xywh[object_row][None])
    kind = "prediction" if object_row >= omap.num_gt else "GT"
    cols["label"] = np.array([f"{data.class_names[omap.class_idx[object_row]]} ({kind})"], object)
    cols["colour"] = np.array([FOCUS_COLOUR], object)
    cols["outcome"] = np.array([outcome_label(codes[object_row])], object)
    return cols


#: Outline of a suspected label error (the "Likely label errors" view highlights it here).
ISSUE_COLOUR = "#d100d1"


def issue_boxes(data, image_idx: int, marked: Sequence[int]) -> tuple[dict, list[str]]:
    """(box columns, sentences) of the suspected label errors to highlight on one image.

    The marked issues (rows of ``data.label_issues`` picked in the "Likely label errors"
    view) that are on this image; when none is, the image's ``likely`` issues. Boxes are
    the suspicious ones (the GT's, or the prediction's for a missing label); classification
    issues have no box, only a sentence.
    """
    from vecexplore.app.views.label_issues import KIND_WORDS

    issues = data.label_issues
    on = np.flatnonzero(issues["image_idx"].to_numpy() == image_idx)
    picked = on[np.isin(on, np.asarray(marked, np.int64))]
    rows = picked if picked.size else on[issues["likely"].to_numpy(bool)[on]]
    names = data.class_names
    sub = issues.iloc[rows]
    words = []
    for r in sub.itertuples(index=False):
        said = f"labelled {names[r.class_idx]}" if r.class_idx >= 0 else "no label"
        model = f", the model says {names[r.suggested_class_idx]}" if r.suggested_class_idx >= 0 else ""
        words.append(f"{KIND_WORDS.get(r.kind, r.kind)} (score {r.score:.2f}): {said}{model}")
    has_box = np.isfinite(sub["w"].to_numpy(np.float64)) if len(sub) else np.zeros(0, bool)
    boxes = _boxes(sub[["x", "y", "w", "h"]].to_numpy(np.float64)[has_box])
    boxes["label"] = np.array(words, object)[has_box] if len(words) else np.zeros(0, object)
    boxes["colour"] = np.array([ISSUE_COLOUR] * int(has_box.sum()), object)
    boxes["outcome"] = np.array(["suspected label error"] * int(has_box.sum()), object)
    return boxes, words


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
        self.issues = ColumnDataSource(data={k: [] for k in _BOX_KEYS}, name="detail-issues")
        self.focus = ColumnDataSource(data={k: [] for k in _BOX_KEYS}, name="detail-focus")
        self.labels = ColumnDataSource(data={k: [] for k in ("x", "y", "text", "colour", "baseline", "kind")},
                                       name="detail-labels")
        self.gt_masks = ColumnDataSource(data={k: [] for k in _MASK_KEYS}, name="detail-gt-masks")
        self.pred_masks = ColumnDataSource(data={k: [] for k in _MASK_KEYS}, name="detail-pred-masks")
        ds = getattr(self.data, "dataset", None)
        self.has_masks = task == "detection" and ds is not None and (ds.gt.rle is not None or ds.pred.rle is not None)
        self.figure = figure(sizing_mode="stretch_both", min_height=160, name="detail", css_classes=["vx-detail"],
                             tools="pan,wheel_zoom,reset", toolbar_location="right",
                             x_range=Range1d(0, 1), y_range=Range1d(1, 0), min_border=2)
        self.figure.axis.visible = False
        self.figure.grid.visible = False
        self.figure.background_fill_color = "#f4f5f7"
        self.figure.image_url(url="url", x="x", y="y", w="w", h="h", anchor="top_left", source=self.thumb)
        self.figure.image_url(url="url", x="x", y="y", w="w", h="h", anchor="top_left", source=self.image)
        gt_masks = self.figure.patches(xs="xs", ys="ys", source=self.gt_masks, fill_color="colour", fill_alpha=0.35,
                                       line_color="colour", line_width=1.5, name="detail-gt-mask-patches")
        pred_masks = self.figure.patches(xs="xs", ys="ys", source=self.pred_masks, fill_color="colour",
                                         fill_alpha=0.2, line_color="colour", line_width=1.5, line_dash="dashed",
                                         name="detail-pred-mask-patches")
        gt_boxes = self.figure.quad(left="left", right="right", top="top", bottom="bottom", source=self.gt,
                                    fill_alpha=0, line_color="colour", line_width=2, name="detail-gt-boxes")
        pred_boxes = self.figure.quad(left="left", right="right", top="top", bottom="bottom", source=self.pred,
                                      fill_alpha=0, line_color="colour", line_width=2, line_dash="dashed",
                                      name="detail-pred-boxes")
        issue_boxes_r = self.figure.quad(left="left", right="right", top="top", bottom="bottom", source=self.issues,
                                         fill_alpha=0, line_color="colour", line_width=4, line_dash="dotted",
                                         name="detail-issue-boxes")
        focus_r = self.figure.quad(left="left", right="right", top="top", bottom="bottom", source=self.focus,
                                   fill_alpha=0, line_color="colour", line_width=5, line_alpha=0.9,
                                   name="detail-focus-box")
        labels = {}
        for kind in ("gt", "pred"):
            labels[kind] = self.figure.text(
                "x", "y", text="text", source=self.labels, view=CDSView(filter=GroupFilter(column_name="kind",
                                                                                         group=kind)),
                text_baseline="baseline", text_font_size="10px", text_color="#ffffff", background_fill_color="colour",
                background_fill_alpha=0.85, padding=1, name=f"detail-{kind}-labels")
        self.figure.add_tools(HoverTool(renderers=[gt_boxes, pred_boxes, gt_masks, pred_masks, issue_boxes_r, focus_r],
                                        tooltips=[("", "@label"), ("outcome", "@outcome")]))
        self.toggles = CheckboxGroup(labels=["Ground truth", "Predictions", "Labels"], active=[0, 1, 2],
                                     inline=True, name="detail-toggles", visible=task == "detection")
        # Boxes / masks: only for runs with masks (masks drawn, boxes hidden by default).
        self.layers = CheckboxGroup(labels=["Boxes", "Masks"], active=[1] if self.has_masks else [0],
                                    inline=True, name="detail-layers", visible=self.has_masks)
        gt_boxes.visible = pred_boxes.visible = not self.has_masks
        gt_masks.visible = pred_masks.visible = self.has_masks
        toggle = CustomJS(code=ui.js("detail_toggles"), args={
            "toggles": self.toggles, "layers": self.layers if self.has_masks else None,
            "gt": [gt_boxes], "pred": [pred_boxes], "gt_masks": [gt_masks], "pred_masks": [pred_masks],
            "gt_labels": [labels["gt"]], "pred_labels": [labels["pred"]]})
        self.toggles.js_on_change("active", toggle)
        self.layers.js_on_change("active", toggle)
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
        self.bar = (Row(self.model_toggle, self.toggles, *([self.layers] if self.has_masks else []))
                    if self.data.comparison is not None else None)
        self._shown = -1

    def layout(self):
        return self.root

    def layouts(self) -> dict:
        if self.data.comparison is not None:
            return {"detail.bar": self.bar, "detail": self.root}
        if self.has_masks:
            from bokeh.models import Row

            return {"detail.bar": Row(self.toggles, self.layers, name="detail-bar"), "detail": self.root}
        return {"detail.bar": self.toggles, "detail": self.root}

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
        issues, words = issue_boxes(self.data, i, d.state.marked("label-issues"))
        out["issues"] = issues
        focus = (focus_box(self.data, i, d.state.detail_object, d.object_outcomes.code)
                 if d.state.detail_object >= 0 and getattr(self.data, "object_map", None) is not None
                 else focus_box(self.data, i, -1, None))
        out["focus"] = focus
        if len(focus["left"]):
            suspect_object = (f"<div class='vx-focus-object'>highlighted: <b>{_escape(str(focus['label'][0]))}</b> · "
                              f"{_escape(str(focus['outcome'][0]))} · object {d.state.detail_object}</div>")
        else:
            suspect_object = ""
        suspect = ("".join(f"<div class='vx-warn vx-label-issue'>suspected label error: {_escape(w)}</div>"
                           for w in words))
        if self.task == "detection":
            gt, pred = detection_boxes(source, ev_, i)
            both = {k: np.concatenate([gt[k], pred[k]]) for k in ("left", "right", "top", "bottom", "label", "colour")}
            both["kind"] = np.array(["gt"] * len(gt["left"]) + ["pred"] * len(pred["left"]), object)
            out.update(gt=gt, pred=pred, labels=label_columns(both, fw / max(x1 - x0, 1e-9)))
            if self.has_masks:
                out["gt_masks"], out["pred_masks"] = detection_masks(source, ev_, i, gt, pred)
            out["info"] = self._info_detection(i, gt, pred, ev_.confidence, model) + suspect_object + suspect
        else:
            out["scores"] = classification_scores(source, ev_, i)
            out["info"] = self._info_classification(i, ev_, model) + suspect
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
            self.gt.data, self.pred.data, self.issues.data = empty, dict(empty), dict(empty)
            self.focus.data = dict(empty)
            self.gt_masks.data = {k: [] for k in _MASK_KEYS}
            self.pred_masks.data = {k: [] for k in _MASK_KEYS}
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
            if "gt_masks" in p:
                self.gt_masks.data, self.pred_masks.data = p["gt_masks"], p["pred_masks"]
            self.issues.data = p["issues"]
            self.focus.data = p["focus"]
        else:
            self.scores.data = p["scores"]
            self.score_figure.visible = True
        self.info.text = p["info"]
        if self.model_toggle.active != p["model"]:
            self.model_toggle.active = p["model"]


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


__all__ = ["DetailView", "classification_scores", "detection_boxes", "detection_masks", "fit_ranges",
           "focus_box", "issue_boxes", "place_labels"]
