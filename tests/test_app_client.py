"""Values from the browser: the pure checks of :mod:`vecexplore.app.client`."""

from __future__ import annotations

import numpy as np
import pytest

from vecexplore.app import client


@pytest.mark.parametrize(
    ("indices", "n", "expected"),
    [
        ([], 5, []),
        ([3, 1, 3], 5, [1, 3]),
        ([0, 4], 5, [0, 4]),
        ([-1], 5, None),  # never wrapped to the last row
        ([-1, -2], 5, None),
        ([5], 5, None),
        ([2**63 + 1], 5, None),
        ([1.5], 5, None),
        ([True], 5, None),
        (["1"], 5, None),
        ("12", 5, None),
        (None, 5, None),
        (np.array([1, 2]), 5, [1, 2]),
    ],
)
def test_rows(indices, n, expected):
    got = client.rows(indices, n)
    assert (got is None) if expected is None else got.tolist() == expected


def test_first_row_is_the_tapped_row():
    assert client.first_row([4, 1], 5) == 4
    assert client.first_row([], 5) is None
    assert client.first_row([4, 9], 5) is None


@pytest.mark.parametrize(
    ("values", "k", "expected"),
    [
        ([], 3, ()),
        (["2", "0", "2"], 3, (0, 2)),
        (["3"], 3, None),
        (["-1"], 3, None),
        (["01"], 3, None),
        (["1.0"], 3, None),
        (["١"], 3, None),  # non-ASCII digit
        ([1], 3, None),
        ("1", 3, None),
    ],
)
def test_class_values(values, k, expected):
    assert client.class_values(values, k) == expected


def test_split_values():
    assert client.split_values(["b", "a", "b"], {"a", "b"}) == ("a", "b")
    assert client.split_values([], {"a"}) == ()
    assert client.split_values(["c"], {"a", "b"}) is None
    assert client.split_values([None], {"a"}) is None


@pytest.mark.parametrize(("value", "expected"), [(0, 0.0), (1, 1.0), (0.25, 0.25), (1.0001, None), (-0.1, None),
                                                   (float("nan"), None), (float("inf"), None), (True, None),
                                                   ("0.5", None), (None, None)])
def test_unit_float(value, expected):
    assert client.unit_float(value) == expected


def test_iou_value_is_one_of_the_choices():
    choices = (0.5, 0.55, 0.75)
    assert client.iou_value("0.55", choices) == 0.55
    assert client.iou_value("0.56", choices) is None
    assert client.iou_value("junk", choices) is None
    assert client.iou_value(None, choices) is None


def test_choice():
    assert client.choice("a", {"a", "b"}) == "a"
    assert client.choice("c", {"a", "b"}) is None
    assert client.choice([1], {"a"}) is None  # unhashable junk
    assert client.choice(1, range(3)) == 1
