"""The gallery: one page of thumbnails of the selection (or of the whole run), with what failed drawn on them.

Drawn as one figure: an ImageURL tile per image (``{url_base}/thumb/{image_id}``),
a frame coloured by the image's error rate, a badge below it (TP / FP / FN at
the operating point, or correct / incorrect with label → prediction), and on the
thumbnail the boxes that explain why the image is in the selection: the
selection's :class:`~vecexplore.app.state.Focus` (a "cat → background" cell
draws the missed cats, a background column its false positives, a cluster its
dominant error; with nothing chosen, every error), coloured by outcome, with a
legend. The page follows the panel's size: as many columns and rows of about
:data:`TILE_PX` pixels as fit. A click on a tile opens it in the detail view.

At the object level (:mod:`vecexplore.app.objects`) the tiles are the selected
objects' crops (``{url_base}/crop/{row}``, cut on the server), errors first, each
with its box drawn on it (solid = GT, dashed = prediction) and framed in its
outcome's colour; a click opens the crop's image with the object highlighted.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

from vecexplore.app import client, ui
from vecexplore.app import events as ev
from vecexplore.app import state as st
from vecexplore.app.view import View
from vecexplore.eval.outcomes import GtOutcome as G
from vecexplore.eval.outcomes import PredOutcome as P

PITCH = 1.32  # vertical distance between tile rows, in tile widths (tile 1.0 + badge)
LAST = 1.3  # height of the last row: its tile and badge
TILE_PX = 112  # target tile width in screen pixels
MIN_TILE_PX = 60  # smallest tile (a thumbnail still reads at this size)
_BADGE_NAME = 6  # characters of a class name in a classification badge

#: (legend label, colour) of each drawn outcome: GT codes first, then prediction codes.
GT_STYLE = {int(G.FN): ("missed GT", ui.MISSED_COLOUR), int(G.CONFUSED): ("GT taken for another class", "#d62728"),
            int(G.TP): ("found GT", ui.GT_COLOUR)}
PRED_STYLE = {int(P.TP): ("TP", ui.TP_COLOUR), int(P.FP_DUPLICATE): ("FP duplicate", ui.ERROR_TYPE_COLOURS["duplicate"]),
              int(P.FP_CLASS): ("FP wrong class", ui.ERROR_TYPE_COLOURS["class"]),
              int(P.FP_LOCALIZATION): ("FP localization", ui.ERROR_TYPE_COLOURS["localization"]),
              int(P.FP_BOTH): ("FP class + loc.", ui.ERROR_TYPE_COLOURS["both"]),
              int(P.FP_BACKGROUND): ("FP background", ui.ERROR_TYPE_COLOURS["background"])}


def _short(name: str) -> str:
    return name if len(name) <= _BADGE_NAME else name[: _BADGE_NAME - 1] + "…"


def badges(outcomes: st.ImageOutcomes, image_idx: np.ndarray, class_names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(badge text, frame colour) per image: detection "TP 3 FP 1 FN 0"; classification
    "✓ cat" / "✗ cat→dog" / "✗ cat→none" / "? →dog" (unlabelled), class names cut to fit the
    tile (the hover and the detail view give them whole). Frame: green without errors,
    orange → red with the error rate."""
    texts, colours = [], []
    for i in np.asarray(image_idx, np.int64):
        rate = float(outcomes.error_rate[i])
        colours.append("#2ca02c" if rate == 0 else ui.mix("#d62728", 0.45 + 0.55 * rate, base="#f5a623"))
        if outcomes.task == "detection":
            texts.append(f"TP {outcomes.tp[i]} FP {outcomes.fp[i]} FN {outcomes.fn[i]}")
            continue
        lab, pred = int(outcomes.label[i]), int(outcomes.prediction[i])
        pname = _short(class_names[pred]) if pred >= 0 else "none"
        if lab < 0:
            texts.append(f"? →{pname}")
        elif outcomes.correct[i]:
            texts.append(f"✓ {_short(class_names[lab])}")
        else:
            texts.append(f"✗ {_short(class_names[lab])}→{pname}")
    return texts, colours


def tile_layout(width: np.ndarray, height: np.ndarray, cols: int) -> dict[str, np.ndarray]:
    """Centre and size of each tile, in tile units (a tile is 1 × 1; images keep their aspect)."""
    n = len(width)
    pos = np.arange(n)
    col, row = pos % cols, pos // cols
    w = np.asarray(width, np.float64)
    h = np.asarray(height, np.float64)
    known = (w > 0) & (h > 0)
    aspect = np.where(known, w / np.where(known, h, 1), 1.0)
    return {
        "x": col + 0.5, "y": -(row * PITCH + 0.5), "by": -(row * PITCH + 1.12),
        "w": 0.9 * np.minimum(1.0, aspect), "h": 0.9 * np.minimum(1.0, 1.0 / aspect),
    }


def explaining_boxes(data, evaluation, image_idx: np.ndarray, tiles: dict, focus: st.Focus) -> dict[str, np.ndarray]:
    """The boxes of ``focus`` on each tile, in the gallery's data units (y up).

    Returns columns ``left, right, top, bottom, colour, label`` (one row per box, tile by tile,
    a tile's GT before its predictions); GT boxes are solid, predictions dashed (``dash`` = 1).
    """
    image_idx = np.asarray(image_idx, np.int64)
    empty = {"left": np.zeros(0), "right": np.zeros(0), "top": np.zeros(0), "bottom": np.zeros(0),
             "colour": np.zeros(0, object), "label": np.zeros(0, object), "dash": np.zeros(0, np.int8)}
    if data.task != "detection" or not (focus.gt or focus.pred) or len(image_idx) == 0:
        return empty
    ds, oc = data.dataset, evaluation.outcomes
    names = np.asarray(data.class_names, dtype=object)
    w = data.images.width[image_idx].astype(np.float64)
    h = data.images.height[image_idx].astype(np.float64)
    drawn = (w > 0) & (h > 0)
    tw, th = np.asarray(tiles["w"], np.float64), np.asarray(tiles["h"], np.float64)
    x0 = np.asarray(tiles["x"], np.float64) - tw / 2
    y0 = np.asarray(tiles["y"], np.float64) + th / 2
    sx, sy = np.divide(tw, w, out=np.zeros_like(tw), where=drawn), np.divide(th, h, out=np.zeros_like(th), where=drawn)
    parts = []
    for codes_of, boxes, index, style, wanted, cls, dash in (
            (oc.gt_code, ds.gt, data.gt_index, GT_STYLE, focus.gt, focus.gt_class, 0),
            (oc.pred_code, ds.pred, data.pred_index, PRED_STYLE, focus.pred, focus.pred_class, 1)):
        if not wanted:
            continue
        rows, at = index.rows_of(image_idx)
        codes = codes_of[rows]
        keep = np.isin(codes, list(wanted)) & drawn[at]
        if cls is not None:
            keep &= boxes.class_idx[rows] == cls
        rows, at, codes = rows[keep], at[keep], codes[keep].astype(np.int64)
        label_of = np.full(256, "", dtype=object)
        colour_of = np.full(256, "#9aa5b1", dtype=object)
        for code, (label, colour) in style.items():
            label_of[code], colour_of[code] = label, colour
        xywh = boxes.xywh[rows]
        labels = names[boxes.class_idx[rows]] + " · " + label_of[codes & 0xFF]
        parts.append({
            "left": x0[at] + xywh[:, 0] * sx[at], "right": x0[at] + (xywh[:, 0] + xywh[:, 2]) * sx[at],
            "top": y0[at] - xywh[:, 1] * sy[at], "bottom": y0[at] - (xywh[:, 1] + xywh[:, 3]) * sy[at],
            "colour": colour_of[codes & 0xFF], "label": labels,
            "dash": np.full(len(rows), dash, np.int8), "_at": at})
    if not parts:
        return empty
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(out.pop("_at") * 2 + out["dash"], kind="stable")
    return {k: v[order] for k, v in out.items()}


def legend_html(boxes: dict, task: str, focus: st.Focus) -> str:
    """The colour key of the boxes drawn on the page (nothing for classification)."""
    if task != "detection":
        return ""
    if not (focus.gt or focus.pred):
        return "<span class='vx-muted'>No boxes: this selection is not about particular objects.</span>"
    drawn = dict.fromkeys(str(lab).split(" · ", 1)[1] for lab in boxes["label"])
    colours = {label: c for label, c in (*GT_STYLE.values(), *PRED_STYLE.values())}
    chips = "".join(f"<span class='vx-key'><i style='border-color:{colours[k]}'></i>{html.escape(k)}</span>"
                    for k in drawn if k in colours)
    if not chips:
        return "<span class='vx-muted'>None of the objects that explain the selection is on this page.</span>"
    return f"<div class='vx-legend vx-box-legend'>{chips} <span class='vx-muted'>solid = GT, dashed = " \
           "prediction</span></div>"


def object_tiles(data, outcomes, rows: np.ndarray, cols: int, url_base: str) -> tuple[dict, dict]:
    """(tile columns, box columns) of a page of object ``rows`` (objects-table rows).

    Tiles are square (crops are); the badge says "class · outcome", the frame is the outcome's
    colour (:data:`~vecexplore.app.objects.OUTCOME_COLOURS`). Each object's box is drawn on its
    crop at the place :func:`~vecexplore.app.objects.crop_box` cut it from.
    """
    from vecexplore.app.objects import OUTCOME_COLOURS, box_in_tile, crop_box, outcome_label

    omap, info = data.object_map, data.images
    rows = np.asarray(rows, np.int64)
    ones = np.ones(len(rows))
    tiles = tile_layout(ones, ones, cols)
    labels = [outcome_label(c) for c in outcomes.code[rows]]
    names = data.class_names
    image = omap.image_idx[rows]
    tiles.update({
        "url": [f"{url_base}/crop/{int(r)}" for r in rows],
        "badge": [f"{_short(str(names[c]))} · {lab}" for c, lab in zip(omap.class_idx[rows], labels, strict=True)],
        "frame": [OUTCOME_COLOURS[lab] for lab in labels], "image_idx": image,
        "image_id": info.image_id[image].astype(np.float64), "file_name": info.file_name[image],
    })
    box = {k: [] for k in ("left", "right", "top", "bottom", "colour", "label", "dash")}
    for j, r in enumerate(rows.tolist()):
        window, b = crop_box(omap, r, int(info.width[image[j]]), int(info.height[image[j]]))
        fl, ft, fr, fb = box_in_tile(window, b)
        x0, y0, side = tiles["x"][j] - tiles["w"][j] / 2, tiles["y"][j] + tiles["h"][j] / 2, tiles["w"][j]
        box["left"].append(x0 + fl * side)
        box["right"].append(x0 + fr * side)
        box["top"].append(y0 - ft * side)
        box["bottom"].append(y0 - fb * side)
        box["colour"].append(OUTCOME_COLOURS[labels[j]])
        box["label"].append(f"{names[omap.class_idx[r]]} · {labels[j]}")
        box["dash"].append(int(r >= omap.num_gt))
    boxes = {k: np.asarray(v, np.int8 if k == "dash" else object if k in ("colour", "label") else np.float64)
             for k, v in box.items()}
    return tiles, boxes


def object_legend_html(boxes: dict) -> str:
    """The colour key of the outcomes on an object page."""
    from vecexplore.app.objects import OUTCOME_COLOURS

    drawn = dict.fromkeys(str(lab).split(" · ", 1)[1] for lab in boxes["label"])
    chips = "".join(f"<span class='vx-key'><i style='border-color:{OUTCOME_COLOURS[k]}'></i>{html.escape(k)}</span>"
                    for k in drawn if k in OUTCOME_COLOURS)
    return f"<div class='vx-legend vx-box-legend'>{chips} <span class='vx-muted'>solid = GT, dashed = " \
           "prediction</span></div>" if chips else ""


def shape_for(width_px: float | None, height_px: float | None) -> tuple[int, int]:
    """(columns, rows) of tiles that fit a frame (8 × 3 when unknown): about :data:`TILE_PX` pixels
    wide, smaller (down to :data:`MIN_TILE_PX`) when that is what it takes to show two rows."""
    if not width_px or not height_px:
        return 8, 3
    tile = max(MIN_TILE_PX, min(TILE_PX, height_px / (LAST + PITCH)))
    cols = int(max(3, min(16, width_px // tile)))
    rows = int(max(1, min(8, (height_px / tile - LAST) // PITCH + 1)))
    return cols, rows


class GalleryView(View):
    name = "gallery"
    slot = "gallery"
    depends = frozenset({"op", "selection", "gallery", "detail", "phrase", "level"})

    def __init__(self, ctx):
        super().__init__(ctx)
        from bokeh.models import (
            Button,
            CDSView,
            Column,
            ColumnDataSource,
            Div,
            GroupFilter,
            HoverTool,
            Range1d,
            Row,
            Select,
        )
        from bokeh.plotting import figure

        self.url_base = ctx.url_base
        self.source = ColumnDataSource(data=self._empty(), name="gallery-source")
        # Images get their own source: BokehJS cannot paint an ImageURL whose source has a selection.
        self.images = ColumnDataSource(data={k: [] for k in ("x", "y", "w", "h", "url")}, name="gallery-images")
        self.boxes = ColumnDataSource(data={k: [] for k in ("left", "right", "top", "bottom", "colour", "label",
                                                            "dash", "dash_name")}, name="gallery-boxes")
        self.figure = figure(
            sizing_mode="stretch_both", min_height=150, name="gallery", css_classes=["vx-gallery"], tools="",
            toolbar_location=None, x_range=Range1d(0, 8), y_range=Range1d(-3 * PITCH, 0.02), min_border=2,
        )
        self.figure.axis.visible = False
        self.figure.grid.visible = False
        self.figure.outline_line_color = None
        self.figure.image_url(url="url", x="x", y="y", w="w", h="h", anchor="center", source=self.images)
        self.frames = self.figure.rect("x", "y", 0.97, 0.97, source=self.source, fill_alpha=0,
                                       line_color="frame", line_width=2, selection_line_width=4,
                                       selection_line_color="#111111", nonselection_line_alpha=1.0,
                                       nonselection_fill_alpha=0, name="gallery-tiles")
        for pattern in ("solid", "dashed"):
            view = CDSView(filter=GroupFilter(column_name="dash_name", group=pattern))
            self.figure.quad(left="left", right="right", top="top", bottom="bottom", source=self.boxes, view=view,
                             fill_alpha=0, line_color="colour", line_width=1.6, line_dash=pattern,
                             name=f"gallery-boxes-{pattern}")
        self.badge_text = self.figure.text("x", "by", text="badge", source=self.source, text_align="center",
                                           text_baseline="middle", text_font_size="10.5px", text_color="#333333",
                                           nonselection_text_alpha=1.0, name="gallery-badges")
        # an explicit selection glyph (not "auto", fixed when the page is built) that _font can resize
        self.badge_text.selection_glyph = self.badge_text.glyph.clone()
        self.figure.add_tools(HoverTool(renderers=[self.frames], tooltips=[("file", "@file_name"),
                                                                           ("id", "@image_id")]))
        sorts = [("error", "Worst first"), ("confidence_desc", "Most confident first"),
                 ("confidence_asc", "Least confident first")]
        if self.data.text_search.hidden is None:  # the order a text search (Query tab) sets
            sorts.append(("text", "Closest to the phrase"))
        self.sort = Select(value="error", name="gallery-sort", width=150, options=sorts)
        self.prev = Button(label="‹", name="gallery-prev", width=34, html_attributes={"title": "Previous page"})
        self.next = Button(label="›", name="gallery-next", width=34, html_attributes={"title": "Next page"})
        self.page = ui.text_div(text="", name="gallery-page", css_classes=["vx-caption"])
        self.caption = ui.text_div(text="", name="gallery-caption", css_classes=["vx-caption"])
        self.legend = Div(text="", name="gallery-legend", sizing_mode="stretch_width", css_classes=["vx-legend-div"])
        self.bar = Row(self.sort, self.prev, self.page, self.next, css_classes=["vx-toolbar"])
        self.root = Column(Row(self.caption, self.legend, sizing_mode="stretch_width", css_classes=["vx-toolbar"]),
                           self.figure, sizing_mode="stretch_both", css_classes=["vx-gallery-body"])
        self._rows = np.zeros(0, np.int64)
        self._level = "images"
        self._longest = 10

    @staticmethod
    def _empty() -> dict:
        return {k: [] for k in ("x", "y", "by", "w", "h", "url", "badge", "frame", "image_idx", "image_id",
                                "file_name")}

    def layout(self):
        return self.root

    def layouts(self) -> dict:
        return {"gallery.bar": self.bar, "gallery": self.root}

    def compute(self, d):
        if d.state.level == "objects" and getattr(self.data, "object_map", None) is not None:
            return self._compute_objects(d)
        page, s = d.gallery, d.state
        idx = page.image_idx
        info = self.data.images
        texts, frames = badges(d.outcomes, idx, self.data.class_names)
        cols, _rows = s.gallery_shape
        tiles = tile_layout(info.width[idx], info.height[idx], cols)
        ids = info.image_id[idx]
        tiles.update({
            "url": [f"{self.url_base}/thumb/{int(i)}" for i in ids], "badge": texts, "frame": frames,
            "image_idx": idx, "image_id": ids.astype(np.float64), "file_name": info.file_name[idx],
        })
        boxes = explaining_boxes(self.data, d.evaluation, idx, tiles, s.focus)
        boxes["dash_name"] = np.where(boxes["dash"] == 1, "dashed", "solid").astype(object)
        caption = f"{page.total:,} images" if page.total else "no images"
        if s.sort == "text" and page.total:
            caption += f", closest to “{s.phrase}” first" if s.phrase else " (search a phrase in the Query tab)"
        return {"tiles": tiles, "boxes": boxes, "page": page, "caption": caption, "detail": d.detail,
                "shape": s.gallery_shape, "legend": legend_html(boxes, self.task, s.focus), "sort": s.sort,
                "level": "images", "rows": idx}

    def _compute_objects(self, d):
        page, s = d.object_gallery, d.state
        rows = page.image_idx  # objects-table rows at this level
        tiles, boxes = object_tiles(self.data, d.object_outcomes, rows, s.gallery_shape[0], self.url_base)
        boxes["dash_name"] = np.where(boxes["dash"] == 1, "dashed", "solid").astype(object)
        caption = f"{page.total:,} objects" if page.total else "no objects"
        if d.object_selection is None:
            caption += " (every mapped object)"
        # the tile outlined: the object the detail view highlights, while it shows its image
        detail = s.detail_object if d.detail >= 0 and s.detail_object >= 0 and \
            int(self.data.object_map.image_idx[s.detail_object]) == d.detail else -1
        return {"tiles": tiles, "boxes": boxes, "page": page, "caption": caption, "detail": detail,
                "shape": s.gallery_shape, "legend": object_legend_html(boxes), "sort": s.sort if s.sort != "text"
                else "error", "level": "objects", "rows": rows}

    def apply(self, p) -> None:
        page, tiles = p["page"], p["tiles"]
        cols, rows = p["shape"]
        self._rows = p["rows"]  # image_idx, or objects-table rows at the object level
        self._level = p["level"]
        self._longest = max((len(str(b)) for b in tiles["badge"]), default=10)
        self._fit(cols, rows)
        self._font(cols, rows)
        self.images.data = {k: tiles[k] for k in ("x", "y", "w", "h", "url")}
        self.source.data = tiles
        self.boxes.data = p["boxes"]
        rows_sel = np.flatnonzero(self._rows == p["detail"]).tolist() if p["detail"] >= 0 else []
        if list(self.source.selected.indices) != rows_sel:
            self.source.selected.indices = rows_sel
        self.caption.text = p["caption"]
        self.legend.text = p["legend"]
        self.page.text = f"{page.page + 1} / {page.pages}" if page.total else ""
        self.prev.disabled = page.page <= 0
        self.next.disabled = page.page >= page.pages - 1
        if self.sort.value != p["sort"]:
            self.sort.value = p["sort"]

    def _tile_px(self, cols: int, rows: int) -> float | None:
        """Screen pixels per tile width when ``cols × rows`` tiles fit the frame (None: size unknown)."""
        w, h = ui.frame_size(self.figure)
        if not w or not h:
            return None
        return min(w / cols, h / ((rows - 1) * PITCH + LAST + 0.02))

    def _fit(self, cols: int, rows: int) -> None:
        """Ranges that fit ``cols × rows`` tiles with as many pixels per data unit across as down
        (square tiles; spare room goes right and below)."""
        ppu = self._tile_px(cols, rows)
        if ppu is None:
            height = (rows - 1) * PITCH + LAST + 0.02
            self.figure.x_range.update(start=0, end=cols)
            self.figure.y_range.update(start=0.02 - height, end=0.02)
            return
        w, h = ui.frame_size(self.figure)
        self.figure.x_range.update(start=0, end=w / ppu)
        self.figure.y_range.update(start=0.02 - h / ppu, end=0.02)

    def _font(self, cols: int, rows: int) -> None:
        """Badge text sized so the page's longest badge fits its tile (a character is ~0.58 em wide).

        The tile is the one :meth:`_fit` draws: narrower than ``width / cols`` when the
        frame's height is what limits it (badges of neighbouring tiles ran into each other).
        """
        tile = self._tile_px(cols, rows) or TILE_PX
        size = f"{max(7.0, min(11.0, 0.92 * tile / (0.58 * max(self._longest, 1)))):.1f}px"
        r = self.badge_text  # the selection made copies of the glyph: non-selected badges draw with those
        for glyph in (r.glyph, r.selection_glyph, r.nonselection_glyph):
            if glyph is not None and glyph != "auto" and glyph.text_font_size != size:
                glyph.text_font_size = size

    def wire(self, session) -> None:
        def resized(_attr, _old, _new):
            shape = shape_for(*ui.frame_size(self.figure))
            if shape != session.state.gallery_shape:
                session.emit(ev.SetView.of(gallery_shape=shape))
            else:
                self._fit(*shape)
                self._font(*shape)

        self.figure.on_change("inner_width", resized)
        self.figure.on_change("inner_height", resized)

        def sort(_attr, _old, new):
            if session.applying:
                return
            if client.choice(new, {o[0] for o in self.sort.options}) is None:
                ui.refused("gallery-sort", new)
                return
            session.emit(ev.SetView.of(sort=new))

        self.sort.on_change("value", sort)
        def shown(d):  # the page the gallery shows: of images, or of objects at the object level
            objects = d.state.level == "objects" and getattr(self.data, "object_map", None) is not None
            return (d.object_gallery if objects else d.gallery).page

        self.prev.on_click(lambda: session.emit(lambda d: ev.SetView.of(page=max(shown(d) - 1, 0)),
                                                key=("page", object())))
        self.next.on_click(lambda: session.emit(lambda d: ev.SetView.of(page=shown(d) + 1),
                                                key=("page", object())))

        def tap(x: float, y: float, _shift: bool) -> None:
            cols = session.state.gallery_shape[0]
            col, row = int(np.floor(x)), int(np.floor(-y / PITCH))
            k = row * cols + col
            if not (0 <= col < cols and 0 <= k < len(self._rows)) or (-y - row * PITCH) > 1.0:
                return
            if self._level == "objects":
                row = int(self._rows[k])
                session.emit(ev.OpenImage(int(self.data.object_map.image_idx[row]), object_row=row))
                return
            session.emit(ev.OpenImage(int(self._rows[k])))

        ui.on_tap(self.figure, session, tap)
