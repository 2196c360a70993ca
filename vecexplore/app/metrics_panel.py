"""The production metrics explorer: precision, recall and F1 against the confidence threshold.

:func:`curve_columns` (pure) samples a :class:`~vecexplore.eval.sweep.Curve` on a
fixed grid of thresholds (:data:`GRID`, 0 to 1 in steps of 0.001), so the page
receives 1,001 points whatever the number of predictions. Each grid value ``c``
shows the numbers with the predictions of score ≥ ``c`` (``Curve.at``), which is
what the operating point means everywhere else in the app.

The figure draws precision, recall and F1 (classification: the selective
classifier's precision = accuracy of the accepted images, recall = correct /
labelled, and the coverage = accepted / labelled, dashed), the operating point
as a vertical line at the session's confidence, and the curve's F1-optimal point.
A tap on the figure sets the app's confidence (see
:mod:`vecexplore.app.quality_views`), so the line, the slider and every view move
together.
"""

from __future__ import annotations

import html

import numpy as np

GRID = np.round(np.linspace(0.0, 1.0, 1001), 3)
_COLOURS = {"precision": "#2f6db5", "recall": "#f58518", "f1": "#2ca02c", "coverage": "#7b8794"}


def curve_columns(curve, grid: np.ndarray = GRID) -> dict[str, np.ndarray]:
    """The curve at each threshold of ``grid``: (g,) float32 columns.

    Keys: ``precision`` (NaN where no prediction passes), ``recall``, ``f1``,
    ``coverage`` ((TP + FP) / positives; NaN without positives, as is recall),
    ``tp``, ``fp``, ``fn`` (counts, float32).
    """
    conf = np.asarray(curve.confidence, np.float64)
    i = np.searchsorted(-conf, -np.asarray(grid, np.float64), side="right") - 1
    has = i >= 0
    j = np.where(has, i, 0)
    zero = np.zeros(len(grid), np.int64)
    tp = np.where(has, curve.tp[j], 0) if len(conf) else zero
    fp = np.where(has, curve.fp[j], 0) if len(conf) else zero
    n_pos = int(curve.n_pos)
    fn = n_pos - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan)
        recall = tp / n_pos if n_pos else np.full(len(grid), np.nan)
        coverage = (tp + fp) / n_pos if n_pos else np.full(len(grid), np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), np.nan)
    return {k: np.asarray(v, np.float32) for k, v in
            {"precision": precision, "recall": recall, "f1": f1, "coverage": coverage,
             "tp": tp, "fp": fp, "fn": fn}.items()}


def curve_caption(*, what: str, curve, confidence: float, task: str) -> str:
    """The numbers at the operating point and the curve's F1-optimal point, as HTML."""
    tp, fp, fn = curve.at(confidence)
    p = tp / (tp + fp) if tp + fp else float("nan")
    r = tp / curve.n_pos if curve.n_pos else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else float("nan")
    best, best_f1 = curve.optimal()
    counts = f"TP {tp:,} · FP {fp:,} · FN {fn:,}" if task == "detection" else \
        f"correct {tp:,} · wrong {fp:,} · not correct {fn:,}"
    opt = ("no predictions" if np.isnan(best) else
           f"F1-optimal confidence <b>{best:.3f}</b> (F1 {best_f1:.3f})")
    return (f"{html.escape(what)}. At confidence ≥ <b>{confidence:.3f}</b>: precision {_f(p)} · recall {_f(r)} · "
            f"F1 {_f(f1)} ({counts}); {opt}. Click the chart to move the operating point.")


def _f(v: float) -> str:
    return "–" if np.isnan(v) else f"{v:.3f}"


class MetricsPanel:
    """The figure, its scope and class controls and caption. Build once; update with ``show_*``."""

    def __init__(self, *, task: str, class_names, confidence: float, width: int = 630, height: int = 480):
        from bokeh.models import (
            ColumnDataSource,
            CrosshairTool,
            Div,
            HoverTool,
            Legend,
            LegendItem,
            RadioButtonGroup,
            Range1d,
            Select,
            Span,
        )  # fmt: skip
        from bokeh.plotting import figure

        self.task = task
        nan = np.full(len(GRID), np.nan, np.float32)
        # The grid is sent once; updates re-send the rate columns (4 × 1,001 float32).
        self.source = ColumnDataSource(data={"confidence": GRID.astype(np.float32), "precision": nan,
                                             "recall": nan, "f1": nan, "coverage": nan}, name="curve-source")
        self.optimal = ColumnDataSource(data={"confidence": [], "f1": [], "text": []}, name="curve-optimal")
        self.figure = figure(width=width, height=height, name="curve", css_classes=["vx-curve"], tools="",
                             toolbar_location=None, x_range=Range1d(0, 1), y_range=Range1d(0, 1.04),
                             x_axis_label="confidence threshold", min_border_right=14)
        lines = [("precision", "precision" if task == "detection" else "precision (accuracy of accepted)"),
                 ("recall", "recall" if task == "detection" else "recall (correct / labelled)"), ("f1", "F1")]
        if task == "classification":
            lines.append(("coverage", "coverage (accepted / labelled)"))
        items, self.lines = [], {}
        for key, label in lines:
            r = self.figure.line("confidence", key, source=self.source, line_color=_COLOURS[key],
                                 line_width=3 if key == "f1" else 2, line_dash="dashed" if key == "coverage" else "solid",
                                 name=f"curve-{key}")
            self.lines[key] = r
            items.append(LegendItem(label=label, renderers=[r]))
        self.operating = Span(location=float(confidence), dimension="height", line_color="#111111", line_width=1.5,
                              line_dash="dashed", name="curve-operating-point")
        self.figure.add_layout(self.operating)
        self.figure.scatter("confidence", "f1", source=self.optimal, size=12, marker="diamond",
                            fill_color="#c0392b", line_color="#ffffff", name="curve-optimal-point")
        self.figure.text("confidence", "f1", text="text", source=self.optimal, x_offset=8, y_offset=-8,
                         text_font_size="11px", text_color="#c0392b", text_baseline="bottom")
        self.figure.add_layout(Legend(items=items, orientation="horizontal", location="top_left",
                                      label_text_font_size="11px", spacing=10, padding=2, border_line_alpha=0,
                                      background_fill_alpha=0.0), "above")
        self.figure.add_tools(
            HoverTool(renderers=[self.lines["f1"]], mode="vline", tooltips=[
                ("confidence ≥", "@confidence{0.000}"), ("precision", "@precision{0.000}"),
                ("recall", "@recall{0.000}"), ("F1", "@f1{0.000}")]),
            CrosshairTool(dimensions="height", line_color="#9aa5b1", line_alpha=0.6),
        )
        self.figure.grid.grid_line_color = "#eef1f5"
        self.figure.outline_line_color = None
        self.scope = RadioButtonGroup(labels=["Selection", "Whole run"], active=0, name="curve-scope",
                                      css_classes=["vx-curve-scope"])
        self.klass = Select(value="-1", name="curve-class", width=200,
                            options=[("-1", "All classes"), *((str(k), str(n)) for k, n in enumerate(class_names))])
        self.caption = Div(text="", name="curve-caption", css_classes=["vx-caption"], width=width)

    def layout(self, sheet):
        from bokeh.models import Column, Row

        return Column(Row(self.scope, self.klass, css_classes=["vx-toolbar"]), self.caption, self.figure,
                      stylesheets=[sheet])

    def show_curve(self, columns: dict[str, np.ndarray], optimal: tuple[float, float], caption: str) -> None:
        """New curve columns (:func:`curve_columns`), F1-optimal ``(confidence, f1)`` (NaN = none) and caption."""
        self.source.data.update({k: columns[k] for k in ("precision", "recall", "f1", "coverage")})
        c, f1 = optimal
        self.optimal.data = ({"confidence": [], "f1": [], "text": []} if np.isnan(c) else
                             {"confidence": [c], "f1": [f1], "text": [f"F1-optimal {c:.3f}"]})
        self.caption.text = caption

    def show_operating_point(self, confidence: float) -> None:
        if self.operating.location != confidence:
            self.operating.location = float(confidence)

    def show_controls(self, *, scope: str, class_idx: int) -> None:
        active = 0 if scope == "selection" else 1
        if self.scope.active != active:
            self.scope.active = active
        if self.klass.value != str(class_idx):
            self.klass.value = str(class_idx)
