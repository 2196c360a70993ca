"""YOLO / Ultralytics loading and writing."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from _io_helpers import assert_same_dataset, make_image, write_text

from vecexplore.errors import ConfigError, InputError, OutsideRootError
from vecexplore.io import (
    DatasetSource,
    LoadReport,
    load_dataset,
    load_yolo,
    parse_yolo_labels,
    write_yolo,
)
from vecexplore.io._read import read_names
from vecexplore.types import Boxes, Categories, Dataset, ImageTable

NAMES = {0: "cat", 1: "dog", 2: "bird"}


def _dataset(tmp_path, *, flat_pred=False):
    """images/val/{a.jpg 64x48, sub/b.png 32x32, c.png 100x50 (background)} + labels + predictions."""
    root = tmp_path / "ds"
    make_image(root / "images/val/a.jpg", (64, 48))
    make_image(root / "images/val/sub/b.png", (32, 32))
    make_image(root / "images/val/c.png", (100, 50))
    write_text(root / "labels/val/a.txt", "0 0.5 0.5 0.25 0.5\n\n2 0.25 0.25 0.5 0.5\n")
    write_text(root / "labels/val/sub/b.txt", "1 0.5 0.5 1.0 1.0\n")
    write_text(root / "data.yaml", "path: .\nval: images/val\nnames:\n  0: cat\n  1: dog\n  2: bird\n")
    pred = tmp_path / "pred"
    write_text(pred / "a.txt", "0 0.5 0.5 0.25 0.5 0.9\n1 0.5 0.5 0.1 0.1 0.2\n")
    write_text(pred / ("b.txt" if flat_pred else "sub/b.txt"), "1 0.5 0.5 0.5 0.5 0.75\n")
    return root, pred


@pytest.mark.parametrize(
    "text, predictions, rows, lines",
    [
        ("0 0.5 0.5 0.2 0.4\n", False, [[0, 0.5, 0.5, 0.2, 0.4]], [1]),
        ("\n  \n3 0.1 0.2 0.1 0.2\n", False, [[3, 0.1, 0.2, 0.1, 0.2]], [3]),
        ("1 0.5 0.5 0.2 0.4 0.25\n", True, [[1, 0.5, 0.5, 0.2, 0.4, 0.25]], [1]),
        ("2.0 1e-1 0.5 0.2 0.4\n", False, [[2, 0.1, 0.5, 0.2, 0.4]], [1]),
        # Ultralytics segment label → its bounding box
        ("1 0.1 0.2 0.5 0.2 0.3 0.6\n", False, [[1, 0.3, 0.4, 0.4, 0.4]], [1]),
        ("", False, [], []),
    ],
)
def test_parse_labels(text, predictions, rows, lines):
    got, got_lines = parse_yolo_labels(text, path="x.txt", predictions=predictions, class_ids={0, 1, 2, 3})
    np.testing.assert_allclose(got, np.array(rows, float).reshape(-1, 6 if predictions else 5), rtol=0, atol=1e-15)
    assert got_lines.tolist() == lines


def test_load_pixels_and_conventions(tmp_path):
    root, pred = _dataset(tmp_path)
    ds = load_yolo(images=root / "images/val", names=NAMES, pred=pred)  # labels by Ultralytics' rule
    assert ds.images.file_name.tolist() == ["a.jpg", "c.png", "sub/b.png"]  # sorted relative paths
    assert ds.images.image_id.tolist() == [0, 1, 2]
    assert ds.images.width.tolist() == [64, 100, 32] and ds.images.height.tolist() == [48, 50, 32]
    assert ds.categories.names.tolist() == ["cat", "dog", "bird"]
    np.testing.assert_allclose(ds.gt.xywh, [[24, 12, 16, 24], [0, 0, 32, 24], [0, 0, 32, 32]])
    assert ds.gt.image_idx.tolist() == [0, 0, 2] and ds.gt.class_idx.tolist() == [0, 2, 1]
    assert ds.gt.object_id.tolist() == [1, 2, 3]
    assert ds.pred.score.tolist() == [0.9, 0.2, 0.75]
    assert ds.pred.image_idx.tolist() == [0, 0, 2]
    np.testing.assert_allclose(ds.pred.xywh[2], [8, 8, 16, 16])


def test_flat_prediction_folder(tmp_path):
    root, pred = _dataset(tmp_path, flat_pred=True)  # Ultralytics predict writes labels/<stem>.txt
    ds = load_yolo(images=root / "images/val", gt=root / "labels/val", names=NAMES, pred=pred)
    assert ds.pred.image_idx.tolist() == [0, 0, 2]


def test_category_ids_from_names_dict(tmp_path):
    root, pred = _dataset(tmp_path)
    ds = load_yolo(images=root / "images/val", names={0: "cat", 1: "dog", 2: "bird", 7: "fish"}, pred=pred)
    assert ds.categories.ids.tolist() == [0, 1, 2, 7]


def test_clipping_and_unreadable_and_exif(tmp_path, caplog):
    root = tmp_path / "images"
    make_image(root / "r.jpg", (40, 30), orientation=6)  # displayed 30 x 40
    (root / "broken.png").write_bytes(b"\x89PNG but not really")
    write_text(tmp_path / "labels/r.txt", "0 0.95 0.5 0.2 0.5\n")  # crosses the right border
    write_text(tmp_path / "labels/broken.txt", "0 0.5 0.5 0.2 0.4\n")
    report = LoadReport()
    with caplog.at_level(logging.WARNING):
        ds = load_yolo(images=root, names=NAMES, report=report, clip=True)
    assert ds.images.file_name.tolist() == ["broken.png", "r.jpg"]
    assert ds.images.width.tolist() == [0, 30] and ds.images.height.tolist() == [0, 40]
    np.testing.assert_allclose(ds.gt.xywh[0], [0.4, 0.3, 0.2, 0.4])  # unknown size: normalised units
    np.testing.assert_allclose(ds.gt.xywh[1], [25.5, 10, 4.5, 20])  # clipped at x = 30
    assert report.unreadable == ["broken.png"]
    assert sum("clipped 1 box(es)" in r.getMessage() for r in caplog.records) == 1
    assert any("could not read the size of 1 image(s)" in r.getMessage() and "broken.png" in r.getMessage()
               for r in caplog.records)
    kept = load_yolo(images=root, names=NAMES)  # the default: as given
    np.testing.assert_allclose(kept.gt.xywh[1], [25.5, 10, 6, 20])
    assert ds.boxes_clipped and not kept.boxes_clipped


def test_orphan_label_files(tmp_path):
    root, pred = _dataset(tmp_path)
    write_text(root / "labels/val/ghost.txt", "0 0.5 0.5 0.1 0.1\n")
    write_text(root / "labels/val/classes.txt", "cat\ndog\nbird\n")  # LabelImg's file is not an orphan
    report = LoadReport()
    load_yolo(images=root / "images/val", gt=root / "labels/val", names=NAMES, pred=pred, report=report)
    assert len(report.notes) == 1 and "1 labels file(s) match no image" in report.notes[0] and "ghost.txt" in report.notes[0]
    write_text(pred / "ghost.txt", "0 0.5 0.5 0.1 0.1 0.5\n")
    with pytest.raises(InputError, match=r"1 predictions file\(s\) match no image.*ghost\.txt"):
        load_yolo(images=root / "images/val", names=NAMES, pred=pred)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("data.yaml", NAMES),
        ("list.yaml", {0: "cat", 1: "dog"}),
        ("nc.yaml", {0: "class_0", 1: "class_1"}),
        ("names.txt", {0: "cat", 1: "dog"}),
        ("cat, dog ,bird", NAMES),
        (("cat", "dog"), {0: "cat", 1: "dog"}),
    ],
)
def test_names(tmp_path, spec, expected):
    write_text(tmp_path / "data.yaml", "names: {0: cat, 1: dog, 2: bird}\n")
    write_text(tmp_path / "list.yaml", "nc: 2\nnames: [cat, dog]\n")
    write_text(tmp_path / "nc.yaml", "nc: 2\n")
    write_text(tmp_path / "names.txt", "cat\n\ndog\n")
    if isinstance(spec, str) and "," not in spec:
        spec = str(tmp_path / spec)
    assert read_names(spec)[0] == expected


def test_load_dataset_yolo_defaults(tmp_path):
    root, pred = _dataset(tmp_path)
    # images from data.yaml's path/val, labels by the images/→labels/ rule
    a = load_dataset(DatasetSource(pred=pred, names=str(root / "data.yaml")))
    b = load_dataset(DatasetSource(images=root / "images/val", pred=pred, names="cat,dog,bird"))
    c = load_dataset(DatasetSource(gt=root / "labels/val", pred=pred, names=str(root / "data.yaml")))  # auto: yolo
    for other in (b, c):
        assert_same_dataset(a, other)
    with pytest.raises(ConfigError, match="needs class names"):
        load_dataset(DatasetSource(images=root / "images/val", pred=pred))
    write_text(root / "labels/val/classes.txt", "cat\ndog\nbird\n")
    d = load_dataset(DatasetSource(images=root / "images/val", pred=pred))  # names from classes.txt
    assert_same_dataset(a, d)


@pytest.mark.parametrize("link", ["symlink", "copy", "none"])
def test_write_round_trip(tmp_path, link):
    root, pred = _dataset(tmp_path)
    ds = load_yolo(images=root / "images/val", names=NAMES, pred=pred)
    out = write_yolo(ds, tmp_path / "out", link=link)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.txt")) == [
        "labels/a.txt", "labels/c.txt", "labels/sub/b.txt", "predictions/a.txt", "predictions/sub/b.txt"]
    assert (out / "labels/c.txt").read_text() == ""  # background image: empty label file
    assert read_names(str(out / "data.yaml"))[0] == NAMES
    if link == "none":
        assert not (out / "images").exists()
        return
    assert (out / "images/sub/b.png").is_symlink() == (link == "symlink")
    if link == "symlink":  # the links point out of the export's images folder: refused unless allowed
        with pytest.raises(OutsideRootError):
            load_yolo(images=out / "images", names=NAMES, pred=out / "predictions")
    again = load_yolo(images=out / "images", names=NAMES, pred=out / "predictions", allow_outside_root=link == "symlink")
    assert_same_dataset(ds, again, atol=1e-9)


def test_write_subset_drops_crowd_and_refuses_non_empty(tmp_path):
    images = ImageTable(image_id=[5, 9], file_name=["/abs/x.jpg", "y.jpg"], width=[0, 10], height=[0, 20])
    gt = Boxes(image_idx=[0, 1, 1], class_idx=[0, 0, 1], xywh=[[0.1, 0.1, 0.2, 0.2], [1, 2, 3, 4], [0, 0, 5, 5]],
               object_id=[1, 2, 3], iscrowd=[False, False, True])
    ds = Dataset(task="detection", images=images, categories=Categories.from_names(["a", "b"]), gt=gt,
                 pred=Boxes.empty(predictions=True))
    out = write_yolo(ds, tmp_path / "o", link="none")
    assert (out / "labels/x.txt").read_text().split() == ["0", "0.2", "0.2", "0.2", "0.2"]  # unknown size: as stored
    assert (out / "labels/y.txt").read_text().split() == ["0", "0.25", "0.2", "0.3", "0.2"]  # crowd left out
    sub = write_yolo(ds, tmp_path / "sub", [1], link="none")
    assert sorted(os.listdir(sub / "labels")) == ["y.txt"]
    with pytest.raises(ConfigError, match="not an empty folder"):
        write_yolo(ds, out)

