"""The level switch beside the map's title: images or objects (runs with an object map only).

At the object level the scatter shows every mapped object at its crop's UMAP
position coloured by its outcome, lassos and cells pick objects, the gallery
shows their crops and the slice table the object slices
(:mod:`vecexplore.app.objects`).
"""

from __future__ import annotations

from vecexplore.app import client, ui
from vecexplore.app import events as ev
from vecexplore.app import state as st
from vecexplore.app.view import View

LEVEL_LABELS = ("Images", "Objects")  # in the order of state.LEVELS


class LevelView(View):
    name = "level"
    slot = "map.bar"
    depends = frozenset({"level"})
    tasks = frozenset({"detection"})

    @classmethod
    def available(cls, data) -> bool:
        return getattr(data, "object_map", None) is not None

    def __init__(self, ctx):
        super().__init__(ctx)
        from bokeh.models import Select

        omap = self.data.object_map
        # A dropdown, not a button group: the map's bar is full at 1280 px (selection mode, history, clear).
        self.switch = Select(
            value=st.LEVELS[0], options=list(zip(st.LEVELS, LEVEL_LABELS, strict=True)), name="level", width=96,
            css_classes=["vx-level"],
            html_attributes={"title": f"Map images ({self.data.num_images:,}) or objects ({len(omap.points):,}: "
                                      "GT objects and counted predictions, embedded from their crops)"})

    def layout(self):
        return self.switch

    def compute(self, d):
        return d.state.level

    def apply(self, p) -> None:
        if self.switch.value != p:
            self.switch.value = p

    def wire(self, session) -> None:
        def changed(_attr, _old, new):
            if session.applying:
                return
            if client.choice(new, st.LEVELS) is None:
                ui.refused(self.switch.name, new)
                return
            session.emit(ev.SetLevel(new))

        self.switch.on_change("value", changed)
