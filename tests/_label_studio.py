"""A real Label Studio server for the export tests, and a plain-HTTP client of its REST API.

The server runs from its own cached venv (:mod:`_tool_venvs`), on 127.0.0.1 and a
free port, with SQLite in a temporary data folder, local-file serving on under
``document_root``, a user and a legacy API token given through its environment
variables, and its version check and analytics off (nothing leaves the machine).
:func:`start` waits for ``/health``; :meth:`LabelStudio.stop` ends the process group
it started. A failure to start names the reason and shows the server's log.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from _tool_venvs import _tail, tool_venv

VERSION = "1.23.2"
#: Seconds the first start may take (database migrations on a busy 2-core machine).
START_TIMEOUT = float(os.environ.get("VECEXPLORE_LABEL_STUDIO_START_TIMEOUT", "600"))
USER = "vecexplore-test@example.com"
PASSWORD = "vecexplore-test-password"
TOKEN = "vecexplore-test-token-2f6c1d0e9b"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LabelStudio:
    proc: subprocess.Popen
    url: str
    log: Path
    document_root: Path

    def call(self, method: str, path: str, body=None, *, raw: bool = False, timeout: float = 120):
        """One API request with the token; JSON in and out (``raw``: the response bytes)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, method=method, data=data,
                                     headers={"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                payload = r.read()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:2000]!r}") from None
        return payload if raw else json.loads(payload or b"null")

    def tasks(self, project: int) -> list[dict]:
        """Every task of ``project`` with its annotations and predictions, by task id."""
        out, page = [], 1
        while True:
            got = self.call("GET", f"/api/tasks?project={project}&page={page}&page_size=100&fields=all")
            out += got["tasks"]
            if len(out) >= got["total"] or not got["tasks"]:
                return sorted(out, key=lambda t: t["id"])
            page += 1

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own session: the server and its children
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)


def start(data_dir: Path, document_root: Path) -> LabelStudio:
    venv = tool_venv("label-studio", VERSION)
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "label-studio.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))}
    env.update(LABEL_STUDIO_USERNAME=USER, LABEL_STUDIO_PASSWORD=PASSWORD, LABEL_STUDIO_USER_TOKEN=TOKEN,
               LOCAL_FILES_SERVING_ENABLED="true", LOCAL_FILES_DOCUMENT_ROOT=str(document_root),
               LABEL_STUDIO_BASE_DATA_DIR=str(data_dir), DJANGO_DB="sqlite",
               LATEST_VERSION_CHECK="false", COLLECT_ANALYTICS="false", SENTRY_DSN="", FRONTEND_SENTRY_DSN="")
    argv = [str(venv / "bin" / "label-studio"), "start", "--no-browser", "--internal-host", "127.0.0.1",
            "--port", str(_free_port()), "--data-dir", str(data_dir), "--enable-legacy-api-token"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=data_dir, start_new_session=True)
    server = LabelStudio(proc, "", log, document_root)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"label-studio start exited {proc.returncode}; log {log}:\n{_tail(log)}")
        # It moves to another port when the one given is taken: read the one it serves on.
        found = re.findall(r"Starting development server at (http://127\.0\.0\.1:\d+)/", log.read_text(errors="replace"))
        if found:
            server.url = found[-1]
            try:
                with urllib.request.urlopen(server.url + "/health", timeout=5) as r:
                    if json.loads(r.read()).get("status") == "UP":
                        return server
            except (OSError, ValueError):
                pass
        time.sleep(1)
    server.stop()
    pytest.fail(f"Label Studio did not answer /health within {START_TIMEOUT:.0f} s "
                f"(VECEXPLORE_LABEL_STUDIO_START_TIMEOUT); log {log}:\n{_tail(log)}")
