"""Who may talk to the server: the interface it listens on and the Host names it answers.

Two defences, shared by ``vecexplore serve`` and ``bokeh serve server --args RUN``:

* **Loopback by default.** Without an explicit address the server listens on
  ``127.0.0.1`` only (:data:`DEFAULT_ADDRESS`). ``bokeh serve`` binds every
  interface when ``--address`` is absent, so its hook moves the listening
  sockets to loopback (:func:`rebind_loopback`) before the first request.
* **Host allowlist.** Every HTTP request (the app page, the websocket, Bokeh's
  static files, thumbnails, images, exports, the chooser) whose ``Host`` header
  is not an allowed origin gets ``403`` (:func:`guard_hosts`). A DNS-rebinding
  page (a foreign name that resolves to 127.0.0.1) sends its own name as the
  Host, so it cannot read anything. The allowed origins are the websocket
  origins (``--allow-websocket-origin``; by default the listening host and
  ``localhost``) plus the loopback literals ``127.0.0.1``, ``[::1]`` and
  ``localhost`` at the server's port.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

log = logging.getLogger(__name__)

#: The interface served when the user names none.
DEFAULT_ADDRESS = "127.0.0.1"
#: Host names that always mean this machine.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
#: Status and body of a refused Host.
REFUSED_STATUS = 403


def allowed_hosts(origins: Iterable[str], port: int | None) -> tuple[str, ...]:
    """``host:port`` patterns a request's Host may match: ``origins`` (Bokeh's
    allowlist syntax, ``*`` wildcards allowed, ``:80`` assumed without a port)
    plus the loopback names at ``port``. Lower-case, de-duplicated, in order."""
    from bokeh.server.util import create_hosts_allowlist

    given = [o.strip().lower() for o in origins if o and o.strip()]
    out = create_hosts_allowlist(given, port) if given else []
    if port is not None:
        out += [f"{name}:{port}" for name in LOOPBACK_NAMES]
    return tuple(dict.fromkeys(out))


def host_allowed(host: str | None, allowed: Sequence[str]) -> bool:
    """Whether a request's ``Host`` header value matches one of ``allowed``.

    A missing or empty Host is refused (every HTTP/1.1 client sends one)."""
    from bokeh.server.util import check_allowlist

    if not host:
        return False
    host = host.strip().lower()
    if host in allowed or (":" not in host and f"{host}:80" in allowed):
        return True
    try:
        return check_allowlist(host, list(allowed))
    except ValueError:  # an IPv6 literal or junk that Bokeh's matcher cannot split
        return False


def guard_hosts(tornado_app, allowed: Sequence[str]) -> None:
    """Make ``tornado_app`` (a Tornado Application, e.g. a BokehTornado) answer 403
    to every request whose Host is not in ``allowed``, before any other route."""
    from tornado.routing import Matcher, Rule
    from tornado.web import RequestHandler

    allowed = tuple(allowed)

    class ForeignHost(Matcher):
        def match(self, request):
            return None if host_allowed(request.host, allowed) else {}

    class RefuseHost(RequestHandler):
        def prepare(self) -> None:
            log.warning("refused a request for Host %r (not an allowed origin)", self.request.host)
            self.set_status(REFUSED_STATUS)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish("403 Forbidden: this Host is not allowed; start the server with "
                        "--allow-websocket-origin HOST[:PORT] to allow it\n")

    router = tornado_app.default_router
    router.rules.insert(0, router.process_rule(Rule(ForeignHost(), RefuseHost)))


def is_loopback(address: str | None) -> bool:
    return address in ("127.0.0.1", "::1", "localhost")


def rebind_loopback(http_server, port: int) -> None:
    """Move a Tornado HTTPServer that listens on every interface to 127.0.0.1:``port``.

    ``bokeh serve`` without ``--address`` binds all interfaces before our hook
    runs and offers no setting for it; the hook calls this before the IOLoop
    serves its first request. Tornado has no public "remove socket", so the
    accept handlers and sockets it keeps are released here directly.
    """
    from tornado import netutil

    for fd, sock in list(http_server._sockets.items()):
        http_server._handlers.pop(fd)()
        del http_server._sockets[fd]
        sock.close()
    http_server.add_sockets(netutil.bind_sockets(port, address=DEFAULT_ADDRESS))
    log.info("listening on %s:%d only (pass --address to listen elsewhere)", DEFAULT_ADDRESS, port)


__all__ = [
    "DEFAULT_ADDRESS",
    "LOOPBACK_NAMES",
    "allowed_hosts",
    "guard_hosts",
    "host_allowed",
    "is_loopback",
    "rebind_loopback",
]
