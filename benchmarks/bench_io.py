"""Input loading speed: vecexplore's validating loaders vs the plain references.

Rows (same files for both sides, one process, best of ``--repeats``):

* COCO GT + results from disk: ``load_coco`` (parse + validate every record + build
  the Dataset) vs pycocotools ``COCO(file)`` + ``loadRes(file)`` (parse + index).
* missing-image check over ``--files`` names (1% missing) in one folder:
  ``find_missing_images`` vs a plain ``os.path.exists`` loop.
* image header sizes (``image_size``: lazy open + EXIF) for ``--headers`` JPEGs,
  vs a full decode (``Image.open(p).convert("RGB")``).

    python benchmarks/run.py io [--images=5000] [--files=100000] [--headers=500] [--repeats=3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path

from coco_synth import make_synthetic_coco

from vecexplore.io import find_missing_images, load_coco
from vecexplore.io._read import image_size


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _row(name: str, n: int, unit: str, ours: float, ref: float | None, ref_name: str) -> None:
    ref_text = f"{ref:9.3f}" if ref is not None else "      n/a"
    ratio = f"{ref / ours:6.1f}x" if ref else "     -"
    print(f"{name:<28} {n:>9,} {unit:<6} {ours:9.3f} {ref_text}  {ratio}  ({ref_name})")


def _coco(tmp: Path, num_images: int, repeats: int) -> None:
    synth = make_synthetic_coco(num_images=num_images)
    gt_path, pred_path = tmp / "gt.json", tmp / "pred.json"
    gt_path.write_text(json.dumps(synth.coco_gt()))
    pred_path.write_text(json.dumps(synth.coco_results()))
    ds = load_coco(gt_path, pred_path, check_images=False, clip=False)
    ours = _best(lambda: load_coco(gt_path, pred_path, check_images=False, clip=False), repeats)
    ref = None
    try:
        from pycocotools.coco import COCO

        def pycoco():
            with contextlib.redirect_stdout(io.StringIO()):
                COCO(str(gt_path)).loadRes(str(pred_path))

        ref = _best(pycoco, repeats)
    except ImportError:
        pass
    n = len(ds.gt) + len(ds.pred)
    _row(f"COCO load ({num_images:,} images)", n, "objs", ours, ref, "pycocotools COCO + loadRes")


def _missing(tmp: Path, n_files: int, repeats: int) -> None:
    folder = tmp / "many"
    folder.mkdir()
    names = [f"{i:07d}.jpg" for i in range(n_files)]
    for k, name in enumerate(names):
        if k % 100:
            (folder / name).touch()
    found = find_missing_images(names, folder)
    assert len(found) == len(names[::100]), len(found)
    ours = _best(lambda: find_missing_images(names, folder), repeats)
    ref = _best(lambda: [n for n in names if not os.path.exists(os.path.join(folder, n))], repeats)
    _row("missing-image check", n_files, "names", ours, ref, "os.path.exists loop")


def _headers(tmp: Path, n: int, repeats: int) -> None:
    from PIL import Image

    folder = tmp / "jpegs"
    folder.mkdir()
    paths = []
    for i in range(n):
        p = folder / f"{i}.jpg"
        Image.new("RGB", (640, 480), (i % 255, 80, 160)).save(p, quality=90)
        paths.append(p)
    ours = _best(lambda: [image_size(p) for p in paths], repeats)

    def decode():
        for p in paths:
            with Image.open(p) as im:
                im.convert("RGB")

    ref = _best(decode, repeats)
    _row("image header sizes (640x480)", n, "images", ours, ref, "full PIL decode")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench io")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--headers", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"{'case':<28} {'n':>9} {'':<6} {'ours s':>9} {'ref s':>9}  {'ref/ours':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _coco(tmp, args.images, args.repeats)
        _missing(tmp, args.files, args.repeats)
        _headers(tmp, args.headers, args.repeats)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
