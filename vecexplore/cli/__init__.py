"""Command-line entry point: ``vecexplore``.

Every :class:`~vecexplore.errors.VecexploreError` becomes ``error: <message>``
on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys

from vecexplore.errors import VecexploreError

# Modules that register commands on ``_app.app``; listed in the order of ``--help``.
_COMMAND_MODULES: tuple[str, ...] = ("demo", "data", "check", "evaluate", "run", "serve")


def _register() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(f"vecexplore.cli.{name}")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; ``argv`` defaults to ``sys.argv[1:]``."""
    from vecexplore.cli._app import app

    _register()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        app(args=argv, prog_name="vecexplore")
    except VecexploreError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
