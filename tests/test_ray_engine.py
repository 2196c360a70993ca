"""`build --engine ray`: the embed stage and the scan on a local Ray cluster (127.0.0.1,
2 CPUs) against the local engine: same vectors within fp tolerance, the same cache
(resumable), the same thumbnails and properties, and the rest of the run identical."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_MODEL, build_demo_run
from PIL import Image

from vecexplore.errors import ConfigError
from vecexplore.scale.cluster import ActorPlan, check_address, plan_actors

# One Ray cluster per session, in one xdist worker (make test runs --dist loadgroup).
pytestmark = pytest.mark.xdist_group("ray")

ROOT = Path(__file__).resolve().parents[1]
N_DEMO = 96


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray instance for the session: 2 CPUs, no dashboard, servers on 127.0.0.1."""
    pytest.importorskip("ray")
    from vecexplore.scale.cluster import start_local

    ray = start_local(num_cpus=2)
    yield ray
    ray.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- planning and addresses (no cluster) -----------------------------------------------------


@pytest.mark.parametrize(("resources", "nodes", "device", "plan"), [
    ({"CPU": 2}, [2], "auto", ActorPlan("cpu", 1, 1, 0)),
    ({"CPU": 1}, [1], "cpu", ActorPlan("cpu", 1, 1, 0)),
    ({"CPU": 16}, [16], "auto", ActorPlan("cpu", 2, 4, 0)),
    ({"CPU": 24}, [8, 16], "auto", ActorPlan("cpu", 3, 4, 0)),
    ({"CPU": 12}, [4, 4, 4], "auto", ActorPlan("cpu", 3, 2, 0)),
    ({"CPU": 32, "GPU": 4}, [16, 16], "auto", ActorPlan("cuda", 4, 1, 1)),
    ({"CPU": 32, "GPU": 4}, [16, 16], "cuda", ActorPlan("cuda", 4, 1, 1)),
    ({"CPU": 32, "GPU": 4}, [16, 16], "cpu", ActorPlan("cpu", 4, 4, 0)),
])
def test_actor_plan(resources, nodes, device, plan):
    assert plan_actors(resources, nodes, device) == plan


@pytest.mark.parametrize(("resources", "device", "needle"), [
    ({"CPU": 4}, "cuda", "no GPU"),
    ({"CPU": 4, "GPU": 2}, "cuda:1", "whole GPUs"),
    ({"CPU": 4}, "mps", "MPS"),
    ({"CPU": 4}, "tpu", "expected auto, cpu or cuda"),
    ({"GPU": 0}, "auto", "no CPU"),
])
def test_actor_plan_refuses(resources, device, needle):
    with pytest.raises(ConfigError, match=needle):
        plan_actors(resources, [], device)


@pytest.mark.parametrize("address", ["nonsense", "host:", ":6379", "host:99999", "ray://host"])
def test_malformed_addresses_are_refused(address):
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        check_address(address)


def test_an_address_with_nothing_listening_is_refused():
    port = _free_port()
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(ConfigError, match="no Ray cluster answers there"):
            check_address(address)


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    from vecexplore.demo import generate_demo

    data = tmp_path_factory.mktemp("ray-demo") / "data-detection"
    generate_demo(data, task="detection", n=N_DEMO, seed=3)
    return data


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "vecexplore", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def _build_args(data: Path, out: Path, cache: Path) -> list[str]:
    return ["build", "--out", str(out), "--gt", str(data / "annotations.json"), "--pred",
            str(data / "predictions.json"), "--model", TINY_MODEL, "--weights", "random", "--device", "cpu",
            "--cache-dir", str(cache), "--seed", "3"]


def test_cli_unreachable_ray_address_is_an_error_not_a_hang(demo_data, tmp_path):
    port = _free_port()
    res = _cli(*_build_args(demo_data, tmp_path / "run", tmp_path / "cache"), "--engine", "ray",
               "--ray-address", f"127.0.0.1:{port}", timeout=120)
    assert res.returncode == 2, res.stderr
    assert "error: --ray-address 127.0.0.1:" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not (tmp_path / "run").exists()


def test_cli_ray_address_needs_the_ray_engine(demo_data, tmp_path):
    res = _cli(*_build_args(demo_data, tmp_path / "run", tmp_path / "cache"), "--ray-address", "auto")
    assert res.returncode == 2 and "error: --ray-address is for --engine ray" in res.stderr, res.stderr


# -- the cluster ----------------------------------------------------------------------------


def test_the_local_cluster_listens_on_loopback_only(ray_cluster):
    import psutil

    listening = []
    for proc in psutil.Process().children(recursive=True):
        try:
            conns = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        listening += [(proc.name(), c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    assert listening, "found no Ray server among this process's children"
    exposed = [x for x in listening if x[1] not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")]
    assert not exposed, exposed


def test_workers_import_this_vecexplore(ray_cluster):
    import vecexplore

    @ray_cluster.remote
    def where() -> str:
        import vecexplore

        return vecexplore.__file__

    assert ray_cluster.get(where.remote()) == vecexplore.__file__


def _random_images(folder: Path, n: int, seed: int) -> list[str]:
    """JPEGs and PNGs of varied sizes, plus a broken file, a missing one and a duplicate."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        h, w = (int(v) for v in rng.integers(20, 200, 2))
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        path = folder / f"{i:03d}.{'png' if i % 3 == 0 else 'jpg'}"
        img.save(path)
        paths.append(str(path))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    at = int(rng.integers(0, n))
    return [*paths[:at], str(folder / "broken.jpg"), paths[0], str(folder / "missing.jpg"), *paths[at:]]


@pytest.mark.parametrize(("n", "seed", "batch"), [(7, 0, 4), (45, 1, 8), (70, 2, 32)])
def test_embeddings_equal_the_local_engine(ray_cluster, tmp_path, n, seed, batch):
    from vecexplore.embed.clip import load_clip
    from vecexplore.embed.pipeline import EmbedConfig, embed_images
    from vecexplore.scale.embed import embed_images_ray

    paths = _random_images(tmp_path / "img", n, seed)
    cfg = EmbedConfig(model=TINY_MODEL, weights=f"random:{seed}", device="cpu", batch_size=batch, num_workers=0)
    model = load_clip(cfg.model, cfg.weights)
    local = embed_images(paths, cfg, cache=None, model=model)
    remote = embed_images_ray(paths, cfg, cache=tmp_path / "cache", model=model)
    np.testing.assert_allclose(remote.vectors, local.vectors, rtol=0, atol=1e-5)
    assert remote.ok.tolist() == local.ok.tolist() and remote.ok.sum() == n + 1  # the duplicate too
    assert remote.error.tolist() == local.error.tolist()
    assert remote.digests.tolist() == local.digests.tolist()
    assert remote.stats.n_embedded == local.stats.n_embedded == n + 1 and remote.model_info["engine"] == "ray"
    assert remote.model_info["cache_key"] == local.model_info["cache_key"]
    # the same cache, read by the local engine: nothing left to embed, the Ray vectors come back
    again = embed_images(paths, cfg, cache=tmp_path / "cache", model=model)
    assert again.stats.n_embedded == 0 and again.stats.n_cached == n + 1
    np.testing.assert_array_equal(again.vectors, remote.vectors)


def test_no_images(ray_cluster, tmp_path):
    from vecexplore.embed.clip import load_clip
    from vecexplore.embed.pipeline import EmbedConfig, embed_images
    from vecexplore.scale.embed import embed_images_ray
    from vecexplore.scale.scan import scan_images_ray
    from vecexplore.thumbs import scan_images

    cfg = EmbedConfig(model=TINY_MODEL, weights="random", device="cpu", num_workers=0)
    model = load_clip(cfg.model, cfg.weights)
    remote, local = embed_images_ray([], cfg, cache=None, model=model), embed_images([], cfg, cache=None, model=model)
    assert remote.vectors.shape == local.vectors.shape == (0, 64)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert scan_images_ray([], tmp_path / "b").ok.shape == scan_images([], tmp_path / "a", workers=0).ok.shape == (0,)
    assert (tmp_path / "b" / "thumbs.npy").read_bytes() == (tmp_path / "a" / "thumbs.npy").read_bytes()


def test_scan_equals_the_local_scan(ray_cluster, tmp_path):
    from vecexplore.scale.scan import scan_images_ray
    from vecexplore.thumbs import scan_images

    paths = _random_images(tmp_path / "img", 75, 4)  # several scan blocks, out of order
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    local = scan_images(paths, tmp_path / "a", workers=0)
    remote = scan_images_ray(paths, tmp_path / "b")
    for name in ("thumbs.bin", "thumbs.npy"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert remote.ok.tolist() == local.ok.tolist() and remote.error.tolist() == local.error.tolist()
    for name, values in local.properties.items():
        np.testing.assert_array_equal(remote.properties[name], values, err_msg=name)


# -- whole builds ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def builds(ray_cluster, demo_data, tmp_path_factory, umap_warm):
    """Local build; a Ray build into a cache already holding half the vectors; a second Ray
    build on that cache; a Ray build on the local build's cache."""
    from vecexplore.demo import demo_source
    from vecexplore.embed.clip import load_clip
    from vecexplore.embed.pipeline import EmbedConfig
    from vecexplore.io.paths import image_paths
    from vecexplore.io.source import load_dataset
    from vecexplore.scale.embed import embed_images_ray

    base = tmp_path_factory.mktemp("ray-builds")
    (base / demo_data.name).symlink_to(demo_data)
    cfg = EmbedConfig(model=TINY_MODEL, weights="random", device="cpu", num_workers=0, seed=3)

    def build(out_name, cache, engine):
        # Image level on both engines: a Ray build maps images only (object crops are the local engine's).
        result, _ = build_demo_run(base, n=N_DEMO, seed=3, out_name=out_name, cache_dir=base / cache,
                                   engine=engine, embed=cfg, level="images")
        return result.out

    local = build("local", "cache-local", "local")
    dataset = load_dataset(demo_source(demo_data))
    paths = [str(p) for p in image_paths(dataset.images, dataset.images_root)]
    half = paths[::2]
    embed_images_ray(half, cfg, cache=base / "cache-ray", model=load_clip(cfg.model, cfg.weights, seed=3))
    ray1 = build("ray1", "cache-ray", "ray")
    ray2 = build("ray2", "cache-ray", "ray")
    ray_on_local = build("ray-on-local-cache", "cache-local", "ray")
    return {"local": local, "ray1": ray1, "ray2": ray2, "ray_on_local": ray_on_local, "n_half": len(set(half))}


def _manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def test_ray_build_vectors_equal_the_local_build(builds):
    local, ray1 = np.load(builds["local"] / "embeddings.npy"), np.load(builds["ray1"] / "embeddings.npy")
    assert local.shape == (N_DEMO, 64)
    np.testing.assert_allclose(ray1, local, rtol=0, atol=1e-5)
    m = _manifest(builds["ray1"])
    assert m["config"]["engine"] == "ray" and m["model"]["engine"] == "ray" and m["model"]["actors"] == 1
    assert _manifest(builds["local"])["config"]["engine"] == "local"


def test_ray_build_resumes_from_the_cache(builds):
    counts = _manifest(builds["ray1"])["counts"]
    assert counts["from_cache"] == builds["n_half"] and counts["embedded_now"] == N_DEMO - builds["n_half"]
    counts = _manifest(builds["ray2"])["counts"]
    assert counts["from_cache"] == N_DEMO and counts["embedded_now"] == 0
    np.testing.assert_array_equal(np.load(builds["ray2"] / "embeddings.npy"), np.load(builds["ray1"] / "embeddings.npy"))
    counts = _manifest(builds["ray_on_local"])["counts"]  # the local engine's cache serves Ray builds
    assert counts["from_cache"] == N_DEMO and counts["embedded_now"] == 0


def test_ray_build_thumbnails_and_properties_equal_the_local_build(builds):
    import pandas as pd

    from vecexplore.properties import PIXEL_PROPERTIES

    for name in ("thumbs.bin", "thumbs.npy"):
        assert (builds["ray1"] / name).read_bytes() == (builds["local"] / name).read_bytes(), name
    a = pd.read_parquet(builds["local"] / "images.parquet")
    b = pd.read_parquet(builds["ray1"] / "images.parquet")
    pd.testing.assert_frame_equal(b[[*PIXEL_PROPERTIES, "readable"]], a[[*PIXEL_PROPERTIES, "readable"]])


def test_the_rest_of_a_ray_build_is_the_local_build(builds):
    """On the same vectors (the local build's cache), every file of the run but the manifest
    is byte for byte the local build's: tables, map, clusters, thumbnails, analysis."""
    local, ray = builds["local"], builds["ray_on_local"]
    files = sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file())
    assert sorted(p.relative_to(ray) for p in ray.rglob("*") if p.is_file()) == files
    assert {"images.parquet", "clusters.parquet", "embeddings.npy", "thumbs.bin"} <= {str(f) for f in files}
    differ = [str(f) for f in files if str(f) != "manifest.json" and (local / f).read_bytes() != (ray / f).read_bytes()]
    assert not differ, differ
    a, b = _manifest(local), _manifest(ray)
    for key in ("counts", "map", "inputs"):
        if key == "counts":
            a[key].pop("embedded_now")
            a[key].pop("from_cache")
            b[key].pop("embedded_now")
            b[key].pop("from_cache")
        if key == "map":
            a[key].pop("timings", None)
            b[key].pop("timings", None)
        assert a[key] == b[key], key


def test_cli_build_against_a_running_cluster(ray_cluster, builds, demo_data, tmp_path):
    """The command as a user types it, a second driver on the session's cluster by its address."""
    address = ray_cluster.get_runtime_context().gcs_address
    assert address.startswith("127.0.0.1:")
    res = _cli(*_build_args(demo_data, tmp_path / "run", tmp_path / "cache"), "--engine", "ray",
               "--ray-address", address, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    m = _manifest(tmp_path / "run")
    assert m["config"]["engine"] == "ray" and m["config"]["ray_address"] == address
    assert m["counts"]["embedded_now"] == N_DEMO
    np.testing.assert_allclose(np.load(tmp_path / "run" / "embeddings.npy"),
                               np.load(builds["local"] / "embeddings.npy"), rtol=0, atol=1e-5)
