"""``vecexplore check-data``: load and validate the inputs, print a one-screen summary."""

from __future__ import annotations

import sys

import typer

from vecexplore.cli._app import app
from vecexplore.cli._inputs import (
    AllowOutsideRootOpt,
    FormatChoice,
    FormatOpt,
    GtOpt,
    ImagesOpt,
    NamesOpt,
    NoClipOpt,
    PredOpt,
    source_from_options,
)

_MAX_CLASS_ROWS = 20


@app.command("check-data")
def check_data(
    gt: GtOpt = None,
    pred: PredOpt = None,
    images: ImagesOpt = None,
    format: FormatOpt = FormatChoice.auto,
    names: NamesOpt = None,
    no_clip: NoClipOpt = False,
    allow_outside_root: AllowOutsideRootOpt = False,
) -> None:
    """Is my input OK? Load and validate it (missing images included) and summarise it."""
    from vecexplore.io import LoadReport, load_dataset

    source = source_from_options(gt=gt, pred=pred, images=images, format=format, names=names, no_clip=no_clip,
                                 allow_outside_root=allow_outside_root)
    report = LoadReport()
    dataset = load_dataset(source, report=report, progress=sys.stderr.isatty())
    for line in summary_lines(dataset, report, fmt=source.resolved().format):
        typer.echo(line)


def summary_lines(dataset, report, *, fmt: str) -> list[str]:
    """The summary as lines of text (one screen: at most ~30 lines)."""
    import numpy as np

    ds = dataset
    n, k = ds.num_images, len(ds.categories)
    unknown = int(((ds.images.width == 0) | (ds.images.height == 0)).sum())
    lines = [
        f"input         {fmt} ({ds.task})",
        f"images        {n:,}" + (f"  ({unknown:,} of unknown size)" if unknown else "") + f"  root: {ds.images_root}",
    ]
    if ds.images.split is not None:
        values, counts = np.unique(np.array([s or "-" for s in ds.images.split], dtype=object), return_counts=True)
        lines.append("splits        " + ", ".join(f"{v}: {c:,}" for v, c in zip(values, counts, strict=True)))
    lines.append(f"categories    {k:,}")
    if ds.task == "detection":
        crowd = int(ds.gt.iscrowd.sum())
        no_gt = n - len(np.unique(ds.gt.image_idx))
        lines.append(f"ground truth  {len(ds.gt):,} boxes (crowd: {crowd:,}); {no_gt:,} images without any")
    else:
        lines.append(f"ground truth  {len(ds.gt):,} labels")
    lines.append(_pred_line(ds))
    clipped = ", ".join(f"{f}: {c:,}" for f, c in report.clipped.items()) or "none"
    lines.append(f"clipped boxes {clipped}")
    if report.unreadable:
        lines.append(f"unreadable    {len(report.unreadable):,} image header(s): {', '.join(report.unreadable[:3])}"
                     + (" …" if len(report.unreadable) > 3 else ""))
    lines.extend(f"note          {note}" for note in report.notes)
    gt_count = np.bincount(ds.gt.class_idx, minlength=k)
    pred_count = np.bincount(ds.pred.class_idx, minlength=k)
    order = np.argsort(-gt_count, kind="stable")
    width = max(len(str(c)) for c in ds.categories.names[order[:_MAX_CLASS_ROWS]])
    lines.append(f"per class     {'class':<{width}}  {'GT':>9}  {'pred':>9}")
    for c in order[:_MAX_CLASS_ROWS]:
        name = ds.categories.names[c]
        lines.append(f"              {name:<{width}}  {gt_count[c]:>9,}  {pred_count[c]:>9,}")
    if k > _MAX_CLASS_ROWS:
        lines.append(f"              … and {k - _MAX_CLASS_ROWS} more classes")
    lines.append("OK")
    return lines


def _pred_line(ds) -> str:
    p = ds.pred
    text = f"predictions   {len(p):,}"
    if len(p):
        text += f" (score {p.score.min():.3g}–{p.score.max():.3g})"
    if ds.task == "classification":
        text += f"; {ds.num_images - len(p):,} images without one"
        text += "; per-class scores" if p.scores is not None else "; no per-class scores"
    return text
