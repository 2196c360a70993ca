"""Command-line entry point: ``vecexplore``.

Every :class:`~vecexplore.errors.VecexploreError` becomes ``error: <message>``
on stderr and exit code 2, never a traceback; so does a full disk that escaped
every writer's own :class:`~vecexplore.errors.DiskFullError`.

Interruptions: Ctrl-C (SIGINT) and SIGTERM (``kill``, ``docker stop``, a batch
scheduler's timeout) both raise ``KeyboardInterrupt`` in the main thread, so a
build stops the same way for both: the embeddings computed so far are flushed to
the cache (a rerun resumes from them) and no half-written run is left. The exit
code is 130 (128 + SIGINT) for Ctrl-C and 143 (128 + SIGTERM) for SIGTERM, what a
shell reports for a process the signal killed, so supervisors see which one it was.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading

from vecexplore.errors import VecexploreError

# Modules that register commands on ``_app.app``; listed in the order of ``--help``.
_COMMAND_MODULES: tuple[str, ...] = ("demo", "data", "check", "evaluate", "run", "mine", "serve")

EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def _register() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(f"vecexplore.cli.{name}")


class _Terminated:
    """A SIGTERM handler that raises KeyboardInterrupt (as Ctrl-C does) and remembers it."""

    def __init__(self):
        self.received = False

    def __call__(self, signum, frame):
        self.received = True
        raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; ``argv`` defaults to ``sys.argv[1:]``.

    A well-formed ``evaluate`` command line skips Typer (and the pydantic it
    imports): see :mod:`vecexplore.cli._fast`. Everything else goes through Typer.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    fast = None
    if args[:1] == ["evaluate"]:
        from vecexplore.cli._fast import parse_evaluate

        fast = parse_evaluate(args[1:])
    if fast is None:
        from vecexplore.cli._app import app

        _register()
    from vecexplore.cli._stderr import CurrentStderr

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", handlers=[CurrentStderr()])
    terminated = _Terminated()
    # Signal handlers can only be set from the main thread (main() may run elsewhere in tests).
    previous = signal.signal(signal.SIGTERM, terminated) if threading.current_thread() is threading.main_thread() else None
    code = 0
    try:
        if fast is not None:
            from vecexplore.cli._evaluate import run_evaluate

            run_evaluate(**fast)
        else:
            app(args=argv, prog_name="vecexplore")
    except VecexploreError as exc:
        sys.stderr.write(f"error: {exc}\n")
        code = 2
    except OSError as exc:  # a full disk where no writer sized it: still no traceback
        from vecexplore.atomic import is_disk_full

        if not is_disk_full(exc):
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        sys.stderr.write(f"error: {where}no space left on device ({exc.strerror or exc})\n")
        code = 2
    except KeyboardInterrupt:  # Typer turns it into exit 130 itself; this is for callers without it
        code = EXIT_SIGINT
    except SystemExit as exc:
        code = exc.code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if terminated.received:
        sys.stderr.write("terminated (SIGTERM)\n")
        code = EXIT_SIGTERM
    elif code == EXIT_SIGINT:
        sys.stderr.write("interrupted\n")
    sys.exit(code)
