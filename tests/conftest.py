"""Shared pytest fixtures. Keep additions small and additive; module-specific
fixtures belong in their own test modules."""

from __future__ import annotations

import os
import tempfile

import pytest

# Tests never touch the network: make Hugging Face and open_clip fail fast offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tests never write the user's embedding cache (~/.cache/vecexplore); the session's own is removed at exit.
if "VECEXPLORE_CACHE" not in os.environ:
    import atexit
    import shutil

    os.environ["VECEXPLORE_CACHE"] = tempfile.mkdtemp(prefix="vecexplore-test-cache-")
    atexit.register(shutil.rmtree, os.environ["VECEXPLORE_CACHE"], ignore_errors=True)


@pytest.fixture(scope="session")
def umap_warm():
    """Compile UMAP's numba kernels once per session (tens of seconds the first
    time on a cold cache) by running a tiny map; tests that run UMAP use this."""
    import numpy as np

    from vecexplore.mapping import MapConfig, build_map

    rng = np.random.default_rng(0)
    build_map(rng.normal(size=(60, 16)).astype(np.float32), MapConfig(seed=0))


TINY_MODEL = "vecexplore-tiny-vit"


def build_demo_run(base, *, task="detection", n=400, seed=0, out_name="run", **overrides):
    """Generate demo data under ``base`` and build it with the tiny random-weight model."""
    from pathlib import Path

    from vecexplore.builder import BuildConfig, build_run
    from vecexplore.demo import demo_source, generate_demo
    from vecexplore.embed.pipeline import EmbedConfig
    from vecexplore.mapping import MapConfig

    base = Path(base)
    data = base / f"data-{task}"
    if not (data / "planted.json").exists():
        generate_demo(data, task=task, n=n, seed=seed)
    settings = dict(
        source=demo_source(data, task=task),
        out=base / out_name,
        embed=EmbedConfig(model=TINY_MODEL, weights="random", device="cpu", num_workers=0),
        map=MapConfig(seed=seed),
        cache_dir=base / "cache",
        scan_workers=0,
    )
    settings.update(overrides)
    return build_run(BuildConfig(**settings)), data


@pytest.fixture(scope="session")
def checkpoint_run(tmp_path_factory, umap_warm):
    """A detection demo run built with the tiny model's weights loaded from a checkpoint file
    (not random: words for clusters and text search are on), and that file."""
    import torch

    from vecexplore.embed.clip import load_clip
    from vecexplore.embed.pipeline import EmbedConfig

    base = tmp_path_factory.mktemp("checkpoint")
    ckpt = base / "tiny.pt"
    torch.save(load_clip(TINY_MODEL, "random", seed=5).model.state_dict(), ckpt)
    result, _ = build_demo_run(base, n=160, seed=4,
                               embed=EmbedConfig(model=TINY_MODEL, weights=str(ckpt), device="cpu", num_workers=0))
    return result.out, ckpt


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, umap_warm):
    """A detection run of 400 demo images built once per session: (run dir, data dir)."""
    base = tmp_path_factory.mktemp("demo-detection")
    result, data = build_demo_run(base)
    return result.out, data


@pytest.fixture(scope="session")
def demo_run_classification(tmp_path_factory, umap_warm):
    """A classification run of 300 demo images built once per session: (run dir, data dir)."""
    base = tmp_path_factory.mktemp("demo-classification")
    result, data = build_demo_run(base, task="classification", n=300)
    return result.out, data


@pytest.fixture(scope="session")
def det(demo_run):
    """The app's RunData of the session's detection demo run (loaded once, shared)."""
    from vecexplore.app.data import load_run_data

    return load_run_data(demo_run[0])


@pytest.fixture(scope="session")
def cls(demo_run_classification):
    """The app's RunData of the session's classification demo run."""
    from vecexplore.app.data import load_run_data

    return load_run_data(demo_run_classification[0])


class RecordingDoc:
    """A stand-in for a server session's Document: collects next-tick callbacks so a test
    can run them when it chooses (what Bokeh's IOLoop does between events)."""

    def __init__(self):
        self.ticks = []

    def add_next_tick_callback(self, cb):
        self.ticks.append(cb)


@pytest.fixture(scope="session")
def compare_pair(demo_run, tmp_path_factory):
    """Run A = the session's detection demo run; run B = the same images and GT with a model that
    fixes the planted ``dark_small_missed`` mode and misses everything on the images of A's
    cleanest cluster without dark images; and their comparison run.

    Returns a dict: ``a``, ``b``, ``c`` (run dirs), ``data``, ``broken`` (A's cluster B broke),
    ``fixed_ids`` (image ids of the fixed mode).
    """
    from pathlib import Path

    from _compare_helpers import write_model_b

    from vecexplore.compare import compare_runs
    from vecexplore.demo import read_planted
    from vecexplore.io.source import DatasetSource
    from vecexplore.store import Run

    run_a, data = demo_run
    base = tmp_path_factory.mktemp("compare")
    fixed_ids = set(read_planted(data)["modes"]["dark_small_missed"]["image_ids"])
    a = Run(run_a)
    images = a.images
    candidates = []
    for row in a.clusters.itertuples():
        ids = images.loc[images["cluster"].isin(list(row.members)), "image_id"]
        if len(ids) >= 12 and not ids.isin(fixed_ids).any():
            candidates.append((float(images.loc[ids.index, "error_rate"].mean()), int(row.cluster), set(ids.tolist())))
    _, broken, break_ids = min(candidates)
    pred_b = write_model_b(data, base / "pred_b.json", fix_mode="dark_small_missed", break_ids=break_ids)
    source = DatasetSource(gt=data / "annotations.json", pred=pred_b, images=data)
    result_b, _ = build_demo_run(base, out_name="run_b", source=source, cache_dir=Path(run_a).parent / "cache")
    compare_runs(run_a, result_b.out, base / "run_c", n_boot=1000)
    return {"a": Path(run_a), "b": result_b.out, "c": base / "run_c", "data": data, "broken": broken,
            "fixed_ids": fixed_ids}


@pytest.fixture(scope="session")
def compare_pair_classification(demo_run_classification, tmp_path_factory):
    """The classification counterpart of ``compare_pair``: B is right on the ``blur_confusion`` mode
    and wrong on every image of A's largest cluster without such images."""
    from pathlib import Path

    from _compare_helpers import write_classifier_b

    from vecexplore.compare import compare_runs
    from vecexplore.demo import read_planted
    from vecexplore.io.source import DatasetSource
    from vecexplore.store import Run

    run_a, data = demo_run_classification
    base = tmp_path_factory.mktemp("compare-classification")
    fixed = set(read_planted(data)["modes"]["blur_confusion"]["file_names"])
    a = Run(run_a)
    images = a.images
    candidates = []
    for row in a.clusters.itertuples():
        names = images.loc[images["cluster"].isin(list(row.members)), "file_name"]
        if len(names) >= 10 and not names.isin(fixed).any():
            candidates.append((-len(names), int(row.cluster), set(names.tolist())))
    _, broken, break_names = min(candidates)
    pred_b = write_classifier_b(data, base / "pred_b.csv", fix_mode="blur_confusion", break_names=break_names)
    source = DatasetSource(gt=data / "labels.csv", pred=pred_b, images=data)
    result_b, _ = build_demo_run(base, task="classification", out_name="run_b", source=source,
                                 cache_dir=Path(run_a).parent / "cache")
    compare_runs(run_a, result_b.out, base / "run_c", n_boot=1000)
    return {"a": Path(run_a), "b": result_b.out, "c": base / "run_c", "data": data, "broken": broken,
            "fixed_names": fixed}
