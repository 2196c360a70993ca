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
