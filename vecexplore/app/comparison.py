"""A comparison run's second model, for the app (pure, Bokeh-free).

A run written by ``vecexplore compare`` is run A plus model B (see
:mod:`vecexplore.compare.write`). :func:`load_comparison` rebuilds B's evaluated
dataset (A's images and GT with B's predictions) and evaluates it at B's own
build operating point; A's side is the run's evaluation at A's build operating
point (``RunData.base``). These are fixed: the toolbar's confidence and IoU move
the ordinary views (model A), never the comparison, which compares the two
models as each was built.

What the comparison views show:

* :func:`change_colouring`: the scatter coloured by each image's change;
* :func:`matrices` / :func:`diff_cell_images`: A's and B's confusion matrices and
  their difference ``B - A``; a cell of A or B selects the images with an object in
  it under that model, a cell of the difference the images whose count in that cell
  differs between the two;
* :func:`header_rows`: both models' headline metrics and the deltas.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

import numpy as np

from vecexplore.compare.changes import CHANGES

#: How the change colouring names its codes (CHANGES order) and colours them.
CHANGE_NAMES: tuple[str, ...] = ("both right", "fixed", "regressed", "both wrong")
CHANGE_COLOURS: tuple[str, ...] = ("#c7cdd4", "#2ca02c", "#d62728", "#8c564b")
#: The three matrices of the comparison tab, in display order.
MATRICES: tuple[str, ...] = ("a", "b", "diff")


@dataclass(frozen=True, eq=False)
class Comparison:
    """Model B of a comparison run and what the comparison views share. Read-only.

    Attributes:
        doc: the run's ``compare.json``.
        change: (N,) int64 change code per image, index into :data:`CHANGES`.
        err_a, err_b: (N,) float64 per-image error rates (each model at its build operating point).
        eval_a, eval_b: the evaluations of A and B at their build operating points.
        b: what the detail view draws B from: ``dataset`` (A's images and GT, B's predictions),
            ``gt_index`` / ``pred_index`` (detection), ``pred_row`` (classification), ``class_names``.
    """

    doc: dict
    change: np.ndarray
    err_a: np.ndarray
    err_b: np.ndarray
    eval_a: Any
    eval_b: Any
    b: Any


def load_comparison(data) -> Comparison:
    """The :class:`Comparison` of a loaded comparison run (``data``: its :class:`~vecexplore.app.data.RunData`)."""
    from vecexplore.app.data import ObjectIndex
    from vecexplore.compare.write import B_PREFIX
    from vecexplore.eval.evaluate import evaluate
    from vecexplore.store.layout import COMPARE, OBJECTS_B
    from vecexplore.types import Boxes, Labels

    run, ds = data.run, data.dataset
    doc = run.json(COMPARE)
    images = run.images
    n = ds.num_images
    if data.task == "detection":
        obj = run.table(OBJECTS_B)
        rows = obj[obj["kind"] == "pred"]
        pred = Boxes(image_idx=rows["image_idx"].to_numpy(), class_idx=rows["class_idx"].to_numpy(),
                     xywh=rows[["x", "y", "w", "h"]].to_numpy(np.float64), object_id=rows["object_id"].to_numpy(),
                     score=rows["score"].to_numpy(np.float64), iscrowd=rows["iscrowd"].to_numpy(bool),
                     area=rows["area"].to_numpy(np.float64))
    else:
        cls = images[B_PREFIX + "pred_class_idx"].to_numpy()
        has = cls >= 0
        pred = Labels(image_idx=np.flatnonzero(has), class_idx=cls[has],
                      score=images[B_PREFIX + "pred_score"].to_numpy(np.float64)[has])
    ds_b = replace(ds, pred=pred)
    config = (doc.get("b") or {}).get("config") or {}
    if data.task == "detection":
        eval_b = evaluate(ds_b, iou=float(config.get("iou") or 0.5), confidence=config.get("confidence"))
        b = SimpleNamespace(dataset=ds_b, gt_index=data.gt_index, pred_index=ObjectIndex.of(pred.image_idx, n),
                            pred_row=None, class_names=data.class_names)
    else:
        eval_b = evaluate(ds_b, confidence=config.get("confidence"))
        row = np.full(n, -1, np.int64)
        row[pred.image_idx] = np.arange(len(pred), dtype=np.int64)
        b = SimpleNamespace(dataset=ds_b, gt_index=None, pred_index=None, pred_row=row, class_names=data.class_names)
    codes = {name: k for k, name in enumerate(CHANGES)}
    change = np.array([codes[str(c)] for c in images["change"].to_numpy()], np.int64)
    for arr in (change,):
        arr.flags.writeable = False
    return Comparison(doc=doc, change=change, err_a=images["error_rate"].to_numpy(np.float64),
                      err_b=images[B_PREFIX + "error_rate"].to_numpy(np.float64), eval_a=data.base, eval_b=eval_b,
                      b=b)


def change_colouring(comparison: Comparison):
    """The scatter's "change" colouring: codes 0..3 in :data:`CHANGES` order."""
    from vecexplore.app.colouring import Colouring

    return Colouring("change", "Change A → B", comparison.change.astype(np.float32), True, CHANGE_NAMES,
                     -0.5, len(CHANGE_NAMES) - 0.5, "change")


def matrices(comparison: Comparison) -> dict[str, np.ndarray]:
    """``{"a", "b", "diff"}``: (L, L) int64 counts of A's and B's confusion matrices and ``B - A``
    (rows = GT, columns = prediction, last = background for detection)."""
    a = comparison.eval_a.confusion.counts.astype(np.int64)
    b = comparison.eval_b.confusion.counts.astype(np.int64)
    return {"a": a, "b": b, "diff": b - a}


def cell_images(comparison: Comparison, which: str, row: int, col: int) -> np.ndarray:
    """Sorted int64 image_idx a click on cell (row, col) of matrix ``which`` selects (module docstring)."""
    if which == "a":
        return comparison.eval_a.confusion.cell_images(row, col)
    if which == "b":
        return comparison.eval_b.confusion.cell_images(row, col)
    if which == "diff":
        return diff_cell_images(comparison, row, col)
    raise ValueError(f"unknown matrix {which!r}")


def diff_cell_images(comparison: Comparison, row: int, col: int) -> np.ndarray:
    """Sorted int64 image_idx whose number of objects in cell (row, col) differs between A and B."""
    ia, ca = comparison.eval_a.confusion.cell_image_counts(row, col)
    ib, cb = comparison.eval_b.confusion.cell_image_counts(row, col)
    n = comparison.change.size
    count_a, count_b = np.zeros(n, np.int64), np.zeros(n, np.int64)
    count_a[ia], count_b[ib] = ca, cb
    return np.flatnonzero(count_a != count_b).astype(np.int64)


def header_rows(comparison: Comparison, selection: np.ndarray | None) -> list[tuple[str, str, str, str]]:
    """(metric, A, B, B - A) rows as displayed: the headline metrics of compare.json, then the mean
    per-image error rate of the whole run and, with a selection, of the selection."""
    doc = comparison.doc
    a = (doc.get("a") or {}).get("metrics") or {}
    b = (doc.get("b") or {}).get("metrics") or {}
    rows = [(k, _fmt(a.get(k)), _fmt(b.get(k)), _signed((doc.get("deltas") or {}).get(k))) for k in a]
    ea, eb = comparison.err_a, comparison.err_b
    rows.append(("error rate (run)", _fmt(ea.mean()), _fmt(eb.mean()), _signed(eb.mean() - ea.mean())))
    if selection is not None and len(selection):
        sa, sb = ea[selection].mean(), eb[selection].mean()
        rows.append((f"error rate (selection, {len(selection):,})", _fmt(sa), _fmt(sb), _signed(sb - sa)))
    return rows


def _fmt(v) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{float(v):.3f}"


def _signed(v) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{float(v):+.3f}"


__all__ = ["CHANGE_COLOURS", "CHANGE_NAMES", "MATRICES", "Comparison", "cell_images", "change_colouring",
           "diff_cell_images", "header_rows", "load_comparison", "matrices"]
