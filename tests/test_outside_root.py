"""Image paths that resolve outside the images root (``../../etc/passwd``, absolute
paths, symlinks pointing out) are refused, all listed, unless allowed; records that
name one file are reported; the app never serves outside the root of a run built
without ``--allow-outside-root``."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _io_helpers import coco_gt, make_image, write_coco, write_text

from vecexplore.errors import OutsideRootError
from vecexplore.io import DatasetSource, LoadReport, load_dataset
from vecexplore.io.paths import check_image_paths, real_paths

pytestmark = pytest.mark.skipif(os.name != "posix", reason="symlinks and /etc/passwd")


def _dataset(tmp_path: Path, names: list[str]) -> DatasetSource:
    """A COCO dataset in tmp/ds whose images are named ``names`` (made where missing),
    and an image outside it at tmp/elsewhere/x.png."""
    make_image(tmp_path / "elsewhere/x.png", (64, 48))
    (tmp_path / "elsewhere/dir").mkdir(exist_ok=True)
    make_image(tmp_path / "elsewhere/dir/y.png", (64, 48))
    gt = coco_gt(n_images=len(names))
    for im, name in zip(gt["images"], names, strict=True):
        im["file_name"] = name
    gt["annotations"] = []
    root = tmp_path / "ds"
    root.mkdir(exist_ok=True)
    for name in names:
        target = root / name
        if not os.path.lexists(target):
            make_image(target, (64, 48))
    write_coco(root, gt, [], images=False)
    return DatasetSource(gt=root / "instances.json", pred=root / "predictions.json")


def _link(tmp_path: Path, name: str, target: Path) -> str:
    (tmp_path / "ds").mkdir(exist_ok=True)
    (tmp_path / "ds" / name).symlink_to(target)
    return name


# (id, names(tmp_path) -> file names of the images, the outside ones)
OUTSIDE_CASES = [
    ("dot-dot", lambda t: (["a.png", "../elsewhere/x.png"], ["../elsewhere/x.png"])),
    ("deep-dot-dot-to-etc-passwd", lambda t: (["a.png", "../" * 30 + "etc/passwd"], ["../" * 30 + "etc/passwd"])),
    ("absolute-etc-passwd", lambda t: (["/etc/passwd", "a.png"], ["/etc/passwd"])),
    ("absolute-elsewhere", lambda t: (["a.png", str(t / "elsewhere/x.png")], [str(t / "elsewhere/x.png")])),
    ("symlinked-file", lambda t: ([_link(t, "l.png", t / "elsewhere/x.png"), "a.png"], ["l.png"])),
    ("symlinked-folder", lambda t: ([_link(t, "sub", t / "elsewhere/dir") + "/y.png", "a.png"], ["sub/y.png"])),
    ("in-and-out-again", lambda t: (["a.png", "sub2/../../elsewhere/x.png"], ["sub2/../../elsewhere/x.png"])),
]


@pytest.mark.parametrize("case", OUTSIDE_CASES, ids=[c[0] for c in OUTSIDE_CASES])
def test_outside_root_is_refused_unless_allowed(tmp_path, case, caplog):
    _, make = case
    names, outside = make(tmp_path)
    if "sub2/../../elsewhere/x.png" in names:
        (tmp_path / "ds/sub2").mkdir(parents=True)
    source = _dataset(tmp_path, names)
    with pytest.raises(OutsideRootError) as info:
        load_dataset(source)
    assert info.value.outside == outside
    assert f"1 image path(s) resolve outside the images root {tmp_path / 'ds'}: {outside[0]}" in str(info.value)
    assert "--allow-outside-root" in str(info.value)
    report = LoadReport()
    with caplog.at_level(logging.WARNING, logger="vecexplore"):
        ds = load_dataset(DatasetSource(gt=source.gt, pred=source.pred, allow_outside_root=True), report=report)
    assert ds.num_images == len(names) and report.outside_root == outside
    assert "outside the images root" in caplog.text


def test_symlinks_and_dot_dots_that_stay_inside_are_fine(tmp_path):
    make_image(tmp_path / "ds/real/a.png", (64, 48))
    names = [_link(tmp_path, "link.png", tmp_path / "ds/real/a.png"), "real/../b.png", "./c.png"]
    ds = load_dataset(_dataset(tmp_path, names))
    assert ds.num_images == 3


def test_every_outside_image_is_listed(tmp_path):
    names = ["a.png"] + [f"../elsewhere/{i}.png" for i in range(25)]
    for i in range(25):
        make_image(tmp_path / f"elsewhere/{i}.png", (8, 8))
    with pytest.raises(OutsideRootError) as info:
        load_dataset(_dataset(tmp_path, names))
    assert len(info.value.outside) == 25
    assert str(info.value).startswith("25 image path(s) resolve outside") and "… and 5 more" in str(info.value)


def test_real_paths_agree_with_realpath_in_crowded_and_sparse_folders(tmp_path):
    """The per-folder fast path (one scandir for > 64 files) gives os.path.realpath's answer."""
    (tmp_path / "crowd").mkdir()
    names = []
    for i in range(80):
        (tmp_path / "crowd" / f"{i}.jpg").write_bytes(b"")
        names.append(f"crowd/{i}.jpg")
    (tmp_path / "crowd/link.jpg").symlink_to(tmp_path / "crowd/3.jpg")
    (tmp_path / "dirlink").symlink_to(tmp_path / "crowd")
    names += ["crowd/link.jpg", "dirlink/5.jpg", "crowd/../crowd/7.jpg", "missing/x.jpg", str(tmp_path / "crowd/1.jpg"),
              "crowd/..", "dirlink/link.jpg"]
    assert real_paths(names, tmp_path) == [os.path.realpath(tmp_path / n) for n in names]


def test_yolo_symlink_out_of_the_images_folder(tmp_path):
    make_image(tmp_path / "data/images/a.png", (10, 10))
    make_image(tmp_path / "elsewhere/b.png", (10, 10))
    (tmp_path / "data/images/b.png").symlink_to(tmp_path / "elsewhere/b.png")
    write_text(tmp_path / "data/labels/a.txt", "0 0.5 0.5 0.2 0.2\n")
    write_text(tmp_path / "pred/a.txt", "0 0.5 0.5 0.2 0.2 0.9\n")
    source = dict(images=tmp_path / "data/images", pred=tmp_path / "pred", names="cat")
    with pytest.raises(OutsideRootError) as info:
        load_dataset(DatasetSource(**source))
    assert info.value.outside == ["b.png"] and f"b.png (-> {tmp_path / 'elsewhere/b.png'})" in str(info.value)
    assert load_dataset(DatasetSource(**source, allow_outside_root=True)).num_images == 2


def test_imagefolder_class_folder_linked_out(tmp_path):
    make_image(tmp_path / "root/cat/a.png", (8, 8))
    make_image(tmp_path / "elsewhere/d.png", (8, 8))
    (tmp_path / "root/dog").symlink_to(tmp_path / "elsewhere")
    write_text(tmp_path / "pred.csv", "file_name,prediction,score\ncat/a.png,cat,0.9\n")
    source = dict(gt=tmp_path / "root", pred=tmp_path / "pred.csv", format="imagefolder")
    with pytest.raises(OutsideRootError, match=r"dog/d\.png"):
        load_dataset(DatasetSource(**source))
    assert load_dataset(DatasetSource(**source, allow_outside_root=True)).num_images == 2


def test_csv_headers_are_read_so_evaluate_checks_too(tmp_path):
    make_image(tmp_path / "ds/a.png", (8, 8))
    make_image(tmp_path / "x.png", (8, 8))
    write_text(tmp_path / "ds/gt.csv", "file_name,label\na.png,cat\n../x.png,dog\n")
    write_text(tmp_path / "ds/pred.csv", "file_name,prediction,score\na.png,cat,0.9\n")
    source = DatasetSource(gt=tmp_path / "ds/gt.csv", pred=tmp_path / "ds/pred.csv")
    with pytest.raises(OutsideRootError, match=r"\.\./x\.png"):
        load_dataset(source, check_images=False)


def test_coco_without_image_access_does_not_look(tmp_path):
    """evaluate on COCO with sizes in the JSON reads no image: nothing to refuse. An
    image whose size must be read from its header is checked."""
    source = _dataset(tmp_path, ["a.png", "/etc/passwd"])
    assert load_dataset(source, check_images=False).num_images == 2
    gt = json.loads(source.gt.read_text())
    del gt["images"][1]["width"]
    source.gt.write_text(json.dumps(gt))
    with pytest.raises(OutsideRootError, match="/etc/passwd"):
        load_dataset(source, check_images=False)


def test_records_naming_one_file_are_reported(tmp_path, caplog):
    make_image(tmp_path / "ds/a.png", (64, 48))
    names = ["a.png", "./a.png", _link(tmp_path, "alias.png", tmp_path / "ds/a.png"), "b.png"]
    report = LoadReport()
    with caplog.at_level(logging.WARNING, logger="vecexplore"):
        load_dataset(_dataset(tmp_path, names), report=report)
    assert report.shared_files == [(str((tmp_path / "ds/a.png").resolve()), [100, 101, 102])]
    assert "1 file(s) are named by more than one image record" in caplog.text


def test_check_image_paths_root_none_is_the_current_directory(tmp_path, monkeypatch):
    make_image(tmp_path / "a.png", (8, 8))
    monkeypatch.chdir(tmp_path)
    check_image_paths(["a.png"], None)
    with pytest.raises(OutsideRootError):
        check_image_paths(["/etc/passwd"], None)


@pytest.mark.parametrize("command", ["check-data", "evaluate"])
def test_cli_refuses_with_exit_2_and_accepts_with_the_flag(tmp_path, command):
    source = _dataset(tmp_path, ["a.png", "../elsewhere/x.png"])
    gt = json.loads(source.gt.read_text())
    del gt["images"][1]["width"]  # so that evaluate reads that image's header
    source.gt.write_text(json.dumps(gt))
    argv = [sys.executable, "-m", "vecexplore", command, "--gt", str(source.gt), "--pred", str(source.pred)]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("error: 1 image path(s) resolve outside the images root") and "Traceback" not in res.stderr
    res = subprocess.run([*argv, "--allow-outside-root"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


# ---------------------------------------------------------------- build and serve


def _build(data: Path, out: Path, **source_kw):
    from conftest import TINY_MODEL

    from vecexplore.builder import BuildConfig, build_run
    from vecexplore.embed.pipeline import EmbedConfig
    from vecexplore.mapping import MapConfig

    return build_run(BuildConfig(
        source=DatasetSource(gt=data / "annotations.json", pred=data / "predictions.json", **source_kw),
        out=out, embed=EmbedConfig(model=TINY_MODEL, weights="random", device="cpu", num_workers=0),
        map=MapConfig(seed=0), cache_dir=out.parent / "cache", scan_workers=0,
    ))


@pytest.fixture(scope="module")
def outside_data(tmp_path_factory):
    """Demo data whose image 3 is named by its absolute path, moved out of the folder."""
    from vecexplore.demo import generate_demo

    base = tmp_path_factory.mktemp("outside")
    data = base / "data"
    generate_demo(data, n=40, seed=4)
    gt = json.loads((data / "annotations.json").read_text())
    moved = base / "elsewhere" / Path(gt["images"][3]["file_name"]).name
    moved.parent.mkdir()
    shutil.move(data / gt["images"][3]["file_name"], moved)
    gt["images"][3]["file_name"] = str(moved)
    (data / "annotations.json").write_text(json.dumps(gt))
    return base, data, [im["id"] for im in gt["images"]]


def test_build_refuses_before_embedding_and_records_the_flag(outside_data, monkeypatch, umap_warm):
    import vecexplore.builder as build_mod
    from vecexplore.store import Run

    base, data, _ = outside_data
    with monkeypatch.context() as m:
        m.setattr(build_mod, "_embed", lambda *a, **k: pytest.fail("embedding started"))
        with pytest.raises(OutsideRootError):
            _build(data, base / "refused")
    assert not (base / "refused").exists()
    run = Run(_build(data, base / "allowed", allow_outside_root=True).out)
    inputs = run.manifest["inputs"]
    assert inputs["allow_outside_root"] is True and inputs["images_outside_root"] == 1
    assert run.images["readable"].all()


def test_the_image_route_serves_outside_the_root_only_for_runs_that_allow_it(outside_data, umap_warm):
    from test_app_routes import _get, _tornado

    from vecexplore.app.data import load_run_data
    from vecexplore.app.routes import UNREADABLE_HEADER, route_patterns

    base, data, ids = outside_data
    allowed = base / "allowed"
    if not allowed.exists():
        _build(data, allowed, allow_outside_root=True)
    # A run built without the flag: its image 5 later becomes a symlink pointing out.
    gt = json.loads((data / "annotations.json").read_text())
    gt["images"] = [im for im in gt["images"] if im["id"] != ids[3]]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] != ids[3]]
    pred = [p for p in json.loads((data / "predictions.json").read_text()) if p["image_id"] != ids[3]]
    inside = base / "inside-data"
    shutil.copytree(data, inside)
    (inside / "annotations.json").write_text(json.dumps(gt))
    (inside / "predictions.json").write_text(json.dumps(pred))
    strict = _build(inside, base / "strict").out
    five = inside / next(im["file_name"] for im in gt["images"] if im["id"] == ids[5])
    shutil.move(five, base / "elsewhere/five.jpg")
    five.symlink_to(base / "elsewhere/five.jpg")
    for run_dir, image_id, served in ((strict, ids[5], False), (allowed, ids[3], True), (strict, ids[6], True)):
        with _tornado(route_patterns(load_run_data(run_dir), url_base="/vx/r")) as port:
            status, headers, _ = _get(port, f"/vx/r/image/{image_id}")
        assert status == 200
        assert (UNREADABLE_HEADER.lower() not in headers) == served, (run_dir, image_id)
        assert headers["content-type"] == ("image/jpeg" if served else "image/png")
