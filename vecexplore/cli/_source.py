"""The :class:`DatasetSource` the common input options describe, without Typer
(``vecexplore evaluate``'s fast path uses it too; see :mod:`vecexplore.cli._fast`)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from vecexplore.io.source import DatasetSource
from vecexplore.io.splits import SplitSource, source_for


def source_from_options(
    *,
    gt: Path | list[Path] | None,
    pred: Path | list[Path] | None,
    images: Path | None,
    format: str | Enum = "auto",
    names: str | None = None,
    clip: bool = False,
    no_clip: bool = False,
    allow_outside_root: bool = False,
) -> DatasetSource | SplitSource:
    """The source the common input options describe (validated; inconsistent
    options raise ConfigError, which the CLI prints as ``error: …``).

    ``--gt``/``--pred`` given several times in pairs give a
    :class:`~vecexplore.io.splits.SplitSource` (see :mod:`vecexplore.io.splits`).
    ``no_clip`` (the hidden ``--no-clip``) is the default and changes nothing; with
    ``clip`` it is a contradiction.
    """
    if clip and no_clip:
        from vecexplore.errors import ConfigError

        raise ConfigError("--clip and --no-clip contradict each other; boxes are evaluated as given unless --clip")
    fmt = (format.value if isinstance(format, Enum) else str(format)).lower()

    def listed(value) -> list[Path]:
        return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]

    return source_for(
        gt=listed(gt),
        pred=listed(pred),
        images=images,
        format=None if fmt == "auto" else fmt,
        names=names,
        clip=clip,
        allow_outside_root=allow_outside_root,
    )
