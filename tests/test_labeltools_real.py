"""The label-studio and cvat exports against the real tools.

* Label Studio: one real server for the module (its own cached venv, SQLite, 127.0.0.1;
  :mod:`_label_studio`): create a project with the exported labeling config, import the
  exported tasks, read them back through the REST API, and compare task, annotation and
  prediction counts, labels, scores and box coordinates (back in pixels) with the run.
* CVAT: datumaro (CVAT's format library, in its own cached venv) reads the zip; its
  images, labels and coordinates must be the run's.

The first run builds both venvs (several minutes); later runs reuse them. All tests of
the module run on one pytest worker (``make test`` distributes by group) so that they
share one server.
"""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import test_app_browser as _browser_tests
from _io_helpers import add_demo_masks

from vecexplore.export import export_selection, image_paths
from vecexplore.labeltools.label_studio import config_path, from_percent
from vecexplore.store import Run

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("label-tools")]

DATUMARO = "1.13.12"
HERE = Path(__file__).parent

browser = _browser_tests.browser  # Chromium, for the app's own downloads


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """One Label Studio server for every test here; it serves local files from the session's
    temporary folder (where the demo runs' images are)."""
    from _label_studio import start

    server = start(tmp_path_factory.mktemp("label-studio-data"), tmp_path_factory.getbasetemp())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def segm_run(tmp_path_factory, umap_warm):
    from conftest import build_demo_run

    from vecexplore.demo import generate_demo

    base = tmp_path_factory.mktemp("labeltools-segm")
    generate_demo(base / "data-detection", n=60, seed=3)  # where build_demo_run finds it
    add_demo_masks(base / "data-detection")
    result, _ = build_demo_run(base, seed=3)
    return result.out


def _import(server, run: Run, selection: np.ndarray, out: Path) -> tuple[int, list[dict]]:
    """Export ``selection`` as Label Studio tasks, create a project from the config, import:
    (project id, the tasks Label Studio gives back, in selection order). Label Studio must
    hold every region as exported."""
    export_selection(run, selection, fmt="label-studio", out=out, document_root=server.document_root)
    exported = json.loads(out.read_text())
    project = server.call("POST", "/api/projects", {"title": f"vecexplore {out.stem}",
                                                     "label_config": config_path(out).read_text()})["id"]
    report = server.call("POST", f"/api/projects/{project}/import", exported)
    assert report["task_count"] == len(exported)
    assert report["annotation_count"] == sum(len(t["annotations"]) for t in exported)
    assert report["prediction_count"] == sum(len(t["predictions"]) for t in exported)
    back = server.tasks(project)
    assert len(back) == len(exported)
    order = {t["data"]["image_id"]: i for i, t in enumerate(exported)}
    back = sorted(back, key=lambda t: order[t["data"]["image_id"]])
    for sent, got in zip(exported, back, strict=True):
        assert got["data"] == sent["data"]
        for key in ("annotations", "predictions"):
            assert [a["result"] for a in got[key]] == [a["result"] for a in sent[key]]
        assert [p["score"] for p in got["predictions"]] == pytest.approx([p["score"] for p in sent["predictions"]])
    return project, back


def _regions(task: dict, key: str) -> dict[str, dict]:
    (item,) = task[key]
    return {r["id"]: r for r in item["result"]}


def _selection(run: Run, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(len(run.images), size=min(n, len(run.images)), replace=False))


# ---------------------------------------------------------------- Label Studio


def test_label_studio_takes_the_detection_tasks_as_exported(label_studio, demo_run, tmp_path):
    run = Run(demo_run[0])
    selection = _selection(run, 40, seed=11)
    project, back = _import(label_studio, run, selection, tmp_path / "det.json")
    _check_detection_tasks(run, selection, back)
    # the image behind the first task is served by Label Studio as a local file
    label_studio.call("POST", "/api/storages/localfiles", {"project": project, "title": "images",
                                                            "path": str(Path(image_paths(run)[selection[0]]).parent),
                                                            "use_blob_urls": True})
    body = label_studio.call("GET", back[0]["data"]["image"], raw=True)
    assert body == Path(image_paths(run)[selection[0]]).read_bytes()
    _round_trip_through_coco(label_studio, project, run, selection, demo_run[1] / "annotations.json", tmp_path)


def _check_detection_tasks(run: Run, selection: np.ndarray, back: list[dict]) -> None:
    """The tasks Label Studio gives back (in selection order) hold the run's GT (not crowd) as
    annotations and its predictions at the operating point as pre-annotations, box for box."""
    ds = run.dataset()
    conf = run.metrics["operating_point"]["confidence"]
    names = ds.categories.names
    n_gt = n_pred = 0
    for i, task in zip(selection.tolist(), back, strict=True):
        assert task["data"]["image_id"] == int(ds.images.image_id[i])
        w, h = int(ds.images.width[i]), int(ds.images.height[i])
        for kind, objs, keep in (("annotations", ds.gt, ~ds.gt.iscrowd), ("predictions", ds.pred, ds.pred.score >= conf)):
            rows = np.flatnonzero((objs.image_idx == i) & keep)
            regions = _regions(task, kind)
            prefix = "gt" if kind == "annotations" else "pred"
            assert sorted(regions) == sorted(f"{prefix}{o}" for o in objs.object_id[rows].tolist())
            for r in rows.tolist():
                reg = regions[f"{prefix}{int(objs.object_id[r])}"]
                v = reg["value"]
                assert (reg["original_width"], reg["original_height"]) == (w, h)
                assert v["rectanglelabels"] == [names[objs.class_idx[r]]]
                px = from_percent([v["x"], v["y"], v["width"], v["height"]], w, h)
                np.testing.assert_allclose(px, objs.xywh[r], rtol=0, atol=1e-6)
                if kind == "predictions":
                    assert reg["score"] == pytest.approx(float(objs.score[r]))
            n_gt += len(rows) if kind == "annotations" else 0
            n_pred += len(rows) if kind == "predictions" else 0
    assert n_gt > 0 and n_pred > 0
    assert sum(len(_regions(t, "annotations")) for t in back) == n_gt


def _round_trip_through_coco(server, project: int, run: Run, selection: np.ndarray, gt_file: Path, tmp_path: Path):
    """Label Studio's own COCO export, merged into the original GT (``merge-labels``), gives the
    original GT back: the relabeling loop closes without a hand edit."""
    from vecexplore.cli import main

    (tmp_path / "ls-coco.zip").write_bytes(server.call("GET", f"/api/projects/{project}/export?exportType=COCO", raw=True))
    merged_file = tmp_path / "merged.json"
    with pytest.raises(SystemExit) as exc:
        main(["merge-labels", "--gt", str(gt_file), "--relabeled", str(tmp_path / "ls-coco.zip"), "--out", str(merged_file)])
    assert exc.value.code == 0
    original, merged = json.loads(gt_file.read_text()), json.loads(merged_file.read_text())
    assert merged["images"] == original["images"] and merged["categories"] == original["categories"]
    chosen = set(run.images["image_id"].to_numpy()[selection].tolist())

    def boxes(doc, keep):
        out: dict = {}
        for a in doc["annotations"]:
            if keep(a["image_id"]) and not a.get("iscrowd"):
                out.setdefault(a["image_id"], []).append((a["category_id"], *np.round(a["bbox"], 6).tolist()))
        return {k: sorted(v) for k, v in out.items()}

    assert boxes(merged, chosen.__contains__) == boxes(original, chosen.__contains__)
    untouched = [a for a in original["annotations"] if a["image_id"] not in chosen]
    assert [a for a in merged["annotations"] if a["image_id"] not in chosen] == untouched


def test_label_studio_takes_mask_polygons(label_studio, segm_run, tmp_path):
    from pycocotools import mask as mask_utils

    run = Run(segm_run)
    ds = run.dataset()
    selection = _selection(run, 15, seed=5)
    _, back = _import(label_studio, run, selection, tmp_path / "segm.json")
    checked = 0
    for i, task in zip(selection.tolist(), back, strict=True):
        w, h = int(ds.images.width[i]), int(ds.images.height[i])
        regions = _regions(task, "annotations")
        for r in np.flatnonzero(ds.gt.image_idx == i).tolist():
            reg = regions[f"gt{int(ds.gt.object_id[r])}"]
            assert reg["type"] == "polygonlabels" and reg["value"]["polygonlabels"] == [ds.categories.names[ds.gt.class_idx[r]]]
            px = from_percent(np.ravel(reg["value"]["points"]), w, h)
            # the polygon Label Studio holds is the object's mask: its outline runs through the
            # boundary pixels' centres, so rasterised again it loses at most about half a pixel
            # along the border (perimeter ≤ 2 (w + h) of the box)
            rle = mask_utils.frPyObjects([px.tolist()], h, w)[0]
            iou = mask_utils.iou([rle], [ds.gt.rle[r]], [0])[0, 0]
            bw, bh = ds.gt.xywh[r, 2:]
            assert iou >= 1 - (bw + bh + 2) / float(mask_utils.area(ds.gt.rle[r])), (int(ds.gt.object_id[r]), iou)
            checked += 1
    assert checked > 0


def test_label_studio_takes_classification_choices(label_studio, demo_run_classification, tmp_path):
    run = Run(demo_run_classification[0])
    ds = run.dataset()
    selection = _selection(run, 30, seed=2)
    _, back = _import(label_studio, run, selection, tmp_path / "cls.json")
    label = dict(zip(ds.gt.image_idx.tolist(), ds.gt.class_idx.tolist(), strict=True))
    pred = dict(zip(ds.pred.image_idx.tolist(), zip(ds.pred.class_idx.tolist(), ds.pred.score.tolist(), strict=True), strict=True))
    assert "operating_point" not in run.metrics, "classification has no confidence threshold: every prediction goes"
    names = ds.categories.names
    for i, task in zip(selection.tolist(), back, strict=True):
        got = [r["value"]["choices"] for a in task["annotations"] for r in a["result"]]
        assert got == ([[names[label[i]]]] if i in label else [])
        preds = [(r["value"]["choices"], r["score"]) for p in task["predictions"] for r in p["result"]]
        assert preds == ([([names[pred[i][0]]], pytest.approx(pred[i][1]))] if i in pred else [])


# ---------------------------------------------------------------- CVAT, read by datumaro


@pytest.fixture(scope="module")
def datumaro_python():
    from _tool_venvs import tool_venv

    return tool_venv("datumaro", DATUMARO) / "bin" / "python"


def _datumaro(python: Path, folder: Path, fmt: str = "cvat") -> dict:
    res = subprocess.run([str(python), str(HERE / "_datumaro_read.py"), str(folder), fmt],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"datumaro could not read {folder}:\n{res.stderr[-3000:]}"
    return json.loads(res.stdout)


def _unzip(path: Path, to: Path) -> Path:
    with zipfile.ZipFile(path) as z:
        z.extractall(to)
    return to


def _check_cvat(run: Run, selection: np.ndarray, found: dict, *, shape: str) -> int:
    """datumaro's reading equals the run's GT on ``selection``: names, sizes, labels, pixels."""
    from vecexplore.io.yolo import export_names
    from vecexplore.labeltools import outline

    ds = run.dataset()
    assert found["labels"] == list(ds.categories.names)
    sub = ds.subset(selection)
    names = export_names(sub.images)
    items = {it["id"]: it for it in found["items"]}
    assert sorted(items) == sorted(str(Path(n).with_suffix("")) for n in names)
    n = 0
    for j, name in enumerate(names):
        item = items[str(Path(name).with_suffix(""))]
        assert item["size"] == [int(sub.images.height[j]), int(sub.images.width[j])]
        rows = np.flatnonzero(sub.gt.image_idx == j)
        if shape == "label":
            assert [(a["type"], a["label"]) for a in item["annotations"]] == [("label", ds.categories.names[sub.gt.class_idx[r]]) for r in rows]
            n += len(rows)
            continue
        rows = rows[~sub.gt.iscrowd[rows]]
        anns = item["annotations"]
        assert [(a["type"], a["label"]) for a in anns] == [(shape, ds.categories.names[sub.gt.class_idx[r]]) for r in rows]
        for a, r in zip(anns, rows.tolist(), strict=True):
            if shape == "bbox":
                x, y, w, h = sub.gt.xywh[r]
                want = np.array([x, y, x + w, y + h])
            else:
                want = outline(sub.gt, r).ravel()
            np.testing.assert_allclose(a["points"], want, rtol=1e-6, atol=1e-3)  # datumaro keeps float32
        n += len(rows)
    return n


def test_datumaro_reads_the_cvat_zip_with_images(datumaro_python, demo_run, tmp_path):
    run = Run(demo_run[0])
    selection = _selection(run, 50, seed=21)
    out = export_selection(run, selection, fmt="cvat", out=tmp_path / "cvat.zip", with_images=True)
    found = _datumaro(datumaro_python, _unzip(out, tmp_path / "x"))
    assert _check_cvat(run, selection, found, shape="bbox") > 0
    from vecexplore.io.yolo import export_names

    paths = image_paths(run)
    by_id = {str(Path(n).with_suffix("")): paths[i] for n, i in
             zip(export_names(run.dataset().subset(selection).images), selection.tolist(), strict=True)}
    for it in found["items"]:  # the images in the zip are the run's files
        assert Path(it["image"]).read_bytes() == Path(by_id[it["id"]]).read_bytes()


def test_datumaro_reads_the_annotations_only_zip_beside_the_tasks_images(datumaro_python, demo_run, tmp_path):
    """Without --with-images the zip is what CVAT imports into a task that has the images:
    datumaro reads it with the images placed as the task holds them."""
    import shutil

    from vecexplore.io.yolo import export_names

    run = Run(demo_run[0])
    selection = _selection(run, 25, seed=4)
    out = export_selection(run, selection, fmt="cvat", out=tmp_path / "ann.zip")
    folder = _unzip(out, tmp_path / "x")
    assert sorted(p.name for p in folder.iterdir()) == ["annotations.xml"]
    for name, i in zip(export_names(run.dataset().subset(selection).images), selection.tolist(), strict=True):
        (folder / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(image_paths(run)[i], folder / "images" / name)
    assert _check_cvat(run, selection, _datumaro(datumaro_python, folder), shape="bbox") > 0


def test_datumaro_reads_mask_polygons_and_classification_tags(datumaro_python, segm_run, demo_run_classification, tmp_path):
    for run_dir, shape in ((segm_run, "polygon"), (demo_run_classification[0], "label")):
        run = Run(run_dir)
        selection = _selection(run, 20, seed=8)
        out = export_selection(run, selection, fmt="cvat", out=tmp_path / f"{shape}.zip", with_images=True)
        found = _datumaro(datumaro_python, _unzip(out, tmp_path / shape))
        assert _check_cvat(run, selection, found, shape=shape) > 0


# ---------------------------------------------------------------- the app's downloads, into the same tools


def test_the_apps_label_studio_and_cvat_downloads_load_in_the_real_tools(browser, label_studio, datumaro_python,
                                                                         demo_run, tmp_path):
    """In Chromium: select a confusion cell, export it as Label Studio tasks and as a CVAT archive
    with the page's own format menu and button; Label Studio imports the first download and
    datumaro reads the second, each holding the run's boxes for exactly the selected images."""
    from test_app_browser import TIMEOUT_MS, AppPage, _pick_cell

    from vecexplore.app.data import load_run_data
    from vecexplore.app.server import ServerThread

    data = load_run_data(demo_run[0])
    run = Run(demo_run[0])
    i, j, images = _pick_cell(data.evaluation())
    server = ServerThread([demo_run[0]])
    try:
        app = AppPage(browser, server.url)
        app.click_glyph("confusion-cells", i * len(data.evaluation().confusion.labels) + j)
        app.wait_for("([n]) => Bokeh.documents[0].get_model_by_name('scatter-source').selected.indices.length == n",
                     [len(images)])
        app.settle()
        menu = app.page.evaluate_handle("() => Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name("
                                        "'export-format')).shadow_el.querySelector('select')").as_element()
        files = {}
        for fmt, label in (("label-studio", "Label Studio tasks"), ("cvat", "CVAT archive")):
            menu.select_option(label=label)
            app.wait_for(f"() => Bokeh.documents[0].get_model_by_name('export-format').value == '{fmt}'")
            with app.page.expect_download(timeout=TIMEOUT_MS) as info:
                app.click_widget("export-button", "button")
            files[fmt] = tmp_path / info.value.suggested_filename
            info.value.save_as(files[fmt])
            assert files[fmt].suffix == ".zip"
        assert app.close() == []
    finally:
        server.stop()
    selection = np.sort(np.asarray(images, np.int64))
    # Label Studio: a project from the download's config, its tasks imported and read back
    folder = _unzip(files["label-studio"], tmp_path / "ls")
    tasks = json.loads((folder / "tasks.json").read_text())
    assert sorted(t["data"]["image_id"] for t in tasks) == sorted(run.images["image_id"].to_numpy()[selection].tolist())
    project = label_studio.call("POST", "/api/projects", {"title": "vecexplore app download",
                                                          "label_config": (folder / "label_config.xml").read_text()})["id"]
    report = label_studio.call("POST", f"/api/projects/{project}/import", tasks)
    assert report["task_count"] == len(selection)
    order = {int(run.images["image_id"].iloc[k]): n for n, k in enumerate(selection.tolist())}
    back = sorted(label_studio.tasks(project), key=lambda t: order[t["data"]["image_id"]])
    _check_detection_tasks(run, selection, back)
    # CVAT: the annotations of exactly those images (the zip CVAT imports into a task that holds
    # them); datumaro reads it with the images placed as the task holds them
    import shutil

    from vecexplore.io.yolo import export_names

    folder = _unzip(files["cvat"], tmp_path / "cvat")
    for name, k in zip(export_names(run.dataset().subset(selection).images), selection.tolist(), strict=True):
        (folder / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(image_paths(run)[k], folder / "images" / name)
    found = _datumaro(datumaro_python, folder)
    assert _check_cvat(run, selection, found, shape="bbox") > 0
