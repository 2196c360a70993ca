"""``vecexplore check-data``: load and validate the inputs, print a one-screen summary."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from vecexplore.cli._app import app
from vecexplore.cli._inputs import (
    AllowOutsideRootOpt,
    ClipOpt,
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
_SHOWN = 3  # examples per warning line


@app.command("check-data")
def check_data(
    gt: GtOpt = None,
    pred: PredOpt = None,
    images: ImagesOpt = None,
    format: FormatOpt = FormatChoice.auto,
    names: NamesOpt = None,
    clip: ClipOpt = False,
    no_clip: NoClipOpt = False,
    allow_outside_root: AllowOutsideRootOpt = False,
    no_decode: Annotated[bool, typer.Option(
        "--no-decode", help="Skip decoding every image (a quick check: annotations, missing files, headers only).",
    )] = False,
) -> None:
    """Is my input OK? Load and validate it (missing images included), decode every image
    as build will, and summarise it.

    Exit code 2 (with ``error: …``) for input that build refuses. Images that build
    would mark unreadable (zero-byte, truncated, not an image, a directory or FIFO,
    too large) are listed with their reasons, but exit 0: build maps the others. The
    last line is ``OK`` only when nothing needs a look.
    """
    from vecexplore.io import LoadReport, load_dataset
    from vecexplore.io.paths import image_paths

    progress = sys.stderr.isatty()
    source = source_from_options(gt=gt, pred=pred, images=images, format=format, names=names, clip=clip, no_clip=no_clip,
                                 allow_outside_root=allow_outside_root)
    report = LoadReport()
    dataset = load_dataset(source, report=report, progress=progress)
    undecodable = None
    if not no_decode:
        from vecexplore.thumbs import find_undecodable

        paths = image_paths(dataset.images, dataset.images_root)
        undecodable = [(str(dataset.images.file_name[i]), reason) for i, reason in find_undecodable(paths, progress=progress)]
    for line in summary_lines(dataset, report, fmt=source.resolved().format, undecodable=undecodable):
        typer.echo(line)


def summary_lines(dataset, report, *, fmt: str, undecodable: list[tuple[str, str]] | None = None) -> list[str]:
    """The summary as lines of text (one screen: at most ~35 lines).

    Args:
        undecodable: ``(file name, reason)`` of each image the decode pass could not
            decode; None when it did not run (``--no-decode``).
    """
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
    if ds.task == "detection":
        crossing = ", ".join(f"{f}: {c:,}" for f, c in report.crossing.items()) or "none"
        if ds.boxes_clipped:
            how = "clipped to the border (--clip): metrics use the clipped boxes, not pycocotools' numbers"
        else:
            how = "informational: evaluated as given, as pycocotools does (--clip clips them)"
        lines.append(f"border boxes  {crossing} cross the image border — {how}")
    lines.extend(_image_lines(report, undecodable))
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
    lines.append(_verdict(n, report, undecodable))
    return lines


def _more(items: list, shown: int = _SHOWN) -> str:
    return f" … and {len(items) - shown:,} more" if len(items) > shown else ""


def _image_lines(report, undecodable) -> list[str]:
    """Warnings about image files: undecodable (or header-unreadable), shared, outside the root."""
    lines = []
    if undecodable:
        lines.append(f"unreadable    {len(undecodable):,} image(s) build will mark unreadable (not mapped):")
        lines.extend(f"              {name}: {reason}" for name, reason in undecodable[:_SHOWN])
        if len(undecodable) > _SHOWN:
            lines.append(f"              … and {len(undecodable) - _SHOWN:,} more")
    elif undecodable is None and report.unreadable:
        lines.append(f"unreadable    {len(report.unreadable):,} image header(s): {', '.join(report.unreadable[:_SHOWN])}"
                     + _more(report.unreadable))
    if report.shared_files:
        shown = "; ".join(f"{path} (image ids {', '.join(map(str, ids))})" for path, ids in report.shared_files[:_SHOWN])
        lines.append(f"shared files  {len(report.shared_files):,} file(s) named by more than one image record: {shown}"
                     + _more(report.shared_files))
    if report.outside_root:
        lines.append(f"outside root  {len(report.outside_root):,} image(s) read from outside the images root "
                     f"(--allow-outside-root): {', '.join(report.outside_root[:_SHOWN])}" + _more(report.outside_root))
    return lines


def _verdict(n: int, report, undecodable) -> str:
    """``OK`` only when nothing needs a look; else what does, in one line."""
    problems = []
    bad = len(undecodable) if undecodable is not None else len(report.unreadable)
    if bad:
        what = "unreadable image(s)" if undecodable is not None else "image(s) with an unreadable header"
        problems.append(f"{bad:,} {what}")
    if report.shared_files:
        problems.append(f"{len(report.shared_files):,} file(s) named by several image records")
    if problems:
        return f"OK with {' and '.join(problems)}: build will map {n - bad:,} of {n:,} images"
    if undecodable is None:
        return "OK (images not decoded: --no-decode)"
    return "OK"


def _pred_line(ds) -> str:
    p = ds.pred
    text = f"predictions   {len(p):,}"
    if len(p):
        text += f" (score {p.score.min():.3g}–{p.score.max():.3g})"
    if ds.task == "classification":
        text += f"; {ds.num_images - len(p):,} images without one"
        text += "; per-class scores" if p.scores is not None else "; no per-class scores"
    return text
