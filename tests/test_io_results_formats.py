"""COCO results as JSON Lines and Parquet (vecexplore.io.results_files): the same
tables and stats as the same results in one JSON array (pycocotools on the JSON
is the oracle), and bad lines / rows named like bad JSON records."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vecexplore.errors import InputError
from vecexplore.eval.evaluate import evaluate
from vecexplore.io.coco import load_coco
from vecexplore.io.results_files import results_format

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from coco_synth import make_synthetic_coco  # noqa: E402

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

FIELDS = ("image_idx", "class_idx", "xywh", "score", "object_id")


def _results(seed: int, n_images: int):
    """GT dict and results list; some seeds give ids, integer boxes, shuffled keys."""
    synth = make_synthetic_coco(num_images=n_images, num_classes=7, seed=seed)
    gt, res = synth.coco_gt(), synth.coco_results()
    rng = np.random.default_rng(seed)
    if seed % 3 == 1:
        ids = rng.choice(np.arange(1, 10 * len(res) + 2), len(res), replace=False)
        for r, i in zip(res, ids.tolist(), strict=True):
            r["id"] = i
    if seed % 2:
        for r in res[::5]:
            r["bbox"] = [round(v) or 1 for v in r["bbox"]]
        res = [dict(sorted(r.items(), key=lambda kv: rng.random())) for r in res]
    return gt, res


def _write_all(d: Path, gt: dict, res: list, *, split_box: bool) -> dict[str, Path]:
    (d / "gt.json").write_text(json.dumps(gt))
    paths = {"json": d / "pred.json", "jsonl": d / "pred.jsonl", "parquet": d / "pred.parquet"}
    paths["json"].write_text(json.dumps(res))
    paths["jsonl"].write_text("".join(json.dumps(r) + "\n" for r in res))
    cols = {"image_id": pa.array([r["image_id"] for r in res], pa.int64()),
            "category_id": pa.array([r["category_id"] for r in res], pa.int32()),
            "score": pa.array([r["score"] for r in res], pa.float64())}
    boxes = np.array([r["bbox"] for r in res], np.float64).reshape(-1, 4)
    if split_box:
        cols.update({k: boxes[:, j] for j, k in enumerate(("bbox_x", "bbox_y", "bbox_w", "bbox_h"))})
    else:
        cols["bbox"] = pa.array([r["bbox"] for r in res], pa.list_(pa.float64()))
    if res and "id" in res[0]:
        cols["id"] = pa.array([r["id"] for r in res], pa.int64())
    pq.write_table(pa.table(cols), paths["parquet"])
    return paths


def _pycoco_stats(gt: dict, res: list) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = copy.deepcopy(gt)
        cg.createIndex()
        ev = COCOeval(cg, cg.loadRes(copy.deepcopy(res)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


@pytest.mark.parametrize(("seed", "n_images"), [(0, 40), (1, 120), (2, 7), (3, 250), (4, 60)])
def test_formats_load_identically_and_match_pycocotools(tmp_path, seed, n_images):
    gt, res = _results(seed, n_images)
    paths = _write_all(tmp_path, gt, res, split_box=bool(seed % 2))
    loaded = {fmt: load_coco(tmp_path / "gt.json", p, check_images=False) for fmt, p in paths.items()}
    ref = loaded["json"]
    assert len(ref.pred.score) == len(res)
    for fmt in ("jsonl", "parquet"):
        for field in FIELDS:
            np.testing.assert_array_equal(getattr(loaded[fmt].pred, field), getattr(ref.pred, field), err_msg=f"{fmt} {field}")
        for field in ("image_idx", "class_idx", "xywh", "object_id", "area", "iscrowd"):
            np.testing.assert_array_equal(getattr(loaded[fmt].gt, field), getattr(ref.gt, field))
    stats = {fmt: evaluate(ds).coco.stats for fmt, ds in loaded.items()}
    np.testing.assert_allclose(stats["json"], _pycoco_stats(gt, res), rtol=0, atol=1e-12)
    for fmt in ("jsonl", "parquet"):
        np.testing.assert_array_equal(stats[fmt], stats["json"])


@pytest.mark.parametrize("variant", ["crlf", "blank_lines", "leading_blank", "trailing_space", "no_final_newline"])
def test_jsonl_line_layouts_read_the_same(tmp_path, variant):
    """The C reader and the line-by-line reader (blank lines send it there) agree."""
    gt, res = _results(5, 30)
    lines = [json.dumps(r) for r in res]
    text = {"crlf": "\r\n".join(lines) + "\r\n",
            "blank_lines": "\n\n".join(lines) + "\n\n",
            "leading_blank": "\n  \n" + "\n".join(lines),
            "trailing_space": "\n".join(line + "  \t" for line in lines) + "\n   \n",
            "no_final_newline": "\n".join(lines)}[variant]
    paths = _write_all(tmp_path, gt, res, split_box=False)
    paths["jsonl"].write_text(text, newline="")
    a = load_coco(tmp_path / "gt.json", paths["json"], check_images=False)
    b = load_coco(tmp_path / "gt.json", paths["jsonl"], check_images=False)
    for field in FIELDS:
        np.testing.assert_array_equal(getattr(b.pred, field), getattr(a.pred, field))


def test_native_jsonl_reader_agrees_with_json_loads():
    nat = pytest.importorskip("vecexplore._native")
    rng = np.random.default_rng(7)
    for n in (1, 13, 400):
        recs = [{"image_id": int(rng.integers(-5, 10**12)), "category_id": int(rng.integers(0, 90)),
                 "bbox": [float(v) for v in rng.normal(50, 30, 4).round(int(rng.integers(0, 6)))],
                 "score": float(rng.random()), "extra": {"k": [1, "x", None]}} for _ in range(n)]
        cols = nat.parse_coco_lines("\n".join(json.dumps(r) for r in recs).encode(), True)
        assert cols["n"] == n
        np.testing.assert_array_equal(np.frombuffer(cols["image_id"], np.int64), [r["image_id"] for r in recs])
        np.testing.assert_array_equal(np.frombuffer(cols["bbox"], np.float64).reshape(n, 4), [r["bbox"] for r in recs])
        np.testing.assert_array_equal(np.frombuffer(cols["score"], np.float64), [r["score"] for r in recs])
    rec = json.dumps(recs[0])
    for text in ("", "\n\n", rec + " " + rec, rec[:-1] + ",\n" + '"z": 1}', rec + "\n\n" + rec, "[" + rec + "]"):
        assert nat.parse_coco_lines(text.encode(), True) is None, text


GOOD = '{"image_id": %d, "category_id": %d, "bbox": [1, 2, 3, 4], "score": 0.5}'


@pytest.fixture()
def small_gt(tmp_path):
    gt, _ = _results(0, 5)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    return tmp_path / "gt.json", gt["images"][0]["id"], gt["categories"][0]["id"]


@pytest.mark.parametrize(("bad_line", "line", "message"), [
    ('{"image_id": 1, "category_id": ', 3, "invalid JSON at column"),
    ('{"category_id": {cat}, "bbox": [1, 2, 3, 4], "score": 0.5}', 3, "missing required key 'image_id'"),
    ('{"image_id": "a", "category_id": {cat}, "bbox": [1, 2, 3, 4], "score": 0.5}', 3, "image_id must be an integer"),
    ('{"image_id": {img}, "category_id": {cat}, "bbox": [1, 2, 3], "score": 0.5}', 3, "bbox must be a list of 4 numbers"),
    ('{"image_id": {img}, "category_id": {cat}, "bbox": [1, 2, 3, 4], "score": "high"}', 3, "score must be a number"),
    ('{"image_id": {img}, "category_id": {cat}, "bbox": [1, 2, 3, 4], "score": 1.5}', 3, "score must be in [0, 1]"),
    ('{"image_id": 987654321, "category_id": {cat}, "bbox": [1, 2, 3, 4], "score": 0.5}', 3, "unknown image_id 987654321"),
    ('{"image_id": {img}, "category_id": {cat}, "bbox": [1, 2, -3, 4], "score": 0.5}', 3, "non-positive width"),
    ('[1, 2]', 3, "expected an object, got a list"),
    ('{"image_id": {img}, "category_id": {cat}, "bbox": [1, 2, 3, 4], "score": 0.5} {"a": 1}', 3, "invalid JSON"),
])
@pytest.mark.parametrize("blank", [False, True])
def test_jsonl_bad_lines_are_named(tmp_path, small_gt, bad_line, line, message, blank):
    gt_path, img, cat = small_gt
    bad = bad_line.replace("{img}", str(img)).replace("{cat}", str(cat))
    lines = [GOOD % (img, cat)] * 2 + [bad] + [GOOD % (img, cat)]
    if blank:  # the line-by-line reader: numbers still count every line
        lines.insert(1, "")
        line += 1
    p = tmp_path / "pred.jsonl"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as exc:
        load_coco(gt_path, p, check_images=False)
    assert exc.value.record is not None and exc.value.record.startswith(f"line {line}"), str(exc.value)
    assert message in str(exc.value)
    assert str(p) in str(exc.value)


def test_jsonl_duplicate_ids_name_both_lines(tmp_path, small_gt):
    gt_path, img, cat = small_gt
    recs = [{"id": k, "image_id": img, "category_id": cat, "bbox": [1, 2, 3, 4], "score": 0.5} for k in (1, 2, 1)]
    p = tmp_path / "pred.ndjson"
    p.write_text("\n".join(map(json.dumps, recs)))
    with pytest.raises(InputError, match=r"line 3 \(id 1\): duplicate annotation id 1 \(also line 1\)"):
        load_coco(gt_path, p, check_images=False)


@pytest.mark.parametrize("text", ["", "\n \n"])
def test_empty_jsonl_is_refused(tmp_path, small_gt, text):
    p = tmp_path / "pred.jsonl"
    p.write_text(text)
    with pytest.raises(InputError, match="no results: a JSON Lines results file"):
        load_coco(small_gt[0], p, check_images=False)


def _parquet(path: Path, **cols) -> Path:
    pq.write_table(pa.table(cols), path)
    return path


@pytest.mark.parametrize(("cols", "message", "row"), [
    (dict(category_id=[1, 1], bbox=[[1, 2, 3, 4]] * 2, score=[0.5, 0.5]), "missing column 'image_id'", None),
    (dict(image_id=["a", "b"], category_id=["CAT"] * 2, bbox=[[1, 2, 3, 4]] * 2, score=[0.5, 0.5]),
     "image_id must be an integer, got 'a'", 0),
    (dict(image_id=["IMG", None], category_id=["CAT"] * 2, bbox=[[1, 2, 3, 4]] * 2, score=[0.5, 0.5]),
     "image_id is missing (null)", 1),
    (dict(image_id=[1.0, 1.5], category_id=["CAT"] * 2, bbox=[[1, 2, 3, 4]] * 2, score=[0.5, 0.5]),
     "image_id must be an integer", 1),
    (dict(image_id=["IMG"] * 3, category_id=["CAT"] * 3, bbox=[[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3]],
          score=[0.5] * 3), "bbox must be a list of 4 numbers", 2),
    (dict(image_id=["IMG"] * 2, category_id=["CAT"] * 2, bbox=[[1, 2, 3, 4], None], score=[0.5, 0.5]),
     "bbox is missing (null)", 1),
    (dict(image_id=["IMG"] * 2, category_id=["CAT"] * 2, bbox=["1,2,3,4"] * 2, score=[0.5, 0.5]),
     "bbox must be a list of 4 numbers", 0),
    (dict(image_id=["IMG"] * 2, category_id=["CAT"] * 2, bbox=[[1, 2, 3, 4]] * 2, score=[0.5, 7.0]),
     "score must be in [0, 1]", 1),
    (dict(image_id=["IMG"] * 2, category_id=["CAT", 424242], bbox=[[1, 2, 3, 4]] * 2, score=[0.5, 0.5]),
     "unknown category_id 424242", 1),
    (dict(image_id=["IMG"] * 2, category_id=["CAT"] * 2, bbox_x=[1.0, 1.0], bbox_y=[1.0, 1.0],
          bbox_w=[3.0, 3.0], score=[0.5, 0.5]), "missing column 'bbox_h'", None),
    (dict(image_id=["IMG"] * 2, category_id=["CAT"] * 2, bbox=[[1, 2, 3, 4]] * 2, bbox_x=[1.0, 1.0],
          score=[0.5, 0.5]), "has both a 'bbox' column", None),
])
def test_parquet_bad_rows_are_named(tmp_path, small_gt, cols, message, row):
    gt_path, img, cat = small_gt
    cols = {k: [img if v == "IMG" else cat if v == "CAT" else v for v in vals] if k in ("image_id", "category_id")
            else vals for k, vals in cols.items()}
    p = _parquet(tmp_path / "pred.parquet", **cols)
    with pytest.raises(InputError) as exc:
        load_coco(gt_path, p, check_images=False)
    assert message in str(exc.value)
    assert str(p) in str(exc.value)
    if row is not None:
        assert exc.value.record is not None and exc.value.record.startswith(f"row {row}"), str(exc.value)


def test_not_a_parquet_file(tmp_path, small_gt):
    p = tmp_path / "pred.parquet"
    p.write_text('[{"image_id": 1}]')
    with pytest.raises(InputError, match="not a readable Parquet file"):
        load_coco(small_gt[0], p, check_images=False)


def test_zero_row_parquet_is_no_predictions(tmp_path, small_gt):
    p = _parquet(tmp_path / "pred.parquet", image_id=pa.array([], pa.int64()), category_id=pa.array([], pa.int64()),
                 bbox=pa.array([], pa.list_(pa.float64())), score=pa.array([], pa.float64()))
    ds = load_coco(small_gt[0], p, check_images=False)
    assert len(ds.pred.score) == 0


def test_masks_in_jsonl_and_parquet_evaluate_like_json(tmp_path):
    """Polygon results (no bbox) take the JSON path's records: same masks, same segm stats."""
    gt, res = _results(6, 25)
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        a["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    seg_res = []
    for r in res:
        x, y, w, h = r["bbox"]
        h_img, w_img = sizes[r["image_id"]]
        x2, y2 = min(x + w, w_img - 0.5), min(y + h, h_img - 0.5)
        seg_res.append({"image_id": r["image_id"], "category_id": r["category_id"], "score": r["score"],
                        "segmentation": [[x, y, x2, y, x2, y2, x, y2]]})
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "p.json").write_text(json.dumps(seg_res))
    (tmp_path / "p.jsonl").write_text("\n".join(map(json.dumps, seg_res)))
    _parquet(tmp_path / "p.parquet", image_id=[r["image_id"] for r in seg_res],
             category_id=[r["category_id"] for r in seg_res], score=[r["score"] for r in seg_res],
             segmentation=[json.dumps(r["segmentation"]) for r in seg_res])
    out = {ext: load_coco(tmp_path / "gt.json", tmp_path / f"p.{ext}", check_images=False)
           for ext in ("json", "jsonl", "parquet")}
    assert out["json"].pred.rle is not None
    ref = evaluate(out["json"])
    for ext in ("jsonl", "parquet"):
        for field in FIELDS:
            np.testing.assert_array_equal(getattr(out[ext].pred, field), getattr(out["json"].pred, field))
        assert [r["counts"] for r in out[ext].pred.rle] == [r["counts"] for r in out["json"].pred.rle]
        ev = evaluate(out[ext])
        np.testing.assert_array_equal(ev.coco_segm.stats, ref.coco_segm.stats)
        np.testing.assert_array_equal(ev.coco.stats, ref.coco.stats)
    # a bad mask names its line
    seg_res[3]["segmentation"] = [[1, 2, 3]]
    (tmp_path / "p.jsonl").write_text("\n".join(map(json.dumps, seg_res)))
    with pytest.raises(InputError, match=r"p\.jsonl: line 4"):
        load_coco(tmp_path / "gt.json", tmp_path / "p.jsonl", check_images=False)


@pytest.mark.parametrize(("name", "fmt"), [("a.jsonl", "jsonl"), ("a.NDJSON", "jsonl"), ("a.parquet", "parquet"),
                                           ("a.json", "json"), ("a.txt", "json"), ("a", "json")])
def test_format_is_told_by_extension(name, fmt):
    assert results_format(name) == fmt


def test_cli_bad_jsonl_exits_2_without_traceback(tmp_path, small_gt):
    gt_path, img, cat = small_gt
    p = tmp_path / "pred.jsonl"
    bad = json.dumps({"image_id": img, "category_id": cat, "bbox": [1, 2], "score": 0.5})
    p.write_text(GOOD % (img, cat) + "\n" + bad + "\n")
    proc = subprocess.run([sys.executable, "-m", "vecexplore", "evaluate", "--gt", str(gt_path), "--pred", str(p)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{p}: line 2: bbox must be a list of 4 numbers" in proc.stderr


def test_cli_evaluate_json_is_the_same_for_every_format(tmp_path):
    gt, res = _results(8, 50)
    paths = _write_all(tmp_path, gt, res, split_box=False)
    docs = {}
    for fmt, p in paths.items():
        out = tmp_path / f"m_{fmt}.json"
        proc = subprocess.run([sys.executable, "-m", "vecexplore", "evaluate", "--gt", str(tmp_path / "gt.json"),
                               "--pred", str(p), "--json", str(out)], capture_output=True, text=True, cwd=ROOT,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        docs[fmt] = json.loads(out.read_text())
    for fmt in ("jsonl", "parquet"):
        assert docs[fmt]["coco"] == docs["json"]["coco"]
        assert docs[fmt].get("confusion") == docs["json"].get("confusion")
