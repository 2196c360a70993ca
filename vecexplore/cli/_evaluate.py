"""The body of ``vecexplore evaluate``, free of Typer: the Typer command
(:mod:`vecexplore.cli.evaluate`) and the fast path (:mod:`vecexplore.cli._fast`)
both call :func:`run_evaluate`."""

from __future__ import annotations

import sys
from pathlib import Path


def run_evaluate(*, gt, pred, images, format, names, clip: bool, no_clip: bool, allow_outside_root: bool,
                 iou: float, conf: float | None, json_out: Path | None, plots: Path | None, top: int,
                 iou_type: str | None = None) -> None:
    """Load, evaluate, print the report; write ``--json`` and ``--plots`` when asked.

    ``iou_type``: "segm", "bbox" or None (segm when both sides carry masks).
    """
    from vecexplore.cli._source import source_from_options
    from vecexplore.errors import ConfigError
    from vecexplore.eval.evaluate import evaluate
    from vecexplore.eval.report import build_report, report_text
    from vecexplore.io import load_dataset

    source = source_from_options(gt=gt, pred=pred, images=images, format=format, names=names, clip=clip,
                                 no_clip=no_clip, allow_outside_root=allow_outside_root)
    dataset = load_dataset(source, check_images=False, progress=sys.stderr.isatty())
    if dataset.task == "classification" and iou != 0.5:
        raise ConfigError("--iou applies to detection only; this is a classification dataset")
    from vecexplore.eval.operating_point import OperatingPoint

    OperatingPoint(iou, conf)
    result = evaluate(dataset, iou=iou, confidence=conf, iou_type=iou_type)
    if sys.stdout.isatty():  # headings in bold through rich
        from rich.console import Console

        Console().print(build_report(result, top=top))
    else:  # a pipe or a file: the same lines as plain text, never cut or wrapped (and no rich import)
        sys.stdout.write(report_text(result, top=top))
    if json_out is not None:
        _write_json(result.to_json_dict(), json_out)
        _echo(f"wrote {json_out}")
    if plots is not None:
        from vecexplore.eval.plots import write_plots

        for path in write_plots(result, plots):
            _echo(f"wrote {path}")


def _echo(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _write_json(doc: dict, path: Path) -> None:
    """Write ``doc`` atomically; a missing folder is a usage error, not a traceback."""
    from vecexplore.atomic import atomic_write_json
    from vecexplore.errors import ConfigError

    path = Path(path)
    if not path.parent.is_dir():
        raise ConfigError(f"--json {path}: folder {path.parent} does not exist")
    atomic_write_json(path, doc)
