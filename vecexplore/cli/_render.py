"""Rich rendering of ``vecexplore info`` (the data comes from :mod:`vecexplore.info`)."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


#: The ``info`` line for each value of the summary's ``boxes``.
BOXES_LINES = {
    "as_given": "boxes: evaluated as given (COCO numbers equal pycocotools')",
    "clipped": "[bold yellow]boxes: clipped to the image border (--clip)[/bold yellow]: the COCO numbers use "
               "the clipped boxes and are not pycocotools'",
    "not_recorded": "boxes: not recorded (built before vecexplore recorded it; builds then clipped boxes "
                    "crossing the image border by default, so the COCO numbers may differ from pycocotools')",
}


def render_info(summary: dict, *, top: int = 10, max_recommendations: int = 6) -> None:
    console = Console(width=None if sys.stdout.isatty() else 160)
    model = summary["model"]
    console.print(f"[bold]{summary['run']}[/bold] — {summary['task']}, built {summary.get('created') or '?'}")
    weights = f"{model.get('model')} / {model.get('weights')} ({model.get('weights_kind')})"
    console.print(f"model: {weights}")
    if model.get("random"):
        console.print("[bold red]RANDOM WEIGHTS[/bold red]: the embeddings are from an untrained network; "
                      "clusters follow low-level appearance (brightness, texture, blur), not meaning.")
        if model.get("fallback_reason"):
            console.print(f"  (fell back because: {model['fallback_reason']})")
    counts = summary.get("counts", {})
    console.print(
        f"images: {counts.get('images')}  unreadable: {counts.get('unreadable')}  "
        f"GT: {counts.get('gt')}  predictions: {counts.get('pred')}  classes: {counts.get('categories')}"
    )
    op = summary.get("operating_point") or {}
    metrics = "  ".join(f"{k} {_f(v)}" for k, v in summary["metrics"].items())
    if op:
        console.print(f"at IoU ≥ {_f(op.get('iou'), 2)}, confidence ≥ {_f(op.get('confidence'), 4)}: {metrics}")
    else:
        console.print(metrics)
    boxes = summary.get("boxes")
    if boxes in BOXES_LINES:
        console.print(BOXES_LINES[boxes])
    if summary.get("error_types"):
        console.print("errors: " + ", ".join(f"{k} {v}" for k, v in summary["error_types"].items()))

    clusters = summary.get("clusters", [])
    # A failure cluster fails more often than the run as a whole; the others are listed by count only.
    failing = [c for c in clusters if isinstance(c.get("lift"), (int, float)) and c["lift"] > 1]
    merged = sum(len(c.get("members") or []) > 1 for c in failing)
    note = f"; {merged} join sibling clusters that fail alike" if merged else ""
    title = (f"Failure clusters (error rate above average), worst first: {len(failing)} of {len(clusters)}"
             f"{note}")
    table = Table(title=title, title_justify="left")
    for col in ("rank", "cluster", "size", "error rate [95% CI]", "lift", "dominant error", "top classes"):
        table.add_column(col, justify="right" if col in ("rank", "cluster", "size", "lift") else "left")
    for c in failing[:top]:
        table.add_row(
            str(c.get("rank")),
            "+".join(str(m) for m in c.get("members") or [c.get("cluster")]),
            str(c.get("size")),
            f"{_f(c.get('error_rate'), 2)} [{_f(c.get('ci_low'), 2)}, {_f(c.get('ci_high'), 2)}]",
            _f(c.get("lift"), 2),
            str(c.get("dominant_error") or ""),
            str(c.get("top_classes") or ""),
        )
    if failing:
        console.print(table)
    elif clusters:
        console.print(f"No cluster fails more often than average ({len(clusters)} clusters).")

    recs = summary.get("recommendations") or []
    if recs:
        console.print("[bold]Recommendations[/bold]")
        for i, rec in enumerate(recs[:max_recommendations], 1):
            console.print(f"{i}. {rec.get('title')}")
            if rec.get("evidence"):
                console.print(f"   {rec['evidence']}")
            merged = rec.get("merged") or []
            if merged:
                kinds = ", ".join(rec.get("evidence_kinds") or [])
                console.print(f"   one failure, {len(merged) + 1} findings (evidence: {kinds}); also explains:")
                for m in merged[:3]:
                    console.print(f"     + {m.get('title')}")
                if len(merged) > 3:
                    console.print(f"     + … {len(merged) - 3} more (--json lists all)")
            if rec.get("action"):
                console.print(f"   → {rec['action']}")
        if len(recs) > max_recommendations:
            console.print(f"… and {len(recs) - max_recommendations} more (vecexplore info --json lists all)")

    bad = summary.get("unreadable") or []
    if bad:
        console.print(f"[bold]Unreadable images[/bold] ({len(bad)}):")
        for item in bad[:10]:
            console.print(f"  {item['file_name']}: {item['reason']}")
        if len(bad) > 10:
            console.print(f"  … and {len(bad) - 10} more (vecexplore info --json lists all)")
