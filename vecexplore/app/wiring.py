"""Bokeh callbacks of a session: each widget event becomes a job for the session's dispatcher.

Callbacks fire for changes made by the browser and by Python alike; while the
controller applies an update (``ctl._applying``) they are ignored, so setting a
widget from the server never loops back into a new job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np


def _noop():
    return None


def wire(ctl) -> None:
    """Connect every widget and source of ``ctl`` (a SessionController) to its jobs."""
    c, data = ctl.controls, ctl.data

    def on(key, job_factory) -> Callable:
        def callback(attr, old, new):
            if not ctl._applying:
                ctl.dispatch.submit(key, job_factory(new))
        return callback

    def cluster_pick(new):
        if not len(new):
            return _noop
        cluster = ctl.clusters.cluster_at(new[0])
        return ctl._pick_job(np.flatnonzero(data.images.cluster == cluster), f"cluster {cluster}")

    def gallery_pick(new):
        if not len(new):
            return _noop
        image = ctl.gallery.image_at(new[0])
        return ctl._state_job(lambda s: replace(s, detail=image), {"detail", "gallery_detail"})

    def state_job(change, parts):
        return ctl._state_job(change, parts)

    ctl.scatter.source.selected.on_change("indices", on("pick", lambda new: ctl._pick_job(new, "points")))
    ctl.confusion.source.selected.on_change("indices", on(
        "pick", lambda new: ctl._cell_job(*ctl.confusion.cell_of(new[0])) if len(new) else _noop))
    ctl.clusters.source.selected.on_change("indices", on("pick", cluster_pick))
    ctl.gallery.source.selected.on_change("indices", on("detail", gallery_pick))
    c.confidence.on_change("value", on("confidence", lambda new: ctl._op_job(confidence=float(new))))
    c.iou.on_change("value", on("iou", lambda new: ctl._op_job(iou=float(new))))
    c.colour.on_change("value", on("colour", lambda new: state_job(lambda s: replace(s, colour=new), {"colour"})))
    c.classes.on_change("value", on("classes", lambda new: state_job(
        lambda s: s.with_filters(classes=[int(v) for v in new]), {"selection"})))
    c.splits.on_change("value", on("splits", lambda new: state_job(
        lambda s: s.with_filters(splits=list(new)), {"selection"})))
    ctl.confusion.mode.on_change("active", on("matrix-mode", lambda new: state_job(
        lambda s: replace(s, matrix_mode="raw" if new == 0 else "row"), {"matrix"})))
    ctl.confusion.scope.on_change("active", on("matrix-scope", lambda new: state_job(
        lambda s: replace(s, matrix_scope="selection" if new == 0 else "run"), {"matrix"})))
    ctl.gallery.sort.on_change("value", on("sort", lambda new: state_job(
        lambda s: replace(s, sort=new, page=0), {"gallery"})))
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
    ctl.export.button.on_click(lambda: ctl.dispatch.submit(next(clicks), ctl._export_job(ctl.export.format.value, {})))
    ctl.quality.wire(ctl, on, _noop)


def wire_tabs(ctl) -> None:
    """Connect ``ctl.tabs`` (made by the document after the controller): showing a tab brings it up to date."""
    def callback(attr, old, new):
        if not ctl._applying:
            ctl.dispatch.submit("tab", ctl._state_job(lambda s: replace(s, tab=int(new)), {"tab"}))

    ctl.tabs.on_change("active", callback)
