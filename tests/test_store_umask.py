"""Files of a run honour the user's umask: what a plain open()/mkdir() would give.

Under umask 022 a run (its directory, JSON, npy, parquet, thumbnails), its
exports (every format, the yolo folder), evaluate's JSON and plots, the
embedding cache and the demo data are 0644 / 0755, readable by others; under 077 they are
0600 / 0700. Each umask runs in its own subprocess: the test process's umask is
never changed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Writes one of everything under argv[1], from the demo run argv[2] and its data argv[3];
# prints {relative path: mode} of everything it made.
_WRITE_EVERYTHING = textwrap.dedent("""
    import json, os, shutil, sys
    from pathlib import Path
    import numpy as np

    os.umask(int(sys.argv[4], 8))
    base, demo, data = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])

    from vecexplore.store import MANIFEST, Run, write_run
    from vecexplore.thumbs import scan_images
    src = Run(demo)
    with write_run(base / "runs" / "run") as w:  # every writer of the store
        w.write_table("images", src.images)
        w.write_json("metrics.json", src.metrics)
        w.write_array("embeddings.npy", src.embeddings(mmap=False))
        images = sorted((data / "images").rglob("*.jpg"))[:3]
        scan_images(images, w.tmp_dir, workers=0)
        w.write_json(MANIFEST, src.manifest)

    from vecexplore.export import export_selection
    run = Run(demo)
    for fmt in ("csv", "json", "txt", "coco", "yolo"):
        export_selection(run, np.arange(5), fmt=fmt, out=base / "exports" / f"sel.{fmt}")

    from vecexplore.cli._evaluate import _write_json
    from vecexplore.eval.evaluate import evaluate
    from vecexplore.eval.plots import write_plots
    ev = evaluate(run.dataset(), iou=0.5)
    _write_json(ev.to_json_dict(), base / "metrics.json")
    write_plots(ev, base / "plots")

    from vecexplore.embed.cache import EmbeddingCache
    with EmbeddingCache(base / "cache", "m|w|p|fp32") as cache:
        cache.add(["d" * 40], np.ones((1, 4), np.float32))

    from vecexplore.demo import generate_demo
    generate_demo(base / "demo", n=20)

    print(json.dumps({str(p.relative_to(base)): p.lstat().st_mode & 0o7777
                      for p in sorted(base.rglob("*")) if not p.is_symlink()}))
""")


def _umask_of_this_process() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    raise AssertionError("no Umask line in /proc/self/status")


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_everything_written_gets_the_umasks_modes(demo_run, tmp_path, umask, file_mode, dir_mode):
    run_dir, data = demo_run
    res = subprocess.run([sys.executable, "-c", _WRITE_EVERYTHING, str(tmp_path), str(run_dir), str(data), f"{umask:o}"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    modes = json.loads(res.stdout.strip().splitlines()[-1])
    expected_kinds = {"runs/run/images.parquet", "runs/run/metrics.json", "runs/run/embeddings.npy",
                      "runs/run/thumbs.bin", "runs/run/thumbs.npy", "runs/run/manifest.json",
                      "exports/sel.csv", "exports/sel.json", "exports/sel.txt", "exports/sel.coco",
                      "exports/sel.yolo", "exports/sel.yolo/data.yaml", "metrics.json",
                      "plots/confusion_matrix.png", "demo", "demo/annotations.json", "demo/images/000001.jpg"}
    assert expected_kinds <= set(modes), sorted(set(modes))
    assert any(p.startswith("exports/sel.yolo/labels/") and p.endswith(".txt") for p in modes)
    assert any(p.startswith("cache/") and p.endswith(".npz") for p in modes)
    wrong = {p: f"{m:o}" for p, m in modes.items()
             if m != (dir_mode if (tmp_path / p).is_dir() else file_mode)}
    assert wrong == {}, f"umask {umask:03o}: expected files {file_mode:o}, folders {dir_mode:o}"


def test_the_built_run_has_the_modes_of_this_processs_umask(demo_run):
    """The session's demo run was built by this process (build_run, in-process)."""
    umask = _umask_of_this_process()
    run_dir = Path(demo_run[0])
    assert run_dir.stat().st_mode & 0o777 == 0o777 & ~umask
    wrong = {p.name: f"{p.stat().st_mode & 0o777:o}" for p in run_dir.iterdir()  # exports/: the app's, if any
             if p.stat().st_mode & 0o777 != (0o777 if p.is_dir() else 0o666) & ~umask}
    assert wrong == {}, f"umask {umask:03o}"
