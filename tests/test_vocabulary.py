"""One home per concept: IoU, rates and the error-type vocabulary, each checked
against its reference and held to a single definition in the source."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from vecexplore.eval.iou import box_iou, pair_iou
from vecexplore.eval.outcomes import ERROR_TYPE_NAMES, ERROR_TYPES, FP_TYPES
from vecexplore.rates import (
    precision_recall_f1,
    ratio,
    scalar_precision_recall_f1,
    scalar_ratio,
    wilson_interval,
)

SRC = Path(__file__).resolve().parents[1] / "vecexplore"


def _boxes(rng, n):
    # integer grids make IoU land exactly on ties; mixed with continuous ones
    xy = np.where(rng.random((n, 2)) < 0.5, rng.integers(0, 20, (n, 2)), rng.uniform(0, 20, (n, 2)))
    wh = np.where(rng.random((n, 2)) < 0.5, rng.integers(1, 10, (n, 2)), rng.uniform(0.5, 10, (n, 2)))
    return np.hstack([xy, wh]).astype(np.float64)


@pytest.mark.parametrize("seed", range(4))
def test_the_three_ious_are_pycocotools_bit_for_bit(seed):
    from pycocotools import mask as mask_utils

    from vecexplore.eval.coco_kernels import iou_matrix

    rng = np.random.default_rng(seed)
    dt, gt = _boxes(rng, 40), _boxes(rng, 30)
    crowd = rng.random(30) < 0.3
    ref = np.asarray(mask_utils.iou(dt.tolist(), gt.tolist(), crowd.astype(np.uint8).tolist()))
    ours = box_iou(dt, gt, crowd)
    assert np.array_equal(ours, ref)
    assert np.array_equal(np.asarray(iou_matrix(dt, gt, crowd)), ref)
    i, j = np.meshgrid(np.arange(40), np.arange(30), indexing="ij")
    assert np.array_equal(pair_iou(dt[i.ravel()], gt[j.ravel()], crowd[j.ravel()]), ref.ravel())


def test_box_iou_of_nothing_is_empty():
    assert box_iou(np.zeros((0, 4)), np.ones((3, 4))).shape == (0, 3)


@pytest.mark.parametrize("seed", range(3))
def test_rates_follow_their_rule_and_sklearn(seed):
    from sklearn.metrics import precision_recall_fscore_support

    rng = np.random.default_rng(seed)
    k = 6
    y = rng.integers(0, k, 300)
    p = np.where(rng.random(300) < 0.6, y, rng.integers(0, k, 300))
    p[p == 5] = 4  # class 5 never predicted: precision's empty case
    y[y == 3] = 2  # class 3 never labelled: recall's empty case
    tp = np.bincount(y[y == p], minlength=k)
    fp = np.bincount(p, minlength=k) - tp
    fn = np.bincount(y, minlength=k) - tp
    ours = precision_recall_f1(tp, fp, fn, empty=0.0)
    ref = precision_recall_fscore_support(y, p, labels=range(k), zero_division=0)[:3]
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-15)
    nan_rule = precision_recall_f1(tp, fp, fn)
    assert np.isnan(nan_rule[0][5]) and np.isnan(nan_rule[1][3])
    assert scalar_precision_recall_f1(0, 0, 0)[2] != scalar_precision_recall_f1(0, 0, 0)[2]  # NaN
    assert scalar_precision_recall_f1(3, 1, 2) == (0.75, 0.6, 6 / 9)
    assert np.isnan(scalar_ratio(1, 0)) and scalar_ratio(1, 0, empty=0.0) == 0.0
    np.testing.assert_array_equal(ratio([1, 2, 3], [2, 0, 3], empty=-1.0), [0.5, -1.0, 1.0])


@pytest.mark.parametrize("seed", range(3))
def test_wilson_equals_scipy(seed):
    from scipy.stats import binomtest

    rng = np.random.default_rng(seed)
    n = rng.integers(1, 400, 50)
    k = rng.integers(0, n + 1)
    low, high = wilson_interval(k, n)
    for i in range(50):
        ci = binomtest(int(k[i]), int(n[i])).proportion_ci(confidence_level=0.95, method="wilson")
        assert low[i] == pytest.approx(ci.low, abs=2e-4) and high[i] == pytest.approx(ci.high, abs=2e-4)
    lo0, hi0 = wilson_interval(0, 0)
    assert (float(lo0), float(hi0)) == (0.0, 1.0)


def test_error_types_have_one_vocabulary():
    assert (*(c.label for c in FP_TYPES), "fn_missed") == ERROR_TYPES
    assert len(ERROR_TYPE_NAMES) == len(ERROR_TYPES) == 6
    from vecexplore.app import ui

    assert tuple(ui.ERROR_TYPE_COLOURS)[1:] == ERROR_TYPE_NAMES


def _sources():
    return {p.relative_to(SRC).as_posix(): p.read_text() for p in SRC.rglob("*.py")}


def test_each_concept_is_written_once():
    src = _sources()
    names = re.compile(r'"duplicate",\s*"class",\s*"localization"')
    columns = re.compile(r'"fp_duplicate",\s*"fp_class",\s*"fp_localization",\s*"fp_both"')
    wilson = re.compile(r"def \w*wilson\w*\(")
    iou_formula = re.compile(r"np\.minimum\(\w+ \+ \w+, \w+ \+ \w+\) - np\.maximum")
    assert [f for f, t in src.items() if names.search(t)] == ["eval/outcomes.py"]
    assert [f for f, t in src.items() if columns.search(t)] == []  # derived from the codes
    assert [f for f, t in src.items() if wilson.search(t)] == ["rates.py"]
    assert sorted(f for f, t in src.items() if iou_formula.search(t)) == ["eval/iou.py"]


def test_the_run_files_are_named_only_in_the_layout():
    """Every file of a run is spelled once, in ``vecexplore.store.layout``; everything
    else (writer, reader, run check, build, stages, views, info) uses its constant."""
    import ast

    from vecexplore.store import layout

    names = {v for k, v in vars(layout).items() if k.isupper() and isinstance(v, str) and "." in v[1:]}
    tables = [v for k, v in vars(layout).items() if k.isupper() and isinstance(v, str) and "." not in v
              and v not in (layout.EXPORTS, layout.SELECTIONS, layout.TAGS)]
    names |= {layout.table_file(t) for t in tables}
    assert {"manifest.json", "images.parquet", "embeddings.npy", "thumbs.bin", "label_issues.parquet"} <= names
    offenders = []
    for path in SRC.rglob("*.py"):
        if path == SRC / "store" / "layout.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno} {node.value!r}")
    assert not offenders, "run file names spelled outside store/layout.py:\n" + "\n".join(offenders)
