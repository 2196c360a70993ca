"""Label Studio and CVAT exports without the tools: percent coordinates, the labeling
config, tasks on hand-built edge cases, the CLI's options and errors.
(tests/test_labeltools_real.py checks the same exports against the real tools.)"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import pytest

from vecexplore.errors import ConfigError
from vecexplore.labeltools import label_studio as ls
from vecexplore.labeltools.cvat import cvat_xml
from vecexplore.types import Boxes, Categories, Dataset, ImageTable, Labels

# ---------------------------------------------------------------- coordinates


@pytest.mark.parametrize("seed", [0, 1, 7, 123])
def test_pixels_percent_pixels_round_trip_on_random_boxes(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    width, height = rng.integers(1, 8000, n), rng.integers(1, 8000, n)
    x, y = rng.uniform(0, width), rng.uniform(0, height)
    xywh = np.stack([x, y, rng.uniform(1e-3, width - x + 1), rng.uniform(1e-3, height - y + 1)], 1)
    pct = ls.to_percent(xywh, width, height)
    np.testing.assert_allclose(pct[:, 0], x / width * 100, rtol=1e-13)
    np.testing.assert_allclose(pct[:, 3], xywh[:, 3] / height * 100, rtol=1e-13)
    inside = (xywh[:, 0] + xywh[:, 2] <= width) & (xywh[:, 1] + xywh[:, 3] <= height)
    assert (pct[inside] >= 0).all() and (pct[inside][:, :2] + pct[inside][:, 2:] <= 100 + 1e-9).all()
    np.testing.assert_allclose(ls.from_percent(pct, width, height), xywh, rtol=1e-12, atol=1e-9)
    # a polygon of k points: x at even, y at odd positions; one image size for all
    poly = rng.uniform(0, 1, (int(rng.integers(3, 30)), 2)) * [width[0], height[0]]
    back = ls.from_percent(ls.to_percent(poly.ravel(), width[0], height[0]), width[0], height[0])
    np.testing.assert_allclose(back.reshape(-1, 2), poly, rtol=1e-12, atol=1e-9)


def test_percent_of_known_boxes():
    np.testing.assert_allclose(ls.to_percent([10, 20, 30, 40], 200, 100), [5, 20, 15, 40])
    np.testing.assert_allclose(ls.to_percent([[0, 0, 640, 480]], [640], [480]), [[0, 0, 100, 100]])


# ---------------------------------------------------------------- hand-built datasets


def _detection(*, masks: bool = False, names=("cat", "dog")) -> Dataset:
    """Image 0: a GT cat, a crowd GT dog, a confident dog and a weak cat prediction;
    image 1: nothing at all; image 2 (size unknown): nothing either."""
    from vecexplore.io.masks import polygon_rles

    images = ImageTable(image_id=np.array([10, 11, 12]), file_name=np.array(["a.jpg", "sub/b.jpg", "c.jpg"], object),
                        width=np.array([200, 50, 0]), height=np.array([100, 40, 0]))
    gt_xywh = np.array([[10.0, 20.0, 30.0, 40.0], [100.0, 10.0, 50.0, 50.0]])
    pred_xywh = np.array([[12.0, 22.0, 28.0, 36.0], [0.0, 0.0, 5.0, 5.0]])

    def rles(xywh):
        if not masks:
            return None
        polys = [np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float64) for x, y, w, h in xywh]
        return polygon_rles(polys, np.full(len(xywh), 100), np.full(len(xywh), 200), lambda i: ("test", str(i)))

    gt = Boxes(image_idx=np.array([0, 0]), class_idx=np.array([0, 1]), xywh=gt_xywh, object_id=np.array([5, 6]),
               iscrowd=np.array([False, True]), rle=rles(gt_xywh))
    pred = Boxes(image_idx=np.array([0, 0]), class_idx=np.array([1, 0]), xywh=pred_xywh, object_id=np.array([1, 2]),
                 score=np.array([0.9, 0.2]), rle=rles(pred_xywh))
    return Dataset(task="detection", images=images, categories=Categories.from_names(names, start=1), gt=gt, pred=pred)


def _classification() -> Dataset:
    images = ImageTable(image_id=np.array([1, 2, 3]), file_name=np.array(["x.jpg", "y.jpg", "z.jpg"], object),
                        width=np.array([0, 0, 0]), height=np.array([0, 0, 0]))
    gt = Labels(image_idx=np.array([0, 2]), class_idx=np.array([1, 0]))
    pred = Labels(image_idx=np.array([0, 1, 2]), class_idx=np.array([1, 1, 1]), score=np.array([0.8, 0.6, 0.4]))
    return Dataset(task="classification", images=images, categories=Categories.from_names(["no", "yes"]), gt=gt, pred=pred)


def test_detection_tasks_place_gt_and_confident_predictions_in_percent():
    ds = _detection()
    out = ls.tasks(ds.subset([0, 1]), images=["/i/a.jpg", "/i/sub/b.jpg"], min_score=0.5)
    assert [t["data"]["image"] for t in out] == ["/i/a.jpg", "/i/sub/b.jpg"]
    (ann,), (pred,) = out[0]["annotations"], out[0]["predictions"]
    assert len(ann["result"]) == 1, "the crowd GT region is left out"
    r = ann["result"][0]
    assert r["id"] == "gt5" and r["type"] == "rectanglelabels" and r["from_name"] == ls.BOX and r["to_name"] == ls.IMAGE
    assert (r["original_width"], r["original_height"]) == (200, 100) and "score" not in r
    assert r["value"]["rectanglelabels"] == ["cat"]
    np.testing.assert_allclose([r["value"][k] for k in ("x", "y", "width", "height")], [5, 20, 15, 40])
    assert [p["id"] for p in pred["result"]] == ["pred1"], "the 0.2 prediction is below min_score"
    assert pred["result"][0]["value"]["rectanglelabels"] == ["dog"] and pred["result"][0]["score"] == 0.9
    assert pred["score"] == pytest.approx(0.9)
    # an image without objects is labeled as empty, and the model predicted nothing there
    assert out[1]["annotations"] == [{"result": []}]
    assert out[1]["predictions"][0]["result"] == [] and out[1]["predictions"][0]["score"] == 0.0


def test_an_image_of_unknown_size_is_refused_only_when_it_has_regions():
    ds = _detection()
    out = ls.tasks(ds.subset([1, 2]), images=["b", "c"])  # image 12 has no objects: no coordinates needed
    assert len(out) == 2
    moved = Dataset(task="detection", images=ds.images, categories=ds.categories, pred=ds.pred,
                    gt=Boxes(image_idx=np.array([2]), class_idx=np.array([0]), xywh=np.array([[1.0, 1, 2, 2]]),
                             object_id=np.array([9])))
    with pytest.raises(ConfigError, match=r"image 12 \(c.jpg\): its size is unknown"):
        ls.tasks(moved, images=["a", "b", "c"])


def test_masks_become_polygons_and_the_config_lists_polygon_labels():
    ds = _detection(masks=True)
    out = ls.tasks(ds.subset([0]), images=["a"])
    r = out[0]["annotations"][0]["result"][0]
    assert r["type"] == "polygonlabels" and r["from_name"] == ls.POLYGON and r["value"]["polygonlabels"] == ["cat"]
    px = ls.from_percent(np.ravel(r["value"]["points"]), 200, 100).reshape(-1, 2)
    # the mask of box [10, 20, 30, 40]: its outline spans the box (pixel-edge contour, half-pixel precision)
    assert px[:, 0].min() == pytest.approx(10, abs=0.5) and px[:, 0].max() == pytest.approx(40, abs=0.5)
    assert px[:, 1].min() == pytest.approx(20, abs=0.5) and px[:, 1].max() == pytest.approx(60, abs=0.5)
    assert ls.region_kinds(ds) == (ls.POLYGON,)
    assert ls.region_kinds(_detection()) == (ls.BOX,)
    root = ET.fromstring(ls.label_config(ds))
    assert [c.tag for c in root] == ["Image", "PolygonLabels"]


def test_label_config_escapes_class_names():
    names = ('a "quoted" <b>', "x & y", "it's")
    root = ET.fromstring(ls.label_config(_detection(names=names[:2])))
    image, rect = list(root)
    assert image.get("name") == ls.IMAGE and image.get("value") == "$image"
    assert rect.tag == "RectangleLabels" and rect.get("toName") == ls.IMAGE
    assert [lab.get("value") for lab in rect] == list(names[:2])
    cls = ET.fromstring(ls.label_config(_classification()))
    assert [c.tag for c in cls] == ["Image", "Choices"] and [c.get("value") for c in cls[1]] == ["no", "yes"]


def test_classification_tasks_are_choices_and_unlabeled_images_get_no_annotation():
    out = ls.tasks(_classification(), images=["x", "y", "z"], min_score=0.5)
    assert out[0]["annotations"] == [{"result": [{"id": "choice", "type": "choices", "from_name": ls.CHOICE,
                                                   "to_name": ls.IMAGE, "value": {"choices": ["yes"]}}]}]
    assert out[1]["annotations"] == [], "image 2 has no label"
    assert out[0]["predictions"][0]["result"][0]["value"] == {"choices": ["yes"]}
    assert out[0]["predictions"][0]["score"] == 0.8 and out[0]["predictions"][0]["result"][0]["score"] == 0.8
    assert out[2]["predictions"] == [], "0.4 is below min_score"


def test_image_ref_by_path_or_local_files_url(tmp_path):
    img = tmp_path / "a dir" / "x+1.jpg"
    assert ls.image_ref(str(img), None) == str(img)
    assert ls.image_ref(str(img), tmp_path) == "/data/local-files/?d=a%20dir/x%2B1.jpg"
    with pytest.raises(ConfigError, match="not inside the document root"):
        ls.image_ref(str(img), tmp_path / "a dir" / "other")
    with pytest.raises(ConfigError, match="not inside the document root"):
        ls.image_ref(str(tmp_path), tmp_path)


def test_cvat_xml_boxes_polygons_and_tags():
    ds = _detection()
    root = ET.fromstring(cvat_xml(ds, ["a.jpg", "sub/b.jpg", "c.jpg"]))
    assert root.findtext("version") == "1.1"
    assert [lab.findtext("name") for lab in root.iter("label")] == ["cat", "dog"]
    images = root.findall("image")
    assert [(i.get("id"), i.get("name"), i.get("width")) for i in images] == [("0", "a.jpg", "200"), ("1", "sub/b.jpg", "50"), ("2", "c.jpg", "0")]
    (box,) = images[0].findall("box")  # the crowd dog is left out; predictions never go in
    assert box.get("label") == "cat" and [float(box.get(k)) for k in ("xtl", "ytl", "xbr", "ybr")] == [10, 20, 40, 60]
    assert not images[1].findall("box")
    poly = ET.fromstring(cvat_xml(_detection(masks=True), ["a", "b", "c"])).find("image/polygon")
    pts = np.array([p.split(",") for p in poly.get("points").split(";")], float)
    assert pts[:, 0].min() == pytest.approx(10, abs=0.5) and pts[:, 1].max() == pytest.approx(60, abs=0.5)
    tags = ET.fromstring(cvat_xml(_classification(), ["x", "y", "z"])).findall("image")
    assert [[t.get("label") for t in i.findall("tag")] for i in tags] == [["yes"], [], ["no"]]


# ---------------------------------------------------------------- the CLI on a run


def _cli(argv, capsys):
    from vecexplore.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_cli_label_studio_export_writes_tasks_config_and_says_how_to_import(demo_run, tmp_path, capsys):
    from vecexplore.store import Run

    run_dir, data = demo_run
    out = tmp_path / "ls.json"
    code, stdout, err = _cli(["export", str(run_dir), "--cluster", "0", "--format", "label-studio",
                              "--document-root", str(data), "--out", str(out)], capsys)
    assert code == 0, err
    tasks = json.loads(out.read_text())
    run = Run(run_dir)
    members = run.images[run.images["cluster"] == 0]
    assert len(tasks) == len(members) > 0
    assert [t["data"]["image_id"] for t in tasks] == members["image_id"].tolist()
    assert all(t["data"]["image"].startswith("/data/local-files/?d=") for t in tasks)
    assert "wrote" in stdout and f"LOCAL_FILES_DOCUMENT_ROOT={data}" in stdout and "ls.label_config.xml" in stdout
    ET.fromstring((tmp_path / "ls.label_config.xml").read_text())
    again = tmp_path / "again.json"
    assert _cli(["export", str(run_dir), "--cluster", "0", "--format", "label-studio", "--document-root", str(data),
                 "--out", str(again)], capsys)[0] == 0
    assert again.read_bytes() == out.read_bytes(), "the same selection gives the same tasks"
    # the config beside an existing export is not overwritten silently either
    out.unlink()
    code, _, err = _cli(["export", str(run_dir), "--cluster", "0", "--format", "label-studio", "--out", str(out)], capsys)
    assert code == 2 and "ls.label_config.xml: already exists" in err


def test_cli_cvat_export_is_a_deterministic_zip(demo_run, tmp_path, capsys):
    run_dir, _ = demo_run
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    for out in (a, b):
        code, _, err = _cli(["export", str(run_dir), "--where", "fn > 0", "--format", "cvat", "--out", str(out)], capsys)
        assert code == 0, err
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as z:
        assert z.namelist() == ["annotations.xml"]
        root = ET.fromstring(z.read("annotations.xml"))
    assert int(root.findtext("meta/task/size")) == len(root.findall("image")) > 0


@pytest.mark.parametrize("argv, message", [
    (["--where", "error_rate > 2", "--format", "label-studio"], "error: the selection is empty"),
    (["--where", "error_rate > 2", "--format", "cvat"], "error: the selection is empty"),
    (["--cluster", "0", "--format", "csv", "--document-root", "/"], "--document-root is for the label-studio format"),
    (["--cluster", "0", "--format", "label-studio", "--with-images"], "--with-images is for the cvat format"),
    (["--cluster", "0", "--format", "label-studio", "--document-root", "/nonexistent-root"], "not inside the document root"),
])
def test_cli_refuses_bad_label_tool_exports(demo_run, tmp_path, capsys, argv, message):
    run_dir, _ = demo_run
    out = tmp_path / "x.out"
    code, _, err = _cli(["export", str(run_dir), *argv, "--out", str(out)], capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert not out.exists() and not ls.config_path(out).exists()


# ---------------------------------------------------------------- merging relabeled COCO back


def _gt_doc() -> dict:
    return {"info": {"v": 1},
            "images": [{"id": 7, "file_name": "images/0001.jpg", "width": 10, "height": 10},
                       {"id": 8, "file_name": "images/0002.jpg", "width": 10, "height": 10},
                       {"id": 9, "file_name": "other/0002.jpg", "width": 10, "height": 10}],
            "annotations": [{"id": 40, "image_id": 7, "category_id": 3, "bbox": [1, 1, 2, 2], "area": 4, "iscrowd": 0},
                            {"id": 41, "image_id": 8, "category_id": 3, "bbox": [1, 1, 2, 2], "area": 4, "iscrowd": 0},
                            {"id": 42, "image_id": 9, "category_id": 5, "bbox": [1, 1, 2, 2], "area": 4, "iscrowd": 0}],
            "categories": [{"id": 3, "name": "cat"}, {"id": 5, "name": "dog"}]}


def test_merge_replaces_only_the_relabeled_images_matching_names_and_classes():
    from vecexplore.labeltools.merge import merge_coco

    gt = _gt_doc()
    tool = {"images": [{"id": 0, "file_name": "../data/images/0002.jpg"}],  # the tool's own ids and paths
            "annotations": [{"id": 0, "image_id": 0, "category_id": 0, "bbox": [2, 3, 4, 5], "segmentation": []},
                            {"id": 1, "image_id": 0, "category_id": 1, "bbox": [0, 0, 1, 1], "area": 0.5}],
            "categories": [{"id": 0, "name": "dog"}, {"id": 1, "name": "cat"}]}
    before = json.dumps(gt)
    merged, report = merge_coco(gt, tool)
    assert json.dumps(gt) == before, "the input is not modified"
    assert (report.n_images, report.n_before, report.n_after) == (1, 1, 2)
    assert merged["images"] == gt["images"] and merged["categories"] == gt["categories"] and merged["info"] == gt["info"]
    by_image = {}
    for a in merged["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    assert by_image[7] == [gt["annotations"][0]] and by_image[9] == [gt["annotations"][2]]
    assert by_image[8] == [{"id": 43, "image_id": 8, "category_id": 5, "bbox": [2.0, 3.0, 4.0, 5.0], "area": 20.0, "iscrowd": 0},
                           {"id": 44, "image_id": 8, "category_id": 3, "bbox": [0.0, 0.0, 1.0, 1.0], "area": 0.5, "iscrowd": 0}]
    # an image the tool lost all boxes of keeps none
    merged, report = merge_coco(gt, {**tool, "annotations": []})
    assert [a["id"] for a in merged["annotations"]] == [40, 42] and report.n_after == 0


@pytest.mark.parametrize("change, message", [
    (lambda t: t["images"].append({"id": 5, "file_name": "x/9999.jpg"}), r"images\[1\].*'x/9999.jpg' is not an image of the original"),
    (lambda t: t["images"].__setitem__(0, {"id": 0, "file_name": "0002.jpg"}), "matches several original images"),
    (lambda t: t["images"].append({"id": 5, "file_name": "b/images/0002.jpg"}), r"images\[0\] and images\[1\] are both"),
    (lambda t: t["categories"].append({"id": 2, "name": "cow"}), r"categories\[1\].*'cow' is not a category"),
    (lambda t: t["annotations"][0].__setitem__("bbox", [1, 2]), r"annotations\[0\].*bbox must be"),
    (lambda t: t["annotations"][0].__setitem__("image_id", 3), r"annotations\[0\].*image_id 3"),
    (lambda t: t.pop("annotations"), "no 'annotations' list"),
])
def test_merge_refuses_what_it_cannot_place(change, message):
    from vecexplore.errors import InputError
    from vecexplore.labeltools.merge import merge_coco

    tool = {"images": [{"id": 0, "file_name": "data/images/0002.jpg"}],
            "annotations": [{"id": 0, "image_id": 0, "category_id": 0, "bbox": [2, 3, 4, 5]}],
            "categories": [{"id": 0, "name": "dog"}]}
    change(tool)
    with pytest.raises(InputError, match=message) as exc:
        merge_coco(_gt_doc(), tool, relabeled_path="tool.json")
    assert str(exc.value).startswith("tool.json")


def test_merge_labels_cli_reads_a_tool_zip(tmp_path, capsys):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(_gt_doc()))
    with zipfile.ZipFile(tmp_path / "export.zip", "w") as z:
        z.writestr("images/", "")
        z.writestr("result.json", json.dumps({"images": [{"id": 1, "file_name": "images/0001.jpg"}], "annotations": [],
                                              "categories": [{"id": 0, "name": "cat"}]}))
    out = tmp_path / "merged.json"
    argv = ["merge-labels", "--gt", str(gt), "--relabeled", str(tmp_path / "export.zip"), "--out", str(out)]
    code, stdout, err = _cli(argv, capsys)
    assert code == 0, err
    assert "1 relabeled images replaced (1 → 0 annotations)" in stdout
    assert [a["id"] for a in json.loads(out.read_text())["annotations"]] == [41, 42]
    code, _, err = _cli(argv, capsys)
    assert code == 2 and "already exists" in err
    (tmp_path / "bad.json").write_text("{")
    code, _, err = _cli([*argv[:4], str(tmp_path / "bad.json"), "--out", str(tmp_path / "m2.json")], capsys)
    assert code == 2 and "bad.json" in err and "invalid JSON" in err and "Traceback" not in err
