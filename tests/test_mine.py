"""``vecexplore mine``: find more images like a failure cluster in an unlabeled pool.

- acceptance: in pools where ~10 % of the images share a planted failure mode's
  appearance, the top N (N = their count) are ≥ 80 % of them, for every planted
  mode, on runs and pools of several seeds and sizes (figures printed);
- the CLI's formats (txt, csv, label-studio), the contact sheet and its size,
  the cache (a second run embeds nothing), bad pool images recorded, not fatal;
- bad input: exit 2 with ``error: ...`` and no traceback;
- the notebook API ``vx.mine``.
"""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from _mine_helpers import mode_clusters, write_pool
from conftest import build_demo_run
from PIL import Image

from vecexplore.cli import main
from vecexplore.demo import PLANTED_MODES, read_planted
from vecexplore.export import select_clusters
from vecexplore.mining import mine_pool
from vecexplore.mining.write import SHEET_IMAGES, sheet_path, sheet_size, unreadable_path
from vecexplore.store import Run


def _precision_per_mode(run, data, base, *, pool_n, pool_seed, task="detection"):
    """``{mode: (N, precision in the top N)}`` for every planted mode the run found as a
    cluster (≥ 80 % of a cluster's images of that mode): a mode the run did not
    separate (blur in some small runs) is no failing cluster of it, and is left out."""
    planted = read_planted(data)["modes"]
    out = {}
    for mode in PLANTED_MODES:
        clusters = mode_clusters(run, planted[mode]["file_names"])
        if not clusters:
            continue
        wanted = set(write_pool(base / f"pool-{mode}", n=pool_n, mode=mode, seed=pool_seed, task=task))
        res = mine_pool(run, select_clusters(run, clusters), base / f"pool-{mode}", k=len(wanted),
                        out=base / f"{mode}.txt", device="cpu", num_workers=0, cache_dir=base / "cache")
        out[mode] = (len(wanted), float(np.mean([p in wanted for p in res.paths])))
    return out


@pytest.fixture(scope="module")
def run(demo_run):
    return Run(demo_run[0])


def test_acceptance_on_the_session_run(run, demo_run, tmp_path):
    figures = _precision_per_mode(run, demo_run[1], tmp_path, pool_n=300, pool_seed=11)
    print(f"run seed 0 n=400, pool 300: {figures}")
    assert set(figures) == set(PLANTED_MODES)  # the session run separates all three
    assert all(p >= 0.8 for _, p in figures.values()), figures


@pytest.mark.parametrize(("seed", "n_run", "pool_n"), [
    (3, 300, 400),
    (6, 500, 250),  # gave precision 0.72 on 2026-12-02; passes since (CI of 8a3c9a6, and here), cause not traced
])
def test_acceptance_on_other_seeds_and_sizes(tmp_path, umap_warm, seed, n_run, pool_n):
    result, data = build_demo_run(tmp_path, n=n_run, seed=seed)
    figures = _precision_per_mode(Run(result.out), data, tmp_path, pool_n=pool_n, pool_seed=seed + 100)
    print(f"run seed {seed} n={n_run}, pool {pool_n}: {figures}")
    assert figures, "the run separates none of the planted modes"
    assert all(p >= 0.8 for _, p in figures.values()), figures


@pytest.fixture(scope="module")
def pool(tmp_path_factory, demo_run):
    """A 120-image pool (12 dark night scenes) plus two files that are no images."""
    base = tmp_path_factory.mktemp("pool")
    wanted = write_pool(base / "pool", n=120, mode="dark_small_missed", seed=5)
    (base / "pool" / "broken.jpg").write_bytes(b"not a jpeg at all")
    (base / "pool" / "sub0" / "empty.png").write_bytes(b"")
    return base / "pool", wanted


def _cli(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    cap = capsys.readouterr()
    return (info.value.code or 0), cap.out, cap.err


def _dark_cluster(run, data) -> list[str]:
    names = read_planted(data)["modes"]["dark_small_missed"]["file_names"]
    return [a for c in mode_clusters(run, names) for a in ("--cluster", str(c))]


def test_cli_formats_sheet_cache_and_bad_images(run, demo_run, pool, tmp_path, capsys):
    folder, wanted = pool
    cache = tmp_path / "cache"
    common = ["mine", str(run.path), *_dark_cluster(run, demo_run[1]), "--pool", str(folder),
              "--cache-dir", str(cache), "--device", "cpu", "--workers", "0"]
    code, out, err = _cli([*common, "--k", "12", "--out", str(tmp_path / "top.txt")], capsys)
    assert code == 0, err
    assert "122 images (0 from the cache, 120 embedded now, 2 unreadable)" in out
    lines = (tmp_path / "top.txt").read_text().splitlines()
    assert len(lines) == 12 and np.mean([p in wanted for p in lines]) >= 0.8
    bad = list(csv.reader((tmp_path / "top.unreadable.csv").open()))
    assert bad[0] == ["path", "reason"] and sorted(r[0].rsplit("/", 1)[1] for r in bad[1:]) == ["broken.jpg", "empty.png"]
    with Image.open(sheet_path(tmp_path / "top.txt")) as sheet:
        assert sheet.format == "PNG" and sheet.size == sheet_size(12)
    # again, as csv, more than a sheet holds: every vector comes from the cache
    code, out, err = _cli([*common, "--k", "60", "--format", "csv", "--out", str(tmp_path / "top.csv")], capsys)
    assert code == 0, err
    assert "(120 from the cache, 0 embedded now, 2 unreadable)" in out
    rows = list(csv.DictReader((tmp_path / "top.csv").open()))
    assert [r["rank"] for r in rows] == [str(i) for i in range(1, 61)]
    assert [r["path"] for r in rows[:12]] == lines
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and 0 <= scores[-1] <= scores[0] <= 1
    with Image.open(tmp_path / "top.sheet.png") as sheet:
        assert sheet.size == sheet_size(SHEET_IMAGES) == (8 * 164 + 4, 6 * 182 + 4)
    code, out, err = _cli([*common, "--k", "5", "--format", "label-studio", "--out", str(tmp_path / "ls.json")], capsys)
    assert code == 0, err
    tasks = json.loads((tmp_path / "ls.json").read_text())
    assert tasks == [{"data": {"image": p}} for p in lines[:5]]
    # the output is not overwritten without --force
    code, _, err = _cli([*common, "--k", "5", "--out", str(tmp_path / "ls.json")], capsys)
    assert code == 2 and "already exists" in err


def test_saved_selection_images_file_and_the_api(run, demo_run, pool, tmp_path, capsys):
    import vecexplore as vx
    from vecexplore.selections import save_selection

    folder, wanted = pool
    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    ids = read_planted(demo_run[1])["modes"]["dark_small_missed"]["image_ids"]
    idx = np.flatnonzero(run.images["image_id"].isin(ids).to_numpy())
    save_selection(Run(copy), "night", idx)
    (tmp_path / "ids.txt").write_text("".join(f"{i}\n" for i in ids))
    outs = []
    for how in (["--selection", "night"], ["--images-file", str(tmp_path / "ids.txt")]):
        out = tmp_path / f"{how[0].strip('-')}.txt"
        code, _, err = _cli(["mine", str(copy), *how, "--pool", str(folder), "--k", "12", "--out", str(out),
                             "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--workers", "0"], capsys)
        assert code == 0, err
        outs.append(out.read_text().splitlines())
    assert outs[0] == outs[1] and np.mean([p in wanted for p in outs[0]]) >= 0.8
    res = vx.mine(copy, selection="night", pool=folder, k=12, out=tmp_path / "api.txt",
                  cache_dir=tmp_path / "cache", device="cpu", workers=0)
    assert res.paths == outs[0] and res.n_embedded == 0 and res.n_cached == 120
    assert (tmp_path / "api.txt").read_text().splitlines() == outs[0]


def test_a_pool_list_file(run, demo_run, pool, tmp_path, capsys):
    folder, _ = pool
    listing = tmp_path / "pool.txt"
    names = sorted(folder.rglob("*.jpg"))
    listing.write_text("# my pool\n" + "".join(f"{p}\n" for p in names) + "\nmissing.jpg\n")
    code, out, err = _cli(["mine", str(run.path), *_dark_cluster(run, demo_run[1]), "--pool", str(listing), "--k", "12",
                           "--out", str(tmp_path / "o.txt"), "--device", "cpu", "--workers", "0",
                           "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 0, err
    assert "2 unreadable" in out  # broken.jpg and the missing file
    assert "file not found" in unreadable_path(tmp_path / "o.txt").read_text()


@pytest.mark.parametrize(("case", "message"), [
    ("unknown_cluster", "unknown cluster id"),
    ("unknown_selection", "no saved selection"),
    ("no_selector", "choose images with"),
    ("missing_run", "no such run directory"),
    ("missing_pool", "pool not found"),
    ("empty_pool", "holds no image"),
    ("empty_list", "names no image"),
    ("bad_pool", "none of the 2 pool images could be embedded"),
    ("bad_format", "unknown --format"),
])
def test_bad_input_is_a_clear_error(run, tmp_path, capsys, case, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"junk")
    (tmp_path / "bad" / "b.png").write_bytes(b"\x89PNG junk")
    (tmp_path / "list.txt").write_text("# nothing\n\n")
    cluster = str(int(run.clusters["cluster"].iloc[0]))
    args = {"run": str(run.path), "sel": ["--cluster", cluster], "pool": str(tmp_path / "bad"), "extra": []}
    if case == "unknown_cluster":
        args["sel"] = ["--cluster", "999"]
    elif case == "unknown_selection":
        args["sel"] = ["--selection", "nope"]
    elif case == "no_selector":
        args["sel"] = []
    elif case == "missing_run":
        args["run"] = str(tmp_path / "no-run")
    elif case == "missing_pool":
        args["pool"] = str(tmp_path / "nowhere")
    elif case == "empty_pool":
        args["pool"] = str(tmp_path / "empty")
    elif case == "empty_list":
        args["pool"] = str(tmp_path / "list.txt")
    elif case == "bad_format":
        args["extra"] = ["--format", "xml"]
    code, _, err = _cli(["mine", args["run"], *args["sel"], "--pool", args["pool"], "--k", "5",
                         "--out", str(tmp_path / "o.txt"), "--device", "cpu", "--workers", "0",
                         "--cache-dir", str(tmp_path / "cache"), *args["extra"]], capsys)
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, err
    assert "Traceback" not in err
    assert not (tmp_path / "o.txt").exists()


def test_vx_mine_is_the_function_after_the_package_is_imported():
    import vecexplore as vx
    import vecexplore.mining

    assert callable(vx.mine) and vx.mine.__module__ == "vecexplore.api"


def test_a_classification_run_mines_too(demo_run_classification, tmp_path):
    run_dir, data = demo_run_classification
    figures = _precision_per_mode(Run(run_dir), data, tmp_path, pool_n=150, pool_seed=21, task="classification")
    print(f"classification run seed 0 n=300, pool 150: {figures}")
    assert figures, "the run separates none of the planted modes"
    assert all(p >= 0.8 for _, p in figures.values()), figures


def test_a_pool_beyond_the_exact_limit_gets_an_ivf_index_kept_beside_the_cache(run, demo_run, pool, tmp_path,
                                                                               monkeypatch):
    """The 120-image pool made "large" by a lower limit: the first mine builds the IVF index
    and the run's neighbour table and writes them beside the embedding cache's shards, the
    next loads them and computes neither, and both rank as the exact search does (3 lists,
    all probed, re-ranked exactly; the table is the same exact search, done ahead)."""
    from vecexplore.mining import index, neighbors

    folder, wanted = pool
    cache = tmp_path / "cache"
    names = read_planted(demo_run[1])["modes"]["dark_small_missed"]["file_names"]
    chosen = select_clusters(run, mode_clusters(run, names))
    common = {"k": 12, "device": "cpu", "num_workers": 0, "cache_dir": cache}
    exact = mine_pool(run, chosen, folder, out=tmp_path / "exact.txt", **common)
    assert not list(cache.rglob("*.faiss"))  # an exact index is not kept
    monkeypatch.setattr(index, "EXACT_LIMIT", 50)
    first = mine_pool(run, chosen, folder, out=tmp_path / "ivf1.txt", **common)
    (kept,) = cache.rglob("*.faiss")
    (table,) = cache.rglob("*.neighbors.npz")  # the vote's neighbours of every pool image, beside it
    assert kept.parent.name == "pool-index" and table.parent == kept.parent
    assert (kept.parent.parent / "shards").is_dir()
    built = []
    real = index.build_index
    monkeypatch.setattr(index, "build_index", lambda *a, **kw: built.append(a) or real(*a, **kw))
    monkeypatch.setattr(neighbors, "run_neighbors", lambda *a, **kw: built.append(a))
    second = mine_pool(run, chosen, folder, out=tmp_path / "ivf2.txt", **common)
    assert built == [] and list(cache.rglob("*.faiss")) == [kept] and list(cache.rglob("*.neighbors.npz")) == [table]
    assert first.paths == second.paths == exact.paths and np.mean([p in wanted for p in exact.paths]) >= 0.8
    np.testing.assert_allclose(second.scores, exact.scores, atol=1e-5)
