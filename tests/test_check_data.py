"""``vecexplore check-data`` decodes every image as ``build`` does and lists the ones
build will mark unreadable (it said "OK" for them before); "OK" alone only when
nothing needs a look."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from _io_helpers import write_coco

from vecexplore.thumbs import find_undecodable


def _png_header(w: int, h: int) -> bytes:
    """A PNG that claims ``w`` × ``h`` pixels (a few bytes of data): a bomb or a giant."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _break(path: Path, how: str) -> str:
    """Make the image at ``path`` unreadable in one way; the reason build gives."""
    if how == "zero-byte":
        path.write_bytes(b"")
        return "zero-byte file"
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # header intact, pixels cut
        return "truncated image data"
    if how == "not-an-image":
        path.write_text("this is a text file\n")
        return "not an image (format not recognised)"
    if how == "directory":
        path.unlink()
        path.mkdir()
        return "is a directory, not an image file"
    if how == "fifo":
        path.unlink()
        os.mkfifo(path)
        return "not a regular file (a FIFO)"
    if how == "bomb":
        path.write_bytes(_png_header(20000, 20000))
        return "decompression bomb"
    path.write_bytes(_png_header(9000, 8000))  # giant
    return "too large: 9000×8000 pixels"


BROKEN = ["zero-byte", "truncated", "not-an-image", "directory", "fifo", "bomb", "giant"]


@pytest.fixture(scope="module")
def broken_data(tmp_path_factory):
    """40 demo images (JPEG), seven of them made unreadable in seven ways."""
    from vecexplore.demo import generate_demo

    data = tmp_path_factory.mktemp("check") / "data"
    generate_demo(data, n=40, seed=2)
    gt = json.loads((data / "annotations.json").read_text())
    reasons = {}
    for k, how in enumerate(BROKEN):
        name = gt["images"][3 * k + 1]["file_name"]
        reasons[name] = _break(data / name, how)
    return data, reasons


def _check(gt: Path, pred: Path, *extra: str):
    return subprocess.run([sys.executable, "-m", "vecexplore", "check-data", "--gt", str(gt), "--pred", str(pred), *extra],
                          capture_output=True, text=True, timeout=300)


def _check_demo(data: Path, *extra: str):
    return _check(data / "annotations.json", data / "predictions.json", *extra)


def test_check_data_lists_what_build_will_mark_unreadable(broken_data):
    data, reasons = broken_data
    res = _check_demo(data)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "unreadable    7 image(s) build will mark unreadable (not mapped):" in lines
    first = sorted(reasons)[:3]  # image order is file-name order in the demo data
    for name in first:
        assert any(line.strip().startswith(f"{name}: {reasons[name]}") for line in lines), (name, lines)
    assert "              … and 4 more" in lines
    assert lines[-1] == "OK with 7 unreadable image(s): build will map 33 of 40 images"


def test_the_decode_pass_agrees_with_a_build(broken_data, tmp_path, umap_warm):
    """The oracle: exactly the images a real build marks unreadable, with its reasons."""
    from conftest import TINY_MODEL

    from vecexplore.builder import BuildConfig, build_run
    from vecexplore.embed.pipeline import EmbedConfig
    from vecexplore.io import DatasetSource
    from vecexplore.io.paths import image_paths
    from vecexplore.mapping import MapConfig
    from vecexplore.store import Run

    data, reasons = broken_data
    source = DatasetSource(gt=data / "annotations.json", pred=data / "predictions.json")
    result = build_run(BuildConfig(
        source=source, out=tmp_path / "run", embed=EmbedConfig(model=TINY_MODEL, weights="random", device="cpu",
                                                                num_workers=0),
        map=MapConfig(seed=0), cache_dir=tmp_path / "cache", scan_workers=0,
    ))
    images = Run(result.out).images
    built = {row.file_name: row.unreadable_reason for row in images[~images["readable"]].itertuples()}
    paths = image_paths(images["file_name"].tolist(), data)
    found = {str(images["file_name"][i]): reason for i, reason in find_undecodable(paths, workers=2)}
    assert found.keys() == built.keys() == reasons.keys()
    for name, reason in found.items():
        assert reason.startswith(reasons[name]) and built[name].startswith(reasons[name]), (name, reason, built[name])
    assert find_undecodable(paths, workers=0) == find_undecodable(paths, workers=2)  # inline = parallel


def test_clean_data_is_ok_and_no_decode_says_it_did_not_look(tmp_path, broken_data):
    clean = tmp_path / "clean"
    write_coco(clean)
    res = _check(clean / "instances.json", clean / "predictions.json")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-1] == "OK" and "unreadable" not in res.stdout
    data, _ = broken_data  # sizes are in the JSON: without the decode pass no image is opened
    res = _check_demo(data, "--no-decode")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-1] == "OK (images not decoded: --no-decode)"


def test_shared_files_are_a_line_and_part_of_the_verdict(tmp_path):
    from _io_helpers import coco_gt

    gt = coco_gt()
    gt["images"][2]["file_name"] = "./img0.png"
    write_coco(tmp_path, gt)
    res = _check(tmp_path / "instances.json", tmp_path / "predictions.json")
    assert res.returncode == 0, res.stderr
    real = str((tmp_path / "img0.png").resolve())
    assert f"shared files  1 file(s) named by more than one image record: {real} (image ids 100, 102)" in res.stdout
    assert res.stdout.splitlines()[-1] == "OK with 1 file(s) named by several image records: build will map 3 of 3 images"


def test_accepted_outside_root_images_are_listed(tmp_path):
    from _io_helpers import coco_gt

    gt = coco_gt()
    gt["images"][1]["file_name"] = "../out.png"
    write_coco(tmp_path / "ds", gt)  # makes ds/../out.png too
    res = _check(tmp_path / "ds/instances.json", tmp_path / "ds/predictions.json", "--allow-outside-root")
    assert res.returncode == 0, res.stderr
    assert "outside root  1 image(s) read from outside the images root (--allow-outside-root): ../out.png" in res.stdout
    assert res.stdout.splitlines()[-1] == "OK"
