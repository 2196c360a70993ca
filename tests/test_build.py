"""`build`: the run store's contents, planted failure modes found, cache reuse,
resume after an interruption, reproducibility, unreadable images."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import build_demo_run

from vecexplore.demo import read_planted
from vecexplore.io import load_dataset
from vecexplore.io.source import DatasetSource
from vecexplore.store import Run


def _planted_mode(run: Run, data) -> np.ndarray:
    planted = read_planted(data)
    mode_of = {}
    for name, mode in planted["modes"].items():
        for image_id in mode["image_ids"]:
            mode_of[int(image_id)] = name
    return np.array([mode_of.get(int(i), "clean") for i in run.images["image_id"]], dtype=object)


def test_run_store_contents(demo_run):
    run_dir, data = demo_run
    run = Run(run_dir)
    manifest = run.manifest
    assert manifest["status"] == "complete" and manifest["task"] == "detection"
    assert len(manifest["inputs"]["gt"]["hash"]) == 40 and len(manifest["inputs"]["pred"]["hash"]) == 40
    assert set(manifest["timings"]) >= {"load", "evaluate", "embed", "scan", "map", "slices"}
    assert manifest["model"]["random"] is True and manifest["model"]["weights_kind"] == "random"
    assert {"numpy", "torch", "umap-learn", "hdbscan"} <= set(manifest["versions"])

    original = load_dataset(DatasetSource(gt=data / "annotations.json", pred=data / "predictions.json"))
    n = original.num_images
    images = run.images
    assert len(images) == n and images["image_idx"].tolist() == list(range(n))
    for col in ("image_id", "file_name", "split", "tp", "fp", "fn", "error_rate", "x", "y", "cluster",
                "readable", "brightness", "sharpness", "n_objects"):
        assert col in images.columns, col
    assert images["readable"].all() and np.isfinite(images[["x", "y"]].to_numpy()).all()

    emb = run.embeddings()
    assert emb.shape[0] == n and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)

    clusters = run.clusters
    assert (clusters["cluster"] >= 0).all()
    assert clusters["rank"].tolist() == list(range(1, len(clusters) + 1))
    sizes = images[images["cluster"] >= 0].groupby("cluster").size()
    # a slice is one HDBSCAN cluster or merged siblings (``members``): its size is theirs together,
    # and every cluster of the map is in exactly one slice
    from vecexplore.analysis.slicing import members_of

    members = [members_of(row) for row in clusters.itertuples(index=False)]
    assert [int(sum(sizes[m] for m in ms)) for ms in members] == clusters["size"].tolist()
    assert sorted(m for ms in members for m in ms) == sorted(sizes.index.tolist())

    rebuilt = run.dataset()  # the run alone is enough to re-evaluate at any threshold
    assert np.array_equal(rebuilt.gt.object_id, original.gt.object_id)
    assert np.array_equal(rebuilt.pred.xywh, original.pred.xywh)
    assert np.array_equal(rebuilt.pred.score, original.pred.score)
    assert np.array_equal(rebuilt.gt.area, original.gt.area)

    metrics = run.metrics
    assert {"coco", "per_class", "operating_point", "confusion_matrix", "sweep"} <= set(metrics)
    assert len(metrics["sweep"]["per_class"]) == len(original.categories)
    from vecexplore.thumbs import ThumbStore

    thumbs = ThumbStore(run_dir)
    assert len(thumbs) == n and thumbs.get(0)[:2] == b"\xff\xd8"  # a JPEG


def test_top_clusters_are_the_planted_failure_modes(demo_run):
    """With random tiny-ViT weights the planted modes still differ globally (night, fog, zebra
    texture), so the worst-ranked clusters must be dominated by them."""
    run_dir, data = demo_run
    run = Run(run_dir)
    mode = _planted_mode(run, data)
    clusters = run.clusters
    flagged = clusters[clusters["lift"] >= 1.25]  # errors at least 25% above the dataset's
    assert len(flagged) >= 3
    in_flagged = np.isin(run.images["cluster"].to_numpy(), flagged["cluster"].to_numpy())
    planted = mode != "clean"
    precision = (planted & in_flagged).sum() / in_flagged.sum()
    recall = (planted & in_flagged).sum() / planted.sum()
    assert precision >= 0.85, (precision, recall)
    assert recall >= 0.8, (precision, recall)
    # Every planted mode is the majority of at least one flagged cluster.
    majority = {
        c: max(set(mode[run.images["cluster"] == c]), key=list(mode[run.images["cluster"] == c]).count)
        for c in flagged["cluster"]
    }
    assert set(majority.values()) >= {"dark_small_missed", "blur_confusion", "texture_false_positives"}
    # ... and the three worst-ranked clusters are all planted failure modes.
    assert all(majority[c] != "clean" for c in clusters["cluster"].head(3))


def test_rebuild_embeds_nothing_and_is_reproducible(demo_run):
    run_dir, _ = demo_run
    base = run_dir.parent
    result, _ = build_demo_run(base, out_name="run-again")
    first, again = Run(run_dir), Run(result.out)
    assert again.manifest["counts"]["embedded_now"] == 0
    assert again.manifest["counts"]["from_cache"] == first.manifest["counts"]["images"]
    assert np.array_equal(first.images["x"].to_numpy(), again.images["x"].to_numpy())
    assert np.array_equal(first.images["cluster"].to_numpy(), again.images["cluster"].to_numpy())
    shutil.rmtree(result.out)


def test_interrupted_build_leaves_no_run_and_resumes_from_cache(tmp_path, monkeypatch, umap_warm):
    import vecexplore.builder as build_mod

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build_mod, "_map", killed)
    with pytest.raises(KeyboardInterrupt):
        build_demo_run(tmp_path, n=60)
    assert not (tmp_path / "run").exists()
    assert not list(tmp_path.glob("run.partial-*"))
    monkeypatch.undo()
    result, _ = build_demo_run(tmp_path, n=60)
    counts = Run(result.out).manifest["counts"]
    assert counts["embedded_now"] == 0 and counts["from_cache"] == 60


def test_existing_run_is_refused_before_any_work(demo_run, monkeypatch):
    import vecexplore.builder as build_mod
    from vecexplore.errors import RunStoreError

    monkeypatch.setattr(build_mod, "_embed", lambda *a, **k: pytest.fail("embedding started"))
    with pytest.raises(RunStoreError, match="--force"):
        build_demo_run(demo_run[0].parent)


def test_unreadable_images_are_recorded_not_fatal(tmp_path, umap_warm):
    from conftest import TINY_MODEL

    from vecexplore.builder import BuildConfig, build_run
    from vecexplore.demo import generate_demo
    from vecexplore.embed.pipeline import EmbedConfig
    from vecexplore.info import run_summary
    from vecexplore.mapping import MapConfig

    data = tmp_path / "data"
    generate_demo(data, n=40, seed=3)
    gt = json.loads((data / "annotations.json").read_text())
    broken = {gt["images"][0]["file_name"]: b"", gt["images"][1]["file_name"]: None}
    (data / gt["images"][0]["file_name"]).write_bytes(b"")
    path1 = data / gt["images"][1]["file_name"]
    path1.write_bytes(path1.read_bytes()[:300])  # truncated JPEG
    result = build_run(BuildConfig(
        source=DatasetSource(gt=data / "annotations.json", pred=data / "predictions.json"),
        out=tmp_path / "run",
        embed=EmbedConfig(model=TINY_MODEL, weights="random", device="cpu", num_workers=0),
        map=MapConfig(seed=0), cache_dir=tmp_path / "cache", scan_workers=0,
    ))
    assert result.n_unreadable == 2
    run = Run(result.out)
    bad = run.images[~run.images["readable"]]
    assert sorted(bad["file_name"]) == sorted(broken)
    assert (bad["cluster"] == -1).all() and bad[["x", "y"]].isna().all().all()
    assert all(reason for reason in bad["unreadable_reason"])
    assert not np.any(run.embeddings()[bad["image_idx"].to_numpy()])
    summary = run_summary(run)
    assert {u["file_name"] for u in summary["unreadable"]} == set(broken)
    assert summary["counts"]["unreadable"] == 2


def test_classification_run(demo_run_classification):
    run_dir, data = demo_run_classification
    run = Run(run_dir)
    assert run.task == "classification"
    images = run.images
    assert {"label", "prediction", "correct", "margin", "gt_class_idx", "pred_class_idx"} <= set(images.columns)
    assert (run.path / "class_scores.npy").exists()
    ds = run.dataset()
    original = load_dataset(DatasetSource(gt=data / "labels.csv", pred=data / "predictions.csv"))
    assert np.array_equal(ds.pred.class_idx, original.pred.class_idx)
    assert np.allclose(ds.pred.scores, original.pred.scores)
    assert {"accuracy", "macro", "weighted", "per_class"} <= set(run.metrics)
    clusters = run.clusters
    assert {"n_correct", "n_incorrect", "accuracy"} <= set(clusters.columns)
