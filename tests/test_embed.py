"""vecexplore.embed: loading open_clip weights (tag, file, random) and the embedding pipeline.

Small architectures only (vecexplore's bundled 64-px ViT), random or locally saved
weights, no network, no GPU.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

from vecexplore.embed import (  # noqa: E402
    TINY_MODEL,
    EmbedConfig,
    embed_images,
    load_clip,
    load_clip_with_fallback,
    resolve_device,
)
from vecexplore.embed import clip as clip_mod  # noqa: E402
from vecexplore.errors import ConfigError, WeightsError  # noqa: E402
from vecexplore.io.images import open_rgb  # noqa: E402


def _cfg(**kw) -> EmbedConfig:
    base = {"model": TINY_MODEL, "weights": "random", "device": "cpu", "num_workers": 0, "batch_size": 4}
    return EmbedConfig(**(base | kw))


@pytest.fixture(scope="module")
def tiny():
    return load_clip(TINY_MODEL, "random", device="cpu", seed=0)


def _naive(loaded, paths, size_hint=None) -> np.ndarray:
    """Reference: one image at a time, PIL decode → the model's preprocess → encode → L2."""
    rows = []
    with torch.inference_mode():
        for p in paths:
            x = loaded.preprocess(open_rgb(p, size_hint=size_hint)).unsqueeze(0)
            f = loaded.model.encode_image(x).float()
            rows.append(torch.nn.functional.normalize(f, dim=-1)[0].numpy())
    return np.stack(rows)


def _write_images(folder, n, *, seed=0, size=(96, 72)):
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        arr[: size[1] // 2] //= 1 + (i % 4)  # some structure so images differ beyond noise
        path = folder / f"img{i:03d}.{'png' if i % 3 else 'jpg'}"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


# -- model loading ----------------------------------------------------------------------------


def test_random_weights_are_seeded_and_leave_global_rng_alone():
    state = torch.get_rng_state()
    a = load_clip(TINY_MODEL, "random", seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    b = load_clip(TINY_MODEL, "random:3")
    c = load_clip(TINY_MODEL, "random", seed=4)
    sa, sb, sc = (m.model.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert a.weights_kind == "random" and a.random and a.weights_id == "random:3" == b.weights_id
    assert a.dim == 64 and a.image_size == (64, 64) and a.source is None
    assert a.info()["random"] is True


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_local_checkpoint_gives_identical_embeddings(tmp_path, tiny, suffix):
    path = tmp_path / f"ckpt{suffix}"
    if suffix == ".pt":
        torch.save(tiny.model.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in tiny.model.state_dict().items()}, str(path))
    loaded = load_clip(TINY_MODEL, str(path), seed=99)  # the seed must not matter for files
    assert loaded.weights_kind == "file" and not loaded.random and loaded.source == str(path)
    assert loaded.weights_id.startswith("file:") and len(loaded.weights_id) == 45
    images = _write_images(tmp_path, 5)
    a = embed_images(images, _cfg(), cache=None, model=tiny)
    b = embed_images(images, _cfg(), cache=None, model=loaded)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert b.model_info["weights_kind"] == "file"


def _other_architecture(monkeypatch, tmp_path):
    cfg = open_clip.get_model_config(TINY_MODEL)
    cfg["vision_cfg"]["width"] = 32
    cfg["vision_cfg"]["layers"] = 1
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, "test-other-vit", cfg)
    with torch.random.fork_rng(devices=[]):
        other = open_clip.create_model("test-other-vit")
    path = tmp_path / "other.pt"
    torch.save(other.state_dict(), path)
    return path


def test_checkpoint_of_another_architecture(tmp_path, monkeypatch):
    path = _other_architecture(monkeypatch, tmp_path)
    with pytest.raises(WeightsError) as err:
        load_clip(TINY_MODEL, str(path))
    msg = str(err.value)
    assert str(path) in msg and TINY_MODEL in msg and "does not fit" in msg


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"definitely not a checkpoint" * 10, "not a readable state dict"),
        (b"", "not a readable state dict"),
    ],
)
def test_unreadable_checkpoint(tmp_path, content, match):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=match) as err:
        load_clip(TINY_MODEL, str(path))
    assert str(path) in str(err.value) and TINY_MODEL in str(err.value)


@pytest.mark.parametrize("weights", ["missing.pt", "dir/missing.safetensors", "/nope/ckpt.bin"])
def test_missing_checkpoint_file(weights):
    with pytest.raises(WeightsError, match="weights file not found") as err:
        load_clip(TINY_MODEL, weights)
    assert weights in str(err.value) and TINY_MODEL in str(err.value)


@pytest.fixture
def no_download(monkeypatch):
    """Fail the test if anything tries to fetch weights."""

    def refuse(*a, **k):
        raise AssertionError("a test tried to download weights")

    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", refuse)
    monkeypatch.setattr(clip_mod, "_reachable", lambda *a, **k: refuse())


def test_pretrained_tag_offline_fails_fast_with_a_clear_message(no_download):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # tests/conftest.py
    with pytest.raises(WeightsError) as err:
        load_clip("ViT-B-32", "laion2b_s34b_b79k")
    msg = str(err.value)
    for part in ("laion2b_s34b_b79k", "ViT-B-32", "Hugging Face cache", "--weights random", "--weights PATH"):
        assert part in msg


def test_pretrained_tag_without_network(monkeypatch):
    monkeypatch.setattr(clip_mod, "_hub_offline", lambda: False)
    monkeypatch.setattr(clip_mod, "_reachable", lambda *a, **k: False)
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(WeightsError, match="no network") as err:
        load_clip("ViT-B-32", "laion2b_s34b_b79k")
    assert "unreachable" in str(err.value)


def _fake_hf_cache(root, repo, filename, payload_path):
    """The directory layout huggingface_hub's cache uses for one file of one repo."""
    folder = root / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / filename).write_bytes(payload_path.read_bytes())


def test_pretrained_tag_resolves_from_the_hugging_face_cache(tmp_path, monkeypatch, tiny, no_download):
    from huggingface_hub import constants

    ckpt = tmp_path / "w.bin"
    torch.save(tiny.model.state_dict(), ckpt)
    hub = tmp_path / "hub"
    _fake_hf_cache(hub, "org/tiny", "open_clip_pytorch_model.bin", ckpt)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    tags = {"testtag": {"hf_hub": "org/tiny/", "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, TINY_MODEL, tags)
    loaded = load_clip(TINY_MODEL, "testtag")
    assert loaded.weights_kind == "pretrained" and loaded.weights_id == "testtag"
    assert "0.25" in repr(loaded.preprocess)  # the tag's normalisation, not the default
    assert all(torch.equal(v, tiny.model.state_dict()[k]) for k, v in loaded.model.state_dict().items())


@pytest.mark.parametrize(
    ("model", "weights", "match"),
    [
        ("ViT-B32", "random", "close matches: ViT-B-32"),
        ("no-such-architecture-at-all", "random", "unknown open_clip model"),
        ("ViT-B-32", "laion2b_s34b_b79", "pretrained tags are: .*laion2b_s34b_b79k"),
        (TINY_MODEL, "openai", "has no pretrained tags"),
        (TINY_MODEL, "random:x", "random:<integer seed>"),
    ],
)
def test_unknown_model_or_weights(model, weights, match):
    with pytest.raises(WeightsError, match=match):
        load_clip(model, weights)


def test_fallback_to_random_for_the_demo(caplog, monkeypatch, no_download):
    loaded, reason = load_clip_with_fallback(TINY_MODEL, "random", seed=1)
    assert reason is None and loaded.weights_id == "random:1"
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, TINY_MODEL, {"gone": {"hf_hub": "org/gone/"}})
    with caplog.at_level(logging.WARNING, logger="vecexplore"):
        loaded, reason = load_clip_with_fallback(TINY_MODEL, "gone", seed=5)
    assert loaded.random and loaded.weights_id == "random:5"
    assert "'gone'" in reason and "offline" in reason
    assert "FALLING BACK TO RANDOM WEIGHTS" in caplog.text
    with pytest.raises(WeightsError, match="unknown open_clip model"):
        load_clip_with_fallback("ViT-B32", "laion2b_s34b_b79k")


@pytest.mark.parametrize(
    ("device", "ok"),
    [("cpu", "cpu"), ("CPU", "cpu"), ("auto", None), ("cuda", ConfigError), ("mps", ConfigError), ("tpu", ConfigError)],
)
def test_resolve_device(device, ok):
    if ok is ConfigError:
        if device == "cuda" and torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        if device == "mps" and torch.backends.mps.is_available():
            pytest.skip("this machine has MPS")
        with pytest.raises(ConfigError, match=device):
            resolve_device(device)
    elif ok is None:
        expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
        assert resolve_device(device) == expected
    else:
        assert resolve_device(device) == ok


@pytest.mark.parametrize(
    "kw",
    [{"batch_size": 0}, {"batch_size": -2}, {"num_workers": -1}, {"precision": "fp8"}, {"model": ""}, {"weights": ""}],
)
def test_embed_config_validation(kw):
    with pytest.raises(ConfigError):
        _cfg(**kw)


def test_embed_config_defaults_per_device():
    cfg = EmbedConfig()
    assert (cfg.model, cfg.weights, cfg.device, cfg.precision) == ("ViT-B-32", "laion2b_s34b_b79k", "auto", "auto")
    assert cfg.batch_size_for("cpu") == 32 and cfg.batch_size_for("cuda:0") == 128
    assert cfg.num_workers_for("cpu") >= 1 and cfg.num_workers_for("cuda") >= 1
    assert EmbedConfig(batch_size=7).batch_size_for("cuda") == 7


# -- the pipeline -----------------------------------------------------------------------------


@pytest.mark.parametrize(("batch_size", "workers"), [(1, 0), (4, 0), (64, 0), (3, 2)])
def test_pipeline_equals_the_naive_loop(tmp_path, tiny, batch_size, workers):
    paths = _write_images(tmp_path, 7)
    res = embed_images(paths, _cfg(batch_size=batch_size, num_workers=workers), cache=None, model=tiny)
    assert res.vectors.shape == (7, 64) and res.vectors.dtype == np.float32
    assert res.ok.all() and all(e is None for e in res.error)
    np.testing.assert_allclose(np.linalg.norm(res.vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(res.vectors, _naive(tiny, paths), atol=2e-6)
    assert res.stats.n_embedded == 7 and res.stats.n_cached == 0 and res.stats.n_failed == 0
    info = res.model_info
    assert info["model"] == TINY_MODEL and info["random"] is True and info["precision"] == "fp32"
    assert info["dim"] == 64 and info["device"] == "cpu" and info["num_workers"] == min(workers, -(-7 // batch_size))


def test_jpeg_draft_decodes_large_photos_at_reduced_scale(tmp_path, tiny):
    rng = np.random.default_rng(5)
    paths = []
    for i in range(3):
        low = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
        path = tmp_path / f"photo{i}.jpg"
        low.resize((1200, 900), Image.Resampling.BICUBIC).save(path, quality=90)
        paths.append(path)
    fast = embed_images(paths, _cfg(), cache=None, model=tiny)
    full = embed_images(paths, _cfg(jpeg_draft=False), cache=None, model=tiny)
    assert fast.model_info["decode_size_hint"] == 64 and full.model_info["decode_size_hint"] is None
    np.testing.assert_allclose(full.vectors, _naive(tiny, paths), atol=2e-6)
    np.testing.assert_allclose(fast.vectors, _naive(tiny, paths, size_hint=64), atol=2e-6)
    assert not np.array_equal(fast.vectors, full.vectors)  # 1/8 DCT scale was used
    assert (np.sum(fast.vectors * full.vectors, axis=1) > 0.99).all()  # a low-pass either way


def _bad_images(folder):
    """Every kind of image a dataset holds: (path, expected reason or None when decodable)."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    cases = []

    def add(name, reason, save=None, data=None):
        path = folder / name
        if data is not None:
            path.write_bytes(data)
        elif save is not None:
            save(path)
        cases.append((path, reason))

    add("good.jpg", None, lambda p: Image.fromarray(rgb).save(p, quality=92))
    add("zero.jpg", "zero-byte file", data=b"")
    good = (folder / "good.jpg").read_bytes()
    add("truncated.jpg", "truncated image data", data=good[: len(good) // 2])
    add("text.jpg", "not an image", data=b"name,label\ncat,1\n")
    add("missing.jpg", "file not found")
    add("gray.png", None, lambda p: Image.fromarray(rgb[..., 0]).save(p))
    add("cmyk.jpg", None, lambda p: Image.fromarray(rgb).convert("CMYK").save(p))
    add("sixteen.png", None, lambda p: Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(p))
    add("palette.png", None, lambda p: Image.fromarray(rgb).quantize(32).save(p, transparency=0))
    add("rgba.png", None, lambda p: Image.fromarray(np.dstack([rgb, rgb[..., 0]])).save(p))
    exif = Image.Exif()
    exif[0x0112] = 6
    add("rotated.jpg", None, lambda p: Image.fromarray(rgb).save(p, exif=exif))
    add("large.jpg", None, lambda p: Image.new("RGB", (5000, 4000), (10, 200, 30)).save(p))
    return cases


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_images_are_reported_and_never_stop_the_build(tmp_path, tiny, workers):
    cases = _bad_images(tmp_path)
    paths = [p for p, _ in cases]
    res = embed_images(paths, _cfg(batch_size=3, num_workers=workers), cache=None, model=tiny)
    good = [i for i, (_, reason) in enumerate(cases) if reason is None]
    for i, (path, reason) in enumerate(cases):
        if reason is None:
            assert res.ok[i] and res.error[i] is None, path
        else:
            assert not res.ok[i] and reason in res.error[i], (path, res.error[i])
            assert not res.vectors[i].any()
    np.testing.assert_allclose(res.vectors[good], _naive(tiny, [paths[i] for i in good]), atol=2e-6)
    assert res.stats.n_failed == 4 and res.stats.n_embedded == len(good)
    assert res.digests[paths.index(tmp_path / "missing.jpg")] is None


def test_a_batch_of_only_bad_images(tmp_path, tiny):
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "b.jpg").write_bytes(b"junk")
    good = _write_images(tmp_path, 2)
    paths = [tmp_path / "a.jpg", tmp_path / "b.jpg", *good]
    res = embed_images(paths, _cfg(batch_size=2), cache=None, model=tiny)
    assert res.ok.tolist() == [False, False, True, True]


def test_identical_files_are_embedded_once(tmp_path, tiny, monkeypatch):
    paths = _write_images(tmp_path, 3)
    copy = tmp_path / "copy.png"
    copy.write_bytes(paths[1].read_bytes())
    seen = []
    real = type(tiny.model).encode_image
    monkeypatch.setattr(type(tiny.model), "encode_image", lambda self, x, **k: seen.append(len(x)) or real(self, x, **k))
    res = embed_images([*paths, copy], _cfg(), cache=None, model=tiny)
    assert sum(seen) == 3
    np.testing.assert_array_equal(res.vectors[3], res.vectors[1])
    assert res.digests[3] == res.digests[1] and res.ok.all()


def test_empty_input(tiny):
    res = embed_images([], _cfg(), cache=None, model=tiny)
    assert res.vectors.shape == (0, 64) and res.ok.shape == (0,) and res.stats.n_images == 0


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_still_gives_float32_unit_vectors(tmp_path, tiny, precision):
    paths = _write_images(tmp_path, 4)
    ref = embed_images(paths, _cfg(), cache=None, model=tiny).vectors
    res = embed_images(paths, _cfg(precision=precision), cache=None, model=tiny)
    assert res.vectors.dtype == np.float32 and res.model_info["precision"] == precision
    np.testing.assert_allclose(np.linalg.norm(res.vectors, axis=1), 1.0, atol=1e-5)
    assert (np.sum(res.vectors * ref, axis=1) > 0.98).all()


def test_loading_through_the_config_and_progress_bar(tmp_path, capsys):
    paths = _write_images(tmp_path, 3)
    state = torch.get_rng_state()
    res = embed_images(paths, _cfg(weights="random:2"), cache=None, progress=True)
    assert torch.equal(torch.get_rng_state(), state)
    assert res.model_info["weights_id"] == "random:2" and res.ok.all()
    assert "img/s" in capsys.readouterr().err


@pytest.mark.slow
def test_a_real_open_clip_architecture(tmp_path):
    """ViT-S-32: the smallest stock open_clip ViT (224 px, 384-d), random weights."""
    loaded = load_clip("ViT-S-32", "random", seed=0)
    assert (loaded.dim, loaded.image_size) == (384, (224, 224))
    paths = _write_images(tmp_path, 3, size=(320, 240))
    res = embed_images(paths, _cfg(model="ViT-S-32"), cache=None, model=loaded)
    assert res.vectors.shape == (3, 384) and res.ok.all()
    np.testing.assert_allclose(res.vectors, _naive(loaded, paths), atol=1e-5)
