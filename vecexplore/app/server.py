"""A Bokeh server for one or several runs, with the image and export routes.

One run → the app at ``/``. Several runs (a folder of runs, or several paths)
→ one app per run at ``/{key}`` and a chooser page at ``/`` listing them. Each
run's images and exports are served under ``url_base = f"/vx/{key}"`` by
:mod:`vecexplore.app.routes`.

A run's data is loaded once per process (:func:`vecexplore.app.data.load_run_data`)
and shared read-only by every browser session; each session gets its own
document (its own selection). A single run is loaded before the server starts
listening, so errors show at once; several runs are loaded by a background
thread after the server starts, first come first served.

The server is one process (``num_procs=1``): the run data lives in its memory.
"""

from __future__ import annotations

import html
import logging
import re
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vecexplore.app.hosts import DEFAULT_ADDRESS
from vecexplore.errors import ConfigError, RunStoreError

log = logging.getLogger(__name__)

#: Largest websocket message a session may send (the first document of a 100k-image run is big).
WEBSOCKET_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
SPARE_DELAY_S = 2.0  # the next spare session waits this long: not to compete with the page just sent
_ALL_INTERFACES = ("", "0.0.0.0", "::")


# ---------------------------------------------------------------- which runs


def _is_run(path: Path) -> bool:
    from vecexplore.store import MANIFEST

    return path.is_dir() and (path / MANIFEST).is_file()


def discover_runs(paths: Sequence[str | Path]) -> list[Path]:
    """The run directories ``paths`` name: each is a run, or a folder whose
    sub-directories with a manifest are runs (sorted by name; ``*.partial-*``
    leftovers of killed builds skipped). Paths are absolute but not resolved
    (a symlink's name is the run's name); a run named twice is listed once.

    Raises:
        RunStoreError: a path does not exist, or is neither a run nor a folder
            holding one.
    """
    if not paths:
        raise ConfigError("no run given; pass a run directory or a folder of runs")
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise RunStoreError(f"{path}: no such run directory")
        if _is_run(path):
            found.append(path.absolute())
            continue
        if not path.is_dir():
            raise RunStoreError(f"{path}: not a vecexplore run (a run is a directory made by `vecexplore build`)")
        subs = sorted(p for p in path.iterdir() if ".partial-" not in p.name and _is_run(p))
        if not subs:
            raise RunStoreError(
                f"{path}: not a vecexplore run and holds none (no manifest.json in it or its sub-directories)"
            )
        found.extend(p.absolute() for p in subs)
    # The names the user gave (symlinks included) make the keys; the same run twice is served once.
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(p.resolve(), p)
    return list(unique.values())


def slugify(name: str) -> str:
    """A URL-safe key for a run directory name: ``[a-z0-9_-]``, never empty."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-")
    return slug or "run"


#: Keys whose app would share a prefix with the server's own paths (``/static/…``, ``/vx/…``).
RESERVED_KEYS = frozenset({"static", "vx"})


def run_keys(paths: Sequence[Path]) -> list[str]:
    """Unique URL keys for ``paths``: the slugified directory name, ``-2``, ``-3``… on
    collision; a reserved name (:data:`RESERVED_KEYS`) gets ``-run`` appended."""
    keys: list[str] = []
    taken: set[str] = set()
    for path in paths:
        base = slugify(path.name)
        if base in RESERVED_KEYS:
            base = f"{base}-run"
        key, n = base, 1
        while key in taken:
            n += 1
            key = f"{base}-{n}"
        taken.add(key)
        keys.append(key)
    return keys


# ---------------------------------------------------------------- one served run


@dataclass
class ServedRun:
    """A run as the server serves it: path, URL key, and its data loaded on first use.

    ``get()`` is thread-safe and loads at most once (the data itself is cached
    process-wide by ``load_run_data``).
    """

    path: Path
    key: str
    _data: Any = field(default=None, repr=False)
    _files: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _spare: Any = field(default=None, repr=False)  # the Future of the next visitor's (Document, Session)
    _spare_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    spares_used: int = field(default=0, repr=False)

    @property
    def url_base(self) -> str:
        return f"/vx/{self.key}"

    def get(self):
        """The run's RunData (loading it if needed)."""
        self._load()
        return self._data

    def files(self):
        """The routes' :class:`~vecexplore.app.routes.RunFiles` of the run."""
        self._load()
        return self._files

    def _load(self) -> None:
        if self._files is not None:
            return
        with self._lock:
            if self._files is None:
                from vecexplore.app.data import load_run_data
                from vecexplore.app.routes import RunFiles

                data = load_run_data(self.path)
                self._data = data
                self._files = RunFiles(data)

    # A page's first render waits for its session's document to be built (1-2 s of Bokeh model
    # construction at any run size). So the next visitor's session is built ahead, into a bare
    # Document off the IOLoop, and moved into the server's document when the visitor arrives. Every
    # session starts from the same initial state, so a spare is exactly what a fresh build would give.

    def prepare_spare(self, delay: float = 0.0) -> None:
        """Start building the next visitor's session (after ``delay`` s) unless one is built or under way."""
        from concurrent.futures import Future

        with self._spare_lock:
            if self._spare is not None:
                return
            future: Future = Future()
            self._spare = future

        def build() -> None:
            from bokeh.document import Document

            from vecexplore.app.document import build_document

            try:
                doc = Document()
                future.set_result((doc, build_document(doc, self.get(), url_base=self.url_base)))
            except BaseException as exc:  # the visitor's own build will raise it where it is seen
                log.debug("building a spare session of %s failed", self.path, exc_info=True)
                future.set_exception(exc)

        timer = threading.Timer(delay, build)
        timer.name, timer.daemon = "vx-spare-session", True
        timer.start()

    def take_spare(self):
        """The prepared (Document, Session), waiting for one under way; None when none was prepared."""
        with self._spare_lock:
            future, self._spare = self._spare, None
        if future is None:
            return None
        try:
            return future.result()
        except BaseException:
            return None

    def summary(self) -> dict:
        """What the chooser shows, read from the manifest and metrics.json only (cheap)."""
        from vecexplore.info import headline_metrics
        from vecexplore.runcheck import open_run

        run = open_run(self.path)  # every file checked: serve refuses a damaged run before listening
        manifest = run.manifest
        model = manifest.get("model", {})
        try:
            headline = headline_metrics(run.metrics)
        except RunStoreError:
            headline = {}
        if run.task != "detection":
            name, value = "accuracy", headline.get("accuracy")
        elif headline.get("mask_mAP") is not None:
            name, value = "mask mAP", headline.get("mask_mAP")
        else:
            name, value = "mAP", headline.get("mAP")
        return {
            "key": self.key,
            "name": self.path.name,
            "path": str(self.path),
            "task": run.task,
            "images": manifest.get("counts", {}).get("images"),
            "model": model.get("model"),
            "weights": model.get("weights"),
            "random": bool(model.get("random")),
            "metric": name,
            "value": value,
            "created": manifest.get("created"),
        }


def chooser_html(summaries: Sequence[dict]) -> str:
    """The ``/`` page listing several runs, each linking to ``/{key}``."""

    def cell(value) -> str:
        return html.escape("–" if value is None else str(value))

    rows = []
    for s in summaries:
        value = s["value"]
        metric = f"{s['metric']} {value:.3f}" if isinstance(value, float) else f"{s['metric']} –"
        badge = ' <span class="badge">random weights</span>' if s["random"] else ""
        rows.append(
            f'<tr><td><a href="/{html.escape(s["key"])}">{cell(s["name"])}</a></td>'
            f"<td>{cell(s['task'])}</td><td>{cell(s['images'])}</td>"
            f"<td>{cell(s['model'])} / {cell(s['weights'])}{badge}</td>"
            f"<td>{html.escape(metric)}</td><td>{cell(s['created'])}</td></tr>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>vecexplore runs</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{padding:.4em .8em;border-bottom:1px solid #ddd;text-align:left}"
        ".badge{background:#c0392b;color:#fff;border-radius:3px;padding:0 .4em;font-size:.85em}</style>"
        "</head><body><h1>vecexplore runs</h1><table class='runs'>"
        "<tr><th>run</th><th>task</th><th>images</th><th>model / weights</th><th>metric</th><th>created</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )


# ---------------------------------------------------------------- the server


def default_websocket_origins(host: str, port: int) -> list[str]:
    """``host:port`` plus the localhost forms; for all interfaces, also this machine's names."""
    hosts = [host] if host not in _ALL_INTERFACES else []
    hosts += ["localhost", "127.0.0.1"]
    if host in _ALL_INTERFACES:
        hosts += [socket.gethostname(), socket.getfqdn()]
    return [f"{h}:{port}" for h in dict.fromkeys(h for h in hosts if h)]


def _bind(host: str, port: int):
    from tornado import netutil

    try:
        sockets = netutil.bind_sockets(port=port, address=host or None)
    except OSError as exc:
        if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise ConfigError(f"port {port} on {host or 'all interfaces'} is already in use; choose another with --port") from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sockets, sockets[0].getsockname()[1]


@dataclass
class AppServer:
    """A configured (not yet started) server. ``url`` is what to open in a browser."""

    server: Any  # bokeh.server.server.BaseServer
    runs: list[ServedRun]
    host: str
    port: int

    @property
    def url(self) -> str:
        shown = "localhost" if self.host in _ALL_INTERFACES else self.host
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{self.port}/"

    def run_url(self, run: ServedRun) -> str:
        return self.url if len(self.runs) == 1 else f"{self.url}{run.key}"


def make_server(
    paths: Sequence[str | Path],
    *,
    port: int = 5006,
    host: str = DEFAULT_ADDRESS,
    allow_websocket_origin: Sequence[str] | None = None,
) -> AppServer:
    """Build the server for ``paths`` on the current thread's IOLoop (not started).

    Args:
        paths: run directories and/or folders of runs (see :func:`discover_runs`).
        port: TCP port; 0 picks a free one (read it back from ``.port``).
        host: interface to listen on (loopback by default); ``0.0.0.0`` for all.
        allow_websocket_origin: ``host[:port]`` values the page may be loaded
            from; default :func:`default_websocket_origins`. They are also the
            Host names every route answers (see :mod:`vecexplore.app.hosts`).

    Raises:
        RunStoreError: a path is not a run. ConfigError: the port is taken.
    """
    from vecexplore.extras import require

    require("app", what="serve")
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import BaseServer
    from bokeh.server.tornado import BokehTornado
    from bokeh.server.util import create_hosts_allowlist
    from tornado.httpserver import HTTPServer
    from tornado.ioloop import IOLoop

    from vecexplore.app.hosts import allowed_hosts, guard_hosts
    from vecexplore.app.routes import route_patterns_lazy

    run_paths = discover_runs(paths)
    runs = [ServedRun(p, k) for p, k in zip(run_paths, run_keys(run_paths), strict=True)]
    summaries = [r.summary() for r in runs]  # reads every manifest: a broken run fails here, not later
    if len(runs) == 1:
        runs[0].get()
        runs[0].prepare_spare()
    sockets, bound = _bind(host, port)
    try:
        origins = list(allow_websocket_origin) if allow_websocket_origin else default_websocket_origins(host, bound)
        apps = {}
        for run in runs:
            apps["/" if len(runs) == 1 else f"/{run.key}"] = Application(FunctionHandler(_document_maker(run)))
        extra: list = []
        for run in runs:
            extra += route_patterns_lazy(run.files, url_base=run.url_base)
        if len(runs) > 1:
            extra.append((r"/", _chooser_handler(), {"page": chooser_html(summaries)}))
        tornado_app = BokehTornado(
            apps,
            extra_patterns=extra,
            extra_websocket_origins=create_hosts_allowlist(origins, bound),
            use_index=False,
            redirect_root=False,
            websocket_max_message_size_bytes=WEBSOCKET_MAX_MESSAGE_BYTES,
        )
        guard_hosts(tornado_app, allowed_hosts(origins, bound))
        http = HTTPServer(tornado_app)
        http.add_sockets(sockets)
    except BaseException:
        for s in sockets:
            s.close()
        raise
    server = BaseServer(IOLoop.current(), tornado_app, http)
    log.info("serving %d run(s) on %s:%d (websocket origins %s)", len(runs), host, bound, ", ".join(origins))
    return AppServer(server=server, runs=runs, host=host, port=bound)


def _document_maker(run: ServedRun):
    def make_document(doc) -> None:
        from vecexplore.app.document import build_document

        spare = run.take_spare()
        if spare is None:
            build_document(doc, run.get(), url_base=run.url_base)
        else:
            spare[1].move_to(doc)
            run.spares_used += 1
        run.prepare_spare(delay=SPARE_DELAY_S)

    return make_document


def _chooser_handler():
    from tornado.web import RequestHandler

    class ChooserHandler(RequestHandler):
        def initialize(self, page: str) -> None:
            self.page = page

        def get(self) -> None:
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(self.page)

    return ChooserHandler


def warm_runs(runs: Sequence[ServedRun]) -> threading.Thread:
    """Load every run in a background thread (so the first visitor of each waits less)."""

    def load_all() -> None:
        for run in runs:
            try:
                run.get()
            except Exception:  # the session that needs it will report the error
                log.exception("loading %s failed", run.path)
                continue
            run.prepare_spare()

    thread = threading.Thread(target=load_all, name="vx-warm-runs", daemon=True)
    thread.start()
    return thread


class ServerThread:
    """A server running on its own IOLoop in a daemon thread (tests, benchmarks, notebooks).

    ``ServerThread(paths, port=0)`` returns once the server listens; ``.url``,
    ``.app`` (the :class:`AppServer`); ``.stop()`` shuts it down. Errors while
    building (bad run, port taken) are raised in the caller's thread.
    """

    def __init__(self, paths: Sequence[str | Path], *, port: int = 0, host: str = DEFAULT_ADDRESS, **kwargs):
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.app: AppServer | None = None
        self._thread = threading.Thread(target=self._main, args=(paths, port, host, kwargs), daemon=True, name="vx-server")
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _main(self, paths, port, host, kwargs) -> None:
        import asyncio

        from tornado.ioloop import IOLoop

        asyncio.set_event_loop(asyncio.new_event_loop())
        try:
            self.app = make_server(paths, port=port, host=host, **kwargs)
            self.app.server.start()
            self._loop = IOLoop.current()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.start()

    @property
    def url(self) -> str:
        return self.app.url

    def stop(self) -> None:
        if self.app is None or not self._thread.is_alive():
            return

        def shutdown() -> None:
            self.app.server.stop(wait=False)
            self._loop.stop()

        self._loop.add_callback(shutdown)
        self._thread.join(timeout=10)


__all__ = [
    "AppServer",
    "ServedRun",
    "ServerThread",
    "chooser_html",
    "default_websocket_origins",
    "discover_runs",
    "make_server",
    "run_keys",
    "slugify",
    "warm_runs",
]
