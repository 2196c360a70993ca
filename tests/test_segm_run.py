"""A run built from inputs with masks: the manifest records the IoU type, the store keeps
the masks, exports keep them, and the app header and detail view show them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _io_helpers import add_demo_masks

pytest.importorskip("pycocotools")


@pytest.fixture(scope="module")
def segm_run(tmp_path_factory, umap_warm):
    from conftest import TINY_MODEL

    from vecexplore.builder import BuildConfig, build_run
    from vecexplore.demo import demo_source, generate_demo
    from vecexplore.embed.pipeline import EmbedConfig
    from vecexplore.mapping import MapConfig

    base = tmp_path_factory.mktemp("segm-run")
    data = base / "data"
    generate_demo(data, n=60, seed=1)
    add_demo_masks(data)
    result = build_run(BuildConfig(source=demo_source(data), out=base / "run",
                                   embed=EmbedConfig(model=TINY_MODEL, weights="random", device="cpu", num_workers=0),
                                   map=MapConfig(seed=0), cache_dir=base / "cache", scan_workers=0))
    return result.out, data


def test_run_records_iou_type_and_keeps_masks(segm_run):
    from vecexplore.eval.evaluate import evaluate
    from vecexplore.io import load_dataset
    from vecexplore.io.source import DatasetSource
    from vecexplore.store import Run

    run_dir, data = segm_run
    run = Run(run_dir)
    assert run.manifest["config"]["iou_type"] == "segm"
    metrics = run.metrics
    assert metrics["operating_point"]["iou_type"] == "segm" and "coco_segm" in metrics
    ds = run.dataset()
    src = load_dataset(DatasetSource(gt=data / "annotations.json", pred=data / "predictions.json"), check_images=False)
    for a, b in ((ds.gt, src.gt), (ds.pred, src.pred)):
        assert [r["counts"] for r in a.rle] == [r["counts"] for r in b.rle]
        assert [r["size"] for r in a.rle] == [r["size"] for r in b.rle]
    assert evaluate(ds).coco_segm.as_dict() == metrics["coco_segm"]


def test_info_reports_mask_metrics(segm_run, capsys):
    from vecexplore.cli import main
    from vecexplore.store import Run

    run_dir = segm_run[0]
    segm = Run(run_dir).metrics["coco_segm"]
    with pytest.raises(SystemExit) as exit_:
        main(["info", str(run_dir), "--json"])
    assert exit_.value.code == 0
    head = json.loads(capsys.readouterr().out)["metrics"]
    assert head["mask_mAP"] == segm["AP"] and head["mask_AP50"] == segm["AP50"]
    assert head["mAP"] == Run(run_dir).metrics["coco"]["AP"]
    with pytest.raises(SystemExit) as exit_:
        main(["info", str(run_dir)])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert f"mask_mAP {segm['AP']:.3f}" in text


def test_exports_keep_masks(segm_run, tmp_path):
    from vecexplore.export import export_selection
    from vecexplore.store import Run

    run = Run(segm_run[0])
    idx = np.arange(5)
    out = tmp_path / "sub.json"
    export_selection(run, idx, fmt="coco", out=out)
    doc = json.loads(out.read_text())
    assert doc["annotations"] and all("segmentation" in a for a in doc["annotations"])
    a = doc["annotations"][0]
    rle = {"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()}
    ds = run.dataset()
    row = int(np.flatnonzero(ds.gt.object_id == a["id"])[0])
    assert rle["counts"] == ds.gt.rle[row]["counts"]
    export_selection(run, idx, fmt="yolo", out=tmp_path / "yolo")
    lines = [ln for f in (tmp_path / "yolo" / "labels").rglob("*.txt") for ln in f.read_text().splitlines()]
    assert lines and all(len(ln.split()) >= 7 and len(ln.split()) % 2 == 1 for ln in lines)


def test_app_header_and_detail_view_show_masks(segm_run):
    from bokeh.document import Document

    from vecexplore.app.data import load_run_data
    from vecexplore.app.document import build_document
    from vecexplore.app.events import OpenImage

    data = load_run_data(segm_run[0])
    assert data.base.iou_type == "segm"
    session = build_document(Document(), data, url_base="/vx/test")
    header = session.view("header").div.text
    assert "mask IoU" in header
    segm, box = data.run.metrics["coco_segm"], data.run.metrics["coco"]
    # the mask AP leads the header, the box AP follows; the two differ on these octagons
    assert segm["AP"] != box["AP"]
    assert header.index("Mask mAP") < header.index("Box mAP")
    cells = header.split("<tr>")[2]  # the whole-run row
    assert f"<td>{segm['AP']:.3f}</td>" in cells and f"<td>{box['AP']:.3f}</td>" in cells
    detail = session.view("detail")
    assert detail.has_masks and detail.layers.visible
    i = int(np.argmax(np.bincount(data.dataset.gt.image_idx, minlength=data.num_images)))
    session.emit(OpenImage(i))
    g = detail.gt_masks.data
    n_gt = int((data.dataset.gt.image_idx == i).sum())
    assert len(g["xs"]) == n_gt == len(detail.gt.data["left"])
    # each patch lies inside its object's box (the octagon is inscribed in it)
    for xs, ys, left, right, top, bottom in zip(g["xs"], g["ys"], detail.gt.data["left"], detail.gt.data["right"],
                                                 detail.gt.data["top"], detail.gt.data["bottom"], strict=True):
        assert np.nanmin(xs) >= left - 1.5 and np.nanmax(xs) <= right + 1.5
        assert np.nanmin(ys) >= top - 1.5 and np.nanmax(ys) <= bottom + 1.5
    assert len(detail.pred_masks.data["xs"]) == len(detail.pred.data["left"])


_VISIBLE = "(name) => Bokeh.documents[0].get_model_by_name(name).visible"


@pytest.mark.browser
def test_browser_boxes_and_masks_toggles(segm_run):
    """In Chromium: masks drawn by default, the Boxes / Masks and Ground truth toggles switch renderers."""
    from test_app_browser import CHROMIUM, CHROMIUM_ARGS, AppPage

    from vecexplore.app.server import ServerThread

    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM}: run `make chromium` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    server = ServerThread([segm_run[0]])
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            app = AppPage(browser, server.url)
            app.wait_for("() => Bokeh.documents[0].get_model_by_name('detail-gt-masks').get_length() > 0")
            seen = lambda name: app.page.evaluate(_VISIBLE, name)  # noqa: E731
            assert seen("detail-gt-mask-patches") and seen("detail-pred-mask-patches")
            assert not seen("detail-gt-boxes") and not seen("detail-pred-boxes")
            app.click_widget("detail-layers", "label:nth-child(1) input")  # Boxes on
            app.settle()
            assert seen("detail-gt-boxes") and seen("detail-gt-mask-patches")
            app.click_widget("detail-layers", "label:nth-child(2) input")  # Masks off
            app.settle()
            assert seen("detail-gt-boxes") and not seen("detail-gt-mask-patches")
            app.click_widget("detail-layers", "label:nth-child(2) input")  # Masks on again
            app.click_widget("detail-toggles", "label:nth-child(1) input")  # Ground truth off
            app.settle()
            assert not seen("detail-gt-mask-patches") and not seen("detail-gt-boxes")
            assert seen("detail-pred-mask-patches") and seen("detail-pred-boxes")
            assert app.errors == []
            browser.close()
    finally:
        server.stop()
