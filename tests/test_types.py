"""The data model: validation on construction, id lookups, slicing, Dataset.subset."""

from __future__ import annotations

import numpy as np
import pytest

from vecexplore.errors import ValidationError, VecexploreError
from vecexplore.types import Boxes, Categories, Dataset, ImageTable, Labels


def _images(n=4, **kw):
    return ImageTable(image_id=np.arange(10, 10 + n), file_name=[f"{i}.jpg" for i in range(n)],
                      width=np.full(n, 64), height=np.full(n, 48), **kw)


def _boxes(n=3, *, pred=False, **kw):
    base = dict(image_idx=np.arange(n) % 2, class_idx=np.zeros(n, np.int64), xywh=np.tile([1.0, 2.0, 3.0, 4.0], (n, 1)),
                object_id=np.arange(1, n + 1), score=np.full(n, 0.5) if pred else None)
    base.update(kw)
    return Boxes(**base)


def _cats():
    return Categories(ids=[1, 2], names=["a", "b"])


# ---------------------------------------------------------------- Categories


def test_categories_sorted_by_id_names_follow():
    c = Categories(ids=[9, 2, 5], names=["nine", "two", "five"])
    assert c.ids.tolist() == [2, 5, 9]
    assert c.names.tolist() == ["two", "five", "nine"]
    assert not c.ids.flags.writeable and not c.names.flags.writeable


@pytest.mark.parametrize(
    "ids, names, match",
    [
        ([1, 1], ["a", "b"], "categories.ids: duplicate"),
        ([1, 2], ["a", "a"], "categories.names: duplicate"),
        ([1, 2], ["a", ""], "empty class name"),
        ([1, 2], ["a"], "expected length 2"),
        ([[1, 2]], ["a", "b"], "expected 1-D"),
        (["x", "y"], ["a", "b"], "cannot convert"),
    ],
)
def test_categories_refused(ids, names, match):
    with pytest.raises(ValidationError, match=match):
        Categories(ids=ids, names=names)


def test_categories_lookups_match_a_dict():
    rng = np.random.default_rng(0)
    ids = rng.choice(1000, size=50, replace=False)
    c = Categories(ids=ids, names=[f"n{i}" for i in ids])
    query = rng.integers(-5, 1005, size=500)
    expected = [{int(v): k for k, v in enumerate(c.ids)}.get(int(q), -1) for q in query]
    assert c.index_of_ids(query).tolist() == expected
    assert c.index_of_names(["n" + str(c.ids[3]), "nope"]).tolist() == [3, -1]


def test_categories_constructors():
    assert Categories.from_names(["x", "y"], start=1).ids.tolist() == [1, 2]
    c = Categories.from_mapping({4: "d", 0: "z"})
    assert c.ids.tolist() == [0, 4] and c.names.tolist() == ["z", "d"]


# ---------------------------------------------------------------- ImageTable


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(image_id=[1, 1]), "images.image_id: duplicate values \\[1\\]"),
        (dict(width=[64, -1]), "images.width: must be >= 0, got -1 for image id 2"),
        (dict(height=[1, 2, 3]), "images.height: expected length 2"),
        (dict(image_id=[[1, 2]]), "expected 1-D"),
        (dict(split=["train"]), "images.split: expected length 2"),
        (dict(metadata={"m": [1, 2, 3]}), "metadata\\['m'\\]: expected length 2"),
    ],
)
def test_image_table_refused(kw, match):
    base = dict(image_id=[1, 2], file_name=["a", "b"], width=[64, 64], height=[48, 48])
    base.update(kw)
    with pytest.raises(ValidationError, match=match):
        ImageTable(**base)


def test_image_table_index_of_ids_matches_a_dict():
    rng = np.random.default_rng(1)
    ids = rng.choice(10_000, size=300, replace=False)
    t = ImageTable(image_id=ids, file_name=[str(i) for i in ids], width=np.ones(300), height=np.ones(300))
    query = rng.integers(0, 10_000, size=1000)
    lookup = {int(v): k for k, v in enumerate(ids)}
    assert t.index_of_ids(query).tolist() == [lookup.get(int(q), -1) for q in query]


def test_image_table_slicing_keeps_columns_together():
    t = _images(4, split=["a", None, "b", "c"], metadata={"m": [10, 11, 12, 13], "s": ["w", "x", "y", "z"]})
    for index in (np.array([True, False, True, False]), np.array([2, 0])):
        sub = t[index]
        rows = np.arange(4)[index]
        assert sub.image_id.tolist() == (10 + rows).tolist()
        assert sub.file_name.tolist() == [f"{r}.jpg" for r in rows]
        assert sub.split.tolist() == [["a", None, "b", "c"][r] for r in rows]
        assert sub.metadata["m"].tolist() == (10 + rows).tolist()
        assert sub.metadata["s"].tolist() == [list("wxyz")[r] for r in rows]


# ---------------------------------------------------------------- Boxes


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(xywh=np.zeros((3, 3))), "boxes.xywh: expected shape \\(n, 4\\)"),
        (dict(xywh=[[1, 2, 3, 4], [np.nan, 0, 1, 1], [1, 2, 3, 4]]), "non-finite box .* \\(object id 2\\)"),
        (dict(xywh=[[1, 2, 3, 4], [1, 2, 3, 4], [0, 0, np.inf, 1]]), "non-finite box .* \\(object id 3\\)"),
        (dict(xywh=[[1, 2, 0, 4], [1, 2, 3, 4], [1, 2, 3, 4]]), "width and height must be > 0.*object id 1"),
        (dict(xywh=[[1, 2, 3, 4], [1, 2, 3, -4], [1, 2, 3, 4]]), "width and height must be > 0.*object id 2"),
        (dict(object_id=[1, 2, 1]), "boxes.object_id: duplicate values \\[1\\]"),
        (dict(image_idx=[0, -1, 0]), "boxes.image_idx: negative index at position 1"),
        (dict(class_idx=[0, 0]), "boxes.class_idx: expected length 3"),
        (dict(score=[0.5, 1.5, 0.1]), "boxes.score: must be in \\[0, 1\\], got 1.5 \\(object id 2\\)"),
        (dict(score=[0.5, np.nan, 0.1]), "boxes.score: must be in \\[0, 1\\], got nan"),
        (dict(score=[-0.1, 0.5, 0.1]), "got -0.1 \\(object id 1\\)"),
        (dict(iscrowd=[True, False]), "boxes.iscrowd: expected length 3"),
    ],
)
def test_boxes_refused(kw, match):
    with pytest.raises(ValidationError, match=match):
        _boxes(3, **kw)


def test_boxes_defaults_and_views():
    b = _boxes(2, xywh=[[1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 2.0, 0.25]])
    assert b.area.tolist() == [12.0, 0.5]
    assert b.iscrowd.tolist() == [False, False]
    assert b.xyxy.tolist() == [[1.0, 2.0, 4.0, 6.0], [0.5, 0.5, 2.5, 0.75]]
    assert not b.is_prediction and _boxes(2, pred=True).is_prediction
    assert len(Boxes.empty(predictions=True)) == 0 and Boxes.empty(predictions=True).is_prediction
    with pytest.raises(ValueError):
        b.xywh[0, 0] = 5.0  # frozen arrays


def test_boxes_slicing_keeps_columns_together():
    rng = np.random.default_rng(2)
    n = 20
    b = Boxes(image_idx=rng.integers(0, 5, n), class_idx=rng.integers(0, 3, n), xywh=rng.uniform(1, 10, (n, 4)),
              object_id=rng.permutation(n) + 100, score=rng.uniform(0, 1, n), iscrowd=rng.uniform(size=n) < 0.3)
    mask = rng.uniform(size=n) < 0.5
    for index in (mask, np.flatnonzero(mask)[::-1]):
        sub = b[index]
        for name in ("image_idx", "class_idx", "xywh", "object_id", "score", "iscrowd", "area"):
            np.testing.assert_array_equal(getattr(sub, name), getattr(b, name)[index], err_msg=name)


# ---------------------------------------------------------------- Labels


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(image_idx=[0, 0], class_idx=[0, 1]), "labels.image_idx: duplicate"),
        (dict(image_idx=[0, 1], class_idx=[0, 1], score=[0.5, 2.0]), "labels.score: must be in \\[0, 1\\], got 2.0 \\(image_idx 1\\)"),
        (dict(image_idx=[0, 1], class_idx=[0, 1], score=[0.5, 0.5], scores=[[0.5, 0.5], [0.5, np.nan]]), "labels.scores.*image_idx 1"),
        (dict(image_idx=[0, 1], class_idx=[0, 1], score=[0.5, 0.5], scores=[0.5, 0.5]), "labels.scores: expected 2-D"),
        (dict(image_idx=[0, 1], class_idx=[0, -2]), "labels.class_idx: negative index"),
    ],
)
def test_labels_refused(kw, match):
    with pytest.raises(ValidationError, match=match):
        Labels(**kw)


# ---------------------------------------------------------------- Dataset


def _detection(**kw):
    base = dict(task="detection", images=_images(4), categories=_cats(), gt=_boxes(3), pred=_boxes(2, pred=True))
    base.update(kw)
    return Dataset(**base)


def _classification(**kw):
    base = dict(task="classification", images=_images(3), categories=_cats(),
                gt=Labels(image_idx=[0, 1, 2], class_idx=[0, 1, 1]),
                pred=Labels(image_idx=[2, 0], class_idx=[1, 1], score=[0.9, 0.6], scores=[[0.1, 0.9], [0.4, 0.6]]))
    base.update(kw)
    return Dataset(**base)


@pytest.mark.parametrize(
    "make, kw, match",
    [
        (_detection, dict(task="segmentation"), "dataset.task: must be one of"),
        (_detection, dict(gt=Labels(image_idx=[0], class_idx=[0])), "dataset.gt: a detection dataset needs Boxes"),
        (_detection, dict(gt=_boxes(2, pred=True)), "ground truth must not carry scores"),
        (_detection, dict(pred=_boxes(2)), "predictions must carry scores"),
        (_detection, dict(images=_images(0)), "dataset: no images"),
        (_detection, dict(categories=Categories(ids=[], names=[])), "dataset: no categories"),
        (_detection, dict(gt=_boxes(3, image_idx=[0, 4, 1])), "dataset.gt.image_idx: index 4 at position 1 is out of range"),
        (_detection, dict(pred=_boxes(2, pred=True, class_idx=[0, 2])), "dataset.pred.class_idx: index 2"),
        (_classification, dict(pred=Labels(image_idx=[0], class_idx=[0], score=[0.5], scores=[[0.2, 0.3, 0.5]])),
         "dataset.pred.scores: expected 2 columns"),
        (_classification, dict(gt=_boxes(1)), "needs Labels"),
    ],
)
def test_dataset_refused(make, kw, match):
    with pytest.raises(ValidationError, match=match) as info:
        make(**kw)
    assert isinstance(info.value, VecexploreError)


@pytest.mark.parametrize("seed", range(5))
def test_dataset_subset_remaps_indices(seed):
    rng = np.random.default_rng(seed)
    n, k = 12, 3
    images = ImageTable(image_id=rng.permutation(n) * 7, file_name=[f"{i}.png" for i in range(n)],
                        width=rng.integers(1, 100, n), height=rng.integers(1, 100, n))

    def boxes(m, pred):
        return Boxes(image_idx=rng.integers(0, n, m), class_idx=rng.integers(0, k, m), xywh=rng.uniform(1, 5, (m, 4)),
                     object_id=np.arange(m) + 1, score=rng.uniform(0, 1, m) if pred else None)

    ds = Dataset(task="detection", images=images, categories=Categories.from_names("abc"), gt=boxes(30, False),
                 pred=boxes(25, True))
    keep = rng.choice(n, size=5, replace=False)  # any order: the subset follows it
    sub = ds.subset(keep)
    assert sub.images.image_id.tolist() == ds.images.image_id[keep].tolist()
    for name in ("gt", "pred"):
        full, part = getattr(ds, name), getattr(sub, name)
        # every kept object, in input order, pointing at the same user image id
        expected = np.flatnonzero(np.isin(full.image_idx, keep))
        assert part.object_id.tolist() == full.object_id[expected].tolist()
        assert sub.images.image_id[part.image_idx].tolist() == ds.images.image_id[full.image_idx[expected]].tolist()
        np.testing.assert_array_equal(part.xywh, full.xywh[expected])


def test_dataset_subset_classification_keeps_scores():
    ds = _classification()
    sub = ds.subset([2, 1])
    assert sub.gt.image_idx.tolist() == [1, 0] and sub.gt.class_idx.tolist() == [1, 1]  # object order kept
    assert sub.pred.image_idx.tolist() == [0]
    assert sub.pred.scores.tolist() == [[0.1, 0.9]]


def test_selection_mask_accepts_indices_or_masks_and_names_bad_ones():
    from vecexplore.errors import ValidationError
    from vecexplore.types import selection_mask

    assert selection_mask(None, 3) is None
    assert selection_mask([2, 0, 2], 3).tolist() == [True, False, True]
    assert selection_mask(np.array([False, True, False]), 3).tolist() == [False, True, False]
    assert selection_mask(np.array([], np.int64), 2).tolist() == [False, False]
    with pytest.raises(ValidationError, match=r"expected shape \(3,\)"):
        selection_mask(np.array([True, False]), 3)
    with pytest.raises(ValidationError, match=r"must be in \[0, 3\)"):
        selection_mask([0, 3], 3)


@pytest.mark.parametrize(("seed", "n", "q", "spread"), [(0, 5, 2000, 3), (1, 1000, 5000, 2), (2, 300, 100_000, 50),
                                                       (3, 2000, 3000, 1000)])
def test_index_of_ids_table_and_search_agree(seed, n, q, spread):
    """The dense table (small id span) and the sorted search give the same rows, -1 for unknown ids."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(np.arange(-spread * n, spread * n + 1), n, replace=False)
    table = ImageTable(image_id=ids, file_name=[f"{i}.jpg" for i in range(n)], width=np.ones(n, np.int64),
                       height=np.ones(n, np.int64))
    query = np.concatenate([rng.choice(ids, q), rng.integers(-3 * spread * n, 3 * spread * n, q // 4)])
    rng.shuffle(query)
    expected = np.array([int(np.flatnonzero(ids == v)[0]) if (ids == v).any() else -1 for v in query[:3000]])
    got = table.index_of_ids(query)
    np.testing.assert_array_equal(got[:3000], expected)
    span = int(ids.max() - ids.min()) + 1
    assert (table._index_by_table(query) is not None) == (span <= 8 * (len(query) + n))
    small = table.index_of_ids(query[:100])  # below the table's threshold: the sorted search
    np.testing.assert_array_equal(small, got[:100])
    np.testing.assert_array_equal(table.index_of_ids(query[:2000].reshape(-1, 4)), got[:2000].reshape(-1, 4))
