"""The failure-slices table: one row per slice, worst first; a row click selects the slice
(ctrl/shift-clicking more rows adds them).

:func:`cluster_rows` (pure) re-slices the run at the session's operating point
with :func:`vecexplore.analysis.slicing.failure_slice_table` (clusters merged
along the run's hierarchy where they fail alike; rank, size, error rate with
its Wilson interval, lift, dominant error). The ``Cluster`` column names a
slice by its clusters ("4+9" for a merged one); the GT class histogram and the
most confused pair are counted per slice (the pair at the operating point).

At the object level the table lists the run's object slices instead
(``object_slices.parquet``, :mod:`vecexplore.analysis.object_slices`: GT objects
ranked by FN rate, predictions by FP rate, at the build's operating point); a
row click selects the slice's objects (:func:`object_slice_rows`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vecexplore.app import events as ev
from vecexplore.app import state as st
from vecexplore.app import ui
from vecexplore.app.view import View
from vecexplore.eval.outcomes import GtOutcome as G
from vecexplore.eval.outcomes import PredOutcome as P

_ERROR_NAMES = {
    "fp_duplicate": "duplicate", "fp_class": "wrong class", "fp_localization": "localization",
    "fp_both": "class + loc.", "fp_background": "background", "fn_missed": "missed",
    "misclassified": "misclassified", "no_prediction": "no prediction", "none": "none",
}  # fmt: skip


def most_confused(cluster_of_pair: np.ndarray, gt_class: np.ndarray, pred_class: np.ndarray,
                  ids: np.ndarray, class_names: Sequence[str]) -> list[str]:
    """Per cluster in ``ids``: "gt → pred (count)" of its most frequent confusion, "" if none.

    Ties: lower GT class, then lower predicted class.
    """
    out = [""] * len(ids)
    keep = cluster_of_pair >= 0
    if not keep.any():
        return out
    k = len(class_names)
    key = (cluster_of_pair[keep].astype(np.int64) * k + gt_class[keep]) * k + pred_class[keep]
    keys, counts = np.unique(key, return_counts=True)
    cl, rest = np.divmod(keys, k * k)
    order = np.lexsort((rest, -counts, cl))
    first = order[np.r_[True, cl[order][1:] != cl[order][:-1]]]
    pos = {int(c): i for i, c in enumerate(ids)}
    for f in first:
        if int(cl[f]) in pos:
            g, p = divmod(int(rest[f]), k)
            out[pos[int(cl[f])]] = f"{class_names[g]} → {class_names[p]} ({int(counts[f])})"
    return out


def cluster_rows(evaluation, labels: np.ndarray, *, run, tree, class_names: Sequence[str]):
    """The slice table at ``evaluation``'s operating point (a pandas DataFrame, worst first).

    Args:
        evaluation: the session's evaluation.
        labels: (N,) HDBSCAN cluster per image (-1 noise).
        run: the run's tables (image properties, for the failure profiles).
        tree: the run's :class:`~vecexplore.mapping.hierarchy.ClusterTree`, or None.
        class_names: name per class_idx.

    Columns: ``cluster`` (slice id), ``members`` (its cluster ids), ``rank, size,
    error_rate, ci_low, ci_high, lift`` (as ``slice_table``) and the display
    strings ``label, error_text, lift_text, dominant, classes, confused``.
    """
    from vecexplore.analysis.slicing import failure_slice_table, table_slice_labels
    from vecexplore.mapping.hierarchy import members_text

    task = evaluation.task
    tab = failure_slice_table(run, evaluation, labels, tree, objects=None, class_names=class_names)
    ids = tab["cluster"].to_numpy(np.int64)
    slices = table_slice_labels(tab, labels)
    if task == "detection":
        mt, fp = evaluation.matching, evaluation.outcomes.fp_class
        p, g = mt.pair_pred[fp], mt.pair_gt[fp]
        tab["confused"] = most_confused(slices[mt.pred.image_idx[p]], mt.gt.class_idx[g], mt.pred.class_idx[p],
                                        ids, class_names)
        gt = evaluation.dataset.gt
        keep = ~gt.iscrowd
        tab["classes"] = top_classes(slices[gt.image_idx[keep]], gt.class_idx[keep], ids, class_names)
    else:
        tab["classes"] = tab["top_classes"].astype(str)
        tab["confused"] = [f"{m} ({c})" if m else "" for m, c in
                           zip(tab["most_confused"], tab["most_confused_count"], strict=True)]
    tab["label"] = [members_text(m) for m in tab["members"]]
    tab["error_text"] = [f"{e:.2f} [{lo:.2f}, {hi:.2f}]" for e, lo, hi in
                         zip(tab["error_rate"], tab["ci_low"], tab["ci_high"], strict=True)]
    tab["lift_text"] = [f"{v:.2f}×" if np.isfinite(v) else "–" for v in tab["lift"]]
    tab["dominant"] = [_ERROR_NAMES.get(str(d), str(d)) for d in tab["dominant_error"]]
    return tab


def top_classes(slice_of_object: np.ndarray, class_idx: np.ndarray, ids: np.ndarray,
                class_names: Sequence[str], limit: int = 3) -> list[str]:
    """Per slice in ``ids``: "person: 12, car: 3" of its objects' classes (most first, then lower class), "" if none."""
    out = [""] * len(ids)
    keep = slice_of_object >= 0
    if not keep.any():
        return out
    pairs, counts = np.unique(np.stack([slice_of_object[keep], class_idx[keep]], axis=1), axis=0,
                              return_counts=True)
    order = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))
    pos = {int(c): i for i, c in enumerate(ids)}
    parts: dict[int, list[str]] = {}
    for (sl, c), n in zip(pairs[order], counts[order], strict=True):
        if int(sl) in pos and len(parts.setdefault(int(sl), [])) < limit:
            parts[int(sl)].append(f"{class_names[int(c)]}: {int(n)}")
    for sl, items in parts.items():
        out[pos[sl]] = ", ".join(items)
    return out


#: GT / prediction outcome codes behind each dominant error type (what the gallery draws for a cluster).
_ERROR_FOCUS = {
    "fn_missed": st.Focus(gt=frozenset({int(G.FN)})),
    "fp_duplicate": st.Focus(pred=frozenset({int(P.FP_DUPLICATE)})),
    "fp_class": st.Focus(pred=frozenset({int(P.FP_CLASS)}), gt=frozenset({int(G.CONFUSED)})),
    "fp_localization": st.Focus(pred=frozenset({int(P.FP_LOCALIZATION)})),
    "fp_both": st.Focus(pred=frozenset({int(P.FP_BOTH)})),
    "fp_background": st.Focus(pred=frozenset({int(P.FP_BACKGROUND)})),
}


def error_focus(dominant: str) -> st.Focus:
    """The objects that show a dominant error type (every error when it is none or unknown)."""
    return _ERROR_FOCUS.get(str(dominant), st.ALL_ERRORS)


_OBJECT_COLUMNS = ("rank", "kind", "description", "size", "error_text", "lift_text", "dominant", "n_images",
                   "recommendation")


def object_slice_rows(slices) -> dict[str, list]:
    """The object slice table's display columns (see :data:`_OBJECT_COLUMNS`), in rank order."""
    if slices is None or len(slices) == 0:
        return {c: [] for c in _OBJECT_COLUMNS}
    return {
        "rank": [int(r) for r in slices["rank"]],
        "kind": ["GT objects" if k == "gt" else "predictions" for k in slices["kind"]],
        "description": [str(x) for x in slices["description"]],
        "size": [int(x) for x in slices["size"]],
        "error_text": [f"{e:.2f} [{lo:.2f}, {hi:.2f}]" for e, lo, hi in
                       zip(slices["error_rate"], slices["ci_low"], slices["ci_high"], strict=True)],
        "lift_text": [f"{v:.2f}×" if np.isfinite(v) else "–" for v in slices["lift"]],
        "dominant": [_ERROR_NAMES.get(str(d), str(d).replace("fp_", "")) for d in slices["dominant_error"]],
        "n_images": [int(x) for x in slices["n_images"]],
        "recommendation": [str(x) for x in slices["recommendation"]],
    }


def object_slice_focus(kind: str, dominant: str) -> st.Focus:
    """What the image-level gallery draws for an object slice: its dominant error's objects."""
    if kind == "gt":
        return st.Focus(gt=frozenset({int(G.FN), int(G.CONFUSED)}))
    return error_focus(str(dominant))


class ClustersView(View):
    name = "clusters"
    slot = "tab"
    title = "Clusters"
    depends = frozenset({"op", "selection", "level"})
    _COLUMNS = ("rank", "cluster", "label", "size", "error_rate", "error_text", "lift", "lift_text", "dominant",
                "dominant_error", "classes", "confused", "words")

    def __init__(self, ctx):
        super().__init__(ctx)
        from bokeh.models import Column, ColumnDataSource, DataTable, NumberFormatter, TableColumn

        self.source = ColumnDataSource(data={c: [] for c in self._COLUMNS}, name="clusters-source")
        num = NumberFormatter(format="0")
        self.table = DataTable(
            source=self.source, name="clusters", css_classes=["vx-clusters", "vx-wrap-cells"],
            sizing_mode="stretch_both", index_position=None, selectable=True, sortable=True, reorderable=False,
            row_height=38, autosize_mode="fit_viewport",
            columns=[
                TableColumn(field="rank", title="#", width=28, formatter=num),
                TableColumn(field="label", title="Slice", width=64),
                TableColumn(field="size", title="Images", width=56, formatter=num),
                TableColumn(field="error_text", title="Error rate [95% CI]", width=130),
                TableColumn(field="lift_text", title="Lift", width=50),
                TableColumn(field="dominant", title="Dominant error", width=100),
                TableColumn(field="classes", title="Top classes", width=170),
                TableColumn(field="confused", title="Most confused", width=170),
                TableColumn(field="words", title="Looks like (CLIP)", width=170),
            ],
        )
        self.caption = ui.text_div(text="", name="clusters-caption", css_classes=["vx-caption"],
                                   sizing_mode="stretch_width")
        self.omap = getattr(self.data, "object_map", None)
        self.object_source = self.object_table = None
        tables = [self.table]
        if self.omap is not None:
            self.object_source = ColumnDataSource(data=object_slice_rows(self.omap.slices),
                                                  name="object-slices-source")
            self.object_table = DataTable(
                source=self.object_source, name="object-slices", css_classes=["vx-object-slices", "vx-wrap-cells"],
                sizing_mode="stretch_both", index_position=None, selectable=True, sortable=True, reorderable=False,
                row_height=52, autosize_mode="force_fit", visible=False,
                columns=[
                    TableColumn(field="rank", title="#", width=28, formatter=num),
                    TableColumn(field="kind", title="Of", width=80),
                    TableColumn(field="description", title="Object slice", width=380),
                    TableColumn(field="size", title="Objects", width=60, formatter=num),
                    TableColumn(field="error_text", title="Error rate [95% CI]", width=130),
                    TableColumn(field="lift_text", title="Lift", width=50),
                    TableColumn(field="dominant", title="Dominant error", width=100),
                    TableColumn(field="recommendation", title="What to do", width=300),
                ],
            )
            tables.append(self.object_table)
        self.root = Column(self.caption, *tables, sizing_mode="stretch_both", css_classes=["vx-tab-body"])
        self._ids = np.zeros(0, np.int64)
        self._dominant: dict[int, str] = {}
        self._members: list[list[int]] = []
        self._labels: list[str] = []

    def layout(self):
        return self.root

    def compute(self, d):
        if d.state.level == "objects" and self.omap is not None:
            n = len(self.omap.slices)
            caption = (f"{n} object slices, worst first (at the build's operating point): GT objects ranked by how "
                       "surely their miss rate exceeds the run's, predictions by their false-positive rate (the "
                       "lower end of the 95% interval). Click a row to select its objects (ctrl- or shift-click "
                       "adds rows).")
            if n == 0:
                caption = "No object slice is surely worse than the run's objects."
            return {"level": "objects", "caption": caption,
                    "marked": [int(m) for m in d.state.marked("object-slices")]}
        from vecexplore.analysis.words import slice_phrases

        tab = cluster_rows(d.evaluation, self.data.images.cluster, run=self.data.run, tree=self.data.tree,
                           class_names=self.data.class_names)
        probs, vocab, hidden = self.data.words
        tab["words"] = ([""] * len(tab) if probs is None else
                        slice_phrases(probs, vocab, self.data.images.cluster, tab["members"],
                                      usable=self.data.run.images["readable"].to_numpy(bool)))
        merged = sum(len(m) > 1 for m in tab["members"])
        note = f"; {merged} join sibling clusters that fail alike (e.g. 4+9)" if merged else ""
        caption = (f"{len(tab)} slices{note}, worst first at confidence ≥ {d.state.confidence:.3f}: ranked by the "
                   "lower end of the 95% interval of their error rate; lift = error rate / the run's. Click a row "
                   "to select it (ctrl- or shift-click adds rows). Looks like: the phrases CLIP's text tower finds more "
                   "typical of the slice's images than of the run's.")
        if hidden:
            caption += f" Note: {hidden}."
        return {"tab": tab, "caption": caption, "marked": [int(m) for m in d.state.marked(self.name)],
                "level": "images"}

    def apply(self, p) -> None:
        if self.object_table is not None:
            objects = p["level"] == "objects"
            self.table.visible, self.object_table.visible = not objects, objects
            if objects:
                ranks = self.object_source.data["rank"]
                rows = [i for i, r in enumerate(ranks) if r in set(p["marked"])]
                if list(self.object_source.selected.indices) != rows:
                    self.object_source.selected.indices = rows
                self.caption.text = p["caption"]
                return
        tab = p["tab"]
        self._ids = tab["cluster"].to_numpy(np.int64)
        self._dominant = dict(zip(self._ids.tolist(), tab["dominant_error"].astype(str), strict=True))
        self._members = [[int(m) for m in ms] for ms in tab["members"]]
        self._labels = [str(x) for x in tab["label"]]
        self.source.data = {c: tab[c].to_numpy() for c in self._COLUMNS}
        rows = np.flatnonzero(np.isin(self._ids, p["marked"])).tolist()
        if list(self.source.selected.indices) != rows:
            self.source.selected.indices = rows
        self.caption.text = p["caption"]

    def wire(self, session) -> None:
        clusters = self.data.images.cluster

        def pick(_attr, old, new):
            if session.applying:
                return
            row = ui.clicked_row(old, new, len(self._ids), "clusters row")
            if row is None:
                return
            add = len(new) > 1  # SlickGrid extends the selection on ctrl/shift-click
            sid, members = int(self._ids[row]), self._members[row]
            session.emit(ev.Select(np.flatnonzero(np.isin(clusters, members)), f"cluster {self._labels[row]}",
                                   focus=error_focus(self._dominant.get(sid, "")), mode="add" if add else None,
                                   marks=((self.name, sid),)))

        self.source.selected.on_change("indices", pick)
        if self.object_table is None:
            return
        slices = self.omap.slices

        def pick_objects(_attr, old, new):
            if session.applying:
                return
            row = ui.clicked_row(old, new, len(slices), "object slices row")
            if row is None:
                return
            r = slices.iloc[row]
            session.emit(ev.Select(np.zeros(0, np.int64), f"object slice {int(r['rank'])}",
                                   focus=object_slice_focus(str(r["kind"]), str(r["dominant_error"])),
                                   mode="add" if len(new) > 1 else None, marks=(("object-slices", int(r["rank"])),),
                                   objects=np.asarray(r["object_idx"], np.int64)))

        self.object_source.selected.on_change("indices", pick_objects)
