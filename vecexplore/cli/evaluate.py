"""``vecexplore evaluate``: metrics, a readable report, ``--json`` and ``--plots``."""

from __future__ import annotations

import sys
from pathlib import Path
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


@app.command("evaluate")
def evaluate_command(
    gt: GtOpt = None,
    pred: PredOpt = None,
    images: ImagesOpt = None,
    format: FormatOpt = FormatChoice.auto,
    names: NamesOpt = None,
    clip: ClipOpt = False,
    no_clip: NoClipOpt = False,
    allow_outside_root: AllowOutsideRootOpt = False,
    iou: Annotated[float, typer.Option("--iou", min=0.0, max=1.0,
                                       help="IoU threshold of the operating point (detection).")] = 0.5,
    conf: Annotated[float | None, typer.Option(
        "--conf", min=0.0, max=1.0,
        help="Confidence threshold of the operating point. Default: the F1-optimal confidence "
             "(detection); 0, every prediction accepted (classification).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the metrics as JSON to this file.")] = None,
    plots: Annotated[Path | None, typer.Option(
        "--plots", help="Write PNGs (confusion matrix, PR curves, P/R/F1 vs confidence) into this folder.")] = None,
    top: Annotated[int, typer.Option("--top", min=0, help="How many top confusions to list.")] = 10,
) -> None:
    """Evaluate predictions against ground truth: COCO AP/AR, P/R/F1 at an operating point,
    error types, per-class table and confusion matrix.

    COCO and CSV inputs need only the annotation files: the images do not have
    to be on disk (YOLO and ImageFolder inputs are found by listing the images).
    Images whose headers are read (CSV, YOLO, ImageFolder, COCO images without a
    size) must lie under the images root unless --allow-outside-root.
    """
    from rich.console import Console

    from vecexplore.errors import ConfigError
    from vecexplore.eval.evaluate import evaluate
    from vecexplore.eval.report import build_report
    from vecexplore.io import load_dataset

    source = source_from_options(gt=gt, pred=pred, images=images, format=format, names=names, clip=clip, no_clip=no_clip,
                                 allow_outside_root=allow_outside_root)
    dataset = load_dataset(source, check_images=False, progress=sys.stderr.isatty())
    if dataset.task == "classification" and iou != 0.5:
        raise ConfigError("--iou applies to detection only; this is a classification dataset")
    if iou <= 0:
        raise ConfigError(f"--iou must be in (0, 1], got {iou}")
    result = evaluate(dataset, iou=iou, confidence=conf)
    # Piped output is not cut to 80 columns: the confusion matrix needs the room.
    Console(width=None if sys.stdout.isatty() else 160).print(build_report(result, top=top))
    if json_out is not None:
        _write_json(result.to_json_dict(), json_out)
        typer.echo(f"wrote {json_out}")
    if plots is not None:
        from vecexplore.eval.plots import write_plots

        for path in write_plots(result, plots):
            typer.echo(f"wrote {path}")


def _write_json(doc: dict, path: Path) -> None:
    """Write ``doc`` atomically; a missing folder is a usage error, not a traceback."""
    from vecexplore.atomic import atomic_write_json
    from vecexplore.errors import ConfigError

    path = Path(path)
    if not path.parent.is_dir():
        raise ConfigError(f"--json {path}: folder {path.parent} does not exist")
    atomic_write_json(path, doc)
