"""The build's "analyse" stage: property importance, cluster descriptions and recommendations.

Writes two files into the run (the app and ``vecexplore info`` read them):

``analysis.json``::

    {"operating_point": {"iou", "confidence"},
     "importance": [{"prop", "level", "mutual_information", "spearman", "direction", "n",
                     "sentence"}, ...]                      strongest first,
     "clusters": [{"cluster", "n_images", "error_rate", "traits": [...], "errors": {...},
                   "dominant_error", "classes", "missed", "false_positives", "confusions",
                   "summary", ...}, ...]                    in the slice table's rank order}

``recommendations.json``: ``[Recommendation.to_json(), ...]`` ranked (see
:mod:`vecexplore.analysis.recommend`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict

from vecexplore.analysis.describe import describe_cluster
from vecexplore.analysis.quality import RunTables, property_importance
from vecexplore.analysis.recommend import RecommendConfig, recommend

log = logging.getLogger(__name__)

ANALYSIS_FILE = "analysis.json"
RECOMMENDATIONS_FILE = "recommendations.json"


def analyse(ev, images, objects, clusters, *, seed: int = 0,
            config: RecommendConfig | None = None) -> tuple[dict, list[dict]]:
    """``(analysis, recommendations)`` as JSON-able objects (see the module docstring).

    Args:
        ev: the build's evaluation (its operating point).
        images, objects: the run's images and objects tables (objects None for classification),
            aligned with ``ev.dataset``.
        clusters: the slice table, ranked.
        seed: seed of the importance subsampling.
    """
    tables = RunTables(images, objects)
    importance = property_importance(tables, ev, seed=seed)
    described = [{"cluster": int(c), **describe_cluster(tables, ev, int(c)).to_json()}
                 for c in clusters["cluster"].to_numpy()]
    recs = recommend(tables, ev, clusters=clusters, importance=importance, config=config)
    op = {"confidence": ev.confidence}
    if ev.task == "detection":
        op["iou"] = ev.iou
    analysis = {
        "operating_point": op,
        "importance": [{**asdict(imp), "sentence": imp.sentence()} for imp in importance],
        "clusters": described,
    }
    log.info("analysis: %d recommendations; strongest property: %s", len(recs),
             importance[0].sentence() if importance else "none")
    return analysis, [r.to_json() for r in recs]


def write_analysis(writer, ev, images, objects, clusters, *, seed: int = 0) -> None:
    """Run :func:`analyse` and write its two files with ``writer.write_json`` (atomic)."""
    analysis, recs = analyse(ev, images, objects, clusters, seed=seed)
    writer.write_json(ANALYSIS_FILE, analysis)
    writer.write_json(RECOMMENDATIONS_FILE, recs)
