"""Log output that follows ``sys.stderr``."""

from __future__ import annotations

import logging
import sys


class CurrentStderr(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is when a record is emitted.

    ``StreamHandler(sys.stderr)`` keeps the stream of the moment it was made: when
    main() runs in-process (tests, notebooks) and stderr is later swapped and
    closed, every later warning of vecexplore failed with a logging traceback.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass
