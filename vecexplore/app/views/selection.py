"""The selection bar above the map: how a click combines with the selection, back / forward, clear.

Modes (:data:`vecexplore.app.state.SELECT_MODES`): a click, lasso, cell, bar, bin,
row or recommendation *replaces* the selection by default; *add*, *intersect*
and *subtract* combine instead, and a shift-click always adds. Back and forward
walk the selection history.
"""

from __future__ import annotations

import numpy as np

from vecexplore.app import client, ui
from vecexplore.app import events as ev
from vecexplore.app import state as st
from vecexplore.app.view import View

MODE_LABELS = ("Replace", "Add", "Intersect", "Subtract")


class SelectionView(View):
    name = "selection-bar"
    slot = "map"
    depends = frozenset({"history", "selection"})

    def __init__(self, ctx):
        super().__init__(ctx)
        from bokeh.models import Button, RadioButtonGroup, Row

        self.mode = RadioButtonGroup(labels=list(MODE_LABELS), active=0, name="select-mode",
                                     css_classes=["vx-select-mode"],
                                     html_attributes={"title": "How a new pick combines with the selection (shift-click adds)"})
        self.back = Button(label="‹", name="selection-back", width=32, disabled=True,
                           html_attributes={"title": "Previous selection"})
        self.forward = Button(label="›", name="selection-forward", width=32, disabled=True,
                              html_attributes={"title": "Next selection"})
        self.clear = Button(label="Clear", name="clear-selection", width=60, disabled=True,
                            html_attributes={"title": "Select nothing: the views show the whole run"})
        n_bad = int((~self.data.images.readable).sum())
        self.unreadable = Button(label=f"Unreadable ({n_bad:,})", name="select-unreadable", width=120,
                                 visible=n_bad > 0, button_type="warning", html_attributes={"title": "Select the unreadable images"})
        self.row = Row(self.mode, self.back, self.forward, self.clear, self.unreadable, name="selection-bar",
                       css_classes=["vx-selection-bar"])

    def layout(self):
        return self.row

    def layouts(self) -> dict:
        return {"map.bar": self.row}

    def compute(self, d):
        s = d.state
        return {"mode": st.SELECT_MODES.index(s.select_mode), "back": s.history_pos > 0,
                "forward": s.history_pos < len(s.history) - 1, "clear": s.pick is not None}

    def apply(self, p) -> None:
        if self.mode.active != p["mode"]:
            self.mode.active = p["mode"]
        self.back.disabled = not p["back"]
        self.forward.disabled = not p["forward"]
        self.clear.disabled = not p["clear"]

    def wire(self, session) -> None:
        def mode(_attr, _old, new):
            if session.applying:
                return
            if client.choice(new, range(len(st.SELECT_MODES))) is None:
                ui.refused("select-mode", new)
                return
            session.emit(ev.SetSelectMode(st.SELECT_MODES[new]))

        self.mode.on_change("active", mode)
        self.back.on_click(lambda: session.emit(ev.Back()))
        self.forward.on_click(lambda: session.emit(ev.Forward()))
        self.clear.on_click(lambda: session.emit(ev.Clear()))
        bad = np.flatnonzero(~self.data.images.readable)
        self.unreadable.on_click(lambda: session.emit(ev.Select(bad, "unreadable", focus=st.Focus())))
