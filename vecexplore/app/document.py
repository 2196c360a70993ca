"""``build_document``: one browser session's page for a run.

The page fills the window and never scrolls as a whole::

    header: run, model / weights (red banner for random weights), metrics whole run | selection
    toolbar: confidence · F1-optimal · IoU · colour by · class filter · split filter
    ┌ map: selection bar + scatter (WebGL) ┐ ┌ analysis tabs (one per tab view) ┐
    └ gallery: sort, pages, export + tiles ┘ └ detail: the opened image         ┘

The four panels share the space below the toolbar as a 2 × 2 grid that follows
the window (every figure stretches; the gallery picks its columns and rows from
its size), so at 1280 × 800 and larger the map, the active tab, the gallery and
the detail view are all on screen: a click and its effect are seen together.
What goes where is each view's ``slot`` (:mod:`vecexplore.app.view`); a view's
``<slot>.bar`` part joins the panel's one-line bar beside its title. The tabs are
the ``tab`` views in :data:`vecexplore.app.views.REGISTRY` order.

Image URLs in the page are ``{url_base}/thumb/{image_id}`` (JPEG) and
``{url_base}/image/{image_id}``; page exports are written directly under
``RUN/exports/`` and downloaded from ``{url_base}/export/{file_name}``.

Stable model names (``name=``; panels also carry the CSS class ``vx-<name>``):

========================  =====================================================
``header``                Div: run, model, metrics (whole run / selection)
``toolbar``               Row: ``confidence`` Slider, ``best-f1`` Button, ``iou``
                          Slider (a Select for a build off COCO's IoU grid),
                          ``colour-by`` Select, ``class-filter`` / ``split-filter``
                          MultiChoice (values = str(class_idx) / split names)
``selection-bar``         ``select-mode`` RadioButtonGroup (replace / add /
                          intersect / subtract), ``selection-back`` /
                          ``selection-forward`` / ``clear-selection`` /
                          ``select-unreadable`` Buttons
``scatter``               the map figure; ``scatter-source`` (one row per image,
                          image_idx order; ``selected.indices`` = the selection),
                          ``scatter-points`` the renderer
``tabs``                  Tabs of the analysis views, in registry order
``confusion``             the matrix figure; ``confusion-source`` (row-major
                          cells, index = row * L + col; ``selected.indices`` =
                          the cells that made the selection); ``confusion-cells``;
                          ``matrix-mode`` / ``matrix-scope`` RadioButtonGroups;
                          ``confusion-caption``
``clusters``              DataTable; ``clusters-source`` (column ``cluster``)
``curve``                 P/R/F1 vs confidence; ``curve-source``, ``curve-operating-point``
                          Span, ``curve-optimal``, ``curve-scope``, ``curve-class``, ``curve-caption``
``class-bars``            stacked bars; ``class-bars-source`` (``class_idx, kind,
                          factor, left, right, count``), ``class-bars-segments``,
                          ``class-bars-classes`` MultiChoice, ``class-bars-caption`` / ``-legend``
``property-bins``         bins figure; ``property-source``, ``property-select``,
                          ``property-caption``; ``property-importance`` DataTable,
                          ``importance-source``
``recommendations``       Column of rows ``rec-{i}`` (Div) + ``rec-select-{i}``
                          (Button); ``recommendations-caption``, ``recommendations-refresh``
``gallery``               the gallery figure; ``gallery-source`` (``image_idx``,
                          ``image_id``, ``url``, ``badge``), ``gallery-tiles``,
                          ``gallery-boxes`` (the boxes drawn), ``gallery-legend``;
                          ``gallery-sort``, ``gallery-prev`` / ``gallery-next``,
                          ``gallery-page`` / ``gallery-caption``
``export-bar``            ``export-format`` Select, ``export-button``,
                          ``export-status`` Div, ``export-url`` (hidden: a new
                          text downloads)
``detail``                the detail figure; ``detail-image`` / ``detail-thumb``
                          (urls), ``detail-gt`` / ``detail-pred`` box sources,
                          ``detail-labels``, ``detail-toggles``, ``detail-info``,
                          ``detail-scores`` / ``detail-scores-figure`` (classification)
``compare-header``        comparison runs only (``vecexplore compare``): Div with
                          both models' metrics and B − A, in ``compare-header-bar``
``compare-matrix-{a,b,diff}``  comparison runs only: the "A vs B" tab's figures;
                          ``compare-source-{a,b,diff}`` (row-major cells),
                          ``compare-cells-{a,b,diff}``, ``compare-caption``;
                          ``detail-model`` RadioButtonGroup (Model A / Model B)
========================  =====================================================
"""

from __future__ import annotations

from vecexplore.app.session import Session

__all__ = ["Session", "build_document"]

#: Panels of the grid: (slot, card title, CSS name), in reading order.
PANELS = (("map", "Map of images", "map"), ("tab", "", "tabs"), ("gallery", "Gallery", "gallery"),
          ("detail", "Detail", "detail"))


def build_document(doc, data, *, url_base: str, registry=None) -> Session:
    """Build one session's page into ``doc`` (a ``bokeh.document.Document``).

    Args:
        doc: the session's document (a bare Document works too: updates then
            run synchronously, which is what the tests and benchmarks use).
        data: the shared, read-only :class:`~vecexplore.app.data.RunData`.
        url_base: prefix of the run's routes, e.g. ``"/vx/myrun"``.
        registry: the view classes (default :data:`vecexplore.app.views.REGISTRY`).

    Returns:
        The session's :class:`~vecexplore.app.session.Session` (servers can ignore it).
    """
    from bokeh.models import Column, GlobalInlineStyleSheet, GridBox, Row, TabPanel, Tabs

    from vecexplore.app import ui
    from vecexplore.app.events import ShowTab
    from vecexplore.app.views import REGISTRY

    sheet = ui.stylesheet()
    session = Session(doc, data, url_base=url_base, sheet=sheet, registry=registry or REGISTRY)
    by_slot: dict[str, list] = {}
    for view in session.views:
        for slot, model in view.layouts().items():
            by_slot.setdefault(slot, []).append(model)
    tabs = Tabs(tabs=[TabPanel(child=v.layouts()["tab"], title=v.title) for v in session.tab_views], name="tabs",
                css_classes=["vx-card", "vx-tabs"], sizing_mode="stretch_both")
    session.tabs = tabs

    def on_tab(_attr, _old, new):
        if session.applying:
            return
        if not (isinstance(new, int) and 0 <= new < len(session.tab_views)):
            ui.refused("tabs", new)
            return
        session.emit(ShowTab(int(new)))

    tabs.on_change("active", on_tab)
    cells = []
    for k, (slot, title, name) in enumerate(PANELS):
        if slot == "tab":
            panel = tabs
        else:  # one bar (the title and every view's ``<slot>.bar`` part), then the bodies
            if slot == "map" and getattr(data, "object_map", None) is not None:
                title = "Map"  # its level switch (images | objects) says of what
            bar = Row(ui.title_div(title, name=f"{name}-title"), *by_slot.get(f"{slot}.bar", []),
                      css_classes=["vx-card-bar"], sizing_mode="stretch_width", name=f"{name}-bar")
            panel = Column(bar, *by_slot.get(slot, []), name=f"{name}-card", css_classes=["vx-card", f"vx-{name}"],
                           sizing_mode="stretch_both")
        cells.append((panel, k // 2, k % 2))
    grid = GridBox(children=cells, rows=["minmax(0, 1fr)", "minmax(0, 1fr)"],
                   cols=["minmax(0, 1fr)", "minmax(0, 1fr)"], spacing=10, sizing_mode="stretch_both",
                   name="panels", css_classes=["vx-grid"])
    header = Row(*by_slot.get("header", []), name="header-bar", css_classes=["vx-header-bar"],
                 sizing_mode="stretch_width")
    root = Column(header, *by_slot.get("toolbar", []), grid, name="vecexplore-root", css_classes=["vx-root"], sizing_mode="stretch_both",
                  stylesheets=[sheet, GlobalInlineStyleSheet(css=ui.css("page"))])
    _style_everything(root, sheet)
    doc.add_root(root)
    doc.title = f"vecexplore · {data.key}"
    return session


def _style_everything(root, sheet) -> None:
    """Give every panel and Div the app's stylesheet: Bokeh 3 renders each in its own shadow DOM."""
    from bokeh.models import Div, LayoutDOM

    for model in root.references():
        if isinstance(model, (Div, LayoutDOM)) and sheet not in model.stylesheets:
            model.stylesheets = [*model.stylesheets, sheet]
