"""The exploration app: a Bokeh document per browser session over one shared, read-only run.

* :func:`vecexplore.app.data.load_run_data` — a run loaded once per process;
* :func:`vecexplore.app.document.build_document` — one session's page;
* :mod:`vecexplore.app.state` — the pure selection / view-state model.

Nothing here imports Bokeh at import time.
"""

from __future__ import annotations

__all__ = ["build_document", "load_run_data"]


def __getattr__(name: str):
    if name == "build_document":
        from vecexplore.app.document import build_document

        return build_document
    if name == "load_run_data":
        from vecexplore.app.data import load_run_data

        return load_run_data
    raise AttributeError(f"module 'vecexplore.app' has no attribute {name!r}")
