"""Recommendations: a short ranked list of concrete findings, each leading to its images.

:func:`recommend` looks at an evaluated run and returns :class:`Recommendation`\\ s
of these kinds (:data:`KINDS`):

* ``cluster`` — a failure slice (:mod:`vecexplore.analysis.slicing`: a cluster,
  or sibling clusters of the hierarchy that fail alike): its error rate is
  surely above the run's (the slice ranking's Wilson lower bound), or, for
  detection, its FN rate or FP rate over objects is; described by its
  distinctive properties and classes.
* ``class_fn`` / ``class_fp`` — a class whose FN rate (GT not found) or FP rate
  (its predictions that are wrong) is surely above the run's (Wilson 95 % lower
  bound above the overall rate). A class-FP finding proposes the class's
  F1-optimal threshold when raising it gains F1 (numbers from the per-class sweep).
* ``confusion`` — a pair of classes taken for each other (both directions).
* ``property`` — a tail of a property (``brightness ≤ t``) where one kind of
  error is surely more frequent than in the run (:mod:`vecexplore.analysis.tails`).
* ``label_errors`` — "N images are likely mislabeled": the images of the
  ``likely`` label issues (:mod:`vecexplore.analysis.label_issues`), worth
  reviewing before any other finding is trusted; severity = their issues'
  share of the run's errors (capped at 1).
* ``few_examples`` — a class whose recall (classification: accuracy) 95 % Wilson
  interval is wider than ``few_examples_width``: its numbers cannot be trusted.
* ``small_eval_set`` — the overall recall (accuracy) interval's half-width is
  above ``eval_half_width``, or the best and worst classes' intervals overlap.
  Sample sizes use the normal approximation ``n = z²·p(1−p)/h²`` for a
  half-width ``h`` at rate ``p`` (p clipped to [0.1, 0.9]).

**One failure mode, one finding.** The first five kinds are *failure
findings*. A failure finding that another one explains (its claim holds inside
the other's images and not outside them, :mod:`vecexplore.analysis.findings`)
is merged into it: the list holds the explaining finding, which carries the
merged ones in ``merged`` and their kinds in ``evidence_kinds`` (e.g. a cluster
of striped images that also carries the class whose false positives are on
them). **The ranked list of slices** a user reads (``vecexplore info``, the
app's recommendations) is the failure findings after this merge, in severity
order, each with its images (``selection["image_idx"]``); the trust findings
follow the same ranking but describe the evaluation set, not a slice.

**Severity** (the ranking key, descending; ties by :data:`KINDS` order, then
title): for failure findings, the share of the run's errors the finding
explains *beyond* the run's average rate, counted conservatively with the Wilson
lower bound: ``(low − overall) × trials / errors``. Image-level findings
(clusters, image properties) count per-image error-rate mass (``errors`` = the
sum of per-image error rates); object-level findings (classes, confusions,
object properties) count objects (``errors`` = FP + FN of the run;
classification: wrong or missing predictions). A confusion has no expected
rate: its lower bound itself counts. A merged finding ranks by the largest
severity among it and the findings it carries. For trust findings
(``few_examples``, ``small_eval_set``): ``TRUST_WEIGHT × (interval width −
allowed width)``, so a class with a handful of examples ranks with a medium
failure, not above all. The per-kind limits of :class:`RecommendConfig` count
findings after merging.

**Selections** (``Recommendation.selection``, JSON): ``image_idx`` is always
present — the sorted image_idx of exactly the images behind the evidence (what
the app selects on a click); one of these describes what they are::

    {"all": true}                                   every image
    {"label_issues": true}                          images with a likely label error
    {"cluster": 4, "clusters": [4, 9]}              a slice (its id, and the clusters it holds)
    {"class_idx": 2, "outcome": "fn" | "fp" | "gt"} images with a GT of the class not found /
                                                    a false positive of the class / a GT of the class
    {"class_idx": [2, 5], "outcome": "gt"}          images with a GT of either class
    {"cells": [[gt, pred], ...]}                    confusion-matrix cells (rows = GT, columns = prediction)
    {"property": "brightness", "level": "image", "side": "low" | "high", "error": "fn_missed", "range": [lo, hi]}
                                                    readable images with the property in [lo, hi]
    {"property": "relative_area", "level": "object", "side": ..., "range": [lo, hi]}
                                                    images of non-crowd GT objects with the property in [lo, hi]
"""

from __future__ import annotations

import numpy as np

from vecexplore.analysis.findings import merge_findings, merged_recommendation
from vecexplore.analysis.recbase import (
    KINDS,
    TRUST_WEIGHT,
    Context,
    Recommendation,
    RecommendConfig,
)

__all__ = ["KINDS", "TRUST_WEIGHT", "RecommendConfig", "Recommendation", "recommend"]


def recommend(run, ev, *, clusters=None, importance=None, label_issues=None,
              config: RecommendConfig | None = None) -> list[Recommendation]:
    """Ranked findings of an evaluated run (see the module docstring).

    Args:
        run: a :class:`~vecexplore.store.Run` or :class:`~vecexplore.analysis.quality.RunTables`
            aligned with ``ev`` (images with ``cluster`` and properties; objects for detection).
        ev: the evaluation at the operating point the findings are about.
        clusters: the slice table (:func:`~vecexplore.analysis.slicing.failure_slice_table`,
            or any :func:`~vecexplore.mapping.slices.slice_table`); default ``run.clusters``.
        importance: :func:`~vecexplore.analysis.quality.property_importance` output (quoted in
            property findings); computed if None.
        label_issues: :func:`~vecexplore.analysis.label_issues.label_issues` of ``ev``; computed if None.
        config: thresholds.
    """
    from vecexplore.analysis.label_issues import label_issues as find_label_issues
    from vecexplore.analysis.quality import property_importance
    from vecexplore.analysis.recs_failure import class_candidates, cluster_candidates
    from vecexplore.analysis.recs_trust import eval_size, few_examples, label_errors
    from vecexplore.analysis.slicing import other_failure, same_failure
    from vecexplore.analysis.tails import property_candidates

    ctx = Context(run, ev, config or RecommendConfig())
    if clusters is None:
        clusters = run.clusters
    if importance is None:
        importance = property_importance(run, ev)
    found = cluster_candidates(ctx, clusters)
    images = run.images
    readable = images["readable"].to_numpy(bool) if "readable" in images else np.ones(len(images), bool)
    found += property_candidates(ctx, readable, importance)
    found += class_candidates(ctx)

    def severity(c) -> float:
        return c.rec.severity

    merged = [merged_recommendation(c, max([severity(c), *map(severity, c.absorbed)]))
              for c in merge_findings(found, severity=severity, same_failure=same_failure(run, ev),
                                            other_failure=other_failure(run, ev))]
    if label_issues is None:
        label_issues = find_label_issues(ev)
    recs = [*_capped(merged, ctx.cfg), *label_errors(ctx, label_issues), *few_examples(ctx), *eval_size(ctx)]
    recs.sort(key=lambda r: (-r.severity, KINDS.index(r.kind), r.title))
    return recs[: ctx.cfg.max_total]


def _capped(recs: list[Recommendation], cfg: RecommendConfig) -> list[Recommendation]:
    """At most ``max_<kind>`` findings led by each kind, the most severe kept."""
    limit = {"cluster": cfg.max_clusters, "class_fn": cfg.max_classes, "class_fp": cfg.max_classes,
             "confusion": cfg.max_confusions, "property": cfg.max_properties}
    taken: dict[str, int] = {}
    out = []
    for r in sorted(recs, key=lambda r: -r.severity):
        if taken.get(r.kind, 0) < limit[r.kind]:
            taken[r.kind] = taken.get(r.kind, 0) + 1
            out.append(r)
    return out
