"""The control column: operating point (confidence, IoU), colour-by, filters, selection buttons."""

from __future__ import annotations

from vecexplore.app import ui
from vecexplore.app.colouring import modes


def confidence_title(optimal: float, iou: float | None = None) -> str:
    """The slider's title; it marks the exact F1-optimal confidence (at the current IoU)."""
    return f"Confidence (F1-optimal {optimal:.4f})"


class ControlsPanel:
    """Widgets only; the controller wires their callbacks."""

    def __init__(self, *, data, confidence: float, optimal: float, width: int = 240):
        from bokeh.models import Button, MultiChoice, Select, Slider

        task = data.task
        iou = data.build_iou if task == "detection" else None
        self.confidence = Slider(start=0.0, end=1.0, step=0.005, value=confidence, format="0.000",
                                 title=confidence_title(optimal, iou), name="confidence", width=width,
                                 css_classes=["vx-confidence"])
        self.best = Button(label="Use F1-optimal confidence", name="best-f1", width=width, button_type="light")
        self.iou = Select(title="IoU threshold", value=f"{data.build_iou:.2f}", name="iou", width=width,
                          options=[f"{t:.2f}" for t in data.iou_choices], visible=task == "detection")
        self.colour = Select(title="Colour points by", value=modes(task)[0][0], name="colour-by", width=width,
                             options=list(modes(task)))
        self.classes = MultiChoice(title="Class filter (GT or prediction)", value=[], name="class-filter",
                                   options=ui.choice_options(enumerate(data.class_names)), width=width,
                                   placeholder="all classes")
        splits = data.images.splits
        self.splits = MultiChoice(title="Split filter", value=[], name="split-filter",
                                  options=ui.choice_options((s, s) for s in splits),
                                  width=width, placeholder="all splits", visible=len(splits) > 1)
        self.clear = Button(label="Clear selection", name="clear-selection", width=width, button_type="default")
        n_bad = int((~data.images.readable).sum())
        self.unreadable = Button(label=f"Select unreadable images ({n_bad:,})", name="select-unreadable",
                                 width=width, visible=n_bad > 0, button_type="warning")

    @property
    def widgets(self) -> list:
        return [self.confidence, self.best, self.iou, self.colour, self.classes, self.splits, self.clear,
                self.unreadable]
