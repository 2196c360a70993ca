"""The failure-slices table: one row per slice, worst first; a row click selects the slice.

:func:`cluster_rows` (pure) re-slices the run at the session's operating point
with :func:`vecexplore.analysis.slicing.failure_slice_table` (clusters merged
along the run's hierarchy where they fail alike; rank, size, error rate with
its Wilson interval, lift, dominant error). The ``Cluster`` column names a
slice by its clusters ("4+9" for a merged one); the GT class histogram and the
most confused pair are counted per slice (the pair at the operating point).
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


class ClustersPanel:
    """A DataTable of :func:`cluster_rows`; the controller maps a selected row to its cluster."""

    _COLUMNS = ("rank", "cluster", "label", "size", "error_rate", "error_text", "lift", "lift_text", "dominant",
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
                TableColumn(field="label", title="Cluster", width=50),
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
        self._members: list[list[int]] = []

    def show(self, tab, caption: str) -> None:
        self._ids = tab["cluster"].to_numpy(np.int64)
        self._members = [[int(m) for m in ms] for ms in tab["members"]]
        self.source.data = {c: tab[c].to_numpy() for c in self._COLUMNS}
        self.caption.text = caption

    def show_picked(self, cluster: int | None) -> None:
        """Highlight the row of ``cluster`` (None → no row)."""
        rows = [] if cluster is None else np.flatnonzero(self._ids == cluster).tolist()
        if list(self.source.selected.indices) != rows:
            self.source.selected.indices = rows

    def cluster_at(self, row: int) -> int:
        """The slice id of a row."""
        return int(self._ids[row])

    def members_at(self, row: int) -> list[int]:
        """The cluster ids of a row's slice."""
        return self._members[row]

    def slice_of(self, cluster: int) -> tuple[int, list[int]]:
        """(slice id, its clusters) of the slice that holds ``cluster`` as shown; ``(cluster, [cluster])`` if none."""
        for sid, members in zip(self._ids.tolist(), self._members, strict=True):
            if cluster in members:
                return sid, members
        return cluster, [cluster]
