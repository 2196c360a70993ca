"""``vecexplore mine``: rank an unlabeled pool by likeness to a selection of a run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from vecexplore.cli._app import app
from vecexplore.cli.run import (
    ClusterOpt,
    ImagesFileOpt,
    SavedOpt,
    TextOpt,
    TextTopOpt,
    WhereOpt,
    show_build_logs,
)


@app.command("mine")
def mine_command(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory written by build.")],
    pool: Annotated[Path, typer.Option("--pool", help="Unlabeled images: a folder (searched recursively) or a text file of paths.")],
    k: Annotated[int, typer.Option("--k", min=1, help="How many pool images to write, best first.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write; the contact sheet goes beside it as <stem>.sheet.png.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="txt (one path per line) | csv (rank,path,score) | label-studio (tasks JSON).")] = "txt",
    cluster: ClusterOpt = None,
    images_file: ImagesFileOpt = None,
    where: WhereOpt = None,
    saved: SavedOpt = None,
    text: TextOpt = None,
    text_top: TextTopOpt = 100,
    neighbors: Annotated[int, typer.Option("--neighbors", min=1, help="Run images that vote on each pool image.")] = 10,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps.")] = "auto",
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="Images per forward pass (default per device).")] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=0, help="Image decoding processes (default per device).")] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Embedding cache (default $VECEXPLORE_CACHE or ~/.cache/vecexplore).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out.")] = False,
) -> None:
    """Find more images like a selection of a run (a failure cluster) in an unlabeled pool.

    The pool is embedded with the run's own model, through the embedding cache (a rerun
    embeds nothing; undecodable images are listed in <stem>.unreadable.csv, never fatal).
    Each pool image is scored by a kNN vote: among its --neighbors nearest run images
    (cosine similarity), the similarity-weighted share that are in the selection, times
    (1 + their mean similarity) / 2. Images that look like the selection but more like the
    rest of the run lose the vote. Searches go through FAISS: exact up to 100,000 pool
    vectors; a larger pool gets an 8-bit IVF index (re-ranked exactly) and a table of the
    run's nearest images of every pool image, built once and kept in the cache folder
    (pool-index/), so later mines of the same pool load them. Selectors combine as in
    export (intersection).
    """
    from vecexplore.export import select_images
    from vecexplore.extras import require
    from vecexplore.mining import mine_pool
    from vecexplore.runcheck import open_run

    require("embed", "mine", what="mine")  # before any file is read
    show_build_logs(False)
    run = open_run(run_dir)
    selection = select_images(run, clusters=cluster, images_file=images_file, where=where, saved=saved,
                              text=text, text_top=text_top)
    result = mine_pool(run, selection, pool, k=k, out=out, fmt=fmt, neighbors=neighbors, device=device,
                       batch_size=batch_size, num_workers=workers, cache_dir=cache_dir, force=force,
                       progress=sys.stderr.isatty())
    typer.echo(f"pool: {result.n_pool} images ({result.n_cached} from the cache, {result.n_embedded} embedded now, "
               f"{result.n_failed} unreadable)")
    if result.unreadable:
        head = "; ".join(f"{p}: {r}" for p, r in result.unreadable[:3])
        typer.echo(f"unreadable: {head}{' …' if len(result.unreadable) > 3 else ''} "
                   f"(all in {result.files['unreadable']})")
    best = f"scores {result.scores[0]:.3f} … {result.scores[-1]:.3f}" if len(result.scores) else "no scores"
    typer.echo(f"wrote the top {len(result.paths)} of the pool like {result.n_selected} selected images to "
               f"{result.files['out']} ({fmt}; {best}); contact sheet {result.files['sheet']}")
