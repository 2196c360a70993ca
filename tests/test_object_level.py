"""The object-level map: crops, their cache, ``--level``, object slices and the planted-mode acceptance."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from vecexplore.embed import TINY_MODEL, EmbedConfig, embed_images, load_clip
from vecexplore.embed.crops import CropConfig, ObjectBoxes, crop_keys, crop_windows, cut_crops
from vecexplore.io.images import open_rgb


@pytest.fixture(scope="module")
def tiny():
    return load_clip(TINY_MODEL, "random", device="cpu", seed=0)


def _cfg(**kw) -> EmbedConfig:
    return EmbedConfig(**{"model": TINY_MODEL, "weights": "random", "device": "cpu", "num_workers": 0,
                          "batch_size": 4, **kw})


def _images(folder, n, rng, size=(96, 72)):
    paths = []
    for i in range(n):
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        arr[: size[1] // 2] //= 1 + (i % 3)
        p = folder / f"im{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(arr).save(p)
        paths.append(str(p))
    return paths


def _boxes(rng, n_images, m, size=(96, 72)):
    w, h = size
    x0 = rng.uniform(-5, w - 4, m)
    y0 = rng.uniform(-5, h - 4, m)
    bw, bh = rng.uniform(1, 50, m), rng.uniform(1, 50, m)
    return ObjectBoxes(rng.integers(0, n_images, m), np.stack([x0, y0, x0 + bw, y0 + bh], 1))


# -- geometry -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("box", "scale", "pad", "min_size", "want"), [
    ((10, 10, 30, 20), (1, 1), 0.0, 1, (10, 5, 30, 25)),      # square on the longer side (20)
    ((10, 10, 30, 20), (1, 1), 0.25, 1, (5, 0, 35, 30)),      # + 25 % of 20 on each side → 30
    ((10, 10, 12, 12), (1, 1), 0.25, 32, (-5, -5, 27, 27)),   # tiny box: the minimum size
    ((20, 20, 60, 40), (0.5, 0.5), 0.0, 1, (10, 5, 30, 25)),  # file pixels → decoded pixels
])
def test_crop_windows_table(box, scale, pad, min_size, want):
    got = crop_windows(np.array([box], float), scale, CropConfig(padding=pad, min_size=min_size))
    assert tuple(got[0]) == want


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cut_crops_match_array_slicing_with_black_outside(seed):
    rng = np.random.default_rng(seed)
    arr = rng.integers(1, 256, (40, 50, 3), dtype=np.uint8)  # no zero pixel: black means outside
    img = Image.fromarray(arr)
    boxes = _boxes(rng, 1, 8, size=(50, 40)).xyxy
    cfg = CropConfig(padding=float(rng.uniform(0, 0.5)), min_size=int(rng.integers(1, 20)))
    for crop, (x0, y0, x1, y1) in zip(cut_crops(img, boxes, cfg), crop_windows(boxes, (1, 1), cfg), strict=True):
        ref = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, 50), min(y1, 40)
        if sx1 > sx0 and sy1 > sy0:
            ref[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = arr[sy0:sy1, sx0:sx1]
        np.testing.assert_array_equal(np.asarray(crop), ref)


def test_crop_keys_follow_image_content_box_and_settings():
    boxes = ObjectBoxes(np.array([0, 1, 0, 0]), np.array([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4.5], [1, 2, 3, 4]]))
    keys = crop_keys(["a" * 40, "a" * 40], boxes, CropConfig())
    assert keys[0] == keys[1] == keys[3] != keys[2]  # same content + box → same key, any image row
    assert crop_keys(["b" * 40, "a" * 40], boxes, CropConfig())[0] != keys[0]
    assert crop_keys(["a" * 40, "a" * 40], boxes, CropConfig(padding=0.1))[0] != keys[0]
    assert crop_keys([None, "a" * 40], boxes, CropConfig())[0] is None


@pytest.mark.parametrize("bad", [{"padding": -0.1}, {"padding": float("nan")}, {"min_size": 0}, {"min_size": 2.5}])
def test_crop_config_refuses_bad_values(bad):
    from vecexplore.errors import ConfigError

    with pytest.raises(ConfigError, match=r"crop\."):
        CropConfig(**bad)


# -- the pipeline -------------------------------------------------------------------------------


def _naive_crops(model, paths, boxes, cfg, size_hint):
    rows = []
    with torch.inference_mode():
        for i, box in zip(boxes.image_idx, boxes.xyxy, strict=True):
            crop = cut_crops(open_rgb(paths[i], size_hint=size_hint), box[None], cfg)[0]
            f = model.model.encode_image(model.preprocess(crop)[None]).float()
            rows.append(torch.nn.functional.normalize(f, dim=-1)[0].numpy())
    return np.stack(rows)


@pytest.mark.parametrize(("seed", "n", "m", "workers", "batch"), [(0, 3, 7, 0, 4), (1, 6, 20, 1, 3), (2, 5, 1, 0, 8)])
def test_crop_vectors_equal_one_at_a_time_reference(tmp_path, tiny, seed, n, m, workers, batch):
    rng = np.random.default_rng(seed)
    paths = _images(tmp_path, n, rng)
    boxes = _boxes(rng, n, m)
    cfg = CropConfig(padding=0.2, min_size=16)
    res = embed_images(paths, _cfg(num_workers=workers, batch_size=batch), cache=None, model=tiny,
                       objects=boxes, crop=cfg)
    assert res.objects.ok.all() and res.ok.all()
    ref = _naive_crops(tiny, paths, boxes, cfg, min(tiny.image_size))
    np.testing.assert_allclose(res.objects.vectors, ref, atol=1e-5)
    plain = embed_images(paths, _cfg(num_workers=workers, batch_size=batch), cache=None, model=tiny)
    np.testing.assert_allclose(res.vectors, plain.vectors, atol=1e-5)  # image vectors unchanged by crops


def test_each_image_is_decoded_once_for_its_vector_and_its_crops(tmp_path, tiny, monkeypatch):
    import vecexplore.io.images as images_mod

    rng = np.random.default_rng(3)
    paths = _images(tmp_path, 4, rng)
    boxes = _boxes(rng, 4, 15)
    calls = []
    real = images_mod.open_rgb

    def counting(path, **kw):
        calls.append(str(path))
        return real(path, **kw)

    monkeypatch.setattr(images_mod, "open_rgb", counting)
    res = embed_images(paths, _cfg(), cache=None, model=tiny, objects=boxes)
    assert res.objects.ok.all()
    assert sorted(calls) == sorted(paths)


def test_rebuild_embeds_no_crop_and_objects_only_skips_images(tmp_path, tiny):
    rng = np.random.default_rng(4)
    paths = _images(tmp_path, 5, rng)
    boxes = _boxes(rng, 5, 12)
    cache = tmp_path / "cache"
    first = embed_images(paths, _cfg(), cache=cache, model=tiny, objects=boxes)
    assert first.objects.n_embedded == len(set(first.objects.keys)) and first.objects.n_cached == 0
    again = embed_images(paths, _cfg(), cache=cache, model=tiny, objects=boxes)
    assert again.objects.n_embedded == 0 and again.stats.n_embedded == 0
    np.testing.assert_array_equal(again.objects.vectors, first.objects.vectors)
    only = embed_images(paths, _cfg(), cache=tmp_path / "c2", model=tiny, objects=boxes, images=False)
    assert not only.ok.any() and only.stats.n_embedded == 0 and only.objects.ok.all()
    np.testing.assert_allclose(only.objects.vectors, first.objects.vectors, atol=1e-6)


def test_crops_of_an_undecodable_image_fail_with_its_reason(tmp_path, tiny):
    rng = np.random.default_rng(5)
    paths = _images(tmp_path, 3, rng)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    paths.append(str(tmp_path / "bad.png"))
    boxes = ObjectBoxes(np.array([0, 3, 3]), np.array([[1, 1, 9, 9], [2, 2, 8, 8], [0, 0, 5, 5.0]]))
    res = embed_images(paths, _cfg(), cache=None, model=tiny, objects=boxes)
    assert res.objects.ok.tolist() == [True, False, False]
    assert res.objects.error[1] == res.error[3] and res.objects.error[1]


# -- levels -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("level", "task", "n", "want"), [
    ("auto", "detection", 10, "both"), ("auto", "detection", 50_000, "both"),
    ("auto", "detection", 50_001, "images"), ("auto", "classification", 10, "images"),
    ("images", "detection", 10, "images"), ("objects", "detection", 10**7, "objects"),
    ("both", "detection", 10**7, "both"),
])
def test_resolve_level(level, task, n, want):
    from vecexplore.builder import resolve_level

    assert resolve_level(level, task, n) == want


def test_object_level_on_classification_exits_2_without_traceback(tmp_path):
    from vecexplore.demo import generate_demo

    generate_demo(tmp_path / "cls", task="classification", n=20, seed=0)
    res = subprocess.run([sys.executable, "-m", "vecexplore", "build", "--gt", str(tmp_path / "cls/labels.csv"),
                          "--pred", str(tmp_path / "cls/predictions.csv"), "--out", str(tmp_path / "run"),
                          "--weights", "random", "--level", "objects"], capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "detection" in res.stderr
    assert not (tmp_path / "run").exists()



@pytest.mark.parametrize("level", ["objects", "both"])
def test_object_levels_on_the_ray_engine_exit_2_before_any_work(tmp_path, level):
    """Crops are cut by the local engine only: asking Ray for them is refused up front, not after embedding."""
    from vecexplore.demo import generate_demo

    generate_demo(tmp_path / "det", n=20, seed=0)
    res = subprocess.run([sys.executable, "-m", "vecexplore", "build", "--gt", str(tmp_path / "det/annotations.json"),
                          "--pred", str(tmp_path / "det/predictions.json"), "--out", str(tmp_path / "run"),
                          "--weights", "random", "--engine", "ray", "--level", level],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "local engine only" in res.stderr
    assert not (tmp_path / "run").exists()

# -- the build and the acceptance ---------------------------------------------------------------


def test_build_both_writes_the_object_map_and_rebuild_embeds_nothing(tmp_path, umap_warm):
    import pandas as pd
    from conftest import build_demo_run

    from vecexplore.mapping.objects import mapped_objects

    result, _ = build_demo_run(tmp_path, n=80, seed=3)
    assert result.level == "both"
    objects = pd.read_parquet(result.out / "objects.parquet")
    mask = mapped_objects(objects)
    assert (objects["obj_row"] >= 0).tolist() == mask.tolist()
    vectors = np.load(result.out / "object_embeddings.npy")
    assert vectors.shape[0] == mask.sum() and result.n_objects_mapped == int(objects["obj_mapped"].sum())
    np.testing.assert_allclose(np.linalg.norm(vectors[objects.loc[objects.obj_mapped, "obj_row"]], axis=1), 1, atol=1e-5)
    assert objects.loc[~mask, "obj_cluster"].eq(-1).all() and objects.loc[~mask, "obj_x"].isna().all()
    assert np.isfinite(objects.loc[objects.obj_mapped, ["obj_x", "obj_y"]].to_numpy()).all()
    analysis = json.loads((result.out / "analysis.json").read_text())
    slices = pd.read_parquet(result.out / "object_slices.parquet")
    assert len(analysis["object_slices"]) == min(50, len(slices))
    assert (slices["ci_low"] > slices["overall"]).all() and slices["score"].is_monotonic_decreasing
    again, _ = build_demo_run(tmp_path, n=80, seed=3, out_name="again")
    counts = json.loads((again.out / "manifest.json").read_text())["counts"]
    assert counts["objects_embedded_now"] == 0 and counts["embedded_now"] == 0
    assert counts["objects_from_cache"] > 0
    from vecexplore.errors import RunStoreError
    from vecexplore.runcheck import open_run

    open_run(again.out)  # the run checks out with its object map
    np.save(again.out / "object_embeddings.npy", vectors[:-1])
    with pytest.raises(RunStoreError, match=r"object_embeddings\.npy.*shape"):
        open_run(again.out)


def test_build_images_level_writes_no_object_map(tmp_path, umap_warm):
    import pandas as pd
    from conftest import build_demo_run

    result, _ = build_demo_run(tmp_path, n=60, seed=2, level="images")
    assert result.level == "images"
    assert "obj_row" not in pd.read_parquet(result.out / "objects.parquet")
    assert not (result.out / "object_embeddings.npy").exists() and not (result.out / "object_slices.parquet").exists()


@pytest.mark.parametrize(("n", "seed"), [(150, 0), (220, 1), (300, 2)])
def test_planted_small_objects_missed_are_a_top_object_slice_not_an_image_slice(tmp_path, umap_warm, n, seed):
    from _object_modes import build_and_measure

    m = build_and_measure(tmp_path, n=n, seed=seed)
    obj, img = m["object"], m["image"]
    print(f"n={n} seed={seed}: object slice P={obj['precision']:.2f} R={obj['recall']:.2f} rank={obj['rank']}; "
          f"best image slice P={img['precision']:.2f} R={img['recall']:.2f} rank={img['rank']}")
    assert obj["precision"] >= 0.8 and obj["recall"] >= 0.6
    assert obj["rank"] <= 3
    assert not (img["precision"] >= 0.8 and img["recall"] >= 0.6)
