"""One browser session: its state, its panels, and how every event updates them.

Each update has two halves. The *compute* half (:meth:`SessionController._advance`)
derives everything from the new :class:`~vecexplore.app.state.SessionState`
and the shared, read-only :class:`~vecexplore.app.data.RunData`; it touches no
Bokeh model, so a server runs it in a thread pool, off the document lock. The
*apply* half copies the results into the sources and widgets and runs under the
lock (``doc.add_next_tick_callback``), which is Bokeh's "updating from
threads" pattern. A session's jobs run one at a time, in order; events of the
same kind that arrive while one is pending replace it (only the latest slider
value is computed). On a bare Document (tests, benchmarks) both halves run
synchronously.

Public methods (``set_selection``, ``set_confidence``, ``set_iou``, ...) run
synchronously and return when the panels are updated; call them with the
document lock held (or on a bare Document).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from vecexplore.app import colouring
from vecexplore.app import state as st
from vecexplore.app.dispatch import Dispatcher
from vecexplore.app.wiring import wire
from vecexplore.errors import VecexploreError
from vecexplore.eval.outcomes import COUNTED

log = logging.getLogger(__name__)


class SessionController:
    """The state and panels of one session; see the module docstring.

    Attributes:
        state: the current :class:`~vecexplore.app.state.SessionState`.
        evaluation: the evaluation at the session's operating point.
        outcomes: :class:`~vecexplore.app.state.ImageOutcomes` of ``evaluation``.
        selection: sorted int64 image_idx of the selection, None = no selection.
        header, scatter, confusion, clusters, gallery, detail, controls, export: the panels.
        quality: the model-quality tabs (:class:`~vecexplore.app.quality_views.QualityViews`).
    """

    def __init__(self, doc, data, *, url_base: str, sync: bool | None = None):
        from vecexplore.app.clusters import ClustersPanel
        from vecexplore.app.confusion import ConfusionPanel
        from vecexplore.app.controls import ControlsPanel
        from vecexplore.app.detail import DetailPanel
        from vecexplore.app.export_panel import ExportPanel
        from vecexplore.app.gallery import GalleryPanel
        from vecexplore.app.header import HeaderPanel
        from vecexplore.app.quality_views import QualityViews
        from vecexplore.app.scatter import ScatterPanel
        from vecexplore.app.ui import stylesheet

        self.doc, self.data, self.url_base = doc, data, url_base
        self.dispatch = Dispatcher(doc, sync=doc.session_context is None if sync is None else sync)
        self.tabs = None  # the Tabs of the analysis panels, set by build_document
        self.task = data.task
        # A private evaluation: sessions never fill the lazy caches of the shared one.
        self.evaluation = data.evaluation(confidence=float(data.base.confidence))
        iou = data.build_iou if self.task == "detection" else 0.5
        self.optimal = data.optimal_confidence(iou if self.task == "detection" else None)
        self.state = st.SessionState(iou=iou, confidence=float(data.base.confidence),
                                     colour=colouring.modes(self.task)[0][0])
        self.outcomes = st.image_outcomes(self.evaluation.per_image)
        self.selection: np.ndarray | None = None
        self.matrix = self.evaluation.confusion
        self._pred_class: np.ndarray | None = None
        self._applying = False
        self._clicks = itertools.count()
        self.sheet = stylesheet()
        self.header = HeaderPanel(sheet=self.sheet)
        self.scatter = ScatterPanel(info=data.images, task=self.task, class_names=data.class_names,
                                    url_base=url_base)
        self.confusion = ConfusionPanel(labels=self.matrix.labels, has_background=self.matrix.has_background)
        self.clusters = ClustersPanel()
        self.gallery = GalleryPanel(url_base=url_base)
        self.detail = DetailPanel(task=self.task, url_base=url_base)
        self.controls = ControlsPanel(data=data, confidence=self.state.confidence, optimal=self.optimal)
        self.export = ExportPanel(task=self.task, sheet=self.sheet)
        self.quality = QualityViews(data=data, confidence=self.state.confidence)
        self._run(lambda: self._advance(self.state, op=False, parts=_ALL))
        wire(self)

    # ------------------------------------------------------------- public, synchronous

    def set_selection(self, image_idx, how: str = "points") -> None:
        """Pick ``image_idx`` (None / empty clears the pick); every view follows."""
        self._run(self._pick_job(image_idx, how))

    def select_cell(self, row: int, col: int) -> None:
        """Pick the images of cell (row, col) of the displayed confusion matrix."""
        self._run(self._cell_job(row, col))

    def select_cluster(self, cluster: int) -> None:
        """Pick the slice (as the table shows it) that holds HDBSCAN cluster ``cluster``."""
        sid, members = self.clusters.slice_of(cluster)
        self._run(self._pick_job(np.flatnonzero(np.isin(self.data.images.cluster, members)), f"cluster {sid}"))

    def set_confidence(self, confidence: float) -> None:
        self._run(self._op_job(confidence=float(confidence)))

    def set_iou(self, iou: float) -> None:
        self._run(self._op_job(iou=float(iou)))

    def set_filters(self, *, classes=None, splits=None) -> None:
        self._run(self._state_job(lambda s: s.with_filters(classes=classes, splits=splits), {"selection"}))

    def set_colour(self, mode: str) -> None:
        self._run(self._state_job(lambda s: replace(s, colour=mode), {"colour"}))

    def set_matrix(self, *, mode: str | None = None, scope: str | None = None) -> None:
        self._run(self._state_job(lambda s: replace(s, matrix_mode=mode or s.matrix_mode,
                                                    matrix_scope=scope or s.matrix_scope), {"matrix"}))

    def set_gallery(self, *, sort: str | None = None, page: int | None = None) -> None:
        self._run(self._state_job(lambda s: replace(s, sort=sort or s.sort, page=s.page if page is None else page),
                                  {"gallery"}))

    def open_detail(self, image_idx: int) -> None:
        self._run(self._state_job(lambda s: replace(s, detail=int(image_idx)), {"detail", "gallery_detail"}))

    def export_selection(self, fmt: str):
        """Write the selection in ``fmt`` under ``RUN/exports/`` and trigger the download; the Path or None."""
        result = {}
        self._run(self._export_job(fmt, result))
        return result.get("path")

    # ------------------------------------------------------------- jobs (compute half)

    def _run(self, job) -> None:
        apply = job()
        if apply is not None:
            apply()

    def _state_job(self, change, parts) -> Callable:
        return lambda: self._advance(change(self.state), parts=set(parts))

    def _pick_job(self, image_idx, how: str) -> Callable:
        def job():
            new, parts = self.state.with_pick(image_idx, how), {"selection"}
            if how == "points" and new.pick is not None and len(new.pick) == 1:
                # A tap on one point also shows that image.
                new, parts = replace(new, detail=int(new.pick[0])), {"selection", "detail", "gallery_detail"}
            return self._advance(new, parts=parts)
        return job

    def _cell_job(self, row: int, col: int) -> Callable:
        def job():
            labels = self.matrix.labels
            # The whole run's matrix caches its per-object cells once per operating point; a
            # selection's matrix has the same cells restricted to the selection's images.
            images = self.evaluation.confusion.cell_images(row, col)
            if self.state.matrix_scope == "selection" and self.selection is not None:
                images = np.intersect1d(images, self.selection, assume_unique=True)
            return self._advance(self.state.with_pick(images, f"cell {labels[row]} → {labels[col]}"),
                                 parts={"selection"})
        return job

    def _op_job(self, *, confidence: float | None = None, iou: float | None = None) -> Callable:
        def job():
            s = self.state
            new = replace(s, confidence=s.confidence if confidence is None else confidence,
                          iou=s.iou if iou is None else iou)
            if new.confidence == s.confidence and new.iou == s.iou:
                return None
            return self._advance(new, op=True)
        return job

    def _export_job(self, fmt: str, result: dict) -> Callable:
        def job():
            from vecexplore.app.export_panel import export_status, write_export

            trigger = None
            if self.selection is None:
                text = export_status("Nothing is selected: lasso points, click a matrix cell or a cluster row first.",
                                     error=True)
            else:
                try:
                    path = write_export(self.data.run, self.selection, fmt=fmt,
                                        how=st.describe(self.state, self.data.class_names))
                except Exception as exc:  # a failure must never leave the last success on screen
                    if not isinstance(exc, (VecexploreError, OSError)):
                        log.exception("export of %d images failed", len(self.selection))
                    text = export_status(f"Export failed: {_reason(exc)}", error=True)
                else:
                    result["path"] = path
                    log.info("exported %d images to %s", len(self.selection), path)
                    text = export_status(f"Wrote {len(self.selection):,} images to ", code=str(path))
                    trigger = f"{self.url_base}/export/{path.name}|{path.name}"

            def apply():
                self.export.status.text = text
                if trigger:
                    self.export.trigger.text = trigger
            return apply
        return job

    def _advance(self, new: st.SessionState, *, op: bool = False, parts: set | frozenset = frozenset()):
        """Compute every view that ``new`` changes; return the closure that shows them."""
        data, old, parts = self.data, self.state, set(parts)
        if op:
            self.evaluation = data.evaluation(iou=new.iou, confidence=new.confidence)
            self.outcomes = st.image_outcomes(self.evaluation.per_image)
            self._pred_class = None
            if new.iou != old.iou:
                self.optimal = data.optimal_confidence(new.iou)
            parts |= {"outcomes", "header", "matrix", "gallery", "detail", "clusters", "controls"}
            if new.colour in colouring.DYNAMIC_MODES:
                parts.add("colour")
            if new.classes:
                parts.add("selection")
        if "selection" in parts:
            uni = st.universe(new, num_images=data.num_images, split=data.images.split,
                              class_pairs=self._class_pairs() if new.classes else ())
            sel = st.selection_of(new.pick, uni)
            self.selection = sel
            parts |= {"scatter_selection", "header", "gallery", "cluster_pick"}
            if new.matrix_scope == "selection":
                parts.add("matrix")
        self.state = new
        frame: dict[str, object] = {}
        if "colour" in parts:
            frame["colour"] = self._colouring(new.colour)
        if "outcomes" in parts:
            frame["outcomes"] = colouring.pack_outcomes(self.outcomes)
        if "scatter_selection" in parts:
            frame["scatter_selection"] = self.selection
        if "header" in parts:
            frame["header"] = self._header_html()
        if "matrix" in parts:
            self.matrix = st.displayed_matrix(self.evaluation, self.selection, new.matrix_scope)
            from vecexplore.app.confusion import cell_tone

            cells = st.matrix_cells(self.matrix, new.matrix_mode)
            cells["tone"] = cell_tone(cells)
            frame["matrix"] = (cells, self._matrix_caption())
        if "clusters" in parts:
            from vecexplore.app.clusters import cluster_rows

            tab = cluster_rows(self.evaluation, data.images.cluster, run=data.run, tree=data.tree,
                               class_names=data.class_names)
            frame["clusters"] = (tab, self._clusters_caption(tab))
        if "cluster_pick" in parts or "clusters" in parts:
            how = new.pick_how
            frame["cluster_pick"] = int(how.split()[1]) if how.startswith("cluster ") else None
        if "gallery" in parts:
            cand = self.selection if self.selection is not None else np.arange(data.num_images, dtype=np.int64)
            page = st.gallery_page(cand, sort=new.sort, page=new.page, error_rate=self.outcomes.error_rate,
                                   score=self._scores())
            self.state = replace(self.state, page=page.page)
            frame["gallery"] = (page, self._gallery_caption(page))
        if "detail" in parts and new.detail >= 0 and self.task == "detection":
            _ = self.evaluation.outcomes.pred_code, self.evaluation.outcomes.gt_code  # warm off the lock
        for key in ("detail", "gallery_detail", "controls"):
            if key in parts:
                frame[key] = True
        frame.update(self.quality.compute(self, self.state, parts=parts, op=op))
        # What apply needs, as of this job: the next job may already be computing when it runs.
        snapshot = (self.state, self.evaluation, self.outcomes, self.optimal)
        return lambda: self._apply(frame, snapshot, new_image=new.detail != old.detail or op is False)

    # ------------------------------------------------------------- apply half (document lock)

    def _apply(self, frame: dict, snapshot: tuple, *, new_image: bool) -> None:
        s, evaluation, outcomes, optimal = snapshot
        self._applying = True
        try:
            if "colour" in frame:
                self.scatter.show_colouring(frame["colour"])
            if "outcomes" in frame:
                self.scatter.show_outcomes(frame["outcomes"])
            if "scatter_selection" in frame:
                self.scatter.show_selection(frame["scatter_selection"])
            if "header" in frame:
                self.header.show(frame["header"])
            if "matrix" in frame:
                self.confusion.show(*frame["matrix"])
                self.confusion.mode.active = 0 if s.matrix_mode == "raw" else 1
                self.confusion.scope.active = 0 if s.matrix_scope == "selection" else 1
            if "clusters" in frame:
                self.clusters.show(*frame["clusters"])
            if "cluster_pick" in frame:
                self.clusters.show_picked(frame["cluster_pick"])
            if "gallery" in frame:
                page, caption = frame["gallery"]
                self.gallery.show(page, info=self.data.images, outcomes=outcomes, class_names=self.data.class_names,
                                  caption=caption, detail=s.detail)
                self.gallery.sort.value = s.sort
            elif "gallery_detail" in frame:
                self.gallery.show_detail(s.detail)
            if "detail" in frame:
                if new_image:
                    self.detail.show(data=self.data, evaluation=evaluation, image_idx=s.detail)
                else:
                    self.detail.show_objects(data=self.data, evaluation=evaluation, image_idx=s.detail)
            if "controls" in frame:
                from vecexplore.app.controls import confidence_title

                c = self.controls
                c.confidence.title = confidence_title(optimal, s.iou if self.task == "detection" else None)
                if abs(c.confidence.value - s.confidence) > 1e-12:
                    c.confidence.value = s.confidence
                if self.task == "detection":
                    c.iou.value = f"{s.iou:.2f}"
            if "quality" in frame:
                self.quality.apply(frame, s)
        finally:
            self._applying = False
        if "quality" in frame:
            self.quality.after_apply(self, frame)

    def locked(self, apply: Callable[[], None]) -> Callable[[], None]:
        """``apply`` as an update's apply half: the widget callbacks it sets off are ignored."""
        def run():
            self._applying = True
            try:
                apply()
            finally:
                self._applying = False
        return run

    # ------------------------------------------------------------- derived values

    def _class_pairs(self):
        ds, ev = self.data.dataset, self.evaluation
        n = ds.num_images
        if self.task == "detection":
            gt = ds.gt
            keep = ~gt.iscrowd
            counted = ev.outcomes.pred_code < COUNTED
            return [(gt.image_idx[keep], gt.class_idx[keep]), (ds.pred.image_idx[counted], ds.pred.class_idx[counted])]
        idx = np.arange(n)
        return [(idx, ev.arrays["label"]), (idx, ev.accepted)]

    def _scores(self) -> np.ndarray:
        if self.task == "detection":
            return colouring.confidence_at(self.data.images.max_score, self.state.confidence)
        return self.data.images.max_score

    def _colouring(self, mode: str) -> colouring.Colouring:
        info = self.data.images
        pred_class = None
        if mode == "pred_class" and self.task == "detection":
            if self._pred_class is None:
                ds = self.data.dataset
                counted = self.evaluation.outcomes.pred_code < COUNTED
                self._pred_class = colouring.dominant_pred_class(ds.pred.image_idx, ds.pred.class_idx, counted,
                                                                 ds.num_images, len(ds.categories))
            pred_class = self._pred_class
        return colouring.colour_values(mode, outcomes=self.outcomes, cluster=info.cluster, gt_class=info.gt_class,
                                       readable=info.readable, score=self._scores(),
                                       class_names=self.data.class_names, pred_class=pred_class)

    def _summary(self, images) -> dict:
        if self.task == "detection":
            return st.detection_summary(self.outcomes, images)
        return st.classification_summary(self.outcomes, len(self.data.class_names), images)

    def _header_html(self) -> str:
        from vecexplore.app.header import header_html

        data, s = self.data, self.state
        sel = None if self.selection is None else self._summary(self.selection)
        return header_html(key=data.key, task=self.task, model=data.model, num_images=data.num_images,
                           unreadable=int((~data.images.readable).sum()),
                           iou=s.iou if self.task == "detection" else None, confidence=s.confidence,
                           optimal=self.optimal, run=self._summary(None), selection=sel,
                           selection_text=self._selection_text(), coco=data.coco)

    def _selection_text(self) -> str:
        if self.selection is None:
            return ("Nothing selected — the views show the whole run. Lasso or tap points, click a matrix cell "
                    "or a cluster row to select images.")
        return f"Selection: {st.describe(self.state, self.data.class_names)} — {len(self.selection):,} images"

    def _matrix_caption(self) -> str:
        scope = ("whole run" if self.state.matrix_scope == "run" or self.selection is None
                 else f"selection ({len(self.selection):,} images)")
        bg = "; last row / column = background" if self.matrix.has_background else ""
        return f"Showing the {scope}. Rows = ground truth, columns = prediction{bg}. Click a cell to select its images."

    def _clusters_caption(self, tab) -> str:
        merged = sum(len(m) > 1 for m in tab["members"])
        note = (f"; {merged} of them join sibling clusters that fail alike (e.g. 4+9)" if merged else "")
        return (f"{len(tab)} slices{note}, worst first at confidence ≥ {self.state.confidence:.3f} "
                "(ranked by the lower end of the 95% interval of their error rate). Click a row to select it.")

    def _gallery_caption(self, page: st.GalleryPage) -> str:
        what = "Selection" if self.selection is not None else "Whole run"
        return f"{what}: {page.total:,} images" if page.total else f"{what}: no images"

def _reason(exc: Exception) -> str:
    """What went wrong, for a person: our errors carry their message; an OSError its path and strerror."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


_ALL = frozenset({"selection", "colour", "outcomes", "header", "matrix", "clusters", "gallery", "controls"})
