"""Performance by property, and which properties predict errors best.

For the chosen property (image or, for detection, object), bars per quantile
bin: precision and FN rate (detection) or accuracy (classification), with the
whole run's rate as dashed reference lines; the hover gives each bin's range and
count. A tap on a bin selects its images (an object property's bin: the images
of its objects). Below, the importance ranking (mutual information, Spearman
direction), strongest first; a tap on a row shows that property.

:func:`bin_columns`, :func:`importance_columns` and :func:`property_options`
are pure; :class:`PropertyPanel` only copies their results into sources.
"""

from __future__ import annotations

import html

import numpy as np

from vecexplore.properties import DESCRIPTIONS, OBJECT_PROPERTIES

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
    (NaN where undefined).
    """
    m = len(bt.count)
    out = {"x": np.arange(m, dtype=np.float64), "label": np.asarray(bt.labels(), object),
           "count": np.asarray(bt.count, np.int64),
           "images": np.asarray([len(i) for i in bt.image_idx], np.int64)}
    for name in rate_names(task):
        out[name] = np.asarray(bt.rate[name], np.float64)
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
    return (f"<b>{html.escape(prop)}</b> — {html.escape(desc)}. {html.escape(what)}: {bars} per quantile bin of "
            f"its {unit}. Click a bin to select its images.")


class PropertyPanel:
    """Property select, bins chart, importance table."""

    def __init__(self, *, task: str, options: list[tuple[str, str]], prop: str, width: int = 630):
        from bokeh.models import (
            ColumnDataSource,
            DataTable,
            Div,
            FixedTicker,
            HoverTool,
            Legend,
            LegendItem,
            NumberFormatter,
            Range1d,
            Select,
            Span,
            TableColumn,
            TapTool,
        )  # fmt: skip
        from bokeh.plotting import figure

        self.task = task
        rates = rate_names(task)
        self.select = Select(title="", value=prop, options=options or [("", "no properties stored")],
                             name="property-select", width=260, disabled=not options)
        self.caption = Div(text="", name="property-caption", css_classes=["vx-caption"], width=width)
        self.source = ColumnDataSource(data={k: [] for k in ("x", "label", "count", "images", *rates)},
                                       name="property-source")
        self.figure = figure(width=width, height=270, name="property-bins", css_classes=["vx-property-bins"],
                             tools="", toolbar_location=None, x_range=Range1d(-0.6, 0.6), y_range=Range1d(0, 1.05),
                             min_border_left=10, min_border_bottom=10)
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
        tips = [("bin", "@label"), ("count", "@count"), ("images", "@images")]
        tips += [(_RATES[n][0], f"@{n}{{0.000}}") for n in rates]
        self.figure.add_tools(TapTool(renderers=self.renderers), HoverTool(renderers=self.renderers, tooltips=tips))
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
            width=width, height=172, index_position=None, selectable=True, sortable=False, reorderable=False,
            row_height=24, columns=[
                TableColumn(field="rank", title="#", width=24),
                TableColumn(field="prop", title="Property", width=120),
                TableColumn(field="level", title="Level", width=52),
                TableColumn(field="mi", title="MI (nats)", width=70, formatter=num),
                TableColumn(field="spearman", title="Spearman", width=70, formatter=NumberFormatter(format="+0.00")),
                TableColumn(field="direction", title="Direction", width=150),
            ])
        from vecexplore.app.ui import text_div

        self.importance_caption = text_div(text="", name="importance-caption", css_classes=["vx-caption"],
                                           width=width)
        self._props: list[str] = []

    def layout(self, sheet):
        from bokeh.models import Column

        return Column(self.select, self.caption, self.figure, self.importance_caption, self.importance,
                      stylesheets=[sheet])

    def show_bins(self, columns: dict[str, np.ndarray], overall: dict[str, float], caption: str) -> None:
        """Show :func:`bin_columns`, the whole run's rates and the caption; clear any bin highlight."""
        m = len(columns["x"])
        self.figure.xaxis.ticker.ticks = list(range(m))
        self.figure.xaxis.major_label_overrides = {i: str(label) for i, label in enumerate(columns["label"])}
        self.figure.x_range.start, self.figure.x_range.end = -0.6, max(m, 1) - 0.4
        self.source.data = columns
        if len(self.source.selected.indices):
            self.source.selected.indices = []
        for name, span in self.overall.items():
            value = float(overall.get(name, np.nan))
            span.location = value if np.isfinite(value) else None
        self.caption.text = caption

    def show_prop(self, prop: str) -> None:
        if prop and self.select.value != prop:
            self.select.value = prop
        rows = [i for i, p in enumerate(self._props) if p == prop]
        if list(self.importance_source.selected.indices) != rows:
            self.importance_source.selected.indices = rows

    def show_importance(self, columns: dict[str, np.ndarray], caption: str, prop: str) -> None:
        self._props = [str(p) for p in columns["prop"]]
        self.importance_source.data = columns
        self.importance_caption.text = caption
        self.show_prop(prop)

    def prop_at(self, row: int) -> str:
        return self._props[int(row)]


def _shift(offset: float):
    from bokeh.models import Dodge

    return Dodge(value=offset)
