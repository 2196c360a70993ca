"""The failure-clusters table: one row per cluster, worst first; a row click selects the cluster
(ctrl/shift-clicking more rows adds them).

:func:`cluster_rows` (pure) re-scores the clusters at the session's operating
point with :func:`vecexplore.mapping.slices.slice_table` (rank, size, error
rate with its Wilson interval, lift, dominant error); detection takes the GT
class histogram from the run's clusters table (it does not depend on the
operating point) and the most confused pair from the FP-class matches at the
operating point.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vecexplore.app import client, ui
from vecexplore.app import events as ev
from vecexplore.app import state as st
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


def cluster_rows(evaluation, labels: np.ndarray, *, stored, class_names: Sequence[str]):
    """The table at ``evaluation``'s operating point (a pandas DataFrame, worst first).

    Columns: ``cluster, rank, size, error_rate, ci_low, ci_high, lift`` (as
    ``slice_table``) and the display strings ``error_text, lift_text, dominant,
    classes, confused``.
    """
    from vecexplore.mapping.slices import slice_table

    task = evaluation.task
    per_image = evaluation.per_image
    tab = slice_table(per_image, labels, task=task, objects=None, class_names=class_names)
    ids = tab["cluster"].to_numpy(np.int64)
    if task == "detection":
        mt, fp = evaluation.matching, evaluation.outcomes.fp_class
        p, g = mt.pair_pred[fp], mt.pair_gt[fp]
        confused = most_confused(np.asarray(labels)[mt.pred.image_idx[p]], mt.gt.class_idx[g],
                                 mt.pred.class_idx[p], ids, class_names)
        classes = dict(zip(stored["cluster"].to_numpy(np.int64), stored["top_classes"].astype(str), strict=True))
        tab["classes"] = [classes.get(int(c), "") for c in ids]
        tab["confused"] = confused
    else:
        tab["classes"] = tab["top_classes"].astype(str)
        tab["confused"] = [f"{m} ({c})" if m else "" for m, c in
                           zip(tab["most_confused"], tab["most_confused_count"], strict=True)]
    tab["error_text"] = [f"{e:.2f} [{lo:.2f}, {hi:.2f}]" for e, lo, hi in
                         zip(tab["error_rate"], tab["ci_low"], tab["ci_high"], strict=True)]
    tab["lift_text"] = [f"{v:.2f}×" if np.isfinite(v) else "–" for v in tab["lift"]]
    tab["dominant"] = [_ERROR_NAMES.get(str(d), str(d)) for d in tab["dominant_error"]]
    return tab


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


class ClustersView(View):
    name = "clusters"
    slot = "tab"
    title = "Clusters"
    depends = frozenset({"op", "selection"})
    _COLUMNS = ("rank", "cluster", "size", "error_rate", "error_text", "lift", "lift_text", "dominant",
                "dominant_error", "classes", "confused")

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
                TableColumn(field="cluster", title="Cluster", width=52, formatter=num),
                TableColumn(field="size", title="Images", width=56, formatter=num),
                TableColumn(field="error_text", title="Error rate [95% CI]", width=130),
                TableColumn(field="lift_text", title="Lift", width=50),
                TableColumn(field="dominant", title="Dominant error", width=100),
                TableColumn(field="classes", title="Top classes", width=170),
                TableColumn(field="confused", title="Most confused", width=170),
            ],
        )
        self.caption = ui.text_div(text="", name="clusters-caption", css_classes=["vx-caption"],
                                   sizing_mode="stretch_width")
        self.root = Column(self.caption, self.table, sizing_mode="stretch_both", css_classes=["vx-tab-body"])
        self._ids = np.zeros(0, np.int64)
        self._dominant: dict[int, str] = {}

    def layout(self):
        return self.root

    def compute(self, d):
        tab = cluster_rows(d.evaluation, self.data.images.cluster, stored=self.data.clusters,
                           class_names=self.data.class_names)
        caption = (f"{len(tab)} clusters, worst first at confidence ≥ {d.state.confidence:.3f}: ranked by the lower "
                   "end of the 95% interval of their error rate; lift = error rate / the run's. Click a row to "
                   "select it (ctrl- or shift-click adds rows).")
        return {"tab": tab, "caption": caption, "marked": [int(m) for m in d.state.marked(self.name)]}

    def apply(self, p) -> None:
        tab = p["tab"]
        self._ids = tab["cluster"].to_numpy(np.int64)
        self._dominant = dict(zip(self._ids.tolist(), tab["dominant_error"].astype(str), strict=True))
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
            rows = client.rows(new, len(self._ids))
            if rows is None:
                ui.refused("clusters row", new)
                return
            added = [int(r) for r in new if r not in set(old)]
            if not added:
                return
            add = len(new) > 1  # SlickGrid extends the selection on ctrl/shift-click
            cluster = int(self._ids[added[-1]])
            session.emit(ev.Select(np.flatnonzero(clusters == cluster), f"cluster {cluster}",
                                   focus=error_focus(self._dominant.get(cluster, "")), mode="add" if add else None,
                                   marks=((self.name, cluster),)))

        self.source.selected.on_change("indices", pick)
