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
A tap on the figure sets the app's confidence (within :data:`SNAP` of the
curve's optimum it takes exactly that), so the line, the slider and every view
move together.
"""

from __future__ import annotations

import numpy as np

from vecexplore.app import client, ui
from vecexplore.app import events as ev
from vecexplore.app.view import View
from vecexplore.rates import precision_recall_f1, ratio, scalar_precision_recall_f1

GRID = np.round(np.linspace(0.0, 1.0, 1001), 3)
#: A tap this close to the curve's F1-optimal confidence takes exactly that confidence.
SNAP = 0.01
#: The slider's step (a tap elsewhere lands on it).
STEP = 0.005
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
    precision, recall, f1 = precision_recall_f1(tp, fp, fn)  # tp + fn = n_pos
    coverage = ratio(tp + fp, np.full(len(grid), n_pos))
    return {k: np.asarray(v, np.float32) for k, v in
            {"precision": precision, "recall": recall, "f1": f1, "coverage": coverage,
             "tp": tp, "fp": fp, "fn": fn}.items()}


def curve_caption(*, what: str, curve, confidence: float, task: str) -> str:
    """The numbers at the operating point and the curve's F1-optimal point (plain text)."""
    tp, fp, fn = curve.at(confidence)
    p, r, f1 = scalar_precision_recall_f1(tp, fp, fn)  # tp + fn = n_pos
    best, best_f1 = curve.optimal()
    counts = f"TP {tp:,} · FP {fp:,} · FN {fn:,}" if task == "detection" else \
        f"correct {tp:,} · wrong {fp:,} · not correct {fn:,}"
    opt = ("no predictions" if np.isnan(best) else
           f"F1-optimal confidence {best:.3f} (F1 {best_f1:.3f})")
    return (f"{what}. At confidence ≥ {confidence:.3f}: precision {_f(p)} · recall {_f(r)} · "
            f"F1 {_f(f1)} ({counts}); {opt}. Click the chart to move the operating point.")


def _f(v: float) -> str:
    return "–" if np.isnan(v) else f"{v:.3f}"


def snap_confidence(x: float, *, step: float = STEP, optimal: float = float("nan")) -> float:
    """The confidence a tap at ``x`` sets: the curve's optimum within :data:`SNAP`, else ``x`` on the slider's step."""
    if np.isfinite(optimal) and abs(x - optimal) <= SNAP:
        return float(optimal)
    return float(min(max(round(round(x / step) * step, 6), 0.0), 1.0))


def _same(a: tuple, b: tuple | None) -> bool:
    return b is not None and len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


class CurveView(View):
    name = "curve"
    slot = "tab"
    title = "Threshold"
    depends = frozenset({"op", "selection", "curve"})

    def __init__(self, ctx):
        super().__init__(ctx)
        from bokeh.models import (
            Column,
            ColumnDataSource,
            CrosshairTool,
            HoverTool,
            Legend,
            LegendItem,
            RadioButtonGroup,
            Range1d,
            Row,
            Select,
            Span,
        )  # fmt: skip
        from bokeh.plotting import figure

        task = self.task
        nan = np.full(len(GRID), np.nan, np.float32)
        # The grid is sent once; updates re-send the rate columns (4 × 1,001 float32).
        self.source = ColumnDataSource(data={"confidence": GRID.astype(np.float32), "precision": nan,
                                             "recall": nan, "f1": nan, "coverage": nan}, name="curve-source")
        self.optimal = ColumnDataSource(data={"confidence": [], "f1": [], "text": []}, name="curve-optimal")
        self.figure = figure(sizing_mode="stretch_both", name="curve", css_classes=["vx-curve"], tools="",
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
        self.operating = Span(location=float(ctx.session.state.confidence), dimension="height", line_color="#111111",
                              line_width=1.5, line_dash="dashed", name="curve-operating-point")
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
                            options=[("-1", "All classes"), *((str(k), str(n)) for k, n in
                                                              enumerate(self.data.class_names))])
        self.caption = ui.text_div(text="", name="curve-caption", css_classes=["vx-caption"],
                                   sizing_mode="stretch_width")
        self.root = Column(Row(self.scope, self.klass, css_classes=["vx-toolbar"]), self.caption, self.figure,
                           sizing_mode="stretch_both", css_classes=["vx-tab-body"])
        self._curve: tuple | None = None  # (key, Curve)
        self._optimum = float("nan")

    def layout(self):
        return self.root

    def compute(self, d):
        from vecexplore.analysis.quality import sweep_for

        s, evaluation = d.state, d.evaluation
        sel = d.selection if s.curve_scope == "selection" else None
        k = None if s.curve_class < 0 else int(s.curve_class)
        key = (evaluation.sweep, sel, k)
        columns = None
        if self._curve is not None and _same(key, self._curve[0]):
            curve = self._curve[1]
        else:
            if sel is None:
                curve = evaluation.sweep.overall if k is None else evaluation.sweep.per_class[k]
            else:
                curve = sweep_for(evaluation, sel, class_idx=k)
            columns = curve_columns(curve)
            self._curve = (key, curve)
        what = "Whole run" if sel is None else f"Selection ({len(sel):,} images)"
        if s.curve_scope == "selection" and sel is None:
            what += " (nothing selected)"
        what += " · all classes" if k is None else f" · class {self.data.class_names[k]}"
        return {"columns": columns, "optimal": curve.optimal(), "confidence": s.confidence,
                "caption": curve_caption(what=what, curve=curve, confidence=s.confidence, task=self.task),
                "scope": 0 if s.curve_scope == "selection" else 1, "class": str(s.curve_class)}

    def apply(self, p) -> None:
        if p["columns"] is not None:
            self.source.data.update({k: p["columns"][k] for k in ("precision", "recall", "f1", "coverage")})
        c, f1 = p["optimal"]
        self._optimum = c
        self.optimal.data = ({"confidence": [], "f1": [], "text": []} if np.isnan(c) else
                             {"confidence": [c], "f1": [f1], "text": [f"F1-optimal {c:.3f}"]})
        self.caption.text = p["caption"]
        if self.operating.location != p["confidence"]:
            self.operating.location = float(p["confidence"])
        if self.scope.active != p["scope"]:
            self.scope.active = p["scope"]
        if self.klass.value != p["class"]:
            self.klass.value = p["class"]

    def wire(self, session) -> None:
        def scope(_attr, _old, new):
            if session.applying:
                return
            if client.choice(new, (0, 1)) is None:
                ui.refused("curve-scope", new)
                return
            session.emit(ev.SetView.of(curve_scope="selection" if new == 0 else "run"))

        def klass(_attr, _old, new):
            if session.applying:
                return
            if client.choice(new, {o[0] for o in self.klass.options}) is None:
                ui.refused("curve-class", new)
                return
            session.emit(ev.SetView.of(curve_class=int(new)))

        self.scope.on_change("active", scope)
        self.klass.on_change("value", klass)

        def tap(x: float, _y: float, _shift: bool) -> None:
            if 0.0 <= x <= 1.0:
                session.emit(ev.SetOperatingPoint(confidence=snap_confidence(x, optimal=self._optimum)))

        ui.on_tap(self.figure, session, tap)
