"""The evaluation kernels' backend: the C extension ``vecexplore._native`` when it
is built, else the numba kernels (the reference), with one warning.

Both give the same bits (the C code is a line-for-line port; tests compare them
on random inputs). The C path also keeps numba's start-up (~1 s of imports and
cache loading) off ``vecexplore evaluate``.

``VECEXPLORE_KERNELS=numba`` forces the numba kernels (tests and benchmarks use
it to compare); ``=native`` makes a missing extension an error.

The C COCO kernels (``match_groups``, ``accumulate``) split large inputs over up to
4 threads (no more than the CPUs this process may use; ``VECEXPLORE_THREADS=N``
caps it, 1 = one thread). Each output element is computed by one thread with the
same arithmetic, so the bits do not depend on the count.

Functions take and return NumPy arrays with the signatures of
:mod:`vecexplore.eval.coco_kernels` and ``vecexplore.eval.matching._step1/_step4``.
"""

from __future__ import annotations

import functools
import logging
import os
from types import SimpleNamespace

import numpy as np

from vecexplore.cpus import usable_cpus
from vecexplore.errors import ConfigError

log = logging.getLogger("vecexplore.eval")

#: Thresholds are capped as pycocotools does: ``min(t, 1 - 1e-10)``.
_IOU_CAP = 1 - 1e-10
_EPS = float(np.spacing(1))


@functools.cache
def backend() -> str:
    """``"native"`` or ``"numba"``: which kernels this process uses."""
    choice = os.environ.get("VECEXPLORE_KERNELS", "").strip().lower()
    if choice not in ("", "native", "numba"):
        raise ConfigError(f"VECEXPLORE_KERNELS must be 'native' or 'numba', got {choice!r}")
    if choice == "numba":
        return "numba"
    try:
        from vecexplore import _native  # noqa: F401
    except ImportError as exc:
        if choice == "native":
            raise ConfigError(f"VECEXPLORE_KERNELS=native but the C extension is not built ({exc}); "
                              "run `python setup.py build_ext --inplace`") from None
        log.warning("vecexplore: C extension vecexplore._native not built (%s); using the slower numba kernels "
                    "(build it with `python setup.py build_ext --inplace`)", exc)
        return "numba"
    return "native"


#: Below this many detections a kernel runs on one thread (starting threads costs more).
_THREADED_FROM = 20_000
_MAX_THREADS = 4


def threads_for(work: int) -> int:
    """Worker threads for a C kernel over ``work`` detections (see the module docstring)."""
    if work < _THREADED_FROM:
        return 1
    cap = os.environ.get("VECEXPLORE_THREADS", "").strip()
    if cap:
        if not cap.isdigit() or int(cap) < 1:
            raise ConfigError(f"VECEXPLORE_THREADS must be a whole number >= 1, got {cap!r}")
        limit = int(cap)
    else:
        limit = _MAX_THREADS
    return max(1, min(limit, usable_cpus(), _MAX_THREADS))


def _i64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


def _f64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


def _b(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.bool_)


def _native_coco() -> SimpleNamespace:
    from vecexplore import _native

    def counting_order(order, key, n_buckets):
        order = _i64(order)
        out = np.empty_like(order)
        _native.counting_order(order, _i64(key), int(n_buckets), out)
        return out

    def descending_score_order(order, score):
        order = _i64(order)
        out = np.empty_like(order)
        _native.descending_score_order(order, _f64(score), out)
        return out

    def match_groups(gt_key, dt_key, gt_xywh, gt_crowd, gt_ignore, gt_id_nonzero, dt_xywh, dt_outside,
                     iou_thresholds):
        thresholds = np.minimum(_f64(iou_thresholds), _IOU_CAP)
        state = np.zeros((len(dt_key), np.shape(gt_ignore)[0], len(thresholds)), np.int8)
        _native.match_groups(_i64(gt_key), _i64(dt_key), _f64(gt_xywh).reshape(-1, 4), _b(gt_crowd), _b(gt_ignore),
                             _b(gt_id_nonzero), _f64(dt_xywh).reshape(-1, 4), _b(dt_outside), thresholds, state,
                             threads_for(len(dt_key)))
        return state

    def accumulate(class_start, acc, state, rank_in_image, score, num_gt, recall_thresholds, max_dets,
                   precision, recall, scores):
        for name, out in (("precision", precision), ("recall", recall), ("scores", scores)):
            if out.dtype != np.float64 or not out.flags.c_contiguous:
                raise ValueError(f"accumulate: {name} must be a C-contiguous float64 array")
        state = np.ascontiguousarray(state, dtype=np.int8)
        _native.accumulate(_i64(class_start), _i64(acc), state, _i64(rank_in_image), _f64(score), _i64(num_gt),
                           _f64(recall_thresholds), _i64(max_dets), state.shape[1], state.shape[2], _EPS,
                           precision, recall, scores, threads_for(len(acc)))

    return SimpleNamespace(counting_order=counting_order, descending_score_order=descending_score_order,
                           match_groups=match_groups, accumulate=accumulate)


@functools.cache
def coco_kernels():
    """The namespace with ``counting_order``, ``descending_score_order``, ``match_groups``, ``accumulate``."""
    if backend() == "native":
        return _native_coco()
    from vecexplore.eval import coco_kernels as kern

    return kern


@functools.cache
def matching_kernels():
    """``(step1, step4)`` of :mod:`vecexplore.eval.matching`."""
    if backend() == "numba":
        from vecexplore.eval.matching import _numba_kernels

        return _numba_kernels()
    from vecexplore import _native

    def step1(pair_pos, pair_gt, num_gt):
        pair_pos = _i64(pair_pos)
        status = np.empty(len(pair_pos), np.int8)
        _native.step1(pair_pos, _i64(pair_gt), int(num_gt), status)
        return status

    def step4(pair_pred, pair_gt, pair_score, pair_gt_tp_score, confidence, num_gt):
        pair_pred = _i64(pair_pred)
        assigned = np.empty(len(pair_pred), np.bool_)
        _native.step4(pair_pred, _i64(pair_gt), _f64(pair_score), _f64(pair_gt_tp_score), float(confidence),
                      int(num_gt), assigned)
        return assigned

    return step1, step4


@functools.cache
def pair_kernel():
    """The C loop of ``matching._candidate_pairs`` for box IoU, or None with the numba
    kernels (the Python loop, the reference, then runs). Signature: see ``pairs`` below."""
    if backend() == "numba":
        return None
    from vecexplore import _native

    def pairs(order, p_image, p_class, p_xywh, gt_order, g_start, g_count, g_class, g_xywh, g_crowd,
              t, lo, error_iou):
        n = len(order)
        flags = np.zeros((3, n), np.bool_)
        out = _native.candidate_pairs(_i64(order), _i64(p_image), _i64(p_class), _f64(p_xywh).reshape(-1, 4),
                                      _i64(gt_order), _i64(g_start), _i64(g_count), _i64(g_class),
                                      _f64(g_xywh).reshape(-1, 4), _b(g_crowd), float(t), float(lo),
                                      float(error_iou), flags[0], flags[1], flags[2])
        same = tuple(np.frombuffer(buf, dt) for buf, dt in zip(out[:3], (np.int64, np.int64, np.float64), strict=True))
        other = tuple(np.frombuffer(buf, dt) for buf, dt in zip(out[3:], (np.int64, np.int64, np.float64), strict=True))
        return same, flags[0], other, flags[1], flags[2]

    return pairs


def _radix_ok(*floats: np.ndarray) -> bool:
    """The C radix kernels apply: native backend and every float key finite and >= 0."""
    return backend() == "native" and all(len(f) == 0 or (np.isfinite(f).all() and f.min() >= 0) for f in floats)


def stable_order(*keys: tuple[np.ndarray, int | None]) -> np.ndarray:
    """``np.lexsort`` of ``keys`` (last = primary) by stable radix passes where it can.

    Each key is ``(values, n_buckets)``: int64 values in ``[0, n_buckets)``, or ``(values, None)``:
    float64 values sorted *descending* (``-values`` in lexsort's terms; -0.0 equals 0.0 in both).
    With the C kernels and float keys >= 0, LSD passes of stable sorts (O(n) each; lexsort's merge
    sort took seconds on 10M predictions) give the same order; otherwise ``np.lexsort`` runs.
    """
    n = len(keys[0][0])
    if not _radix_ok(*(v for v, b in keys if b is None)):
        return np.lexsort(tuple(v if b is not None else -v for v, b in keys))
    kern = coco_kernels()
    order = np.arange(n, dtype=np.int64)
    for values, buckets in keys:
        if buckets is None:
            order = kern.descending_score_order(order, np.ascontiguousarray(values, np.float64))
        else:
            order = kern.counting_order(order, np.ascontiguousarray(values, np.int64), max(int(buckets), 1))
    return order
