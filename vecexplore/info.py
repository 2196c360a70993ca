"""What ``vecexplore info`` reports about a run, as plain data (the CLI renders it).

:func:`run_summary` returns the ``info --json`` object::

    {"run", "task", "created", "model": {model, weights, weights_kind, random,
     fallback_reason}, "counts": {...}, "metrics": {headline numbers at the
     operating point}, "operating_point": {...}, "unreadable": [{"image_id",
     "file_name", "reason"}], "clusters": [{"cluster", "rank", "size",
     "error_rate", "ci_low", "ci_high", "lift", "dominant_error", ...}] (worst
     first), "recommendations": [...]}
"""

from __future__ import annotations

from typing import Any

from vecexplore.store import Run, json_safe

#: Cluster columns shown by ``info`` (others stay in ``--json``).
CLUSTER_COLUMNS = ("cluster", "rank", "size", "error_rate", "ci_low", "ci_high", "lift", "dominant_error")


def headline_metrics(metrics: dict) -> dict[str, Any]:
    """The few numbers a person reads first, from metrics.json."""
    if metrics.get("task") == "detection":
        coco = metrics.get("coco", {})
        op = metrics.get("operating_point", {})
        return {
            "mAP": coco.get("AP"),
            "AP50": coco.get("AP50"),
            "precision": op.get("precision"),
            "recall": op.get("recall"),
            "f1": op.get("f1"),
        }
    return {
        "accuracy": metrics.get("accuracy"),
        "macro_f1": (metrics.get("macro") or {}).get("f1"),
        "weighted_f1": (metrics.get("weighted") or {}).get("f1"),
    }


def run_summary(run: Run, *, max_unreadable: int | None = None) -> dict[str, Any]:
    """The ``info --json`` object of a run (JSON-safe: NaN → null)."""
    manifest = run.manifest
    images = run.images
    bad = images[~images["readable"]]
    unreadable = [
        {"image_id": int(r.image_id), "file_name": str(r.file_name), "reason": str(r.unreadable_reason)}
        for r in bad.itertuples()
    ]
    if max_unreadable is not None:
        unreadable = unreadable[:max_unreadable]
    model = manifest.get("model", {})
    metrics = run.metrics
    out = {
        "run": str(run.path),
        "task": run.task,
        "created": manifest.get("created"),
        "model": {
            "model": model.get("model"),
            "weights": model.get("weights"),
            "weights_kind": model.get("weights_kind"),
            "random": bool(model.get("random")),
            "fallback_reason": model.get("fallback_reason"),
        },
        "counts": manifest.get("counts", {}),
        "metrics": headline_metrics(metrics),
        "operating_point": metrics.get("operating_point"),
        "error_types": metrics.get("error_types"),
        "unreadable": unreadable,
        "clusters": run.clusters.to_dict(orient="records"),
        "recommendations": run.json("recommendations.json") if (run.path / "recommendations.json").exists() else [],
        "timings": manifest.get("timings", {}),
    }
    return json_safe(out)
