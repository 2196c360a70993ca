"""Files that are not regular files, and input files past the size limit: refused by
``stat`` before anything is read (``--gt /dev/zero`` grew to 22.6 GB; a FIFO among the
images hung the build forever)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from _io_helpers import coco_gt, make_image, write_coco, write_json, write_text

from vecexplore.errors import ConfigError, InputError
from vecexplore.io import DatasetSource, load_dataset

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX special files")

FIFO = "not a regular file (a FIFO)"
CHAR = "not a regular file (a character device)"
SOCK = "not a regular file (a socket)"


def _no_hang(fn, *args, fifos=(), timeout=60, **kwargs):
    """``fn(*args, **kwargs)`` in a thread; a call still blocked after ``timeout`` s fails
    the test (its FIFOs are then opened for writing, which releases a blocked reader)."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the test below
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        for fifo in fifos:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"{getattr(fn, '__name__', fn)} blocked on a special file")
    if "error" in out:
        raise out["error"]
    return out.get("value")


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    os.mkfifo(path)
    return path


@pytest.fixture
def sock_path():
    """A bound Unix socket (in a short folder: socket paths are limited to ~100 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="vx", dir="/tmp"))
    path = folder / "s.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    yield path
    s.close()
    path.unlink()
    folder.rmdir()


def _coco(tmp_path, **kw):
    gt, pred = write_coco(tmp_path)
    return DatasetSource(**({"gt": gt, "pred": pred} | kw))


def _csv(tmp_path, **kw):
    make_image(tmp_path / "a.png", (8, 8))
    gt = write_text(tmp_path / "gt.csv", "file_name,label\na.png,cat\n")
    pred = write_text(tmp_path / "pred.csv", "file_name,prediction,score\na.png,cat,0.9\n")
    return DatasetSource(**({"gt": gt, "pred": pred} | kw))


def _yolo(tmp_path, **kw):
    make_image(tmp_path / "images/a.png", (10, 10))
    write_text(tmp_path / "labels/a.txt", "0 0.5 0.5 0.2 0.2\n")
    write_text(tmp_path / "pred/a.txt", "0 0.5 0.5 0.2 0.2 0.9\n")
    return DatasetSource(**({"images": tmp_path / "images", "pred": tmp_path / "pred", "names": "cat,dog"} | kw))


def _then_fifo(source, path: Path):
    """``source`` after its file at ``path`` was replaced by a FIFO."""
    _fifo(path)
    return source


# (id, source(tmp_path, sock_path) -> (DatasetSource, file at fault), problem)
SPECIAL_INPUTS = [
    ("coco-gt-fifo", lambda t, s: (_coco(t, gt=_fifo(t / "fifo.json"), format="coco"), t / "fifo.json"), FIFO),
    ("coco-gt-fifo-detected", lambda t, s: (_coco(t, gt=_fifo(t / "fifo.json")), t / "fifo.json"), FIFO),
    ("coco-gt-dev-zero", lambda t, s: (_coco(t, gt=Path("/dev/zero"), format="coco"), Path("/dev/zero")), CHAR),
    ("coco-gt-dev-zero-detected", lambda t, s: (_coco(t, gt=Path("/dev/zero")), Path("/dev/zero")), CHAR),
    ("coco-pred-fifo", lambda t, s: (_coco(t, pred=_fifo(t / "p.json")), t / "p.json"), FIFO),
    ("coco-pred-socket", lambda t, s: (_coco(t, pred=s), s), SOCK),
    ("coco-pred-dev-zero", lambda t, s: (_coco(t, pred=Path("/dev/zero")), Path("/dev/zero")), CHAR),
    ("csv-gt-fifo", lambda t, s: (_csv(t, gt=_fifo(t / "g.csv")), t / "g.csv"), FIFO),
    ("csv-pred-dev-zero", lambda t, s: (_csv(t, pred=Path("/dev/zero")), Path("/dev/zero")), CHAR),
    ("yolo-data-yaml-fifo", lambda t, s: (_yolo(t, names=str(_fifo(t / "data.yaml"))), t / "data.yaml"), FIFO),
    ("yolo-names-txt-fifo", lambda t, s: (_yolo(t, names=str(_fifo(t / "names.txt"))), t / "names.txt"), FIFO),
    ("yolo-label-fifo", lambda t, s: (_then_fifo(_yolo(t), t / "labels/a.txt"), t / "labels/a.txt"), FIFO),
    ("yolo-prediction-fifo", lambda t, s: (_then_fifo(_yolo(t), t / "pred/a.txt"), t / "pred/a.txt"), FIFO),
]


@pytest.mark.parametrize("case", SPECIAL_INPUTS, ids=[c[0] for c in SPECIAL_INPUTS])
def test_special_input_files_are_refused_unread(tmp_path, sock_path, case):
    _, make, problem = case
    source, culprit = make(tmp_path, sock_path)
    fifos = [p for p in tmp_path.rglob("*") if p.is_fifo()]
    with pytest.raises(InputError) as info:
        _no_hang(load_dataset, source, fifos=fifos)
    assert str(info.value) == f"{culprit}: {problem}"


def test_images_file_fifo_is_refused(tmp_path, demo_run):
    from vecexplore.export import select_from_file
    from vecexplore.store import Run

    fifo = _fifo(tmp_path / "list.txt")
    with pytest.raises(InputError, match="list.txt: " + FIFO.replace("(", r"\(").replace(")", r"\)")):
        _no_hang(select_from_file, Run(demo_run[0]), fifo, fifos=[fifo])


def test_cli_gt_dev_zero_is_error_exit_2(tmp_path):
    """The issue's case: ``--gt /dev/zero`` read until the OOM killer came."""
    pred = write_json(tmp_path / "p.json", [])
    for extra in ([], ["--format", "coco"]):
        res = subprocess.run([sys.executable, "-m", "vecexplore", "check-data", "--gt", "/dev/zero", "--pred", str(pred),
                              *extra], capture_output=True, text=True, timeout=120)
        assert res.returncode == 2, res.stderr
        assert res.stderr.strip() == f"error: /dev/zero: {CHAR}"


# ---------------------------------------------------------------- the size limit


@pytest.fixture
def no_open(monkeypatch):
    """Fail any os.open of the input readers: the limit must refuse before opening."""
    import vecexplore.io.files as files

    class NoOpen:
        def __getattr__(self, name):
            return getattr(os, name)

        def open(self, *args, **kwargs):
            raise AssertionError("the file was opened")

    monkeypatch.setattr(files, "os", NoOpen())


def test_file_above_the_default_limit_is_refused_before_reading(tmp_path, no_open):
    write_coco(tmp_path)
    with open(tmp_path / "instances.json", "r+b") as f:
        f.truncate(5 * 2**30)  # sparse: 5 GiB on paper, nothing on disk
    with pytest.raises(InputError) as info:
        load_dataset(DatasetSource(gt=tmp_path / "instances.json", pred=tmp_path / "predictions.json"))
    assert str(info.value) == (f"{tmp_path / 'instances.json'}: is 5,120.0 MB, above the 4,096.0 MB limit for input "
                               "files; set VECEXPLORE_MAX_INPUT_MB (in MB) to raise it")


def test_the_limit_is_set_by_the_environment(tmp_path, monkeypatch):
    gt = coco_gt()
    gt["images"][0]["note"] = "x" * (2 * 2**20)  # a 2 MB GT file
    write_coco(tmp_path, gt)
    source = DatasetSource(gt=tmp_path / "instances.json", pred=tmp_path / "predictions.json")
    monkeypatch.setenv("VECEXPLORE_MAX_INPUT_MB", "1")
    with pytest.raises(InputError, match=r"instances.json: is 2.0 MB, above the 1.0 MB limit"):
        load_dataset(source)
    monkeypatch.setenv("VECEXPLORE_MAX_INPUT_MB", "2.5")
    assert load_dataset(source).num_images == 3


@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf", "nan"])
def test_a_bad_limit_is_a_config_error(tmp_path, monkeypatch, value):
    write_coco(tmp_path)
    monkeypatch.setenv("VECEXPLORE_MAX_INPUT_MB", value)
    with pytest.raises(ConfigError, match=f"VECEXPLORE_MAX_INPUT_MB must be a positive number of megabytes, got '{value}'"):
        load_dataset(DatasetSource(gt=tmp_path / "instances.json", pred=tmp_path / "predictions.json"))


# ---------------------------------------------------------------- images


def _special_image(kind: str, tmp_path: Path, sock_path: Path) -> tuple[Path, str]:
    if kind == "fifo":
        return _fifo(tmp_path / "fifo.jpg"), FIFO
    if kind == "socket":
        return sock_path, SOCK
    if kind == "char-device":
        return Path("/dev/zero"), CHAR
    (tmp_path / "folder.jpg").mkdir()
    return tmp_path / "folder.jpg", "is a directory, not an image file"


@pytest.mark.parametrize("kind", ["fifo", "socket", "char-device", "directory"])
def test_special_image_files_are_unreadable_never_opened(tmp_path, sock_path, kind):
    from vecexplore.app.routes import render_full_image
    from vecexplore.io._read import image_size
    from vecexplore.io.images import DecodeError, file_digest, make_thumbnail, open_rgb

    path, reason = _special_image(kind, tmp_path, sock_path)
    fifos = [path] if kind == "fifo" else []
    with pytest.raises(DecodeError) as info:
        _no_hang(open_rgb, path, fifos=fifos)
    assert info.value.reason == reason
    with pytest.raises(DecodeError, match="not"):
        _no_hang(make_thumbnail, path, 64, fifos=fifos)
    assert _no_hang(image_size, path, fifos=fifos) is None
    with pytest.raises(InputError) as info:
        _no_hang(file_digest, path, what="an image file", fifos=fifos)
    assert info.value.detail == f"cannot read file: {reason}"
    rendered = _no_hang(render_full_image, path, (40, 30), fifos=fifos)
    assert rendered.unreadable


_BUILD = """
import json, os, sys
data = sys.argv[1]
gt = json.load(open(os.path.join(data, "annotations.json")))
names = [im["file_name"] for im in gt["images"]]
for name in names[:2]:  # FIFOs: one with its size in the JSON, one whose header must be read
    os.remove(os.path.join(data, name))
    os.mkfifo(os.path.join(data, name))
del gt["images"][1]["width"], gt["images"][1]["height"]
os.remove(os.path.join(data, names[2]))
os.mkdir(os.path.join(data, names[2]))
json.dump(gt, open(os.path.join(data, "annotations.json"), "w"))
"""


def test_a_build_with_fifo_images_finishes_and_records_them(tmp_path):
    """Hashing, header reads, the embedding's decoding workers and the thumbnail scan
    (worker processes) all meet the FIFOs; the build must finish, marking them."""
    from conftest import TINY_MODEL

    from vecexplore.demo import generate_demo
    from vecexplore.store import Run

    data = tmp_path / "data"
    generate_demo(data, n=40, seed=3)
    subprocess.run([sys.executable, "-c", _BUILD, str(data)], check=True, timeout=60)
    res = subprocess.run(
        [sys.executable, "-m", "vecexplore", "build", "--gt", str(data / "annotations.json"),
         "--pred", str(data / "predictions.json"), "-o", str(tmp_path / "run"), "--model", TINY_MODEL,
         "--weights", "random", "--device", "cpu", "--workers", "2", "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    images = Run(tmp_path / "run").images
    bad = images[~images["readable"]].sort_values("image_idx")
    assert bad["image_idx"].tolist() == [0, 1, 2]
    assert bad["unreadable_reason"].tolist() == [FIFO, FIFO, "is a directory, not an image file"]
    assert images["readable"].sum() == 37
    assert json.loads((tmp_path / "run/manifest.json").read_text())["counts"]["unreadable"] == 3
