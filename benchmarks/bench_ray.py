"""Embedding throughput of the two engines: local (``embed_images``) vs Ray (``embed_images_ray``).

    python benchmarks/run.py ray [--n=256] [--model=ViT-S-32] [--cpus=N] [--address=HOST:PORT]
        [--batch=B] [--size=640x480]

Images (JPEG, 640×480 by default) are generated in a temporary directory; both
engines embed them with the same model (random weights), device (CPU) and batch
size, with no cache, model loading excluded. The Ray engine runs on a local Ray
instance of ``--cpus`` CPUs (default: all of this machine's) started here, or on
the cluster at ``--address``; its figure includes the hashing and decoding tasks
and the actor pool's start, which is what a build pays. On one machine both
engines share the same cores (Ray adds scheduling and object-store copies, and
overlaps decoding with the forward pass in its own way): its gain is more
machines and GPUs. Max |Δ| is the largest difference between the engines' vectors.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_ray")
    parser.add_argument("--n", type=int, default=256, help="images")
    parser.add_argument("--model", default="ViT-S-32", help="open_clip architecture (random weights)")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray instance")
    parser.add_argument("--address", default=None, help="an existing Ray cluster instead")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--size", default="640x480")
    args = parser.parse_args(argv)

    from bench_embed import _make_images

    from vecexplore.embed import EmbedConfig, embed_images, load_clip
    from vecexplore.scale.cluster import cluster_plan, ray_session, start_local
    from vecexplore.scale.embed import embed_images_ray

    size = tuple(int(v) for v in args.size.split("x"))
    cfg = EmbedConfig(model=args.model, weights="random", device="cpu", batch_size=args.batch)
    model = load_clip(cfg.model, cfg.weights, device="cpu")
    with tempfile.TemporaryDirectory(prefix="bench_ray_") as tmp:
        paths = _make_images(Path(tmp), args.n, size)
        print(f"model {args.model} (random weights, {model.dim}-d), CPU, batch {cfg.batch_size_for('cpu')}, "
              f"{args.n} images {size[0]}×{size[1]} JPEG, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        embed_images(paths[: cfg.batch_size_for("cpu")], cfg, cache=None, model=model)  # warm-up
        local = embed_images(paths, cfg, cache=None, model=model)
        local_rate = local.stats.n_embedded / (local.stats.seconds - local.stats.load_seconds)

        with contextlib.ExitStack() as stack:
            start = time.perf_counter()
            if args.address:
                stack.enter_context(ray_session(args.address))
            else:
                stack.callback(start_local(num_cpus=args.cpus).shutdown)
            started = time.perf_counter() - start
            plan = cluster_plan("cpu")
            embed_images_ray(paths[: cfg.batch_size_for("cpu")], cfg, cache=None, model=model)  # warm-up
            remote = embed_images_ray(paths, cfg, cache=None, model=model)
        ray_rate = remote.stats.n_embedded / (remote.stats.seconds - remote.stats.load_seconds)
        delta = float(np.abs(remote.vectors - local.vectors).max())

        print(f"Ray: {'cluster ' + args.address if args.address else 'local instance'} started in {started:.1f} s; "
              f"{plan.actors} CPU actor(s) × {plan.cpus_per_actor} CPU")
        print(f"\n{'engine':32s} {'images':>6s} {'seconds':>8s} {'images/s':>9s} {'vs local':>8s}")
        for name, res, rate in (("local (DataLoader workers)", local, local_rate),
                                ("ray (tasks + CLIP actor pool)", remote, ray_rate)):
            seconds = res.stats.seconds - res.stats.load_seconds
            print(f"{name:32s} {res.stats.n_embedded:6d} {seconds:8.1f} {rate:9.1f} {rate / local_rate:7.2f}x")
        print(f"\nmax |Δ| between the engines' vectors: {delta:.2e}")
