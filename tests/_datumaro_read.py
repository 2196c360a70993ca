"""Read a dataset with datumaro and print what it found as JSON (the oracle of the CVAT export).

Runs in datumaro's own venv (``tests/_tool_venvs.py``), not the project's:

    python _datumaro_read.py FOLDER FORMAT

prints ``{"labels": [names], "items": [{"id", "image", "size": [h, w],
"annotations": [{"type": "bbox" | "polygon" | "label", "label", "points"}]}]}``.
"""

import json
import sys

import datumaro as dm

KINDS = {dm.AnnotationType.bbox: "bbox", dm.AnnotationType.polygon: "polygon", dm.AnnotationType.label: "label"}


def main(folder: str, fmt: str) -> None:
    ds = dm.Dataset.import_from(folder, fmt)
    labels = ds.categories()[dm.AnnotationType.label]
    items = []
    for item in ds:
        anns = []
        for a in item.annotations:
            if a.type not in KINDS:
                raise SystemExit(f"unexpected annotation type {a.type} in {item.id}")
            anns.append({"type": KINDS[a.type], "label": labels[a.label].name,
                         "points": [float(v) for v in getattr(a, "points", [])]})
        size = item.media.size if item.media is not None else None
        items.append({"id": item.id, "image": getattr(item.media, "path", None),
                      "size": list(size) if size else None, "annotations": anns})
    json.dump({"labels": [c.name for c in labels.items], "items": items}, sys.stdout)


if __name__ == "__main__":
    main(*sys.argv[1:3])
