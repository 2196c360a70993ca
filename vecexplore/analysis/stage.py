"""The build's "analyse" stage: property importance, cluster descriptions and recommendations.

Writes two files into the run (the app and ``vecexplore info`` read them):

``analysis.json``::

    {"operating_point": {"iou", "confidence"},
     "importance": [{"prop", "level", "mutual_information", "spearman", "direction", "n",
                     "sentence"}, ...]                      strongest first,
     "clusters": [{"cluster", "members", "n_images", "error_rate", "traits": [...], "errors": {...},
                   "dominant_error", "classes", "missed", "false_positives", "confusions",
                   "summary", ...}, ...]                    one per slice (its clusters: members),
                                                            in the slice table's rank order}

``recommendations.json``: ``[Recommendation.to_json(), ...]`` ranked (see
:mod:`vecexplore.analysis.recommend`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict

import numpy as np

from vecexplore.analysis.describe import describe_images
from vecexplore.analysis.quality import RunTables, property_importance
from vecexplore.analysis.recommend import RecommendConfig, recommend
from vecexplore.analysis.slicing import members_of
from vecexplore.store.layout import ANALYSIS, RECOMMENDATIONS

log = logging.getLogger(__name__)



def analyse(ev, images, objects, clusters, *, seed: int = 0, label_issues=None,
            config: RecommendConfig | None = None, object_slices=None) -> tuple[dict, list[dict]]:
    """``(analysis, recommendations)`` as JSON-able objects (see the module docstring).

    Args:
        ev: the build's evaluation (its operating point).
        images, objects: the run's images and objects tables (objects None for classification),
            aligned with ``ev.dataset``.
        clusters: the slice table, ranked (:func:`~vecexplore.analysis.slicing.failure_slice_table`).
        seed: seed of the importance subsampling.
        label_issues: the run's label-issue table (computed if None).
        object_slices: the object-level slice table
            (:func:`~vecexplore.analysis.object_slices.object_slice_table`), or None
            without an object-level map; written as ``object_slices``.
    """
    tables = RunTables(images, objects)
    importance = property_importance(tables, ev, seed=seed)
    labels = images["cluster"].to_numpy()
    described = []
    for row in clusters.itertuples(index=False):
        members = members_of(row)
        described.append({"cluster": int(row.cluster), "members": members,
                          **describe_images(tables, ev, np.isin(labels, members)).to_json()})
    recs = recommend(tables, ev, clusters=clusters, importance=importance, label_issues=label_issues,
                     config=config)
    op = {"confidence": ev.confidence}
    if ev.task == "detection":
        op["iou"] = ev.iou
    analysis = {
        "operating_point": op,
        "importance": [{**asdict(imp), "sentence": imp.sentence()} for imp in importance],
        "clusters": described,
    }
    if object_slices is not None:
        from vecexplore.analysis.object_slices import slices_json

        analysis["object_slices"] = slices_json(object_slices)
    log.info("analysis: %d recommendations; strongest property: %s", len(recs),
             importance[0].sentence() if importance else "none")
    return analysis, [r.to_json() for r in recs]


def write_analysis(writer, ev, images, objects, clusters, *, seed: int = 0, label_issues=None,
                   object_slices=None) -> None:
    """Run :func:`analyse` and write its two files with ``writer.write_json`` (atomic)."""
    analysis, recs = analyse(ev, images, objects, clusters, seed=seed, label_issues=label_issues,
                             object_slices=object_slices)
    writer.write_json(ANALYSIS, analysis)
    writer.write_json(RECOMMENDATIONS, recs)
