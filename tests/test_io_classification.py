"""Classification CSV and ImageFolder loading, and the CSV writer."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from _io_helpers import assert_same_dataset, make_image, write_text

from vecexplore.io import (
    DatasetSource,
    load_classification_csv,
    load_dataset,
    load_imagefolder,
    to_csv,
)
from vecexplore.io.classification import GtRows, PredRows, classification_to_dataset


def _images(root, names, size=(20, 10)):
    for n in names:
        make_image(root / n, size)


def test_separate_files(tmp_path):
    _images(tmp_path, ["a.png", "b.png", "c.png"])
    write_text(tmp_path / "gt.csv", "file_name,label,split\na.png,zebra,train\nb.png,ant,\nc.png,zebra,val\n")
    write_text(tmp_path / "pred.csv",
               "file_name,prediction,score,score_zebra,score_ant,score_moth\n"
               "c.png,moth,0.5,0.3,0.2,0.5\n"
               "a.png,zebra,0.7,0.7,0.1,0.2\n")
    ds = load_classification_csv(tmp_path / "gt.csv", tmp_path / "pred.csv", images_root=tmp_path)
    assert ds.task == "classification"
    assert ds.categories.names.tolist() == ["ant", "moth", "zebra"]  # sorted by name; moth from score columns
    assert ds.categories.ids.tolist() == [0, 1, 2]
    assert ds.images.file_name.tolist() == ["a.png", "b.png", "c.png"]
    assert ds.images.width.tolist() == [20, 20, 20] and ds.images.height.tolist() == [10, 10, 10]
    assert ds.images.split.tolist() == ["train", None, "val"]
    assert ds.gt.class_idx.tolist() == [2, 0, 2]
    assert ds.pred.image_idx.tolist() == [2, 0]  # b.png has no prediction
    assert ds.pred.class_idx.tolist() == [1, 2]
    assert ds.pred.score.tolist() == [0.5, 0.7]
    assert ds.pred.scores.tolist() == [[0.2, 0.5, 0.3], [0.1, 0.2, 0.7]]  # columns in category order


def test_one_file_with_both_and_derived_score(tmp_path):
    _images(tmp_path, ["x/1.jpg", "x/2.jpg"])
    write_text(tmp_path / "all.csv",
               "file_name,label,prediction,score_cat,score_dog\n"
               "x/1.jpg,cat,dog,0.25,0.75\n"
               "x/2.jpg,dog,,,\n")
    ds = load_dataset(DatasetSource(gt=tmp_path / "all.csv"))  # auto: csv; images root: the CSV's folder
    assert ds.pred.image_idx.tolist() == [0]
    assert ds.pred.score.tolist() == [0.75]  # no score column: the predicted class's score
    assert ds.images_root == str(tmp_path)


def test_names_add_classes():
    gt = GtRows(path="gt.csv", file_names=["a", "b"], labels=["b", "a"], lines=[2, 3])
    pred = PredRows(path="p.csv", file_names=["a"], labels=["c"], score=[0.4], lines=[2])
    ds = classification_to_dataset(gt=gt, pred=pred, names=["c", "d"])
    assert ds.categories.names.tolist() == ["a", "b", "c", "d"]
    assert ds.images.width.tolist() == [0, 0]  # pure converter: sizes unknown unless given


def _imagefolder(tmp_path):
    root = tmp_path / "train"
    _images(root, ["dog/b.png", "dog/a.png", "cat/z/1.png", "cat/0.png"])
    write_text(root / "cat/notes.txt", "not an image")
    (root / "empty_class").mkdir()
    write_text(tmp_path / "pred.csv", "file_name,prediction,score\ndog/a.png,cat,0.6\ncat/z/1.png,empty_class,0.9\n")
    return root


def test_imagefolder(tmp_path):
    root = _imagefolder(tmp_path)
    ds = load_imagefolder(root, tmp_path / "pred.csv")
    assert ds.categories.names.tolist() == ["cat", "dog", "empty_class"]
    assert ds.images.file_name.tolist() == ["cat/0.png", "cat/z/1.png", "dog/a.png", "dog/b.png"]
    assert ds.gt.class_idx.tolist() == [0, 0, 1, 1]
    assert ds.pred.image_idx.tolist() == [2, 1] and ds.pred.class_idx.tolist() == [0, 2]
    auto = load_dataset(DatasetSource(gt=root, pred=tmp_path / "pred.csv"))  # auto: imagefolder
    assert_same_dataset(ds, auto)


@pytest.mark.slow  # imports torch (several seconds once per session)
def test_imagefolder_order_matches_torchvision(tmp_path):
    datasets = pytest.importorskip("torchvision.datasets")
    root = _imagefolder(tmp_path)
    (root / "empty_class").rmdir()  # torchvision refuses empty class folders
    ds = load_imagefolder(root, tmp_path / "pred.csv", names=["empty_class"])
    tv = datasets.ImageFolder(str(root))
    expected = [(Path(p).relative_to(root).as_posix(), tv.classes[c]) for p, c in tv.samples]
    got = [(f, ds.categories.names[c]) for f, c in zip(ds.images.file_name, ds.gt.class_idx, strict=True)]
    assert got == expected


@pytest.mark.parametrize("scores", [True, False])
@pytest.mark.parametrize("split", [True, False])
def test_csv_round_trip(tmp_path, scores, split):
    rng = np.random.default_rng(int(scores) * 2 + int(split))
    n, classes = 12, ["ant", "bee", "cow"]
    files = [f"im{i:02d}.png" for i in range(n)]
    _images(tmp_path, files)
    header = "file_name,label" + (",split" if split else "")
    lines = [header] + [f"{f},{rng.choice(classes)}" + (f",{rng.choice(['a', 'b'])}" if split else "") for f in files]
    write_text(tmp_path / "gt.csv", "\n".join(lines) + "\n")
    p = rng.dirichlet(np.ones(3), size=n)
    pred_lines = ["file_name,prediction,score" + (",score_ant,score_bee,score_cow" if scores else "")]
    for i in rng.permutation(n)[: n - 3]:
        k = int(p[i].argmax())
        pred_lines.append(f"{files[i]},{classes[k]},{float(p[i, k])!r}" + ("".join(f",{v!r}" for v in p[i].tolist()) if scores else ""))
    write_text(tmp_path / "pred.csv", "\n".join(pred_lines) + "\n")
    ds = load_classification_csv(tmp_path / "gt.csv", tmp_path / "pred.csv", images_root=tmp_path)
    to_csv(ds, tmp_path / "out/both.csv")
    again = load_classification_csv(tmp_path / "out/both.csv", images_root=tmp_path)
    # one row per image in image order: predictions come back sorted by image
    expected = replace(ds, pred=ds.pred[np.argsort(ds.pred.image_idx, kind="stable")])
    assert_same_dataset(expected, again)
    assert (again.images.split is None) == (not split)
    sub = to_csv(ds, image_idx=[3, 0])
    assert [row.split(",")[0] for row in sub.splitlines()[1:]] == [files[3], files[0]]
