"""``vecexplore info`` run in-process for tests: its stdout (exit 0 asserted)."""

from __future__ import annotations


def info_output(run, capsys, *extra) -> str:
    from vecexplore.cli import main

    capsys.readouterr()
    try:
        main(["info", str(run), *extra])
    except SystemExit as exit_:
        assert exit_.code in (0, None)
    return capsys.readouterr().out
