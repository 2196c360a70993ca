"""The cluster hierarchy: read from HDBSCAN's condensed tree, and the merge rule on hand-built trees.

``merge_siblings`` is tested with stand-in profiles (a tag that says which failure a
cluster has, and whether it is surely worse), so each case states the rule it checks;
``merge_clusters`` is tested on synthetic runs whose profiles come from the real
describe/Wilson machinery.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from _quality_helpers import detection_dataset, run_tables

from vecexplore.analysis.slicing import failure_slice_table, merge_clusters, table_slice_labels
from vecexplore.errors import ValidationError
from vecexplore.eval.evaluate import evaluate
from vecexplore.mapping import cluster
from vecexplore.mapping.hierarchy import ClusterTree, merge_siblings, slice_labels, slice_members


@dataclass(frozen=True)
class Tag:
    """A stand-in profile: ``kind`` names the failure, ``surely_worse`` as the real one."""

    kind: str
    surely_worse: bool


def profiles(tags: dict[int, Tag], union_worse: bool = True):
    """members → Tag: a leaf's own tag; a union takes its members' kind if they share one."""
    def profile(members):
        if len(members) == 1:
            return tags[members[0]]
        kinds = {tags[m].kind for m in members}
        return Tag(kinds.pop() if len(kinds) == 1 else "mixed", union_worse)
    return profile


def same_kind(a: Tag, b: Tag) -> bool:
    return a.kind == b.kind


def tree(n_clusters: int, parent: list[int]) -> ClusterTree:
    m = len(parent)
    return ClusterTree(n_clusters, np.array(parent, np.int64), np.ones(m, np.int64), np.zeros(m))


# Nodes 0..K-1 are clusters; 4 = (0, 1); 5 = (4, 2); 6 = root (5, 3).
TREE4 = tree(4, [4, 4, 5, 6, 5, 6, -1])


@pytest.mark.parametrize(("tags", "want", "rule"), [
    ({0: Tag("dark", True), 1: Tag("dark", True), 2: Tag("clean", False), 3: Tag("clean", False)},
     [0, 0, 2, 3], "siblings that fail alike merge"),
    ({0: Tag("dark", True), 1: Tag("blur", True), 2: Tag("dark", True), 3: Tag("clean", False)},
     [0, 1, 2, 3], "siblings that fail differently stay apart, and so do their parent's other branches"),
    ({0: Tag("dark", True), 1: Tag("dark", True), 2: Tag("dark", True), 3: Tag("clean", False)},
     [0, 0, 0, 3], "the highest node that stays surely worse and agrees is taken, not the root"),
    ({0: Tag("clean", False), 1: Tag("clean", False), 2: Tag("clean", False), 3: Tag("clean", False)},
     [0, 1, 2, 3], "clusters that are not surely worse keep HDBSCAN's granularity"),
    ({0: Tag("dark", True), 1: Tag("dark", False), 2: Tag("clean", False), 3: Tag("clean", False)},
     [0, 1, 2, 3], "a sibling that is not surely worse does not join a failing one"),
])
def test_merge_rule_on_a_hand_built_tree(tags, want, rule):
    assert merge_siblings(TREE4, profiles(tags), same_kind).tolist() == want, rule


def test_a_parent_is_taken_only_while_the_union_is_surely_worse():
    tags = {0: Tag("dark", True), 1: Tag("dark", True), 2: Tag("clean", False), 3: Tag("clean", False)}
    assert merge_siblings(TREE4, profiles(tags, union_worse=False), same_kind).tolist() == [0, 1, 2, 3]


def test_a_node_with_three_children_merges_only_when_all_agree():
    t = tree(3, [3, 3, 3, -1])
    dark = {c: Tag("dark", True) for c in range(3)}
    assert merge_siblings(t, profiles(dark), same_kind).tolist() == [0, 0, 0]
    mixed = {**dark, 2: Tag("blur", True)}
    assert merge_siblings(t, profiles(mixed), same_kind).tolist() == [0, 1, 2]


def test_profiles_are_asked_only_for_leaves_and_candidate_unions():
    asked = []
    tags = {0: Tag("dark", True), 1: Tag("blur", True), 2: Tag("dark", True), 3: Tag("clean", False)}
    base = profiles(tags)
    merge_siblings(TREE4, lambda m: asked.append(m) or base(m), same_kind)
    assert sorted(asked) == [(0,), (1,)]  # node 4 disagrees; nodes 5 and 6 have a child that is not one slice


def test_slice_labels_and_members():
    slice_of = np.array([0, 0, 2, 3])
    assert slice_labels(np.array([1, -1, 2, 0, 3]), slice_of).tolist() == [0, -1, 2, 0, 3]
    assert slice_members(slice_of) == {0: [0, 1], 2: [2], 3: [3]}


def test_tree_validation_and_round_trip():
    with pytest.raises(ValidationError, match="internal node"):
        tree(2, [1, -1])  # a cluster cannot be a parent
    with pytest.raises(ValidationError, match="cycle"):
        tree(1, [1, 2, 1])
    back = ClusterTree.from_frame(TREE4.to_frame(), 4)
    np.testing.assert_array_equal(back.parent, TREE4.parent)
    assert ClusterTree.flat(3).parent.tolist() == [-1, -1, -1]


def test_tree_from_hdbscan_matches_its_labels():
    """Each cluster of the tree is HDBSCAN's: its ancestors hold it, and nested blobs give siblings."""
    rng = np.random.default_rng(0)
    centres = [(0, 0), (0.9, 0), (10, 10), (10.9, 10)]  # two pairs of close blobs, far apart
    x = np.concatenate([rng.normal(c, 0.15, (40, 2)) for c in centres])
    c = cluster(x, min_cluster_size=10, min_samples=5)
    t = c.tree
    assert t.n_clusters == c.n_clusters == 4
    assert (t.parent[: t.n_clusters] >= t.n_clusters).all()  # clusters hang off internal nodes
    blob = np.repeat(np.arange(4), 40)
    leaf_of_blob = [int(np.bincount(c.labels[blob == b][c.labels[blob == b] >= 0]).argmax()) for b in range(4)]
    assert t.parent[leaf_of_blob[0]] == t.parent[leaf_of_blob[1]]  # close blobs are siblings
    assert t.parent[leaf_of_blob[2]] == t.parent[leaf_of_blob[3]]
    assert t.parent[leaf_of_blob[0]] != t.parent[leaf_of_blob[2]]
    assert (t.size[: t.n_clusters] >= np.bincount(c.labels[c.labels >= 0])).all()


def _run_with_sibling_clusters(bright_second: bool):
    """Clusters 0, 1 (siblings) fail on dark images; cluster 2 is clean; 30 images each."""
    n = 90
    p_find = np.r_[np.full(60, 0.1), np.full(30, 0.97)]
    ds = detection_dataset(5, n_images=n, p_find=p_find, p_flip=0.0, fp_rate=0.0, crowd=0.0,
                           min_objects=2, max_objects=4)
    rng = np.random.default_rng(1)
    brightness = np.r_[rng.uniform(0.0, 0.05, 30), rng.uniform(0.0, 0.05, 30), rng.uniform(0.3, 0.9, 30)]
    if bright_second:
        brightness[30:60] = rng.uniform(0.95, 1.0, 30)
    labels = np.repeat([0, 1, 2], 30)
    tables, ev, _ = run_tables(ds, evaluate(ds), props={"brightness": brightness}, labels=labels)
    return tables, ev, labels


@pytest.mark.parametrize(("bright_second", "want"), [(False, [0, 0, 2]), (True, [0, 1, 2])])
def test_real_profiles_merge_dark_siblings_and_keep_different_ones_apart(bright_second, want):
    tables, ev, labels = _run_with_sibling_clusters(bright_second)
    t = tree(3, [3, 3, 4, 4, -1])  # 3 = (0, 1); 4 = root (3, 2)
    assert merge_clusters(tables, ev, labels, t).tolist() == want
    table = failure_slice_table(tables, ev, labels, t)
    assert sorted(map(list, table["members"])) == sorted(map(list, slice_members(np.array(want)).values()))
    np.testing.assert_array_equal(table_slice_labels(table, labels), slice_labels(labels, np.array(want)))
    assert merge_clusters(tables, ev, labels, None).tolist() == [0, 1, 2]  # no tree: no merge
