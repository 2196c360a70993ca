"""Failure slices: the Wilson interval against its textbook formula, per-cluster
sums against a pandas groupby, class statistics on hand-built tables, ranking."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from vecexplore.errors import ValidationError
from vecexplore.eval.outcomes import ERROR_TYPES
from vecexplore.mapping import slice_table, wilson_interval
from vecexplore.mapping.slices import DETECTION_COUNTS


def wilson_reference(s: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """Wilson (1927) score interval, scalar, straight from the formula."""
    if n == 0:
        return 0.0, 1.0
    p = s / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


# ---------------------------------------------------------------- Wilson


def test_wilson_matches_the_formula_on_random_inputs():
    rng = np.random.default_rng(0)
    n = rng.integers(1, 500, 300).astype(float)
    s = rng.uniform(0, 1, 300) * n
    low, high = wilson_interval(s, n)
    ref = np.array([wilson_reference(a, b) for a, b in zip(s, n, strict=True)])
    np.testing.assert_allclose(low, ref[:, 0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(high, ref[:, 1], rtol=1e-12, atol=1e-15)
    assert ((low <= s / n) & (s / n <= high)).all()


@pytest.mark.parametrize(
    ("s", "n", "z", "low", "high"),
    [
        (8, 10, 1.96, 0.4901568, 0.9433191),  # textbook example: 0.490–0.943
        (0, 10, 1.96, 0.0, 0.2775402),  # p = 0: low is exactly 0
        (10, 10, 1.96, 0.7224598, 1.0),  # p = 1: high is exactly 1
        (0, 0, 1.96, 0.0, 1.0),  # n = 0: nothing known
        (50, 100, 1.0, 0.4502481, 0.5497519),
    ],
)
def test_wilson_known_values_and_edges(s, n, z, low, high):
    lo, hi = wilson_interval(s, n, z=z)
    assert lo == pytest.approx(low, abs=1e-7) and hi == pytest.approx(
        high, abs=1e-7
    )  # hand-computed
    if s == 0:
        assert lo == 0.0
    if s == n:
        assert hi == 1.0


def test_wilson_narrows_with_more_data():
    n = np.array([10, 100, 1000, 10000])
    low, high = wilson_interval(0.3 * n, n)
    assert (np.diff(high - low) < 0).all()


@pytest.mark.parametrize(("s", "n"), [(-1, 5), (6, 5), (1, -2), (np.nan, 5)])
def test_wilson_rejects_impossible_counts(s, n):
    with pytest.raises(ValueError):
        wilson_interval(s, n)


# ---------------------------------------------------------------- tables


def detection_table(rng, n: int) -> pd.DataFrame:
    """A random per-image detection table obeying the contract's identities."""
    c = {k: rng.poisson(lam, n) for k, lam in [("tp", 2), ("fn_missed", 0.7)]}
    for t in ERROR_TYPES[:-1]:
        c[t] = rng.poisson(0.3, n)
    c["fp"] = sum(c[t] for t in ERROR_TYPES[:-1])
    c["fn"] = c["fn_missed"] + c["fp_class"]  # each class confusion consumes a GT
    c["n_gt"] = c["tp"] + c["fn"]
    c["n_pred"] = c["tp"] + c["fp"]
    tp, fp, fn = c["tp"], c["fp"], c["fn"]
    with np.errstate(invalid="ignore", divide="ignore"):
        c["error_rate"] = np.where(tp + fp + fn > 0, (fp + fn) / np.maximum(tp + fp + fn, 1), 0.0)
    df = pd.DataFrame(
        {
            "image_idx": np.arange(n),
            **{k: np.asarray(v, np.int64) for k, v in c.items() if k != "error_rate"},
        }
    )
    df["error_rate"] = c["error_rate"]
    return df


def test_detection_sums_equal_a_groupby():
    rng = np.random.default_rng(1)
    per_image = detection_table(rng, 400)
    labels = rng.integers(-1, 6, 400)
    table = slice_table(per_image, labels, task="detection")
    ref = per_image[labels >= 0].groupby(labels[labels >= 0])
    table = table.set_index("cluster").sort_index()
    assert table.index.tolist() == list(range(6))
    for col in DETECTION_COUNTS:
        np.testing.assert_array_equal(table[col].to_numpy(), ref[col].sum().to_numpy())
    np.testing.assert_array_equal(table["size"].to_numpy(), ref.size().to_numpy())
    np.testing.assert_allclose(table["error_rate"].to_numpy(), ref["error_rate"].mean().to_numpy())
    overall = per_image["error_rate"].mean()  # over every image, noise included
    np.testing.assert_allclose(table["lift"], table["error_rate"] / overall)
    low, _ = wilson_interval(table["error_rate"] * table["size"], table["size"])
    np.testing.assert_allclose(table["score"], low - overall)
    np.testing.assert_allclose(table["precision"], table["tp"] / (table["tp"] + table["fp"]))
    totals = table[list(ERROR_TYPES)].to_numpy()
    assert table["dominant_error"].tolist() == [ERROR_TYPES[i] for i in totals.argmax(axis=1)]


def test_rank_orders_by_score_then_size_then_id():
    # Clusters 0 and 1 are identical (same size, same rate): the lower id ranks first.
    # Cluster 2 has the same rate but more images: surer, so ranked above both.
    rate = np.array([0.9] * 10 + [0.9] * 10 + [0.9] * 40 + [0.1] * 100)
    labels = np.repeat([1, 0, 2, 3], [10, 10, 40, 100])
    per_image = pd.DataFrame(
        {
            "image_idx": np.arange(160),
            "label": 0,
            "prediction": 0,
            "correct": rate < 0.5,
            "error_rate": rate,
        }
    )
    table = slice_table(per_image, labels, task="classification")
    assert table["cluster"].tolist() == [2, 0, 1, 3]
    assert table["rank"].tolist() == [1, 2, 3, 4]
    assert (np.diff(table["score"]) <= 0).all()


def test_noise_is_never_a_slice_and_all_noise_gives_no_rows():
    per_image = detection_table(np.random.default_rng(2), 30)
    table = slice_table(per_image, np.full(30, -1), task="detection")
    assert len(table) == 0 and {"cluster", "rank", "score", "dominant_error"} <= set(table.columns)
    labels = np.r_[np.full(10, -1), np.zeros(20, int)]
    assert slice_table(per_image, labels, task="detection")["cluster"].tolist() == [0]


def test_lift_is_nan_when_nothing_fails():
    per_image = pd.DataFrame(
        {"image_idx": range(4), "label": 0, "prediction": 0, "correct": True, "error_rate": 0.0}
    )
    table = slice_table(per_image, np.array([0, 0, 1, 1]), task="classification")
    assert table["lift"].isna().all()
    assert (table["dominant_error"] == "none").all() and (table["ci_low"] == 0).all()


def test_detection_class_statistics_from_objects():
    # Two images in cluster 0, one in cluster 1. Classes: 0 person, 1 car, 2 dog.
    per_image = detection_table(np.random.default_rng(3), 3)
    rows = [
        # kind, image, class, outcome, match_class
        ("gt", 0, 0, "tp", 0),
        ("gt", 0, 0, "fn", -1),
        ("gt", 1, 0, "fn", -1),
        ("gt", 1, 1, "confused", 2),
        ("gt", 1, 1, "crowd", -1),  # crowd: never counted
        ("gt", 2, 2, "fn", -1),
        ("pred", 0, 0, "tp", 0),
        ("pred", 1, 2, "fp_class", 1),
        ("pred", 1, 2, "fp_background", -1),
        ("pred", 2, 1, "fp_class", 2),
    ]
    objects = pd.DataFrame(
        rows, columns=["kind", "image_idx", "class_idx", "outcome", "match_class_idx"]
    )
    objects["object_id"] = np.arange(len(objects))
    table = slice_table(
        per_image,
        np.array([0, 0, 1]),
        task="detection",
        objects=objects,
        class_names=["person", "car", "dog"],
    ).set_index("cluster")
    assert table.loc[0, "top_classes"] == "person: 3, car: 1"
    assert (table.loc[0, "most_missed_class"], table.loc[0, "most_missed_count"]) == ("person", 2)
    assert (table.loc[0, "most_confused"], table.loc[0, "most_confused_count"]) == ("car → dog", 1)
    assert table.loc[1, "top_classes"] == "dog: 1"
    assert table.loc[1, "most_confused"] == "dog → car"
    without = slice_table(per_image, np.array([0, 0, 1]), task="detection")
    assert (without["top_classes"] == "").all() and (without["most_missed_count"] == 0).all()


def test_classification_counts_and_confusions():
    per_image = pd.DataFrame(
        {
            "image_idx": range(6),
            "label": [0, 0, 1, 1, 1, 2],
            "prediction": [0, 1, 2, 2, -1, 2],
            "correct": [True, False, False, False, False, True],
        }
    )
    per_image["error_rate"] = 1.0 - per_image["correct"]
    table = slice_table(per_image, np.array([0, 0, 0, 0, 0, 1]), task="classification").set_index(
        "cluster"
    )
    row = table.loc[0]
    assert (
        row["size"],
        row["n_correct"],
        row["n_incorrect"],
        row["n_misclassified"],
        row["n_no_prediction"],
    ) == (5, 1, 4, 3, 1)
    assert row["dominant_error"] == "misclassified" and row["accuracy"] == pytest.approx(0.2)
    assert (row["top_classes"], row["most_missed_class"], row["most_missed_count"]) == (
        "1: 3, 0: 2",
        "1",
        3,
    )
    assert (row["most_confused"], row["most_confused_count"]) == ("1 → 2", 2)
    assert table.loc[1, "most_confused"] == "" and table.loc[1, "dominant_error"] == "none"


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda df, lab: (df.drop(columns="fp_class"), lab), r"missing column\(s\) \['fp_class'\]"),
        (lambda df, lab: (df, lab[:-1]), "labels has shape"),
        (
            lambda df, lab: (df.assign(error_rate=np.r_[df.error_rate[:-1], 1.5]), lab),
            "image_idx 9: error_rate 1.5",
        ),
        (
            lambda df, lab: (df.assign(error_rate=np.r_[np.nan, df.error_rate[1:]]), lab),
            "image_idx 0: error_rate nan",
        ),
    ],
)
def test_bad_tables_are_named(mutate, match):
    per_image, labels = mutate(detection_table(np.random.default_rng(4), 10), np.zeros(10, int))
    with pytest.raises(ValidationError, match=match):
        slice_table(per_image, labels, task="detection")


def test_objects_on_unknown_images_are_named():
    per_image = detection_table(np.random.default_rng(5), 3)
    objects = pd.DataFrame(
        {
            "kind": ["gt"],
            "image_idx": [7],
            "class_idx": [0],
            "outcome": ["fn"],
            "match_class_idx": [-1],
        }
    )
    with pytest.raises(ValidationError, match="objects table: row 0: image_idx 7"):
        slice_table(per_image, np.zeros(3, int), task="detection", objects=objects)


# ---------------------------------------------------------------- with the evaluation engine


def random_detection_outcomes(seed: int, n_images: int = 12, n_classes: int = 3):
    """Random GT and jittered / wrong-class / spurious predictions, matched at IoU 0.5, confidence 0.3."""
    from vecexplore.eval.matching import match_detections
    from vecexplore.eval.outcomes import resolve_outcomes
    from vecexplore.types import Boxes

    rng = np.random.default_rng(seed)
    n_gt = 5 * n_images
    g_img, g_cls = rng.integers(0, n_images, n_gt), rng.integers(0, n_classes, n_gt)
    g_box = np.c_[rng.integers(0, 40, (n_gt, 2)), rng.integers(4, 16, (n_gt, 2))].astype(float)
    take = rng.random(n_gt) < 0.8
    p_img, p_box = g_img[take], g_box[take] + rng.integers(-3, 4, (take.sum(), 4)).clip(-2)
    p_cls = np.where(
        rng.random(take.sum()) < 0.7, g_cls[take], rng.integers(0, n_classes, take.sum())
    )
    extra = 2 * n_images
    p_img = np.r_[p_img, rng.integers(0, n_images, extra)]
    p_cls = np.r_[p_cls, rng.integers(0, n_classes, extra)]
    p_box = np.r_[p_box, np.c_[rng.integers(0, 50, (extra, 2)), rng.integers(2, 12, (extra, 2))]]
    gt = Boxes(g_img, g_cls, g_box, np.arange(n_gt) + 1, iscrowd=rng.random(n_gt) < 0.05)
    pred = Boxes(p_img, p_cls, p_box, np.arange(len(p_img)) + 1000, score=rng.random(len(p_img)))
    matching = match_detections(gt, pred, iou=0.5, num_images=n_images, num_classes=n_classes)
    return resolve_outcomes(matching, confidence=0.3)


@pytest.mark.parametrize("seed", range(5))
def test_cluster_confusion_agrees_with_the_slice_counts(seed):
    from vecexplore.eval.confusion import ConfusionMatrix
    from vecexplore.eval.outcomes import image_table, objects_table
    from vecexplore.mapping import cluster_confusion

    outcomes = random_detection_outcomes(seed)
    names = ["a", "b", "c"]
    full = ConfusionMatrix.from_outcomes(outcomes, names=names)
    labels = np.random.default_rng(seed).integers(-1, 3, 12)
    table = slice_table(
        image_table(outcomes), labels, task="detection", objects=objects_table(outcomes)
    )
    total = np.zeros_like(full.counts)
    for row in table.itertuples():
        cm = cluster_confusion(full, labels, cluster=row.cluster)
        direct = ConfusionMatrix.from_outcomes(outcomes, names=names, images=labels == row.cluster)
        np.testing.assert_array_equal(cm.counts, direct.counts)
        c = cm.counts
        assert np.trace(c[:3, :3]) == row.tp
        assert c[:3, 3].sum() == row.fn_missed
        assert c[:3, :3].sum() - np.trace(c[:3, :3]) == row.fp_class
        assert c[3, :3].sum() == row.fp - row.fp_class
        assert c[:3].sum() == row.n_gt
        total += c
    noise = labels == -1
    if noise.any():
        total += full.subset(noise).counts
    np.testing.assert_array_equal(total, full.counts)  # clusters + noise partition the images


def test_cluster_confusion_classification_equals_sklearn_on_the_cluster():
    from sklearn.metrics import confusion_matrix

    from vecexplore.eval.confusion import ConfusionMatrix
    from vecexplore.mapping import cluster_confusion

    rng = np.random.default_rng(7)
    label, prediction = rng.integers(0, 4, 200), rng.integers(-1, 4, 200)
    labels = rng.integers(-1, 5, 200)
    full = ConfusionMatrix.from_labels(label=label, prediction=prediction, names=list("wxyz"))
    for c in range(5):
        keep = (labels == c) & (prediction >= 0)
        ref = confusion_matrix(label[keep], prediction[keep], labels=range(4))
        np.testing.assert_array_equal(cluster_confusion(full, labels, cluster=c).counts, ref)
    with pytest.raises(ValidationError, match="noise"):
        cluster_confusion(full, labels, cluster=-1)
    with pytest.raises(ValidationError, match="covers 200 images"):
        cluster_confusion(full, labels[:10], cluster=0)
