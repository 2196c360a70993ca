"""The run store: one directory per build, written atomically.

* :mod:`vecexplore.store.layout` — the files of a run, named once (and the layout documented there);
* :mod:`vecexplore.store.writer` — :func:`write_run`, :class:`RunWriter`: writing a run;
* :mod:`vecexplore.store.reader` — :class:`Run`: reading one;
* :mod:`vecexplore.store.tables` — the tables built from the pipeline's arrays, and the
  evaluated dataset rebuilt from them (the inverse).

A build writes into ``RUN.partial-<random>`` beside ``RUN`` and renames it into
place only when every file is complete, so a directory named ``RUN`` with a
manifest is always a finished run and an interrupted build leaves nothing that
looks finished. Single files are also written temp-then-rename. The partial
directory is locked by its build (:mod:`vecexplore.buildlock`): a later build
removes only partials whose builder is gone. Files and directories get the
user's umask, as plain ``open``/``mkdir`` would give them (:mod:`vecexplore.atomic`).

Reading: :class:`Run` opens a finished run and turns any unreadable file into
:class:`~vecexplore.errors.RunStoreError` naming it; :func:`vecexplore.runcheck.open_run`
also checks every file up front (``info``, ``export`` and ``serve`` use it).
"""

from vecexplore.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text, json_safe
from vecexplore.store.layout import MANIFEST, PARTIAL, SCHEMA_VERSION
from vecexplore.store.reader import REBUILD_HINT, Run, broken_file, json_kind
from vecexplore.store.writer import RunWriter, estimate_run_bytes, write_run

__all__ = [
    "MANIFEST",
    "PARTIAL",
    "REBUILD_HINT",
    "SCHEMA_VERSION",
    "Run",
    "RunWriter",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "broken_file",
    "estimate_run_bytes",
    "json_kind",
    "json_safe",
    "write_run",
]
