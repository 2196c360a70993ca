"""The input options every data-reading command shares, and their DatasetSource.

Usage in a command module::

    from vecexplore.cli._inputs import (AllowOutsideRootOpt, FormatChoice, FormatOpt, GtOpt, ImagesOpt,
                                        NamesOpt, ClipOpt, NoClipOpt, PredOpt, source_from_options)

    @app.command("evaluate")
    def evaluate(gt: GtOpt = None, pred: PredOpt = None, images: ImagesOpt = None,
                 format: FormatOpt = FormatChoice.auto, names: NamesOpt = None,
                 clip: ClipOpt = False, no_clip: NoClipOpt = False,
                 allow_outside_root: AllowOutsideRootOpt = False):
        source = source_from_options(gt=gt, pred=pred, images=images, format=format, names=names,
                                     clip=clip, no_clip=no_clip, allow_outside_root=allow_outside_root)
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from vecexplore.cli._source import source_from_options  # noqa: F401  (re-exported: commands import it from here)
from vecexplore.io.source import FORMATS

_PANEL = "Inputs"

#: The ``--format`` values: ``auto`` (detect from ``--gt``) or one of the input formats.
FormatChoice = Enum("FormatChoice", {f: f for f in ("auto", *FORMATS)}, type=str)

GtOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--gt",
        metavar="PATH",
        help="Ground truth: COCO instances JSON, classification CSV, YOLO labels folder, or ImageFolder root. "
        "Repeat with --pred in pairs (COCO, CSV) to load several files as splits named by the file stems.",
        rich_help_panel=_PANEL,
    ),
]
PredOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--pred",
        metavar="PATH",
        help="Predictions: COCO results JSON (or .jsonl / .ndjson JSON Lines, .parquet), "
        "CSV (file_name,prediction,score[,score_<class>…]), "
        "or YOLO predictions folder (class cx cy w h conf). Optional when the CSV given to --gt has them.",
        rich_help_panel=_PANEL,
    ),
]
ImagesOpt = Annotated[
    Path | None,
    typer.Option(
        "--images",
        help="Folder image paths resolve against, the images root (default: the GT file's folder; for YOLO, "
        "the images folder). Images outside it are refused unless --allow-outside-root.",
        rich_help_panel=_PANEL,
    ),
]
FormatOpt = Annotated[
    FormatChoice,
    typer.Option("--format", case_sensitive=False, help="Input format; auto detects it from --gt.",
                 rich_help_panel=_PANEL),
]
NamesOpt = Annotated[
    str | None,
    typer.Option(
        "--names",
        help="Class names: YOLO data.yaml, a text file with one name per line, or 'cat,dog,…'.",
        rich_help_panel=_PANEL,
    ),
]
class IouTypeChoice(str, Enum):
    auto = "auto"
    segm = "segm"
    bbox = "bbox"


IouTypeOpt = Annotated[
    IouTypeChoice,
    typer.Option(
        "--iou-type",
        help="Overlap of the object outcomes, error types and confusion matrix: segm (mask IoU) or bbox. "
             "Default auto: segm when ground truth and predictions carry masks, else bbox.",
        case_sensitive=False,
    ),
]


def iou_type_of(choice: IouTypeChoice) -> str | None:
    """The evaluate() argument of an ``--iou-type`` choice (None = auto)."""
    return None if choice == IouTypeChoice.auto else choice.value


ClipOpt = Annotated[
    bool,
    typer.Option(
        "--clip",
        help="Clip boxes that cross the image border to it before evaluating. Off by default: boxes are "
        "evaluated as given, as pycocotools does, so the default metrics are pycocotools'. With --clip every "
        "report, --json and run says the metrics use clipped boxes.",
        rich_help_panel=_PANEL,
    ),
]
#: ``--no-clip``: the old opt-out, now the default; accepted (hidden) so that old scripts keep working.
NoClipOpt = Annotated[
    bool,
    typer.Option("--no-clip", hidden=True, help="Accepted and ignored: boxes are evaluated as given by default."),
]


AllowOutsideRootOpt = Annotated[
    bool,
    typer.Option(
        "--allow-outside-root",
        help="Read images whose path resolves outside the images root (../x.jpg, absolute paths elsewhere, "
        "symlinks pointing out) instead of refusing them. The run records it; its app then serves them.",
        rich_help_panel=_PANEL,
    ),
]
