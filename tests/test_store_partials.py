"""Stale ``RUN.partial-*`` work directories: names match literally, and a live build's
directory is never removed (its builder holds a lock; a killed one's is taken)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_store import _write_minimal

from vecexplore.buildlock import GRACE_SECONDS, LOCK_NAME, BuildLock, is_abandoned
from vecexplore.store import Run, write_run

# Opens write_run(RUN) and waits inside it: a build that is running.
_HOLDER = textwrap.dedent("""
    import sys
    from vecexplore.store import write_run
    with write_run(sys.argv[1]) as w:
        print(w.tmp_dir, flush=True)
        sys.stdin.readline()
        raise SystemExit(0)
""")


def _backdate(path, seconds=GRACE_SECONDS + 3600):
    """Make a directory look untouched for longer than the grace period (so only a lock can save it)."""
    old = time.time() - seconds
    os.utime(path, (old, old))


@pytest.fixture
def holder(tmp_path):
    """A running build of ``tmp_path/run`` in another process: (process, its partial dir)."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path / "run")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    partial = proc.stdout.readline().strip()
    assert partial, "the holder process did not start its build"
    yield proc, Path(partial)
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def _dead_partial(path):
    """A partial directory with a lock file that nobody holds (its build was killed)."""
    path.mkdir()
    (path / "images.parquet").write_bytes(b"half")
    BuildLock.acquire(path).release()
    _backdate(path)
    return path


def test_run_name_is_matched_literally_not_as_a_glob(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    other = _dead_partial(runs / "exp1.partial-x")  # matches the glob exp[1].partial-*, is not ours
    mine = _dead_partial(runs / "exp[1].partial-y")
    with write_run(runs / "exp[1]") as w:
        _write_minimal(w)
    assert other.exists() and (other / "images.parquet").read_bytes() == b"half"
    assert not mine.exists()
    assert Run(runs / "exp[1]").task == "detection"


def test_a_live_builds_partial_survives_another_builds_cleanup(tmp_path, holder):
    proc, partial = holder
    assert partial.parent == tmp_path and partial.name.startswith("run.partial-")
    assert (partial / LOCK_NAME).exists()
    _backdate(partial)  # old and idle: only the lock tells that it is live
    assert not is_abandoned(partial)
    with write_run(tmp_path / "run2") as w:  # another run in the same folder
        _write_minimal(w)
    with write_run(tmp_path / "run") as w:  # the same run name: its cleanup looks at the holder's partial
        _write_minimal(w)
    assert partial.is_dir() and (partial / LOCK_NAME).exists()
    assert proc.poll() is None


def test_a_killed_builds_partial_is_removed(tmp_path, holder):
    proc, partial = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert partial.is_dir()  # kill -9 leaves it behind …
    assert is_abandoned(partial)  # … unlocked, so the next build of that run removes it
    with write_run(tmp_path / "run") as w:
        _write_minimal(w)
    assert not partial.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_the_finished_run_holds_no_lock_file(tmp_path):
    with write_run(tmp_path / "run") as w:
        assert (w.tmp_dir / LOCK_NAME).exists()
        _write_minimal(w)
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]
