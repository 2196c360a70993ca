"""Bad input: one row per kind, each asserting the exception type and that the message
names the file, the record and the problem; plus missing images and the CLI contract."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
from _io_helpers import coco_gt, coco_pred, make_image, write_coco, write_json, write_text

from vecexplore.errors import (
    ConfigError,
    InputError,
    MissingImagesError,
    ValidationError,
    VecexploreError,
)
from vecexplore.io import DatasetSource, find_missing_images, load_dataset

NAN, INF = float("nan"), float("inf")


def _set(path, value):
    """A mutator: ``obj[path...] = value`` on a deep copy."""

    def mutate(obj):
        obj = copy.deepcopy(obj)
        target = obj
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return obj

    return mutate


_DELETE = object()
_ANN_NO_ID = {"image_id": 100, "category_id": 2, "bbox": [1, 1, 2, 2]}

# (id, gt mutator, pred mutator, file, record, problem)
COCO_CASES = [
    ("gt-not-object", lambda g: [g], None, "instances.json", None, "expected a COCO object"),
    ("pred-not-list", None, lambda p: "boxes", "predictions.json", None, "expected a list of predictions, got a string"),
    ("pred-dict-without-annotations", None, lambda p: {"results": p}, "predictions.json", None, "'annotations' list"),
    ("images-not-list", _set(["images"], {"id": 1}), None, "instances.json", None, "'images' must be a list"),
    ("missing-images", _set(["images"], _DELETE), None, "instances.json", None, "missing required key 'images'"),
    ("missing-categories", _set(["categories"], _DELETE), None, "instances.json", None, "missing required key 'categories'"),
    ("image-missing-file_name", _set(["images", 1, "file_name"], _DELETE), None, "instances.json", "images[1]", "missing required key 'file_name'"),
    ("image-id-string", _set(["images", 2, "id"], "102"), None, "instances.json", "images[2]", "id must be an integer, got '102'"),
    ("image-width-string", _set(["images", 0, "width"], "640"), None, "instances.json", "images[0] (id 100)", "width must be a non-negative integer"),
    ("category-missing-name", _set(["categories", 1, "name"], _DELETE), None, "instances.json", "categories[1]", "missing required key 'name'"),
    ("duplicate-category-id", _set(["categories", 2, "id"], 7), None, "instances.json", "categories[2] (id 7)", "duplicate category id (also categories[0])"),
    ("ann-missing-bbox", _set(["annotations", 1, "bbox"], _DELETE), None, "instances.json", "annotations[1] (id 12)", "missing required key 'bbox'"),
    ("ann-missing-id", _set(["annotations", 2], _ANN_NO_ID), None, "instances.json", "annotations[2]", "missing required key 'id'"),
    ("ann-bbox-string", _set(["annotations", 0, "bbox"], "1,2,3,4"), None, "instances.json", "annotations[0] (id 11)", "bbox must be a list of 4 numbers"),
    ("ann-bbox-3", _set(["annotations", 0, "bbox"], [1, 2, 3]), None, "instances.json", "annotations[0] (id 11)", "bbox must be a list of 4 numbers"),
    ("ann-category-float", _set(["annotations", 1, "category_id"], 2.5), None, "instances.json", "annotations[1] (id 12)", "category_id must be an integer, got 2.5"),
    ("ann-iscrowd-2", _set(["annotations", 1, "iscrowd"], 2), None, "instances.json", "annotations[1] (id 12)", "iscrowd must be 0 or 1"),
    ("ann-area-negative", _set(["annotations", 1, "area"], -1), None, "instances.json", "annotations[1] (id 12)", "area must be a finite number >= 0"),
    ("ann-bbox-nan", _set(["annotations", 1, "bbox", 0], NAN), None, "instances.json", "annotations[1] (id 12)", "bbox has a non-finite value"),
    ("ann-bbox-inf", _set(["annotations", 2, "bbox", 3], INF), None, "instances.json", "annotations[2] (id 13)", "bbox has a non-finite value"),
    ("ann-bbox-zero-width", _set(["annotations", 0, "bbox", 2], 0.0), None, "instances.json", "annotations[0] (id 11)", "bbox has non-positive width (w=0.0)"),
    ("ann-bbox-negative-height", _set(["annotations", 2, "bbox", 3], -2), None, "instances.json", "annotations[2] (id 13)", "bbox has non-positive height (h=-2.0)"),
    ("duplicate-image-id", _set(["images", 2, "id"], 100), None, "instances.json", "images[2] (id 100)", "duplicate image id (also images[0])"),
    ("duplicate-annotation-id", _set(["annotations", 2, "id"], 11), None, "instances.json", "annotations[2] (id 11)", "duplicate annotation id 11 (also annotations[0])"),
    ("ann-unknown-image", _set(["annotations", 1, "image_id"], 999), None, "instances.json", "annotations[1] (id 12)", "unknown image_id 999"),
    ("ann-unknown-category", _set(["annotations", 2, "category_id"], 3), None, "instances.json", "annotations[2] (id 13)", "unknown category_id 3"),
    ("ann-outside-image", _set(["annotations", 1, "bbox"], [70, 10, 5, 5]), None, "instances.json", "annotations[1] (id 12)", "lies entirely outside its image (image id 100, 64x48)"),
    ("pred-missing-score", None, _set([1, "score"], _DELETE), "predictions.json", "[1]", "missing required key 'score'"),
    ("pred-not-object", None, _set([2], [1, 2]), "predictions.json", "[2]", "expected an object, got a list"),
    ("pred-score-string", None, _set([0, "score"], "0.5"), "predictions.json", "[0]", "score must be a number, got '0.5'"),
    ("pred-score-nan", None, _set([2, "score"], NAN), "predictions.json", "[2]", "score must be in [0, 1], got nan"),
    ("pred-score-above-1", None, _set([1, "score"], 1.5), "predictions.json", "[1]", "score must be in [0, 1], got 1.5"),
    ("pred-score-negative", None, _set([0, "score"], -0.1), "predictions.json", "[0]", "score must be in [0, 1], got -0.1"),
    ("pred-bbox-zero-width", None, _set([2, "bbox", 2], 0.0), "predictions.json", "[2]", "bbox has non-positive width (w=0.0)"),
    ("pred-bbox-inf", None, _set([0, "bbox", 1], -INF), "predictions.json", "[0]", "bbox has a non-finite value"),
    ("pred-unknown-image", None, _set([1, "image_id"], 5), "predictions.json", "[1]", "unknown image_id 5"),
    ("pred-unknown-category", None, _set([0, "category_id"], 1), "predictions.json", "[0]", "unknown category_id 1"),
    ("pred-dict-bad-record", None, lambda p: {"annotations": _set([1, "bbox"], None)(p)}, "predictions.json", "annotations[1]", "bbox must be a list"),
    ("pred-duplicate-ids", None, lambda p: [dict(r, id=4) for r in p], "predictions.json", "[1] (id 4)", "duplicate annotation id 4 (also [0])"),
    ("empty-images", _set(["images"], []), None, "instances.json", None, "no images (empty dataset)"),
    ("empty-categories", _set(["categories"], []), None, "instances.json", None, "'categories' is empty"),
]


@pytest.mark.parametrize("case", COCO_CASES, ids=[c[0] for c in COCO_CASES])
def test_coco_bad_input(tmp_path, case):
    _, gt_mut, pred_mut, file, record, problem = case
    gt, pred = coco_gt(), coco_pred()
    write_coco(tmp_path, gt, pred)  # valid images on disk
    write_json(tmp_path / "instances.json", gt_mut(gt) if gt_mut else gt)
    write_json(tmp_path / "predictions.json", pred_mut(pred) if pred_mut else pred)
    source = DatasetSource(gt=tmp_path / "instances.json", pred=tmp_path / "predictions.json")
    with pytest.raises(InputError) as info:
        load_dataset(source)
    message = str(info.value)
    assert str(tmp_path / file) in message
    if record is not None:
        assert f"{file}: {record}: " in message
    assert problem in message
    assert info.value.path is not None and info.value.path.name == file


@pytest.mark.parametrize(
    "text, where",
    [
        ('{"images": [1, 2,]}', "line 1, column 18"),
        ('{\n  "images": [\n    {"id": 1}\n    {"id": 2}\n  ]\n}', "line 4, column 5"),
        ("", "line 1, column 1"),
    ],
)
def test_invalid_json_names_line_and_column(tmp_path, text, where):
    write_text(tmp_path / "instances.json", text)
    write_json(tmp_path / "predictions.json", [])
    with pytest.raises(InputError, match="invalid JSON at " + where) as info:
        load_dataset(DatasetSource(gt=tmp_path / "instances.json", pred=tmp_path / "predictions.json"))
    assert str(tmp_path / "instances.json") in str(info.value)


@pytest.mark.parametrize(
    "missing, what",
    [("instances.json", "ground truth not found"), ("predictions.json", "file not found")],
)
def test_missing_file(tmp_path, missing, what):
    write_coco(tmp_path)
    (tmp_path / missing).unlink()
    with pytest.raises(InputError, match=what) as info:
        load_dataset(DatasetSource(gt=tmp_path / "instances.json", pred=tmp_path / "predictions.json"))
    assert str(tmp_path / missing) in str(info.value)


# ---------------------------------------------------------------- CSV, ImageFolder, YOLO

GT_CSV = "file_name,label\na.png,cat\nb.png,dog\n"
PRED_CSV = "file_name,prediction,score\na.png,cat,0.9\nb.png,cat,0.2\n"

# (id, gt text, pred text, file at fault, record, problem)
CSV_CASES = [
    ("gt-no-label-column", "file_name,class\na.png,cat\n", PRED_CSV, "gt.csv", "line 1", "missing required column(s) ['label']"),
    ("pred-no-prediction-column", GT_CSV, "file_name,label,score\na.png,cat,0.5\n", "pred.csv", "line 1", "missing required column(s) ['prediction']"),
    ("pred-no-score-column", GT_CSV, "file_name,prediction\na.png,cat\n", "pred.csv", "line 1", "missing required column(s) ['score']"),
    ("gt-empty-label", "file_name,label\na.png,cat\nb.png,\n", PRED_CSV, "gt.csv", "line 3", "empty label"),
    ("gt-wrong-field-count", "file_name,label\na.png,cat,extra\n", PRED_CSV, "gt.csv", "line 2", "expected 2 fields"),
    ("gt-duplicate-file", "file_name,label\na.png,cat\nb.png,dog\na.png,dog\n", PRED_CSV, "gt.csv", "line 4", "duplicate file_name 'a.png' (also line 2)"),
    ("gt-no-rows", "file_name,label\n", PRED_CSV, "gt.csv", None, "no images (empty dataset)"),
    ("pred-unknown-label", GT_CSV, "file_name,prediction,score\na.png,cat,0.9\nb.png,horse,0.3\n", "pred.csv", "line 3", "prediction 'horse' is not a known class"),
    ("pred-unknown-file", GT_CSV, "file_name,prediction,score\nz.png,cat,0.9\n", "pred.csv", "line 2", "prediction for 'z.png', which has no ground truth"),
    ("pred-twice", GT_CSV, "file_name,prediction,score\na.png,cat,0.9\na.png,dog,0.3\n", "pred.csv", "line 3", "second prediction for 'a.png' (also line 2)"),
    ("pred-score-nan", GT_CSV, "file_name,prediction,score\na.png,cat,nan\n", "pred.csv", "line 2", "score must be in [0, 1], got nan"),
    ("pred-score-above-1", GT_CSV, "file_name,prediction,score\na.png,cat,1.01\n", "pred.csv", "line 2", "score must be in [0, 1], got 1.01"),
    ("pred-score-text", GT_CSV, "file_name,prediction,score\na.png,cat,high\n", "pred.csv", "line 2", "score is not a number: 'high'"),
    ("pred-class-score-negative", GT_CSV, "file_name,prediction,score_cat,score_dog\na.png,cat,0.9,-0.2\n", "pred.csv", "line 2", "score_dog must be in [0, 1]"),
    ("pred-class-scores-incomplete", GT_CSV, "file_name,prediction,score,score_cat\na.png,cat,0.9,0.9\n", "pred.csv", "line 1", "missing: ['score_dog']"),
]


@pytest.mark.parametrize("case", CSV_CASES, ids=[c[0] for c in CSV_CASES])
def test_csv_bad_input(tmp_path, case):
    _, gt_text, pred_text, file, record, problem = case
    make_image(tmp_path / "a.png", (8, 8))
    make_image(tmp_path / "b.png", (8, 8))
    write_text(tmp_path / "gt.csv", gt_text)
    write_text(tmp_path / "pred.csv", pred_text)
    with pytest.raises(InputError) as info:
        load_dataset(DatasetSource(gt=tmp_path / "gt.csv", pred=tmp_path / "pred.csv"))
    message = str(info.value)
    assert message.startswith(str(tmp_path / file) + ": ")
    if record is not None:
        assert f"{file}: {record}: " in message
    assert problem in message


def _yolo(tmp_path, label="0 0.5 0.5 0.2 0.2\n", pred="0 0.5 0.5 0.2 0.2 0.9\n"):
    make_image(tmp_path / "images/a.png", (10, 10))
    write_text(tmp_path / "labels/a.txt", label)
    write_text(tmp_path / "pred/a.txt", pred)
    return DatasetSource(images=tmp_path / "images", pred=tmp_path / "pred", names="cat,dog")


# (id, label text, prediction text, file at fault, record, problem)
YOLO_CASES = [
    ("gt-4-fields", "0 0.5 0.5 0.2\n", None, "labels/a.txt", "line 1", "expected 5 fields (class cx cy w h), got 4"),
    ("gt-not-a-number", "0 0.5 0.5 0.2 0.2\n1 0.5 x 0.2 0.2\n", None, "labels/a.txt", "line 2", "not a number: 'x'"),
    ("gt-class-out-of-names", "\n5 0.5 0.5 0.2 0.2\n", None, "labels/a.txt", "line 2", "class 5 is not in the class names (0..1)"),
    ("gt-class-fractional", "1.5 0.5 0.5 0.2 0.2\n", None, "labels/a.txt", "line 1", "class must be a non-negative integer"),
    ("gt-nan", "0 nan 0.5 0.2 0.2\n", None, "labels/a.txt", "line 1", "non-finite value"),
    ("gt-zero-width", "0 0.5 0.5 0 0.2\n", None, "labels/a.txt", "line 1", "box has non-positive width (w=0.0)"),
    ("gt-outside", "0 1.5 0.5 0.2 0.2\n", None, "labels/a.txt", "line 1", "lies entirely outside its image"),
    ("pred-no-conf", None, "0 0.5 0.5 0.2 0.2\n", "pred/a.txt", "line 1", "got 5 (save predictions with save_conf=True)"),
    ("pred-conf-above-1", None, "0 0.5 0.5 0.2 0.2 1.2\n", "pred/a.txt", "line 1", "confidence must be in [0, 1], got 1.2"),
]


@pytest.mark.parametrize("case", YOLO_CASES, ids=[c[0] for c in YOLO_CASES])
def test_yolo_bad_input(tmp_path, case):
    _, label, pred, file, record, problem = case
    kw = {k: v for k, v in (("label", label), ("pred", pred)) if v is not None}
    source = _yolo(tmp_path, **kw)
    with pytest.raises(InputError) as info:
        load_dataset(source)
    assert str(info.value).startswith(f"{tmp_path / file}: {record}: ")
    assert problem in str(info.value)


@pytest.mark.parametrize(
    "setup, match",
    [
        (lambda p: (p / "images/a.png").unlink(), "no images found \\(empty dataset\\)"),
        (lambda p: write_text(p / "names.yaml", "names: [cat, cat]\n"), "class name 'cat' given twice"),
        (lambda p: write_text(p / "names.yaml", "names: [cat\n"), "invalid YAML at line 2"),
    ],
)
def test_yolo_folder_and_names_errors(tmp_path, setup, match):
    source = _yolo(tmp_path)
    setup(tmp_path)
    if (tmp_path / "names.yaml").exists():
        source = DatasetSource(images=source.images, pred=source.pred, names=str(tmp_path / "names.yaml"))
    with pytest.raises(InputError, match=match):
        load_dataset(source)


def test_imagefolder_empty(tmp_path):
    (tmp_path / "root/cat").mkdir(parents=True)
    write_text(tmp_path / "pred.csv", "file_name,prediction,score\n")
    with pytest.raises(InputError, match="no images in the class sub-folders") as info:
        load_dataset(DatasetSource(gt=tmp_path / "root", pred=tmp_path / "pred.csv", format="imagefolder"))
    assert str(tmp_path / "root") in str(info.value)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(gt="g.json", format="coco"), "needs --pred"),
        (dict(gt="g.json", pred="p.json", format="coco", names="a,b"), "--names is not used with COCO"),
        (dict(gt="g.json", pred="p.json", format="xml"), "format: must be one of"),
        (dict(pred="p.json"), "no ground truth given"),
        (dict(gt="g.json", pred="p.json", clip="yes"), "clip: expected a bool"),
    ],
)
def test_inconsistent_source(kw, match):
    with pytest.raises(ConfigError, match=match):
        DatasetSource(**kw)


# ---------------------------------------------------------------- missing images


def test_missing_images_lists_all(tmp_path):
    gt = coco_gt(n_images=30)
    write_coco(tmp_path, gt, [])
    for i in (3, 7, 8, 21, 22, 23, 24, 25, 26, 27, 28, 29, 0, 1, 2, 4, 5, 6, 9, 10, 11, 12):
        (tmp_path / f"img{i}.png").unlink()
    with pytest.raises(MissingImagesError) as info:
        load_dataset(DatasetSource(gt=tmp_path / "instances.json", pred=tmp_path / "predictions.json"))
    err = info.value
    assert len(err.missing) == 22
    assert err.missing[:3] == ["img0.png", "img1.png", "img2.png"]  # image order
    assert "22 image(s) named by the annotations are missing" in str(err) and "… and 2 more" in str(err)
    assert str(tmp_path) in str(err)
    # check_images=False loads anyway (sizes are in the JSON)
    ds = load_dataset(DatasetSource(gt=tmp_path / "instances.json", pred=tmp_path / "predictions.json"), check_images=False)
    assert ds.num_images == 30


@pytest.mark.parametrize("n_files", [3, 200])  # below and above the directory-listing threshold
def test_find_missing_images_agrees_with_exists(tmp_path, n_files):
    import os

    names = [f"sub{i % 2}/f{i}.jpg" for i in range(n_files)]
    for i, name in enumerate(names):
        if i % 3:
            write_text(tmp_path / name, "")
    names += ["nowhere/x.jpg", str(tmp_path / "sub0/f1.jpg"), "sub1/f1.jpg"]  # missing dir, absolute, duplicate
    expected = list(dict.fromkeys(n for n in names if not os.path.exists(os.path.join(tmp_path, n))))
    assert find_missing_images(names, tmp_path) == expected


# ---------------------------------------------------------------- the family and the CLI


def test_every_error_is_a_vecexplore_error():
    for cls in (InputError, MissingImagesError, ValidationError, ConfigError):
        assert issubclass(cls, VecexploreError)


@pytest.mark.parametrize("how", ["in-process", "subprocess"])
def test_cli_bad_input_is_error_exit_2(tmp_path, capsys, how):
    write_text(tmp_path / "instances.json", '{"images": [}')
    write_json(tmp_path / "predictions.json", [])
    argv = ["check-data", "--gt", str(tmp_path / "instances.json"), "--pred", str(tmp_path / "predictions.json")]
    if how == "subprocess":
        res = subprocess.run([sys.executable, "-m", "vecexplore", *argv], capture_output=True, text=True)
        code, err = res.returncode, res.stderr
    else:
        from vecexplore.cli import main

        with pytest.raises(SystemExit) as info:
            main(argv)
        code, err = info.value.code, capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: {tmp_path / 'instances.json'}: invalid JSON at line 1, column 13")
    assert "Traceback" not in err


def test_cli_check_data_summary(tmp_path):
    gt = coco_gt()
    gt["annotations"].append({"id": 30, "image_id": 102, "category_id": 2, "bbox": [60.0, 40.0, 10.0, 10.0]})
    write_coco(tmp_path, gt)
    res = subprocess.run([sys.executable, "-m", "vecexplore", "check-data", "--gt", str(tmp_path / "instances.json"),
                          "--pred", str(tmp_path / "predictions.json")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "coco (detection)" in out and "images        3" in out and "categories    3" in out
    assert "4 boxes (crowd: 1)" in out and "predictions   3" in out
    assert "instances.json: 1 cross the image border" in out and "informational" in out  # counted, kept
    assert "clipped" not in res.stderr
    clipped = subprocess.run([sys.executable, "-m", "vecexplore", "check-data", "--clip",
                              "--gt", str(tmp_path / "instances.json"), "--pred", str(tmp_path / "predictions.json")],
                             capture_output=True, text=True)
    assert clipped.returncode == 0, clipped.stderr
    assert "instances.json: 1 cross the image border — clipped to the border (--clip)" in clipped.stdout
    assert "clipped 1 box(es)" in clipped.stderr  # the one warning
    assert len(out.splitlines()) <= 30
