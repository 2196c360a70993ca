"""``vecexplore build``, ``info`` and ``export``: make a run, read it, take images out of it."""

from __future__ import annotations

import json
import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from vecexplore.analysis.duplicates import DEFAULT_THRESHOLD, DEFAULT_TRAIN_SPLIT
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
    source_from_options,
)
from vecexplore.cli._stderr import CurrentStderr

_MODEL = "Model"
_MAP = "Map"
_ENGINE = "Engine"


class EngineChoice(str, Enum):
    local = "local"
    ray = "ray"


class LevelChoice(str, Enum):
    """``--level`` of ``vecexplore build`` (see :data:`vecexplore.builder.Level`)."""

    auto = "auto"
    images = "images"
    objects = "objects"
    both = "both"


def show_build_logs(verbose: bool) -> None:
    """Stage messages of vecexplore on stderr; third-party INFO chatter stays hidden."""
    handler = CurrentStderr()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("vecexplore")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


@app.command("build")
def build_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")],
    gt: GtOpt = None,
    pred: PredOpt = None,
    images: ImagesOpt = None,
    format: FormatOpt = FormatChoice.auto,
    names: NamesOpt = None,
    clip: ClipOpt = False,
    no_clip: NoClipOpt = False,
    allow_outside_root: AllowOutsideRootOpt = False,
    model: Annotated[str, typer.Option("--model", help="open_clip architecture.", rich_help_panel=_MODEL)] = "ViT-B-32",
    weights: Annotated[str, typer.Option(
        "--weights", rich_help_panel=_MODEL,
        help="open_clip pretrained tag, a local checkpoint file, or 'random' (untrained; offline).",
    )] = "laion2b_s34b_b79k",
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps.", rich_help_panel=_MODEL)] = "auto",
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="Images per forward pass (default per device).", rich_help_panel=_MODEL)] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=0, help="Image decoding processes (default per device).", rich_help_panel=_MODEL)] = None,
    precision: Annotated[str, typer.Option("--precision", help="auto | fp32 | fp16 | bf16.", rich_help_panel=_MODEL)] = "auto",
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Embedding cache (default $VECEXPLORE_CACHE or ~/.cache/vecexplore).", rich_help_panel=_MODEL)] = None,
    iou: Annotated[float, typer.Option("--iou", min=0.0, max=1.0, help="IoU threshold of the operating point.")] = 0.5,
    iou_type: IouTypeOpt = IouTypeChoice.auto,
    conf: Annotated[float | None, typer.Option("--conf", min=0.0, max=1.0, help="Confidence threshold (default: F1-optimal).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of UMAP (and of random weights).", rich_help_panel=_MAP)] = 0,
    n_neighbors: Annotated[int | None, typer.Option("--n-neighbors", min=2, help="UMAP neighbours (default scales with N).", rich_help_panel=_MAP)] = None,
    min_cluster_size: Annotated[int | None, typer.Option("--min-cluster-size", min=2, help="HDBSCAN min cluster size (default scales with N).", rich_help_panel=_MAP)] = None,
    dup_threshold: Annotated[float, typer.Option(
        "--dup-threshold", help="Cosine similarity from which two images are near duplicates "
        f"(default {DEFAULT_THRESHOLD}: augmented copies stay above it with CLIP).")] = DEFAULT_THRESHOLD,
    train_split: Annotated[str, typer.Option(
        "--train-split", help="The split whose near duplicates in other splits are leakage.")] = DEFAULT_TRAIN_SPLIT,
    engine: Annotated[EngineChoice, typer.Option(
        "--engine", rich_help_panel=_ENGINE,
        help="local (this machine) | ray: embedding and the image scan as a Ray Data pipeline, one "
        "CLIP actor per GPU (CPU actors without GPUs), into the same embedding cache.")] = EngineChoice.local,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", rich_help_panel=_ENGINE,
        help="Ray cluster for --engine ray: HOST:PORT of the head (6379) or auto on a cluster node "
        "(default: $RAY_ADDRESS, else a local Ray instance).")] = None,
    level: Annotated[LevelChoice, typer.Option(
        "--level", rich_help_panel=_MAP,
        help="What to embed and map: images, objects (a crop of every GT object and counted prediction; "
             "detection), both, or auto (both for detection runs of at most 50,000 such objects, else images).",
    )] = LevelChoice.auto,
    crop_padding: Annotated[float, typer.Option(
        "--crop-padding", min=0.0, rich_help_panel=_MAP,
        help="Context around an object crop, as a share of the box's longer side on each side.")] = 0.25,
    crop_min_size: Annotated[int, typer.Option(
        "--crop-min-size", min=1, rich_help_panel=_MAP, help="Smallest object crop side in pixels.")] = 32,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing run at --out.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="More detail on stderr.")] = False,
) -> None:
    """Load, evaluate, embed (CLIP), map (UMAP) and cluster (HDBSCAN) a dataset into a run.

    The run directory appears only when the build is complete; an interrupted
    build leaves nothing that looks finished, and rerunning it takes the
    embeddings already computed from the cache.
    """
    from vecexplore.builder import BuildConfig, build_run
    from vecexplore.embed.crops import CropConfig
    from vecexplore.embed.pipeline import EmbedConfig
    from vecexplore.mapping.config import MapConfig

    show_build_logs(verbose)
    source = source_from_options(gt=gt, pred=pred, images=images, format=format, names=names, clip=clip, no_clip=no_clip,
                                 allow_outside_root=allow_outside_root)
    config = BuildConfig(
        source=source,
        out=out,
        embed=EmbedConfig(model=model, weights=weights, device=device, batch_size=batch_size,
                          num_workers=workers, precision=precision, seed=seed),
        map=MapConfig(seed=seed, n_neighbors=n_neighbors, min_cluster_size=min_cluster_size),
        iou=iou,
        iou_type=iou_type_of(iou_type),
        confidence=conf,
        cache_dir=cache_dir,
        force=force,
        dup_threshold=dup_threshold,
        train_split=train_split,
        engine=engine.value,
        ray_address=ray_address,
        level=level.value,
        crop=CropConfig(padding=crop_padding, min_size=crop_min_size),
    )
    result = build_run(config, progress=sys.stderr.isatty())
    print_summary(result)


def print_summary(result) -> None:
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    typer.echo(f"built {result.out}: {result.n_images} images, {result.n_clusters} clusters, "
               f"{result.n_unreadable} unreadable ({stages})")
    if result.level in ("objects", "both"):
        typer.echo(f"object-level map ({result.level}): {result.n_objects_mapped} objects, "
                   f"{result.n_object_clusters} clusters")
    if result.weights_random:
        typer.echo("NOTE: this run uses RANDOM (untrained) weights: the map groups images by "
                   "low-level appearance, not meaning.")
    typer.echo(f"next: vecexplore info {result.out}   |   vecexplore serve {result.out}")


@app.command("compare")
def compare_command(
    run_a: Annotated[Path, typer.Argument(metavar="RUN_A", help="The run of model A (its map and clusters are used).")],
    run_b: Annotated[Path, typer.Argument(metavar="RUN_B", help="The run of model B, on the same images and GT.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Comparison run directory to write.")],
    level: Annotated[float, typer.Option("--level", help="Confidence level of the paired interval.")] = 0.95,
    n_boot: Annotated[int, typer.Option("--n-boot", help="Bootstrap resamples per cluster.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing run at --out.")] = False,
) -> None:
    """Compare two models on the same images and ground truth: which of A's clusters B made
    worse (regressions) or better (improvements), surest first.

    Writes a run (A's map, clusters and thumbnails, both models' outcomes) that
    info, export and serve read like any other.
    """
    from vecexplore.compare import compare_runs

    show_build_logs(False)
    result = compare_runs(run_a, run_b, out, force=force, level=level, n_boot=n_boot, seed=seed)
    o = result.overall
    sure_worse = sum(r["sure"] for r in result.regressions)
    sure_better = sum(r["sure"] for r in result.improvements)
    typer.echo(f"compared {result.n_images} images into {result.out}: mean error rate {o['error_a']:.3f} → "
               f"{o['error_b']:.3f} (Δ {o['delta']:+.3f} [{o['ci_low']:+.3f}, {o['ci_high']:+.3f}]); "
               f"{sure_worse} cluster(s) surely worse, {sure_better} surely better")
    typer.echo(f"next: vecexplore info {result.out}   |   vecexplore serve {result.out}")


@app.command("info")
def info_command(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory written by build.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    top: Annotated[int, typer.Option("--top", min=1, help="How many clusters to list.")] = 10,
) -> None:
    """Headline metrics, weights, unreadable images and the ranked failure clusters of a run."""
    from vecexplore.info import run_summary
    from vecexplore.runcheck import open_run

    summary = run_summary(open_run(run_dir))
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    from vecexplore.cli._render import render_info

    render_info(summary, top=top)


#: The selectors of ``export`` and ``mine`` (see :func:`vecexplore.export.select_images`).
ClusterOpt = Annotated[list[int] | None, typer.Option("--cluster", help="Select a cluster (repeatable).")]
ImagesFileOpt = Annotated[Path | None, typer.Option("--images-file", help="Select images listed in a file (ids, file names or paths).")]
WhereOpt = Annotated[str | None, typer.Option("--where", help="Select images by a condition, e.g. \"error_rate > 0.5 and split == 'val'\" or \"'hard' in tags\".")]
SavedOpt = Annotated[list[str] | None, typer.Option("--selection", help="Select a selection saved in the app (repeatable).")]
TextOpt = Annotated[str | None, typer.Option("--text", help="Select the images CLIP finds closest to a phrase, e.g. \"at night\" (runs with trained weights).")]
TextTopOpt = Annotated[int, typer.Option("--text-top", min=1, help="How many images --text selects.")]


@app.command("export")
def export_command(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory written by build.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write (a folder for yolo).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv | json | coco | yolo | txt | label-studio | cvat.")] = "csv",
    cluster: ClusterOpt = None,
    images_file: ImagesFileOpt = None,
    where: WhereOpt = None,
    saved: SavedOpt = None,
    text: TextOpt = None,
    text_top: TextTopOpt = 100,
    document_root: Annotated[Path | None, typer.Option(
        "--document-root", help="label-studio: reference images as Label Studio local files "
        "(/data/local-files/?d=PATH relative to this folder, Label Studio's LOCAL_FILES_DOCUMENT_ROOT) "
        "instead of by absolute path.")] = None,
    with_images: Annotated[bool, typer.Option("--with-images", help="cvat: put the image files in the zip too.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out.")] = False,
) -> None:
    """Export a selection of a run's images: a COCO or YOLO subset, Label Studio tasks
    (GT and predictions as pre-annotations) or a CVAT archive for relabeling, a list of
    paths for data collection, or a CSV/JSON table of their outcomes.

    Selections combine: every given selector must hold (intersection).
    """
    from vecexplore.export import export_selection, select_images
    from vecexplore.runcheck import open_run

    run = open_run(run_dir)
    selection = select_images(run, clusters=cluster, images_file=images_file, where=where, saved=saved,
                              text=text, text_top=text_top)
    path = export_selection(run, selection, fmt=fmt, out=out, force=force, document_root=document_root,
                            with_images=with_images)
    typer.echo(f"wrote {len(selection)} images to {path} ({fmt})")
    if fmt == "label-studio":
        from vecexplore.labeltools.label_studio import import_hint

        for line in import_hint(path, document_root=document_root):
            typer.echo(line)


@app.command("merge-labels")
def merge_labels_command(
    gt: Annotated[Path, typer.Option("--gt", help="The original COCO ground truth.")],
    relabeled: Annotated[Path, typer.Option("--relabeled", help="COCO exported from Label Studio or CVAT (a .json or its .zip).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The merged COCO ground truth to write.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out.")] = False,
) -> None:
    """Put labels fixed in Label Studio or CVAT back into the original COCO ground truth:
    the relabeled images' annotations are replaced (images matched by file name, classes by
    name), everything else is kept. Then build again and compare."""
    from vecexplore.atomic import atomic_write_text
    from vecexplore.errors import ConfigError
    from vecexplore.io._read import read_json
    from vecexplore.labeltools.merge import merge_coco, read_coco

    if out.exists() and not force:
        raise ConfigError(f"{out}: already exists; pass --force to overwrite")
    merged, report = merge_coco(read_json(gt), read_coco(relabeled), gt_path=gt, relabeled_path=relabeled)
    atomic_write_text(out, json.dumps(merged) + "\n")
    typer.echo(f"wrote {out}: the annotations of {report.n_images} relabeled images replaced "
               f"({report.n_before} → {report.n_after} annotations)")
