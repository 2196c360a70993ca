"""Values that arrive from the browser, checked before they reach a session's state.

A page can send anything (a crafted websocket message sets
``selected.indices = [-1, -2]``, a class filter of ``"999"``, a slider value of
``7``). Bokeh checks only the property's type; these functions check the value
against the run and the widget it came from. Each returns the value in the
form the state uses, or ``None`` when it is not one the page could legitimately
send; the caller then ignores the event (and logs it), so nothing a client
sends can select, filter or export images outside the run.

Pure: no Bokeh import, tested without a browser.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np


def _integers(values) -> np.ndarray | None:
    """``values`` as int64 if every one is an integer (bools and floats with a
    fraction refused), else None."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence | np.ndarray):
        return None
    out = np.empty(len(values), np.int64)
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            return None
        if not -(2**63) <= int(v) < 2**63:
            return None
        out[i] = int(v)
    return out


def rows(indices, n: int) -> np.ndarray | None:
    """Row indices into a source of ``n`` rows (sorted, unique), or None if any is
    outside ``[0, n)`` or not an integer. Negative indices are refused, not wrapped."""
    arr = _integers(indices)
    if arr is None or (arr.size and (arr.min() < 0 or arr.max() >= n)):
        return None
    return np.unique(arr)


def first_row(indices, n: int) -> int | None:
    """The first index of a tap's selection (one row of a source of ``n``), or None
    when the selection is empty or invalid."""
    arr = rows(indices, n)
    if arr is None or arr.size == 0:
        return None
    return int(_integers(indices)[0])


def choice(value, allowed: Collection):
    """``value`` if it is one of ``allowed`` (a Select's options, a tab's index), else None."""
    try:
        return value if value in allowed else None
    except TypeError:  # unhashable junk
        return None


def class_values(values, num_classes: int) -> tuple[int, ...] | None:
    """A class filter's values (``str(class_idx)``) as sorted class indices, or None
    when one is not the decimal form of a class of the run."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        return None
    out = set()
    for v in values:
        if not isinstance(v, str) or not v.isascii() or not v.isdigit() or (len(v) > 1 and v[0] == "0"):
            return None
        c = int(v)
        if c >= num_classes:
            return None
        out.add(c)
    return tuple(sorted(out))


def split_values(values, splits: Collection[str]) -> tuple[str, ...] | None:
    """A split filter's values, or None when one is not a split of the run."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        return None
    if any(not isinstance(v, str) or v not in splits for v in values):
        return None
    return tuple(sorted(set(values)))


def unit_float(value) -> float | None:
    """A confidence in ``[0, 1]`` (finite), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    v = float(value)
    return v if math.isfinite(v) and 0.0 <= v <= 1.0 else None


def iou_value(value, choices: Sequence[float]) -> float | None:
    """An IoU Select value (``"0.50"``) as one of the run's ``choices``, or None."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    match = [c for c in choices if abs(c - v) < 1e-9]
    return float(match[0]) if match else None


def region(geometry) -> tuple[str, np.ndarray] | None:
    """A select tool's geometry (Bokeh's ``SelectionGeometry.geometry``, data coordinates) as
    ``("poly", (k, 2) float64)`` for a lasso (k ≥ 3) or ``("rect", [x0, x1, y0, y1])`` for a box;
    None when it is neither or a coordinate is not a finite number."""
    if not isinstance(geometry, dict):
        return None

    def numbers(values) -> np.ndarray | None:
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence | np.ndarray):
            return None
        if any(isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) for v in values):
            return None
        arr = np.asarray(values, np.float64)
        return arr if arr.ndim == 1 and np.isfinite(arr).all() else None

    kind = geometry.get("type")
    if kind == "poly":
        x, y = numbers(geometry.get("x")), numbers(geometry.get("y"))
        if x is None or y is None or len(x) != len(y) or len(x) < 3:
            return None
        return "poly", np.column_stack([x, y])
    if kind == "rect":
        box = numbers([geometry.get(k) for k in ("x0", "x1", "y0", "y1")])
        return None if box is None else ("rect", box)
    return None


__all__ = ["choice", "class_values", "first_row", "iou_value", "region", "rows", "split_values", "unit_float"]
