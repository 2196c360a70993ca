"""The Typer application object that every command module registers on.

Command modules import heavy libraries inside their functions only, so that
``vecexplore --help`` stays fast.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="vecexplore",
    help="See where your computer-vision model fails: evaluate, embed, map and browse.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    # An explicit callback keeps `vecexplore COMMAND` a command group even while only
    # one command is registered (Typer otherwise runs a lone command as the root).
    pass
