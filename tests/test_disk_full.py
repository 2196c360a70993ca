"""A full disk: ``error: <path>: no space left on device (needs about N MB)``, exit 2,
no traceback, nothing half-written left behind.

The disk fills for real: ``tests/enospc_shim.c``, compiled here with gcc and
loaded with LD_PRELOAD into the ``vecexplore`` subprocess, makes the kernel-
facing calls (write, pwrite, writev, fwrite) on files under one directory fail
with ENOSPC once a byte budget is spent. No root, no tmpfs, none of our code
mocked. Every kind of write is covered: build (the run directory, early and
late; the embedding cache), export (every format), evaluate (--json, --plots),
and demo-data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_MODEL

HERE = Path(__file__).resolve().parent
MESSAGE = re.compile(r"error: (?P<path>.+): no space left on device \(needs about (?P<mb>\d+(\.\d)?) MB\)")


@pytest.fixture(scope="module")
def shim(tmp_path_factory) -> Path:
    """The compiled shim. gcc is part of the toolchain this project needs: no gcc is a failure, not a skip."""
    out = tmp_path_factory.mktemp("shim") / "enospc.so"
    gcc = shutil.which("gcc") or shutil.which("cc")
    assert gcc, "gcc (or cc) is needed to build tests/enospc_shim.c"
    subprocess.run([gcc, "-shared", "-fPIC", "-O1", "-o", str(out), str(HERE / "enospc_shim.c"), "-ldl"],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    from vecexplore.demo import generate_demo

    data = tmp_path_factory.mktemp("small") / "data"
    generate_demo(data, task="detection", n=40, seed=0)
    return data


def _vecexplore(argv, *, shim: Path, full: Path, budget: int, env=None) -> subprocess.CompletedProcess:
    """Run ``vecexplore ARGV`` with ``full`` (a directory) on a disk that holds ``budget`` more bytes."""
    env = {**os.environ, **(env or {}), "LD_PRELOAD": str(shim),
           "VX_ENOSPC_DIR": str(full.resolve()), "VX_ENOSPC_BUDGET": str(budget)}
    return subprocess.run([sys.executable, "-m", "vecexplore", *map(str, argv)],
                          capture_output=True, text=True, env=env, timeout=600)


def _assert_disk_full(res: subprocess.CompletedProcess, path: Path) -> float:
    """Exit 2, no traceback, the last stderr line is the message about ``path``; returns its N (MB)."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout
    last = res.stderr.strip().splitlines()[-1]
    match = MESSAGE.fullmatch(last)
    assert match, last
    assert match["path"] == str(path), last
    return float(match["mb"])


def _leftovers(folder: Path) -> list[str]:
    """Everything in ``folder`` (recursively), as relative paths."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _build_argv(data: Path, out: Path, cache: Path) -> list:
    return ["build", "--gt", data / "annotations.json", "--pred", data / "predictions.json", "--images", data,
            "--model", TINY_MODEL, "--weights", "random", "--device", "cpu", "--workers", "0",
            "--cache-dir", cache, "--out", out]


# ---------------------------------------------------------------- the shim itself


def test_the_shim_fills_the_disk_and_only_under_its_directory(shim, tmp_path):
    full, free = tmp_path / "full", tmp_path / "free"
    full.mkdir()
    free.mkdir()
    code = ("import sys\n"
            "open(sys.argv[2] + '/a', 'wb').write(b'x' * 10_000)\n"
            "try:\n"
            "    with open(sys.argv[1] + '/a', 'wb') as f: f.write(b'x' * 10_000)\n"
            "except OSError as e: print(e.errno)\n")
    env = {**os.environ, "LD_PRELOAD": str(shim), "VX_ENOSPC_DIR": str(full), "VX_ENOSPC_BUDGET": "4000"}
    res = subprocess.run([sys.executable, "-c", code, str(full), str(free)], capture_output=True, text=True, env=env)
    assert res.stdout.strip() == "28", res.stderr  # ENOSPC
    assert (full / "a").stat().st_size == 4000 and (free / "a").stat().st_size == 10_000


# ---------------------------------------------------------------- build


@pytest.fixture(scope="module")
def reference_run(small_data, tmp_path_factory, umap_warm):
    """The same 40 images built on a disk with room: how big the run really is."""
    from conftest import build_demo_run

    base = tmp_path_factory.mktemp("reference")
    shutil.copytree(small_data, base / "data-detection")
    result, _ = build_demo_run(base, n=40)
    return result.out


def _run_bytes(run: Path) -> int:
    return sum(p.stat().st_size for p in run.iterdir())


@pytest.mark.parametrize("when", ["at-once", "late"])
def test_build_on_a_full_run_disk(shim, small_data, reference_run, tmp_path, when):
    """The run's folder fills at once (the first file) or late (after UMAP, most files written)."""
    runs = tmp_path / "runs"
    runs.mkdir()
    size = _run_bytes(reference_run)
    budget = 0 if when == "at-once" else int(size * 0.7)
    res = _vecexplore(_build_argv(small_data, runs / "exp", tmp_path / "cache"), shim=shim, full=runs, budget=budget)
    mb = _assert_disk_full(res, runs / "exp")
    assert mb * 1e6 >= size  # an estimate, but never less than the run takes
    assert _leftovers(runs) == []  # no run, no partial directory, no temp file
    if when == "late":
        assert "map done" in res.stderr  # it really failed after the heavy stages


def test_build_on_a_full_cache_disk(shim, small_data, tmp_path):
    """A full embedding cache stops the build at its first shard, naming the cache."""
    cache = tmp_path / "cache"
    cache.mkdir()
    out = tmp_path / "runs" / "exp"
    res = _vecexplore(_build_argv(small_data, out, cache), shim=shim, full=cache, budget=0)
    mb = _assert_disk_full(res, cache)
    assert mb * 1e6 >= 40 * 64 * 4  # at least the vectors of these 40 images
    assert "free space (or pass --cache-dir on another disk) and rerun" in res.stderr
    assert not [p for p in _leftovers(cache) if p.endswith((".tmp", ".npz", ".json"))]  # no shard, no temp file
    assert not out.parent.exists() or _leftovers(out.parent) == []


# ---------------------------------------------------------------- export


@pytest.fixture(scope="module")
def export_run(demo_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("export") / "run"
    shutil.copytree(demo_run[0], run)
    return run


@pytest.mark.parametrize(("fmt", "budget"), [("csv", 0), ("json", 0), ("txt", 0), ("coco", 0),
                                             ("yolo", 0), ("yolo", 3000)])
def test_export_on_a_full_disk(shim, export_run, tmp_path, fmt, budget):
    from vecexplore.cli import main

    room, full = tmp_path / "room", tmp_path / "full"
    full.mkdir()
    argv = ["export", str(export_run), "--where", "image_idx >= 0", "--format", fmt]
    with pytest.raises(SystemExit) as done:  # the same export where there is room: its real size
        main([*argv, "--out", str(room / f"sel.{fmt}")])
    assert done.value.code in (0, None)
    # What it takes on disk: blocks, for a folder of small files (its images are symlinks)
    size = sum(p.lstat().st_blocks * 512 for p in (room / f"sel.{fmt}").rglob("*")) if fmt == "yolo" \
        else (room / f"sel.{fmt}").stat().st_size
    out = full / f"sel.{fmt}"
    res = _vecexplore([*argv, "--out", out], shim=shim, full=full, budget=budget)
    mb = _assert_disk_full(res, out)
    assert mb * 1e6 >= size
    assert _leftovers(full) == []  # no half file, no temp file, no partial folder


def test_coco_export_leaves_no_gt_subset_without_its_predictions(shim, export_run, tmp_path):
    """Room for the GT subset but not for the predictions beside it: neither is left behind."""
    from vecexplore.cli import main

    room, full = tmp_path / "room", tmp_path / "full"
    full.mkdir()
    argv = ["export", str(export_run), "--where", "image_idx >= 0", "--format", "coco"]
    with pytest.raises(SystemExit):
        main([*argv, "--out", str(room / "sel.json")])
    gt_size = (room / "sel.json").stat().st_size
    assert (room / "sel.predictions.json").stat().st_size > 100
    out = full / "sel.json"
    res = _vecexplore([*argv, "--out", out], shim=shim, full=full, budget=gt_size + 50)
    _assert_disk_full(res, full / "sel.predictions.json")
    assert _leftovers(full) == []


# ---------------------------------------------------------------- evaluate


def test_evaluate_json_on_a_full_disk(shim, small_data, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    argv = ["evaluate", "--gt", small_data / "annotations.json", "--pred", small_data / "predictions.json"]
    res = _vecexplore([*argv, "--json", full / "metrics.json"], shim=shim, full=full, budget=1000)
    mb = _assert_disk_full(res, full / "metrics.json")
    ok = _vecexplore([*argv, "--json", tmp_path / "metrics.json"], shim=shim, full=full, budget=0)
    assert ok.returncode == 0, ok.stderr  # the same command where there is room
    assert mb * 1e6 >= (tmp_path / "metrics.json").stat().st_size
    json.loads((tmp_path / "metrics.json").read_text())
    assert _leftovers(full) == []


def test_evaluate_plots_on_a_full_disk(shim, small_data, tmp_path):
    plots = tmp_path / "plots"
    argv = ["evaluate", "--gt", small_data / "annotations.json", "--pred", small_data / "predictions.json",
            "--plots", plots]
    plots.mkdir()
    res = _vecexplore(argv, shim=shim, full=plots, budget=20_000)  # the first PNG does not fit
    _assert_disk_full(res, plots / "confusion_matrix.png")
    assert _leftovers(plots) == []


# ---------------------------------------------------------------- demo data


def test_demo_data_on_a_full_disk(shim, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    res = _vecexplore(["demo-data", "--out", full / "demo", "--n", "20"], shim=shim, full=full, budget=50_000)
    mb = _assert_disk_full(res, full / "demo")
    assert mb * 1e6 >= 20 * 25_000  # the demo's JPEGs alone are about 25 kB each
    assert _leftovers(full) == []
