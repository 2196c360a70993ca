"""Several GT files as one dataset with splits (COCO and CSV): ids, splits, classes,
paths, errors, the CLI, and a build whose images carry the split."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vecexplore.cli._inputs import source_from_options
from vecexplore.errors import ConfigError, InputError
from vecexplore.eval.evaluate import evaluate
from vecexplore.io import load_dataset
from vecexplore.io.source import DatasetSource
from vecexplore.io.splits import SplitSource, split_names

CATS = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]


def _coco(folder: Path, stem: str, *, seed: int, n: int = 6, cats=CATS, own_split=None, id_base: int = 1):
    """A COCO GT + predictions pair with ids starting at ``id_base`` (so two files collide)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    images, anns, preds = [], [], []
    for i in range(n):
        image = {"id": id_base + i, "file_name": f"img/{stem}_{i}.png", "width": 100, "height": 80}
        if own_split and i == 0:
            image["split"] = own_split
        images.append(image)
        for _ in range(rng.integers(1, 4)):
            x, y, w, h = (float(v) for v in (*rng.uniform(0, 50, 2), *rng.uniform(10, 30, 2)))
            cid = int(rng.integers(1, 3))
            anns.append({"id": id_base + len(anns), "image_id": id_base + i, "category_id": cid,
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
            if rng.random() < 0.8:
                preds.append({"image_id": id_base + i, "category_id": cid if rng.random() < 0.8 else 3 - cid,
                              "bbox": [x + 1, y, w, h], "score": float(rng.uniform(0.2, 1))})
    (folder / f"{stem}.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    (folder / f"{stem}_pred.json").write_text(json.dumps(preds))
    return folder / f"{stem}.json", folder / f"{stem}_pred.json"


def _load(gts, preds, **kw):
    return load_dataset(source_from_options(gt=gts, pred=preds, images=None, **kw), check_images=False)


def test_coco_files_merge_with_unique_ids_splits_and_originals(tmp_path):
    a = _coco(tmp_path / "x", "val", seed=0, own_split="holdout")
    b = _coco(tmp_path / "y", "test", seed=1)
    ds = _load([a[0], b[0]], [a[1], b[1]])
    n_a = 6
    assert ds.num_images == 12
    assert ds.images.split.tolist() == ["holdout"] + ["val"] * 5 + ["test"] * 6
    assert len(np.unique(ds.images.image_id)) == 12 and len(np.unique(ds.gt.object_id)) == len(ds.gt)
    assert ds.images.metadata["source_id"].tolist() == list(range(1, 7)) * 2
    assert ds.images.metadata["source_file"].tolist() == [str(a[0])] * 6 + [str(b[0])] * 6
    # the roots differ: file names become relative to the common folder
    assert ds.images_root == str(tmp_path.resolve())
    assert ds.images.file_name[0] == "x/img/val_0.png" and ds.images.file_name[n_a] == "y/img/test_0.png"
    # Matching is per image, so each part's outcomes are unchanged by the merge.
    ev = evaluate(ds, confidence=0.5)
    for (gt, pred), rows in (((a[0], a[1]), slice(0, n_a)), ((b[0], b[1]), slice(n_a, 12))):
        part = evaluate(load_dataset(DatasetSource(gt=gt, pred=pred), check_images=False), confidence=0.5)
        cols = ["tp", "fp", "fn", "fp_class", "fp_background", "fn_missed"]
        assert ev.per_image[cols].iloc[rows].to_numpy().tolist() == part.per_image[cols].to_numpy().tolist()


def test_ids_kept_when_they_do_not_collide(tmp_path):
    a = _coco(tmp_path, "val", seed=0)
    b = _coco(tmp_path, "test", seed=1, id_base=1000)
    ds = _load([a[0], b[0]], [a[1], b[1]])
    assert ds.images.image_id.tolist() == [*range(1, 7), *range(1000, 1006)]
    assert ds.images_root == str(tmp_path)  # one root: names untouched
    assert ds.images.file_name[0] == "img/val_0.png"


def test_categories_must_agree(tmp_path):
    a = _coco(tmp_path, "val", seed=0)
    b = _coco(tmp_path, "test", seed=1, cats=[{"id": 1, "name": "cat"}, {"id": 2, "name": "wolf"}])
    with pytest.raises(InputError, match=r"test\.json.*category id 2 is 'wolf' here and 'dog' there"):
        _load([a[0], b[0]], [a[1], b[1]])


@pytest.mark.parametrize(("gts", "preds", "message"), [
    (["a.json", "b.json"], ["pa.json"], "--gt given 2 times but --pred 1 times"),
    (["a.json"], ["pa.json", "pb.json"], "--pred given 2 times"),
])
def test_pairs_must_match(tmp_path, gts, preds, message):
    with pytest.raises(ConfigError, match=message):
        source_from_options(gt=[tmp_path / g for g in gts], pred=[tmp_path / p for p in preds], images=None)


def test_formats_must_agree_and_be_coco_or_csv(tmp_path):
    a = _coco(tmp_path, "val", seed=0)
    (tmp_path / "labels.csv").write_text("file_name,label\nx.png,cat\n")
    with pytest.raises(ConfigError, match="same format"):
        SplitSource(parts=(DatasetSource(gt=a[0], pred=a[1]), DatasetSource(gt=tmp_path / "labels.csv"))).resolved()
    for d in ("l1", "l2"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    src = source_from_options(gt=[tmp_path / "l1", tmp_path / "l2"], pred=[tmp_path / "l1", tmp_path / "l2"],
                              images=tmp_path, names="a")
    with pytest.raises(ConfigError, match="COCO and CSV inputs only"):
        src.resolved()


def _csv(path: Path, rows, *, scores=None):
    header = "file_name,label,split\n" if len(rows[0]) == 3 else "file_name,label\n"
    path.write_text(header + "".join(",".join(r) + "\n" for r in rows))
    pred = path.with_name(path.stem + "_pred.csv")
    cols = "file_name,prediction,score" + "".join(f",score_{c}" for c in scores or ())
    lines = [f"{r[0]},{r[1]},0.9" + "".join(f",{1 / len(scores):.3f}" for _ in scores or ()) for r in rows]
    pred.write_text(cols + "\n" + "\n".join(lines) + "\n")
    return path, pred


def test_csv_files_take_the_union_of_classes(tmp_path):
    a = _csv(tmp_path / "train.csv", [("a1.png", "cat"), ("a2.png", "dog")])
    b = _csv(tmp_path / "test.csv", [("b1.png", "bird", "extra"), ("b2.png", "cat", "")])
    ds = _load([a[0], b[0]], [a[1], b[1]])
    assert ds.categories.names.tolist() == ["bird", "cat", "dog"]
    assert [ds.categories.names[c] for c in ds.gt.class_idx] == ["cat", "dog", "bird", "cat"]
    assert ds.images.image_id.tolist() == [0, 1, 2, 3]  # both files number from 0: shifted
    assert ds.images.split.tolist() == ["train", "train", "extra", "test"]
    assert evaluate(ds).metrics.accuracy == 1.0


def test_csv_per_class_scores_must_agree(tmp_path):
    a = _csv(tmp_path / "val.csv", [("a1.png", "cat"), ("a2.png", "dog")], scores=("cat", "dog"))
    b = _csv(tmp_path / "test.csv", [("b1.png", "cat")])
    with pytest.raises(InputError, match="per-class scores must name the same classes"):
        _load([a[0], b[0]], [a[1], b[1]])


def test_split_names_disambiguate_repeated_stems():
    assert split_names(["a/val.json", "b/val.json", "c/test.json"]) == ["a/val", "b/val", "test"]


def _png(path: Path):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (100, 80), (120, 60, 30)).save(path)


def test_cli_check_data_and_errors(tmp_path):
    a = _coco(tmp_path / "x", "val", seed=0)
    b = _coco(tmp_path / "y", "test", seed=1)
    for folder, stem in ((tmp_path / "x", "val"), (tmp_path / "y", "test")):
        for i in range(6):
            _png(folder / "img" / f"{stem}_{i}.png")
    args = [sys.executable, "-m", "vecexplore", "check-data", "--gt", str(a[0]), "--pred", str(a[1]),
            "--gt", str(b[0]), "--pred", str(b[1])]
    out = subprocess.run(args, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "splits        test: 6, val: 6" in out.stdout
    bad = subprocess.run(args[:-2], capture_output=True, text=True)
    assert bad.returncode == 2 and "error: --gt given 2 times but --pred 1 times" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_build_over_two_files_keeps_the_split(tmp_path, umap_warm):
    from conftest import TINY_MODEL

    from vecexplore.builder import BuildConfig, build_run
    from vecexplore.demo import generate_demo
    from vecexplore.embed.pipeline import EmbedConfig
    from vecexplore.mapping import MapConfig
    from vecexplore.store import Run

    data = tmp_path / "demo"
    generate_demo(data, task="detection", n=60, seed=3)
    coco = json.loads((data / "annotations.json").read_text())
    preds = json.loads((data / "predictions.json").read_text())
    files = []
    for name in ("val", "test"):
        keep = {im["id"] for im in coco["images"] if im["split"] == name}
        part = {**coco, "images": [{k: v for k, v in im.items() if k != "split"} for im in coco["images"]
                                   if im["id"] in keep],
                "annotations": [a for a in coco["annotations"] if a["image_id"] in keep]}
        (data / f"{name}.json").write_text(json.dumps(part))
        (data / f"{name}_pred.json").write_text(json.dumps([p for p in preds if p["image_id"] in keep]))
        files.append((data / f"{name}.json", data / f"{name}_pred.json"))
    source = SplitSource(parts=tuple(DatasetSource(gt=g, pred=p) for g, p in files))
    build_run(BuildConfig(source=source, out=tmp_path / "run", cache_dir=tmp_path / "cache", scan_workers=0,
                          embed=EmbedConfig(model=TINY_MODEL, weights="random", device="cpu", num_workers=0),
                          map=MapConfig(seed=0)))
    run = Run(tmp_path / "run")
    want = {im["id"]: im["split"] for im in coco["images"]}
    images = run.images
    assert [want[i] for i in images["meta_source_id"]] == images["split"].tolist()
    assert [p["gt"]["path"] for p in run.manifest["inputs"]["parts"]] == [str(g.resolve()) for g, _ in files]
    assert (tmp_path / "run" / "recommendations.json").exists()
