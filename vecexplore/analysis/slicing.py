"""Failure slices: HDBSCAN clusters, merged along the hierarchy where one failure mode was split.

:func:`failure_slice_table` is what the build writes as ``clusters.parquet`` and
what the app re-scores at other operating points: the slice table
(:func:`~vecexplore.mapping.slices.slice_table`) of the clusters after the merge
rule of :mod:`vecexplore.mapping.hierarchy`, with a ``members`` column (the
cluster ids of each slice; one id for a cluster HDBSCAN already got right).

A **failure profile** (:class:`Profile`) is what the rule compares: the slice's
mean per-image error rate with its Wilson 95 % interval, whether it is surely
worse than the run (the lower bound above the run's mean), its dominant error
type, and its traits (:func:`~vecexplore.analysis.describe.describe_images`:
the property sides it is over-represented on). Two profiles agree
(:func:`profiles_agree`) when

* their dominant error types are the same,
* their error-rate intervals overlap (the rates are not surely different), and
* when the dominant error is a confusion, the pair of classes most taken for
  each other is the same pair (that names the failure, whatever else the
  images look like); otherwise at least half of their traits are shared
  (Jaccard ≥ 1/2: most of what sets one apart also sets the other apart), or
  neither has a trait. When one set is images another finding picked out of
  the other's failure (``part``), at least half of the other's own traits must
  be the first's (none: ordinary images failing the same way).

A trait counts here only when it holds for the family of property sides
tested (the Wilson bound at the Bonferroni quantile over every side, about
3.1 for 28 sides), with a set's objects counted as at most one observation per
image: a dozen images always show a trait or two by chance, and the missed
objects of one image are not independent draws. Without this, a few dark
images outside a tail of grey ones (wide, with large objects) made the tail
and the darkness tail two findings of one mode.

Traits are computed only for siblings that pass the first tests, so re-scoring
at a new operating point stays cheap.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from vecexplore.eval.outcomes import ERROR_TYPES
from vecexplore.mapping.hierarchy import ClusterTree, merge_siblings, slice_labels, slice_members
from vecexplore.mapping.slices import slice_table
from vecexplore.rates import wilson_interval

if TYPE_CHECKING:
    import pandas as pd

#: Share of the two trait sets that must be common for profiles to agree (a majority).
MIN_TRAIT_JACCARD = 0.5
#: Dominant errors that name a pair of classes (detection FP-class, classification misclassified).
CONFUSION_ERRORS = ("fp_class", "misclassified")


class Profile:
    """The failure profile of a set of clusters (see the module docstring); traits are computed on first use."""

    def __init__(self, members, size: int, mass: float, errors: dict[str, float], overall: float, describe,
                 trait_z: float = 1.96):
        self.members, self.size, self.errors = members, size, errors
        self._trait_z = trait_z
        self.rate = mass / size if size else 0.0
        low, high = wilson_interval(mass if size else 0.0, size)
        self.ci_low, self.ci_high = float(low), float(high)
        self.surely_worse = size > 0 and self.ci_low > overall
        best = max(errors, key=lambda e: errors[e]) if errors else "none"
        self.dominant_error = best if errors and errors[best] > 0 else "none"
        self._describe = describe

    @cached_property
    def description(self):
        """:func:`~vecexplore.analysis.describe.describe_images` of the set (computed once, on first use)."""
        return self._describe(self.members)

    @cached_property
    def traits(self) -> frozenset[tuple[str, str, str]]:
        """(prop, level, side) of each trait of the slice's images that holds for the whole family of
        property sides tested: its Wilson lower bound at the Bonferroni quantile stays above the run's share
        (a dozen images, tested on some thirty sides, show one or two by chance). An object trait counts
        its objects as at most one observation per image of the set: the objects of one image are not
        independent draws (a few images with several large missed objects are not a trait)."""
        out = []
        for t in self.description.traits:
            scale = min(1.0, self.size / t.total) if t.level == "object" and t.total else 1.0
            if float(wilson_interval(t.count * scale, t.total * scale, z=self._trait_z)[0]) > t.base:
                out.append((t.prop, t.level, t.side))
        return frozenset(out)

    @cached_property
    def top_confusion(self) -> frozenset | None:
        """The two classes most often taken for each other in the set (unordered), None without confusions."""
        confusions = self.description.confusions
        return frozenset(confusions[0][:2]) if confusions else None


def profiles_agree(a: Profile, b: Profile, *, part: bool = False) -> bool:
    """Whether two profiles describe the same failure (module docstring).

    ``part``: ``a`` is images another finding picked out of ``b``'s failure (by a
    property tail, say), so it carries that selection's traits on top of the
    failure's; ``b`` then agrees when at least half of its own traits are ``a``'s
    too (a few images outside a tail show a trait or two of their own by chance:
    14 dark images beyond a tail of grey ones had large boxes besides darkness).
    """
    if a.dominant_error != b.dominant_error:
        return False
    if a.ci_high < b.ci_low or b.ci_high < a.ci_low:
        return False
    if a.dominant_error in CONFUSION_ERRORS and a.top_confusion and b.top_confusion:
        return a.top_confusion == b.top_confusion  # the same two classes taken for each other: one failure
    ta, tb = a.traits, b.traits
    if not ta and not tb:
        return True
    if part:  # a's extra traits are its selection's: b agrees when most of b's own traits are a's too
        return len(ta & tb) >= MIN_TRAIT_JACCARD * len(tb)
    return len(ta & tb) >= MIN_TRAIT_JACCARD * len(ta | tb)


def family_z(run, task: str) -> float:
    """The normal quantile that keeps the chance of any false trait at 5 % over every property side
    :func:`~vecexplore.analysis.describe.describe_images` tests (Bonferroni, two sides per property)."""
    from statistics import NormalDist

    from vecexplore.analysis.quality import image_properties_of
    from vecexplore.properties import OBJECT_PROPERTIES

    sides = 2 * (len(image_properties_of(run, task)) + (len(OBJECT_PROPERTIES) if task == "detection" else 0))
    return NormalDist().inv_cdf(1 - 0.025 / max(1, sides))


class FailureProfiles:
    """Profiles of sets of clusters of one labelling at one operating point (callable: members → Profile),
    or of any image mask (:meth:`of_mask`; ``labels`` may then be None)."""

    def __init__(self, run, ev, labels: np.ndarray | None = None):
        from vecexplore.analysis.describe import describe_images

        n = ev.dataset.num_images
        labels = np.full(n, -1, np.int64) if labels is None else np.asarray(labels, np.int64)
        self.labels = labels
        k = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
        per_image = ev.per_image
        member = labels >= 0
        code = labels[member]
        rate = per_image["error_rate"].to_numpy(np.float64)
        self.overall = float(rate.mean()) if rate.size else 0.0
        self.size = np.bincount(code, minlength=k)
        self.mass = np.bincount(code, weights=rate[member], minlength=k)
        if ev.task == "detection":
            columns = {e: per_image[e].to_numpy(np.float64) for e in ERROR_TYPES}
        else:
            correct = per_image["correct"].to_numpy(bool)
            pred = per_image["prediction"].to_numpy(np.int64)
            columns = {"misclassified": (~correct & (pred >= 0)).astype(np.float64),
                       "no_prediction": (~correct & (pred < 0)).astype(np.float64)}
        self.errors = {e: np.bincount(code, weights=v[member], minlength=k) for e, v in columns.items()}
        self._rate, self._columns = rate, columns
        self.trait_z = family_z(run, ev.task)
        self._describe = lambda members: describe_images(run, ev, np.isin(labels, members))
        self._describe_mask = lambda mask: describe_images(run, ev, mask)

    def of_mask(self, mask: np.ndarray) -> Profile:
        """The profile of any set of images ((N,) bool)."""
        return Profile(mask, int(mask.sum()), float(self._rate[mask].sum()),
                       {e: float(v[mask].sum()) for e, v in self._columns.items()}, self.overall,
                       self._describe_mask, self.trait_z)

    def __call__(self, members: tuple[int, ...]) -> Profile:
        idx = list(members)
        return Profile(members, int(self.size[idx].sum()), float(self.mass[idx].sum()),
                       {e: float(v[idx].sum()) for e, v in self.errors.items()}, self.overall, self._describe,
                       self.trait_z)


def same_failure(run, ev):
    """``(common, extra) → bool`` for :func:`~vecexplore.analysis.findings.merge_findings`: the
    ``extra`` images are surely worse than the run too, and their profile agrees with ``common``'s."""
    profiles = FailureProfiles(run, ev)

    def alike(common: np.ndarray, extra: np.ndarray) -> bool:
        more = profiles.of_mask(extra)
        return more.surely_worse and profiles_agree(profiles.of_mask(common), more, part=True)

    return alike


def other_failure(run, ev):
    """``(common, extra) → bool`` for :func:`~vecexplore.analysis.findings.merge_findings`: the
    ``extra`` images are surely worse than the run, and their profile does not agree with
    ``common``'s (a second failure, not ordinary images that only dilute the first)."""
    profiles = FailureProfiles(run, ev)

    def otherwise(common: np.ndarray, extra: np.ndarray) -> bool:
        more = profiles.of_mask(extra)
        return more.surely_worse and not profiles_agree(profiles.of_mask(common), more, part=True)

    return otherwise


def merge_clusters(run, ev, labels: np.ndarray, tree: ClusterTree | None) -> np.ndarray:
    """(K,) int64 slice id of each cluster under the merge rule (identity without a tree)."""
    labels = np.asarray(labels, np.int64)
    k = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
    if tree is None or tree.n_clusters != k:
        return np.arange(k, dtype=np.int64)
    return merge_siblings(tree, FailureProfiles(run, ev, labels), profiles_agree)


def failure_slice_table(run, ev, labels: np.ndarray, tree: ClusterTree | None, *, objects=None,
                        class_names=None) -> pd.DataFrame:
    """The slice table of the merged clusters, ranked, with ``members`` (list of cluster ids).

    Args:
        run: a Run or RunTables aligned with ``ev`` (images with properties, for traits).
        ev: the evaluation at the operating point.
        labels: (n,) HDBSCAN cluster per image, -1 noise.
        tree: the run's :class:`ClusterTree`; None = every cluster its own slice.
        objects, class_names: as :func:`~vecexplore.mapping.slices.slice_table`.

    Returns:
        The columns of ``slice_table`` (``cluster`` = the slice id, its smallest
        member) plus ``members``.
    """
    slice_of = merge_clusters(run, ev, labels, tree)
    table = slice_table(ev.per_image, slice_labels(labels, slice_of), task=ev.task, objects=objects,
                        class_names=class_names)
    members = slice_members(slice_of)
    import pandas as pd

    # An object Series of int lists (stored as list<int64>), also when there is no slice at all.
    table["members"] = pd.Series([members[int(c)] for c in table["cluster"]], index=table.index, dtype=object)
    return table


def table_slice_labels(table, labels: np.ndarray) -> np.ndarray:
    """(n,) slice id of each image under a slice table's ``members`` (-1 for noise and unlisted clusters)."""
    labels = np.asarray(labels, np.int64)
    k = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
    slice_of = np.full(k, -1, np.int64)
    for row in table.itertuples(index=False):
        for m in members_of(row):
            if 0 <= m < k:
                slice_of[m] = int(row.cluster)
    out = np.full(labels.shape, -1, np.int64)
    member = labels >= 0
    out[member] = slice_of[labels[member]]
    return out


def read_tree(run) -> ClusterTree | None:
    """The run's cluster hierarchy, or None for a run built before it was stored."""
    from vecexplore.errors import RunStoreError
    from vecexplore.store.layout import CLUSTER_TREE

    try:
        frame = run.table(CLUSTER_TREE)
    except RunStoreError:
        return None
    labels = run.images["cluster"].to_numpy(np.int64)
    k = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
    return ClusterTree.from_frame(frame, k)


def members_of(row) -> list[int]:
    """A slice row's cluster ids (old runs without ``members``: the row's own cluster)."""
    members = getattr(row, "members", None) if not isinstance(row, dict) else row.get("members")
    if members is None or (isinstance(members, float) and np.isnan(members)):
        cluster = row["cluster"] if isinstance(row, dict) else row.cluster
        return [int(cluster)]
    return [int(m) for m in members]
