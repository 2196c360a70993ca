"""Generate the demo dataset into a directory, atomically.

Everything is written into ``.DIR.partial-*`` beside ``DIR`` and renamed into
place only when complete, so a half-written dataset never looks finished. With
``force`` an existing demo dataset is replaced only after the new one is complete.

Randomness: ``SeedSequence(seed)`` spawns a master stream (mode, split and crowd
assignment) and one child per image; each image child spawns a scene stream and
a model stream. Image ``i``'s content therefore depends only on the seed, ``i``
and its assigned mode, and the same seed gives byte-identical files.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vecexplore.atomic import as_disk_full, make_unique_dir
from vecexplore.demo.model import (
    CLASSIFICATION_OUTCOMES,
    DETECTION_OUTCOMES,
    simulate_detections,
    simulate_label,
)
from vecexplore.demo.scene import (
    CLASSES,
    CONFUSED_PAIR,
    PLANTED_MODES,
    TEXTURE_FP_CLASS,
    encode_jpeg,
    render_scene,
    sample_scene,
)
from vecexplore.errors import ConfigError, InputError
from vecexplore.progress import progress_bar
from vecexplore.types import TASKS

logger = logging.getLogger(__name__)

MIN_IMAGES = 20
PLANTED_FILE = "planted.json"
#: Fraction of images per planted mode (the rest are clean), and of images in the test split.
MODE_FRACTIONS = {"dark_small_missed": 0.12, "blur_confusion": 0.12, "texture_false_positives": 0.10}
TEST_FRACTION = 0.25
CROWD_FRACTION = 0.02

MODE_INFO = {
    "dark_small_missed": {
        "description": "night scenes: near-black background (mean luma < 40/255) and dim objects; "
        "the model misses most small objects, some medium ones, and finds large ones with low scores",
        "property": "brightness",
        "effect": "fn small objects",
        "classes": [],
    },
    "blur_confusion": {
        "description": f"out-of-focus foggy scenes: heavy Gaussian blur over the whole image (radius 6–10 px "
        f"at 512 px) under a bright grey haze (low contrast and saturation); the model "
        f"confuses {CLASSES[CONFUSED_PAIR[0]]} and {CLASSES[CONFUSED_PAIR[1]]} in both directions",
        "property": "sharpness",
        "effect": f"confusion {CLASSES[CONFUSED_PAIR[0]]}<->{CLASSES[CONFUSED_PAIR[1]]}",
        "classes": [CLASSES[c] for c in CONFUSED_PAIR],
    },
    "texture_false_positives": {
        "description": "saturated yellow/purple high-frequency wavy stripe background used by no other "
        f"scene; the model fires several confident false positives of {CLASSES[TEXTURE_FP_CLASS]} on it",
        "property": "texture",
        "effect": f"fp background ({CLASSES[TEXTURE_FP_CLASS]})",
        "classes": [CLASSES[TEXTURE_FP_CLASS]],
    },
}


@dataclass(frozen=True)
class DemoSummary:
    """Counts of a generated demo dataset (what :meth:`format` prints).

    ``objects_per_class``: non-crowd GT objects (detection) or labels (classification)
    per class name. ``predictions_by_outcome``: the generator's intended outcome per
    prediction (not an evaluation). ``images_per_mode`` includes ``"clean"``.
    """

    out_dir: Path
    task: str
    seed: int
    n_images: int
    images_per_split: dict[str, int]
    objects_per_class: dict[str, int]
    n_crowd: int
    n_predictions: int
    predictions_by_outcome: dict[str, int]
    images_per_mode: dict[str, int]
    elapsed_s: float

    def format(self) -> str:
        """A short multi-line text block for the CLI."""

        def join(d: dict[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in d.items())

        n_obj = sum(self.objects_per_class.values())
        crowd = f" (+{self.n_crowd} crowd regions)" if self.n_crowd else ""
        kind = "objects" if self.task == "detection" else "labels"
        files = "annotations.json, predictions.json" if self.task == "detection" else "labels.csv, predictions.csv"
        return "\n".join([
            f"demo dataset ({self.task}, seed {self.seed}) written to {self.out_dir}",
            f"  images:        {self.n_images} ({join(self.images_per_split)})",
            f"  {kind + ':':<14} {n_obj}{crowd}: {join(self.objects_per_class)}",
            f"  predictions:   {self.n_predictions} by simulated outcome: {join(self.predictions_by_outcome)}",
            f"  planted modes: {join(self.images_per_mode)} (images)",
            f"  files:         images/*.jpg, {files}, {PLANTED_FILE}, README.txt",
            f"  generated in {self.elapsed_s:.1f} s",
            f"next: {next_command(self.out_dir, self.task)}",
        ])


def _check_args(task: str, n: int, seed: int) -> None:
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < MIN_IMAGES:
        raise ConfigError(f"n must be an integer >= {MIN_IMAGES} (planted modes need enough images), got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ConfigError(f"{out}: directory is not empty; pass --force to replace it")
        if not (out / PLANTED_FILE).is_file():
            raise ConfigError(
                f"{out}: not empty and not a vecexplore demo dataset (no {PLANTED_FILE}); "
                "refusing to replace it even with --force"
            )


def _assign(n: int, task: str, master: np.random.Generator):
    """Per-image mode names, split names, and the set of crowd images (detection only)."""
    modes = np.full(n, "clean", dtype=object)
    order = master.permutation(n)
    start = 0
    for mode in PLANTED_MODES:
        count = round(MODE_FRACTIONS[mode] * n)
        modes[order[start : start + count]] = mode
        start += count
    splits = np.full(n, "val", dtype=object)
    splits[master.permutation(n)[: round(TEST_FRACTION * n)]] = "test"
    crowd: set[int] = set()
    if task == "detection":
        clean = np.flatnonzero(modes == "clean")
        k = max(1, round(CROWD_FRACTION * n))
        crowd = {int(i) for i in master.choice(clean, size=min(k, len(clean)), replace=False)}
    return modes.tolist(), splits.tolist(), crowd


def _dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(obj, indent=indent, separators=None if indent else (",", ":"), ensure_ascii=False) + "\n"


def _csv_text(rows: list[list]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def next_command(data_dir, task: str) -> str:
    """The build command for a demo dataset (file names already start with ``images/``, and the images
    root is the annotation file's folder, so no ``--images`` is needed)."""
    import shlex

    d = Path(data_dir)
    gt, pred = ("annotations.json", "predictions.json") if task == "detection" else ("labels.csv", "predictions.csv")
    run = shlex.quote(str(d.parent / "runs" / d.name)) if d.is_absolute() else f"runs/{d.name}"
    return (f"vecexplore build --gt {shlex.quote(str(d / gt))} --pred {shlex.quote(str(d / pred))} --out {run}"
            f"   (then: vecexplore serve {run})")


def _readme(task: str, n: int, seed: int) -> str:
    files = (
        "annotations.json (COCO ground truth, with a 'split' key per image and a few iscrowd regions) and "
        "predictions.json (COCO results)"
        if task == "detection"
        else "labels.csv (file_name,label,split) and predictions.csv (file_name,prediction,score,score_<class>...)"
    )
    return (
        f"This is a synthetic evaluated {task} dataset generated by `vecexplore demo-data` "
        f"({n} images, seed {seed}): images/ holds rendered scenes of simple shapes "
        f"({', '.join(CLASSES)}) on varied backgrounds, {files} hold the ground truth and the output of a "
        "simulated model that is good on clean scenes but has planted failure modes: it misses small "
        "objects in dark night scenes, confuses circles and hexagons in blurred, foggy scenes, and fires false "
        "positives on one striped background. planted.json names the images of each mode, so you can "
        "check that vecexplore finds them. Regenerating with the same seed gives byte-identical files.\n\n"
        f"Build and browse it from the folder above this one:\n  {next_command(Path('.') / 'DATA', task)}\n"
        "(DATA is this folder's name; the file names start with images/, so no --images is needed).\n"
    )


#: About what one demo image takes on disk with its share of the JSON files (for the full-disk message).
_BYTES_PER_IMAGE = 30_000


def generate_demo(
    out_dir: str | Path,
    *,
    task: str = "detection",
    n: int = 600,
    seed: int = 0,
    force: bool = False,
    progress: bool = False,
) -> DemoSummary:
    """Write the synthetic demo dataset to ``out_dir`` and return its counts.

    Layout: ``images/NNNNNN.jpg`` (image id, 1-based); detection:
    ``annotations.json`` + ``predictions.json`` (COCO); classification:
    ``labels.csv`` + ``predictions.csv``; always ``planted.json`` and ``README.txt``.

    Args:
        out_dir: target directory; must not exist, be empty, or (with ``force``)
            be an earlier demo dataset, which is replaced once the new one is complete.
        task: "detection" or "classification".
        n: number of images, >= 20.
        seed: non-negative seed; equal seeds give byte-identical files.
        force: replace an existing demo dataset.
        progress: draw a progress bar on stderr.

    Raises:
        ConfigError: bad ``task``, ``n`` or ``seed``, or an ``out_dir`` that may not be written.
    """
    t0 = time.perf_counter()
    _check_args(task, n, seed)
    n, seed = int(n), int(seed)
    out = Path(out_dir).expanduser().absolute()
    _check_out(out, force)
    master_ss, images_ss = np.random.SeedSequence(seed).spawn(2)
    modes, splits, crowd = _assign(n, task, np.random.default_rng(master_ss))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_unique_dir(out.parent, f".{out.name}.partial-")  # mkdtemp would make it 0700 whatever the umask
    try:
        (tmp / "images").mkdir()
        scenes, sims = [], []
        with progress_bar("rendering demo images", total=n, unit="img", enabled=progress) as bar:
            for i, image_ss in enumerate(images_ss.spawn(n)):
                scene_ss, model_ss = image_ss.spawn(2)
                scene = sample_scene(np.random.default_rng(scene_ss), mode=modes[i], task=task, crowd=i in crowd)
                (tmp / "images" / f"{i + 1:06d}.jpg").write_bytes(encode_jpeg(render_scene(scene)))
                model_rng = np.random.default_rng(model_ss)
                sims.append(simulate_detections(scene, model_rng) if task == "detection" else simulate_label(scene, model_rng))
                scenes.append(scene)
                bar.advance(1)
        files = [f"images/{i + 1:06d}.jpg" for i in range(n)]
        if task == "detection":
            counts = _write_detection(tmp, scenes, sims, files, splits, seed)
        else:
            counts = _write_classification(tmp, scenes, sims, files, splits)
        planted = {
            "task": task,
            "seed": seed,
            "n": n,
            "categories": list(CLASSES),
            "modes": {
                mode: {
                    **MODE_INFO[mode],
                    "image_ids": [i + 1 for i in range(n) if modes[i] == mode],
                    "file_names": [files[i] for i in range(n) if modes[i] == mode],
                }
                for mode in PLANTED_MODES
            },
            "clean_image_ids": [i + 1 for i in range(n) if modes[i] == "clean"],
            "crowd_image_ids": sorted(i + 1 for i in crowd),
        }
        (tmp / PLANTED_FILE).write_text(_dumps(planted, indent=2), encoding="utf-8")
        (tmp / "README.txt").write_text(_readme(task, n, seed), encoding="utf-8")
        _swap_in(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        full = as_disk_full(exc, out, n * _BYTES_PER_IMAGE + 1_000_000)
        if full is not None:
            raise full from exc
        raise
    mode_counts = Counter(modes)
    split_counts = Counter(splits)
    summary = DemoSummary(
        out_dir=out,
        task=task,
        seed=seed,
        n_images=n,
        images_per_split={s: split_counts[s] for s in ("val", "test")},
        images_per_mode={m: mode_counts[m] for m in (*PLANTED_MODES, "clean")},
        elapsed_s=time.perf_counter() - t0,
        **counts,
    )
    logger.info("demo dataset: %d %s images in %.1f s at %s", n, task, summary.elapsed_s, out)
    return summary


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename the complete ``tmp`` to ``out``, replacing an existing ``out`` only now."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.replace(tmp, out)
        return
    old = make_unique_dir(out.parent, f".{out.name}.old-")
    os.replace(out, old / "data")
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _write_detection(tmp: Path, scenes, sims, files, splits, seed: int) -> dict:
    images, annotations, predictions = [], [], []
    outcomes: Counter[str] = Counter()
    per_class: Counter[int] = Counter()
    n_crowd = 0
    for i, (scene, dets) in enumerate(zip(scenes, sims, strict=True)):
        image_id = i + 1
        images.append({"id": image_id, "file_name": files[i], "width": scene.width, "height": scene.height, "split": splits[i]})
        gts = [(o.class_idx, o.bbox, 0) for o in scene.objects]
        if scene.crowd_bbox is not None:
            gts.append((scene.crowd_class, scene.crowd_bbox, 1))
            n_crowd += 1
        for cls, bbox, iscrowd in gts:
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": cls + 1,
                "bbox": list(bbox),
                "area": bbox[2] * bbox[3],
                "iscrowd": iscrowd,
            })
            per_class[cls] += 1 - iscrowd
        for det in dets:
            predictions.append({"image_id": image_id, "category_id": det.class_idx + 1, "bbox": list(det.bbox), "score": det.score})
            outcomes[det.outcome] += 1
    coco = {
        "info": {"description": f"vecexplore synthetic demo dataset (seed {seed})", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(CLASSES)],
    }
    (tmp / "annotations.json").write_text(_dumps(coco), encoding="utf-8")
    (tmp / "predictions.json").write_text(_dumps(predictions), encoding="utf-8")
    return {
        "objects_per_class": {name: per_class[k] for k, name in enumerate(CLASSES)},
        "n_crowd": n_crowd,
        "n_predictions": len(predictions),
        "predictions_by_outcome": {o: outcomes[o] for o in DETECTION_OUTCOMES if outcomes[o]},
    }


def _write_classification(tmp: Path, scenes, sims, files, splits) -> dict:
    labels = [["file_name", "label", "split"]]
    preds = [["file_name", "prediction", "score", *(f"score_{c}" for c in CLASSES)]]
    per_class: Counter[int] = Counter()
    outcomes: Counter[str] = Counter()
    for scene, sim, name, split in zip(scenes, sims, files, splits, strict=True):
        true = scene.objects[0].class_idx
        per_class[true] += 1
        outcomes[sim.outcome] += 1
        labels.append([name, CLASSES[true], split])
        preds.append([name, CLASSES[sim.prediction], f"{sim.scores[sim.prediction]:.4f}", *(f"{s:.4f}" for s in sim.scores)])
    (tmp / "labels.csv").write_text(_csv_text(labels), encoding="utf-8")
    (tmp / "predictions.csv").write_text(_csv_text(preds), encoding="utf-8")
    return {
        "objects_per_class": {name: per_class[k] for k, name in enumerate(CLASSES)},
        "n_crowd": 0,
        "n_predictions": len(scenes),
        "predictions_by_outcome": {o: outcomes[o] for o in CLASSIFICATION_OUTCOMES},
    }


def read_planted(directory: str | Path) -> dict:
    """Read and check ``DIR/planted.json``.

    Returns the dict written by :func:`generate_demo`: ``task``, ``seed``, ``n``,
    ``categories``, ``modes`` (name → ``description``, ``property``, ``effect``,
    ``classes``, ``image_ids``, ``file_names``), ``clean_image_ids`` and
    ``crowd_image_ids``. Image ids are 1-based positions in the image list
    (COCO ids for detection, rows of labels.csv for classification).

    Raises:
        InputError: the file is missing, not JSON, or lacks a field.
    """
    path = Path(directory) / PLANTED_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("not found; is this a directory written by `vecexplore demo-data`?", path=path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", path=path) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", path=path)
    for key in ("task", "seed", "n", "modes", "clean_image_ids"):
        if key not in data:
            raise InputError(f"missing key {key!r}", path=path)
    if not isinstance(data["modes"], dict):
        raise InputError("'modes' must be an object", path=path)
    for name, mode in data["modes"].items():
        for key in ("description", "image_ids", "file_names", "property", "effect"):
            if not isinstance(mode, dict) or key not in mode:
                raise InputError(f"missing key {key!r}", path=path, record=f"modes.{name}")
        if len(mode["image_ids"]) != len(mode["file_names"]):
            raise InputError("image_ids and file_names differ in length", path=path, record=f"modes.{name}")
    return data


def demo_source(data_dir: str | Path, *, task: str = "detection"):
    """The :class:`~vecexplore.io.source.DatasetSource` of a demo dataset written by :func:`generate_demo`."""
    from vecexplore.io.source import DatasetSource

    data_dir = Path(data_dir)
    if task == "detection":
        return DatasetSource(gt=data_dir / "annotations.json", pred=data_dir / "predictions.json")
    return DatasetSource(gt=data_dir / "labels.csv", pred=data_dir / "predictions.csv")
