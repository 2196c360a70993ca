"""The View protocol: one panel of the page, in one file under :mod:`vecexplore.app.views`.

A view declares

* ``name``: its stable name (``name=`` of its main model and the CSS class
  ``vx-<name>``, which tests and users' scripts rely on);
* ``slot``: where the page puts it (:data:`SLOTS`); views of the ``tab`` slot
  become tabs titled ``title``, in registry order;
* ``depends``: the aspects of the state it shows (see
  :data:`vecexplore.app.events.ASPECTS`); it is recomputed when one of them changes;
* ``tasks``: the tasks it exists for (and ``available(data)``: whether the run has what it
  shows, e.g. the ROC curve needs two classes with scores);

and implements

* ``__init__(ctx)``: build its Bokeh models once (never rebuilt on a change);
* ``layout()``: its root model (``layouts()`` for a view with parts in several slots);
* ``compute(d)``: what it will show for a :class:`~vecexplore.app.derive.Derived`,
  off the document lock, touching no Bokeh model (None = nothing to change);
* ``apply(payload)``: copy that into its models, under the lock;
* ``wire(session)``: connect its widgets to ``session.emit(event)``.

A view may also define ``background(d)`` (slow, optional work, e.g. property
importance; set ``has_background``): the session runs it as a low-priority job
after the view's update is shown, and hands its result to ``apply_background``
under the lock (dropped when the view was recomputed meanwhile).

Adding a panel is one file with a View subclass plus one line in
:data:`vecexplore.app.views.REGISTRY`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

#: Where views go: the header bar, the toolbar, the panels of the grid (a panel's ``.bar`` is its
#: one-line bar beside the title), or a tab.
SLOTS: tuple[str, ...] = ("header", "toolbar", "map", "map.bar", "tab", "gallery", "gallery.bar", "detail",
                          "detail.bar")


@dataclass(frozen=True)
class Context:
    """What a view is built with.

    Attributes:
        data: the run's shared, read-only :class:`~vecexplore.app.data.RunData`.
        url_base: prefix of the run's routes (``/vx/<key>``).
        sheet: the app's stylesheet (attached to every model by the document).
        session: the :class:`~vecexplore.app.session.Session` (``emit``, ``derived``, ``state``).
    """

    data: Any
    url_base: str
    sheet: Any
    session: Any


class View:
    """Base class of the page's views; see the module docstring for the protocol."""

    name: ClassVar[str] = ""
    slot: ClassVar[str] = "tab"
    title: ClassVar[str] = ""
    depends: ClassVar[frozenset[str]] = frozenset()
    tasks: ClassVar[frozenset[str]] = frozenset({"detection", "classification"})
    #: Set on views that define ``background``: the session runs it after their update.
    has_background: ClassVar[bool] = False

    @classmethod
    def available(cls, data) -> bool:
        """Whether the run has what this view shows (beyond its task); e.g. ROC needs two classes."""
        return True

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.data = ctx.data
        self.task = ctx.data.task

    def layout(self):
        raise NotImplementedError

    def layouts(self) -> dict:
        """``{slot: model}``: where the page puts this view's parts (default: ``layout()`` in ``slot``)."""
        return {self.slot: self.layout()}

    def compute(self, d) -> Any:
        return None

    def apply(self, payload) -> None:
        pass

    def wire(self, session) -> None:
        pass

    def background(self, d) -> Any:
        return None

    def apply_background(self, payload) -> None:
        pass


__all__ = ["SLOTS", "Context", "View"]
