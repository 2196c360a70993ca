"""`export` and `info`: selections, every format, round trips through pycocotools, the CLI."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest

from vecexplore.cli import main
from vecexplore.errors import ConfigError, InputError
from vecexplore.export import export_selection, select_clusters, select_from_file, select_where
from vecexplore.io import load_dataset
from vecexplore.io.source import DatasetSource
from vecexplore.store import Run


@pytest.fixture(scope="module")
def run(demo_run):
    return Run(demo_run[0])


def _worst_cluster(run) -> int:
    return int(run.clusters["cluster"].iloc[0])


def test_select_clusters_where_and_file(run, tmp_path):
    worst = _worst_cluster(run)
    sel = select_clusters(run, [worst])
    assert sel.tolist() == np.flatnonzero(run.images["cluster"] == worst).tolist()
    where = select_where(run, "error_rate > 0.5 and n_gt >= 1")
    expected = run.images.query("error_rate > 0.5 and n_gt >= 1")["image_idx"].tolist()
    assert where.tolist() == expected
    listing = tmp_path / "list.txt"
    ids = run.images["image_id"].iloc[[3, 1]].tolist()
    name = run.images["file_name"].iloc[7]
    listing.write_text(f"# picked by hand\n{ids[0]}\n\n{ids[1]}\n{name}\n")
    assert select_from_file(run, listing).tolist() == [1, 3, 7]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda r, p: select_clusters(r, [9999]), ConfigError, "unknown cluster"),
        (lambda r, p: select_where(r, "no_such_column > 1"), ConfigError, "unknown column .no_such_column.*columns: "),
        (lambda r, p: select_where(r, "error_rate + 1"), ConfigError, "true/false"),
        (lambda r, p: select_from_file(r, p / "missing.txt"), InputError, "missing.txt"),
    ],
)
def test_bad_selections_are_clear_errors(run, tmp_path, call, error, message):
    with pytest.raises(error, match=message):
        call(run, tmp_path)


def test_unknown_lines_are_all_reported(run, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("nope.jpg\n123456789\n")
    with pytest.raises(InputError, match=r"2 entries.*line 1: 'nope.jpg'.*line 2: '123456789'"):
        select_from_file(run, listing)


def test_coco_subset_loads_in_pycocotools_and_equals_the_selected_gt(run, demo_run, tmp_path):
    from pycocotools.coco import COCO

    sel = select_clusters(run, [_worst_cluster(run)])
    out = export_selection(run, sel, fmt="coco", out=tmp_path / "subset.json")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(out))
    original = json.loads((demo_run[1] / "annotations.json").read_text())
    wanted = set(run.images["image_id"].iloc[sel].tolist())
    assert set(coco.getImgIds()) == wanted
    expected = sorted((a["id"], a["image_id"], a["category_id"], tuple(a["bbox"]), a["iscrowd"])
                      for a in original["annotations"] if a["image_id"] in wanted)
    got = sorted((a["id"], a["image_id"], a["category_id"], tuple(a["bbox"]), a["iscrowd"])
                 for a in coco.dataset["annotations"])
    assert got == expected
    assert {c["id"] for c in coco.dataset["categories"]} == {c["id"] for c in original["categories"]}
    # the model's predictions on those images lie beside it, as a COCO results list that loads with it
    preds = out.with_name("subset.predictions.json")
    results = json.loads(preds.read_text())
    original_preds = json.loads((demo_run[1] / "predictions.json").read_text())
    want_preds = sorted((p["image_id"], p["category_id"], tuple(p["bbox"]), p["score"])
                        for p in original_preds if p["image_id"] in wanted)
    assert sorted((p["image_id"], p["category_id"], tuple(p["bbox"]), p["score"]) for p in results) == want_preds
    with contextlib.redirect_stdout(io.StringIO()):
        assert len(coco.loadRes(str(preds)).getAnnIds()) == len(want_preds)
    # and our own loader reads the pair back with the same images
    sub = load_dataset(DatasetSource(gt=out, pred=preds), check_images=False)
    assert set(sub.images.image_id.tolist()) == wanted and len(sub.pred) == len(want_preds)


def test_classification_tables_name_the_classes(demo_run_classification, tmp_path):
    from vecexplore.store import Run

    run = Run(demo_run_classification[0])
    names = [c["name"] for c in run.categories]
    sel = np.arange(0, len(run.images), 7)
    table = pd.read_csv(export_selection(run, sel, fmt="csv", out=tmp_path / "c.csv"), keep_default_na=False)
    stored = run.images.iloc[sel]
    assert table["label"].tolist() == [names[k] if k >= 0 else "" for k in stored["label"]]
    assert table["prediction"].tolist() == [names[k] if k >= 0 else "" for k in stored["prediction"]]
    records = json.loads(export_selection(run, sel, fmt="json", out=tmp_path / "c.json").read_text())
    assert {r["label"] for r in records} <= set(names) | {""}
    # and the query language speaks names too
    k = int(stored["label"].iloc[0])
    got = select_where(run, f"label == {names[k]!r}")
    np.testing.assert_array_equal(got, np.flatnonzero(run.images["label"].to_numpy() == k))


def _empty_predictions(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text("[]")
    return path


def test_txt_csv_json_and_yolo(run, tmp_path):
    sel = select_where(run, "fn >= 2")
    paths = export_selection(run, sel, fmt="txt", out=tmp_path / "a.txt").read_text().splitlines()
    assert len(paths) == len(sel) and all(p.startswith("/") for p in paths)
    assert all(__import__("os").path.exists(p) for p in paths)
    table = pd.read_csv(export_selection(run, sel, fmt="csv", out=tmp_path / "a.csv"))
    assert table["image_idx"].tolist() == sorted(sel.tolist())
    assert {"image_id", "path", "error_rate", "cluster", "x", "y"} <= set(table.columns)
    records = json.loads(export_selection(run, sel, fmt="json", out=tmp_path / "a.json").read_text())
    assert [r["image_id"] for r in records] == table["image_id"].tolist()
    yolo = export_selection(run, sel, fmt="yolo", out=tmp_path / "yolo")
    assert (yolo / "data.yaml").exists() and len(list((yolo / "labels").rglob("*.txt"))) == len(sel)


def test_exports_are_deterministic_and_never_overwrite_silently(run, tmp_path):
    sel = select_where(run, "fp >= 1")
    a = export_selection(run, sel[::-1], fmt="csv", out=tmp_path / "a.csv").read_bytes()
    b = export_selection(run, sel, fmt="csv", out=tmp_path / "b.csv").read_bytes()
    assert a == b
    with pytest.raises(ConfigError, match="--force"):
        export_selection(run, sel, fmt="csv", out=tmp_path / "a.csv")
    export_selection(run, sel[:1], fmt="csv", out=tmp_path / "a.csv", force=True)
    assert len(pd.read_csv(tmp_path / "a.csv")) == 1
    with pytest.raises(ConfigError, match="empty"):
        export_selection(run, np.array([], np.int64), fmt="csv", out=tmp_path / "c.csv")


def test_info_json_and_export_cli(run, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["info", str(run.path), "--json"])
    assert exit_info.value.code in (0, None)
    info = json.loads(capsys.readouterr().out)
    clusters = info["clusters"]
    assert [c["rank"] for c in clusters] == sorted(c["rank"] for c in clusters)
    assert {"cluster", "size", "error_rate", "ci_low", "ci_high", "lift"} <= set(clusters[0])
    assert info["model"]["random"] is True
    worst = str(_worst_cluster(run))
    out = tmp_path / "worst.txt"
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(run.path), "--cluster", worst, "--format", "txt", "--out", str(out)])
    assert exit_info.value.code in (0, None)
    assert len(out.read_text().splitlines()) == int(clusters[0]["size"])
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(run.path), "--cluster", worst, "--format", "txt", "--out", str(out)])
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_info_human_output_says_random(run, capsys):
    with pytest.raises(SystemExit):
        main(["info", str(run.path)])
    text = capsys.readouterr().out
    assert "RANDOM WEIGHTS" in text and "Failure clusters" in text
