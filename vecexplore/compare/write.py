"""``vecexplore compare RUN_A RUN_B --out RUN_C``: write a comparison run.

A comparison run is run A (every file of it: the map, the clusters, the
thumbnails, A's outcomes) plus what B adds, so ``info``, ``export`` and
``serve`` read it as any run, and the map, clusters and slices are **A's**::

    RUN_C/
      (A's files)           images.parquet gains B's per-image outcome columns, each
                            named ``b_<column>`` (b_error_rate, b_tp, b_fp, b_fn, …;
                            classification b_prediction, b_pred_class_idx, b_pred_score …)
                            and ``change`` (fixed / regressed / both_wrong / both_right)
      objects_b.parquet     detection: B's objects table, image_idx in A's image order
      metrics_b.json        B's metrics.json
      compare.json          {"method", "level", "n_boot", "seed", "map": "a",
                             "a": {run, model, metrics, operating_point, config: {iou, confidence}},
                             "b": {...}, "deltas": {metric: B - A},
                             "overall": {delta, ci_low, ci_high}, "changes": {change: count},
                             "regressions": [...], "improvements": [...]}
      manifest.json         A's, with "comparison": {"a", "b", "map": "a", "created"}

Written as ``build`` writes runs (:func:`vecexplore.store.write_run`): into a
partial directory renamed into place when complete.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from vecexplore.compare.changes import CHANGES, image_change, ranked, slice_changes
from vecexplore.compare.interval import LEVEL, N_BOOT, paired_bootstrap_ci
from vecexplore.compare.match import align_images
from vecexplore.errors import ConfigError, RunStoreError
from vecexplore.eval.outcomes import IMAGE_INT_COLUMNS, IMAGE_RATE_COLUMNS
from vecexplore.store import MANIFEST, write_run
from vecexplore.store.layout import COMPARE, IMAGES, METRICS_B, OBJECTS_B, table_file

log = logging.getLogger(__name__)

#: Prefix of B's columns in a comparison run's images table.
B_PREFIX = "b_"
#: Columns of B's images table carried into the comparison run (those present).
B_COLUMNS = {
    "detection": (*IMAGE_INT_COLUMNS, *IMAGE_RATE_COLUMNS),
    "classification": ("label", "prediction", "score", "margin", "correct", "error_rate",
                       "pred_class_idx", "pred_score"),
}
#: A's files that a comparison run does not copy (rewritten, or B's counterpart written).
_NOT_COPIED = {MANIFEST, table_file(IMAGES)}


@dataclass(frozen=True)
class CompareResult:
    out: Path
    n_images: int
    regressions: list[dict]
    improvements: list[dict]
    overall: dict


def compare_runs(run_a: str | Path, run_b: str | Path, out: str | Path, *, force: bool = False,
                 level: float = LEVEL, n_boot: int = N_BOOT, seed: int = 0) -> CompareResult:
    """Check that the runs share images and GT, rank A's slices by B's change, write ``out``.

    Raises:
        CompareError: the runs differ in task, classes, images or GT (nothing is written).
        RunStoreError: a run is damaged, is itself a comparison, or ``out`` exists without ``force``.
        ConfigError: ``level`` or ``n_boot`` out of range.
    """
    from vecexplore.runcheck import open_run

    if not 0.0 < level < 1.0:
        raise ConfigError(f"--level must be in (0, 1), got {level}")
    if n_boot < 100:
        raise ConfigError(f"--n-boot must be at least 100, got {n_boot}")
    out = Path(out)
    if out.exists() and not force:
        raise RunStoreError(f"{out}: already exists; pass --force to replace it")
    a, b = open_run(run_a), open_run(run_b)
    for run in (a, b):
        if "comparison" in run.manifest:
            raise RunStoreError(f"{run.path}: is a comparison run; compare two runs made by build")
    for run in (a, b):
        if out.resolve() == run.path.resolve():
            raise ConfigError(f"--out {out} is one of the compared runs; choose another directory")
    order = align_images(a, b)
    images_a = a.images
    images_b = b.images.iloc[order].reset_index(drop=True)
    err_a = images_a["error_rate"].to_numpy(np.float64)
    err_b = images_b["error_rate"].to_numpy(np.float64)
    table = images_a.copy()
    for col in B_COLUMNS[a.task]:
        if col in images_b:
            table[B_PREFIX + col] = images_b[col].to_numpy()
    table["change"] = image_change(err_a, err_b)

    changes = slice_changes(a.clusters, images_a["cluster"].to_numpy(), err_a, err_b,
                            level=level, n_boot=n_boot, seed=seed)
    regressions, improvements = ranked(changes)
    delta, low, high = paired_bootstrap_ci(err_a, err_b, level=level, n_boot=n_boot, seed=seed)
    overall = {"size": len(err_a), "error_a": float(err_a.mean()), "error_b": float(err_b.mean()),
               "delta": delta, "ci_low": low, "ci_high": high}
    from vecexplore.info import headline_metrics

    head_a, head_b = headline_metrics(a.metrics), headline_metrics(b.metrics)
    document = {
        "method": (f"paired percentile bootstrap over images ({n_boot} resamples, {level:.0%}) of the mean of "
                   "per-image error rate under B minus under A"),
        "level": level, "n_boot": n_boot, "seed": seed, "map": "a",
        "a": _side(a, head_a), "b": _side(b, head_b),
        "deltas": {k: (head_b[k] - head_a[k]) if _num(head_a.get(k)) and _num(head_b.get(k)) else None
                   for k in head_a},
        "overall": overall,
        "changes": {k: int((table["change"] == k).sum()) for k in CHANGES},
        "regressions": regressions,
        "improvements": improvements,
    }
    manifest = dict(a.manifest)
    manifest["comparison"] = {"a": str(a.path.resolve()), "b": str(b.path.resolve()), "map": "a",
                              "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with write_run(out, force=force) as writer:
        for item in sorted(a.path.iterdir()):
            if item.name in _NOT_COPIED or not item.is_file():
                continue  # exports/ and selections/ belong to run A's sessions
            shutil.copy2(item, writer.path(item.name))
        writer.write_table(IMAGES, table)
        if a.task == "detection":
            objects = b.objects.copy()
            inverse = np.empty(len(order), np.int64)
            inverse[order] = np.arange(len(order))
            objects["image_idx"] = inverse[objects["image_idx"].to_numpy()]
            writer.write_table(OBJECTS_B, objects)
        writer.write_json(METRICS_B, b.metrics)
        writer.write_json(COMPARE, document)
        writer.write_json(MANIFEST, manifest)
    log.info("compared %s and %s into %s", a.path, b.path, out)
    return CompareResult(out=out, n_images=len(table), regressions=regressions, improvements=improvements,
                         overall=overall)


def _side(run, headline: dict) -> dict:
    model = run.manifest.get("model", {})
    config = run.manifest.get("config", {})
    return {"run": str(run.path.resolve()), "model": {k: model.get(k) for k in ("model", "weights", "random")},
            "metrics": headline, "operating_point": run.metrics.get("operating_point"),
            "config": {"iou": config.get("iou"), "confidence": config.get("confidence")}}


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def is_comparison(run) -> bool:
    """Whether ``run`` (a :class:`~vecexplore.store.Run`) was written by :func:`compare_runs`."""
    return "comparison" in run.manifest and (run.path / COMPARE).exists()
