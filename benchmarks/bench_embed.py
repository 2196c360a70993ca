"""Embedding throughput: the pipeline end-to-end vs the model's forward pass alone vs a naive loop.

    python benchmarks/run.py embed [--n=128] [--model=ViT-B-32] [--device=cuda] [--batch=B]
        [--workers=W] [--precision=P] [--threads=T] [--naive-n=32] [--rss-n=32] [--size=640x480]

(``--opt=value``: run.py passes on only the arguments that start with ``-``.)

Images (JPEG, 640×480 by default) are generated in a temporary directory. Methods,
all with the same model, random weights, device, batch size and precision:

* pipeline: ``embed_images`` with no cache: hashing, decoding and preprocessing in
  DataLoader workers, forward, L2-normalisation (model loading excluded);
* forward-only: the same batches of already preprocessed tensors held in memory;
* naive: PIL open → preprocess → forward, one image at a time, in this process.

CPU figures are sensitive to other load: with several torch threads on busy cores,
small forward passes wait on preempted threads (``--threads=1`` is steadier there).

"% of fwd" is throughput relative to forward-only: decoding is hidden behind the
model when the pipeline reaches ~90-100 %. Then peak RSS of ``embed_images`` in a
fresh process for N and 4N images: it must not grow with N beyond the (N, D)
vectors (streaming: never all images at once).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _make_images(folder: Path, n: int, size: tuple[int, int]) -> list[Path]:
    """Photo-like JPEGs: smooth random colour fields plus noise (≈ 40-80 KB each)."""
    from PIL import Image

    w, h = size
    paths = []
    for i in range(n):
        rng = np.random.default_rng(i)
        low = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
        arr = np.asarray(low).astype(np.int16) + rng.normal(0, 12, (h, w, 3)).astype(np.int16)
        path = folder / f"img{i:05d}.jpg"
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, quality=88)
        paths.append(path)
    return paths


def _forward_only(loaded, paths, batch: int, precision: str) -> float:
    import torch
    import torch.nn.functional as F

    from vecexplore.embed.pipeline import _autocast
    from vecexplore.io.images import open_rgb

    tensors = torch.stack([loaded.preprocess(open_rgb(p)) for p in paths])
    if loaded.device.startswith("cuda"):
        tensors = tensors.pin_memory()
    with torch.inference_mode(), _autocast(loaded.device, precision):
        loaded.model.encode_image(tensors[:batch].to(loaded.device))  # warm-up
        _sync(loaded.device)
        start = time.perf_counter()
        for i in range(0, len(tensors), batch):
            feats = loaded.model.encode_image(tensors[i : i + batch].to(loaded.device, non_blocking=True))
            F.normalize(feats.float(), dim=-1).cpu()
        _sync(loaded.device)
    return len(tensors) / (time.perf_counter() - start)


def _naive(loaded, paths, precision: str) -> float:
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from vecexplore.embed.pipeline import _autocast

    with torch.inference_mode(), _autocast(loaded.device, precision):
        start = time.perf_counter()
        for p in paths:
            with Image.open(p) as im:
                x = loaded.preprocess(im.convert("RGB")).unsqueeze(0).to(loaded.device)
            F.normalize(loaded.model.encode_image(x).float(), dim=-1).cpu()
        _sync(loaded.device)
    return len(paths) / (time.perf_counter() - start)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


_RSS_SCRIPT = """
import json, resource, sys, threading, time
from vecexplore.embed import EmbedConfig, embed_images, load_clip

def rss_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

cfg = EmbedConfig(**json.loads(sys.argv[1]))
paths = sys.argv[2:]
model = load_clip(cfg.model, cfg.weights, device=cfg.device)
embed_images(paths[:8], cfg, cache=None, model=model)  # warm: allocator pools, first-call costs
before = rss_kb()
peak = [before]
done = threading.Event()

def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss_kb())
        time.sleep(0.005)

sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
res = embed_images(paths, cfg, cache=None, model=model)
done.set()
sampler.join()
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"before": before, "peak": max(peak[0], rss_kb()), "workers": workers,
                  "ok": int(res.ok.sum()), "vectors": res.vectors.nbytes}))
"""


def _peak_rss(cfg_kwargs: dict, paths: list[Path]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, json.dumps(cfg_kwargs), *map(str, paths)],
        capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_embed")
    parser.add_argument("--n", type=int, default=128, help="images for the throughput table")
    parser.add_argument("--model", default="ViT-S-32", help="open_clip architecture (random weights)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads in this process")
    parser.add_argument("--naive-n", type=int, default=32, help="images for the (slow) naive loop")
    parser.add_argument("--rss-n", type=int, default=32, help="N for the peak-RSS check (N and 4N)")
    parser.add_argument("--size", default="640x480")
    args = parser.parse_args(argv)

    import torch

    from vecexplore.embed import EmbedConfig, embed_images, load_clip, resolve_precision

    if args.threads:
        torch.set_num_threads(args.threads)  # the benchmark's own process only
    size = tuple(int(v) for v in args.size.split("x"))
    cfg_kwargs = {
        "model": args.model, "weights": "random", "device": args.device,
        "batch_size": args.batch, "num_workers": args.workers, "precision": args.precision,
    }
    cfg = EmbedConfig(**cfg_kwargs)
    loaded = load_clip(cfg.model, cfg.weights, device=cfg.device)
    batch = cfg.batch_size_for(loaded.device)
    precision = resolve_precision(cfg.precision, loaded.device)
    cpus = os.cpu_count()
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"model {args.model} (random weights, {loaded.dim}-d, {loaded.image_size[0]} px), device {loaded.device}, "
          f"precision {precision}, batch {batch}, workers {cfg.num_workers_for(loaded.device)}, "
          f"{cpus} CPUs{load}, torch threads {torch.get_num_threads()}, images {size[0]}×{size[1]} JPEG")

    with tempfile.TemporaryDirectory(prefix="bench_embed_") as tmp:
        n_total = max(args.n, 4 * args.rss_n, args.naive_n)
        start = time.perf_counter()
        paths = _make_images(Path(tmp), n_total, size)
        print(f"generated {n_total} images in {time.perf_counter() - start:.1f} s")
        bench = paths[: args.n]

        fwd = _forward_only(loaded, bench, batch, precision)
        embed_images(bench[:batch], cfg, cache=None, model=loaded)  # warm-up (first-call costs)
        res = embed_images(bench, cfg, cache=None, model=loaded)
        pipe = res.stats.n_embedded / (res.stats.seconds - res.stats.load_seconds)
        naive = _naive(loaded, paths[: args.naive_n], precision)

        rows = [
            ("pipeline end-to-end", batch, pipe, len(bench)),
            ("forward-only (tensors in memory)", batch, fwd, len(bench)),
            ("naive loop (PIL → preprocess → forward)", 1, naive, args.naive_n),
        ]
        print(f"\n{'method':42s} {'device':7s} {'batch':>5s} {'images':>6s} {'images/s':>9s} {'% of fwd':>8s}")
        for name, b, rate, count in rows:
            print(f"{name:42s} {loaded.device:7s} {b:5d} {count:6d} {rate:9.1f} {100 * rate / fwd:7.0f}%")

        print("\nRSS of embed_images in a fresh process, sampled every 5 ms (MB; Linux /proc; "
              "workers = peak of the largest worker process, shared pages included)")
        print(f"{'images':>6s} {'before':>8s} {'peak':>8s} {'growth':>8s} {'workers':>8s} {'vectors':>8s}")
        for k in (args.rss_n, 4 * args.rss_n):
            r = _peak_rss(cfg_kwargs, paths[:k])
            mb = 1024.0
            print(f"{k:6d} {r['before'] / mb:8.1f} {r['peak'] / mb:8.1f} {(r['peak'] - r['before']) / mb:8.1f} "
                  f"{r['workers'] / mb:8.1f} {r['vectors'] / 2**20:8.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
