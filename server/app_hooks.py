"""Server hooks of the directory app: register the image and export routes.

``bokeh serve`` gives a directory app no way to add Tornado handlers, and the
``server_context`` passed to ``on_server_loaded`` does not reference the Tornado
application. So we look it up: among the live ``BokehTornado`` objects (there
is one per ``bokeh serve`` process), take the one whose ``applications``
include *this* app's context — an identity check, so it cannot pick another
server's — and add our routes with Tornado's public ``Application.add_handlers``.
Tornado tries host rules in order and falls through to the next when no
handler of a rule matches, so routes added after start-up are reached.

The same hook applies :mod:`vecexplore.app.hosts`: without ``--address`` the
sockets Bokeh bound on every interface move to 127.0.0.1, and every route
refuses a Host that is not an allowed websocket origin.
"""

import gc
import logging
import sys

# Bokeh runs this module with sys.argv set to the --args (it is restored later,
# before on_server_loaded is called), so read the run path now.
_ARGV = list(sys.argv[1:])

log = logging.getLogger("vecexplore.app.server")


def _bokeh_tornado(server_context):
    from bokeh.server.tornado import BokehTornado

    mine = server_context.application_context
    for obj in gc.get_objects():
        if isinstance(obj, BokehTornado) and any(ctx is mine for ctx in obj.applications.values()):
            return obj
    return None


def _bokeh_server(tornado_app):
    """The ``bokeh.server.server.Server`` that owns ``tornado_app`` (identity check), or None."""
    from bokeh.server.server import Server

    for obj in gc.get_objects():
        if isinstance(obj, Server) and obj._tornado is tornado_app:
            return obj
    return None


def on_server_loaded(server_context):
    from vecexplore.app.data import load_run_data
    from vecexplore.app.hosts import allowed_hosts, guard_hosts, rebind_loopback
    from vecexplore.app.routes import route_patterns
    from vecexplore.errors import VecexploreError

    if len(_ARGV) != 1:
        raise SystemExit("usage: bokeh serve server --args RUN")
    try:
        data = load_run_data(_ARGV[0])
    except VecexploreError as exc:  # stop the server with the reason, not a traceback per session
        raise SystemExit(f"error: {exc}") from None
    tornado_app = _bokeh_tornado(server_context)
    server = None if tornado_app is None else _bokeh_server(tornado_app)
    if server is None:  # never serve unguarded: stop rather than listen on every interface
        raise SystemExit("error: vecexplore could not find the Bokeh server it runs in; use `vecexplore serve RUN`")
    if not server.address and getattr(server, "_unix_socket", None) is None:
        rebind_loopback(server._http, server.port)
    guard_hosts(tornado_app, allowed_hosts(tornado_app.websocket_origins, server.port))
    tornado_app.add_handlers(r".*", route_patterns(data, url_base=f"/vx/{data.key}"))
    log.info("vecexplore: serving images of %s under /vx/%s", data.path, data.key)
