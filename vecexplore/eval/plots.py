"""PNG plots of an evaluation (matplotlib, Agg, no pyplot state).

Data functions (``*_data``) return plain arrays, so the app can draw the same
views with Bokeh later; ``draw_*`` functions render one figure to a PNG
(written atomically: temp file + ``os.replace``). :func:`write_plots` writes
the set for a detection or classification evaluation:

* detection: ``confusion_matrix.png`` (counts and row-normalised),
  ``pr_curves.png`` (per-class precision–recall at IoU 0.5, from the COCO
  accumulation), ``confidence_curves.png`` (P / R / F1 vs confidence with the
  operating point and the F1 optimum marked);
* classification: ``confusion_matrix.png``, ``per_class.png`` (P / R / F1
  bars), ``coverage_curves.png`` (accuracy on accepted predictions and
  coverage vs confidence).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from vecexplore.eval.confusion import ConfusionMatrix
    from vecexplore.eval.evaluate import Evaluation
    from vecexplore.eval.sweep import Curve

#: Above this many labels the heatmap cells carry no numbers.
_ANNOTATE_MAX = 20
_LEGEND_MAX = 12


# ---------------------------------------------------------------- data


def confusion_data(cm: ConfusionMatrix) -> dict:
    """``labels`` (L,), ``counts`` (L, L) int64, ``row_normalized`` (L, L) float64."""
    return {"labels": list(cm.labels), "counts": cm.counts, "row_normalized": cm.normalized("gt")}


def pr_curves_data(coco, names: list[str], *, iou: float = 0.5) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``[(name, recall (R,), precision (R,)), ...]`` for classes with GT, then ``("mean", ...)``.

    ``coco`` is a :class:`~vecexplore.eval.coco.CocoMetrics`; precision is
    COCO's interpolated precision at each recall threshold.
    """
    curves = []
    for k, name in enumerate(names):
        rec, prec = coco.pr_curve(k, iou=iou)
        if not np.isnan(prec).all():
            curves.append((name, rec, prec))
    rec, prec = coco.pr_curve(None, iou=iou)
    if not np.isnan(prec).all():
        curves.append(("mean", rec, prec))
    return curves


def confidence_curves_data(curve: Curve) -> dict[str, np.ndarray]:
    """``confidence, precision, recall, f1, coverage`` (t,) arrays, descending confidence."""
    return {"confidence": curve.confidence, "precision": curve.precision, "recall": curve.recall,
            "f1": curve.f1, "coverage": curve.coverage}


def class_bars_data(metrics, names: list[str]) -> dict:
    """``names, precision, recall, f1, support`` per class (classification)."""
    return {"names": list(names), "precision": metrics.precision, "recall": metrics.recall,
            "f1": metrics.f1, "support": metrics.support}


# ---------------------------------------------------------------- drawing


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, path: Path) -> Path:
    from vecexplore.atomic import atomic_write

    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    return path


def draw_confusion(data: dict, path: Path, *, title: str = "Confusion matrix") -> Path:
    """Two heatmaps side by side: counts and row-normalised (rows = ground truth)."""
    labels = data["labels"]
    n = len(labels)
    side = min(4 + 0.35 * n, 30)
    fig = _figure(2 * side + 1, side)
    axes = fig.subplots(1, 2)
    for ax, values, sub, fmt in ((axes[0], data["counts"], "counts", "{:d}"),
                                 (axes[1], data["row_normalized"], "normalised by ground-truth row", "{:.2f}")):
        im = ax.imshow(values, cmap="Blues", interpolation="nearest", aspect="equal")
        fig.colorbar(im, ax=ax, shrink=0.8)
        ax.set_title(f"{title}: {sub}")
        ax.set_xlabel("predicted")
        ax.set_ylabel("ground truth")
        ticks = np.arange(n)
        ax.set_xticks(ticks, labels, rotation=90, fontsize=8 if n <= 40 else 5)
        ax.set_yticks(ticks, labels, fontsize=8 if n <= 40 else 5)
        if n <= _ANNOTATE_MAX:
            top = values.max() if values.size else 0
            for i in range(n):
                for j in range(n):
                    v = values[i, j]
                    if v:
                        ax.text(j, i, fmt.format(int(v) if fmt == "{:d}" else float(v)), ha="center",
                                va="center", fontsize=7, color="white" if v > top / 2 else "black")
    return _save(fig, path)


def draw_pr_curves(curves: list[tuple[str, np.ndarray, np.ndarray]], path: Path, *, iou: float = 0.5,
                   kind: str = "COCO") -> Path:
    """Per-class precision–recall curves; the mean over classes in bold (``kind``: "COCO" or "COCO masks")."""
    fig = _figure(8, 6)
    ax = fig.subplots()
    per_class = [c for c in curves if c[0] != "mean"]
    for name, rec, prec in per_class:
        ax.plot(rec, prec, lw=1.2 if len(per_class) <= _LEGEND_MAX else 0.6,
                alpha=1.0 if len(per_class) <= _LEGEND_MAX else 0.4, label=name)
    for name, rec, prec in curves:
        if name == "mean":
            ax.plot(rec, prec, color="black", lw=2.5, label="mean over classes")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
           title=f"Precision–recall per class ({kind}, IoU {iou:g}, area all, 100 detections)")
    ax.grid(alpha=0.3)
    if curves:
        handles = ax.get_lines()
        if len(per_class) > _LEGEND_MAX:
            handles = [h for h in handles if h.get_label() == "mean over classes"]
        ax.legend(handles=handles, fontsize=7, loc="lower left")
    else:
        ax.text(0.5, 0.5, "no class has ground truth", ha="center", transform=ax.transAxes)
    return _save(fig, path)


def draw_confidence_curves(data: dict, path: Path, *, operating: float | None, optimum: float | None,
                           title: str = "Precision, recall and F1 vs confidence",
                           series: tuple[str, ...] = ("precision", "recall", "f1")) -> Path:
    """Curves vs confidence threshold, with the operating point and the F1 optimum marked."""
    fig = _figure(8, 5)
    ax = fig.subplots()
    for name in series:
        ax.step(data["confidence"], data[name], where="post", label=name)
    if optimum is not None and np.isfinite(optimum):
        ax.axvline(optimum, color="tab:green", ls="--", lw=1, label=f"F1 optimum {optimum:.3g}")
    if operating is not None:
        ax.axvline(operating, color="black", ls=":", lw=1.5, label=f"operating point {operating:.3g}")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="confidence threshold", ylabel="value", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def draw_class_bars(data: dict, path: Path) -> Path:
    """Grouped precision / recall / F1 bars per class (classification)."""
    n = len(data["names"])
    fig = _figure(min(4 + 0.4 * n, 40), 5)
    ax = fig.subplots()
    x = np.arange(n)
    for i, name in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (i - 1) * 0.27, data[name], width=0.27, label=name)
    ax.set_xticks(x, data["names"], rotation=90, fontsize=8 if n <= 40 else 5)
    ax.set(ylim=(0, 1.05), ylabel="value", title="Per-class precision, recall and F1")
    ax.legend(fontsize=8)
    return _save(fig, path)


#: About what the set of PNGs takes (each is 50-300 kB), for the full-disk message of the folder.
_PLOTS_BYTES = 1_000_000


def write_plots(evaluation: Evaluation, out_dir: str | Path) -> list[Path]:
    """Write the task's PNGs into ``out_dir`` (created); returns their paths."""
    from vecexplore.atomic import disk_full_error

    out = Path(out_dir)
    with disk_full_error(out, _PLOTS_BYTES):
        out.mkdir(parents=True, exist_ok=True)
    ev = evaluation
    best_c, _ = ev.optimal
    paths = [draw_confusion(confusion_data(ev.confusion), out / "confusion_matrix.png")]
    curves = confidence_curves_data(ev.sweep.overall)
    if ev.task == "detection":
        paths.append(draw_pr_curves(pr_curves_data(ev.coco, ev.class_names, iou=0.5), out / "pr_curves.png"))
        if getattr(ev, "coco_segm", None) is not None:  # mask PR curves next to the box ones
            paths.append(draw_pr_curves(pr_curves_data(ev.coco_segm, ev.class_names, iou=0.5),
                                        out / "pr_curves_segm.png", kind="COCO masks"))
        paths.append(draw_confidence_curves(curves, out / "confidence_curves.png", operating=ev.confidence,
                                            optimum=best_c))
    else:
        paths.append(draw_class_bars(class_bars_data(ev.metrics, ev.class_names), out / "per_class.png"))
        curves = {**curves, "accuracy on accepted": curves["precision"]}
        paths.append(draw_confidence_curves(curves, out / "coverage_curves.png", operating=ev.confidence,
                                            optimum=best_c, title="Accuracy and coverage vs confidence",
                                            series=("accuracy on accepted", "coverage")))
    return paths
