"""Small Bokeh helpers shared by the panels: assets (JS, CSS), cards, colours.

Bokeh is imported inside functions only, so importing this module stays cheap.
"""

from __future__ import annotations

import functools
from pathlib import Path

from vecexplore.eval.outcomes import ERROR_TYPE_NAMES

_HERE = Path(__file__).parent

#: Outcome colours, shared by the scatter, the gallery badges and the detail view.
TP_COLOUR = "#2f6db5"
GT_COLOUR = "#1a9850"
IGNORED_COLOUR = "#9e9e9e"
ERROR_TYPE_COLOURS = {"none": "#8fb8de", **dict(zip(
    ERROR_TYPE_NAMES, ("#f58518", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#e6ab02"), strict=True,
))}  # duplicate, class, localization, both, background, missed
MISSED_COLOUR = ERROR_TYPE_COLOURS["missed"]
CORRECT_COLOURS = ("#2ca02c", "#d62728", "#e6ab02", "#b0b0b0")  # correct, incorrect, no prediction, unlabelled
READABLE_COLOURS = ("#4c78a8", "#d62728")
NAN_COLOUR = "#cfcfcf"


@functools.cache
def js(name: str) -> str:
    """The source of ``js/<name>.js`` (CustomJS bodies live in files, not in Python strings)."""
    return (_HERE / "js" / f"{name}.js").read_text()


@functools.cache
def css(name: str = "app") -> str:
    return (_HERE / "static" / f"{name}.css").read_text()


def stylesheet():
    """One InlineStyleSheet with the app's CSS, for models whose shadow DOM holds our HTML."""
    from bokeh.models import InlineStyleSheet

    return InlineStyleSheet(css=css())


def choice_options(pairs) -> list[tuple[str, str]]:
    """``(value, label)`` options for a MultiChoice, labels escaped.

    BokehJS's MultiChoice (Choices.js) inserts option labels as HTML, so a class
    or split named ``<img onerror=…>`` would run script; escaped, it reads as
    written. Values stay raw: they travel back to the server, not into the DOM.
    """
    import html

    return [(str(value), html.escape(str(label), quote=True)) for value, label in pairs]


def text_div(**kwargs):
    """A Div whose text is shown as plain text, never parsed as HTML (captions
    that quote class names, selections or paths)."""
    from bokeh.models import Div

    return Div(render_as_text=True, **kwargs)


def title_div(title: str, *, name: str):
    """A panel's title, as plain text."""
    return text_div(text=title, name=name, css_classes=["vx-title"])


def card(title: str, *children, name: str, width: int | None = None, sheet=None, **kwargs):
    """A titled white panel (a Column with the ``vx-card`` class) around ``children``."""
    from bokeh.models import Column, Div

    heading = Div(text=f"<div class='vx-title'>{title}</div>", stylesheets=[sheet] if sheet else [],
                  name=f"{name}-title", css_classes=["vx-title-div"])
    return Column(heading, *children, name=f"{name}-card", css_classes=["vx-card", f"vx-{name}"],
                  width=width, stylesheets=[sheet] if sheet else [], **kwargs)


def categorical_palette(n: int) -> list[str]:
    """``n`` distinct colours (Category10 / Category20, cycled beyond 20)."""
    from bokeh.palettes import Category10, Category20

    if n <= 0:
        return ["#cccccc"]
    if n <= 10:
        return list(Category10[10][:max(n, 3)])[:n]
    base = list(Category20[20])
    return [base[i % 20] for i in range(n)]


def mix(colour: str, amount: float, *, base: str = "#ffffff") -> str:
    """Hex colour ``amount`` (0..1) of the way from ``base`` to ``colour``."""
    a = [int(base[i:i + 2], 16) for i in (1, 3, 5)]
    b = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    t = min(max(float(amount), 0.0), 1.0)
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b, strict=True))


def divider(sheet=None):
    """A thin horizontal rule between groups of widgets."""
    from bokeh.models import Div

    return Div(text="<hr class='vx-hr'>", stylesheets=[sheet] if sheet else [], sizing_mode="stretch_width")


def refused(widget: str, value) -> None:
    """Log a value from the browser that the page could not legitimately have sent (it is ignored)."""
    import logging

    logging.getLogger("vecexplore.app").warning("ignored an invalid %s value from the browser: %.200r", widget, value)


def clicked_row(old, new, n: int, widget: str) -> int | None:
    """The row a click on a table of ``n`` rows added to its selection (the last new one), or None:
    nothing was added, or the browser sent rows the page could not have (logged, ignored)."""
    from vecexplore.app.client import rows

    if rows(new, n) is None:
        refused(widget, new)
        return None
    added = [int(r) for r in new if r not in set(old)]
    return added[-1] if added else None


def on_tap(figure, session, handler) -> None:
    """Call ``handler(x, y, shift)`` (data coordinates; on a categorical axis the factor at index k
    spans [k, k + 1)) for each click on ``figure``. Clicks are hit-tested on the server from the
    tap position, so a shift-click is known exactly (BokehJS sends the key modifiers with the tap).
    Non-finite positions (a crafted message) are refused."""
    import math

    from bokeh.events import Tap

    def callback(event) -> None:
        if session.applying:
            return
        x, y = event.x, event.y
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (x, y)):
            refused(f"{figure.name} tap", (x, y))
            return
        handler(float(x), float(y), bool((event.modifiers or {}).get("shift")))

    figure.on_event(Tap, callback)


def frame_size(figure) -> tuple[int | None, int | None]:
    """The plotting frame's size in screen pixels as BokehJS last reported it ((None, None) before
    the page rendered it, e.g. on a bare Document)."""
    from bokeh.core.property.descriptors import UnsetValueError

    try:
        return figure.inner_width, figure.inner_height
    except UnsetValueError:
        return None, None
