"""The demo dataset generator: determinism, valid and consistent files, and planted modes
that are really present in the written predictions (measured from the files, not the
generator's state), plus the `demo-data` command's argument and directory checks."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vecexplore.demo import (
    CLASSES,
    CONFUSED_PAIR,
    PLANTED_MODES,
    TEXTURE_FP_CLASS,
    generate_demo,
    read_planted,
)
from vecexplore.errors import ConfigError, InputError
from vecexplore.eval.iou import box_iou

N = 80
N_CLS = 120  # one object per image: more images for the per-mode rates
SEEDS = (0, 7)
SCORE_MIN = 0.3  # the operating point used to judge outcomes from the files
A, B = (c + 1 for c in CONFUSED_PAIR)  # category ids of the confused pair


def _hash_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module", params=SEEDS, ids=lambda s: f"seed{s}")
def det(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("det") / "demo"
    summary = generate_demo(out, task="detection", n=N, seed=request.param)
    gt = json.loads((out / "annotations.json").read_text())
    preds = json.loads((out / "predictions.json").read_text())
    return out, summary, gt, preds, read_planted(out)


@pytest.fixture(scope="module", params=SEEDS, ids=lambda s: f"seed{s}")
def cls(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("cls") / "demo"
    summary = generate_demo(out, task="classification", n=N_CLS, seed=request.param)
    with open(out / "labels.csv", newline="") as f:
        labels = list(csv.DictReader(f))
    with open(out / "predictions.csv", newline="") as f:
        preds = list(csv.DictReader(f))
    return out, summary, labels, preds, read_planted(out)


def _mode_of(planted: dict) -> dict[int, str]:
    mode = dict.fromkeys(planted["clean_image_ids"], "clean")
    for name, spec in planted["modes"].items():
        mode.update(dict.fromkeys(spec["image_ids"], name))
    return mode


def _per_image(gt: dict, preds: list[dict]):
    """image id → (non-crowd GT list, predictions with score >= SCORE_MIN, IoU pred×GT)."""
    g, p = defaultdict(list), defaultdict(list)
    for a in gt["annotations"]:
        if not a["iscrowd"]:
            g[a["image_id"]].append(a)
    for d in preds:
        if d["score"] >= SCORE_MIN:
            p[d["image_id"]].append(d)
    out = {}
    for img in gt["images"]:
        i = img["id"]
        iou = box_iou(np.array([d["bbox"] for d in p[i]]).reshape(-1, 4), np.array([a["bbox"] for a in g[i]]).reshape(-1, 4))
        out[i] = (g[i], p[i], iou)
    return out


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("task", ["detection", "classification"])
def test_same_seed_gives_byte_identical_files(tmp_path, task):
    runs = [generate_demo(tmp_path / name, task=task, n=40, seed=seed) for name, seed in (("a", 3), ("b", 3), ("c", 4))]
    a, b, c = (_hash_tree(r.out_dir) for r in runs)
    assert a == b
    assert len(a) == 40 + 4
    assert a.keys() == c.keys() and a != c
    assert sum(a[k] != c[k] for k in a if k.startswith("images/")) >= 35


# ---------------------------------------------------------------- detection files


def test_detection_layout_and_summary_counts(det):
    out, summary, gt, preds, planted = det
    assert sorted(p.name for p in out.iterdir()) == ["README.txt", "annotations.json", "images", "planted.json", "predictions.json"]
    assert [img["id"] for img in gt["images"]] == list(range(1, N + 1))
    assert [c["id"] for c in gt["categories"]] == list(range(1, len(CLASSES) + 1))
    assert [c["name"] for c in gt["categories"]] == list(CLASSES)
    for img in gt["images"]:
        with Image.open(out / img["file_name"]) as im:
            assert im.format == "JPEG" and im.size == (img["width"], img["height"])
        assert 256 <= img["width"] <= 640 and 256 <= img["height"] <= 640
    assert len(list((out / "images").iterdir())) == N
    splits = [img["split"] for img in gt["images"]]
    assert set(splits) == {"val", "test"} and splits.count("test") == round(0.25 * N)

    anns = gt["annotations"]
    assert [a["id"] for a in anns] == list(range(1, len(anns) + 1))
    crowd = [a for a in anns if a["iscrowd"]]
    assert summary.n_crowd == len(crowd) >= 1
    assert {a["image_id"] for a in crowd} == set(planted["crowd_image_ids"])
    per_class = {name: sum(a["category_id"] == k + 1 and not a["iscrowd"] for a in anns) for k, name in enumerate(CLASSES)}
    assert summary.objects_per_class == per_class
    assert summary.n_images == N and summary.images_per_split == {"val": N - splits.count("test"), "test": splits.count("test")}
    assert summary.n_predictions == len(preds) == sum(summary.predictions_by_outcome.values())
    assert summary.images_per_mode == {**{m: len(planted["modes"][m]["image_ids"]) for m in PLANTED_MODES}, "clean": len(planted["clean_image_ids"])}
    text = summary.format()
    assert str(out) in text and f"{N} (val" in text and "dark_small_missed" in text


def test_detection_boxes_and_scores_are_valid(det):
    _, _, gt, preds, _ = det
    size = {img["id"]: (img["width"], img["height"]) for img in gt["images"]}
    small = 0
    for rec in gt["annotations"] + preds:
        x, y, w, h = rec["bbox"]
        W, H = size[rec["image_id"]]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= W + 1e-9 and y + h <= H + 1e-9, rec
        assert 1 <= rec["category_id"] <= len(CLASSES)
    for a in gt["annotations"]:
        assert a["area"] == a["bbox"][2] * a["bbox"][3]
        small += a["area"] < 32**2 and not a["iscrowd"]
    assert small >= 0.15 * sum(not a["iscrowd"] for a in gt["annotations"])  # COCO small objects exist
    scores = np.array([d["score"] for d in preds])
    assert ((scores >= 0) & (scores <= 1)).all()
    assert np.array_equal(scores, np.round(scores, 4))
    assert set(preds[0]) == {"image_id", "category_id", "bbox", "score"}


def test_pycocotools_loads_and_clean_scenes_score_higher(det):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out, _, _, _, planted = det
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(out / "annotations.json"))
        results = coco.loadRes(str(out / "predictions.json"))

        def ap50(ids, cat_ids=None):
            ev = COCOeval(coco, results, "bbox")
            ev.params.imgIds = ids
            if cat_ids:
                ev.params.catIds = cat_ids
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            return ev.stats[1]

        clean = ap50(planted["clean_image_ids"])
        dark = ap50(planted["modes"]["dark_small_missed"]["image_ids"])
        clean_pair = ap50(planted["clean_image_ids"], [A, B])
        blur_pair = ap50(planted["modes"]["blur_confusion"]["image_ids"], [A, B])
    assert clean > 0.75 and clean_pair > 0.6
    assert dark < clean - 0.3 and blur_pair < clean_pair - 0.3


def test_loads_through_vecexplore_io(det, cls):
    from vecexplore.io import DatasetSource, load_dataset

    out, _, gt, preds, _ = det
    ds = load_dataset(DatasetSource(gt=out / "annotations.json", pred=out / "predictions.json"))
    assert ds.task == "detection" and ds.num_images == N
    assert len(ds.gt.class_idx) == len(gt["annotations"]) and len(ds.pred.class_idx) == len(preds)
    out, _, labels, _, _ = cls
    ds = load_dataset(DatasetSource(gt=out / "labels.csv", pred=out / "predictions.csv"))
    assert ds.task == "classification" and ds.num_images == len(labels) == N_CLS


# ---------------------------------------------------------------- planted modes, measured from files


def test_planted_modes_are_disjoint_and_cover_all_images(det):
    _, _, gt, _, planted = det
    ids = [i for spec in planted["modes"].values() for i in spec["image_ids"]] + planted["clean_image_ids"]
    assert sorted(ids) == list(range(1, N + 1))
    names = {img["id"]: img["file_name"] for img in gt["images"]}
    for name, frac in (("dark_small_missed", 0.12), ("blur_confusion", 0.12), ("texture_false_positives", 0.10)):
        spec = planted["modes"][name]
        assert len(spec["image_ids"]) == round(frac * N)
        assert spec["file_names"] == [names[i] for i in spec["image_ids"]]
        assert spec["description"] and spec["property"] and spec["effect"]
    assert not set(planted["crowd_image_ids"]) - set(planted["clean_image_ids"])
    assert (planted["task"], planted["n"]) == ("detection", N)


def _luma_mean(path: Path) -> float:
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float64)
    return float((rgb @ [0.299, 0.587, 0.114]).mean())


def test_dark_mode_is_dark_and_misses_small_objects(det):
    out, _, gt, preds, planted = det
    mode = _mode_of(planted)
    images = _per_image(gt, preds)
    missed, total = defaultdict(int), defaultdict(int)
    for i, (g, _, iou) in images.items():
        for j, a in enumerate(g):
            if a["area"] < 32**2:
                total[mode[i]] += 1
                missed[mode[i]] += not (iou[:, j] >= 0.5).any()
    rate = {m: missed[m] / total[m] for m in total}
    assert total["dark_small_missed"] >= 4
    assert rate["dark_small_missed"] > 0.6 and rate["clean"] < 0.3
    for spec_id in planted["modes"]["dark_small_missed"]["image_ids"]:
        assert _luma_mean(out / f"images/{spec_id:06d}.jpg") < 40
    assert np.median([_luma_mean(out / f"images/{i:06d}.jpg") for i in planted["clean_image_ids"]]) > 80


def test_blur_mode_confuses_the_pair_in_both_directions(det):
    _, _, gt, preds, planted = det
    mode = _mode_of(planted)
    confused, pair_gt = defaultdict(lambda: defaultdict(int)), defaultdict(int)
    for i, (g, p, iou) in _per_image(gt, preds).items():
        for j, a in enumerate(g):
            if a["category_id"] in (A, B):
                pair_gt[mode[i]] += 1
                for k, d in enumerate(p):
                    if iou[k, j] >= 0.5 and {a["category_id"], d["category_id"]} == {A, B}:
                        confused[mode[i]][(a["category_id"], d["category_id"])] += 1
    blur = confused["blur_confusion"]
    assert blur[(A, B)] >= 2 and blur[(B, A)] >= 2
    assert sum(blur.values()) / pair_gt["blur_confusion"] > 0.4
    assert sum(confused["clean"].values()) / pair_gt["clean"] < 0.1


def test_texture_mode_fires_background_false_positives(det):
    _, _, gt, preds, planted = det
    mode = _mode_of(planted)
    fp, fp_class, n_img = defaultdict(int), defaultdict(int), defaultdict(int)
    for i, (_, p, iou) in _per_image(gt, preds).items():
        n_img[mode[i]] += 1
        for k, d in enumerate(p):
            if iou.shape[1] == 0 or iou[k].max() < 0.1:
                fp[mode[i]] += 1
                fp_class[mode[i]] += d["category_id"] == TEXTURE_FP_CLASS + 1
    rate = {m: fp[m] / n_img[m] for m in n_img}
    assert rate["texture_false_positives"] >= 1.5
    assert rate["texture_false_positives"] > 5 * rate["clean"]
    assert fp_class["texture_false_positives"] / fp["texture_false_positives"] > 0.8


def test_clean_scenes_are_well_predicted(det):
    _, _, gt, preds, planted = det
    mode = _mode_of(planted)
    tp = n_gt = n_pred = 0
    for i, (g, p, iou) in _per_image(gt, preds).items():
        if mode[i] != "clean":
            continue
        n_gt += len(g)
        n_pred += len(p)
        hit = (iou >= 0.5) & (np.array([d["category_id"] for d in p])[:, None] == np.array([a["category_id"] for a in g])[None, :])
        tp += int(hit.any(axis=0).sum())
    assert tp / n_gt > 0.75 and tp / n_pred > 0.75


# ---------------------------------------------------------------- classification


def test_classification_csvs(cls):
    out, summary, labels, preds, planted = cls
    assert sorted(p.name for p in out.iterdir()) == ["README.txt", "images", "labels.csv", "planted.json", "predictions.csv"]
    assert list(labels[0]) == ["file_name", "label", "split"]
    assert list(preds[0]) == ["file_name", "prediction", "score", *(f"score_{c}" for c in CLASSES)]
    assert [r["file_name"] for r in labels] == [r["file_name"] for r in preds] == [f"images/{i:06d}.jpg" for i in range(1, N_CLS + 1)]
    assert all((out / r["file_name"]).is_file() for r in labels)
    assert {r["label"] for r in labels} <= set(CLASSES) and {r["split"] for r in labels} == {"val", "test"}
    for r in preds:
        units = [round(float(r[f"score_{c}"]) * 10_000) for c in CLASSES]
        assert sum(units) == 10_000
        top = int(np.argmax(units))
        assert units.count(units[top]) == 1 and CLASSES[top] == r["prediction"]
        assert r["score"] == r[f"score_{r['prediction']}"]
    assert summary.objects_per_class == {c: sum(r["label"] == c for r in labels) for c in CLASSES}
    assert summary.predictions_by_outcome["correct"] == sum(r["label"] == p["prediction"] for r, p in zip(labels, preds, strict=True))
    assert planted["task"] == "classification"


def test_classification_planted_modes(cls):
    _, _, labels, preds, planted = cls
    mode = _mode_of(planted)
    rows = defaultdict(list)
    for i, (gt_row, p) in enumerate(zip(labels, preds, strict=True), start=1):
        rows[mode[i]].append((gt_row["label"], p["prediction"], float(p["score"])))

    def acc(m):
        return np.mean([t == p for t, p, _ in rows[m]])

    a, b = (CLASSES[c] for c in CONFUSED_PAIR)
    assert acc("clean") > 0.8
    assert acc("dark_small_missed") < 0.6
    assert np.mean([s for *_, s in rows["dark_small_missed"]]) < np.mean([s for *_, s in rows["clean"]]) - 0.2
    pair = [(t, p) for t, p, _ in rows["blur_confusion"] if t in (a, b)]
    assert np.mean([{t, p} == {a, b} for t, p in pair]) > 0.3
    texture = rows["texture_false_positives"]
    assert np.mean([p == CLASSES[TEXTURE_FP_CLASS] for _, p, _ in texture]) > 0.4


# ---------------------------------------------------------------- arguments, directories, planted.json


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 19}, "n must be an integer >= 20"),
        ({"n": 20.5}, "n must be an integer"),
        ({"task": "segmentation"}, "unknown task 'segmentation'"),
        ({"seed": -1}, "seed must be a non-negative integer"),
    ],
)
def test_bad_arguments_raise_config_error(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        generate_demo(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_directory_rules(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()  # an existing empty directory is fine
    first = _hash_tree(generate_demo(out, n=20, seed=1).out_dir)
    with pytest.raises(ConfigError, match="not empty; pass --force"):
        generate_demo(out, n=20, seed=2)
    assert _hash_tree(out) == first
    generate_demo(out, n=20, seed=2, force=True)
    assert _hash_tree(out) != first and read_planted(out)["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no partial or old copies left

    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a vecexplore demo dataset"):
        generate_demo(other, n=20, force=True)
    assert (other / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        generate_demo(tmp_path / "file", n=20)


def test_failure_midway_leaves_nothing_behind(tmp_path, monkeypatch):
    import vecexplore.demo.write as write

    real, calls = write.encode_jpeg, []

    def failing(img):
        calls.append(1)
        if len(calls) == 5:
            raise OSError("disk full")
        return real(img)

    monkeypatch.setattr(write, "encode_jpeg", failing)
    with pytest.raises(OSError, match="disk full"):
        generate_demo(tmp_path / "demo", n=20)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("{not json", "cannot read"),
        ("[]", "expected a JSON object"),
        ('{"task": "detection", "seed": 0, "n": 20, "modes": {}}', "missing key 'clean_image_ids'"),
        ('{"task": "detection", "seed": 0, "n": 20, "clean_image_ids": [], "modes": {"x": {"description": "d"}}}', "modes.x: missing key"),
    ],
)
def test_read_planted_errors_name_the_file(tmp_path, content, message):
    if content is not None:
        (tmp_path / "planted.json").write_text(content)
    with pytest.raises(InputError, match=message) as err:
        read_planted(tmp_path)
    assert "planted.json" in str(err.value)


def test_cli_demo_data(tmp_path, capsys):
    from vecexplore.cli import main

    out = tmp_path / "demo"
    with contextlib.suppress(SystemExit):
        main(["demo-data", "--out", str(out), "--n", "20", "--task", "classification", "--seed", "5"])
    printed = capsys.readouterr().out
    assert "20 (val 15, test 5)" in printed and str(out) in printed
    assert read_planted(out)["seed"] == 5
    for argv, message in [
        (["--out", str(out), "--n", "20"], "not empty; pass --force"),
        (["--out", str(tmp_path / "x"), "--n", "5"], "n must be an integer >= 20"),
        (["--out", str(tmp_path / "x"), "--task", "pose"], "unknown task 'pose'"),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(["demo-data", *argv])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err
