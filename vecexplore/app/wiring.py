"""Bokeh callbacks of a session: each widget event becomes a job for the session's dispatcher.

Callbacks fire for changes made by the browser and by Python alike; while the
controller applies an update (``ctl._applying``) they are ignored, so setting a
widget from the server never loops back into a new job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from vecexplore.app import client

log = logging.getLogger(__name__)


def _noop():
    return None


def n_rows(source) -> int:
    """Rows of a ColumnDataSource (its first column's length)."""
    return len(next(iter(source.data.values()), ()))


def select_values(widget) -> set:
    """The values a Select may take (its options are values or ``(value, label)``)."""
    return {o[0] if isinstance(o, (tuple, list)) else o for o in widget.options}


def wire(ctl) -> None:
    """Connect every widget and source of ``ctl`` (a SessionController) to its jobs.

    Every value from the browser goes through :mod:`vecexplore.app.client` first:
    a job factory returns None for a value the page could not legitimately send,
    and the event is then ignored (and logged), never applied.
    """
    c, data = ctl.controls, ctl.data

    def on(key, job_factory) -> Callable:
        def callback(attr, old, new):
            if ctl._applying:
                return
            job = job_factory(new)
            if job is None:
                log.warning("ignored an invalid %s from the browser: %.200r", key, new)
                return
            ctl.dispatch.submit(key, job)
        return callback

    def tap(source, job_of_row):
        """A factory for a tap on ``source``: empty → nothing, a valid row → its job, else None."""
        def factory(new):
            if not len(new):
                return _noop
            row = client.first_row(new, n_rows(source))
            return None if row is None else job_of_row(row)
        return factory

    def cluster_pick(row):
        cluster, members = ctl.clusters.cluster_at(row), ctl.clusters.members_at(row)
        return ctl._pick_job(np.flatnonzero(np.isin(data.images.cluster, members)), f"cluster {cluster}")

    def gallery_pick(row):
        image = ctl.gallery.image_at(row)
        return ctl._state_job(lambda s: replace(s, detail=image), {"detail", "gallery_detail"})

    def state_job(change, parts):
        return ctl._state_job(change, parts)

    def valid(check, make):
        """A factory that runs ``make`` on the checked value, or returns None when the check refuses it."""
        def factory(new):
            value = check(new)
            return None if value is None else make(value)
        return factory

    def points(new):
        picked = client.rows(new, len(data.images))
        return None if picked is None else ctl._pick_job(picked, "points")

    n_classes, splits = len(data.class_names), set(data.images.splits)
    ctl.scatter.source.selected.on_change("indices", on("pick", points))
    ctl.confusion.source.selected.on_change("indices", on(
        "pick", tap(ctl.confusion.source, lambda row: ctl._cell_job(*ctl.confusion.cell_of(row)))))
    ctl.clusters.source.selected.on_change("indices", on("pick", tap(ctl.clusters.source, cluster_pick)))
    ctl.gallery.source.selected.on_change("indices", on("detail", tap(ctl.gallery.source, gallery_pick)))
    c.confidence.on_change("value", on("confidence", valid(client.unit_float,
                                                           lambda v: ctl._op_job(confidence=v))))
    c.iou.on_change("value", on("iou", valid(lambda v: client.iou_value(v, data.iou_choices),
                                             lambda v: ctl._op_job(iou=v))))
    c.colour.on_change("value", on("colour", valid(lambda v: client.choice(v, select_values(c.colour)),
                                                   lambda v: state_job(lambda s: replace(s, colour=v), {"colour"}))))
    c.classes.on_change("value", on("classes", valid(lambda v: client.class_values(v, n_classes), lambda v: state_job(
        lambda s: s.with_filters(classes=v), {"selection"}))))
    c.splits.on_change("value", on("splits", valid(lambda v: client.split_values(v, splits), lambda v: state_job(
        lambda s: s.with_filters(splits=v), {"selection"}))))
    ctl.confusion.mode.on_change("active", on("matrix-mode", valid(lambda v: client.choice(v, (0, 1)), lambda v: state_job(
        lambda s: replace(s, matrix_mode="raw" if v == 0 else "row"), {"matrix"}))))
    ctl.confusion.scope.on_change("active", on("matrix-scope", valid(lambda v: client.choice(v, (0, 1)), lambda v: state_job(
        lambda s: replace(s, matrix_scope="selection" if v == 0 else "run"), {"matrix"}))))
    ctl.gallery.sort.on_change("value", on("sort", valid(lambda v: client.choice(v, select_values(ctl.gallery.sort)),
                                                         lambda v: state_job(lambda s: replace(s, sort=v, page=0),
                                                                             {"gallery"}))))
    # Clicks are never coalesced: each gets its own key.
    clicks = ctl._clicks
    ctl.gallery.prev.on_click(lambda: ctl.dispatch.submit(next(clicks), state_job(
        lambda s: replace(s, page=max(s.page - 1, 0)), {"gallery"})))
    ctl.gallery.next.on_click(lambda: ctl.dispatch.submit(next(clicks), state_job(
        lambda s: replace(s, page=s.page + 1), {"gallery"})))
    c.clear.on_click(lambda: ctl.dispatch.submit("pick", ctl._pick_job(None, "")))
    c.unreadable.on_click(lambda: ctl.dispatch.submit("pick", ctl._pick_job(
        np.flatnonzero(~data.images.readable), "unreadable")))
    c.best.on_click(lambda: setattr(c.confidence, "value", ctl.optimal))
    ctl.export.button.on_click(lambda: ctl.dispatch.submit(next(clicks), ctl._export_job(
        client.choice(ctl.export.format.value, select_values(ctl.export.format)) or "", {})))
    ctl.quality.wire(ctl, on, tap, valid)


def wire_tabs(ctl) -> None:
    """Connect ``ctl.tabs`` (made by the document after the controller): showing a tab brings it up to date."""
    def callback(attr, old, new):
        if ctl._applying:
            return
        tab = client.choice(new, range(len(ctl.tabs.tabs)))
        if tab is None:
            log.warning("ignored an invalid tab from the browser: %.200r", new)
            return
        ctl.dispatch.submit("tab", ctl._state_job(lambda s: replace(s, tab=int(tab)), {"tab"}))

    ctl.tabs.on_change("active", callback)
