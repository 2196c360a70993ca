"""``vecexplore evaluate``: metrics, a readable report, ``--json`` and ``--plots``."""

from __future__ import annotations

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
    IouTypeChoice,
    IouTypeOpt,
    NamesOpt,
    NoClipOpt,
    PredOpt,
    iou_type_of,
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
    iou_type: IouTypeOpt = IouTypeChoice.auto,
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
    error types, per-class table and confusion matrix. With masks (COCO
    ``segmentation``, YOLO-seg polygons) also mask AP/AR (pycocotools segm).

    COCO and CSV inputs need only the annotation files: the images do not have
    to be on disk (YOLO and ImageFolder inputs are found by listing the images).
    Images whose headers are read (CSV, YOLO, ImageFolder, COCO images without a
    size) must lie under the images root unless --allow-outside-root.
    """
    from vecexplore.cli._evaluate import run_evaluate

    run_evaluate(gt=gt, pred=pred, images=images, format=format, names=names, clip=clip, no_clip=no_clip,
                 allow_outside_root=allow_outside_root, iou=iou, conf=conf, json_out=json_out, plots=plots, top=top,
                 iou_type=iou_type_of(iou_type))
