"""The CLI stays light: no heavy imports for --help, and errors exit 2 without tracebacks."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "open_clip", "umap", "hdbscan", "bokeh", "matplotlib", "numba", "sklearn")

_PROBE = """
import sys
{body}
heavy = sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})
print('HEAVY=' + ','.join(heavy))
"""


def _heavy_after(body: str) -> list[str]:
    code = _PROBE.format(body=body, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("HEAVY=")][-1]
    return [m for m in line.removeprefix("HEAVY=").split(",") if m]


def test_import_vecexplore_is_light():
    assert _heavy_after("import vecexplore, vecexplore.types, vecexplore.store") == []


def test_help_is_light_and_lists_commands():
    body = (
        "from vecexplore.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
    )
    assert _heavy_after(body) == []
    for command in [[], ["--help"]]:
        res = subprocess.run([sys.executable, "-m", "vecexplore", *command], capture_output=True, text=True)
        assert "Usage" in res.stdout + res.stderr


def test_unknown_command_exits_2():
    res = subprocess.run([sys.executable, "-m", "vecexplore", "no-such-command"], capture_output=True, text=True)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr


def test_logs_follow_the_current_stderr():
    """A warning after stderr was swapped and the old stream closed lands on the new one.

    In-process runs (pytest's capsys, notebooks) replace sys.stderr between calls; a
    handler bound to the stream of its creation printed a logging traceback instead.
    """
    import io
    import logging

    from vecexplore.cli.run import show_build_logs

    logger = logging.getLogger("vecexplore")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    real = sys.stderr
    try:
        first = io.StringIO()
        sys.stderr = first
        show_build_logs(False)
        first.close()
        second = io.StringIO()
        sys.stderr = second
        logging.getLogger("vecexplore.runcheck").warning("%s", "thumbnails show as placeholders")
        assert second.getvalue() == "thumbnails show as placeholders\n"
    finally:
        sys.stderr = real
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
