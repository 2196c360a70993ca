"""The failure-clusters table: one row per cluster, worst first; a row click selects the cluster.

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


class ClustersPanel:
    """A DataTable of :func:`cluster_rows`; the controller maps a selected row to its cluster."""

    _COLUMNS = ("rank", "cluster", "size", "error_rate", "error_text", "lift", "lift_text", "dominant",
                "classes", "confused")

    def __init__(self, *, width: int = 630, height: int = 560):
        from bokeh.models import ColumnDataSource, DataTable, NumberFormatter, TableColumn

        self.source = ColumnDataSource(data={c: [] for c in self._COLUMNS}, name="clusters-source")
        num = NumberFormatter(format="0")
        self.table = DataTable(
            source=self.source, name="clusters", css_classes=["vx-clusters"], width=width, height=height,
            index_position=None, selectable=True, sortable=True, reorderable=False, row_height=26,
            columns=[
                TableColumn(field="rank", title="#", width=26, formatter=num),
                TableColumn(field="cluster", title="Cluster", width=50, formatter=num),
                TableColumn(field="size", title="Images", width=52, formatter=num),
                TableColumn(field="error_text", title="Error rate [95% CI]", width=122),
                TableColumn(field="lift_text", title="Lift", width=46),
                TableColumn(field="dominant", title="Dominant error", width=92),
                TableColumn(field="classes", title="Top classes", width=120),
                TableColumn(field="confused", title="Most confused", width=118),
            ],
        )
        from vecexplore.app.ui import text_div

        self.caption = text_div(text="", name="clusters-caption", css_classes=["vx-caption"])
        self._ids = np.zeros(0, np.int64)

    def show(self, tab, caption: str) -> None:
        self._ids = tab["cluster"].to_numpy(np.int64)
        self.source.data = {c: tab[c].to_numpy() for c in self._COLUMNS}
        self.caption.text = caption

    def show_picked(self, cluster: int | None) -> None:
        """Highlight the row of ``cluster`` (None → no row)."""
        rows = [] if cluster is None else np.flatnonzero(self._ids == cluster).tolist()
        if list(self.source.selected.indices) != rows:
            self.source.selected.indices = rows

    def cluster_at(self, row: int) -> int:
        return int(self._ids[row])
