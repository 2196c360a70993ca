"""What ``vecexplore info`` reports about a run, as plain data (the CLI renders it).

:func:`run_summary` returns the ``info --json`` object::

    {"run", "task", "created", "model": {model, weights, weights_kind, random,
     fallback_reason}, "counts": {...}, "metrics": {headline numbers at the
     operating point}, "operating_point": {...}, "unreadable": [{"image_id",
     "file_name", "reason"}], "clusters": [{"cluster", "rank", "size",
     "error_rate", "ci_low", "ci_high", "lift", "dominant_error", ...}] (worst
     first; a merged slice lists its clusters in "members"), "slices": [...],
     "recommendations": [...], "label_issues": [{"image_id", "annotation_id",
     "kind", "score", "class", "suggested_class"}], "near_duplicates": {...},
     "leakage": {...}}

``label_issues`` lists the likely label errors, most likely first (kinds
``wrong_class``, ``missing``, ``spurious``, ``bad_box``, ``wrong_label``;
``annotation_id`` null for a missing label and for classification; see
:mod:`vecexplore.analysis.label_issues`). A run built before label issues
were stored gets them computed when read.

``near_duplicates`` counts the near-duplicate pairs within and across splits and
lists the most similar; ``leakage`` lists the images of other splits with a near
duplicate in the train split and the metrics of those splits with and without
them (both null for a run built before they were stored; ``leakage`` also null
without a train split; see :func:`vecexplore.analysis.duplicates.summary`).

``words`` gives each failure slice the phrases CLIP's text tower finds most
typical of its images (also the ``words`` column of ``clusters``), or, with
random weights, ``hidden``: why there are none (:mod:`vecexplore.analysis.words`).

``slices`` is the ranked list of failure slices a user reads: the failure
findings of ``recommendations.json`` (kinds cluster, class_fn, class_fp,
confusion, property; see :mod:`vecexplore.analysis.recommend`) in rank order,
one entry per failure mode, each ``{"rank", "kind", "title", "evidence_kinds",
"n_images", "severity", "merged": [titles of the findings it explains]}``;
its images are the recommendation's ``selection.image_idx``.
"""

from __future__ import annotations

from typing import Any

from vecexplore.store import Run, json_safe
from vecexplore.store.layout import RECOMMENDATIONS

#: Cluster columns shown by ``info`` (others stay in ``--json``).
CLUSTER_COLUMNS = ("cluster", "rank", "size", "error_rate", "ci_low", "ci_high", "lift", "dominant_error")
#: Recommendation kinds that are failure slices (the others describe the evaluation set).
SLICE_KINDS = ("cluster", "class_fn", "class_fp", "confusion", "property")


def failure_slices(recommendations: list[dict]) -> list[dict]:
    """The ranked failure slices of a run's recommendations (module docstring)."""
    out = []
    for rec in recommendations:
        if rec.get("kind") not in SLICE_KINDS:
            continue
        out.append({"rank": len(out) + 1, "kind": rec["kind"], "title": rec.get("title"),
                    "evidence_kinds": rec.get("evidence_kinds") or [],
                    "n_images": len(rec.get("selection", {}).get("image_idx", [])),
                    "severity": rec.get("severity"),
                    "merged": [m.get("title") for m in rec.get("merged") or []]})
    return out


def headline_metrics(metrics: dict) -> dict[str, Any]:
    """The few numbers a person reads first, from metrics.json."""
    if metrics.get("task") == "detection":
        coco = metrics.get("coco", {})
        op = metrics.get("operating_point", {})
        head = {"mAP": coco.get("AP"), "AP50": coco.get("AP50")}
        segm = metrics.get("coco_segm")
        if isinstance(segm, dict):  # masks: pycocotools' segm numbers beside the box ones
            head.update(mask_mAP=segm.get("AP"), mask_AP50=segm.get("AP50"))
        return {**head, "precision": op.get("precision"), "recall": op.get("recall"), "f1": op.get("f1")}
    return {
        "accuracy": metrics.get("accuracy"),
        "macro_f1": (metrics.get("macro") or {}).get("f1"),
        "weighted_f1": (metrics.get("weighted") or {}).get("f1"),
    }


def _label_issues(run: Run) -> list[dict]:
    from vecexplore.analysis.label_issues import of_run, to_json

    return to_json(of_run(run), [c["name"] for c in run.categories])


def _words(run: Run) -> dict | None:
    """``{"hidden": reason or null, "clusters": [{"cluster", "members", "words": [{"phrase", "group",
    "score", "share"}]}]}`` (:mod:`vecexplore.analysis.words`); null for a run built before words."""
    from vecexplore.analysis.words import of_run

    doc = of_run(run)
    return None if doc is None else {"hidden": doc.get("hidden"), "clusters": doc.get("clusters") or []}


def _duplicates(run: Run) -> dict:
    from vecexplore.analysis.duplicates import of_run, summary

    table, leak = of_run(run)
    return summary(table, leak, image_id=run.images["image_id"].to_numpy())


def boxes_state(run: Run) -> str | None:
    """How the run's detection boxes were evaluated: ``as_given`` (COCO numbers are
    pycocotools'), ``clipped`` (``--clip``: they are not) or ``not_recorded`` (a run
    built before the choice was recorded; builds then clipped by default). None for
    classification."""
    if run.task != "detection":
        return None
    clipped = run.boxes_clipped
    return "not_recorded" if clipped is None else "clipped" if clipped else "as_given"


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
    recs = run.json(RECOMMENDATIONS) if (run.path / RECOMMENDATIONS).exists() else []
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
        "boxes": boxes_state(run),
        "metrics": headline_metrics(metrics),
        "operating_point": metrics.get("operating_point"),
        "error_types": metrics.get("error_types"),
        "unreadable": unreadable,
        "clusters": run.clusters.to_dict(orient="records"),
        "slices": failure_slices(recs),
        "recommendations": recs,
        "label_issues": _label_issues(run),
        **_duplicates(run),
        "words": _words(run),
        "timings": manifest.get("timings", {}),
    }
    if "comparison" in manifest:
        out.update(comparison_summary(run))
    return json_safe(out)


def comparison_summary(run: Run) -> dict[str, Any]:
    """A comparison run's extra ``info --json`` keys: ``comparison`` (the two runs, both models'
    headline metrics, their deltas B - A, the overall change, the method) and ``regressions`` /
    ``improvements`` (A's clusters where B's mean error rate rose / fell, surest first; each
    ``{"cluster", "size", "delta", "ci_low", "ci_high", "error_a", "error_b", "sure", "rank",
    "members", "fixed", "regressed", "both_wrong", "both_right"}``)."""
    from vecexplore.store.layout import COMPARE

    doc = run.json(COMPARE)
    return {
        "comparison": {k: doc.get(k) for k in ("a", "b", "deltas", "overall", "changes", "method", "level", "map")},
        "regressions": doc.get("regressions", []),
        "improvements": doc.get("improvements", []),
    }
