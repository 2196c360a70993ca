"""Label issues in a built run: stored by the build, computed for older runs, in info, findings and the app."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from vecexplore.analysis.label_issues import (
    COLUMNS,
    label_issues,
    of_run,
    to_json,
)
from vecexplore.errors import RunStoreError
from vecexplore.eval.evaluate import evaluate
from vecexplore.info import run_summary
from vecexplore.runcheck import open_run
from vecexplore.store import Run


def _ev(run):
    config = run.manifest["config"]
    kw = {"iou": float(config["iou"])} if run.task == "detection" else {}
    return evaluate(run.dataset(), confidence=config.get("confidence"), **kw)


@pytest.mark.parametrize("which", ["demo_run", "demo_run_classification"])
def test_the_build_stores_the_label_issues_of_its_operating_point(which, request):
    path = request.getfixturevalue(which)[0]
    run = Run(path)
    assert (path / "label_issues.parquet").exists()
    stored = of_run(run)
    assert list(stored.columns) == list(COLUMNS)
    fresh = label_issues(_ev(run))
    pd.testing.assert_frame_equal(stored.reset_index(drop=True), fresh, check_dtype=False)
    assert np.all(np.diff(stored["score"].to_numpy()) <= 0)
    assert "labels" in run.manifest["timings"]


@pytest.mark.parametrize("which", ["demo_run", "demo_run_classification"])
def test_info_lists_the_likely_ones_and_an_older_run_computes_them(which, request, tmp_path):
    path = request.getfixturevalue(which)[0]
    summary = run_summary(open_run(path))
    items = summary["label_issues"]
    issues = of_run(Run(path))
    assert len(items) == int(issues["likely"].sum()) > 0
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)
    for item in items:
        assert set(item) >= {"image_id", "annotation_id", "kind", "score"}
        if item["kind"] in ("missing", "wrong_label"):
            assert item["annotation_id"] is None
        else:
            assert isinstance(item["annotation_id"], int)
    json.dumps(summary)  # JSON-safe
    old = tmp_path / "old"
    shutil.copytree(path, old)
    (old / "label_issues.parquet").unlink()
    assert run_summary(open_run(old))["label_issues"] == items
    assert not (old / "label_issues.parquet").exists()  # reading never writes


def test_a_damaged_label_issue_table_is_named(demo_run, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(demo_run[0], bad)
    (bad / "label_issues.parquet").write_bytes(b"not parquet")
    with pytest.raises(RunStoreError, match=r"label_issues\.parquet"):
        open_run(bad)


def test_info_text_shows_a_short_table(demo_run, capsys):
    from vecexplore.cli._render import render_info

    summary = run_summary(open_run(demo_run[0]))
    render_info(summary)
    out = capsys.readouterr().out
    assert "Likely label errors" in out
    top = summary["label_issues"][0]
    assert str(top["image_id"]) in out and top["kind"] in out


@pytest.mark.parametrize("which", ["demo_run", "demo_run_classification"])
def test_the_mislabeled_finding_selects_the_likely_images(which, request):
    path = request.getfixturevalue(which)[0]
    run = Run(path)
    rec = next(r for r in run.json("recommendations.json") if r["kind"] == "label_errors")
    issues = of_run(run)
    images = np.unique(issues["image_idx"].to_numpy()[issues["likely"].to_numpy()])
    assert rec["selection"]["image_idx"] == images.tolist()
    assert rec["title"].startswith(f"{len(images)} images are likely mislabeled: review these first")
    assert 0 < rec["severity"] <= 1


def test_to_json_names_the_classes():
    issues = pd.DataFrame({"image_idx": [0, 1], "image_id": [5, 6], "annotation_id": pd.array([3, None], "Int64"),
                           "kind": ["wrong_class", "missing"], "score": [0.9, 0.8], "likely": [True, True],
                           "class_idx": [0, -1], "suggested_class_idx": [1, 0]})
    assert to_json(issues, ["cat", "dog"]) == [
        {"image_id": 5, "annotation_id": 3, "kind": "wrong_class", "score": 0.9, "class": "cat",
         "suggested_class": "dog"},
        {"image_id": 6, "annotation_id": None, "kind": "missing", "score": 0.8, "class": None,
         "suggested_class": "cat"}]


def test_where_knows_the_label_issue_columns(demo_run):
    from vecexplore.analysis.label_issues import image_scores
    from vecexplore.export import select_where

    run = Run(demo_run[0])
    issues = of_run(run)
    likely = np.unique(issues["image_idx"].to_numpy()[issues["likely"].to_numpy()])
    np.testing.assert_array_equal(select_where(run, "label_error"), likely)
    scores = image_scores(issues, len(run.images))
    np.testing.assert_array_equal(select_where(run, "label_issue > 0.5"), np.flatnonzero(scores > 0.5))
