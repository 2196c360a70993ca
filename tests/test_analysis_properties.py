"""Performance by property (bins) and property importance on planted synthetic runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vecexplore.analysis.bins import (
    assign_bins,
    image_property_bins,
    object_property_bins,
    quantile_edges,
)
from vecexplore.analysis.importance import rank_properties, score_property


def test_quantile_edges_and_assignment():
    v = np.arange(100, dtype=float)
    edges = quantile_edges(v, 4)
    assert edges.tolist() == [0, 25, 50, 74, 99]
    bins = assign_bins(v, edges)
    assert np.bincount(bins).tolist() == [25, 25, 24, 26]
    assert assign_bins(np.array([np.nan, -5, 1e9]), edges).tolist() == [-1, 0, 3]


def test_discrete_values_give_fewer_bins_and_constant_gives_one():
    edges = quantile_edges(np.array([1, 1, 1, 2, 2, 3] * 10, float), 10)
    assert edges.tolist() == [1, 2, 3, 3]
    assert np.bincount(assign_bins(np.array([1, 1, 1, 2, 2, 3] * 10, float), edges)).tolist() == [30, 20, 10]
    const = quantile_edges(np.full(5, 7.0), 10)
    assert assign_bins(np.full(5, 7.0), const).tolist() == [0] * 5
    assert quantile_edges(np.array([np.nan]), 10).size == 0


def _detection_table(tp, fp, fn):
    tp, fp, fn = (np.asarray(a, np.int64) for a in (tp, fp, fn))
    return pd.DataFrame({"tp": tp, "fp": fp, "fn": fn, "n_gt": tp + fn})


def test_image_bins_rates_by_hand():
    values = np.array([0.1, 0.2, 0.8, 0.9, 0.1, 0.2, 0.8, 0.9])
    table = _detection_table(tp=[0, 1, 3, 3] + [0] * 4, fp=[2, 1, 0, 1] + [0] * 4, fn=[2, 1, 0, 0] + [0] * 4)
    bt = image_property_bins(values, table, task="detection", prop="brightness", n_bins=2)
    assert bt.count.tolist() == [4, 4]
    assert bt.rate["precision"].tolist() == [pytest.approx(1 / 4), pytest.approx(6 / 7)]
    assert bt.rate["fn_rate"].tolist() == [pytest.approx(3 / 4), 0.0]
    assert bt.overall["precision"] == pytest.approx(7 / 11)
    assert [m.tolist() for m in bt.image_idx] == [[0, 1, 4, 5], [2, 3, 6, 7]]
    assert bt.to_pandas()["label"].tolist() == ["0.1–0.8", "0.8–0.9"]


def test_image_bins_classification_accuracy():
    table = pd.DataFrame({"label": [0, 1, 1, -1], "correct": [True, False, True, False]})
    bt = image_property_bins(np.array([1.0, 1.0, 5.0, 5.0]), table, task="classification", prop="p", n_bins=2)
    assert bt.rate["accuracy"].tolist() == [0.5, 1.0]  # the unlabelled image counts in no rate
    assert bt.overall["accuracy"] == pytest.approx(2 / 3)


def test_object_bins_use_objects_not_images():
    gt_area = np.array([0.001, 0.002, 0.5, 0.6])
    gt_missed = np.array([True, True, False, False])
    pred_area = np.array([0.001, 0.55, 0.6, 0.001])
    pred_tp = np.array([False, True, True, False])
    counted = np.array([True, True, True, False])  # the last is below the threshold
    bt = object_property_bins(
        gt_area, gt_missed, np.array([0, 1, 1, 2]), pred_area, pred_tp, counted, np.array([3, 1, 2, 4]),
        prop="relative_area", n_bins=2,
    )
    assert bt.rate["fn_rate"].tolist() == [1.0, 0.0]
    assert bt.rate["precision"].tolist() == [0.0, 1.0]
    assert [m.tolist() for m in bt.image_idx] == [[0, 1, 3], [1, 2]]


def _planted(seed=0, n=3000):
    rng = np.random.default_rng(seed)
    props = {name: rng.uniform(0, 1, n) for name in ("brightness", "contrast", "sharpness", "colorfulness")}
    props["n_objects"] = rng.integers(0, 8, n).astype(float)
    dark = props["brightness"] < 0.2
    error = np.where(dark, rng.uniform(0.6, 1.0, n), rng.uniform(0.0, 0.3, n))
    return props, error


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_property_ranks_first_with_direction(seed):
    props, error = _planted(seed)
    ranked = rank_properties(props, error, seed=seed)
    assert ranked[0].prop == "brightness"
    assert ranked[0].direction == "lower"
    assert ranked[0].mutual_information > 3 * ranked[1].mutual_information
    assert all(r.direction == "none" for r in ranked[1:])
    assert "lower brightness" in ranked[0].sentence()


def test_object_property_can_outrank_image_properties():
    props, _ = _planted(5)
    rng = np.random.default_rng(99)
    error = rng.uniform(0, 1, len(props["brightness"]))  # image error unrelated to anything
    area = rng.uniform(0, 1, 4000)
    missed = (area < 0.1) | (rng.random(4000) < 0.05)
    ranked = rank_properties(props, error, {"relative_area": area}, missed, seed=0)
    assert (ranked[0].prop, ranked[0].level, ranked[0].direction) == ("relative_area", "object", "lower")


def test_degenerate_inputs_do_not_crash():
    imp = score_property(np.ones(50), np.arange(50.0), prop="c", level="image")
    assert imp.mutual_information == 0.0 and imp.direction == "none"
    assert score_property(np.array([1.0, np.nan]), np.array([0.0, 1.0]), prop="x", level="image").n == 1
