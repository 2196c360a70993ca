"""Near duplicates and split leakage (:mod:`vecexplore.analysis.duplicates`).

The search against a brute-force N×N reference on random vectors; planted augmented copies of
generated images found through an image-derived embedding (the tiny test model has random
weights, under which no cosine threshold separates copies from look-alikes: builds then pair only
identical files, which the build tests plant); and the leakage metrics against pycocotools and
scikit-learn on the subset, computed here from the input files.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _info_helpers import info_output as _info
from PIL import Image, ImageEnhance

from vecexplore.analysis.duplicates import (
    DEFAULT_THRESHOLD,
    RANDOM_NOTE,
    duplicate_table,
    similar_pairs,
)
from vecexplore.errors import ConfigError

# ---------------------------------------------------------------- the search


def _unit(rng, n, d):
    v = rng.normal(size=(n, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _planted_vectors(seed, n, d, n_planted, noise):
    rng = np.random.default_rng(seed)
    v = _unit(rng, n, d)
    src = rng.choice(n, n_planted, replace=False)
    copies = v[src] + rng.normal(scale=noise, size=(n_planted, d))
    v = np.concatenate([v, copies / np.linalg.norm(copies, axis=1, keepdims=True)])
    return v.astype(np.float32), {(int(s), n + i) for i, s in enumerate(src)}


@pytest.mark.parametrize(("seed", "n", "d", "threshold", "block_rows"), [
    (0, 50, 8, 0.6, None), (1, 301, 16, 0.9, 7), (2, 128, 4, 0.8, 1), (3, 500, 32, 0.95, 64), (4, 77, 8, 0.5, 1000),
])
def test_pairs_and_leaks_equal_a_brute_force_search(seed, n, d, threshold, block_rows):
    v, _ = _planted_vectors(seed, n, d, n // 10, 0.05)
    rng = np.random.default_rng(seed + 100)
    usable = rng.random(len(v)) > 0.05
    train = rng.random(len(v)) < 0.4
    a, b, s, leaks = similar_pairs(v, threshold=threshold, usable=usable, train=train, max_neighbors=len(v),
                                   block_rows=block_rows)
    full = v.astype(np.float64) @ v.T.astype(np.float64)
    ok = usable[:, None] & usable[None, :] & ~np.eye(len(v), dtype=bool)
    near = np.abs(full - threshold) < 1e-5  # float32 rounding may fall either side of the threshold
    want = {(i, j) for i, j in zip(*np.nonzero(ok & (full >= threshold) & ~near), strict=True) if i < j}
    got = set(zip(a.tolist(), b.tolist(), strict=True))
    unsure = {(i, j) for i, j in zip(*np.nonzero(ok & near), strict=True) if i < j}
    assert want <= got and got - want <= unsure
    assert (a < b).all()
    np.testing.assert_allclose(s, full[a, b], atol=1e-5)
    assert (np.diff(s) <= 1e-12).all()  # most similar first
    hit = ok[:, train] & (full[:, train] >= threshold)
    want_leaks = usable & ~train & hit.any(axis=1)
    sure = ~(ok[:, train] & near[:, train]).any(axis=1)
    assert np.array_equal(leaks[sure], want_leaks[sure])


def test_blocks_change_nothing_and_never_hold_n_by_n(monkeypatch):
    v, planted = _planted_vectors(5, 400, 16, 40, 0.05)
    reference = similar_pairs(v, threshold=0.9, block_rows=len(v))
    from vecexplore.analysis import duplicates

    shapes = []
    real = duplicates._block_similarity

    def spy(vectors, rows):
        out = real(vectors, rows)
        shapes.append(out.shape)
        return out

    monkeypatch.setattr(duplicates, "_block_similarity", spy)
    small = similar_pairs(v, threshold=0.9, block_rows=9)
    assert all(rows <= 9 for rows, _ in shapes) and len(shapes) == -(-len(v) // 9)
    # the same pairs; their cosines agree to float32 rounding (BLAS may sum a 9-row block in
    # another order than the whole matrix: CI saw one value 1 ulp apart)
    np.testing.assert_array_equal(reference[0], small[0])
    np.testing.assert_array_equal(reference[1], small[1])
    for x, y in zip(reference[2:], small[2:], strict=True):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)
    assert planted <= set(zip(small[0].tolist(), small[1].tolist(), strict=True))


def test_each_image_keeps_its_most_similar_partners_only():
    rng = np.random.default_rng(7)
    base = _unit(rng, 1, 8)
    v = base + rng.normal(scale=0.01, size=(12, 8))  # twelve copies of one image: 66 pairs
    v = np.concatenate([v / np.linalg.norm(v, axis=1, keepdims=True), _unit(rng, 30, 8)]).astype(np.float32)
    a, b, _, _ = similar_pairs(v, threshold=0.99, max_neighbors=3)
    full = v @ v.T
    np.fill_diagonal(full, -np.inf)
    for i in range(12):
        best = set(np.argsort(-full[i])[:3].tolist())
        mine = {int(y) for x, y in zip(a, b, strict=True) if x == i} | {int(x) for x, y in zip(a, b, strict=True) if y == i}
        assert best <= mine
    assert len(a) < 66 and set(a.tolist()) | set(b.tolist()) == set(range(12))


def test_bad_threshold_and_shapes_are_refused():
    v = np.eye(3, dtype=np.float32)
    for t in (0.0, 1.5, float("nan")):
        with pytest.raises(ConfigError, match="--dup-threshold"):
            duplicate_table(v, image_id=[1, 2, 3], split=None, digests=["", "", ""], usable=[True] * 3, threshold=t)
    with pytest.raises(Exception, match="usable"):
        similar_pairs(v, usable=np.ones(2, bool))


# ---------------------------------------------------------------- planted copies of images


def _scene(rng, size=96):
    k = int(rng.integers(3, 7))
    small = rng.integers(0, 256, (k, k, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((size, size), Image.BILINEAR)
    return Image.fromarray(np.clip(np.asarray(img, float) + rng.normal(0, 10, (size, size, 3)), 0, 255).astype(np.uint8))


def _augment(im, rng):
    """A small crop (1-4 px a side, resized back) and a brightness change of up to 10%."""
    w, h = im.size
    d = rng.integers(1, 5, 4)
    crop = im.crop((int(d[0]), int(d[1]), w - int(d[2]), h - int(d[3]))).resize((w, h))
    return ImageEnhance.Brightness(crop).enhance(float(rng.uniform(0.9, 1.1)))


def _descriptor(im):
    """An image-derived unit vector (16×16 colour thumbnail, centred): a stand-in for a trained CLIP,
    for which small crops and exposure changes keep the vector close and different scenes do not."""
    a = np.asarray(im.convert("RGB").resize((16, 16), Image.BILINEAR), float).ravel()
    a -= a.mean()
    return a / np.linalg.norm(a)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_planted_augmented_and_identical_copies_are_found_across_splits(seed, tmp_path):
    rng = np.random.default_rng(seed)
    n, n_aug, n_same = 60 + 10 * seed, 8, 4
    images = [_scene(rng) for _ in range(n)]
    split = ["train" if i < n // 2 else "test" for i in range(n)]
    digests = [f"d{i}" for i in range(n)]
    planted = set()
    for k, src in enumerate(rng.choice(n // 2, n_aug + n_same, replace=False)):
        if k < n_aug:
            images.append(_augment(images[src], rng))
            digests.append(f"aug{k}")
        else:
            images.append(images[src])
            digests.append(digests[src])  # the same file, byte for byte
        split.append("test")
        planted.add((int(src), len(images) - 1))
    v = np.stack([_descriptor(im) for im in images]).astype(np.float32)
    ids = np.arange(len(images)) + 1000
    table, leaks = duplicate_table(v, image_id=ids, split=split, digests=digests, usable=np.ones(len(v), bool))
    got = set(zip(table["image_idx_a"].tolist(), table["image_idx_b"].tolist(), strict=True))
    assert got == planted  # every planted pair (recall 1) and nothing among the distinct scenes
    assert table["cross_split"].all() and (table["similarity"] >= DEFAULT_THRESHOLD).all()
    assert table["exact"].sum() == n_same
    assert np.flatnonzero(leaks).tolist() == list(range(n, len(images)))
    np.testing.assert_array_equal(table["image_id_a"], ids[table["image_idx_a"]])


def test_random_weights_pair_identical_files_only():
    rng = np.random.default_rng(3)
    v = np.repeat(_unit(rng, 1, 8), 6, axis=0).astype(np.float32)  # every vector alike: meaningless
    digests = ["x", "y", "x", "z", "", ""]
    table, leaks = duplicate_table(v, image_id=np.arange(6), split=["train", "test", "test", "test", "test", "train"],
                                   digests=digests, usable=np.ones(6, bool), random_weights=True)
    assert table[["image_idx_a", "image_idx_b"]].values.tolist() == [[0, 2]]
    assert leaks.tolist() == [False, False, True, False, False, False]


# ---------------------------------------------------------------- builds with planted leaks


def _plant_detection(data: Path, rng, k: int) -> list[int]:
    """Rename split val → train and copy ``k`` train images (file, GT and predictions) into test."""
    gt = json.loads((data / "annotations.json").read_text())
    pred = json.loads((data / "predictions.json").read_text())
    for im in gt["images"]:
        if im.get("split") == "val":
            im["split"] = "train"
    train = [im for im in gt["images"] if im["split"] == "train"]
    next_id, next_ann = max(im["id"] for im in gt["images"]) + 1, max(a["id"] for a in gt["annotations"]) + 1
    copies = []
    for src in rng.choice(len(train), k, replace=False):
        im = dict(train[src])
        name = Path(im["file_name"])
        copy = name.with_name(f"copy_{next_id}{name.suffix}")
        shutil.copyfile(data / name, data / copy)
        gt["annotations"] += [{**a, "id": next_ann + j, "image_id": next_id}
                              for j, a in enumerate(a for a in gt["annotations"] if a["image_id"] == im["id"])]
        next_ann += 1000
        pred += [{**p, "image_id": next_id} for p in pred if p["image_id"] == im["id"]]
        gt["images"].append({**im, "id": next_id, "file_name": str(copy), "split": "test"})
        copies.append((im["id"], next_id))
        next_id += 1
    (data / "annotations.json").write_text(json.dumps(gt))
    (data / "predictions.json").write_text(json.dumps(pred))
    return copies


def _plant_classification(data: Path, rng, k: int) -> list[tuple[str, str]]:
    def rows(name):
        with open(data / name, newline="") as fh:
            return list(csv.DictReader(fh))

    labels, preds = rows("labels.csv"), rows("predictions.csv")
    for r in labels:
        r["split"] = "train" if r["split"] == "val" else r["split"]
    train = [r for r in labels if r["split"] == "train"]
    by_file = {p["file_name"]: p for p in preds}
    copies = []
    for i, src in enumerate(rng.choice(len(train), k, replace=False)):
        r = train[src]
        name = Path(r["file_name"])
        copy = str(name.with_name(f"copy_{i}{name.suffix}"))
        shutil.copyfile(data / name, data / copy)
        labels.append({**r, "file_name": copy, "split": "test"})
        preds.append({**by_file[r["file_name"]], "file_name": copy})
        copies.append((r["file_name"], copy))
    for name, table in (("labels.csv", labels), ("predictions.csv", preds)):
        with open(data / name, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(table[0]))
            w.writeheader()
            w.writerows(table)
    return copies


@pytest.fixture(scope="module")
def leaky_runs(tmp_path_factory, umap_warm):
    """A detection and a classification demo run whose val split is renamed train and 6 of whose train
    images are copied (file, GT, predictions) into test: ``{task: (run dir, data dir, copies)}``."""
    from conftest import build_demo_run

    from vecexplore.demo import generate_demo

    out = {}
    for task, planter in (("detection", _plant_detection), ("classification", _plant_classification)):
        base = tmp_path_factory.mktemp(f"leaky-{task}")
        data = base / f"data-{task}"
        generate_demo(data, task=task, n=120, seed=3)
        copies = planter(data, np.random.default_rng(11), 6)
        result, _ = build_demo_run(base, task=task, n=120, seed=3)
        out[task] = (result.out, data, copies)
    return out



def test_detection_leakage_equals_pycocotools_on_the_subset(leaky_runs, capsys):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from vecexplore.store import Run

    run_dir, data, copies = leaky_runs["detection"]
    info = json.loads(_info(run_dir, capsys, "--json"))
    dups, leak = info["near_duplicates"], info["leakage"]
    assert dups["random_weights"] and dups["note"] == RANDOM_NOTE
    assert dups["pairs"] == dups["across_splits"] == dups["exact"] == len(copies)
    run = Run(run_dir)
    assert set(map(tuple, run.near_duplicates[["image_id_a", "image_id_b"]].values.tolist())) == set(copies)
    assert sorted(leak["leaking_image_ids"]) == sorted(c for _, c in copies)
    assert leak["train_split"] == "train" and leak["eval_splits"] == ["test"]

    gt = json.loads((data / "annotations.json").read_text())
    pred = json.loads((data / "predictions.json").read_text())
    test_ids = {im["id"] for im in gt["images"] if im["split"] == "test"}
    assert leak["n_eval"] == len(test_ids)
    for key, ids in (("all", test_ids), ("without_leaking", test_ids - {c for _, c in copies})):
        coco = COCO()
        coco.dataset = {**gt, "images": [im for im in gt["images"] if im["id"] in ids],
                        "annotations": [a for a in gt["annotations"] if a["image_id"] in ids]}
        coco.createIndex()
        dt = coco.loadRes([p for p in pred if p["image_id"] in ids])
        e = COCOeval(coco, dt, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
        got = leak["metrics"][key]
        assert got["n_images"] == len(ids)
        assert got["mAP"] == pytest.approx(e.stats[0], abs=1e-9) and got["AP50"] == pytest.approx(e.stats[1], abs=1e-9)
    assert leak["metrics"]["all"]["mAP"] != leak["metrics"]["without_leaking"]["mAP"]
    text = _info(run_dir, capsys)
    assert "Split leakage: 6 of" in text and "without leaking" in text and "random weights" in text


def test_classification_leakage_equals_scikit_learn_on_the_subset(leaky_runs, capsys):
    from sklearn.metrics import accuracy_score, f1_score

    run_dir, data, copies = leaky_runs["classification"]
    leak = json.loads(_info(run_dir, capsys, "--json"))["leakage"]
    with open(data / "labels.csv", newline="") as fh:
        labels = list(csv.DictReader(fh))
    with open(data / "predictions.csv", newline="") as fh:
        pred = {r["file_name"]: r["prediction"] for r in csv.DictReader(fh)}
    classes = sorted({r["label"] for r in labels})
    leaked = {c for _, c in copies}
    for key, keep in (("all", lambda r: True), ("without_leaking", lambda r: r["file_name"] not in leaked)):
        rows = [r for r in labels if r["split"] == "test" and keep(r)]
        y, p = [r["label"] for r in rows], [pred[r["file_name"]] for r in rows]
        got = leak["metrics"][key]
        assert got["n_images"] == len(rows)
        assert got["accuracy"] == pytest.approx(accuracy_score(y, p), abs=1e-12)
        assert got["macro_f1"] == pytest.approx(f1_score(y, p, labels=classes, average="macro", zero_division=0),
                                                abs=1e-12)
    assert leak["n_leaking"] == len(copies)


def test_a_build_without_a_train_split_has_no_leakage(demo_run, capsys):
    info = json.loads(_info(demo_run[0], capsys, "--json"))
    assert info["leakage"] is None and info["near_duplicates"]["pairs"] == 0


def test_build_refuses_a_bad_threshold(tmp_path, capsys):
    from vecexplore.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["build", "--gt", str(tmp_path / "none.json"), "--out", str(tmp_path / "run"), "--dup-threshold", "0"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--dup-threshold" in err and "Traceback" not in err


def test_the_api_run_and_the_app_tab_show_the_pairs_and_the_leakage(leaky_runs):
    from bokeh.document import Document

    import vecexplore as vx
    from vecexplore.app.data import load_run_data
    from vecexplore.app.document import build_document

    run_dir, _, copies = leaky_runs["detection"]
    run = vx.open_run(run_dir)
    assert len(run.near_duplicates) == len(copies) and run.leakage["n_leaking"] == len(copies)
    data = load_run_data(run_dir)
    doc = Document()
    session = build_document(doc, data, url_base="/vx/test")
    doc.get_model_by_name("tabs").active = [t.name for t in session.tab_views].index("duplicates")
    view = session.view("duplicates")
    src = view.source.data
    assert set(zip(src["image_id_a"], src["image_id_b"], strict=True)) == set(copies)
    caption = view.caption.text
    assert "Split leakage: 6 of" in caption and "random weights" in caption
    m = run.leakage["metrics"]
    assert f"mAP {m['all']['mAP']:.3f} → {m['without_leaking']['mAP']:.3f}" in caption
    view.source.selected.indices = [0]
    a, b = int(src["a"][0]), int(src["b"][0])
    assert sorted(session.selection.tolist()) == [a, b] and session.derived.detail == a


def test_a_run_built_before_near_duplicates_reports_none(demo_run, tmp_path, capsys):
    from vecexplore.app.views.duplicates import caption
    from vecexplore.runcheck import open_run

    run_dir = tmp_path / "old"
    shutil.copytree(demo_run[0], run_dir)
    (run_dir / "near_duplicates.parquet").unlink()
    (run_dir / "leakage.json").unlink()
    info = json.loads(_info(run_dir, capsys, "--json"))
    assert info["near_duplicates"] is None and info["leakage"] is None
    run = open_run(run_dir)
    assert run.leakage is None and len(run.near_duplicates) == 0
    assert "rebuild" in caption({"near_duplicates": None, "leakage": None})
