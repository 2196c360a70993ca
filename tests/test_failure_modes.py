"""Acceptance (issue 11 §2): on generated data independent of the demo, one failure mode is one slice.

``tests/_modes.py`` plants four modes of different kinds (darkness or fog with
misses, a textured background with false positives, blur with badly placed
boxes, a colour cast with class confusions), each on 5–15 % of the images, and
the run is built end to end (JPEG → tiny random-weight CLIP → UMAP/HDBSCAN →
slices → recommendations). The slices read are those ``vecexplore info --json``
lists. Every mode must be described by exactly one of the top K slices (K = 4),
with precision ≥ 0.8 and recall ≥ 0.6 against its planted images.

The grid (300 images × seeds 0 and 1, 1,000 × seed 0, 3,000 × seed 0) keeps
the test within a few minutes on two cores; these configurations were among
those the rule was developed on. The sweep ``python benchmarks/run.py modes``
builds more sizes and seeds and prints each mode's rank, precision and recall,
failures included. Measured after the trait rule of
:mod:`vecexplore.analysis.slicing` (traits at the family-wise quantile, objects
counted once per image) and the home rule of the covered pass: 300/1,000/3,000 ×
seeds 0–2, 36 of 36 modes; 1,000 × seeds 6–11, 24 of 24 (seeds 6 and 8, 4 of 8
before, were looked at while fixing). Not looked at: 300 × seeds 8–15, 32 of
32; 2,000 × seeds 12–13, 8 of 8 (6 before); 500 × seeds 16–19, 14 of 16, and
3,000 × seeds 14–15, 5 of 8 (a fog mode told twice pushes others out of the top
four). 119 of 124 in all, 113 before. Since then (``--regrade`` of the kept runs
of 300 × 0–1, 500 × 16–19, 1,000 × 0, 3,000 × 0 and 15, the other 84 not
re-graded): each finding ranked by the part of its claim the findings above do
not tell, and a mixture merged into its part most like it (by Jaccard, not by
images in common: a tail of missed wide objects over half the run took the
blurry scenes' misses at 3,000 × 15 and pushed the cast out), 36 of 36.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from _modes import MODES, generate, score
from conftest import TINY_MODEL

from vecexplore.info import SLICE_KINDS

GRID = [(300, 0), (300, 1), (1000, 0), (3000, 0)]


def _build(base, n: int, seed: int):
    from vecexplore.builder import BuildConfig, build_run
    from vecexplore.embed.pipeline import EmbedConfig
    from vecexplore.io.source import DatasetSource
    from vecexplore.mapping import MapConfig

    data = base / "data"
    planted = generate(data, n=n, seed=seed)
    result = build_run(BuildConfig(
        source=DatasetSource(gt=data / "annotations.json", pred=data / "predictions.json"), out=base / "run",
        embed=EmbedConfig(model=TINY_MODEL, weights="random", device="cpu", num_workers=0),
        map=MapConfig(seed=seed), cache_dir=base / "cache", scan_workers=0,
    ))
    return result.out, planted


@pytest.mark.parametrize(("n", "seed"), GRID)
def test_every_planted_mode_is_exactly_one_top_slice(n, seed, tmp_path, umap_warm):
    run_dir, planted = _build(tmp_path, n, seed)
    info = subprocess.run([sys.executable, "-m", "vecexplore", "info", str(run_dir), "--json"],
                          capture_output=True, text=True, check=True)
    summary = json.loads(info.stdout)
    slices = [r for r in summary["recommendations"] if r["kind"] in SLICE_KINDS]
    assert [s["title"] for s in summary["slices"]] == [r["title"] for r in slices]
    ids = {m: np.asarray(v, np.int64) - 1 for m, v in planted.items()}  # ids are 1-based image rows
    assert set(ids) == set(MODES)
    graded = score(slices, ids, n_images=n)
    table = {m: [(r, round(p, 2), round(rc, 2), k) for r, p, rc, k in g["hits"]] for m, g in graded.items()}
    assert all(g["ok"] for g in graded.values()), (table, [s["title"] for s in slices[:6]])


@pytest.mark.parametrize("seed", [0, 1])
def test_the_generator_plants_each_mode_on_5_to_15_percent(seed, tmp_path):
    planted = generate(tmp_path, n=120, seed=seed)
    assert set(planted) == set(MODES)
    shares = {m: len(v) / 120 for m, v in planted.items()}
    assert all(0.05 <= s <= 0.15 for s in shares.values()), shares
    assert len(set().union(*map(set, planted.values()))) == sum(map(len, planted.values()))  # modes are disjoint
    again = generate(tmp_path / "again", n=120, seed=seed)
    assert again == planted and (tmp_path / "annotations.json").read_bytes() == \
        (tmp_path / "again" / "annotations.json").read_bytes()
