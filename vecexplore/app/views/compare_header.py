"""A comparison run's header: both models' headline metrics and the deltas, for the run and the selection.

Only on runs written by ``vecexplore compare``; a row under the header bar with one Div (``compare-header``) whose
table has a row per metric: A, B and B − A (:func:`vecexplore.app.comparison.header_rows`).
Each model is at its own build operating point.
"""

from __future__ import annotations

import html

from vecexplore.app import comparison as cmp
from vecexplore.app.view import View


def compare_header_html(rows: list[tuple[str, str, str, str]], doc: dict) -> str:
    """The Div's HTML (every string from the data escaped)."""
    e = html.escape
    a, b = (doc.get("a") or {}).get("run", "A"), (doc.get("b") or {}).get("run", "B")
    head = "".join(f"<th>{e(name)}</th>" for name, *_ in rows)
    line = {k: "".join(f"<td>{e(r[i])}</td>" for r in rows) for k, i in (("A", 1), ("B", 2), ("B − A", 3))}
    body = "".join(f"<tr><td class='vx-rowname'>{k}</td>{v}</tr>" for k, v in line.items())
    return (f"<div class='vx-header-box'><div class='vx-id'><div class='vx-sub'><b>Comparison</b> "
            f"A = {e(str(a))}</div><div class='vx-sub'>B = {e(str(b))} · map and clusters: A's</div></div>"
            f"<table class='vx-metrics vx-compare-metrics'><tr><th></th>{head}</tr>{body}</table></div>")


class CompareHeaderView(View):
    name = "compare-header"
    # A full-width row of its own under the header bar: the header bar has no room for a second table.
    slot = "toolbar"
    depends = frozenset({"selection"})

    @classmethod
    def available(cls, data) -> bool:
        return data.comparison is not None

    def __init__(self, ctx):
        super().__init__(ctx)
        from bokeh.models import Div, Row

        self.div = Div(text="", name="compare-header", css_classes=["vx-header", "vx-compare-header"],
                       sizing_mode="stretch_width")
        self.row = Row(self.div, name="compare-header-bar", css_classes=["vx-header-bar"], sizing_mode="stretch_width")

    def layout(self):
        return self.row

    def compute(self, d) -> str:
        comp = self.data.comparison
        return compare_header_html(cmp.header_rows(comp, d.selection), comp.doc)

    def apply(self, text: str) -> None:
        if self.div.text != text:
            self.div.text = text
