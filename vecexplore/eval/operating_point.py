"""The operating point: the IoU a match needs and the confidence a prediction needs.

Its ranges are defined here once, and every entry point checks them through
this module: the CLI (``evaluate``, ``build``), :func:`vecexplore.evaluate`,
the matcher, and the run check of a stored manifest.

* IoU threshold: a number in (0, 1]; a pair matches when IoU ≥ it.
* Confidence threshold: a number in [0, 1]; a prediction counts when its score
  is ≥ it. ``None`` means the F1-optimal threshold (detection) or 0 (classification).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vecexplore.errors import ConfigError


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def valid_iou(value: Any) -> bool:
    """Whether ``value`` is an IoU threshold: a finite number in (0, 1]."""
    return _finite_number(value) and 0.0 < value <= 1.0


def valid_confidence(value: Any) -> bool:
    """Whether ``value`` is a confidence threshold: a finite number in [0, 1]."""
    return _finite_number(value) and 0.0 <= value <= 1.0


def _as_number(value: Any) -> Any:
    if isinstance(value, (str, bytes, bool)) or value is None:
        return value
    try:
        return float(value)  # numpy scalars, Decimal, ...
    except (TypeError, ValueError):
        return value


def check_iou(value: Any) -> float:
    """``value`` as a float, or :class:`ConfigError` saying the range."""
    number = _as_number(value)
    if not valid_iou(number):
        raise ConfigError(f"IoU threshold (--iou) must be a number in (0, 1], got {value!r}")
    return float(number)


def check_confidence(value: Any) -> float:
    """``value`` as a float, or :class:`ConfigError` saying the range."""
    number = _as_number(value)
    if not valid_confidence(number):
        raise ConfigError(f"confidence threshold (--conf) must be a number in [0, 1], got {value!r}")
    return float(number)


@dataclass(frozen=True)
class OperatingPoint:
    """An IoU threshold and a confidence threshold (None = F1-optimal), checked on creation."""

    iou: float = 0.5
    confidence: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "iou", check_iou(self.iou))
        if self.confidence is not None:
            object.__setattr__(self, "confidence", check_confidence(self.confidence))
