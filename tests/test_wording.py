"""Words a new user reads: counts agree with their nouns, classification is not described in
detection's words, a "failure" list holds only what fails, and a property without information
has no direction."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from vecexplore.analysis.describe import ERROR_WORD_ONE, ERROR_WORDS, Description, error_count
from vecexplore.analysis.importance import score_property
from vecexplore.analysis.recbase import evidence_text
from vecexplore.app.views.properties import importance_columns
from vecexplore.cli._render import render_info


@pytest.mark.parametrize("error", sorted(set(ERROR_WORDS) - {"none"}))
def test_one_error_is_singular_and_more_are_plural(error):
    one, three = error_count(1, error), error_count(3, error)
    assert one == f"1 {ERROR_WORD_ONE[error]}" and three == f"3 {ERROR_WORDS[error]}"
    assert one != three.replace("3", "1")  # "1 poorly placed boxes" never appears
    assert not re.search(r"\b1 \w*(?: \w+)* (boxes|objects|detections|images|positives)\b", one)


def _description(task: str, errors: dict, missed=((0, 2),)) -> Description:
    return Description(image_idx=np.arange(4), error_rate=0.5, overall_error_rate=0.2, ci_low=0.1, ci_high=0.9,
                       traits=(), errors=errors, dominant_error=max(errors, key=errors.get), classes=((0, 4),),
                       missed=missed, false_positives=(), confusions=(), names=("hexagon", "disc"), task=task)


def test_evidence_counts_agree_with_their_nouns():
    text = evidence_text(_description("detection", {"fp_localization": 1, "fn_missed": 2}), "head")
    assert "2 missed objects" in text and "1 poorly placed box" in text and "1 poorly placed boxes" not in text
    assert "not found: hexagon 2" in text


def test_classification_is_described_in_its_own_words():
    d = _description("classification", {"misclassified": 1, "no_prediction": 3})
    for text in (d.summary(), evidence_text(d, "head"), d.to_json()["summary"]):
        assert "not found" not in text and "missed" not in text
    assert "wrong: hexagon 2" in d.summary() and "1 misclassified image;" in evidence_text(d, "head") + ";"


def test_classification_recommendations_never_speak_of_missed_objects(demo_run_classification):
    run_dir, _ = demo_run_classification
    recs = json.loads((run_dir / "recommendations.json").read_text())
    assert recs
    for rec in recs:
        for text in (rec["title"], rec["evidence"], rec["action"]):
            low = text.lower()
            assert "not found" not in low and "most missed" not in low and "objects" not in low, (rec["kind"], text)
            assert "fn rate" not in low, text


def _summary(lifts):
    clusters = [{"rank": i + 1, "cluster": i, "members": [i], "size": 50, "error_rate": 0.1 * lift,
                 "ci_low": 0.0, "ci_high": 1.0, "lift": lift, "dominant_error": "missed", "top_classes": "disc"}
                for i, lift in enumerate(lifts)]
    return {"run": "r", "task": "detection", "model": {"model": "m", "weights": "w", "weights_kind": "tag"},
            "counts": {}, "metrics": {"mAP": 0.5}, "clusters": clusters}


def _table_rows(out: str) -> list[str]:
    return [line for line in out.splitlines() if re.match(r"^\s*│\s*\d+\s*│", line)]


def test_failure_clusters_list_only_clusters_that_fail_more_than_average(capsys):
    render_info(_summary([3.0, 1.4, 1.0, 0.2]))
    out = capsys.readouterr().out
    assert "2 of 4" in out
    lifts = [float(row.split("│")[5]) for row in _table_rows(out)]  # │ rank │ cluster │ size │ rate │ lift │
    assert lifts == [3.0, 1.4]


def test_no_failure_clusters_says_so(capsys):
    render_info(_summary([0.9, 0.2]))
    out = capsys.readouterr().out
    assert "No cluster fails more often than average" in out and not _table_rows(out)


def test_a_property_without_information_has_no_direction():
    """Whatever the rank correlation, MI that shows as 0.000 never comes with "higher → more errors"."""
    shown = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(200, 3000))
        x = rng.random(n)
        y = (rng.random(n) < 0.2 + 0.05 * rng.random() * x).astype(float)  # at most a faint relation
        imp = score_property(x, y, prop="p", level="image")
        row = importance_columns([imp])
        if f"{imp.mutual_information:.3f}" == "0.000":
            shown += 1
            assert imp.direction == "none" and row["direction"][0] == "no clear direction", (seed, imp)
    assert shown >= 10  # the case is exercised
    strong = np.random.default_rng(0).random(2000)
    imp = score_property(strong, (strong > 0.7).astype(float), prop="p", level="image")
    assert imp.direction == "higher" and imp.mutual_information > 0.1
