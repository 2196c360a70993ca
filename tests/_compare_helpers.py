"""Model B for comparison tests: the demo's model with one planted failure fixed and one new one.

:func:`write_model_b` writes a COCO results file for the demo dataset ``data``:
on the images of ``fix_mode`` (a planted mode of ``planted.json``) B predicts
every non-crowd GT box exactly (score 0.99); on the images ``break_ids`` it
predicts nothing (every object a miss); elsewhere it is A's predictions as they are.
"""

from __future__ import annotations

import json
from pathlib import Path


def write_model_b(data: Path, out: Path, *, fix_mode: str, break_ids: set[int]) -> Path:
    from vecexplore.demo import read_planted

    planted = read_planted(data)
    fixed = set(planted["modes"][fix_mode]["image_ids"])
    gt = json.loads((data / "annotations.json").read_text())
    preds = json.loads((data / "predictions.json").read_text())
    kept = [p for p in preds if p["image_id"] not in fixed and p["image_id"] not in break_ids]
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.99}
               for a in gt["annotations"] if a["image_id"] in fixed and not a.get("iscrowd")
               and a["image_id"] not in break_ids]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(kept + perfect))
    return out


def write_classifier_b(data: Path, out: Path, *, fix_mode: str, break_names: set[str]) -> Path:
    """Model B for the classification demo: right on every image of ``fix_mode``, wrong (the next
    class after the label) on the images named ``break_names``, A's prediction elsewhere; no
    per-class scores."""
    import csv

    from vecexplore.demo import read_planted

    planted = read_planted(data)
    fixed = set(planted["modes"][fix_mode]["file_names"])
    names = planted["categories"]
    with open(data / "labels.csv", newline="") as f:
        label = {r["file_name"]: r["label"] for r in csv.DictReader(f)}
    with open(data / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "prediction", "score"])
        for r in rows:
            name, pred, score = r["file_name"], r["prediction"], r["score"]
            if name in break_names:
                pred, score = names[(names.index(label[name]) + 1) % len(names)], "0.99"
            elif name in fixed:
                pred, score = label[name], "0.99"
            w.writerow([name, pred, score])
    return out
