"""Nothing is exposed beyond this machine by default, and no route answers a foreign Host.

Both entry points, ``vecexplore serve`` and ``bokeh serve server --args RUN``,
run as real processes: their listening sockets are read from the kernel
(``/proc/net/tcp*``), and every kind of route (the app page, Bokeh's static
files and websocket, thumbnails, full images, exports, the chooser) is asked
once with the server's own Host and once with a foreign one, as a
DNS-rebinding page would send.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vecexplore.app.hosts import allowed_hosts, host_allowed

REPO = Path(__file__).resolve().parents[1]
FOREIGN = ("evil.example", "evil.example:{port}", "127.0.0.1.evil.example:{port}", "localhost.:{port}",
           "localhost:{port}.evil.example")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> set[str]:
    """Local addresses with a socket in LISTEN state on ``port`` (IPv4 and IPv6), from the kernel."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            addr, hexport = fields[1].split(":")
            if int(hexport, 16) != port or fields[3] != "0A":  # 0A = TCP_LISTEN
                continue
            raw = bytes.fromhex(addr)
            if width == 8:
                found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def _get(port: int, path: str, host: str | None, headers: dict | None = None) -> int:
    """Status of GET ``path`` on 127.0.0.1:``port`` with the given Host header ("" = none sent)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.putrequest("GET", path, skip_host=True)
        if host:
            conn.putheader("Host", host)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def _wait_listening(proc, port: int, path: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stdout.read()}")
        try:
            if _get(port, path, f"localhost:{port}") == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"no answer on {path} within {timeout} s")


def _routes(run_dir: Path, key: str, page: str) -> list[str]:
    """One path of every kind the server answers for a run served at ``page``."""
    from vecexplore.store import Run

    image_id = int(Run(run_dir).images["image_id"].iloc[0])
    exports = run_dir / "exports"
    exports.mkdir(exist_ok=True)
    (exports / "host-check.json").write_text("{}")
    ws = page.rstrip("/") + "/ws"
    return [page, "/static/js/bokeh.min.js", ws, f"/vx/{key}/thumb/{image_id}", f"/vx/{key}/image/{image_id}",
            f"/vx/{key}/export/host-check.json"]


def _assert_guarded(port: int, routes: list[str]) -> None:
    ws_headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                  "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    for path in routes:
        extra = ws_headers if path.endswith("/ws") else None
        own = _get(port, path, f"localhost:{port}", extra)
        assert own in (101, 200), f"{path} with the server's own Host answered {own}"
        for foreign in FOREIGN:
            status = _get(port, path, foreign.format(port=port), extra)
            assert status == 403, f"{path} with Host {foreign!r} answered {status}"


# ---------------------------------------------------------------- pure


@pytest.mark.parametrize(
    ("origins", "host", "ok"),
    [
        ([], "localhost:5006", True),
        ([], "127.0.0.1:5006", True),
        ([], "[::1]:5006", True),
        ([], "LOCALHOST:5006", True),
        ([], "localhost:5007", False),
        ([], "localhost", False),  # port 80 is not ours
        ([], "evil.example:5006", False),
        ([], "", False),
        ([], None, False),
        ([], "127.0.0.1.nip.io:5006", False),
        (["box.lan:5006"], "box.lan:5006", True),
        (["box.lan"], "box.lan", True),  # no port given → :80, as Bokeh does
        (["box.lan"], "box.lan:5006", False),
        (["*.lan:5006"], "a.lan:5006", True),
        (["*.lan:5006"], "a.lan.evil:5006", False),
        (["10.0.0.*:5006"], "10.0.0.7:5006", True),
        (["10.0.0.*:5006"], "[fe80::1]:5006", False),
    ],
)
def test_host_allowlist(origins, host, ok):
    assert host_allowed(host, allowed_hosts(origins, 5006)) is ok


# ---------------------------------------------------------------- the servers


def test_in_process_server_listens_on_loopback_and_refuses_foreign_hosts(demo_run):
    from vecexplore.app.data import load_run_data
    from vecexplore.app.server import ServerThread

    run_dir = demo_run[0]
    server = ServerThread([run_dir])
    try:
        port = server.app.port
        assert _listening(port) == {"127.0.0.1"}
        _assert_guarded(port, _routes(run_dir, load_run_data(run_dir).key, "/"))
    finally:
        server.stop()


def test_remote_use_allows_exactly_the_named_origins(demo_run):
    from vecexplore.app.server import ServerThread

    port = _free_port()
    server = ServerThread([demo_run[0]], host="0.0.0.0", port=port, allow_websocket_origin=[f"box.lan:{port}"])
    try:
        assert _listening(port) == {"0.0.0.0"}
        assert _get(port, "/", f"box.lan:{port}") == 200
        assert _get(port, "/", f"localhost:{port}") == 200
        assert _get(port, "/", f"other.lan:{port}") == 403
    finally:
        server.stop()


def test_the_chooser_refuses_foreign_hosts(tmp_path, demo_run, demo_run_classification):
    from vecexplore.app.server import ServerThread

    runs = tmp_path / "runs"
    runs.mkdir()
    os.symlink(demo_run[0], runs / "det")
    os.symlink(demo_run_classification[0], runs / "cls")
    server = ServerThread([runs])
    try:
        port = server.app.port
        _assert_guarded(port, ["/", "/det", "/cls", "/static/js/bokeh.min.js"])
    finally:
        server.stop()


@pytest.mark.parametrize("entry", ["vecexplore", "bokeh"])
def test_entry_points_bind_loopback_and_refuse_foreign_hosts(demo_run, entry):
    from vecexplore.app.data import load_run_data

    run_dir = demo_run[0]
    key = load_run_data(run_dir).key
    port = _free_port()
    if entry == "vecexplore":
        argv, page = [sys.executable, "-m", "vecexplore", "serve", str(run_dir), "--port", str(port)], "/"
    else:
        argv = [str(Path(sys.executable).parent / "bokeh"), "serve", str(REPO / "server"), "--port", str(port),
                "--args", str(run_dir)]
        page = "/server"
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_listening(proc, port, f"/vx/{key}/thumb/{int(load_run_data(run_dir).images.image_id[0])}")
        assert _listening(port) == {"127.0.0.1"}
        _assert_guarded(port, _routes(run_dir, key, page))
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.parametrize("entry", ["vecexplore", "bokeh"])
def test_an_explicit_address_is_honoured(demo_run, entry):
    run_dir = demo_run[0]
    port = _free_port()
    if entry == "vecexplore":
        argv = [sys.executable, "-m", "vecexplore", "serve", str(run_dir), "--port", str(port),
                "--address", "0.0.0.0"]
        page = "/"
    else:
        argv = [str(Path(sys.executable).parent / "bokeh"), "serve", str(REPO / "server"), "--port", str(port),
                "--address", "0.0.0.0", "--args", str(run_dir)]
        page = "/server"
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_listening(proc, port, page)
        assert "0.0.0.0" in _listening(port)
        assert _get(port, page, f"evil.example:{port}") == 403  # the Host check holds on every interface
    finally:
        proc.terminate()
        proc.wait(20)
