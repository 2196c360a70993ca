"""Rich rendering of ``vecexplore info`` (the data comes from :mod:`vecexplore.info`)."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
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

    if "comparison" in summary:  # what changed comes first; A's own failure clusters follow
        render_comparison(console, summary, top=top)

    clusters = summary.get("clusters", [])
    # A failure cluster fails more often than the run as a whole; the others are listed by count only.
    failing = [c for c in clusters if isinstance(c.get("lift"), (int, float)) and c["lift"] > 1]
    merged = sum(len(c.get("members") or []) > 1 for c in failing)
    note = f"; {merged} join sibling clusters that fail alike" if merged else ""
    title = (f"Failure clusters (error rate above average), worst first: {len(failing)} of {len(clusters)}"
             f"{note}")
    table = Table(title=title, title_justify="left")
    with_words = any(c.get("words") for c in failing)
    for col in ("rank", "cluster", "size", "error rate [95% CI]", "lift", "dominant error", "top classes",
                *(("looks like (CLIP)",) if with_words else ())):
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
            *((escape(str(c.get("words") or "")),) if with_words else ()),
        )
    if failing:
        console.print(table)
    hidden = (summary.get("words") or {}).get("hidden")
    if hidden:
        console.print(f"Note: {escape(str(hidden))}.")
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

    _render_label_issues(console, summary.get("label_issues") or [], top)
    _render_duplicates(console, summary.get("near_duplicates"), summary.get("leakage"), top)

    bad = summary.get("unreadable") or []
    if bad:
        console.print(f"[bold]Unreadable images[/bold] ({len(bad)}):")
        for item in bad[:10]:
            console.print(f"  {item['file_name']}: {item['reason']}")
        if len(bad) > 10:
            console.print(f"  … and {len(bad) - 10} more (vecexplore info --json lists all)")


def _render_label_issues(console: Console, issues: list[dict], top: int) -> None:
    if not issues:
        return
    table = Table(title=f"Likely label errors, most likely first: {len(issues)}", title_justify="left")
    for col in ("score", "kind", "image_id", "annotation_id", "label", "model says"):
        table.add_column(col, justify="right" if col in ("score", "image_id", "annotation_id") else "left")
    for item in issues[:top]:
        table.add_row(_f(item.get("score"), 2), str(item.get("kind")), str(item.get("image_id")),
                      _f(item.get("annotation_id")), str(item.get("class") or "–"),
                      str(item.get("suggested_class") or "–"))
    console.print(table)
    if len(issues) > top:
        console.print(f"… and {len(issues) - top} more (vecexplore info --json lists all)")


def _render_duplicates(console: Console, dups: dict | None, leak: dict | None, top: int) -> None:

    if dups is None:
        return
    console.print(f"[bold]Near duplicates[/bold] (cosine ≥ {_f(dups.get('threshold'), 2)}): {dups.get('pairs')} pairs, "
                  f"{dups.get('within_split')} within a split, {dups.get('across_splits')} across splits, "
                  f"{dups.get('exact')} identical files")
    if dups.get("note"):
        console.print(f"  note: {escape(str(dups['note']))}")
    if dups.get("top"):
        table = Table(title="Most similar pairs", title_justify="left")
        for col in ("similarity", "image_id a", "split a", "image_id b", "split b", "identical"):
            table.add_column(col, justify="right" if col in ("similarity", "image_id a", "image_id b") else "left")
        for p in dups["top"][:top]:
            table.add_row(_f(p.get("similarity"), 4), str(p.get("image_id_a")), escape(str(p.get("split_a"))),
                          str(p.get("image_id_b")), escape(str(p.get("split_b"))), "yes" if p.get("exact") else "")
        console.print(table)
    if leak is None:
        return
    splits = escape(", ".join(leak.get("eval_splits") or []))
    console.print(f"[bold]Split leakage[/bold]: {leak.get('n_leaking')} of {leak.get('n_eval')} images of "
                  f"{splits or 'the other splits'} have a near duplicate in {escape(str(leak.get('train_split')))}")
    metrics = leak.get("metrics") or {}
    every, kept = metrics.get("all") or {}, metrics.get("without_leaking") or {}
    if every:
        table = Table(title=f"Metrics of {splits} with and without the leaking images", title_justify="left")
        for col in ("metric", "all", "without leaking", "difference"):
            table.add_column(col, justify="left" if col == "metric" else "right")
        for key, value in every.items():
            other = kept.get(key)
            diff = other - value if isinstance(value, (int, float)) and isinstance(other, (int, float)) else None
            table.add_row(key, _f(value, 4), _f(other, 4), _f(diff, 4))
        console.print(table)


def render_comparison(console: Console, summary: dict, *, top: int = 10) -> None:
    """The comparison part of ``info``: both models' metrics, and the regressions and improvements tables."""
    comp = summary["comparison"]
    a, b, deltas = comp.get("a") or {}, comp.get("b") or {}, comp.get("deltas") or {}
    console.print(f"[bold]Comparison[/bold]: A = {a.get('run')}, B = {b.get('run')} (map and clusters: A's)")
    table = Table(title="Metrics at each model's operating point", title_justify="left")
    for col in ("metric", "A", "B", "B - A"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key, value in (a.get("metrics") or {}).items():
        delta = deltas.get(key)
        table.add_row(key, _f(value), _f((b.get("metrics") or {}).get(key)),
                      f"{delta:+.3f}" if isinstance(delta, (int, float)) else "–")
    console.print(table)
    o = comp.get("overall") or {}
    if o:
        console.print(f"mean per-image error rate: A {_f(o.get('error_a'))}, B {_f(o.get('error_b'))}, "
                      f"Δ {o['delta']:+.3f} [{o['ci_low']:+.3f}, {o['ci_high']:+.3f}]")
    changes = comp.get("changes") or {}
    if changes:
        console.print("images: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in changes.items()))
    level = comp.get("level") or 0.95
    for key, title in (("regressions", "Regressions (B worse than A), surest first"),
                       ("improvements", "Improvements (B better than A), surest first")):
        rows = summary.get(key) or []
        if not rows:
            console.print(f"{title}: none")
            continue
        t = Table(title=f"{title}: {len(rows)} ({sum(r.get('sure', False) for r in rows)} with the "
                        f"{level:.0%} interval excluding 0)", title_justify="left")
        for col in ("rank", "cluster", "size", "error A", "error B", f"Δ [{level:.0%} CI]", "fixed", "regressed"):
            t.add_column(col, justify="left" if col.startswith("Δ") else "right")
        for r in rows[:top]:
            t.add_row(str(r.get("rank")), "+".join(str(m) for m in r.get("members") or [r.get("cluster")]),
                      str(r.get("size")), _f(r.get("error_a"), 2), _f(r.get("error_b"), 2),
                      f"{r['delta']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]",
                      str(r.get("fixed")), str(r.get("regressed")))
        console.print(t)
