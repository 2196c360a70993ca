"""Performance by class: one horizontal stacked bar per class at the operating point.

Detection segments (objects): TP, misclassified (a GT taken for another class),
missed (a GT found by nothing), then the class's false positives by type
(duplicate, wrong class, localization, class + localization, background).
Classification segments (images): correct, misclassified, no prediction (below
the threshold), and other classes' images predicted as this class.

:func:`shown_classes` and :func:`bar_segments` (pure) turn a
:class:`~vecexplore.analysis.quality.ClassPerformance` into one source row per
non-empty segment. The bars show the selection (or the whole run); a click on a
segment selects exactly ``images_for(class_idx, kind)`` over the whole run, at
the current filters, replacing the selection as a matrix-cell click does
(shift-click adds); the gallery then draws that segment's objects.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

from vecexplore.app import client, ui
from vecexplore.app import events as ev
from vecexplore.app import state as st
from vecexplore.app.view import View
from vecexplore.eval.outcomes import ERROR_TYPE_LABELS, ERROR_TYPE_NAMES, FP_COLUMNS
from vecexplore.eval.outcomes import GtOutcome as G
from vecexplore.eval.outcomes import PredOutcome as P

#: (kind, legend label, colour) per segment, left to right.
DETECTION_SEGMENTS: tuple[tuple[str, str, str], ...] = (
    ("tp", "TP", ui.TP_COLOUR),
    ("misclassified", "misclassified (GT taken for another class)", "#d62728"),
    ("missed", "missed", ui.ERROR_TYPE_COLOURS["missed"]),
    *((col, label, "#ff9896" if name == "class" else ui.ERROR_TYPE_COLOURS[name])
      for col, name, label in zip(FP_COLUMNS, ERROR_TYPE_NAMES, ERROR_TYPE_LABELS, strict=False)),
)
CLASSIFICATION_SEGMENTS: tuple[tuple[str, str, str], ...] = (
    ("correct", "correct", ui.CORRECT_COLOURS[0]),
    ("misclassified", "misclassified", ui.CORRECT_COLOURS[1]),
    ("no_prediction", "no prediction", ui.CORRECT_COLOURS[2]),
    ("fp", "other classes predicted as this", "#ff9896"),
)
#: Classes shown when none is chosen: the ones with the most errors.
DEFAULT_LIMIT = 30


def segments_of(task: str) -> tuple[tuple[str, str, str], ...]:
    return DETECTION_SEGMENTS if task == "detection" else CLASSIFICATION_SEGMENTS


def error_counts(table, task: str) -> np.ndarray:
    """(K,) int64 errors per class: misclassified + missed + FP (classification: + no prediction)."""
    cols = ("misclassified", "missed", "fp") if task == "detection" else ("misclassified", "no_prediction", "fp")
    return sum(table[c].to_numpy(np.int64) for c in cols)


def shown_classes(table, task: str, chosen: Sequence[int] = (), *, limit: int = DEFAULT_LIMIT) -> np.ndarray:
    """class_idx to draw, top to bottom: most errors first (ties: class_idx).

    ``chosen`` (non-empty) is drawn whole; otherwise the ``limit`` classes with the
    most errors among those with any object (or image) at the operating point.
    """
    errors = error_counts(table, task)
    total = errors + table["tp" if task == "detection" else "correct"].to_numpy(np.int64)
    order = np.lexsort((np.arange(len(errors)), -errors))
    if chosen:
        wanted = np.zeros(len(errors), bool)
        wanted[np.asarray(list(chosen), np.int64)] = True
        return order[wanted[order]].astype(np.int64)
    return order[total[order] > 0][:limit].astype(np.int64)


def factor_names(class_names: Sequence[str]) -> list[str]:
    """Unique axis factors: class names, with `` (#k)`` appended to repeated names."""
    seen: dict[str, int] = {}
    for n in class_names:
        seen[str(n)] = seen.get(str(n), 0) + 1
    return [f"{n} (#{k})" if seen[str(n)] > 1 else str(n) for k, n in enumerate(class_names)]


def _top_confusions(row: np.ndarray, names: Sequence[str], limit: int = 3) -> str:
    order = np.lexsort((np.arange(len(row)), -row))
    return ", ".join(f"{names[j]} {int(row[j])}" for j in order[:limit] if row[j] > 0)


def bar_segments(cp, classes: np.ndarray, *, task: str, class_names: Sequence[str]) -> dict[str, np.ndarray]:
    """One row per non-empty (class, segment), classes in ``classes`` order, segments left to right.

    Columns: ``class_idx`` int64, ``kind`` (a column of ``cp.table``), ``factor``
    (the class's axis label), ``label`` (segment name), ``colour``, ``left`` /
    ``right`` float64 (cumulative counts), ``count`` int64, ``share`` float64
    (of the class's GT objects for GT segments, of its predictions for FP
    segments; classification: of its labelled images, of its predictions for
    ``fp``), ``detail`` (hover text: confusions, precision / recall).
    """
    t = cp.table
    factors = factor_names(class_names)
    det = task == "detection"
    out: dict[str, list] = {k: [] for k in ("class_idx", "kind", "factor", "label", "colour", "left", "right",
                                            "count", "share", "detail")}
    for k in np.asarray(classes, np.int64):
        row = t.iloc[int(k)]
        n_gt = int(row["n_gt"] if det else row["n"])
        n_pred = int(row["tp"] + row["fp"]) if det else int(row["correct"] + row["fp"])
        confused = _top_confusions(cp.confused_as[k], class_names)
        taken = _top_confusions(cp.confused_as[:, k], class_names)
        left = 0
        for kind, label, colour in segments_of(task):
            count = int(row[kind])
            if count == 0:
                continue
            gt_side = kind in ("tp", "misclassified", "missed", "correct", "no_prediction")
            denom = n_gt if gt_side else n_pred
            if kind == "misclassified":
                detail = f"taken for: {confused}"
            elif kind in ("fp_class", "fp"):
                detail = f"GT of: {taken}"
            elif det:
                detail = f"precision {_f(row['precision'])} · recall {_f(row['recall'])}"
            else:
                detail = f"accuracy {_f(row['accuracy'])} · precision {_f(row['precision'])}"
            for key, value in (("class_idx", int(k)), ("kind", kind), ("factor", factors[k]), ("label", label),
                               ("colour", colour), ("left", left), ("right", left + count), ("count", count),
                               ("share", count / denom if denom else np.nan), ("detail", detail)):
                out[key].append(value)
            left += count
    types = {"class_idx": np.int64, "left": np.float64, "right": np.float64, "count": np.int64, "share": np.float64}
    return {k: np.asarray(v, dtype=types.get(k, object)) for k, v in out.items()}


def bar_totals(cp, classes: np.ndarray, *, task: str, class_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Per shown class: ``factor``, ``x`` (bar end) and ``text`` ("P 0.81 · R 0.62" / "acc 0.85")."""
    t = cp.table
    factors = factor_names(class_names)
    rows = t.iloc[np.asarray(classes, np.int64)]
    if task == "detection":
        end = (rows["n_gt"] + rows["fp"]).to_numpy(np.float64)
        text = [f"P {_f(p)} · R {_f(r)}" for p, r in zip(rows["precision"], rows["recall"], strict=True)]
    else:
        end = (rows["n"] + rows["fp"]).to_numpy(np.float64)
        text = [f"acc {_f(a)}" for a in rows["accuracy"]]
    return {"factor": np.asarray([factors[k] for k in classes], object), "x": end, "text": np.asarray(text, object)}


def legend_html(task: str) -> str:
    chips = "".join(f"<span class='vx-key'><i style='background:{c}'></i>{html.escape(label)}</span>"
                    for _, label, c in segments_of(task))
    return f"<div class='vx-legend'>{chips}</div>"


def _f(v) -> str:
    v = float(v)
    return "–" if np.isnan(v) else f"{v:.2f}"


def segment_focus(class_idx: int, kind: str) -> st.Focus:
    """The objects a segment counts (what the gallery draws for its images)."""
    gt = {"tp": G.TP, "misclassified": G.CONFUSED, "missed": G.FN}
    pred = {"tp": P.TP, "fp_duplicate": P.FP_DUPLICATE, "fp_class": P.FP_CLASS, "fp_localization": P.FP_LOCALIZATION,
            "fp_both": P.FP_BOTH, "fp_background": P.FP_BACKGROUND}
    if kind in ("misclassified", "missed"):
        return st.Focus(gt=frozenset({int(gt[kind])}), gt_class=class_idx)
    if kind == "tp":
        return st.Focus(gt=frozenset({int(G.TP)}), pred=frozenset({int(P.TP)}), gt_class=class_idx,
                        pred_class=class_idx)
    if kind in pred:
        return st.Focus(pred=frozenset({int(pred[kind])}), pred_class=class_idx)
    return st.ALL_ERRORS


def _same(a: tuple, b: tuple | None) -> bool:
    return b is not None and len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


class ClassBarsView(View):
    name = "class-bars"
    slot = "tab"
    title = "Class errors"
    depends = frozenset({"op", "selection", "bars"})

    def __init__(self, ctx):
        super().__init__(ctx)
        from bokeh.models import (
            Column,
            ColumnDataSource,
            Div,
            FactorRange,
            HoverTool,
            MultiChoice,
            Range1d,
        )
        from bokeh.plotting import figure

        task = self.task
        self.source = ColumnDataSource(data={k: [] for k in ("class_idx", "kind", "factor", "label", "colour",
                                                             "left", "right", "count", "share", "detail")},
                                       name="class-bars-source")
        self.totals = ColumnDataSource(data={"factor": [], "x": [], "text": []}, name="class-bars-totals")
        self.figure = figure(sizing_mode="stretch_both", name="class-bars", css_classes=["vx-class-bars"],
                             tools="", toolbar_location=None, y_range=FactorRange(factors=[]),
                             x_range=Range1d(0, 1), min_border_left=10, min_border_right=10,
                             x_axis_label="objects" if task == "detection" else "images")
        self.renderer = self.figure.hbar(y="factor", left="left", right="right", height=0.72, source=self.source,
                                         fill_color="colour", line_color="#ffffff", line_width=0.5,
                                         selection_line_color="#111111", selection_line_width=2,
                                         nonselection_fill_alpha=1.0, name="class-bars-segments")
        self.figure.text("x", "factor", text="text", source=self.totals, x_offset=5, text_baseline="middle",
                         text_font_size="10.5px", text_color="#52606d")
        self.figure.add_tools(HoverTool(renderers=[self.renderer], tooltips=[
            ("class", "@factor"), ("outcome", "@label"), ("count", "@count"), ("share", "@share{0.0%}"),
            ("", "@detail")]))
        self.figure.ygrid.visible = False
        self.figure.xgrid.grid_line_color = "#eef1f5"
        self.figure.outline_line_color = None
        self.figure.yaxis.major_label_text_font_size = "11px"
        self.classes = MultiChoice(value=[], name="class-bars-classes", width=330, placeholder="classes with most errors",
                                   options=ui.choice_options(enumerate(self.data.class_names)))
        self.legend = Div(text=legend_html(task), name="class-bars-legend", sizing_mode="stretch_width")
        self.caption = ui.text_div(text="", name="class-bars-caption", css_classes=["vx-caption"],
                                   sizing_mode="stretch_width")
        self.root = Column(self.classes, self.caption, self.legend, self.figure, sizing_mode="stretch_both",
                           css_classes=["vx-tab-body"])
        self._rows: list[tuple[int, str, float, float, int]] = []  # (class_idx, kind, left, right, y index)
        self._cp: tuple | None = None

    def layout(self):
        return self.root

    def _class_perf(self, evaluation, sel):
        from vecexplore.analysis.quality import class_performance

        key = (evaluation, sel)
        if self._cp is None or not _same(key, self._cp[0]):
            self._cp = (key, class_performance(evaluation, sel))
        return self._cp[1]

    def compute(self, d):
        s, names = d.state, self.data.class_names
        cp = self._class_perf(d.evaluation, d.selection)
        classes = shown_classes(cp.table, self.task, s.bar_classes)
        segments = bar_segments(cp, classes, task=self.task, class_names=names)
        totals = bar_totals(cp, classes, task=self.task, class_names=names)
        if s.bar_classes:
            which = f"{len(classes)} chosen classes"
        else:
            with_any = len(shown_classes(cp.table, self.task, limit=len(names)))
            which = (f"the {len(classes)} classes with the most errors (of {with_any}); choose classes above to "
                     "see others" if with_any > DEFAULT_LIMIT else f"{len(classes)} classes")
        what = "Whole run" if d.selection is None else f"Selection ({len(d.selection):,} images)"
        iou = f", IoU {s.iou:.2f}" if self.task == "detection" else ""
        caption = (f"{what} at confidence ≥ {s.confidence:.3f}{iou}: {which}, most errors first; "
                   f"{'P / R = precision / recall' if self.task == 'detection' else 'acc = accuracy'}. "
                   "A click on a segment selects its images over the whole run (shift-click adds).")
        marked = s.marked(self.name)
        rows = [i for i, (c, k) in enumerate(zip(segments["class_idx"].tolist(), segments["kind"].tolist(),
                                                 strict=True)) if (c, k) in marked]
        return {"segments": segments, "totals": totals, "caption": caption, "marked": rows,
                "chosen": [str(c) for c in s.bar_classes]}

    def apply(self, p) -> None:
        segments, totals = p["segments"], p["totals"]
        factors = list(totals["factor"])[::-1]  # the first class on top
        self.figure.y_range.factors = factors
        y_of = {f: i for i, f in enumerate(factors)}
        self._rows = [(int(c), str(k), float(lo), float(hi), y_of[f]) for c, k, lo, hi, f in zip(
            segments["class_idx"], segments["kind"], segments["left"], segments["right"], segments["factor"],
            strict=True)]
        end = float(totals["x"].max()) if len(totals["x"]) else 1.0
        self.figure.x_range.end = max(end, 1.0) * 1.2  # room for the P / R text
        self.source.data = segments
        self.totals.data = totals
        if list(self.source.selected.indices) != p["marked"]:
            self.source.selected.indices = p["marked"]
        self.caption.text = p["caption"]
        if list(self.classes.value) != p["chosen"]:
            self.classes.value = p["chosen"]

    def segment_at(self, x: float, y: float) -> tuple[int, str] | None:
        """(class_idx, kind) of the segment drawn at data position (x, y), or None."""
        row = int(np.floor(y))
        if abs(y - (row + 0.5)) > 0.36:  # the bar's height is 0.72 of its factor's band
            return None
        for c, k, lo, hi, yi in self._rows:
            if yi == row and lo <= x <= hi:
                return c, k
        return None

    def wire(self, session) -> None:
        n_classes = len(self.data.class_names)

        def chosen(_attr, _old, new):
            if session.applying:
                return
            classes = client.class_values(new, n_classes)
            if classes is None:
                ui.refused("class-bars-classes", new)
                return
            session.emit(ev.SetView.of(bar_classes=classes))

        self.classes.on_change("value", chosen)

        def tap(x: float, y: float, shift: bool) -> None:
            hit = self.segment_at(x, y)
            if hit is None:
                return
            class_idx, kind = hit
            label = dict((k, lab) for k, lab, _ in segments_of(self.task)).get(kind, kind)
            how = f"class {self.data.class_names[class_idx]}: {label.split(' (')[0]}"
            session.emit(lambda d: ev.Select(
                self._class_perf(d.evaluation, None).images_for(class_idx, kind), how,
                focus=segment_focus(class_idx, kind), mode="add" if shift else None,
                marks=((self.name, (class_idx, kind)),)))

        ui.on_tap(self.figure, session, tap)
