"""``vecexplore demo-data``: write the synthetic evaluated dataset with planted failure modes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from vecexplore.cli._app import app


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Option("--out", help="Directory to write (must not exist, or be empty).")],
    task: Annotated[str, typer.Option("--task", help="detection or classification.")] = "detection",
    n: Annotated[int, typer.Option("--n", help="Number of images (>= 20).")] = 600,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; equal seeds give identical files.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing demo dataset in --out.")] = False,
) -> None:
    """Write a synthetic evaluated dataset (images, ground truth, predictions of a simulated
    model with planted failure modes, and planted.json naming them)."""
    from vecexplore.demo import generate_demo

    summary = generate_demo(out, task=task, n=n, seed=seed, force=force, progress=sys.stderr.isatty())
    typer.echo(summary.format())
