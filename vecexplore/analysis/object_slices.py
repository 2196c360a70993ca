"""Object-level failure slices: groups of objects the model surely gets wrong more often.

Units are the mapped objects of the object-level map
(:mod:`vecexplore.mapping.objects`), in two populations judged apart:

* **GT objects** (non-crowd): the error is "not found" (``fn`` or ``confused``:
  no same-class prediction matched it), so a slice's rate is its **FN rate**;
* **predictions** counted at the operating point: the error is any FP type, so a
  slice's rate is its **FP rate**, and its ``dominant_error`` is the FP type
  (TIDE's duplicate / class / localization / both / background) it makes most.

Candidates, per population:

1. each HDBSCAN cluster of the crops' embeddings (``source = "cluster"``);
2. the tails of each object property (:data:`~vecexplore.properties.OBJECT_PROPERTIES`:
   relative area, aspect ratio, border distance, overlaps), over all classes and
   within each class (``source = "property"``), cut where Kulldorff's
   log-likelihood ratio is largest (:func:`~vecexplore.analysis.tails.best_tail`,
   the same scan as image property findings), so a mode such as "small
   objects of class k are missed" is found whatever the background.

Each candidate has the image slices' interval machinery: its rate, Wilson 95 %
interval, ``lift`` over its population's rate and ``score = ci_low − overall``;
a candidate is kept only when surely worse (``ci_low > overall``) with at least
``min_errors`` errors, and candidates are ranked by ``score`` (a large slice
that is surely a little worse outranks a tiny one that looks much worse by
chance). One failure mode is one slice: visiting from the top, a candidate whose
objects are mostly (≥ half of the smaller set) those of a slice already kept is
that slice's evidence (``also``), not a new row.
"""

from __future__ import annotations

import json

import numpy as np

from vecexplore.analysis.tails import best_tail
from vecexplore.eval.outcomes import FP_COLUMNS, GtOutcome
from vecexplore.mapping.objects import mapped_objects
from vecexplore.properties import OBJECT_PROPERTIES
from vecexplore.rates import wilson_interval

#: FP types of predictions, in report order (the objects table's outcome strings).
FP_OUTCOMES = FP_COLUMNS
#: GT outcomes that are errors ("not found").
GT_ERRORS = (GtOutcome.FN.label, GtOutcome.CONFUSED.label)
#: Share of the smaller of two candidates' objects above which they are one failure mode.
SAME_MODE_OVERLAP = 0.5
_PROP_WORDS = {"relative_area": "area (share of the image)", "box_aspect_ratio": "aspect ratio (w/h)",
               "border_distance": "distance to the border", "n_overlapping": "overlapping boxes"}
_SIDE_WORDS = {("relative_area", "low"): "small", ("relative_area", "high"): "large",
               ("box_aspect_ratio", "low"): "tall", ("box_aspect_ratio", "high"): "wide",
               ("border_distance", "low"): "near the border", ("border_distance", "high"): "central",
               ("n_overlapping", "low"): "isolated", ("n_overlapping", "high"): "crowded"}
_ACTIONS = {
    "missed": "collect or up-weight more {what} and check that the input resolution / anchor sizes can see them",
    "fp_background": "add hard negatives that look like {what} without the object",
    "fp_localization": "check the box quality of {what} in the training labels; tighten the box regression",
    "fp_class": "add examples that separate the classes confused on {what}",
    "fp_both": "add examples of {what} with careful boxes and labels",
    "fp_duplicate": "check NMS on {what} (an IoU threshold that is too high keeps duplicates)",
}


def object_slice_table(objects, *, class_names=None, min_errors: int = 5, min_size: int = 10):
    """Ranked object-level slices (module docstring) as a DataFrame.

    Args:
        objects: the objects table with the object-map columns (``obj_row``,
            ``obj_cluster``) or, without them, every mapped object and no cluster.
        class_names: names by class_idx (for descriptions).
        min_errors: a slice needs at least this many errors.
        min_size: and at least this many objects.

    Returns:
        One row per slice, ``rank`` 1 worst: ``rank, kind ("gt" | "pred"), source
        ("cluster" | "property"), cluster (-1 unless a cluster), class_idx (-1: all
        classes), prop, side, lo, hi, size, errors, error_rate, ci_low, ci_high,
        overall, lift, score, dominant_error, error_counts (dict), description,
        recommendation, object_idx (objects-table rows), image_idx (its images),
        n_images, also (descriptions of the candidates merged into it)``.
    """
    import pandas as pd

    names = list(class_names or [])
    kind = objects["kind"].astype(str).to_numpy()
    outcome = objects["outcome"].astype(str).to_numpy()
    unit = (objects["obj_row"].to_numpy() >= 0) if "obj_row" in objects else mapped_objects(objects)
    cluster = objects["obj_cluster"].to_numpy(np.int64) if "obj_cluster" in objects else np.full(len(objects), -1)
    class_idx = objects["class_idx"].to_numpy(np.int64)
    image_idx = objects["image_idx"].to_numpy(np.int64)
    rows: list[dict] = []
    for k in ("gt", "pred"):
        idx = np.flatnonzero(unit & (kind == k))
        if not len(idx):
            continue
        err = (np.isin(outcome[idx], GT_ERRORS) if k == "gt" else np.isin(outcome[idx], FP_OUTCOMES)).astype(float)
        overall = float(err.mean())
        cands = _cluster_candidates(idx, err, cluster[idx]) + _property_candidates(
            objects, idx, err, class_idx[idx], overall, min_errors)
        for c in cands:
            members = c["object_idx"]
            e = float(err[np.searchsorted(idx, members)].sum())
            size = len(members)
            low, high = (float(v) for v in wilson_interval(e, size))
            if size < min_size or e < min_errors or not low > overall:
                continue
            row = {"kind": k, **{f: c[f] for f in ("source", "cluster", "class_idx", "prop", "side", "lo", "hi")},
                   "size": size, "errors": e, "error_rate": e / size, "ci_low": low, "ci_high": high,
                   "overall": overall, "lift": (e / size) / overall if overall > 0 else float("nan"),
                   "score": low - overall, "object_idx": members}
            row.update(_profile(k, outcome[members], class_idx[members], names, row))
            row["image_idx"] = np.unique(image_idx[members])
            row["n_images"] = len(row["image_idx"])
            rows.append(row)
    kept = _one_per_mode(rows)
    columns = ["rank", "kind", "source", "cluster", "class_idx", "prop", "side", "lo", "hi", "size", "errors",
               "error_rate", "ci_low", "ci_high", "overall", "lift", "score", "dominant_error", "error_counts",
               "description", "recommendation", "object_idx", "image_idx", "n_images", "also"]
    table = pd.DataFrame(kept, columns=columns[1:])
    table.insert(0, "rank", np.arange(1, len(table) + 1, dtype=np.int64))
    for col in ("object_idx", "image_idx"):
        table[col] = pd.Series([np.asarray(v, np.int64).tolist() for v in table[col]], index=table.index,
                               dtype=object)
    table["also"] = pd.Series([list(v) for v in table["also"]], index=table.index, dtype=object)
    return table


def _cluster_candidates(idx, err, cluster) -> list[dict]:
    out = []
    for c in np.unique(cluster[cluster >= 0]):
        out.append({"source": "cluster", "cluster": int(c), "class_idx": -1, "prop": "", "side": "",
                    "lo": float("nan"), "hi": float("nan"), "object_idx": idx[cluster == c]})
    return out


def _property_candidates(objects, idx, err, cls, overall, min_errors) -> list[dict]:
    out = []
    groups = [(-1, np.ones(len(idx), bool))] + [(int(c), cls == c) for c in np.unique(cls)]
    for prop in OBJECT_PROPERTIES:
        if prop not in objects:
            continue
        values = objects[prop].to_numpy(np.float64)[idx]
        for c, in_group in groups:
            sel = in_group & np.isfinite(values)
            if sel.sum() < 2:
                continue
            v, e = values[sel], err[sel]
            for side, sign in (("low", 1.0), ("high", -1.0)):
                found = best_tail(sign * v, e, overall, min_errors=min_errors)
                if found is None:
                    continue
                t = sign * found[0]
                chosen = (v <= t) if side == "low" else (v >= t)
                if chosen.all():
                    continue  # the whole class: a class finding, not a property tail
                members = idx[sel][chosen]
                out.append({"source": "property", "cluster": -1, "class_idx": c, "prop": prop, "side": side,
                            "lo": float(v[chosen].min()), "hi": float(v[chosen].max()), "object_idx": members})
    return out


def _profile(kind, outcome, cls, names, row) -> dict:
    """dominant error, error counts, description and recommendation of one slice."""
    if kind == "gt":
        counts = {"missed": int((outcome == "fn").sum()), "confused": int((outcome == "confused").sum())}
    else:
        counts = {o: int((outcome == o).sum()) for o in FP_OUTCOMES}
    dominant = max(counts, key=lambda o: counts[o]) if any(counts.values()) else "none"
    if kind == "gt" and dominant == "confused":
        dominant_action = "fp_class"
    else:
        dominant_action = dominant
    cname = (names[row["class_idx"]] if 0 <= row["class_idx"] < len(names) else f"class {row['class_idx']}")
    classes, freq = np.unique(cls, return_counts=True)
    top = [names[c] if 0 <= c < len(names) else str(c) for c in classes[np.argsort(-freq, kind="stable")][:3]]
    noun = "GT objects" if kind == "gt" else "predictions"
    if row["source"] == "property":
        adj = _SIDE_WORDS.get((row["prop"], row["side"]), f"{row['side']} {row['prop']}")
        who = f"{adj} {cname if row['class_idx'] >= 0 else ''} {noun}".replace("  ", " ")
        where = f"{_PROP_WORDS.get(row['prop'], row['prop'])} in [{row['lo']:.3g}, {row['hi']:.3g}]"
        what = f"{adj} {cname if row['class_idx'] >= 0 else 'objects'}"
    else:
        who = f"{noun} of crop cluster {row['cluster']}"
        where = f"mostly {', '.join(top)}"
        what = f"objects like those of crop cluster {row['cluster']} ({', '.join(top)})"
    rate_word = "missed" if kind == "gt" else "false positives"
    description = (f"{who} ({where}; {row['size']} objects): {row['error_rate']:.0%} {rate_word} "
                   f"[95% CI {row['ci_low']:.0%}–{row['ci_high']:.0%}] vs {row['overall']:.0%} overall"
                   + (f"; mostly {dominant.replace('fp_', 'FP ')}" if kind == "pred" and dominant != "none" else ""))
    action = _ACTIONS.get(dominant_action, "inspect {what}").format(what=what)
    # error_counts as JSON text: parquet has no column of dicts with varying keys
    return {"dominant_error": dominant, "error_counts": json.dumps(counts), "description": description,
            "recommendation": action[0].upper() + action[1:] + "."}


def _one_per_mode(rows: list[dict]) -> list[dict]:
    """Ranked by score; a candidate mostly inside a kept slice of its kind becomes its evidence."""
    rows = sorted(rows, key=lambda r: (-r["score"], -r["size"], r["kind"], r["source"], r["description"]))
    kept: list[dict] = []
    sets: list[set] = []
    for r in rows:
        members = set(np.asarray(r["object_idx"]).tolist())
        home = None
        for j, (k, s) in enumerate(zip(kept, sets, strict=True)):
            if k["kind"] == r["kind"] and len(members & s) >= SAME_MODE_OVERLAP * min(len(members), len(s)):
                home = j
                break
        if home is None:
            kept.append({**r, "also": []})
            sets.append(members)
        else:
            kept[home]["also"].append(r["description"])
    return kept


def slices_json(table, limit: int = 50) -> list[dict]:
    """The first ``limit`` slices as JSON-able dicts (analysis.json's ``object_slices``)."""
    out = []
    for row in table.head(limit).to_dict("records"):
        row["error_counts"] = json.loads(row["error_counts"])
        row["also"] = list(row["also"])
        out.append(row)
    return out
