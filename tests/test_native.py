"""The C extension ``vecexplore._native`` against the numba kernels (the reference)
and pycocotools, bit for bit, on random inputs: ties, crowd, maxDets > 100, empty
images and categories; the COCO columnizer against the Python passes; the numba
fallback and its warning; the evaluate fast path's parser against Typer's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from vecexplore.eval import coco as coco_mod
from vecexplore.eval.coco import CocoParams


def test_the_extension_is_built():
    """``make test`` builds it (editable install); a checkout without it must say so here, not silently fall back."""
    if os.environ.get("VECEXPLORE_ALLOW_NO_NATIVE"):
        pytest.skip("VECEXPLORE_ALLOW_NO_NATIVE is set")
    import vecexplore._native  # noqa: F401

    from vecexplore.eval.native import backend

    assert backend() == "native"


def _both(fn):
    """``fn`` run with the numba kernels and with the C kernels."""
    from vecexplore.eval import coco_kernels as numba_kern
    from vecexplore.eval import native
    from vecexplore.eval.matching import _numba_kernels

    c_coco, c_match, c_pairs = native._native_coco(), native.matching_kernels.__wrapped__(), native.pair_kernel.__wrapped__()
    saved = native.coco_kernels, native.matching_kernels, native.pair_kernel
    try:
        native.coco_kernels, native.matching_kernels, native.pair_kernel = (lambda: numba_kern), _numba_kernels, (lambda: None)
        ref = fn()
        native.coco_kernels, native.matching_kernels, native.pair_kernel = (lambda: c_coco), (lambda: c_match), (lambda: c_pairs)
        got = fn()
    finally:
        native.coco_kernels, native.matching_kernels, native.pair_kernel = saved
    return ref, got


def _assert_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype
    assert np.array_equal(a.view(np.uint8), b.view(np.uint8)) if a.dtype.kind == "f" else np.array_equal(a, b)


FLAVOURS = ("generic", "grid", "crowd", "ties", "many", "sparse", "id0")


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("seed", range(4))
def test_coco_metrics_bit_identical_to_numba_and_pycocotools(seed, flavour):
    from test_eval_coco import assert_same, make_case, pycoco, to_dataset

    gt_dict, results = make_case(7000 + 100 * FLAVOURS.index(flavour) + seed, flavour)
    ds = to_dataset(gt_dict, results)
    params = CocoParams(max_dets=(1, 10, 300)) if flavour == "many" else CocoParams()
    ref, got = _both(lambda: coco_mod.coco_metrics_of(ds, params=params))
    for name in ("stats", "precision", "recall", "scores", "per_class_ap", "per_class_ap50"):
        _assert_bits(getattr(ref, name), getattr(got, name))
    if flavour != "many":
        assert_same(got, pycoco(gt_dict, results))


@pytest.mark.parametrize("case", ["no_predictions", "no_gt", "nothing"])
def test_empty_inputs(case):
    from test_eval_coco import make_case, to_dataset

    gt_dict, results = make_case(5, "generic")
    if case in ("no_predictions", "nothing"):
        results = []
    if case in ("no_gt", "nothing"):
        gt_dict["annotations"] = []
    ds = to_dataset(gt_dict, results)
    ref, got = _both(lambda: coco_mod.coco_metrics_of(ds))
    _assert_bits(ref.stats, got.stats)
    _assert_bits(ref.precision, got.precision)


@pytest.mark.parametrize("seed", range(3))
def test_operating_point_matching_and_sweep_identical(seed):
    from vecexplore.eval.evaluate import evaluate

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1] / "benchmarks"))
    from coco_synth import make_synthetic_coco

    ds = make_synthetic_coco(num_images=150 + 50 * seed, num_classes=6, seed=seed).dataset

    def run():
        ev = evaluate(ds, iou=(0.5, 0.3, 0.75)[seed])
        low = ev.at(confidence=0.2)
        return ev, low

    (ref, ref_low), (got, got_low) = _both(run)
    assert ref.to_json_dict() == got.to_json_dict()
    assert ref_low.to_json_dict() == got_low.to_json_dict()
    for a, b in ((ref, got), (ref_low, got_low)):
        _assert_bits(a.outcomes.pred_code, b.outcomes.pred_code)
        _assert_bits(a.outcomes.gt_code, b.outcomes.gt_code)
        _assert_bits(a.matching.pred_match, b.matching.pred_match)


def test_counting_and_score_orders():
    from vecexplore.eval import coco_kernels as kern
    from vecexplore.eval.native import _native_coco

    c = _native_coco()
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 1000):
        order = rng.permutation(n).astype(np.int64)
        key = rng.integers(0, 13, n).astype(np.int64)
        _assert_bits(kern.counting_order(order, key, 13), c.counting_order(order, key, 13))
        score = rng.choice([0.0, -0.0, 0.25, 0.5, 1.0, 1e-300, 0.3333], n).astype(np.float64)
        _assert_bits(kern.descending_score_order(order, score), c.descending_score_order(order, score))


@pytest.mark.parametrize(("seed", "n", "m"), [(1, 3, 5), (2, 5000, 5000), (3, 60_000, 100_000), (4, 20_000, 20_001)])
def test_descending_score_order_radix_on_random_scores(seed, n, m):
    """The (key, index) radix: the numba reference's order and numpy's stable argsort, for an
    ``order`` that is a subset of the scores, full-precision scores, and scores of few digits."""
    from vecexplore.eval import coco_kernels as kern
    from vecexplore.eval.native import _native_coco

    c = _native_coco()
    rng = np.random.default_rng(seed)
    order = rng.choice(m, n, replace=False).astype(np.int64)
    for score in (rng.random(m), np.round(rng.random(m), 2), rng.random(m) * 1e-305, rng.exponential(1e6, m)):
        got = c.descending_score_order(order, score)
        _assert_bits(kern.descending_score_order(order, score), got)
        np.testing.assert_array_equal(got, order[np.argsort(-score[order], kind="stable")])


# ---------------------------------------------------------------- the columnizer


def _records(rng, n, predictions):
    recs = []
    for i in range(n):
        r = {"image_id": int(rng.integers(1, 50)), "category_id": int(rng.integers(1, 5)),
             "bbox": [float(v) for v in rng.uniform(0.5, 40, 4)]}
        if rng.random() < 0.3:
            r["bbox"][0] = int(r["bbox"][0])
        if predictions:
            r["score"] = float(rng.random()) if rng.random() < 0.9 else int(rng.integers(0, 2))
            if rng.random() < 0.5:
                r["id"] = i + 1
        else:
            r["id"] = i + 1
            r["iscrowd"] = [0, 1, True, False][int(rng.integers(0, 4))] if rng.random() < 0.8 else None
            if r["iscrowd"] is None:
                del r["iscrowd"]
            choice = rng.random()
            r["area"] = float(rng.uniform(1, 100)) if choice < 0.5 else (None if choice < 0.7 else int(rng.integers(1, 9)))
        recs.append(r)
    return recs


@pytest.mark.parametrize("predictions", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_columnizer_matches_the_python_passes(seed, predictions):
    from vecexplore.io._coco_records import _arrays, _columns_fast, _columns_native

    rng = np.random.default_rng(seed)
    recs = _records(rng, int(rng.integers(0, 60)), predictions)
    native = _columns_native(recs, predictions)
    cols = _columns_fast(recs, predictions)
    assert native is not None and cols is not None
    image_id, category_id, xywh, score = _arrays(cols, len(recs), predictions)
    _assert_bits(native["image_id"], image_id)
    _assert_bits(native["category_id"], category_id)
    _assert_bits(native["bbox"], xywh)
    if predictions:
        _assert_bits(native["score"], score)
    else:
        assert native["iscrowd"].tolist() == [bool(c) for c in cols["iscrowd"]]
        assert native["area_given"].tolist() == [a is not None for a in cols["area"]]
    assert [int(v) if g else None for v, g in zip(native["id"], native["id_given"], strict=True)] == list(cols["id"])


@pytest.mark.parametrize("change", [
    lambda r: r.update(image_id=True),  # bool is not an id
    lambda r: r.update(image_id=2**63),  # beyond int64
    lambda r: r.update(bbox=[1, 2, 3]),
    lambda r: r.update(bbox=(1.0, 2.0, 3.0, 4.0)),
    lambda r: r.update(bbox=[1.0, 2.0, "3", 4.0]),
    lambda r: r.update(bbox=[1.0, 2.0, 10**400, 4.0]),
    lambda r: r.update(iscrowd=2),
    lambda r: r.update(area="big"),
    lambda r: r.pop("category_id"),
    lambda r: r.update(id=None),  # ground truth needs its id
])
def test_columnizer_hands_every_surprise_to_the_python_passes(change):
    from vecexplore.io._coco_records import _columns_native

    recs = _records(np.random.default_rng(1), 5, False)
    change(recs[3])
    assert _columns_native(recs, False) is None
    assert _columns_native([*recs[:3], "not a record"], False) is None


def test_numba_fallback_warns_once_and_gives_the_same_numbers(tmp_path):
    """Without the extension (hidden by a meta-path hook) evaluate still works, on numba, with one warning."""
    from test_eval_coco import make_case

    gt_dict, results = make_case(3, "crowd")
    (tmp_path / "gt.json").write_text(json.dumps(gt_dict))
    (tmp_path / "pred.json").write_text(json.dumps(results))
    hide = ("import sys\nclass Hide:\n    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'vecexplore._native': raise ImportError('hidden for the test')\n"
            "sys.meta_path.insert(0, Hide())\nfrom vecexplore.cli import main\nmain(sys.argv[1:])\n")
    args = ["evaluate", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json")]
    slow = subprocess.run([sys.executable, "-c", hide, *args, "--json", str(tmp_path / "slow.json")],
                          capture_output=True, text=True)
    fast = subprocess.run([sys.executable, "-m", "vecexplore", *args, "--json", str(tmp_path / "fast.json")],
                          capture_output=True, text=True)
    assert slow.returncode == 0 and fast.returncode == 0, slow.stderr + fast.stderr
    warnings = [ln for ln in slow.stderr.splitlines() if "vecexplore._native not built" in ln]
    assert len(warnings) == 1 and "numba" in warnings[0]
    assert "not built" not in fast.stderr
    assert json.loads((tmp_path / "slow.json").read_text()) == json.loads((tmp_path / "fast.json").read_text())


# ---------------------------------------------------------------- the evaluate fast path


def test_fast_parser_knows_every_typer_option():
    from vecexplore.cli import _register
    from vecexplore.cli._app import app
    from vecexplore.cli._fast import DEFAULTS, OPTIONS

    _register()
    command = next(c for c in app.registered_commands if c.name == "evaluate")
    import inspect

    params = inspect.signature(command.callback).parameters
    assert set(params) == set(DEFAULTS)
    assert {key for key, _ in OPTIONS.values()} == set(DEFAULTS)
    for name, p in params.items():
        assert (p.default == DEFAULTS[name] or (name == "format" and p.default.value == DEFAULTS[name])
                or (name == "iou_type" and p.default.value == "auto" and DEFAULTS[name] is None))


ARGVS = [
    ["--gt", "g.json", "--pred", "p.json"],
    ["--gt=g.json", "--pred=p.json", "--iou", "0.75", "--conf=.3", "--top", "3", "--json", "o.json"],
    ["--gt", "a.json", "--pred", "pa.json", "--gt", "b.json", "--pred", "pb.json", "--clip", "--format", "COCO"],
    ["--gt", "g.csv", "--names", "a,b", "--allow-outside-root", "--no-clip", "--images", "imgs", "--plots", "pl"],
    ["--gt", "g.json", "--pred", "p.json", "--iou", "1", "--conf", "0"],
    ["--gt", "g.json", "--pred", "p.json", "--iou-type", "segm"],
    ["--gt", "g.json", "--pred", "p.json", "--iou-type=BBOX"],
    ["--gt", "g.json", "--pred", "p.json", "--iou-type", "auto"],
]
FALLBACK = [
    ["--help"], ["--gt"], ["--gt", "g.json", "--iou", "1.5"], ["--gt", "g.json", "--iou", "nan"],
    ["--gt", "g.json", "--iou", "5e-1"], ["--gt", "g.json", "--top", "-1"], ["--gt", "g.json", "--format", "voc"],
    ["--gt", "g.json", "--json", "a", "--json", "b"], ["--gt", "g.json", "--clip=yes"], ["--gt", "g.json", "extra"],
    ["--gt", "g.json", "--pred", "--clip"], ["--gt", "g.json", "--js", "x"], ["--gt", "g.json", "--"],
    ["--gt", "g.json", "--iou-type", "mask"],
]


@pytest.mark.parametrize("argv", ARGVS)
def test_fast_parser_agrees_with_typer(argv, monkeypatch):
    from vecexplore.cli import _evaluate, main
    from vecexplore.cli._fast import parse_evaluate

    seen = []
    monkeypatch.setattr(_evaluate, "run_evaluate", lambda **kw: seen.append(kw))
    fast = parse_evaluate(argv)
    assert fast is not None
    monkeypatch.setattr("vecexplore.cli._fast.parse_evaluate", lambda args: None)  # force Typer
    with pytest.raises(SystemExit) as info:
        main(["evaluate", *argv])
    assert info.value.code == 0
    typer_kw = seen[-1]
    typer_kw["format"] = getattr(typer_kw["format"], "value", typer_kw["format"])
    assert fast == typer_kw


@pytest.mark.parametrize("argv", FALLBACK)
def test_fast_parser_leaves_the_rest_to_typer(argv):
    from vecexplore.cli._fast import parse_evaluate

    assert parse_evaluate(argv) is None


def test_long_digit_scan_agrees_with_the_regex():
    """orjson would read a 20-digit integer as a float: such files take the standard parser."""
    from vecexplore.io._read import _LONG_DIGITS, _has_long_digits

    rng = np.random.default_rng(0)
    for _ in range(500):
        data = bytes(rng.choice(list(b"0123456789 ,.e-"), int(rng.integers(0, 80)), p=[0.09] * 10 + [0.02] * 5))
        assert _has_long_digits(data) == (_LONG_DIGITS.search(data) is not None), data


# ---------------------------------------------------------------- the C COCO reader


def _random_coco_text(rng, predictions_as_object: bool) -> tuple[str, str]:
    names = ["a.jpg", "ünï cödé/ß.png", "tab\there.jpg", 'quote"back\\slash.jpg', "emoji 🙂.jpg", "x" * 40]
    images = [{"id": int(i), "width": int(rng.integers(1, 500)), "height": int(rng.integers(1, 500)),
               "file_name": f"{k}-{names[k % len(names)]}", "meta": {"nested": [1, 2.5, None, True, "s"]},
               **({"split": "val"} if k % 3 == 0 else {})}
              for k, i in enumerate(rng.choice(np.arange(1, 10**6), int(rng.integers(1, 20)), replace=False))]
    cats = [{"id": int(c), "name": f"cat {c} é", "supercategory": "thing"}
            for c in rng.choice(np.arange(1, 400), int(rng.integers(1, 6)), replace=False)]
    anns = []
    for i in range(int(rng.integers(0, 60))):
        b = [float(v) for v in np.round(rng.uniform(0.1, 50, 4), int(rng.integers(0, 17)))]
        if rng.random() < 0.3:
            b[0] = int(b[0])
        a = {"attributes": {"occluded": False, "points": [[1, 2, 3]]}, "id": i + 1, "image_id": images[int(rng.integers(len(images)))]["id"],
             "category_id": cats[int(rng.integers(len(cats)))]["id"], "bbox": b}
        if rng.random() < 0.7:
            a["iscrowd"] = [0, 1, True, False][int(rng.integers(4))]
        if rng.random() < 0.6:
            a["area"] = float(rng.uniform(1, 99)) if rng.random() < 0.7 else None
        anns.append(a)
    preds = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
              "score": float(rng.random()) if rng.random() < 0.9 else 1, **({"id": k + 1} if k % 2 else {})}
             for k, a in enumerate(anns)]
    gt = {"info": {"year": 2024, "desc": "\u00e9\\n"}, "images": images, "annotations": anns, "categories": cats,
          "licenses": []}
    indent = None if rng.random() < 0.5 else int(rng.integers(0, 3))
    pred_doc = {"annotations": preds, "info": 1} if predictions_as_object else preds
    return (json.dumps(gt, indent=indent, ensure_ascii=bool(rng.random() < 0.5)),
            json.dumps(pred_doc, indent=indent, ensure_ascii=bool(rng.random() < 0.5)))


@pytest.mark.parametrize("where", ["gt", "pred"])
def test_c_reader_hands_back_files_with_masks(where):
    """A record with a "segmentation" key (even an empty one) is not read as a box: the C reader
    hands the files back (None) and the standard path, which reads masks, takes them."""
    from vecexplore.io._coco_records import parse_native

    gt_text, pred_text = _random_coco_text(np.random.default_rng(3), predictions_as_object=False)
    gt, pred = json.loads(gt_text), json.loads(pred_text)
    assert parse_native(gt_text.encode(), pred_text.encode(), gt_name="g", pred_name="p") is not None
    records = gt["annotations"] if where == "gt" else pred
    records[-1]["segmentation"] = []
    assert parse_native(json.dumps(gt).encode(), json.dumps(pred).encode(), gt_name="g", pred_name="p") is None


@pytest.mark.parametrize("seed", range(12))
def test_c_reader_equals_the_standard_parse(seed):
    from vecexplore.io._coco_records import _parse, parse_native

    rng = np.random.default_rng(seed)
    gt_text, pred_text = _random_coco_text(rng, predictions_as_object=seed % 2 == 1)
    fast = parse_native(gt_text.encode(), pred_text.encode(), gt_name="g", pred_name="p")
    ref = _parse(json.loads(gt_text), json.loads(pred_text), gt_name="g", pred_name="p")
    assert fast is not None
    for name in ("image_id", "width", "height"):
        _assert_bits(getattr(fast.images, name), getattr(ref.images, name))
    assert fast.images.file_name.tolist() == ref.images.file_name.tolist()
    plain = lambda v: None if v is None else [None if x is None else str(x) for x in v]  # noqa: E731
    assert plain(fast.images.split) == plain(ref.images.split)
    assert {k: plain(v) for k, v in fast.images.metadata.items()} == {k: plain(v) for k, v in ref.images.metadata.items()}
    assert fast.categories.names.tolist() == ref.categories.names.tolist()
    for a, b in ((fast.gt, ref.gt), (fast.pred, ref.pred)):
        for name in ("image_idx", "class_idx", "xywh", "object_id", "score", "iscrowd", "area"):
            va, vb = getattr(a, name), getattr(b, name)
            assert (va is None) == (vb is None), name
            if va is not None:
                _assert_bits(va, vb)
        assert [a.label(i) for i in range(len(a.image_idx))] == [b.label(i) for i in range(len(b.image_idx))]


@pytest.mark.parametrize("text", [
    '{"images": [], "categories": [], "x": NaN}', '[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], '
    '"score": Infinity}]', '{"images": [{"id": 123456789012345678901}]}', '{"a": "\\ud800"}', '{"a": 1,}',
    '{"a": [1 2]}', '{"a": 1} x', '{"a": "\x01"}', '[{"image_id": 1.0, "category_id": 1, "bbox": [1, 2, 3, 4], '
    '"score": 0.5}]', '{"images": [], "annotations": null}', '[' * 600 + ']' * 600, '{"a": 01}', '{"a": -}',
])
def test_c_reader_hands_back_anything_unusual(text):
    from vecexplore import _native as nat

    assert nat.parse_coco(text.encode(), True) is None
    assert nat.parse_coco(b"\xff\xfe" + text.encode(), False) is None  # not UTF-8


def test_c_reader_keeps_the_document():
    from vecexplore import _native as nat

    text = '{"b": [1, -0, 2.5e-3, -0.0, true, false, null, {"k": "\\u00e9\\ud83d\\ude42\\n"}], "annotations": [], "a": {}}'
    doc, cols = nat.parse_coco(text.encode(), False)
    ref = json.loads(text)
    del ref["annotations"]
    assert doc == ref and list(doc) == list(ref) and cols["n"] == 0
    assert repr(doc["b"][3]) == "-0.0" and type(doc["b"][1]) is int


def _random_number_literals(rng, n: int) -> list[str]:
    """JSON number literals of every shape a COCO file holds: float reprs (float64 and
    float32 values), short decimals, long digit strings, exponents, signs, edges."""
    out = []
    for _ in range(n):
        kind = int(rng.integers(6))
        if kind == 0:
            v = repr(float(rng.uniform(-1e3, 1e3)))
        elif kind == 1:
            v = repr(float(np.float32(rng.uniform(0, 700))))
        elif kind == 2:  # up to 24 digits with the point anywhere
            digits = "".join(map(str, rng.integers(0, 10, int(rng.integers(1, 25))))).lstrip("0") or "0"
            cut = int(rng.integers(0, len(digits) + 1))
            v = f"{digits[:cut] or '0'}.{digits[cut:] or '0'}"
        elif kind == 3:
            v = f"{int(rng.integers(1, 10 ** int(rng.integers(1, 18))))}{'eE'[int(rng.integers(2))]}{int(rng.integers(-40, 40))}"
        elif kind == 4:
            v = f"0.{'0' * int(rng.integers(0, 8))}{int(rng.integers(1, 10**9))}"
        else:
            v = str(round(float(rng.uniform(0, 1000)), int(rng.integers(0, 5))))
        out.append("-" + v if rng.random() < 0.3 and not v.startswith("-") else v)
    return [*out, "9007199254740993.0", "9007199254740992.0", "9007199254740993e-5", "1e22", "1e23", "1e-22",
                  "1e-23", "-0.0", "0.0", "0e5", "4.9e-324", "1e-400", "1e400", "123456789012345678.5",
                  "2.2250738585072014e-308", "1.7976931348623157e308", "0.1",
            "0.30000000000000004"]


@pytest.mark.parametrize("seed", range(3))
def test_c_reader_numbers_have_the_bits_of_float(seed):
    """The C reader's fast decimal conversion gives float()'s bits, and int()'s values."""
    from vecexplore import _native as nat

    rng = np.random.default_rng(seed)
    lits = _random_number_literals(rng, 20_000)
    ints = [str(int(v)) for v in rng.integers(-2**62, 2**62, 2000)] + ["0", "-0", str(2**63 - 1), str(-2**63),
                                                                        "999999999999999999", "1000000000000000000"]
    recs = ",".join(f'{{"image_id": {i}, "category_id": 1, "bbox": [{v}, 1, 2, 3], "score": {v}}}'
                    for i, v in zip(ints * (len(lits) // len(ints) + 1), lits, strict=False))
    doc, cols = nat.parse_coco(f"[{recs}]".encode(), True)
    ref = np.array([float(v) for v in lits])
    bbox_x = np.frombuffer(cols["bbox"], np.float64).reshape(-1, 4)[:, 0].copy()
    for got in (bbox_x, np.frombuffer(cols["score"], np.float64)):
        _assert_bits(got, ref)
    want_ids = [int(v) for v in (ints * (len(lits) // len(ints) + 1))[:len(lits)]]
    assert np.frombuffer(cols["image_id"], np.int64).tolist() == want_ids
    doc, _ = nat.parse_coco(json.dumps({"v": [json.loads(v) for v in lits[:500]]}).encode(), False)
    assert [repr(x) for x in doc["v"]] == [repr(float(v)) for v in lits[:500]]


@pytest.mark.parametrize("seed", range(8))
def test_candidate_pairs_c_loop_equals_the_python_loop(seed, monkeypatch):
    """The C candidate-pair loop gives the Python loop's pairs, order, IoU bits and flags:
    crowded images, crowd GT, boxes on a grid (IoU exactly at the thresholds), empty images."""
    from vecexplore.eval import matching, native
    from vecexplore.types import Boxes

    rng = np.random.default_rng(seed)
    n_img, n_cls = int(rng.integers(1, 40)), int(rng.integers(1, 5))
    m, n = int(rng.integers(0, 300)), int(rng.integers(0, 500))
    grid = seed % 2 == 0  # integer boxes: many IoUs equal 0.5, 0.25, 0.1 exactly

    def boxes(k):
        if grid:
            xy, wh = rng.integers(0, 8, (k, 2)) * 2.0, rng.integers(1, 5, (k, 2)) * 2.0
        else:
            xy, wh = rng.uniform(0, 50, (k, 2)), rng.uniform(0.5, 30, (k, 2))
        return np.column_stack([xy, wh])

    gt = Boxes(image_idx=rng.integers(0, n_img, m), class_idx=rng.integers(0, n_cls, m), xywh=boxes(m),
               object_id=np.arange(1, m + 1), iscrowd=rng.random(m) < 0.15)
    pred = Boxes(image_idx=rng.integers(0, n_img, n), class_idx=rng.integers(0, n_cls, n), xywh=boxes(n),
                 object_id=np.arange(1, n + 1), score=np.round(rng.random(n), 1))
    order = np.lexsort((np.arange(n), -pred.score, pred.image_idx)).astype(np.int64)
    t = float(rng.choice([0.1, 0.25, 0.5, 0.75, 1.0, 0.05]))
    got = matching._candidate_pairs(gt, pred, order, t, n_img)
    monkeypatch.setattr(native, "pair_kernel", lambda: None)
    monkeypatch.setattr(matching, "_PAIR_CHUNK", int(rng.integers(1, 500)))  # the Python loop's chunks, too
    ref = matching._candidate_pairs(gt, pred, order, t, n_img)
    (gs, gc, go, gn, gno), (rs, rc, ro, rn, rno) = got, ref
    for a, b in (*zip(gs, rs, strict=True), *zip(go, ro, strict=True), (gc, rc), (gn, rn), (gno, rno)):
        _assert_bits(a, b)


def test_candidate_pairs_refuses_inconsistent_arrays():
    from vecexplore import _native as nat

    z, one = np.zeros(0, np.int64), np.zeros(1, np.int64)
    with pytest.raises(ValueError, match="candidate_pairs"):  # a position beyond the predictions
        nat.candidate_pairs(np.array([3], np.int64), one, one, np.zeros((1, 4)), z, one, one, z, np.zeros((0, 4)),
                            np.zeros(0, bool), 0.5, 0.1, 0.1, np.zeros(1, bool), np.zeros(1, bool), np.zeros(1, bool))


def _random_image_records(rng) -> list[dict]:
    """Image records with extra keys of every kind (scalars, mixed kinds, nested, big ints,
    missing on some records), splits on some, in varying key order."""
    recs = []
    for k, i in enumerate(rng.choice(np.arange(0, 10**7), int(rng.integers(1, 60)), replace=False)):
        r = {"id": int(i), "file_name": f"img {k}.jpg", "width": int(rng.integers(0, 900)),
             "height": int(rng.integers(0, 900))}
        if rng.random() < 0.5:
            r["split"] = ["train", "val", None][int(rng.integers(3))]
        if rng.random() < 0.7:
            r["license"] = int(rng.integers(1, 8))
        if rng.random() < 0.5:
            r["coco_url"] = f"http://x/{k}.jpg"
        if rng.random() < 0.2:
            r["mixed"] = [1, "a", 2.5, True, None, 2**70][int(rng.integers(6))]
        if rng.random() < 0.1:
            r["nested"] = {"a": [1]}
        items = list(r.items())
        order = rng.permutation(len(items))
        recs.append(dict(items[j] for j in order))
    return recs


@pytest.mark.parametrize("seed", range(10))
def test_image_columns_fast_equals_the_checked_pass(seed):
    from vecexplore.io._coco_records import (
        _image_columns_checked,
        _image_columns_fast,
        _parse_images,
    )

    recs = _random_image_records(np.random.default_rng(seed))
    fast, ref = _image_columns_fast(recs), _image_columns_checked(recs, "g")
    assert fast is not None
    for a, b in zip(fast, ref, strict=True):
        if isinstance(a, np.ndarray):
            _assert_bits(a, b)
        elif isinstance(a, dict):
            assert list(a) == list(b) and all(a[k] == b[k] and list(map(type, a[k])) == list(map(type, b[k])) for k in a)
        else:
            assert a == b
    table, missing = _parse_images(recs, "g")
    assert not missing.any() and table.image_id.tolist() == [r["id"] for r in recs]


@pytest.mark.parametrize("change", [
    lambda r: r.pop("width"), lambda r: r.update(height=None), lambda r: r.update(id=7.0), lambda r: r.update(id=True),
    lambda r: r.update(width=-1), lambda r: r.update(width=2**63), lambda r: r.update(file_name=""),
    lambda r: r.update(file_name=3), lambda r: r.update(split=1), lambda r: r.pop("id"), lambda r: r.update(width=1.0),
])
def test_image_columns_fast_hands_every_surprise_to_the_checked_pass(change):
    from vecexplore.io._coco_records import _image_columns_fast

    recs = _random_image_records(np.random.default_rng(0))
    change(recs[len(recs) // 2])
    assert _image_columns_fast(recs) is None
    assert _image_columns_fast([*recs[:1], 5]) is None


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_coco_kernels_give_the_same_bits_on_any_thread_count(flavour, monkeypatch):
    """match_groups / accumulate split their groups over threads; every count gives one thread's bits."""
    from test_eval_coco import make_case, to_dataset

    from vecexplore.eval import native

    if native.backend() != "native":
        pytest.skip("the C extension is not built")
    gt_dict, results = make_case(9100 + FLAVOURS.index(flavour), flavour)
    ds = to_dataset(gt_dict, results)
    params = CocoParams(max_dets=(1, 10, 300)) if flavour == "many" else CocoParams()
    monkeypatch.setattr(native, "_THREADED_FROM", 0)
    monkeypatch.setattr(native.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    runs = {}
    for threads in (1, 2, 3, 4):
        monkeypatch.setenv("VECEXPLORE_THREADS", str(threads))
        assert native.threads_for(len(ds.pred)) == threads
        runs[threads] = coco_mod.coco_metrics_of(ds, params=params)
    for threads in (2, 3, 4):
        for name in ("stats", "precision", "recall", "scores", "per_class_ap"):
            _assert_bits(getattr(runs[threads], name), getattr(runs[1], name))


def test_thread_count_setting():
    from vecexplore.errors import ConfigError
    from vecexplore.eval import native

    assert native.threads_for(10) == 1
    os.environ["VECEXPLORE_THREADS"] = "zero"
    try:
        with pytest.raises(ConfigError, match="VECEXPLORE_THREADS"):
            native.threads_for(10**6)
    finally:
        del os.environ["VECEXPLORE_THREADS"]


@pytest.mark.parametrize(("seed", "n"), [(0, 0), (1, 1), (2, 40), (3, 3000), (4, 50_000)])
def test_stable_order_is_lexsort(seed, n):
    """The radix composition matching and the sweep use equals np.lexsort, ties included."""
    from vecexplore.eval.native import stable_order

    rng = np.random.default_rng(seed)
    a = rng.integers(0, 7, n)
    b = np.round(rng.random(n), int(rng.integers(1, 4)))
    b[rng.random(n) < 0.1] = 0.0
    c = rng.integers(0, max(n // 3, 1), n)
    np.testing.assert_array_equal(stable_order((c, max(n // 3, 1)), (b, None), (a, 7)), np.lexsort((c, -b, a)))
    np.testing.assert_array_equal(stable_order((b, None)), np.argsort(-b, kind="stable"))
    np.testing.assert_array_equal(stable_order((b, None), (a, 7)), np.lexsort((np.arange(n), -b, a)))
    neg = b - 0.5  # a negative float key: np.lexsort itself
    np.testing.assert_array_equal(stable_order((neg, None), (a, 7)), np.lexsort((-neg, a)))
