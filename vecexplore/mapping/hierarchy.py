"""The cluster hierarchy, and the rule that turns clusters into failure slices.

HDBSCAN builds a condensed tree of clusters and then selects a flat set of them
(excess of mass). That selection is about density, not failures: it may cut one
coherent failure mode (dark scenes whose objects are missed) into two sibling
clusters. :class:`ClusterTree` keeps the part of the condensed tree above the
selected clusters, so the slice granularity can be chosen from the hierarchy at
any operating point (the app re-scores slices when the thresholds move).

**The merge rule** (:func:`merge_siblings`). Walk the tree bottom-up. A node
becomes one slice, the union of its children's images, when

1. every child is itself one slice (a leaf cluster, or a node already merged),
2. every child is *surely worse* than the run: the Wilson 95 % lower bound of its
   mean per-image error rate is above the run's mean (the slice ranking's test),
3. the children's *failure profiles agree* pairwise (decided by the caller's
   ``agree``; :func:`vecexplore.analysis.slicing.profiles_agree` requires the
   same dominant error type, overlapping Wilson intervals on the error rate,
   and mostly the same distinctive traits), and
4. the union is surely worse too (it is whenever 2 holds; stated so that the
   rule reads: the highest node that stays surely worse and agrees).

Otherwise each child stays its own slice, and so do its ancestors' other
branches. Clusters that are not surely worse never merge: HDBSCAN's granularity
is kept where nothing fails. A slice is named by its smallest cluster id.

Node numbering of a :class:`ClusterTree`: nodes ``0..K-1`` are the clusters
(the same ids as the labels); nodes ``K..M-1`` are their ancestors in the
condensed tree, in HDBSCAN's order (the root first).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np

from vecexplore.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd

#: The run table that stores the tree (``RUN/cluster_tree.parquet``).
#: Columns of ``cluster_tree.parquet`` (see :meth:`ClusterTree.to_frame`).
TREE_COLUMNS = ("node", "parent", "size", "lambda_birth")


@dataclass(frozen=True, eq=False)
class ClusterTree:
    """The clusters and their ancestors in HDBSCAN's condensed tree.

    Attributes:
        n_clusters: K; nodes ``0..K-1`` are the clusters of the labels.
        parent: (M,) int64, the parent node of each node; -1 for a root.
            Parents are always internal nodes (ids >= K).
        size: (M,) int64, points in the node when it was born (a cluster's
            size at birth, which includes points that later fell out as noise).
        lambda_birth: (M,) float64, 1 / distance at which the node was born
            (0 for a root).
    """

    n_clusters: int
    parent: np.ndarray
    size: np.ndarray
    lambda_birth: np.ndarray

    def __post_init__(self):
        m = len(self.parent)
        for name in ("size", "lambda_birth"):
            if len(getattr(self, name)) != m:
                raise ValidationError(f"cluster tree: {name} has {len(getattr(self, name))} rows, parent {m}")
        if not 0 <= self.n_clusters <= m:
            raise ValidationError(f"cluster tree: {self.n_clusters} clusters but {m} nodes")
        p = self.parent
        if ((p < -1) | (p >= m)).any() or ((p >= 0) & (p < self.n_clusters)).any():
            raise ValidationError("cluster tree: a parent is not an internal node (ids K..M-1) or -1")
        _depths(p)  # raises on a cycle

    @classmethod
    def flat(cls, n_clusters: int) -> ClusterTree:
        """K clusters without a hierarchy (what an old run or a degenerate clustering has)."""
        return cls(n_clusters, np.full(n_clusters, -1, np.int64), np.zeros(n_clusters, np.int64),
                   np.zeros(n_clusters, np.float64))

    @classmethod
    def from_condensed(cls, condensed: np.ndarray, raw_labels: np.ndarray, new_id: np.ndarray) -> ClusterTree:
        """The tree above the selected clusters of a fitted HDBSCAN.

        Args:
            condensed: ``HDBSCAN.condensed_tree_.to_numpy()`` (fields parent,
                child, lambda_val, child_size; point rows have child < n).
            raw_labels: (n,) HDBSCAN's own labels (-1 noise).
            new_id: (K,) int64, the id each raw label is renumbered to.
        """
        n = len(raw_labels)
        parent, child = condensed["parent"].astype(np.int64), condensed["child"].astype(np.int64)
        up = {int(c): int(p) for p, c in zip(parent[child >= n], child[child >= n], strict=True)}
        born = {int(c): (int(s), float(lam)) for c, s, lam in
                zip(child, condensed["child_size"], condensed["lambda_val"], strict=True) if c >= n}
        fell_from = np.full(n, -1, np.int64)
        pts = child < n
        fell_from[child[pts]] = parent[pts]
        k = len(new_id)
        selected = np.empty(k, np.int64)
        for raw in range(k):
            selected[new_id[raw]] = _common_ancestor(np.unique(fell_from[raw_labels == raw]), up)
        keep = set()
        for node in selected.tolist():
            node = up.get(node)
            while node is not None and node not in keep:
                keep.add(node)
                node = up.get(node)
        internal = sorted(keep)
        index = {node: k + i for i, node in enumerate(internal)}
        index.update({int(node): i for i, node in enumerate(selected)})
        nodes = [*selected.tolist(), *internal]
        return cls(
            k,
            np.array([index.get(up.get(v, -1), -1) for v in nodes], np.int64),
            np.array([born.get(v, (n, 0.0))[0] for v in nodes], np.int64),
            np.array([born.get(v, (n, 0.0))[1] for v in nodes], np.float64),
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per node, columns :data:`TREE_COLUMNS` (``node`` = row position)."""
        import pandas as pd

        return pd.DataFrame({"node": np.arange(len(self.parent)), "parent": self.parent, "size": self.size,
                             "lambda_birth": self.lambda_birth})

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, n_clusters: int) -> ClusterTree:
        """Inverse of :meth:`to_frame` (``n_clusters`` = K, the clusters of the labels)."""
        missing = [c for c in TREE_COLUMNS if c not in frame.columns]
        if missing:
            raise ValidationError(f"cluster tree: missing column(s) {missing}")
        frame = frame.sort_values("node")
        if frame["node"].tolist() != list(range(len(frame))):
            raise ValidationError("cluster tree: nodes must be 0..M-1")
        return cls(int(n_clusters), frame["parent"].to_numpy(np.int64), frame["size"].to_numpy(np.int64),
                   frame["lambda_birth"].to_numpy(np.float64))


def _common_ancestor(nodes: np.ndarray, up: dict[int, int]) -> int:
    """The deepest condensed-tree node that is an ancestor-or-self of every node in ``nodes``."""
    def chain(v: int) -> list[int]:
        out = [v]
        while out[-1] in up:
            out.append(up[out[-1]])
        return out

    common = chain(int(nodes[0]))
    for v in nodes[1:]:
        mine = set(chain(int(v)))
        common = [c for c in common if c in mine]
    return common[0]


def _depths(parent: np.ndarray) -> np.ndarray:
    depth = np.full(len(parent), -1, np.int64)
    for v in range(len(parent)):
        path, u = [], v
        while u >= 0 and depth[u] < 0:
            if u in path:
                raise ValidationError("cluster tree: the parent links form a cycle")
            path.append(u)
            u = int(parent[u])
        base = -1 if u < 0 else int(depth[u])
        for i, w in enumerate(reversed(path)):
            depth[w] = base + 1 + i
    return depth


def merge_siblings(tree: ClusterTree, profile: Callable[[tuple[int, ...]], Any],
                   agree: Callable[[Any, Any], bool]) -> np.ndarray:
    """Apply the merge rule (module docstring) and return each cluster's slice.

    Args:
        tree: the hierarchy.
        profile: cluster ids (a sorted tuple) → their failure profile; any object
            with a boolean ``surely_worse`` attribute. Called for leaves and for
            candidate unions only, so it may be costly.
        agree: whether two profiles describe the same failure.

    Returns:
        (K,) int64: the slice id of each cluster, the smallest cluster id of its slice.
    """
    k = tree.n_clusters
    children: list[list[int]] = [[] for _ in tree.parent]
    for v, p in enumerate(tree.parent.tolist()):
        if p >= 0:
            children[p].append(v)
    group: dict[int, tuple[int, ...]] = {v: (v,) for v in range(k)}  # nodes that are one slice
    cache: dict[tuple[int, ...], Any] = {}

    def prof(members: tuple[int, ...]):
        if members not in cache:
            cache[members] = profile(members)
        return cache[members]

    depth = _depths(tree.parent)
    for v in sorted(range(k, len(tree.parent)), key=lambda u: (-depth[u], u)):
        kids = children[v]
        if not kids or any(c not in group for c in kids):
            continue
        parts = [prof(group[c]) for c in kids]
        if not all(p.surely_worse for p in parts) or not all(agree(a, b) for a, b in combinations(parts, 2)):
            continue
        union = tuple(sorted(m for c in kids for m in group[c]))
        if prof(union).surely_worse:
            group[v] = union
    out = np.arange(k, dtype=np.int64)
    for v, members in group.items():
        if v >= k and (tree.parent[v] < 0 or int(tree.parent[v]) not in group):
            out[list(members)] = min(members)
    return out


def slice_labels(labels: np.ndarray, slice_of: np.ndarray) -> np.ndarray:
    """(n,) int64 slice id of each image from its cluster label (-1 stays -1)."""
    labels = np.asarray(labels, np.int64)
    out = np.full(labels.shape, -1, np.int64)
    member = labels >= 0
    out[member] = np.asarray(slice_of, np.int64)[labels[member]]
    return out


def slice_members(slice_of: np.ndarray) -> dict[int, list[int]]:
    """Slice id → its cluster ids, ascending."""
    out: dict[int, list[int]] = {}
    for c, s in enumerate(np.asarray(slice_of).tolist()):
        out.setdefault(int(s), []).append(c)
    return out


def members_text(members: Sequence[int]) -> str:
    """"4" for one cluster, "4+9+12" for a merged slice."""
    return "+".join(str(int(m)) for m in members)
