"""``vecexplore build``: files → evaluated, embedded, mapped and ranked run.

Stages (each timed into the manifest):

1. **load**: read and validate the inputs; every missing image is reported
   before any heavy work starts.
2. **evaluate**: outcomes at the operating point (IoU, confidence), COCO metrics,
   sweep, confusion matrix.
3. **embed**: CLIP vectors (cached outside the run, keyed by model, weights and
   image content), undecodable images recorded, never fatal.
4. **scan**: one reduced-size decode per image for thumbnails and pixel properties.
5. **map**: kNN once → UMAP 2-D (display) + UMAP ~10-D → HDBSCAN, on the
   decodable images only.
6. **slices**: clusters merged along HDBSCAN's hierarchy where one failure mode
   was split (:mod:`vecexplore.mapping.hierarchy`), per-slice outcome rates,
   ranked by how surely they are worse; the hierarchy is kept in the run
   (``cluster_tree.parquet``) so the app can re-slice at other operating points.
   **words**: each slice described by CLIP's text tower (zero-shot over conditions
   and class names; ``words.json``, ``text_embeddings.npy``; hidden with random
   weights; see :mod:`vecexplore.analysis.words`).
7. **labels**: every GT object (image label) scored by how likely it is wrong
   (``label_issues.parquet``; see :mod:`vecexplore.analysis.label_issues`).
8. **duplicates**: near-duplicate image pairs within and across splits, and the
   images of other splits that leak from the train split, with the metrics
   without them (``near_duplicates.parquet``, ``leakage.json``; see
   :mod:`vecexplore.analysis.duplicates`).
9. **analyse**: property importance, cluster descriptions and recommendations
   (``analysis.json``, ``recommendations.json``; see :mod:`vecexplore.analysis.stage`);
   the likely label errors are one of them.
10. **write**: the run store, atomically (see :mod:`vecexplore.store`).
"""

from __future__ import annotations

import logging
import platform
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vecexplore.analysis.duplicates import DEFAULT_THRESHOLD, DEFAULT_TRAIN_SPLIT, check_threshold
from vecexplore.embed.crops import CropConfig
from vecexplore.embed.pipeline import EmbedConfig
from vecexplore.io.source import DatasetSource
from vecexplore.mapping.config import MapConfig
from vecexplore.store import MANIFEST, SCHEMA_VERSION, estimate_run_bytes, write_run
from vecexplore.store.layout import (
    CATEGORIES,
    CLASS_SCORES,
    CLUSTER_TREE,
    CLUSTERS,
    EMBEDDINGS,
    IMAGES,
    LABEL_ISSUES,
    METRICS,
    OBJECT_EMBEDDINGS,
    OBJECT_SLICES,
    OBJECTS,
)

log = logging.getLogger(__name__)

#: What a build maps: ``images``, ``objects`` (a crop of every non-crowd GT object and every
#: prediction counted at the operating point; detection only), ``both``, or ``auto``.
Level = Literal["auto", "images", "objects", "both"]
LEVELS: tuple[str, ...] = ("auto", "images", "objects", "both")
#: ``auto`` is ``both`` for detection runs with at most this many objects to embed (non-crowd GT +
#: counted predictions), ``images`` above it (and for classification): on a CPU a crop costs what
#: an image costs, so 50k objects is about the embedding time of 50k images.
AUTO_BOTH_MAX_OBJECTS = 50_000


def resolve_level(level: str, task: str, n_objects: int) -> str:
    """The level a build maps at (see :data:`Level`).

    Raises:
        ConfigError: an unknown level, or ``objects``/``both`` for classification.
    """
    from vecexplore.errors import ConfigError

    if level not in LEVELS:
        raise ConfigError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    if level == "auto":
        if task != "detection":
            return "images"
        if n_objects > AUTO_BOTH_MAX_OBJECTS:
            log.info("%d objects to embed > %d: mapping images only (pass --level both to map objects too)",
                     n_objects, AUTO_BOTH_MAX_OBJECTS)
            return "images"
        return "both"
    if level != "images" and task != "detection":
        raise ConfigError(f"--level {level}: the object-level map needs a detection dataset, this one is {task}")
    return level


@dataclass(frozen=True)
class BuildConfig:
    """Everything a build needs. Frozen; user values are recorded as given.

    Attributes:
        source: the inputs (annotations, predictions, images root).
        out: the run directory to write.
        embed: model, weights, device, batch size, workers, precision.
        map: UMAP/HDBSCAN settings (None fields scale with the image count).
        iou: IoU threshold of the operating point (detection).
        iou_type: ``"segm"`` or ``"bbox"`` overlap for the outcomes; None = segm when
            the inputs carry masks (recorded in the manifest as resolved).
        confidence: confidence threshold; None = the F1-optimal one (detection) or 0.
        cache_dir: embedding cache root; None = ``$VECEXPLORE_CACHE`` or ~/.cache/vecexplore.
        force: replace an existing run at ``out``.
        random_fallback: when the weights cannot be loaded, fall back to random
            weights (loudly) instead of failing — for ``vecexplore demo`` only.
        scan_workers: processes for thumbnails/properties (None = auto, 0 = inline).
        dup_threshold: cosine similarity from which two images are near duplicates.
        train_split: the split whose near duplicates in other splits are leakage.
        engine: ``"local"`` (this process and its workers) or ``"ray"``: the embed stage and
            the scan as Ray Data pipelines (:mod:`vecexplore.scale`), into the same cache.
        ray_address: the Ray cluster (``HOST:PORT``, ``ray://HOST:PORT``, ``auto``); None:
            ``$RAY_ADDRESS``, else a local Ray instance. Only with ``engine="ray"``.
        level: what is mapped (:data:`Level`; ``auto`` = :func:`resolve_level`).
        crop: padding and minimum size of object crops (:mod:`vecexplore.embed.crops`).
    """

    source: DatasetSource
    out: Path
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    map: MapConfig = field(default_factory=MapConfig)
    iou: float = 0.5
    iou_type: str | None = None
    confidence: float | None = None
    cache_dir: Path | None = None
    force: bool = False
    random_fallback: bool = False
    scan_workers: int | None = None
    dup_threshold: float = DEFAULT_THRESHOLD
    train_split: str = DEFAULT_TRAIN_SPLIT
    engine: str = "local"
    ray_address: str | None = None
    level: Level = "auto"
    crop: CropConfig = field(default_factory=CropConfig)

    def __post_init__(self):
        from vecexplore.errors import ConfigError
        from vecexplore.eval.operating_point import OperatingPoint
        from vecexplore.scale import ENGINES

        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.ray_address is not None and self.engine != "ray":
            raise ConfigError("--ray-address is for --engine ray")
        if self.engine == "ray" and self.level in ("objects", "both"):
            raise ConfigError(f"--level {self.level}: object crops are embedded by the local engine only; "
                              "use --level images (or auto) with --engine ray")
        if self.level not in LEVELS:
            raise ConfigError(f"level must be one of {', '.join(LEVELS)}, got {self.level!r}")

        check_threshold(self.dup_threshold)
        point = OperatingPoint(self.iou, self.confidence)
        object.__setattr__(self, "iou", point.iou)  # frozen: the checked floats replace what was given
        object.__setattr__(self, "confidence", point.confidence)


@dataclass
class BuildResult:
    """What a build produced (for the CLI summary)."""

    out: Path
    n_images: int
    n_unreadable: int
    n_clusters: int
    timings: dict[str, float]
    weights_random: bool
    fallback_reason: str | None
    level: str = "images"
    n_objects_mapped: int = 0
    n_object_clusters: int = 0


class _Timer:
    def __init__(self):
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        log.info("%s …", name)
        start = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - start, 3)
        log.info("%s done in %.1f s", name, self.timings[name])


def build_run(config: BuildConfig, *, progress: bool = False) -> BuildResult:
    """Run every stage and write the run store at ``config.out``.

    Raises:
        VecexploreError: bad input, weights that cannot be loaded, an existing run
            without ``force``, a Ray cluster that cannot be reached. Nothing is written
            at ``config.out`` on failure.
    """
    from vecexplore.extras import require

    require("embed", "map", what="build")
    if config.engine == "ray":
        require("ray", what="--engine ray")
    out = Path(config.out)
    _refuse_early(out, config.force)
    if config.engine != "ray":
        return _build(config, out, progress)
    from vecexplore.scale.cluster import ray_session

    with ray_session(config.ray_address):
        return _build(config, out, progress)


def _build(config: BuildConfig, out: Path, progress: bool) -> BuildResult:
    from vecexplore.eval.evaluate import evaluate
    from vecexplore.io import LoadReport
    from vecexplore.io.paths import image_paths
    from vecexplore.io.source import load_dataset

    timer = _Timer()
    report = LoadReport()
    with timer.stage("load"):
        dataset = load_dataset(config.source, check_images=True, progress=progress, report=report)
    paths = [str(p) for p in image_paths(dataset.images, dataset.images_root)]
    with timer.stage("evaluate"):
        ev = evaluate(dataset, iou=config.iou, confidence=config.confidence, iou_type=config.iou_type)
        per_image = ev.per_image
        metrics = ev.to_json_dict()
    from vecexplore.mapping.objects import mapped_objects, object_boxes

    obj_mask = mapped_objects(ev.objects) if dataset.task == "detection" else None
    level = resolve_level(config.level, dataset.task, int(obj_mask.sum()) if obj_mask is not None else 0)
    if config.engine == "ray" and level != "images":  # auto: object crops are cut by the local engine only
        log.info("--engine ray maps images only (object crops are embedded by the local engine)")
        level = "images"
    with_images, with_objects = level != "objects", level in ("objects", "both")
    boxes = object_boxes(dataset, obj_mask) if with_objects else None
    with timer.stage("embed"):
        emb, fallback, model = _embed(paths, config, progress, boxes=boxes, images=with_images)
    size_hint = estimate_run_bytes(
        n_images=dataset.num_images, dim=emb.vectors.shape[1], n_classes=len(dataset.categories),
        n_objects=len(dataset.gt) + len(dataset.pred) if dataset.task == "detection" else 0,
    )
    with write_run(out, force=config.force, size_hint=size_hint) as writer:
        with timer.stage("scan"):
            if config.engine == "ray":
                from vecexplore.scale.scan import scan_images_ray

                scan = scan_images_ray(paths, writer.tmp_dir, progress=progress)
            else:
                from vecexplore.thumbs import scan_images

                scan = scan_images(paths, writer.tmp_dir, workers=config.scan_workers, progress=progress)
        decoded = emb.ok if with_images else np.array([d is not None for d in emb.digests], bool)
        readable = decoded & scan.ok
        mapped = readable if with_images else np.zeros_like(readable)
        with timer.stage("map"):
            xy, labels, prob, tree, map_info = _map(emb.vectors, mapped, config.map)
        object_map = None
        if with_objects:
            with timer.stage("map objects"):
                obj_ok = emb.objects.ok & readable[boxes.image_idx]
                oxy, olabels, oprob, _otree, omap_info = _map(emb.objects.vectors, obj_ok, config.map)
                object_map = (oxy, olabels, oprob, obj_ok)
                map_info["objects"] = omap_info
        from vecexplore.store.tables import image_table, object_table

        reasons = np.where(emb.ok, scan.error, emb.error)
        images = image_table(dataset, per_image, xy, labels, prob, readable, reasons, emb.digests, scan.properties)
        writer.write_table(IMAGES, images)
        object_rows = object_table(dataset, ev.objects) if dataset.task == "detection" else None
        if object_map is not None:
            from vecexplore.mapping.objects import with_object_map

            object_rows = with_object_map(object_rows, obj_mask, *object_map)
            writer.write_array(OBJECT_EMBEDDINGS, emb.objects.vectors)
        with timer.stage("slices"):
            from vecexplore.analysis.quality import RunTables
            from vecexplore.analysis.slicing import failure_slice_table

            objects = ev.objects if dataset.task == "detection" else None
            clusters = failure_slice_table(
                RunTables(images, object_rows), ev, labels, tree, objects=objects,
                class_names=list(dataset.categories.names),
            )
        writer.write_table(CLUSTER_TREE, tree.to_frame())
        with timer.stage("words"):
            clusters = _write_words(writer, model, emb, readable, labels, clusters, list(dataset.categories.names))
        with timer.stage("labels"):
            from vecexplore.analysis.label_issues import label_issues

            issues = label_issues(ev)
            writer.write_table(LABEL_ISSUES, issues)
        with timer.stage("duplicates"):
            _write_duplicates(writer, ev, images, emb, mapped, config)
        object_slices = None
        if object_map is not None:
            with timer.stage("object slices"):
                from vecexplore.analysis.object_slices import object_slice_table

                object_slices = object_slice_table(object_rows, class_names=list(dataset.categories.names))
                writer.write_table(OBJECT_SLICES, object_slices)
        with timer.stage("analyse"):
            from vecexplore.analysis.stage import write_analysis

            write_analysis(writer, ev, images, object_rows, clusters, seed=config.map.seed or 0,
                           label_issues=issues, object_slices=object_slices)
        if object_rows is not None:
            writer.write_table(OBJECTS, object_rows)
        elif dataset.pred.scores is not None:
            scores = np.full((dataset.num_images, len(dataset.categories)), np.nan)
            scores[dataset.pred.image_idx] = dataset.pred.scores
            writer.write_array(CLASS_SCORES, scores)
        writer.write_table(CLUSTERS, clusters)
        writer.write_array(EMBEDDINGS, emb.vectors)
        writer.write_json(CATEGORIES, [
            {"id": int(i), "name": str(n)} for i, n in zip(dataset.categories.ids, dataset.categories.names, strict=True)
        ])
        writer.write_json(METRICS, _metrics_json(ev, metrics))
        manifest = _manifest(config, dataset, emb, fallback, map_info, timer.timings, readable, report,
                             iou_type=getattr(ev, "iou_type", None), level=level)
        writer.write_json(MANIFEST, manifest)
    return BuildResult(
        out=out,
        n_images=dataset.num_images,
        n_unreadable=int((~readable).sum()),
        n_clusters=len(clusters),
        timings=timer.timings,
        weights_random=bool(emb.model_info.get("random")),
        fallback_reason=fallback,
        level=level,
        n_objects_mapped=int(object_map[3].sum()) if object_map is not None else 0,
        n_object_clusters=int(object_map[1].max() + 1) if object_map is not None and len(object_map[1]) else 0,
    )


def _write_words(writer, model, emb, readable, labels, clusters, class_names):
    """words.json and (trained weights only) text_embeddings.npy; returns ``clusters`` with a
    ``words`` column ("" when hidden; see :mod:`vecexplore.analysis.words`)."""
    from vecexplore.analysis.slicing import members_of
    from vecexplore.analysis.words import by_cluster, hidden_reason, phrase, vocabulary, words_doc
    from vecexplore.store.layout import TEXT_EMBEDDINGS, WORDS

    vocab = vocabulary(class_names)
    hidden = hidden_reason(emb.model_info)
    text = None
    if hidden is None:
        from vecexplore.embed.text import encode_prompts

        text = encode_prompts(model, [v["prompt"] for v in vocab])
        writer.write_array(TEXT_EMBEDDINGS, text)
    else:
        log.info("%s", hidden)
    slices = [(int(row.cluster), members_of(row)) for row in clusters.itertuples(index=False)]
    doc = words_doc(emb.vectors, text, vocab, labels, slices, usable=readable, hidden=hidden)
    writer.write_json(WORDS, doc)
    words = by_cluster(doc)
    clusters = clusters.copy()
    clusters["words"] = [phrase(words.get(int(c), [])) for c in clusters["cluster"]]
    return clusters


def _write_duplicates(writer, ev, images, emb, readable, config: BuildConfig) -> None:
    """near_duplicates.parquet and leakage.json (see :mod:`vecexplore.analysis.duplicates`)."""
    from vecexplore.analysis.duplicates import duplicate_table, leakage
    from vecexplore.store.layout import LEAKAGE, NEAR_DUPLICATES

    split = images["split"].to_numpy(object) if "split" in images else None
    random_weights = bool(emb.model_info.get("random"))
    table, leaks = duplicate_table(emb.vectors, image_id=images["image_id"].to_numpy(), split=split,
                                   digests=emb.digests, usable=readable, threshold=config.dup_threshold,
                                   random_weights=random_weights, train_split=config.train_split)
    writer.write_table(NEAR_DUPLICATES, table)
    writer.write_json(LEAKAGE, leakage(ev, leaks, split=split, train_split=config.train_split,
                                            threshold=config.dup_threshold, random_weights=random_weights))
    log.info("near duplicates: %d pairs (%d across splits); %d images leak from split %r",
             len(table), int(table["cross_split"].sum()), int(leaks.sum()), config.train_split)


def _refuse_early(out: Path, force: bool) -> None:
    """Refuse an existing run before hours of embedding, not after."""
    from vecexplore.errors import RunStoreError

    if out.exists() and not force:
        raise RunStoreError(f"{out}: already exists; pass --force to replace it")


#: Bytes per cached vector besides its floats: the ``<U40`` digest (160) and zip overhead.
_CACHE_ROW_BYTES = 200


def _embed(paths: list[str], config: BuildConfig, progress: bool, *, boxes=None, images: bool = True):
    """Embed through the cache. A full cache disk stops the build (DiskFullError naming
    the cache): going on would embed everything again next time, and when the run
    is on the same disk its write would fail after all the embedding anyway. The
    shards written before the failure are kept, so a rerun resumes from them."""
    from vecexplore.embed.cache import default_root
    from vecexplore.embed.clip import load_clip, load_clip_with_fallback
    from vecexplore.embed.pipeline import embed_images
    from vecexplore.errors import DiskFullError

    cfg = config.embed
    fallback = None
    # On Ray, cfg.device is the actors'; this process keeps a CPU copy (the weights it sends, the text tower).
    device = "cpu" if config.engine == "ray" else cfg.device
    if config.random_fallback:
        model, fallback = load_clip_with_fallback(cfg.model, cfg.weights, device=device, seed=cfg.seed)
    else:
        model = load_clip(cfg.model, cfg.weights, device=device, seed=cfg.seed)
    root = Path(config.cache_dir or default_root())
    try:
        if config.engine == "ray":
            from vecexplore.scale.embed import embed_images_ray

            result = embed_images_ray(paths, cfg, cache=root, progress=progress, model=model)
        else:
            result = embed_images(paths, cfg, cache=root, progress=progress, model=model, objects=boxes,
                                  crop=config.crop, images=images)
    except DiskFullError as exc:
        log.error("the embedding cache %s is full; vectors cached so far are kept: free space (or pass "
                  "--cache-dir on another disk) and rerun to go on from them", root)
        raise exc.with_needed(len(paths) * (model.dim * 4 + _CACHE_ROW_BYTES), path=root) from exc
    return result, fallback, model


def _map(vectors: np.ndarray, readable: np.ndarray, map_config: MapConfig):
    """UMAP + HDBSCAN on the readable images; others get NaN coordinates and cluster -1.

    Returns ``(xy, labels, probabilities, tree, info)``; ``tree`` is the clusters' hierarchy.
    """
    from vecexplore.mapping import build_map
    from vecexplore.mapping.hierarchy import ClusterTree

    n = len(readable)
    xy = np.full((n, 2), np.nan, dtype=np.float32)
    labels = np.full(n, -1, dtype=np.int64)
    prob = np.zeros(n, dtype=np.float32)
    rows = np.flatnonzero(readable)
    info: dict[str, Any] = {"n_mapped": int(rows.size)}
    if rows.size == 0:
        log.warning("no decodable image: the map is empty")
        return xy, labels, prob, ClusterTree.flat(0), info
    fmap = build_map(vectors[rows], map_config)
    xy[rows] = fmap.xy
    labels[rows] = fmap.labels
    prob[rows] = fmap.clustering.probabilities
    info["config_used"] = _plain(asdict(fmap.config_used))
    info["timings"] = {k: round(v, 3) for k, v in fmap.timings.items()}
    return xy, labels, prob, fmap.clustering.tree, info


def _metrics_json(ev, metrics: dict) -> dict:
    """The evaluate --json object plus the sweep curves the app plots."""
    from vecexplore.store.tables import sweep_json

    return {**metrics, "sweep": sweep_json(ev)}


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _file_hash(path: str | None) -> str | None:
    from vecexplore.io.images import file_digest

    if not path:
        return None
    p = Path(path)
    if p.is_file():
        return file_digest(p)
    if p.is_dir():  # YOLO label folders, ImageFolder roots: hash names + contents of text files
        import hashlib

        h = hashlib.blake2b(digest_size=20)
        for f in sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in (".txt", ".csv", ".json", ".yaml", ".yml")):
            h.update(str(f.relative_to(p)).encode())
            h.update(file_digest(f).encode())
        return h.hexdigest()
    return None


def _versions(config_engine: str = "local") -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    packages = ("vecexplore", "numpy", "pandas", "torch", "open_clip_torch", "umap-learn", "hdbscan", "bokeh")
    for pkg in (*packages, "ray") if config_engine == "ray" else packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _manifest(config, dataset, emb, fallback, map_info, timings, readable, report, *,
              iou_type: str | None = None, level: str = "images") -> dict:
    src = config.source.resolved()  # DatasetSource and SplitSource both resolve
    root = Path(dataset.images_root).resolve() if dataset.images_root else None

    def files(part) -> dict:
        return {key: {"path": str(Path(path).resolve()) if path else None, "hash": _file_hash(path)}
                for key, path in (("gt", part.gt), ("pred", part.pred))}

    parts = getattr(src, "parts", None)  # several GT files (splits): one entry per pair
    inputs = {
        "format": getattr(src, "format", None),
        **(files(src) if parts is None else {"parts": [files(p) for p in parts]}),
        "images_root": str(root) if root else None,
        # The app serves only files under images_root unless this is true.
        "allow_outside_root": bool(getattr(src, "allow_outside_root", False)),
        "images_outside_root": len(report.outside_root),
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": "complete",
        "task": dataset.task,
        "inputs": inputs,
        "counts": {
            "images": dataset.num_images,
            "unreadable": int((~readable).sum()),
            "categories": len(dataset.categories),
            "gt": len(dataset.gt),
            "pred": len(dataset.pred),
            "embedded_now": emb.stats.n_embedded,
            "from_cache": emb.stats.n_cached,
            "failed_embeddings": int((~emb.ok).sum()),
            "shared_files": len(report.shared_files),
            "objects_embedded_now": emb.objects.n_embedded if emb.objects is not None else 0,
            "objects_from_cache": emb.objects.n_cached if emb.objects is not None else 0,
        },
        "config": {
            # Boxes crossing the image border clipped (--clip)? The app, info and metrics follow it.
            "clip": bool(dataset.boxes_clipped) if dataset.task == "detection" else None,
            "iou": config.iou,
            "iou_type": iou_type,  # as resolved (the user's None = auto is in the config only)
            "confidence": config.confidence,
            "dup_threshold": config.dup_threshold,
            "train_split": config.train_split,
            "engine": config.engine,
            "ray_address": config.ray_address,
            "level": level,  # as resolved; the config's "auto" is level_requested
            "level_requested": config.level,
            "crop": _plain(asdict(config.crop)),
            "embed": _plain(asdict(config.embed)),
            "map": _plain(asdict(config.map)),
        },
        "model": {**_plain(emb.model_info), "fallback_reason": fallback},
        "map": map_info,
        "timings": timings,
        "versions": _versions(config.engine),
    }
