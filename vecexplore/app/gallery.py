"""The gallery: one page of thumbnails of the selection (or of the whole run), each with its badge.

Drawn as a small figure: an ImageURL tile per image (``{url_base}/thumb/{image_id}``),
a frame coloured by the image's error rate and a badge below it (TP / FP / FN
at the operating point, or correct / incorrect with label → prediction). A tap
on a tile puts its row in ``source.selected.indices``; the controller opens the
detail view for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vecexplore.app import ui
from vecexplore.app.state import PER_PAGE, ImageOutcomes

COLUMNS = 8
ROWS = -(-PER_PAGE // COLUMNS)
_PITCH = 1.36  # vertical distance between tile rows (tile 1.0 + badge)


_BADGE_NAME = 7  # characters of a class name in a classification badge (the tile is ~90 px wide)


def _short(name: str) -> str:
    return name if len(name) <= _BADGE_NAME else name[: _BADGE_NAME - 1] + "…"


def badges(outcomes: ImageOutcomes, image_idx: np.ndarray, class_names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(badge text, frame colour) per image: detection "TP 3 · FP 1 · FN 0"; classification
    "✓ cat" / "✗ cat→dog" / "✗ cat→none" / "? →dog" (unlabelled), class names cut to fit the
    tile (the hover and the detail view give them whole). Frame: green without errors,
    orange → red with the error rate."""
    texts, colours = [], []
    for i in np.asarray(image_idx, np.int64):
        rate = float(outcomes.error_rate[i])
        colours.append("#2ca02c" if rate == 0 else ui.mix("#d62728", 0.45 + 0.55 * rate, base="#f5a623"))
        if outcomes.task == "detection":
            texts.append(f"TP {outcomes.tp[i]} · FP {outcomes.fp[i]} · FN {outcomes.fn[i]}")
            continue
        lab, pred = int(outcomes.label[i]), int(outcomes.prediction[i])
        pname = _short(class_names[pred]) if pred >= 0 else "none"
        if lab < 0:
            texts.append(f"? →{pname}")
        elif outcomes.correct[i]:
            texts.append(f"✓ {class_names[lab]}")
        else:
            texts.append(f"✗ {_short(class_names[lab])}→{pname}")
    return texts, colours


def tile_layout(width: np.ndarray, height: np.ndarray) -> dict[str, np.ndarray]:
    """Centre and size of each tile, in tile units (a tile is 1 × 1; images keep their aspect)."""
    n = len(width)
    pos = np.arange(n)
    col, row = pos % COLUMNS, pos // COLUMNS
    w = np.asarray(width, np.float64)
    h = np.asarray(height, np.float64)
    known = (w > 0) & (h > 0)
    aspect = np.where(known, w / np.where(known, h, 1), 1.0)
    return {
        "x": col + 0.5, "y": -(row * _PITCH + 0.5), "by": -(row * _PITCH + 1.13),
        "w": 0.9 * np.minimum(1.0, aspect), "h": 0.9 * np.minimum(1.0, 1.0 / aspect),
    }


class GalleryPanel:
    """The gallery figure, sort select and pager."""

    def __init__(self, *, url_base: str, unit: int = 90):
        from bokeh.models import Button, ColumnDataSource, HoverTool, Range1d, Select, TapTool
        from bokeh.plotting import figure

        self.url_base = url_base
        self.source = ColumnDataSource(data=self._empty(), name="gallery-source")
        # Images get their own source: BokehJS cannot paint an ImageURL whose source has a selection.
        self.images = ColumnDataSource(data={k: [] for k in ("x", "y", "w", "h", "url")}, name="gallery-images")
        self.figure = figure(
            frame_width=COLUMNS * unit, frame_height=int(ROWS * _PITCH * unit), name="gallery",
            css_classes=["vx-gallery"], tools="", toolbar_location=None,
            x_range=Range1d(0, COLUMNS), y_range=Range1d(-ROWS * _PITCH + 0.1, 0.02),
            min_border=4,
        )
        self.figure.axis.visible = False
        self.figure.grid.visible = False
        self.figure.outline_line_color = None
        self.figure.image_url(url="url", x="x", y="y", w="w", h="h", anchor="center", source=self.images)
        self.frames = self.figure.rect("x", "y", 0.97, 0.97, source=self.source, fill_alpha=0,
                                       line_color="frame", line_width=2, selection_line_width=4,
                                       selection_line_color="#111111", nonselection_line_alpha=1.0,
                                       nonselection_fill_alpha=0, name="gallery-tiles")
        self.figure.text("x", "by", text="badge", source=self.source, text_align="center",
                         text_baseline="middle", text_font_size="10.5px", text_color="#333333",
                         nonselection_text_alpha=1.0)
        self.figure.add_tools(TapTool(renderers=[self.frames]),
                              HoverTool(renderers=[self.frames], tooltips=[("file", "@file_name"),
                                                                           ("id", "@image_id")]))
        self.sort = Select(value="error", name="gallery-sort", width=190, options=[
            ("error", "Error rate (worst first)"), ("confidence_desc", "Confidence (high first)"),
            ("confidence_asc", "Confidence (low first)")])
        self.prev = Button(label="‹ Prev", name="gallery-prev", width=70)
        self.next = Button(label="Next ›", name="gallery-next", width=70)
        self.page = ui.text_div(text="", name="gallery-page", css_classes=["vx-caption"])
        self.caption = ui.text_div(text="", name="gallery-caption", css_classes=["vx-caption"])
        self._rows = np.zeros(0, np.int64)

    @staticmethod
    def _empty() -> dict:
        return {k: [] for k in ("x", "y", "by", "w", "h", "url", "badge", "frame", "image_idx", "image_id",
                                "file_name")}

    def show(self, page, *, info, outcomes: ImageOutcomes, class_names, caption: str, detail: int) -> None:
        """Show a :class:`~vecexplore.app.state.GalleryPage` (≤ 24 rows; the tile under ``detail`` framed)."""
        idx = page.image_idx
        texts, frames = badges(outcomes, idx, class_names)
        ids = info.image_id[idx]
        data = tile_layout(info.width[idx], info.height[idx])
        data.update({
            "url": [f"{self.url_base}/thumb/{int(i)}" for i in ids], "badge": texts, "frame": frames,
            "image_idx": idx, "image_id": ids.astype(np.float64), "file_name": info.file_name[idx],
        })
        self._rows = idx
        self.images.data = {k: data[k] for k in ("x", "y", "w", "h", "url")}
        self.source.data = data
        self.show_detail(detail)
        self.caption.text = caption
        self.page.text = f"page {page.page + 1} / {page.pages}" if page.total else ""
        self.prev.disabled = page.page <= 0
        self.next.disabled = page.page >= page.pages - 1

    def show_detail(self, detail: int) -> None:
        rows = np.flatnonzero(self._rows == detail).tolist() if detail >= 0 else []
        if list(self.source.selected.indices) != rows:
            self.source.selected.indices = rows

    def image_at(self, row: int) -> int:
        return int(self._rows[row])
