"""Performance by property, and which properties predict errors best.

For the chosen property (image or, for detection, object), bars per quantile
bin: precision and FN rate (detection) or accuracy (classification), with the
whole run's rate as dashed reference lines; the hover gives each bin's range and
count. A click on a bin selects the images of that bin's value range over the
whole run, at the current filters (an object property's bin: the images of its
objects), replacing the selection (shift-click adds). Below, the importance
ranking (mutual information, Spearman direction), strongest first, computed as
a low-priority job after the bins are shown; a click on a row shows that property.
Empty bins say "n/a"; bin labels are plain decimals.

:func:`bin_columns`, :func:`importance_columns` and :func:`property_options`
are pure; :class:`PropertyPanel` only copies their results into sources.
"""

from __future__ import annotations

import numpy as np

from vecexplore.app import client, ui
from vecexplore.app import events as ev
from vecexplore.app.view import View
from vecexplore.errors import VecexploreError
from vecexplore.properties import DESCRIPTIONS, OBJECT_PROPERTIES
from vecexplore.store.layout import ANALYSIS

_RATES = {"precision": ("precision", "#2f6db5"), "fn_rate": ("FN rate", "#e6ab02"),
          "accuracy": ("accuracy", "#2ca02c")}


def property_options(run, task: str) -> list[tuple[str, str]]:
    """(property, label) the run can show: its image properties, then (detection) its object properties."""
    from vecexplore.analysis.quality import image_properties_of

    out = [(p, f"{p} (image)") for p in image_properties_of(run, task)]
    if task == "detection":
        columns = run.objects.columns
        out += [(p, f"{p} (object)") for p in OBJECT_PROPERTIES if p in columns]
    return out


def rate_names(task: str) -> tuple[str, ...]:
    return ("precision", "fn_rate") if task == "detection" else ("accuracy",)


def bin_columns(bt, task: str) -> dict[str, np.ndarray]:
    """One row per bin of a :class:`~vecexplore.analysis.bins.BinTable`.

    Columns: ``x`` (bin index, float64), ``label`` (the bin's range), ``count``
    int64 (images, or GT objects for an object property), ``images`` int64 (images
    a click selects), and one float64 column per rate of :func:`rate_names`
    (NaN where undefined) with its text (``<rate>_text``: "n/a" where undefined), and ``shown``
    ("n/a" under an empty bin, which draws no bar).
    """
    m = len(bt.count)
    count = np.asarray(bt.count, np.int64)
    out = {"x": np.arange(m, dtype=np.float64), "label": np.asarray(bt.labels(), object), "count": count,
           "images": np.asarray([len(i) for i in bt.image_idx], np.int64),
           "shown": np.where(count == 0, "n/a", "").astype(object)}
    for name in rate_names(task):
        rate = np.asarray(bt.rate[name], np.float64)
        out[name] = rate
        out[f"{name}_text"] = np.array(["n/a" if not np.isfinite(v) else f"{v:.3f}" for v in rate], object)
    return out


def importance_columns(importance) -> dict[str, np.ndarray]:
    """One row per :class:`~vecexplore.analysis.importance.Importance`, in the given (ranked) order."""
    arrow = {"higher": "higher → more errors", "lower": "lower → more errors", "none": "no clear direction"}
    return {
        "rank": np.arange(1, len(importance) + 1, dtype=np.int64),
        "prop": np.asarray([i.prop for i in importance], object),
        "level": np.asarray([i.level for i in importance], object),
        "mi": np.asarray([i.mutual_information for i in importance], np.float64),
        "spearman": np.asarray([i.spearman for i in importance], np.float64),
        "direction": np.asarray([arrow.get(i.direction, i.direction) for i in importance], object),
        "sentence": np.asarray([i.sentence() for i in importance], object),
    }


def property_caption(prop: str, *, level: str, what: str, task: str) -> str:
    desc = DESCRIPTIONS.get(prop, "")
    unit = "GT objects" if level == "object" else "images"
    bars = "precision and FN rate" if task == "detection" else "accuracy"
    return (f"{prop} — {desc}. {what}: {bars} per quantile bin of its {unit}. A click selects the bin's images "
            "over the whole run (shift adds).")


def _same(a: tuple, b: tuple | None) -> bool:
    return b is not None and len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def default_prop(run, props: list[str]) -> str:
    """The build's strongest property (analysis.json), else the first one stored."""
    try:
        ranked = [r["prop"] for r in run.json(ANALYSIS).get("importance", [])]
    except VecexploreError:
        ranked = []
    return next((p for p in ranked if p in props), props[0] if props else "")


class PropertyView(View):
    name = "property-bins"
    slot = "tab"
    title = "Properties"
    depends = frozenset({"op", "selection", "prop"})
    has_background = True

    def __init__(self, ctx):
        super().__init__(ctx)
        from bokeh.models import (
            Column,
            ColumnDataSource,
            DataTable,
            FixedTicker,
            HoverTool,
            Legend,
            LegendItem,
            NumberFormatter,
            Range1d,
            Select,
            Span,
            TableColumn,
        )  # fmt: skip
        from bokeh.plotting import figure

        run, task = self.data.run, self.task
        _ = run.images if task != "detection" else (run.images, run.objects)  # load before threads read them
        options = property_options(run, task)
        self.options = [p for p, _ in options]
        self.levels = {p: ("object" if label.endswith("(object)") else "image") for p, label in options}
        self.default = default_prop(run, self.options)
        rates = rate_names(task)
        self.select = Select(title="", value=self.default, options=options or [("", "no properties stored")],
                             name="property-select", width=260, disabled=not options)
        self.caption = ui.text_div(text="", name="property-caption", css_classes=["vx-caption"],
                                   sizing_mode="stretch_width")
        self.source = ColumnDataSource(data={k: [] for k in ("x", "label", "count", "images", "shown", *rates,
                                                             *(f"{r}_text" for r in rates))},
                                       name="property-source")
        self.figure = figure(sizing_mode="stretch_both", min_height=160, name="property-bins",
                             css_classes=["vx-property-bins"], tools="", toolbar_location=None,
                             x_range=Range1d(-0.6, 0.6), y_range=Range1d(0, 1.05), min_border_left=10,
                             min_border_bottom=10)
        width_each = 0.8 / len(rates)
        self.renderers, self.overall = [], {}
        for k, name in enumerate(rates):
            colour = _RATES[name][1]
            offset = (k - (len(rates) - 1) / 2) * width_each
            r = self.figure.vbar(x={"field": "x", "transform": _shift(offset)}, top=name, width=width_each * 0.92,
                                 source=self.source, fill_color=colour, line_color=None,
                                 selection_line_color="#111111", selection_line_width=2,
                                 nonselection_fill_alpha=1.0, name=f"property-{name.replace('_', '-')}")
            self.renderers.append(r)
            span = Span(location=None, dimension="width", line_color=colour, line_dash="dashed", line_width=1.5,
                        name=f"property-overall-{name.replace('_', '-')}")
            self.figure.add_layout(span)
            self.overall[name] = span
        self.figure.text(x="x", y=0.02, text="shown", source=self.source, text_align="center", text_font_size="10px",
                         text_color="#9aa5b1")
        tips = [("bin", "@label"), ("count", "@count"), ("images", "@images")]
        tips += [(_RATES[n][0], f"@{n}_text") for n in rates]
        self.figure.add_tools(HoverTool(renderers=self.renderers, tooltips=tips))
        self.figure.xaxis.ticker = FixedTicker(ticks=[])
        self.figure.xaxis.major_label_orientation = 0.5
        self.figure.xaxis.major_label_text_font_size = "10px"
        self.figure.xgrid.visible = False
        self.figure.ygrid.grid_line_color = "#eef1f5"
        self.figure.outline_line_color = None
        items = [LegendItem(label=f"{_RATES[n][0]} (dashed: whole run)", renderers=[r])
                 for n, r in zip(rates, self.renderers, strict=True)]
        self.figure.add_layout(Legend(items=items, orientation="horizontal", location="top_left",
                                      label_text_font_size="11px", spacing=10, padding=2, border_line_alpha=0,
                                      background_fill_alpha=0.0), "above")
        self.importance_source = ColumnDataSource(
            data={k: [] for k in ("rank", "prop", "level", "mi", "spearman", "direction", "sentence")},
            name="importance-source")
        num = NumberFormatter(format="0.000")
        self.importance = DataTable(
            source=self.importance_source, name="property-importance", css_classes=["vx-importance"],
            sizing_mode="stretch_width", height=150, index_position=None, selectable=True, sortable=False,
            reorderable=False, row_height=24, columns=[
                TableColumn(field="rank", title="#", width=24),
                TableColumn(field="prop", title="Property", width=120),
                TableColumn(field="level", title="Level", width=52),
                TableColumn(field="mi", title="MI (nats)", width=70, formatter=num),
                TableColumn(field="spearman", title="Spearman", width=70, formatter=NumberFormatter(format="+0.00")),
                TableColumn(field="direction", title="Direction", width=170),
            ])
        self.importance_caption = ui.text_div(text="", name="importance-caption", css_classes=["vx-caption"],
                                              sizing_mode="stretch_width")
        self.root = Column(self.select, self.caption, self.figure, self.importance_caption, self.importance,
                           sizing_mode="stretch_both", css_classes=["vx-tab-body"])
        self._props: list[str] = []
        self._bins: tuple | None = None  # (key, BinTable)
        self._importance: tuple | None = None  # (key, columns)
        self._edges = np.zeros(0)
        self._prop = self.default
        self._labels: list[str] = []

    def layout(self):
        return self.root

    def _prop_of(self, s) -> str:
        return s.prop or self.default

    def _bin_table(self, evaluation, sel, prop):
        from vecexplore.analysis.quality import property_performance

        key = (evaluation, sel, prop)
        if self._bins is None or not (_same(key[:2], self._bins[0][:2]) and key[2] == self._bins[0][2]):
            self._bins = (key, property_performance(self.data.run, evaluation, prop, image_idx=sel))
        return self._bins[1]

    def compute(self, d):
        s = d.state
        prop = self._prop_of(s)
        rates = rate_names(self.task)
        empty = {k: np.zeros(0) for k in ("x", "label", "count", "images", "shown", *rates,
                                          *(f"{r}_text" for r in rates))}
        base = {"prop": prop, "edges": np.zeros(0), "overall": {}, "importance_caption": "Property importance: updating…",
                "marked": [i for pr, i in s.marked(self.name) if pr == prop]}
        if not prop:
            return {**base, "columns": empty, "caption": "This run stores no image or object properties."}
        try:
            bt = self._bin_table(d.evaluation, d.selection, prop)
        except VecexploreError as exc:
            return {**base, "columns": empty, "caption": f"Cannot show {prop}: {exc}"}  # plain text: the Div escapes
        what = "Whole run" if d.selection is None else f"Selection ({len(d.selection):,} images)"
        iou = f", IoU {s.iou:.2f}" if self.task == "detection" else ""
        what += f" at confidence ≥ {s.confidence:.3f}{iou}"
        columns = bin_columns(bt, self.task)
        return {**base, "columns": columns, "edges": bt.edges, "overall": bt.overall,
                "caption": property_caption(prop, level=self.levels.get(prop, "image"), what=what, task=self.task)}

    def apply(self, p) -> None:
        columns = p["columns"]
        m = len(columns["x"])
        self._edges, self._prop, self._labels = p["edges"], p["prop"], [str(x) for x in columns["label"]]
        self.figure.xaxis.ticker.ticks = list(range(m))
        self.figure.xaxis.major_label_overrides = {i: str(label) for i, label in enumerate(columns["label"])}
        self.figure.x_range.start, self.figure.x_range.end = -0.6, max(m, 1) - 0.4
        self.source.data = columns
        marked = [i for i in p["marked"] if i < m]
        if list(self.source.selected.indices) != marked:
            self.source.selected.indices = marked
        for name, span in self.overall.items():
            value = float(p["overall"].get(name, np.nan))
            span.location = value if np.isfinite(value) else None
        self.caption.text = p["caption"]
        self.importance_caption.text = p["importance_caption"]
        self._show_prop(p["prop"])

    def background(self, d):
        """Property importance of the selection at the operating point (~0.4 s at 100k images)."""
        from vecexplore.analysis.quality import property_importance

        if not self.options:
            return None
        key = (d.evaluation, d.selection)
        if self._importance is None or not _same(key, self._importance[0]):
            ranked = property_importance(self.data.run, d.evaluation, image_idx=d.selection)
            self._importance = (key, importance_columns(ranked))
        what = "Whole run" if d.selection is None else f"Selection ({len(d.selection):,} images)"
        target = "the per-image error rate" + (", object properties with whether each GT object is found"
                                               if self.task == "detection" else "")
        caption = (f"Property importance — {what}: mutual information with {target}; Spearman gives the direction "
                   "(ρ = 0: none). Click a row to show that property.")
        return self._importance[1], caption, self._prop_of(d.state)

    def apply_background(self, payload) -> None:
        columns, caption, prop = payload
        self._props = [str(p) for p in columns["prop"]]
        self.importance_source.data = columns
        self.importance_caption.text = caption
        self._show_prop(prop)

    def _show_prop(self, prop: str) -> None:
        if prop and self.select.value != prop:
            self.select.value = prop
        rows = [i for i, p in enumerate(self._props) if p == prop]
        if list(self.importance_source.selected.indices) != rows:
            self.importance_source.selected.indices = rows

    def wire(self, session) -> None:
        def choose(_attr, _old, new):
            if session.applying:
                return
            if client.choice(new, set(self.options)) is None:
                ui.refused("property-select", new)
                return
            session.emit(ev.SetView.of(prop=str(new)))

        self.select.on_change("value", choose)

        def importance_row(_attr, _old, new):
            if session.applying or not len(new):
                return
            row = client.first_row(new, len(self._props))
            if row is None:
                ui.refused("importance row", new)
                return
            session.emit(ev.SetView.of(prop=self._props[row]))

        self.importance_source.selected.on_change("indices", importance_row)

        def tap(x: float, _y: float, shift: bool) -> None:
            i = round(x)
            edges, prop = self._edges, self._prop
            if not (0 <= i < edges.size - 1) or abs(x - i) > 0.45 or not prop:
                return
            label = self._labels[i] if i < len(self._labels) else str(i)
            session.emit(lambda d: ev.Select(self._whole_run_bin(d, prop, edges, i), f"{prop} {label}",
                                             mode="add" if shift else None, marks=((self.name, (prop, i)),)))

        ui.on_tap(self.figure, session, tap)

    def _whole_run_bin(self, d, prop: str, edges: np.ndarray, i: int) -> np.ndarray:
        from vecexplore.analysis.quality import property_performance

        return property_performance(self.data.run, d.evaluation, prop, edges=edges).image_idx[i]


def _shift(offset: float):
    from bokeh.models import Dodge

    return Dodge(value=offset)
