"""The run store: atomic writes, refusal to clobber, schema checks, round trip."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pandas as pd
import pytest

from vecexplore.buildlock import GRACE_SECONDS
from vecexplore.errors import RunStoreError
from vecexplore.store import MANIFEST, SCHEMA_VERSION, Run, atomic_write_json, json_safe, write_run


def _write_minimal(writer, task="detection"):
    writer.write_json("categories.json", [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}])
    images = pd.DataFrame(
        {
            "image_idx": [0, 1],
            "image_id": [10, 20],
            "file_name": ["a.jpg", "b.jpg"],
            "width": [64, 32],
            "height": [48, 32],
        }
    )
    if task == "classification":
        images["gt_class_idx"] = [0, 1]
        images["pred_class_idx"] = [1, -1]
        images["pred_score"] = [0.7, np.nan]
    writer.write_table("images", images)
    objects = pd.DataFrame(
        {
            "object_id": [5, 6, 1],
            "kind": ["gt", "gt", "pred"],
            "image_idx": [0, 1, 0],
            "class_idx": [0, 1, 1],
            "x": [0.0, 1.0, 0.5],
            "y": [0.0, 2.0, 0.25],
            "w": [10.0, 3.0, 9.5],
            "h": [10.0, 4.0, 9.75],
            "area": [95.0, 12.0, 92.625],
            "iscrowd": [False, True, False],
            "score": [np.nan, np.nan, 0.9],
        }
    )
    writer.write_table("objects", objects)
    writer.write_table("clusters", pd.DataFrame({"cluster": [0], "size": [2]}))
    writer.write_array("embeddings.npy", np.eye(2, 4, dtype=np.float32))
    writer.write_json("metrics.json", {"task": task, "x": float("nan")})
    writer.write_json(MANIFEST, {"schema_version": SCHEMA_VERSION, "task": task})


def test_round_trip_detection(tmp_path):
    out = tmp_path / "run"
    with write_run(out) as w:
        _write_minimal(w)
    run = Run(out)
    assert run.task == "detection"
    assert list(run.images["image_id"]) == [10, 20]
    assert run.metrics["x"] is None  # NaN is stored as null, JSON stays valid
    assert run.embeddings().shape == (2, 4)
    ds = run.dataset()
    assert ds.images.image_id.tolist() == [10, 20]
    assert ds.gt.object_id.tolist() == [5, 6]
    assert ds.gt.iscrowd.tolist() == [False, True]
    assert ds.gt.area.tolist() == [95.0, 12.0]
    assert ds.pred.xywh.tolist() == [[0.5, 0.25, 9.5, 9.75]]
    assert ds.categories.names.tolist() == ["cat", "dog"]


def test_round_trip_classification(tmp_path):
    out = tmp_path / "run"
    with write_run(out) as w:
        _write_minimal(w, task="classification")
    ds = Run(out).dataset()
    assert ds.gt.class_idx.tolist() == [0, 1]
    assert ds.pred.image_idx.tolist() == [0]
    assert ds.pred.score.tolist() == [0.7]


def test_interrupted_build_leaves_nothing_that_looks_finished(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt), write_run(out) as w:
        w.write_json("categories.json", [])
        raise KeyboardInterrupt
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_stale_partial_without_a_lock_is_cleaned_once_old(tmp_path):
    """A leftover with no lock file (an older vecexplore's, or a build killed before it
    locked) goes once it has not changed for the grace period; a young one stays."""
    out = tmp_path / "run"
    stale = tmp_path / "run.partial-abc"
    young = tmp_path / "run.partial-new"
    for d in (stale, young):
        d.mkdir()
        (d / "images.parquet").write_bytes(b"half")
    old = time.time() - GRACE_SECONDS - 60
    os.utime(stale, (old, old))
    with write_run(out) as w:
        _write_minimal(w)
    assert not stale.exists()
    assert young.exists()
    Run(out)


def test_refuses_to_replace_without_force_and_keeps_old_run(tmp_path):
    out = tmp_path / "run"
    with write_run(out) as w:
        _write_minimal(w)
    with pytest.raises(RunStoreError, match="--force"), write_run(out) as w:
        pass
    assert Run(out).task == "detection"
    with write_run(out, force=True) as w:
        _write_minimal(w, task="classification")
    assert Run(out).task == "classification"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_never_replaces_a_directory_that_is_not_a_run(tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("do not delete")
    with pytest.raises(RunStoreError, match="not a vecexplore run"), write_run(out, force=True):
        pass
    assert (out / "thesis.tex").read_text() == "do not delete"


def test_failure_inside_a_forced_rebuild_keeps_the_old_run(tmp_path):
    out = tmp_path / "run"
    with write_run(out) as w:
        _write_minimal(w)
    with pytest.raises(RuntimeError), write_run(out, force=True) as w:
        raise RuntimeError("embedding crashed")
    assert Run(out).task == "detection"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no such run"),
        (lambda p: p.mkdir(), "not a finished"),
        (lambda p: (p.mkdir(), (p / MANIFEST).write_text("{not json")), "unreadable manifest"),
        (lambda p: (p.mkdir(), (p / MANIFEST).write_text(json.dumps({"schema_version": 999}))), "schema version"),
    ],
)
def test_open_refuses_bad_runs(tmp_path, setup, message):
    path = tmp_path / "run"
    setup(path)
    with pytest.raises(RunStoreError, match=message):
        Run(path)


def test_json_safe_and_atomic_json(tmp_path):
    obj = {"a": [1.0, float("inf"), np.float32(2.5)], "b": np.int64(3), "c": np.array([np.nan])}
    assert json_safe(obj) == {"a": [1.0, None, 2.5], "b": 3, "c": [None]}
    atomic_write_json(tmp_path / "x.json", json_safe(obj))
    assert json.loads((tmp_path / "x.json").read_text())["b"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
