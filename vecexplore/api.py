"""The Python API: load, evaluate, build, open, serve, search by a phrase, and mine a pool for more of a failure.

``import vecexplore as vx`` exposes these functions lazily: importing the
package pulls in no torch, open_clip, umap, hdbscan or bokeh, and each function
imports only what it needs. The same objects the CLI uses come back
(:class:`~vecexplore.types.Dataset`, :class:`~vecexplore.eval.evaluate.Evaluation`,
:class:`~vecexplore.store.Run`), so everything in their modules applies.

    >>> import vecexplore as vx
    >>> ds = vx.load_dataset(gt="annotations.json", pred="predictions.json")
    >>> ev = vx.evaluate(ds)                       # pycocotools' 12 stats in ev.coco
    >>> run = vx.build(gt="annotations.json", pred="predictions.json", out="runs/exp")
    >>> server = vx.serve(run, block=False)        # server.url; server.stop()
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vecexplore.errors import ConfigError

if TYPE_CHECKING:
    from vecexplore.app.server import ServerThread
    from vecexplore.eval.evaluate import Evaluation
    from vecexplore.mining import MineResult
    from vecexplore.store import Run
    from vecexplore.types import Dataset

#: Keywords that describe the inputs, shared by :func:`load_dataset` and :func:`build`.
SOURCE_KEYS = ("gt", "pred", "images", "format", "names", "clip", "allow_outside_root")


def _source(source: Any, options: dict[str, Any]):
    """A :class:`~vecexplore.io.source.DatasetSource` (or split source) from either form."""
    from vecexplore.io.source import DatasetSource

    given = {k: v for k, v in options.items() if v is not None}
    if source is not None:
        if given:
            raise ConfigError(f"pass either a source or {', '.join(sorted(given))}, not both")
        if isinstance(source, (str, Path)):
            return DatasetSource(gt=source)
        return source
    if not given:
        raise ConfigError("no inputs given: pass gt= (and pred=, images=, …) or a DatasetSource")
    return DatasetSource(**given)


def load_dataset(
    source: Any = None,
    /,
    *,
    gt: str | Path | None = None,
    pred: str | Path | None = None,
    images: str | Path | None = None,
    format: str | None = None,
    names: str | Sequence[str] | None = None,
    clip: bool | None = None,
    allow_outside_root: bool | None = None,
    check_images: bool = True,
    progress: bool = False,
) -> Dataset:
    """Load and validate an evaluated dataset (COCO, YOLO, classification CSV, ImageFolder).

    Pass the inputs as keywords (the CLI's ``--gt``, ``--pred``, … with the same
    defaults and format detection), or one ``source``: a
    :class:`~vecexplore.io.source.DatasetSource`, a
    :class:`~vecexplore.io.splits.SplitSource`, or a GT path alone.

    Raises:
        InputError: a file is missing or bad (the message names file and record).
        ConfigError: inconsistent options.
    """
    from vecexplore.io.source import load_dataset as load

    src = _source(source, {"gt": gt, "pred": pred, "images": images, "format": format, "names": names,
                           "clip": clip, "allow_outside_root": allow_outside_root})
    return load(src, check_images=check_images, progress=progress)


def evaluate(dataset: Any, *, iou: float = 0.5, confidence: float | None = None) -> Evaluation:
    """Evaluate a dataset's predictions: COCO metrics (detection) or scikit-learn's (classification).

    ``dataset`` is a :class:`~vecexplore.types.Dataset` or anything
    :func:`load_dataset` accepts as its source. ``iou`` and ``confidence`` set the
    operating point of the outcomes and the confusion matrix (None: the
    F1-optimal confidence for detection, 0 for classification); the COCO stats
    do not depend on them. A source is loaded without looking for the images,
    which evaluation does not read.
    """
    from vecexplore.eval.evaluate import evaluate as run_evaluate
    from vecexplore.types import Dataset

    if not isinstance(dataset, Dataset):  # as `vecexplore evaluate`: the images need not be there
        dataset = load_dataset(dataset, check_images=False)
    return run_evaluate(dataset, iou=iou, confidence=confidence)


def build(
    source: Any = None,
    /,
    *,
    out: str | Path,
    gt: str | Path | None = None,
    pred: str | Path | None = None,
    images: str | Path | None = None,
    format: str | None = None,
    names: str | Sequence[str] | None = None,
    clip: bool | None = None,
    allow_outside_root: bool | None = None,
    model: str | None = None,
    weights: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    workers: int | None = None,
    precision: str = "auto",
    seed: int = 0,
    iou: float = 0.5,
    confidence: float | None = None,
    n_neighbors: int | None = None,
    min_cluster_size: int | None = None,
    cache_dir: str | Path | None = None,
    scan_workers: int | None = None,
    dup_threshold: float | None = None,
    train_split: str | None = None,
    force: bool = False,
    progress: bool | None = None,
) -> Run:
    """Build a run (what ``vecexplore build`` does) and return it opened.

    The inputs are given as in :func:`load_dataset`; the rest are the options
    of ``vecexplore build`` (``model``/``weights`` default to its ViT-B-32
    ``laion2b_s34b_b79k``; ``weights="random"`` needs no download).
    ``dup_threshold`` / ``train_split``: ``--dup-threshold`` / ``--train-split`` (None: their
    defaults, 0.95 and ``"train"``; see :mod:`vecexplore.analysis.duplicates`). The returned run's
    ``near_duplicates`` and ``leakage`` hold what they found.
    ``progress`` shows progress bars; None: when stderr is a terminal, as the CLI.
    """
    from vecexplore.builder import BuildConfig, build_run
    from vecexplore.embed.pipeline import EmbedConfig
    from vecexplore.mapping.config import MapConfig
    from vecexplore.runcheck import open_run as open_checked

    src = _source(source, {"gt": gt, "pred": pred, "images": images, "format": format, "names": names,
                           "clip": clip, "allow_outside_root": allow_outside_root})
    embed = {k: v for k, v in {"model": model, "weights": weights}.items() if v is not None}
    dups = {k: v for k, v in {"dup_threshold": dup_threshold, "train_split": train_split}.items() if v is not None}
    config = BuildConfig(
        source=src,
        out=Path(out),
        embed=EmbedConfig(device=device, batch_size=batch_size, num_workers=workers, precision=precision,
                          seed=seed, **embed),
        map=MapConfig(seed=seed, n_neighbors=n_neighbors, min_cluster_size=min_cluster_size),
        iou=iou,
        confidence=confidence,
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
        force=force,
        scan_workers=scan_workers,
        **dups,
    )
    if progress is None:
        import sys

        progress = sys.stderr.isatty()
    result = build_run(config, progress=progress)
    return open_checked(result.out)


def open_run(path: str | Path) -> Run:
    """Open a run directory written by :func:`build`, checking every file of it.

    Raises:
        RunStoreError: not a run, or a file of it is missing or damaged.
    """
    from vecexplore.runcheck import open_run as open_checked

    return open_checked(path)


def search_text(run: Any, phrase: str, /, *, top: int = 100, device: str = "auto"):
    """The ``top`` images of ``run`` (a run object or directory) that CLIP's text tower finds closest
    to ``phrase`` ("at night", "in fog"), best first, as a DataFrame: ``rank``, ``image_idx``,
    ``image_id``, ``file_name``, ``similarity`` (cosine). The run's own model is loaded (the
    weights it was embedded with); the method is in :mod:`vecexplore.text_search`.

    Raises:
        WeightsError: the run has random weights (similarities would mean nothing), or its
            model cannot be loaded here.
        ConfigError: an empty phrase or a bad ``top``.
    """
    import pandas as pd

    from vecexplore.text_search import TextSearch

    opened = run if hasattr(run, "images") else open_run(run)
    matches = TextSearch(opened, device=device).search(phrase, top)
    images = opened.images
    return pd.DataFrame({"rank": range(1, len(matches.image_idx) + 1), "image_idx": matches.image_idx,
                         "image_id": images["image_id"].to_numpy()[matches.image_idx],
                         "file_name": images["file_name"].to_numpy()[matches.image_idx],
                         "similarity": matches.similarity})


def mine(
    run: Any,
    /,
    *,
    pool: str | Path,
    k: int,
    out: str | Path,
    cluster: int | Sequence[int] | None = None,
    selection: str | Sequence[str] | None = None,
    images_file: str | Path | None = None,
    where: str | None = None,
    text: str | None = None,
    text_top: int = 100,
    format: str = "txt",
    neighbors: int = 10,
    device: str = "auto",
    batch_size: int | None = None,
    workers: int | None = None,
    cache_dir: str | Path | None = None,
    force: bool = False,
    progress: bool | None = None,
) -> MineResult:
    """Find the ``k`` pool images most like a selection of ``run`` (what ``vecexplore mine`` does).

    ``run`` is a run object or directory; the selection is given as in ``export``
    (``cluster`` ids, saved ``selection`` names, an ``images_file``, a ``where``
    condition, the ``text_top`` images closest to a ``text`` phrase; several combine by
    intersection). ``pool`` is a folder of images or a
    text file of paths; it is embedded with the run's model through the embedding
    cache. Writes ``out`` (``format`` txt, csv or label-studio) and the contact sheet
    beside it, and returns a :class:`~vecexplore.mining.MineResult` (``paths``,
    ``scores``, ``files``, cache counts). The method is in :mod:`vecexplore.mining.rank`.
    """
    from vecexplore.export import select_images
    from vecexplore.mining import mine_pool

    opened = run if hasattr(run, "images") else open_run(run)
    clusters = [cluster] if isinstance(cluster, int) else cluster
    saved = [selection] if isinstance(selection, str) else selection
    chosen = select_images(opened, clusters=clusters, images_file=images_file, where=where, saved=saved,
                           text=text, text_top=text_top)
    if progress is None:
        import sys

        progress = sys.stderr.isatty()
    return mine_pool(opened, chosen, pool, k=k, out=out, fmt=format, neighbors=neighbors, device=device,
                     batch_size=batch_size, num_workers=workers, cache_dir=cache_dir, force=force,
                     progress=progress)


def serve(
    *runs: Any,
    port: int = 5006,
    host: str = "127.0.0.1",
    allow_websocket_origin: Sequence[str] | None = None,
    block: bool = True,
) -> ServerThread | None:
    """Serve the web app for one or more runs (run objects or directories).

    ``block=True`` serves until Ctrl+C, as ``vecexplore serve``. ``block=False``
    (notebooks) returns a running :class:`~vecexplore.app.server.ServerThread`:
    its ``.url`` opens the page, ``.stop()`` ends it. The server binds to this
    machine only unless ``host`` says otherwise.
    """
    if not runs:
        raise ConfigError("serve: give at least one run or run directory")
    paths = [Path(getattr(r, "path", r)) for r in runs]
    if block:
        from vecexplore.cli.serve import serve_runs

        serve_runs(paths, port=port, host=host, allow_websocket_origin=allow_websocket_origin)
        return None
    from vecexplore.app.server import ServerThread

    return ServerThread(paths, port=port, host=host, allow_websocket_origin=allow_websocket_origin)


__all__ = ["build", "evaluate", "load_dataset", "mine", "open_run", "serve"]
