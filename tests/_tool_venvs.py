"""Virtual environments of their own for the real tools the tests check exports against
(Label Studio, datumaro), created once and cached.

Neither tool may go into the project's venv: label-studio pins Django and half of
PyPI, datumaro pins pandas 2.x below the project's. Each gets
``$VECEXPLORE_TEST_TOOLS/<name>-venv-<version>`` (default
``~/.cache/vecexplore-tests``), made with ``python -m venv`` and filled with
``pip install <name>==<version>``; a ``.vecexplore-ready`` marker says the install
finished, so an interrupted one is thrown away and redone. A file lock keeps two
pytest workers from building the same venv at once. Any failure names the step
and shows the tail of the pip log.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

READY = ".vecexplore-ready"
#: Seconds one venv build may take (pip downloads and builds label-studio's ~150 packages).
BUILD_TIMEOUT = float(os.environ.get("VECEXPLORE_TOOL_VENV_TIMEOUT", "1800"))


def cache_root() -> Path:
    return Path(os.environ.get("VECEXPLORE_TEST_TOOLS", Path.home() / ".cache" / "vecexplore-tests"))


def tool_venv(package: str, version: str) -> Path:
    """The cached venv with ``package==version``; built when missing. Returns its folder."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / f"{package}-venv-{version}"
    log = root / f"{package}-venv-{version}.log"
    with open(root / f".{package}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second worker waits here, then finds it ready
        if (venv / READY).is_file():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        started = time.monotonic()
        with open(log, "w") as out:
            for step, argv in ((f"python -m venv {venv}", [sys.executable, "-m", "venv", str(venv)]),
                               (f"pip install {package}=={version}",
                                [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
                                 f"{package}=={version}"])):
                left = BUILD_TIMEOUT - (time.monotonic() - started)
                try:
                    res = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=max(left, 1), check=False)
                except subprocess.TimeoutExpired:
                    pytest.fail(f"building the {package} test venv: `{step}` took over {BUILD_TIMEOUT:.0f} s "
                                f"(VECEXPLORE_TOOL_VENV_TIMEOUT); log {log}:\n{_tail(log)}")
                if res.returncode != 0:
                    pytest.fail(f"building the {package} test venv: `{step}` exited {res.returncode}; "
                                f"log {log}:\n{_tail(log)}")
        (venv / READY).write_text(f"{package}=={version}\n")
        return venv


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError as exc:
        return f"(no log: {exc})"
