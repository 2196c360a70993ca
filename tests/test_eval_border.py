"""Boxes that cross the image border: by default they are evaluated as given, so
the 12 stats and per-class AP are pycocotools' (differential, several seeds and
sizes, through the loader and through ``vecexplore evaluate --json``); the opt-in
``--clip`` changes them and every output says so."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

pytest.importorskip("pycocotools")
from test_eval_coco import assert_same, pycoco

from vecexplore.cli import main
from vecexplore.eval.coco import STAT_NAMES, coco_metrics_of
from vecexplore.io._common import LoadReport
from vecexplore.io.coco import coco_to_dataset


def border_case(seed: int, n_img: int, n_cls: int):
    """COCO dicts whose GT and predictions often poke past the border (never wholly outside)."""
    rng = np.random.default_rng(seed)
    images = [{"id": int(i), "width": int(rng.integers(60, 320)), "height": int(rng.integers(60, 320)),
               "file_name": f"{i}.jpg"} for i in rng.choice(np.arange(1, 10**5), n_img, replace=False)]
    cats = [{"id": int(c), "name": f"c{c}"} for c in rng.choice(np.arange(1, 500), n_cls, replace=False)]
    anns, results = [], []

    def box(im):
        w, h = float(rng.uniform(2, im["width"] * 0.7)), float(rng.uniform(2, im["height"] * 0.7))
        # anchor anywhere from half outside on the left/top to half outside on the right/bottom
        x = float(rng.uniform(-0.45 * w, im["width"] - 0.55 * w))
        y = float(rng.uniform(-0.45 * h, im["height"] - 0.55 * h))
        return [round(x, 2), round(y, 2), round(w, 2), round(h, 2)]

    for im in images:
        for _ in range(int(rng.integers(0, 7))):
            b = box(im)
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": int(rng.choice(cats)["id"]),
                         "bbox": b, "area": b[2] * b[3] * float(rng.uniform(0.5, 1)),
                         "iscrowd": int(rng.random() < 0.07)})
            for _ in range(int(rng.integers(0, 3))):
                j = rng.normal(0, 0.12, 4)
                pb = [b[0] + j[0] * b[2], b[1] + j[1] * b[3], b[2] * (1 + abs(j[2])), b[3] * (1 + abs(j[3]))]
                cat = anns[-1]["category_id"] if rng.random() < 0.85 else int(rng.choice(cats)["id"])
                results.append({"image_id": im["id"], "category_id": cat, "bbox": [round(float(v), 2) for v in pb]})
        for _ in range(int(rng.poisson(1.5))):
            results.append({"image_id": im["id"], "category_id": int(rng.choice(cats)["id"]), "bbox": box(im)})
    for r in results:
        r["score"] = round(float(rng.random()), 2)
    return {"images": images, "annotations": anns, "categories": cats}, results


CASES = [(seed, n_img, n_cls) for seed, (n_img, n_cls) in enumerate([(5, 2), (20, 3), (60, 6), (150, 10), (40, 1)])]


@pytest.mark.parametrize("seed, n_img, n_cls", CASES)
def test_default_equals_pycocotools_when_boxes_cross_the_border(seed, n_img, n_cls):
    gt, results = border_case(seed, n_img, n_cls)
    report = LoadReport()
    ds = coco_to_dataset(json.loads(json.dumps(gt)), json.loads(json.dumps(results)), report=report)
    assert sum(report.crossing.values()) > 0 and report.clipped == {}  # the case does cross the border
    assert not ds.boxes_clipped
    assert_same(coco_metrics_of(ds), pycoco(gt, results))


def test_clip_is_opt_in_and_moves_the_numbers():
    gt, results = border_case(11, 80, 4)
    as_given = coco_metrics_of(coco_to_dataset(gt, results))
    clipped_ds = coco_to_dataset(gt, results, clip=True)
    assert clipped_ds.boxes_clipped
    clipped = coco_metrics_of(clipped_ds)
    ev = pycoco(gt, results)
    assert_same(as_given, ev)
    assert not np.allclose(clipped.stats, np.asarray(ev.stats), rtol=0, atol=1e-9)  # not pycocotools' numbers


def _run(args):
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
        except SystemExit as exc:
            code = exc.code or 0
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_cli_json_equals_pycocotools_by_default_and_says_when_clipped(tmp_path, seed):
    gt, results = border_case(seed, 50, 5)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(results))
    base = ["evaluate", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json")]
    code, out, err = _run([*base, "--json", str(tmp_path / "m.json")])
    assert code == 0, err
    doc = json.loads((tmp_path / "m.json").read_text())
    ev = pycoco(gt, results)
    assert doc["boxes"] == "as_given" and "coco_note" not in doc
    np.testing.assert_allclose([doc["coco"][k] for k in STAT_NAMES], ev.stats, rtol=0, atol=1e-9)
    ours_ap = np.array([np.nan if r["AP"] is None else r["AP"] for r in doc["per_class"]])
    precision = ev.eval["precision"][:, :, :, 0, -1]
    oracle = [np.mean(p[p > -1]) if (p > -1).any() else np.nan for p in np.moveaxis(precision, 2, 0)]
    np.testing.assert_allclose(ours_ap, oracle, rtol=0, atol=1e-9)
    assert "pycocotools-equal" in out and "clipped" not in out

    code, out, err = _run([*base, "--clip", "--json", str(tmp_path / "c.json")])
    assert code == 0, err
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["boxes"] == "clipped" and "not pycocotools" in doc["coco_note"]
    assert "pycocotools-equal" not in out and "clipped to the image border" in out

    code, _, err = _run([*base, "--no-clip", "--json", str(tmp_path / "n.json")])  # the old flag: accepted, default
    assert code == 0, err
    assert json.loads((tmp_path / "n.json").read_text())["coco"] == json.loads((tmp_path / "m.json").read_text())["coco"]
    code, _, err = _run([*base, "--clip", "--no-clip"])
    assert code == 2 and "contradict" in err and "Traceback" not in err


# ---------------------------------------------------------------- the run records the choice


def test_a_run_built_with_clip_says_so_everywhere(tmp_path, umap_warm):
    from dataclasses import replace

    from conftest import build_demo_run

    from vecexplore.app.views.header import header_html
    from vecexplore.demo import demo_source, generate_demo
    from vecexplore.info import run_summary
    from vecexplore.store import Run

    data = tmp_path / "data-detection"
    generate_demo(data, task="detection", n=60, seed=1)
    result, _ = build_demo_run(tmp_path, n=60, seed=1, source=replace(demo_source(data, task="detection"), clip=True))
    run = Run(result.out)
    assert run.manifest["config"]["clip"] is True and run.boxes_clipped is True
    assert run.metrics["boxes"] == "clipped" and "not pycocotools" in run.metrics["coco_note"]
    assert run.dataset().boxes_clipped
    summary = run_summary(run)
    assert summary["boxes"] == "clipped"
    code, out, err = _run(["info", str(result.out)])
    assert code == 0, err
    assert "boxes: clipped to the image border (--clip)" in out and "not pycocotools'" in out
    code, out, err = _run(["info", str(result.out), "--json"])
    assert code == 0, err
    assert json.loads(out)["boxes"] == "clipped"
    html = header_html(key="k", task="detection", model={}, num_images=1, unreadable=0, iou=0.5, confidence=0.5,
                       optimal=0.5, run={}, selection=None, coco={}, clipped=run.boxes_clipped is True)
    assert "clipped boxes" in html and "(pycocotools)" not in html


@pytest.mark.parametrize("config, expected", [
    (None, "not_recorded"),  # a run built before the choice was recorded stays readable
    ({"iou": 0.5}, "not_recorded"),
    ({"clip": False}, "as_given"),
    ({"clip": True}, "clipped"),
])
def test_boxes_state_of_old_and_new_runs(tmp_path, config, expected):
    from test_store import _write_minimal

    from vecexplore.cli._render import BOXES_LINES
    from vecexplore.info import boxes_state
    from vecexplore.store import MANIFEST, SCHEMA_VERSION, Run, atomic_write_json, write_run

    out = tmp_path / "run"
    with write_run(out) as w:
        _write_minimal(w)
    manifest = {"schema_version": SCHEMA_VERSION, "task": "detection"}
    if config is not None:
        manifest["config"] = config
    atomic_write_json(out / MANIFEST, manifest)
    run = Run(out)
    assert boxes_state(run) == expected
    assert run.dataset().boxes_clipped is (expected == "clipped")
    claim = {"as_given": "equal pycocotools'", "clipped": "not pycocotools'", "not_recorded": "may differ"}
    assert claim[expected] in BOXES_LINES[expected]
    assert ("clipped boxes" in header_html_for(run)) is (expected == "clipped")


def header_html_for(run) -> str:
    from vecexplore.app.views.header import header_html

    return header_html(key="k", task="detection", model={}, num_images=1, unreadable=0, iou=0.5, confidence=0.5,
                       optimal=0.5, run={}, selection=None, coco={}, clipped=run.boxes_clipped is True)
