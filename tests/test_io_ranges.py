"""Numbers too big for their column: every integer that becomes an int64 array (ids,
sizes, class ids) must fit in int64, every number a float64, and the error names
the file, the record and the field, never an OverflowError traceback."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
from _io_helpers import coco_gt, coco_pred, make_image, write_coco, write_json, write_text

from vecexplore.errors import InputError
from vecexplore.io import DatasetSource, load_dataset
from vecexplore.io.splits import source_for

BIG = 2**64  # 18446744073709551616


def _set(path, value):
    """A mutator: ``obj[path...] = value`` on a deep copy."""

    def mutate(obj):
        obj = copy.deepcopy(obj)
        target = obj
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return obj

    return mutate

OUT = "is out of range (must fit in a signed 64-bit integer)"

# (id, gt mutator, pred mutator, file, record, problem)
COCO_RANGE_CASES = [
    ("image-id-2^64", _set(["images", 1, "id"], BIG), None, "instances.json", "images[1]", f"id {BIG} {OUT}"),
    ("image-id-2^63", _set(["images", 1, "id"], 2**63), None, "instances.json", "images[1]", f"id {2**63} {OUT}"),
    ("image-id-below-min", _set(["images", 0, "id"], -(2**63) - 1), None, "instances.json", "images[0]", f"id {-(2**63) - 1} {OUT}"),
    ("image-id-float-1e19", _set(["images", 2, "id"], 1e19), None, "instances.json", "images[2]", f"id 1e+19 {OUT}"),
    ("image-width", _set(["images", 0, "width"], BIG), None, "instances.json", "images[0] (id 100)", f"width {BIG} {OUT}"),
    ("image-height-float", _set(["images", 2, "height"], 1e300), None, "instances.json", "images[2] (id 102)", f"height 1e+300 {OUT}"),
    ("category-id", _set(["categories", 1, "id"], BIG), None, "instances.json", "categories[1]", f"id {BIG} {OUT}"),
    ("ann-id", _set(["annotations", 1, "id"], BIG), None, "instances.json", "annotations[1]", f"id {BIG} {OUT}"),
    ("ann-image_id", _set(["annotations", 1, "image_id"], BIG), None, "instances.json", "annotations[1] (id 12)", f"image_id {BIG} {OUT}"),
    ("ann-category_id", _set(["annotations", 2, "category_id"], -(2**70)), None, "instances.json", "annotations[2] (id 13)", f"category_id {-(2**70)} {OUT}"),
    ("ann-bbox-int-beyond-float", _set(["annotations", 0, "bbox", 2], 10**400), None, "instances.json", "annotations[0] (id 11)", "bbox has a non-finite value"),
    ("ann-bbox-corner-overflows", _set(["annotations", 0, "bbox"], [1e308, 1.0, 1e308, 2.0]), None, "instances.json", "annotations[0] (id 11)", "is too large (x + w, y + h or w * h overflows a float)"),
    ("ann-bbox-area-overflows", _set(["annotations", 1, "bbox"], [1.0, 1.0, 1e200, 1e200]), None, "instances.json", "annotations[1] (id 12)", "is too large"),
    ("ann-area-int-beyond-float", _set(["annotations", 1, "area"], 10**400), None, "instances.json", "annotations[1] (id 12)", "area must be a finite number >= 0"),
    ("pred-image_id", None, _set([0, "image_id"], BIG), "predictions.json", "[0]", f"image_id {BIG} {OUT}"),
    ("pred-category_id", None, _set([2, "category_id"], 2**70), "predictions.json", "[2]", f"category_id {2**70} {OUT}"),
    ("pred-id", None, lambda p: [dict(p[0], id=1), dict(p[1], id=2**63), dict(p[2], id=3)],
     "predictions.json", "[1]", f"id {2**63} {OUT}"),
    ("pred-score-int-beyond-float", None, _set([1, "score"], 10**400), "predictions.json", "[1]", "score must be in [0, 1]"),
    ("pred-bbox-int-beyond-float", None, _set([2, "bbox", 0], -(10**400)), "predictions.json", "[2]", "bbox has a non-finite value"),
]


@pytest.mark.parametrize("case", COCO_RANGE_CASES, ids=[c[0] for c in COCO_RANGE_CASES])
def test_coco_numbers_out_of_range(tmp_path, case):
    _, gt_mut, pred_mut, file, record, problem = case
    gt, pred = coco_gt(), coco_pred()
    write_coco(tmp_path, gt, pred)
    write_json(tmp_path / "instances.json", gt_mut(gt) if gt_mut else gt)
    write_json(tmp_path / "predictions.json", pred_mut(pred) if pred_mut else pred)
    with pytest.raises(InputError) as info:
        load_dataset(DatasetSource(gt=tmp_path / "instances.json", pred=tmp_path / "predictions.json"))
    message = str(info.value)
    assert message.startswith(f"{tmp_path / file}: {record}: "), message
    assert problem in message


@pytest.mark.parametrize(
    "literal, problem",
    [
        ("1e400", "score must be in [0, 1], got inf"),  # JSON's 1e400 parses as inf
        ("-1e400", "score must be in [0, 1], got -inf"),
        ("9" * 5000, "invalid JSON: Exceeds the limit (4300 digits)"),  # int() refuses such literals
    ],
)
def test_coco_literals_that_overflow(tmp_path, literal, problem):
    write_coco(tmp_path)
    text = json.dumps(coco_pred()).replace('"score": 0.9', f'"score": {literal}', 1)
    write_text(tmp_path / "predictions.json", text)
    with pytest.raises(InputError) as info:
        load_dataset(DatasetSource(gt=tmp_path / "instances.json", pred=tmp_path / "predictions.json"))
    assert str(info.value).startswith(str(tmp_path / "predictions.json") + ": ")
    assert problem in str(info.value)


def test_a_bbox_of_1e400_is_non_finite(tmp_path):
    write_coco(tmp_path)
    text = json.dumps(coco_pred()).replace("[1.0, 2.0, 10.0, 8.0]", "[1.0, 2.0, 1e400, 8.0]", 1)
    write_text(tmp_path / "predictions.json", text)
    with pytest.raises(InputError, match=r"predictions.json: \[0\]: bbox has a non-finite value"):
        load_dataset(DatasetSource(gt=tmp_path / "instances.json", pred=tmp_path / "predictions.json"))


def _yolo(tmp_path, label="0 0.5 0.5 0.2 0.2\n", pred="0 0.5 0.5 0.2 0.2 0.9\n", names="cat,dog"):
    make_image(tmp_path / "images/a.png", (10, 10))
    write_text(tmp_path / "labels/a.txt", label)
    write_text(tmp_path / "pred/a.txt", pred)
    return DatasetSource(images=tmp_path / "images", pred=tmp_path / "pred", names=names)


@pytest.mark.parametrize(
    "label, pred, file, problem",
    [
        (f"{BIG} 0.5 0.5 0.2 0.2\n", None, "labels/a.txt", f"class '{BIG}' {OUT}"),
        (None, "1e30 0.5 0.5 0.2 0.2 0.9\n", "pred/a.txt", f"class '1e30' {OUT}"),
        ("0 1e400 0.5 0.2 0.2\n", None, "labels/a.txt", "non-finite value"),
    ],
)
def test_yolo_class_out_of_range(tmp_path, label, pred, file, problem):
    kw = {k: v for k, v in (("label", label), ("pred", pred)) if v is not None}
    with pytest.raises(InputError) as info:
        load_dataset(_yolo(tmp_path, **kw))
    assert str(info.value).startswith(f"{tmp_path / file}: line 1: ")
    assert problem in str(info.value)


def test_parse_yolo_labels_without_names_refuses_a_class_beyond_int64():
    from vecexplore.io import parse_yolo_labels

    with pytest.raises(InputError) as info:
        parse_yolo_labels(f"0 0.5 0.5 0.1 0.1\n{2**63} 0.5 0.5 0.1 0.1\n", path="a.txt", predictions=False)
    assert str(info.value) == f"a.txt: line 2: class '{2**63}' {OUT}"


@pytest.mark.parametrize(
    "yaml_text, problem",
    [
        (f"names:\n  0: cat\n  {BIG}: dog\n", f"names: class id {BIG} {OUT}"),
        ("nc: 1000000000000\n", "nc is 1000000000000; at most 1,000,000 classes are supported"),
    ],
)
def test_data_yaml_out_of_range(tmp_path, yaml_text, problem):
    write_text(tmp_path / "data.yaml", yaml_text)
    source = _yolo(tmp_path, names=str(tmp_path / "data.yaml"))
    with pytest.raises(InputError) as info:
        load_dataset(source)
    assert str(info.value) == f"{tmp_path / 'data.yaml'}: {problem}"


def test_split_ids_that_cannot_be_shifted_are_refused(tmp_path):
    """Two files share image id 100 and one also holds the largest int64: shifting the
    second file's ids above the first's would wrap around silently."""
    for name, top in (("a", 2**63 - 1), ("b", 103)):
        folder = tmp_path / name
        gt = coco_gt()
        gt["images"][2]["id"] = top
        gt["annotations"] = []
        write_coco(folder, gt, [])
    source = source_for(gt=[tmp_path / "a/instances.json", tmp_path / "b/instances.json"],
                        pred=[tmp_path / "a/predictions.json", tmp_path / "b/predictions.json"])
    with pytest.raises(InputError) as info:
        load_dataset(source)
    assert str(info.value).startswith(f"{tmp_path / 'b/instances.json'}: image ids repeat across files")
    assert "would pass 9223372036854775807" in str(info.value)


def test_image_metadata_that_no_column_type_holds_is_kept_as_text(tmp_path):
    """A huge ``license`` or a key mixing numbers and strings is kept (as text) and the
    images table still writes to parquet (it raised OverflowError/ArrowInvalid at the
    end of a build before)."""
    gt = coco_gt()
    gt["images"][0]["license"] = BIG
    gt["images"][1]["license"] = 3
    gt["images"][0]["flickr"] = "x"
    gt["images"][2]["flickr"] = 7
    gt["images"][0]["rating"] = 2
    gt["images"][1]["rating"] = 2.5
    write_coco(tmp_path, gt)
    ds = load_dataset(DatasetSource(gt=tmp_path / "instances.json", pred=tmp_path / "predictions.json"))
    assert ds.images.metadata["license"].tolist() == [str(BIG), "3", None]
    assert ds.images.metadata["flickr"].tolist() == ["x", None, "7"]
    assert ds.images.metadata["rating"].tolist() == [2, 2.5, None]  # plain numbers stay numbers
    ds.images.to_pandas().to_parquet(tmp_path / "images.parquet")


def test_images_file_with_a_huge_number_is_an_unknown_line(tmp_path, demo_run):
    from vecexplore.export import select_from_file
    from vecexplore.store import Run

    listing = write_text(tmp_path / "list.txt", "9" * 5000 + "\n" + str(BIG) + "\n")
    with pytest.raises(InputError, match="2 entries are not images of this run"):
        select_from_file(Run(demo_run[0]), listing)


def test_cli_out_of_range_id_is_error_exit_2(tmp_path):
    gt = coco_gt()
    gt["annotations"][1]["image_id"] = BIG
    write_coco(tmp_path, gt)
    res = subprocess.run([sys.executable, "-m", "vecexplore", "check-data", "--gt", str(tmp_path / "instances.json"),
                          "--pred", str(tmp_path / "predictions.json")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.startswith(f"error: {tmp_path / 'instances.json'}: annotations[1] (id 12): image_id {BIG} {OUT}")
    assert "Traceback" not in res.stderr


def test_int64_extremes_that_fit_are_kept(tmp_path):
    lo, hi = -(2**63), 2**63 - 1
    gt = coco_gt()
    gt["images"][0]["id"], gt["images"][1]["id"] = lo, hi
    gt["annotations"] = [{"id": hi, "image_id": lo, "category_id": 2, "bbox": [1, 1, 5, 5]},
                         {"id": lo, "image_id": hi, "category_id": 2, "bbox": [1, 1, 5, 5]}]
    pred = [{"image_id": hi, "category_id": 2, "bbox": [1, 1, 5, 5], "score": 1}]
    write_coco(tmp_path, gt, pred)
    ds = load_dataset(DatasetSource(gt=tmp_path / "instances.json", pred=tmp_path / "predictions.json"))
    assert ds.images.image_id[:2].tolist() == [lo, hi]
    assert ds.gt.object_id.tolist() == [hi, lo]
    np.testing.assert_array_equal(ds.pred.image_idx, [1])
