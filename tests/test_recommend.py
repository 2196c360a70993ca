"""Recommendations: the demo's planted failure modes are named, every selection is exactly
the images behind its evidence, and the trust findings follow their formulas."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from _quality_helpers import classification_dataset, detection_dataset, objects_frame, run_tables

from vecexplore.analysis.quality import image_values
from vecexplore.analysis.recommend import KINDS, Recommendation, RecommendConfig, recommend
from vecexplore.demo import read_planted
from vecexplore.errors import ConfigError
from vecexplore.eval.evaluate import evaluate
from vecexplore.info import SLICE_KINDS, failure_slices
from vecexplore.store import Run
from vecexplore.types import Boxes, Dataset

TOP = 8  # "the top recommendations"


def expected_images(rec: dict, run, ev) -> np.ndarray:
    """Recompute the images behind a recommendation from the engine's tables."""
    sel = rec["selection"]
    n = ev.dataset.num_images
    if sel.get("all"):
        return np.arange(n)
    if sel.get("label_issues"):  # images with a likely label error at this operating point
        from vecexplore.analysis.label_issues import label_issues

        issues = label_issues(ev)
        return np.unique(issues["image_idx"].to_numpy()[issues["likely"].to_numpy()])
    if "cluster" in sel:  # a slice: its clusters (several when siblings merged)
        return np.flatnonzero(np.isin(run.images["cluster"].to_numpy(), sel.get("clusters", [sel["cluster"]])))
    if "property" in sel:
        lo, hi = sel["range"]
        if sel["level"] == "image":
            v = image_values(run.images, sel["property"])
            readable = run.images["readable"].to_numpy(bool)
            return np.flatnonzero(readable & (v >= lo) & (v <= hi))
        obj = objects_frame(ev)
        gt = obj[(obj["kind"] == "gt") & (obj["outcome"] != "crowd")]
        v = run.objects[sel["property"]].to_numpy(np.float64)[gt.index.to_numpy()]
        return np.unique(gt["image_idx"].to_numpy()[(v >= lo) & (v <= hi)])
    if ev.task == "classification":
        label, acc = ev.arrays["label"], ev.accepted
        if "cells" in sel:
            return np.flatnonzero(np.any([(label == a) & (acc == b) for a, b in sel["cells"]], axis=0))
        k = sel["class_idx"]
        rule = {"fn": (label == k) & (acc != k), "fp": (acc == k) & (label >= 0) & (label != k),
                "gt": np.isin(label, k)}[sel["outcome"]]
        return np.flatnonzero(rule)
    obj = objects_frame(ev)
    gt, pred = obj[obj["kind"] == "gt"], obj[obj["kind"] == "pred"]
    if "cells" in sel:
        hit = np.any([(gt["class_idx"] == a) & (gt["outcome"] == "confused") & (gt["match_class_idx"] == b)
                      for a, b in sel["cells"]], axis=0)
        return np.unique(gt["image_idx"][hit])
    k, outcome = sel["class_idx"], sel["outcome"]
    if outcome == "fn":
        rows = gt[(gt["class_idx"] == k) & gt["outcome"].isin(["fn", "confused"])]
    elif outcome == "fp":
        rows = pred[(pred["class_idx"] == k) & pred["outcome"].str.startswith("fp_")]
    else:
        rows = gt[gt["class_idx"].isin(np.atleast_1d(k)) & (gt["outcome"] != "crowd")]
    return np.unique(rows["image_idx"])


def _demo(demo_run):
    run_dir, data = demo_run
    run = Run(run_dir)
    if run.task == "detection":
        op = run.metrics["operating_point"]
        ev = evaluate(run.dataset(), iou=op["iou"], confidence=op["confidence"])
    else:
        ev = evaluate(run.dataset())
    return run, ev, json.loads((run_dir / "recommendations.json").read_text()), read_planted(data)


def _mode_images(run, planted) -> dict[str, set]:
    images = run.dataset().images
    return {m: set(images.index_of_ids(d["image_ids"]).tolist()) for m, d in planted["modes"].items()}


def _share(rec, images: set) -> float:
    idx = rec["selection"]["image_idx"]
    return len(images.intersection(idx)) / max(len(idx), 1)


def _evidence(rec) -> list[dict]:
    """The finding and every finding it explains (``merged``)."""
    return [rec, *rec.get("merged", [])]


def _traits(rec) -> set:
    """(prop, side) of every trait and property tail in a finding's evidence."""
    out = set()
    for r in _evidence(rec):
        num = r["numbers"]
        if "description" in num:
            out |= {(t["prop"], t["side"]) for t in num["description"]["traits"]}
        if r["kind"] == "property":
            out.add((num["prop"], num["side"]))
    return out


def _errors(rec) -> set:
    """The dominant error types its evidence names (a cluster's, a property tail's error)."""
    out = set()
    for r in _evidence(rec):
        num = r["numbers"]
        if "description" in num:
            out.add(num["description"]["dominant_error"])
        if num.get("error"):
            out.add(num["error"])
    return out


def test_demo_recommendations_name_the_planted_modes(demo_run):
    run, _, recs, planted = _demo(demo_run)
    modes = _mode_images(run, planted)
    names = [c["name"] for c in run.categories]
    top = recs[:TOP]
    # (a) dark images whose objects are missed
    dark = [r for r in top if _share(r, modes["dark_small_missed"]) >= 0.7]
    assert any(("brightness", "low") in _traits(r) and "fn_missed" in _errors(r) for r in dark), \
        [r["title"] for r in top]
    # (b) the blur/fog confusion: the confused pair, or a blurry/foggy finding
    pair = {names.index(c) for c in planted["modes"]["blur_confusion"]["classes"]}
    confused = [e for r in top for e in _evidence(r) if e["kind"] == "confusion"
                and {c for cell in e["selection"]["cells"] for c in cell} == pair]
    foggy = [r for r in top if _share(r, modes["blur_confusion"]) >= 0.7
             and _traits(r) & {("sharpness", "low"), ("contrast", "low"), ("brightness", "high")}]
    assert confused or foggy, [r["title"] for r in top]
    # (c) false positives of the texture class, or a textured finding
    fp_class = names.index(planted["modes"]["texture_false_positives"]["classes"][0])
    fps = [e for r in top for e in _evidence(r) if e["kind"] == "class_fp" and e["selection"]["class_idx"] == fp_class]
    textured = [r for r in top if _share(r, modes["texture_false_positives"]) >= 0.7
                and _traits(r) & {("sharpness", "high"), ("contrast", "high")}]
    assert fps or textured, [r["title"] for r in top]
    # One failure mode, one finding: no two top findings are mostly the same planted mode.
    for mode, images in modes.items():
        assert sum(_share(r, images) > 0.5 for r in top if r["kind"] in SLICE_KINDS) <= 1, \
            (mode, [r["title"] for r in top])
    # Actions follow the evidence.
    if confused:
        assert "relabel" in confused[0]["action"] and "merging" in confused[0]["action"]
    if fps:
        assert "hard negatives" in fps[0]["action"]


@pytest.mark.parametrize("fixture", ["demo_run", "demo_run_classification"])
def test_every_selection_is_exactly_its_evidence(fixture, request):
    run, ev, recs, _ = _demo(request.getfixturevalue(fixture))
    assert recs, "the demo has planted failures: there must be findings"
    for rec in recs:
        assert rec["kind"] in KINDS
        for finding in _evidence(rec):  # the finding and every finding it carries
            want = expected_images(finding, run, ev)
            assert finding["selection"]["image_idx"] == np.asarray(want).tolist(), finding["title"]
    severities = [r["severity"] for r in recs]
    assert severities == sorted(severities, reverse=True)


def test_demo_counts_in_the_evidence_recompute(demo_run):
    run, ev, recs, _ = _demo(demo_run)
    obj = objects_frame(ev)
    pred = obj[obj["kind"] == "pred"]
    for rec in recs:
        num = rec["numbers"]
        if rec["kind"] == "class_fp":
            mine = pred[pred["class_idx"] == num["class_idx"]]
            assert num["fp"] == mine["outcome"].str.startswith("fp_").sum()
            assert num["n_pred"] == (mine["outcome"].str.startswith("fp_") | (mine["outcome"] == "tp")).sum()
        for finding in (e for e in _evidence(rec) if e["kind"] == "cluster"):
            row = run.clusters.set_index("cluster").loc[finding["numbers"]["cluster"]]
            assert finding["numbers"]["size"] == row["size"]
            assert finding["numbers"]["error_rate"] == pytest.approx(row["error_rate"])
            assert finding["numbers"]["members"] == list(row["members"])


def test_info_prints_recommendations(demo_run):
    run_dir, _ = demo_run
    recs = json.loads((run_dir / "recommendations.json").read_text())
    out = subprocess.run([sys.executable, "-m", "vecexplore", "info", str(run_dir)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "Recommendations" in out.stdout and "→" in out.stdout
    assert recs[0]["title"].split(" — ")[0] in " ".join(out.stdout.split())
    js = subprocess.run([sys.executable, "-m", "vecexplore", "info", str(run_dir), "--json"],
                        capture_output=True, text=True)
    summary = json.loads(js.stdout)
    assert summary["recommendations"] == recs
    # The ranked slices are the failure findings, in order, each naming the findings it explains.
    assert summary["slices"] == json.loads(json.dumps(failure_slices(recs)))
    assert [s["title"] for s in summary["slices"]] == [r["title"] for r in recs if r["kind"] in SLICE_KINDS]


def _skewed_classification(n: int, rare: int, seed: int = 0) -> Dataset:
    ds = classification_dataset(seed, n_images=n, k=3)
    label = ds.gt.class_idx.copy()
    label[label == 2] = 0
    label[np.random.default_rng(seed).permutation(n)[:rare]] = 2
    from dataclasses import replace

    return replace(ds, gt=replace(ds.gt, class_idx=label))


def test_few_examples_and_small_set_follow_their_formulas():
    ds = _skewed_classification(80, rare=12)
    tables, ev, clusters = run_tables(ds)
    recs = recommend(tables, ev, clusters=clusters)
    few = [r for r in recs if r.kind == "few_examples"]
    rare = next(r for r in few if r.numbers["class_idx"] == 2)
    p = rare.numbers["accuracy"]
    pc = min(max(p, 0.1), 0.9)
    assert rare.numbers["n"] == 12
    assert rare.numbers["needed"] == math.ceil(1.96**2 * pc * (1 - pc) / 0.1**2)
    assert rare.numbers["ci_high"] - rare.numbers["ci_low"] > 0.2
    small = next(r for r in recs if r.kind == "small_eval_set" and r.selection.get("all"))
    pa = small.numbers["accuracy"]
    assert small.numbers["needed"] == math.ceil(1.96**2 * min(max(pa, .1), .9) * (1 - min(max(pa, .1), .9)) / 0.05**2)
    assert small.selection["image_idx"] == list(range(80))
    # A large, balanced set is trusted: no trust findings.
    tables, ev, clusters = run_tables(classification_dataset(1, n_images=6000, k=3))
    assert not [r for r in recommend(tables, ev, clusters=clusters) if r.kind in ("few_examples", "small_eval_set")]


def test_low_score_false_positives_propose_the_class_threshold():
    base = detection_dataset(3, n_images=300, fp_rate=0.0, p_flip=0.0)
    rng = np.random.default_rng(0)
    m = 400  # low-score background false positives of class 0 only
    img = rng.integers(0, base.num_images, m)
    xy = rng.uniform(0, 100, (m, 2))
    extra = Boxes(img, np.zeros(m, np.int64), np.c_[xy, np.full((m, 2), 12.0)],
                  np.arange(len(base.pred) + 1, len(base.pred) + m + 1), score=rng.uniform(0.05, 0.45, m))
    pred = base.pred
    both = Boxes(np.r_[pred.image_idx, extra.image_idx], np.r_[pred.class_idx, extra.class_idx],
                 np.r_[pred.xywh, extra.xywh], np.r_[pred.object_id, extra.object_id], score=np.r_[pred.score, extra.score])
    ds = Dataset("detection", base.images, base.categories, base.gt, both)
    ev = evaluate(ds, confidence=0.0)  # the user's threshold keeps every prediction
    tables, ev, clusters = run_tables(ds, ev)
    recs = recommend(tables, ev, clusters=clusters)
    fp = next(r for r in recs if r.kind == "class_fp" and r.numbers["class_idx"] == 0)
    best = ev.sweep.per_class[0].optimal()[0]
    th = fp.numbers["threshold"]
    assert th["threshold"] == best and th["f1"][1] > th["f1"][0] and th["precision"][1] > th["precision"][0]
    assert f"to {best:.2f}" in fp.action and "hard negatives" in fp.action
    assert fp.selection["image_idx"] == expected_images(fp.to_json(), tables, ev).tolist()


def test_no_findings_on_a_model_without_failures():
    ds = detection_dataset(4, n_images=400, p_find=np.ones(400), p_flip=0.0, fp_rate=0.0, crowd=0.0)
    tables, ev, clusters = run_tables(ds, labels=np.arange(400) % 4)
    recs = recommend(tables, ev, clusters=clusters)
    assert not [r for r in recs if r.kind not in ("few_examples", "small_eval_set", "label_errors")], \
        [r.title for r in recs]


@pytest.mark.parametrize(("field", "value"), [("z", 0.0), ("few_examples_width", 1.5), ("eval_half_width", 0.0),
                                               ("max_total", -1)])
def test_config_is_validated(field, value):
    with pytest.raises(ConfigError, match=field):
        RecommendConfig(**{field: value})


def test_max_total_and_json():
    ds = _skewed_classification(80, rare=12)
    tables, ev, clusters = run_tables(ds)
    recs = recommend(tables, ev, clusters=clusters, config=RecommendConfig(max_total=1))
    assert len(recs) == 1 and isinstance(recs[0], Recommendation)
    doc = json.loads(json.dumps(recs[0].to_json()))
    base = {"kind", "title", "evidence", "action", "severity", "selection", "numbers", "evidence_kinds"}
    assert set(doc) - {"merged"} == base  # "merged" only when the finding explains others
    for merged in doc.get("merged", []):
        assert set(merged) - {"merged"} == base and "merged" not in merged
