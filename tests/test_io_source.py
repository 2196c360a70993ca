"""DatasetSource: format detection, defaults, the CLI option helper, check-data on classification."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _io_helpers import make_image, write_coco, write_text

from vecexplore.cli._inputs import FormatChoice, source_from_options
from vecexplore.errors import ConfigError, InputError
from vecexplore.io import DatasetSource
from vecexplore.io.source import detect_format


def _layout(tmp: Path, kind: str) -> Path:
    if kind == "coco":
        return write_coco(tmp, images=False)[0]
    if kind == "csv":
        return write_text(tmp / "labels.csv", "file_name,label\n")
    if kind == "yolo":
        write_text(tmp / "labels/a.txt", "0 0.5 0.5 0.1 0.1\n")
        return tmp / "labels"
    if kind == "yolo-side-by-side":  # LabelImg: images and labels in one folder
        make_image(tmp / "data/a.png", (4, 4))
        write_text(tmp / "data/a.txt", "0 0.5 0.5 0.1 0.1\n")
        return tmp / "data"
    if kind == "imagefolder":
        make_image(tmp / "root/cat/a.png", (4, 4))
        make_image(tmp / "root/dog/b.png", (4, 4))
        write_text(tmp / "root/README.txt", "class folders")
        return tmp / "root"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind, expected",
    [("coco", "coco"), ("csv", "csv"), ("yolo", "yolo"), ("yolo-side-by-side", "yolo"), ("imagefolder", "imagefolder")],
)
def test_detect_format(tmp_path, kind, expected):
    gt = _layout(tmp_path, kind)
    assert detect_format(DatasetSource(gt=gt, pred=tmp_path / "p")) == expected


@pytest.mark.parametrize(
    "setup, error, match",
    [
        (lambda p: write_text(p / "gt.xml", "<x/>"), ConfigError, "cannot tell the input format"),
        (lambda p: (p / "gt.xml").mkdir(), ConfigError, "neither YOLO .txt labels nor class sub-folders"),
        (lambda p: None, InputError, "ground truth not found"),
    ],
)
def test_detect_format_refused(tmp_path, setup, error, match):
    setup(tmp_path)
    with pytest.raises(error, match=match):
        detect_format(DatasetSource(gt=tmp_path / "gt.xml", pred=tmp_path / "p"))


def test_resolved_defaults(tmp_path):
    gt = _layout(tmp_path, "coco")
    src = DatasetSource(gt=str(gt), pred=str(tmp_path / "predictions.json"))
    assert isinstance(src.gt, Path)  # strings become paths
    resolved = src.resolved()
    assert resolved.format == "coco" and resolved.images == tmp_path
    assert src.format is None  # the user's source is never rewritten
    assert resolved != src and isinstance(hash(src), int) and resolved == resolved.resolved()  # frozen, hashable
    root = _layout(tmp_path, "imagefolder")
    assert DatasetSource(gt=root, pred=tmp_path / "p.csv").resolved().images == root
    with pytest.raises(ConfigError, match="leave --images out"):
        DatasetSource(gt=root, pred=tmp_path / "p.csv", images=tmp_path).resolved()


@pytest.mark.parametrize(
    "fmt, names, clip, no_clip, expected",
    [
        ("auto", None, False, False, dict(format=None, names=None, clip=False)),
        (FormatChoice.yolo, "a,b", True, False, dict(format="yolo", names="a,b", clip=True)),
        ("CSV", None, False, True, dict(format="csv", names=None, clip=False)),  # --no-clip: the default
    ],
)
def test_source_from_options(tmp_path, fmt, names, clip, no_clip, expected):
    src = source_from_options(gt=tmp_path / "g", pred=tmp_path / "p", images=None, format=fmt, names=names,
                              clip=clip, no_clip=no_clip)
    assert {k: getattr(src, k) for k in expected} == expected


def test_clip_and_no_clip_contradict(tmp_path):
    with pytest.raises(ConfigError, match="--clip and --no-clip"):
        source_from_options(gt=tmp_path / "g", pred=tmp_path / "p", images=None, clip=True, no_clip=True)


def test_check_data_classification(tmp_path):
    make_image(tmp_path / "a.png", (8, 6))
    make_image(tmp_path / "b.png", (8, 6))
    write_text(tmp_path / "all.csv", "file_name,label,prediction,score\na.png,cat,dog,0.6\nb.png,dog,,\n")
    res = subprocess.run([sys.executable, "-m", "vecexplore", "check-data", "--gt", str(tmp_path / "all.csv")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "csv (classification)" in res.stdout
    assert "predictions   1 (score 0.6–0.6); 1 images without one; no per-class scores" in res.stdout
    res = subprocess.run([sys.executable, "-m", "vecexplore", "check-data", "--gt", str(tmp_path / "all.csv"),
                          "--format", "coco"], capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.startswith("error: the coco format needs --pred")


def test_load_dataset_refuses_what_is_not_a_source():
    from vecexplore.errors import ConfigError
    from vecexplore.io.source import load_dataset

    with pytest.raises(ConfigError, match="expected a DatasetSource or a SplitSource, got dict"):
        load_dataset({"gt": "x.json"})
