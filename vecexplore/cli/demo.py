"""``vecexplore demo``: the built-in demo, end to end (what ``make demo`` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vecexplore.cli._app import app


@app.command("demo")
def demo_command(
    dir: Annotated[Path, typer.Option("--dir", help="Where the demo data and run go.")] = Path("demo"),
    task: Annotated[str, typer.Option("--task", help="detection | classification.")] = "detection",
    n: Annotated[int, typer.Option("--n", min=20, help="Number of demo images.")] = 600,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the demo data and the map.")] = 0,
    model: Annotated[str, typer.Option("--model", help="open_clip architecture.")] = "ViT-B-32",
    weights: Annotated[str, typer.Option(
        "--weights", help="Pretrained tag or checkpoint; falls back to random weights (loudly) when offline.",
    )] = "laion2b_s34b_b79k",
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | mps.")] = "auto",
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Regenerate the data and rebuild the run.")] = False,
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the run when it is built.")] = True,
    port: Annotated[int, typer.Option("--port", help="Port of the web app.")] = 5006,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    show: Annotated[bool, typer.Option("--show", help="Open a browser.")] = False,
) -> None:
    """Generate the synthetic demo dataset (planted failure modes), build it and serve it.

    Reuses what an earlier `vecexplore demo` made in --dir unless --rebuild.
    Offline (no model download possible), the model falls back to random weights
    and every view says so.
    """
    import sys

    from vecexplore.extras import require

    require("embed", "map", *(("app",) if serve else ()), what="vecexplore demo")
    from vecexplore.builder import BuildConfig, build_run
    from vecexplore.cli._render import render_info
    from vecexplore.cli.run import print_summary, show_build_logs
    from vecexplore.demo import demo_source, generate_demo
    from vecexplore.embed.pipeline import EmbedConfig
    from vecexplore.info import run_summary
    from vecexplore.mapping.config import MapConfig
    from vecexplore.store import MANIFEST, Run

    show_build_logs(verbose=False)
    data_dir, run_dir = dir / f"data-{task}", dir / f"run-{task}"
    if rebuild or not (data_dir / "planted.json").exists():
        summary = generate_demo(data_dir, task=task, n=n, seed=seed, force=True, progress=sys.stderr.isatty())
        typer.echo(summary.format())
    else:
        typer.echo(f"using the demo data in {data_dir} (--rebuild regenerates it)")
    if rebuild or not (run_dir / MANIFEST).exists():
        config = BuildConfig(
            source=demo_source(data_dir, task=task),
            out=run_dir,
            embed=EmbedConfig(model=model, weights=weights, device=device, seed=seed),
            map=MapConfig(seed=seed),
            force=True,
            random_fallback=True,
        )
        print_summary(build_run(config, progress=sys.stderr.isatty()))
    else:
        typer.echo(f"using the demo run in {run_dir} (--rebuild rebuilds it)")
    render_info(run_summary(Run(run_dir)), top=5)
    if serve:
        from vecexplore.cli.serve import serve_runs

        serve_runs([run_dir], port=port, host=host, show=show)
