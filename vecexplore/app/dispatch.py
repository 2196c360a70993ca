"""Run a session's updates off the Bokeh document lock, one at a time, coalescing same-kind events.

A job is a callable that computes (in a worker thread, touching no Bokeh model)
and returns an *apply* closure, or None. The apply closure runs under the
document lock via ``doc.add_next_tick_callback`` — Bokeh's pattern for
updating a document from threads. Jobs of one session run in submission order;
a job submitted with the key of a job that is still waiting replaces it, so a
burst of slider events computes only the latest value. With ``sync=True`` (a
bare Document: tests, benchmarks) both halves run at once in the caller.

A job submitted with ``low=True`` (slow, optional work such as property
importance) runs only when no ordinary job is waiting, so it never delays the
next slider value by more than the one low job already running.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="vecexplore-app")
Job = Callable[[], Callable[[], None] | None]


class Dispatcher:
    """Runs a session's jobs one at a time off the document lock; same-key jobs coalesce."""

    def __init__(self, doc, *, sync: bool):
        self.doc, self.sync = doc, sync
        self._pending: dict[object, Job] = {}
        self._low: dict[object, Job] = {}
        self._running = False
        self._lock = threading.Lock()

    def submit(self, key, job: Job, *, low: bool = False) -> None:
        if self.sync:
            apply = job()
            if apply is not None:
                apply()
            return
        with self._lock:
            (self._low if low else self._pending)[key] = job
            if self._running:
                return
            self._running = True
        _POOL.submit(self._drain)

    def _drain(self) -> None:
        while True:
            with self._lock:
                queue = self._pending or self._low
                if not queue:
                    self._running = False
                    return
                job = queue.pop(next(iter(queue)))
            try:
                apply = job()
            except Exception:
                log.exception("app update failed")
                continue
            if apply is not None:
                try:
                    self.doc.add_next_tick_callback(apply)
                except Exception:  # the session closed while the job ran
                    log.debug("session gone; update dropped", exc_info=True)
