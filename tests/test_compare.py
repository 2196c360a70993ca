"""``vecexplore compare`` end to end: model B fixes a planted failure and breaks a clean cluster.

The regressed cluster must rank first among regressions with its interval above 0, the cluster of
the fixed mode first among improvements; runs on other images or other GT are refused (exit 2,
the difference named, no traceback); the comparison run reads as any run (info, export).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from vecexplore.cli import main
from vecexplore.compare import compare_runs
from vecexplore.errors import CompareError
from vecexplore.runcheck import open_run


def _cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return exit_info.value.code or 0, captured.out, captured.err


def test_regression_and_fix_are_ranked_first(compare_pair):
    c = open_run(compare_pair["c"])
    doc = c.json("compare.json")
    worse, better = doc["regressions"], doc["improvements"]
    assert worse[0]["cluster"] == compare_pair["broken"]
    assert worse[0]["ci_low"] > 0 and worse[0]["sure"]
    assert all(w["ci_low"] <= worse[0]["ci_low"] for w in worse)
    images = c.images
    top = images[images["cluster"].isin(better[0]["members"])]
    assert top["image_id"].isin(compare_pair["fixed_ids"]).mean() > 0.8
    assert better[0]["ci_high"] < 0
    # the per-slice numbers are the images' own
    for row in worse[:3] + better[:3]:
        sel = images["cluster"].isin(row["members"])
        assert row["size"] == int(sel.sum())
        assert row["delta"] == pytest.approx(images.loc[sel, "b_error_rate"].mean() - images.loc[sel, "error_rate"].mean())
        assert row["ci_low"] <= row["delta"] <= row["ci_high"]


def test_comparison_run_holds_both_models(compare_pair):
    a, b, c = (open_run(compare_pair[k]) for k in "abc")
    images = c.images
    # A's map, A's outcomes; B's outcomes matched by file name
    for col in ("x", "y", "cluster", "error_rate", "tp", "fp", "fn"):
        assert np.array_equal(images[col].to_numpy(), a.images[col].to_numpy(), equal_nan=True)
    b_by_name = b.images.set_index("file_name")
    for col in ("error_rate", "tp", "fp", "fn"):
        assert np.array_equal(images[f"b_{col}"].to_numpy(), b_by_name.loc[images["file_name"], col].to_numpy())
    wrong_a, wrong_b = images["error_rate"] > 0, images["b_error_rate"] > 0
    assert ((images["change"] == "fixed") == (wrong_a & ~wrong_b)).all()
    assert ((images["change"] == "regressed") == (~wrong_a & wrong_b)).all()
    assert c.json("metrics_b.json") == b.metrics
    objects_b = c.table("objects_b")
    assert len(objects_b) == len(b.objects)
    assert c.manifest["comparison"]["map"] == "a"
    assert c.json("compare.json")["deltas"]["recall"] == pytest.approx(
        b.metrics["operating_point"]["recall"] - a.metrics["operating_point"]["recall"])


def test_info_json_text_and_export(compare_pair, capsys, tmp_path):
    code, out, _ = _cli(["info", compare_pair["c"], "--json"], capsys)
    assert code == 0
    info = json.loads(out)
    for key in ("regressions", "improvements"):
        assert info[key] and {"cluster", "size", "delta", "ci_low", "ci_high"} <= set(info[key][0])
    assert info["regressions"][0]["cluster"] == compare_pair["broken"]
    assert info["comparison"]["map"] == "a"
    code, text, _ = _cli(["info", compare_pair["c"]], capsys)
    assert code == 0 and "Regressions (B worse than A)" in text and "Improvements (B better than A)" in text
    out_file = tmp_path / "regressed.txt"
    code, _, _ = _cli(["export", compare_pair["c"], "--cluster", compare_pair["broken"], "--format", "txt",
                       "--out", out_file], capsys)
    assert code == 0
    assert len(out_file.read_text().splitlines()) == info["regressions"][0]["size"]


def test_cli_compare_writes_a_run(compare_pair, capsys, tmp_path):
    code, out, err = _cli(["compare", compare_pair["a"], compare_pair["b"], "--out", tmp_path / "cmp",
                           "--n-boot", 200], capsys)
    assert code == 0, err
    assert "surely worse" in out
    assert open_run(tmp_path / "cmp").json("compare.json")["n_boot"] == 200
    code, _, err = _cli(["compare", compare_pair["a"], compare_pair["b"], "--out", tmp_path / "cmp"], capsys)
    assert code == 2 and "already exists" in err


def _altered_copy(run_dir, dest, table, change):
    shutil.copytree(run_dir, dest)
    path = dest / f"{table}.parquet"
    df = pd.read_parquet(path)
    change(df)
    df.to_parquet(path, index=False)
    return dest


def test_refuses_other_images(compare_pair, capsys, tmp_path):
    def rename(df):
        df.loc[df.index[:3], "file_name"] = [f"elsewhere/{i}.jpg" for i in range(3)]

    other = _altered_copy(compare_pair["b"], tmp_path / "other", "images", rename)
    code, _, err = _cli(["compare", compare_pair["a"], other, "--out", tmp_path / "c"], capsys)
    assert code == 2 and "Traceback" not in err
    assert f"{other} has 3 images {compare_pair['a']} lacks, first: elsewhere/0.jpg" in err
    assert not (tmp_path / "c").exists()


def test_refuses_other_gt(compare_pair, capsys, tmp_path):
    def move(df):
        gt = df.index[df["kind"] == "gt"]
        df.loc[gt[[0, 5]], "x"] += 7.0

    other = _altered_copy(compare_pair["b"], tmp_path / "other", "objects", move)
    first = open_run(other)
    objects = first.objects
    gt_images = objects.loc[objects["kind"] == "gt", "image_idx"].to_numpy()[[0, 5]]
    n_bad = len(set(gt_images.tolist()))
    a_names = open_run(compare_pair["a"]).images["file_name"].tolist()
    names = [first.images["file_name"][i] for i in gt_images]
    first_name = min(names, key=a_names.index)
    with pytest.raises(CompareError, match=f"GT differs on {n_bad} image.*first: {first_name}"):
        compare_runs(compare_pair["a"], other, tmp_path / "c")
    code, _, err = _cli(["compare", compare_pair["a"], other, "--out", tmp_path / "c"], capsys)
    assert code == 2 and "GT differs" in err and "Traceback" not in err


def test_refuses_a_comparison_and_other_tasks(compare_pair, demo_run_classification, tmp_path):
    with pytest.raises(Exception, match="is a comparison run"):
        compare_runs(compare_pair["c"], compare_pair["b"], tmp_path / "x")
    with pytest.raises(CompareError, match=r"detection run .* classification run"):
        compare_runs(compare_pair["a"], demo_run_classification[0], tmp_path / "x")


@pytest.mark.parametrize("damage,message", [
    (lambda c: (c / "objects_b.parquet").unlink(), "objects_b.parquet: missing"),
    (lambda c: (c / "compare.json").write_text('{"regressions": 3}'), "compare.json: \"regressions\" is not a list"),
    (lambda c: (c / "metrics_b.json").write_text("[]"), "metrics_b.json: a JSON array"),
])
def test_a_damaged_comparison_run_is_refused_naming_the_file(compare_pair, tmp_path, capsys, damage, message):
    broken = tmp_path / "c"
    shutil.copytree(compare_pair["c"], broken)
    damage(broken)
    code, _, err = _cli(["info", broken], capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_classification_comparison(compare_pair_classification):
    pair = compare_pair_classification
    c = open_run(pair["c"])
    doc = c.json("compare.json")
    assert doc["regressions"][0]["cluster"] == pair["broken"] and doc["regressions"][0]["ci_low"] > 0
    images = c.images
    top = images[images["cluster"].isin(doc["improvements"][0]["members"])]
    assert top["file_name"].isin(pair["fixed_names"]).mean() > 0.5 and doc["improvements"][0]["ci_high"] < 0
    broken = images["cluster"] == pair["broken"]
    assert (images.loc[broken, "b_correct"] == False).all()  # noqa: E712
    assert (images.loc[images["file_name"].isin(pair["fixed_names"]), "b_error_rate"] == 0).all()
    assert doc["deltas"]["accuracy"] == pytest.approx(
        open_run(pair["b"]).metrics["accuracy"] - open_run(pair["a"]).metrics["accuracy"])
