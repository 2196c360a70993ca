"""``build_document``: one browser session's page for a run.

Layout (1600 px wide; more panels go in as tabs of ``controller.tabs``)::

    header: run, model / weights (red banner for random weights), metrics whole run | selection
    controls + export | scatter (WebGL)          | tabs: confusion matrix, failure clusters, metrics vs
                                                 |   confidence, by class, by property, recommendations
    gallery (24 thumbnails a page)               | detail view of one image

Every view answers to one selection per session (see :mod:`vecexplore.app.state`).

Image URLs in the page are ``{url_base}/thumb/{image_id}`` (JPEG) and
``{url_base}/image/{image_id}``; page exports are written directly under
``RUN/exports/`` and downloaded from ``{url_base}/export/{file_name}``.

Stable model names (``name=``, also CSS classes ``vx-<name>`` on the panels),
for browser tests:

========================  =====================================================
``header``                Div: run, model, metrics (whole run / selection)
``scatter``               the scatter figure; ``scatter-source`` its source
                          (one row per image, image_idx order; ``selected.indices``
                          = the selection), ``scatter-points`` the renderer
``confusion``             the matrix figure; ``confusion-source`` (row-major
                          cells, index = row * L + col); ``confusion-cells``
``matrix-mode``           RadioButtonGroup Counts / Row-normalised
``matrix-scope``          RadioButtonGroup Selection / Whole run
``confusion-caption``     Div under the matrix toggles
``clusters``              DataTable; ``clusters-source`` (column ``cluster``)
``gallery``               the gallery figure; ``gallery-source`` (columns
                          ``image_idx``, ``image_id``, ``url``, ``badge``);
                          ``gallery-tiles`` the tap target renderer
``gallery-sort``          Select; ``gallery-prev`` / ``gallery-next`` Buttons;
                          ``gallery-page`` / ``gallery-caption`` Divs
``detail``                the detail figure; ``detail-image`` (url),
                          ``detail-gt`` / ``detail-pred`` box sources,
                          ``detail-toggles`` CheckboxGroup, ``detail-info`` Div,
                          ``detail-scores`` / ``detail-scores-figure`` (classification top-5 source / figure, shown once an image is open)
``confidence``            Slider; ``best-f1`` Button
``iou``                   Select (detection; hidden for classification)
``class-filter``          MultiChoice (values = str(class_idx))
``split-filter``          MultiChoice (shown when the run has ≥ 2 splits)
``colour-by``             Select
``clear-selection``       Button; ``select-unreadable`` Button (if any)
``export-format``         Select; ``export-button`` Button; ``export-status`` Div;
                          ``export-url`` hidden Div whose text change downloads
``tabs``                  Tabs (``Confusion matrix``, ``Failure clusters``,
                          ``Metrics vs confidence``, ``By class``, ``By property``,
                          ``Recommendations``: indices 0-5)
``curve``                 P/R/F1 vs confidence figure; ``curve-source`` (1,001
                          rows: ``confidence, precision, recall, f1, coverage``),
                          ``curve-operating-point`` Span, ``curve-optimal`` source,
                          ``curve-scope`` RadioButtonGroup (0 selection, 1 whole
                          run), ``curve-class`` Select (``-1`` = all), ``curve-caption``
``class-bars``            stacked bars; ``class-bars-source`` (one row per segment:
                          ``class_idx, kind, factor, left, right, count``),
                          ``class-bars-segments`` renderer, ``class-bars-classes``
                          MultiChoice, ``class-bars-caption`` / ``-legend`` Divs
``property-bins``         bins figure; ``property-source`` (one row per bin: ``x,
                          label, count, images`` and the rates), renderers
                          ``property-precision`` / ``property-fn-rate`` /
                          ``property-accuracy``, ``property-select``,
                          ``property-caption``; ``property-importance`` DataTable,
                          ``importance-source`` (``rank, prop, level, mi, spearman``)
``recommendations``       Column of rows ``rec-{i}`` (Div) + ``rec-select-{i}``
                          (Button); ``recommendations-caption``,
                          ``recommendations-refresh``
========================  =====================================================
"""

from __future__ import annotations

from vecexplore.app.controller import SessionController

__all__ = ["SessionController", "build_document"]


def build_document(doc, data, *, url_base: str) -> SessionController:
    """Build one session's page into ``doc`` (a ``bokeh.document.Document``).

    Args:
        doc: the session's document (a bare Document works too: updates then
            run synchronously, which is what the tests and benchmarks use).
        data: the shared, read-only :class:`~vecexplore.app.data.RunData`.
        url_base: prefix of the run's routes, e.g. ``"/vx/myrun"``.

    Returns:
        The session's :class:`~vecexplore.app.controller.SessionController`
        (servers can ignore it).
    """
    from bokeh.models import Column, GlobalInlineStyleSheet, Row, TabPanel, Tabs

    from vecexplore.app import ui
    from vecexplore.app.wiring import wire_tabs

    ctl = SessionController(doc, data, url_base=url_base)
    sheet = ctl.sheet
    c, ex = ctl.controls, ctl.export
    controls = ui.card("Controls", *c.widgets, ui.divider(sheet), *ex.widgets, name="controls", sheet=sheet,
                       width=266)
    scatter = ui.card("Map of images <span class='vx-muted'>(UMAP of the embeddings)</span>", ctl.scatter.figure,
                      name="map", sheet=sheet)
    cf = ctl.confusion
    matrix = Column(Row(cf.mode, cf.scope, css_classes=["vx-toolbar"]), cf.caption, cf.figure, stylesheets=[sheet])
    table = Column(ctl.clusters.caption, ctl.clusters.table, stylesheets=[sheet])
    quality = [TabPanel(child=child, title=title) for title, child in ctl.quality.tabs(sheet)]
    ctl.tabs = Tabs(tabs=[TabPanel(child=matrix, title="Confusion matrix"),
                          TabPanel(child=table, title="Failure clusters"), *quality],
                    name="tabs", css_classes=["vx-card", "vx-tabs"], stylesheets=[sheet], width=650)
    wire_tabs(ctl)
    g = ctl.gallery
    gallery = ui.card("Gallery", Row(g.sort, g.prev, g.page, g.next, css_classes=["vx-toolbar"]), g.caption,
                      g.figure, name="gallery", sheet=sheet)
    d = ctl.detail
    detail_children = [d.toggles, d.info, d.figure]
    if d.score_figure is not None:
        detail_children = [d.toggles, d.info, Row(d.figure, d.score_figure)]  # toggles stay hidden
    detail = ui.card("Detail", *detail_children, name="detail", sheet=sheet)
    root = Column(
        ctl.header.div,
        Row(controls, scatter, ctl.tabs, css_classes=["vx-row"]),
        Row(gallery, detail, css_classes=["vx-row"]),
        name="vecexplore-root", css_classes=["vx-root"],
        stylesheets=[sheet, GlobalInlineStyleSheet(css=ui.css("page"))],
    )
    _style_everything(root, sheet)
    doc.add_root(root)
    doc.title = f"vecexplore · {data.key}"
    return ctl


def _style_everything(root, sheet) -> None:
    """Give every panel and Div the app's stylesheet: Bokeh 3 renders each in its own shadow DOM."""
    from bokeh.models import Div, LayoutDOM

    for model in root.references():
        if isinstance(model, (Div, LayoutDOM)) and sheet not in model.stylesheets:
            model.stylesheets = [*model.stylesheets, sheet]
