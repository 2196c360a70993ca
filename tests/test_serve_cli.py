"""``vecexplore serve``, the server builder and the ``server/`` directory app:
which paths are runs, URL keys, the chooser, CLI errors (exit 2, no traceback),
a real server on a free port, and ``bokeh serve server --args RUN``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from vecexplore.app.server import (
    ServerThread,
    chooser_html,
    default_websocket_origins,
    discover_runs,
    run_keys,
    slugify,
)
from vecexplore.errors import RunStoreError

REPO = Path(__file__).resolve().parents[1]


def _fake_run(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "manifest.json").write_text("{}")
    return path


def _fetch(url: str, timeout: float = 60):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- pure parts


def test_discover_runs_single_folder_and_several(tmp_path):
    a = _fake_run(tmp_path / "runs" / "b-run")
    b = _fake_run(tmp_path / "runs" / "a-run")
    (tmp_path / "runs" / "not-a-run").mkdir()
    _fake_run(tmp_path / "runs" / "c.partial-x1y2")  # a killed build's leftover
    (tmp_path / "runs" / "file.txt").write_text("x")
    assert discover_runs([a]) == [a]
    assert discover_runs([tmp_path / "runs"]) == [b, a]  # sorted by name
    assert discover_runs([a, b, a]) == [a, b]  # the same run once
    os.symlink(a, tmp_path / "alias")
    assert discover_runs([a, tmp_path / "alias"]) == [a]
    assert discover_runs([tmp_path / "alias"]) == [tmp_path / "alias"]  # the name the user gave


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing", "no such run directory"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "not a vecexplore run and holds none"),
        (lambda d: (d / "f.json").write_text("{}") and d / "f.json", "not a vecexplore run"),
    ],
)
def test_discover_runs_refuses_non_runs(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(RunStoreError, match=message) as err:
        discover_runs([path])
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("names", "keys"),
    [
        (["run"], ["run"]),
        (["Run A", "run-a", "run_a", "run a"], ["run-a", "run-a-2", "run_a", "run-a-3"]),
        (["..", "é", "%2e"], ["run", "run-2", "2e"]),
        (["run", "run-2", "run"], ["run", "run-2", "run-3"]),
        (["static", "vx", "VX", "static-run"], ["static-run", "vx-run", "vx-run-2", "static-run-2"]),
    ],
)
def test_run_keys_are_url_safe_and_unique(names, keys):
    assert run_keys([Path("/x") / n for n in names]) == keys


def test_server_keys_agree_with_run_data():
    from vecexplore.app.data import slugify as data_slugify

    for name in ["Run A", "..", "x/y", "Ünïcode run", "run_1-2"]:
        assert slugify(name) == data_slugify(name)


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("127.0.0.1", 5006, {"127.0.0.1:5006", "localhost:5006"}),
        ("localhost", 8000, {"localhost:8000", "127.0.0.1:8000"}),
        ("myhost.lan", 80, {"myhost.lan:80", "localhost:80", "127.0.0.1:80"}),
    ],
)
def test_default_websocket_origins(host, port, expected):
    assert set(default_websocket_origins(host, port)) == expected


def test_default_websocket_origins_on_all_interfaces_include_this_machine():
    got = default_websocket_origins("0.0.0.0", 5006)
    assert f"{socket.gethostname()}:5006" in got and "localhost:5006" in got
    assert not any(o.startswith("0.0.0.0") for o in got)


def test_chooser_escapes_and_links():
    rows = [
        {"key": "a", "name": "<b>x</b>", "task": "detection", "images": 3, "model": "m", "weights": "random",
         "random": True, "metric": "mAP", "value": 0.5, "created": "2026"},
        {"key": "b", "name": "y", "task": "classification", "images": 2, "model": "m", "weights": "w",
         "random": False, "metric": "accuracy", "value": None, "created": None},
    ]
    page = chooser_html(rows)
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert 'href="/a"' in page and 'href="/b"' in page
    assert page.count("random weights") == 1 and "mAP 0.500" in page and "accuracy –" in page


# ---------------------------------------------------------------- the CLI


def _cli(argv, capsys):
    from vecexplore.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing", "no such run directory"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "not a vecexplore run"),
        (lambda d: (d / "x.txt").write_text("") or d / "x.txt", "not a vecexplore run"),
    ],
)
def test_cli_not_a_run(tmp_path, capsys, make, message):
    path = make(tmp_path)
    code, _, err = _cli(["serve", str(path)], capsys)
    assert code == 2
    assert f"error: {path}: " in err and message in err
    assert "Traceback" not in err


def test_cli_port_in_use(demo_run, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = _cli(["serve", str(demo_run[0]), "--port", str(port)], capsys)
    assert code == 2
    assert f"error: port {port} on 127.0.0.1 is already in use" in err and "--port" in err
    assert "Traceback" not in err


def test_cli_serves_and_prints_the_url(demo_run):
    """The real command in a subprocess: it prints the URL, the page and a thumbnail load."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vecexplore", "serve", str(demo_run[0]), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == f"vecexplore: serving {demo_run[0]} at http://127.0.0.1:{port}/", line
        status, headers, body = _fetch(f"http://127.0.0.1:{port}/")
        assert status == 200 and b"Bokeh" in body
        ids = json.loads((demo_run[1] / "annotations.json").read_text())["images"]
        status, headers, _ = _fetch(f"http://127.0.0.1:{port}/vx/run/thumb/{ids[0]['id']}")
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
    finally:
        proc.terminate()
        proc.wait(20)


# ---------------------------------------------------------------- servers


def test_one_run_at_root_with_its_routes(demo_run):
    from vecexplore.app.data import load_run_data

    run_dir, _ = demo_run
    server = ServerThread([run_dir])
    try:
        data = load_run_data(run_dir)
        assert server.url.startswith("http://127.0.0.1:") and server.app.port > 0
        status, _, body = _fetch(server.url)
        assert status == 200 and b"bokeh" in body.lower()
        image_id = int(data.images.image_id[3])
        status, headers, body = _fetch(f"{server.url}vx/{data.key}/thumb/{image_id}")
        assert status == 200 and body == data.thumbs.get(3) and headers["Content-Type"] == "image/jpeg"
        status, headers, _ = _fetch(f"{server.url}vx/{data.key}/image/{image_id}")
        assert status == 200 and headers["Content-Type"].startswith("image/")
        for bad in ["vx/run/thumb/..%2fmanifest.json", "vx/run/manifest.json", "vx/nope/thumb/1"]:
            assert _fetch(server.url + bad)[0] == 404
    finally:
        server.stop()


def test_several_runs_get_a_chooser(tmp_path, demo_run, demo_run_classification):
    runs = tmp_path / "runs"
    runs.mkdir()
    os.symlink(demo_run[0], runs / "detection run")
    os.symlink(demo_run_classification[0], runs / "cls")
    server = ServerThread([runs])
    try:
        assert [r.key for r in server.app.runs] == ["cls", "detection-run"]
        status, headers, page = _fetch(server.url)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        page = page.decode()
        assert 'href="/cls"' in page and 'href="/detection-run"' in page
        assert "detection" in page and "classification" in page and "random weights" in page
        assert "mAP 0." in page and "accuracy 0." in page
        for run in server.app.runs:
            status, _, body = _fetch(server.url + run.key)
            assert status == 200 and b"bokeh" in body.lower()
        # each run's routes serve its own thumbnails
        from vecexplore.thumbs import ThumbStore

        for run, src in [(server.app.runs[0], demo_run_classification[0]), (server.app.runs[1], demo_run[0])]:
            data = run.get()
            image_id = int(data.images.image_id[0])
            status, _, body = _fetch(f"{server.url}vx/{run.key}/thumb/{image_id}")
            assert status == 200 and body == ThumbStore(src).get(0)
    finally:
        server.stop()


def test_bokeh_serve_directory_app(demo_run):
    """``bokeh serve server --args RUN`` serves the page and the image routes."""
    from vecexplore.app.data import load_run_data

    run_dir, _ = demo_run
    data = load_run_data(run_dir)
    port = _free_port()
    bokeh = Path(sys.executable).parent / "bokeh"
    proc = subprocess.Popen(
        [str(bokeh), "serve", str(REPO / "server"), "--port", str(port), "--args", str(run_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        image_id = int(data.images.image_id[7])
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, headers, body = _fetch(f"http://localhost:{port}/vx/{data.key}/thumb/{image_id}", timeout=10)
            except OSError:
                time.sleep(0.5)
                continue
            if status == 200:
                break
            time.sleep(0.5)  # the routes are added by on_server_loaded, just after start-up
        assert proc.poll() is None, proc.stdout.read()
        assert status == 200 and body == data.thumbs.get(7) and headers["Content-Type"] == "image/jpeg"
        status, _, body = _fetch(f"http://localhost:{port}/server")
        assert status == 200 and b"bokeh" in body.lower()
        assert _fetch(f"http://localhost:{port}/vx/{data.key}/thumb/..%2fmanifest.json")[0] == 404
    finally:
        proc.terminate()
        proc.wait(20)
