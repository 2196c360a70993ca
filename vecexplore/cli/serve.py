"""``vecexplore serve``: the web app for one run or a folder of runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from vecexplore.cli._app import app


def serve_runs(
    paths: Sequence[str | Path],
    *,
    port: int = 5006,
    host: str = "127.0.0.1",
    show: bool = False,
    allow_websocket_origin: Sequence[str] | None = None,
) -> None:
    """Serve ``paths`` (runs or folders of runs) until interrupted; print the URL.

    Raises:
        RunStoreError: a path is not a run. ConfigError: the port is taken.
    """
    from vecexplore.app.server import discover_runs, make_server, warm_runs

    found = discover_runs(paths)
    typer.echo(f"loading {found[0]}…" if len(found) == 1 else f"reading {len(found)} runs…", err=True)
    served = make_server(found, port=port, host=host, allow_websocket_origin=allow_websocket_origin)
    server = served.server
    server.start()
    if len(served.runs) == 1:
        typer.echo(f"vecexplore: serving {served.runs[0].path} at {served.url}")
    else:
        typer.echo(f"vecexplore: serving {len(served.runs)} runs at {served.url}")
        for run in served.runs:
            typer.echo(f"  {served.run_url(run)}  {run.path}")
        warm_runs(served.runs)
    if host in ("", "0.0.0.0", "::") and not allow_websocket_origin:
        typer.echo(
            "  (listening on all interfaces: to open the page from another machine, pass "
            "--allow-websocket-origin HOST:PORT with the name or address its browser uses)",
            err=True,
        )
    typer.echo("press Ctrl+C to stop", err=True)
    if show:
        server.io_loop.add_callback(_open_browser, served.url)
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        typer.echo("stopped", err=True)
    finally:
        server.stop(wait=False)


def _open_browser(url: str) -> None:
    import webbrowser

    webbrowser.open_new_tab(url)


@app.command("serve")
def serve_command(
    runs: Annotated[list[Path], typer.Argument(
        metavar="RUN", help="A run directory, several, or a folder of runs.", show_default=False,
    )],
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0: any free port).")] = 5006,
    host: Annotated[str, typer.Option(
        "--address", "--host",
        help="Interface to listen on: 127.0.0.1 (this machine only) unless given; 0.0.0.0 for all.",
    )] = "127.0.0.1",
    allow_websocket_origin: Annotated[list[str] | None, typer.Option(
        "--allow-websocket-origin",
        help="HOST[:PORT] the page may be opened as (repeatable); every other Host is refused. "
             "Default: the listening address and localhost.",
    )] = None,
    show: Annotated[bool, typer.Option("--show", help="Open the page in a browser.")] = False,
) -> None:
    """Serve the web app: map, confusion matrix, failure clusters, gallery and exports.

    With one run the app is at /; with several (or a folder of runs) a chooser
    at / links to each.
    """
    serve_runs(runs, port=port, host=host, show=show, allow_websocket_origin=allow_websocket_origin or None)
