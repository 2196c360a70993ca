"""Progress bars with a rate, on stderr, for long work.

Library functions take ``progress: bool`` (default False) and use
:func:`progress_bar`; the CLI turns it on. Nothing is drawn when disabled or
when stderr is not a terminal-like stream rich can use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class _NullBar:
    def advance(self, n: float = 1) -> None:
        pass

    def update_total(self, total: float | None) -> None:
        pass


class _RichBar:
    def __init__(self, progress, task_id):
        self._progress = progress
        self._task = task_id

    def advance(self, n: float = 1) -> None:
        self._progress.advance(self._task, n)

    def update_total(self, total: float | None) -> None:
        self._progress.update(self._task, total=total)


@contextlib.contextmanager
def progress_bar(description: str, *, total: float | None, unit: str = "it", enabled: bool = True) -> Iterator:
    """A context manager yielding a bar with ``advance(n)``; shows done/total, rate and ETA.

    Args:
        description: what is being done ("embedding").
        total: expected count, or None if unknown.
        unit: the counted unit, shown in the rate ("img" → "123.4 img/s").
        enabled: False yields a bar that draws nothing.
    """
    if not enabled:
        yield _NullBar()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class RateColumn(TextColumn):
        def render(self, task):
            speed = task.finished_speed or task.speed
            text = f"{speed:,.1f} {unit}/s" if speed else f"- {unit}/s"
            from rich.text import Text

            return Text(text, style="progress.data.speed")

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        RateColumn(""),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    with progress:
        task_id = progress.add_task(description, total=total)
        yield _RichBar(progress, task_id)
