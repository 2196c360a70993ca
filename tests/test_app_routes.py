"""The app's image and export routes: pure validation tables, full-image rendering
against Pillow, and the Tornado handlers on a real socket (raw request paths, so
no client normalises the traversal attempts away)."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vecexplore.app.routes import (
    EXPORT_TYPES,
    MAX_SIDE,
    SCALE_HEADER,
    UNREADABLE_HEADER,
    export_file,
    parse_image_id,
    placeholder_image,
    render_full_image,
    route_patterns,
    served_size,
)

# ---------------------------------------------------------------- pure validation


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", 0),
        ("42", 42),
        ("-7", -7),
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775808", -(2**63)),
        ("9223372036854775808", None),  # beyond int64
        ("", None),
        (None, None),
        ("..", None),
        ("../1", None),
        ("../../manifest.json", None),
        ("/etc/passwd", None),
        ("%2e%2e%2f", None),  # what a double-encoded request decodes to once
        ("%31", None),
        ("1/..", None),
        ("1\\..", None),
        ("..\\1", None),
        ("1\x00", None),
        ("\x001", None),
        ("1\n", None),
        (" 1", None),
        ("+1", None),
        ("-0", None),
        ("01", None),
        ("1.0", None),
        ("1e3", None),
        ("0x10", None),
        ("١٢", None),  # Arabic-Indic digits: int() would accept them
        ("１", None),  # fullwidth digit
        ("1.jpg", None),
    ],
)
def test_parse_image_id(raw, expected):
    assert parse_image_id(raw) == expected


@pytest.fixture
def exports_dir(tmp_path):
    exports = tmp_path / "run" / "exports"
    exports.mkdir(parents=True)
    for name in ("sel_3-images.json", "sel.csv", "sel.txt", "sel.zip", "data.parquet", ".hidden.json", "UPPER.JSON"):
        (exports / name).write_text("x")
    (exports / "dir.json").mkdir()
    (exports / "sub").mkdir()
    (exports / "sub" / "inner.json").write_text("x")
    (tmp_path / "run" / "manifest.json").write_text("{}")
    (tmp_path / "outside.json").write_text("secret")
    (exports / "link.json").symlink_to(tmp_path / "outside.json")
    (exports / "inside-link.json").symlink_to(exports / "sel.csv")
    return exports


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("sel_3-images.json", True),
        ("sel.csv", True),
        ("sel.txt", True),
        ("sel.zip", True),
        ("UPPER.JSON", True),
        ("inside-link.json", False),  # resolves to sel.csv: a .json name must not serve a .csv
        ("data.parquet", False),  # not an export type
        (".hidden.json", False),
        ("dir.json", False),
        ("missing.json", False),
        ("sub/inner.json", False),
        ("sub%2finner.json", False),
        ("../manifest.json", False),
        ("..", False),
        ("..json", False),
        ("a..json", False),
        ("/etc/passwd", False),
        ("link.json", False),  # symlink out of exports
        ("sel.csv\x00.json", False),
        ("sel.csv ", False),
        ("..\\manifest.json", False),
        ("", False),
        (None, False),
    ],
)
def test_export_file(exports_dir, name, ok):
    got = export_file(exports_dir, name)
    if ok:
        assert got == (exports_dir / name).resolve()
        assert got.suffix.lower() in EXPORT_TYPES
    else:
        assert got is None


@pytest.mark.parametrize(
    ("table", "decoded", "size", "scale"),
    [
        ((640, 480), (640, 480), (640, 480), 1.0),
        ((4096, 1024), (4096, 1024), (2048, 512), 0.5),
        ((1024, 4096), (512, 2048), (512, 2048), 0.5),
        ((200, 100), (400, 200), (200, 100), 1.0),  # the table's frame wins
        ((0, 0), (300, 200), (300, 200), 1.0),  # unknown table size: the decoded one
        ((0, 0), (5000, 2500), (2048, 1024), 2048 / 5000),
        ((3000, 1), (3000, 1), (2048, 1), 2048 / 3000),
    ],
)
def test_served_size(table, decoded, size, scale):
    assert served_size(table, decoded) == (size, pytest.approx(scale))


# ---------------------------------------------------------------- rendering


def _gradient(w, h, mode="RGB"):
    x = np.linspace(0, 255, w)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h)[:, None].repeat(w, 1)
    arr = np.stack([x, y, (x + y) / 2], -1).astype(np.uint8)
    return Image.fromarray(arr).convert(mode)


def _write_cases(d: Path) -> dict[str, tuple[Path, tuple[int, int], str]]:
    """name → (file, table size, expected content type)."""
    cases = {}
    _gradient(300, 200).save(d / "rgb.jpg", quality=95)
    cases["jpeg"] = (d / "rgb.jpg", (300, 200), "image/jpeg")
    _gradient(300, 200).save(d / "rgb.png")
    cases["png"] = (d / "rgb.png", (300, 200), "image/png")
    img = _gradient(300, 200)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display: 200 wide, 300 high
    img.save(d / "exif.jpg", exif=exif, quality=95)
    cases["exif"] = (d / "exif.jpg", (200, 300), "image/jpeg")
    _gradient(120, 80, "CMYK").save(d / "cmyk.jpg", quality=95)
    cases["cmyk"] = (d / "cmyk.jpg", (120, 80), "image/jpeg")
    arr16 = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    Image.fromarray(arr16).save(d / "16bit.png")
    cases["16bit"] = (d / "16bit.png", (64, 48), "image/png")
    _gradient(3000, 1500).save(d / "big.jpg", quality=90)
    cases["big"] = (d / "big.jpg", (3000, 1500), "image/jpeg")
    _gradient(400, 200).save(d / "double.png")
    cases["table-half"] = (d / "double.png", (200, 100), "image/png")
    return cases


@pytest.mark.parametrize("case", ["jpeg", "png", "exif", "cmyk", "16bit", "big", "table-half"])
def test_render_full_image_matches_open_rgb(tmp_path, case):
    from vecexplore.io.images import open_rgb

    path, table, content_type = _write_cases(tmp_path)[case]
    out = render_full_image(path, table)
    assert not out.unreadable and out.content_type == content_type
    got = Image.open(io.BytesIO(out.body))
    assert got.format == content_type.split("/")[1].upper()
    (w, h), scale = served_size(table, table)
    assert got.size == (w, h) and out.scale == pytest.approx(scale)
    assert max(got.size) <= MAX_SIDE
    want = open_rgb(path).resize((w, h), Image.Resampling.LANCZOS)
    diff = np.abs(np.asarray(got.convert("RGB"), float) - np.asarray(want, float))
    if content_type == "image/png":
        assert diff.max() == 0
    else:
        assert diff.mean() < 3.0


@pytest.mark.parametrize("content", [b"", b"\xff\xd8\xff\xe0garbage", b"not an image"])
def test_render_full_image_undecodable_gives_placeholder(tmp_path, content):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    out = render_full_image(path, (400, 200))
    assert out.unreadable and out.content_type == "image/png"
    img = Image.open(io.BytesIO(out.body))
    assert img.format == "PNG" and img.size[0] == 2 * img.size[1]  # the table's aspect


def test_placeholder_is_grey_with_a_mark():
    img = np.asarray(Image.open(io.BytesIO(placeholder_image().body)).convert("L"))
    assert img.shape == (160, 160)
    assert img.min() < 150 < np.median(img)  # mostly light grey, with darker lines and text


# ---------------------------------------------------------------- handlers on a real socket


@contextmanager
def _tornado(patterns):
    from tornado import netutil
    from tornado.httpserver import HTTPServer
    from tornado.ioloop import IOLoop
    from tornado.web import Application

    ready = threading.Event()
    box = {}

    def main():
        asyncio.set_event_loop(asyncio.new_event_loop())
        sockets = netutil.bind_sockets(0, "127.0.0.1")
        server = HTTPServer(Application(patterns))
        server.add_sockets(sockets)
        box.update(port=sockets[0].getsockname()[1], loop=IOLoop.current(), server=server)
        ready.set()
        IOLoop.current().start()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield box["port"]
    finally:
        box["loop"].add_callback(lambda: (box["server"].stop(), box["loop"].stop()))
        thread.join(10)


def _get(port, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("GET", path, skip_accept_encoding=True)  # path sent byte for byte
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory, umap_warm):
    """A 40-image detection run with two images unreadable at build time and one
    deleted afterwards; some export files in RUN/exports."""
    from conftest import TINY_MODEL

    from vecexplore.builder import BuildConfig, build_run
    from vecexplore.demo import demo_source, generate_demo
    from vecexplore.embed.pipeline import EmbedConfig
    from vecexplore.mapping import MapConfig

    base = tmp_path_factory.mktemp("routes")
    data = base / "data"
    generate_demo(data, n=40, seed=5)
    gt = json.loads((data / "annotations.json").read_text())
    images = gt["images"]
    (data / images[0]["file_name"]).write_bytes(b"")
    p1 = data / images[1]["file_name"]
    p1.write_bytes(p1.read_bytes()[:300])
    result = build_run(BuildConfig(
        source=demo_source(data, task="detection"),
        out=base / "run",
        embed=EmbedConfig(model=TINY_MODEL, weights="random", device="cpu", num_workers=0),
        map=MapConfig(seed=0), cache_dir=base / "cache", scan_workers=0,
    ))
    os.remove(data / images[2]["file_name"])
    exports = result.out / "exports"
    exports.mkdir()
    (exports / "cluster-1_3-images.json").write_text('[{"image_id": 1}]\n')
    (exports / "sel.csv").write_text("image_id\n1\n")
    (exports / "sel.txt").write_text("/a.jpg\n")
    (exports / "sel.parquet").write_bytes(b"PAR1")
    (base / "secret.json").write_text("{}")
    (exports / "out.json").symlink_to(base / "secret.json")
    return result.out, [im["id"] for im in images]


@pytest.fixture(scope="module")
def served(broken_run):
    from vecexplore.app.data import load_run_data

    run_dir, ids = broken_run
    data = load_run_data(run_dir)
    with _tornado(route_patterns(data, url_base="/vx/r1")) as port:
        yield port, data, ids


def test_thumbnail_is_the_packed_jpeg_with_cache_headers(served):
    port, data, ids = served
    idx = data.index_of_image_id(ids[5])
    status, headers, body = _get(port, f"/vx/r1/thumb/{ids[5]}")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert body == data.thumbs.get(idx)
    assert "max-age=86400" in headers["cache-control"] and headers["etag"]
    assert headers["x-content-type-options"] == "nosniff"
    status, _, body = _get(port, f"/vx/r1/thumb/{ids[5]}", {"If-None-Match": headers["etag"]})
    assert status == 304 and body == b""
    assert _get(port, f"/vx/r1/thumb/{ids[6]}")[1]["etag"] != headers["etag"]


def test_full_image_has_the_table_frame(served):
    port, data, ids = served
    idx = data.index_of_image_id(ids[5])
    status, headers, body = _get(port, f"/vx/r1/image/{ids[5]}")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(body))
    w, h = int(data.images.width[idx]), int(data.images.height[idx])
    assert img.size == served_size((w, h), (w, h))[0]
    assert float(headers[SCALE_HEADER.lower()]) == pytest.approx(img.size[0] / w, rel=1e-3)
    assert UNREADABLE_HEADER.lower() not in headers
    status, _, body = _get(port, f"/vx/r1/image/{ids[5]}", {"If-None-Match": headers["etag"]})
    assert status == 304 and body == b""


@pytest.mark.parametrize(("which", "route"), [(0, "thumb"), (1, "thumb"), (0, "image"), (1, "image"), (2, "image")])
def test_unreadable_images_get_the_placeholder(served, which, route):
    """0: empty file, 1: truncated (both unreadable at build); 2: deleted after the build."""
    port, _, ids = served
    status, headers, body = _get(port, f"/vx/r1/{route}/{ids[which]}")
    assert status == 200 and headers["content-type"] == "image/png"
    assert headers[UNREADABLE_HEADER.lower()] == "1" and headers["cache-control"] == "no-cache"
    assert "etag" not in headers
    assert Image.open(io.BytesIO(body)).format == "PNG"


TRAVERSALS = [
    "..",
    "../manifest.json",
    "..%2fmanifest.json",
    "%2e%2e%2fmanifest.json",
    "%2E%2E%2Fmanifest.json",
    "%2e%2e",
    "%252e%252e%252fmanifest.json",  # double encoding
    "..%5cmanifest.json",
    "..\\manifest.json",
    "%2fetc%2fpasswd",
    "%2Fetc%2Fpasswd",
    "1%00",
    "1%00.jpg",
    "%00",
    "%c0%ae%c0%ae%2f",  # overlong UTF-8 dot-dot-slash: invalid UTF-8
    "..;%2fmanifest.json",
    "1%2f..%2f..%2fmanifest.json",
    "999999999",  # not an id of the run
    "-1",
    "abc",
    "01",
    "1.0",
    "+1",
    "%20",
    "C:%5cWindows",
]


@pytest.mark.parametrize("route", ["thumb", "image"])
@pytest.mark.parametrize("tail", TRAVERSALS)
def test_image_routes_refuse_everything_but_an_id_of_the_run(served, route, tail):
    port, _, _ = served
    status, _, body = _get(port, f"/vx/r1/{route}/{tail}")
    assert status == 404, (route, tail, body[:200])
    assert b"PNG" not in body[:8] and b"{" not in body


@pytest.mark.parametrize(
    "path",
    [
        "/vx/r1/thumb/../manifest.json",
        "/vx/r1/thumb/../../../../etc/passwd",
        "/vx/r1/image/..%2f..%2fmanifest.json",
        "/vx/r1/thumb/",
        "/vx/r1/thumb",
        "/vx/r1/../r1/manifest.json",
        "/vx/r1/manifest.json",
        "/vx/other/thumb/1",
        "/vx/r1/export/",
        "//etc/passwd",
    ],
)
def test_whole_path_traversal_is_404(served, path):
    port, _, _ = served
    assert _get(port, path)[0] == 404


@pytest.mark.parametrize(
    ("name", "content_type", "content"),
    [
        ("cluster-1_3-images.json", "application/json", b'[{"image_id": 1}]\n'),
        ("sel.csv", "text/csv; charset=utf-8", b"image_id\n1\n"),
        ("sel.txt", "text/plain; charset=utf-8", b"/a.jpg\n"),
    ],
)
def test_export_is_an_attachment(served, name, content_type, content):
    port, _, _ = served
    status, headers, body = _get(port, f"/vx/r1/export/{name}")
    assert status == 200 and body == content
    assert headers["content-type"] == content_type
    assert headers["content-disposition"] == f'attachment; filename="{name}"'


@pytest.mark.parametrize(
    "name",
    ["sel.parquet", "out.json", "missing.json", "..%2fmanifest.json", "%2e%2e%2fmetrics.json",
     "%252e%252e%252fmetrics.json", "..%5cmanifest.json", "sel.csv%00.json", "%2fetc%2fpasswd", ".."],
)
def test_export_route_refuses_anything_else(served, name):
    port, _, _ = served
    assert _get(port, f"/vx/r1/export/{name}")[0] == 404
