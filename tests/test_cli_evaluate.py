"""``vecexplore evaluate`` end to end (COCO and classification CSV; images not on
disk), the JSON schema and its consistency with the engine, the PNGs, errors,
and ``Evaluation.at`` against fresh evaluations."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vecexplore.cli import main
from vecexplore.eval.evaluate import evaluate
from vecexplore.io import DatasetSource, load_dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from coco_synth import make_synthetic_coco  # noqa: E402

COCO_KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


def run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
        except SystemExit as exc:
            code = exc.code or 0
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def coco_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("coco")
    synth = make_synthetic_coco(num_images=60, num_classes=5, seed=3)
    (d / "gt.json").write_text(json.dumps(synth.coco_gt()))
    (d / "pred.json").write_text(json.dumps(synth.coco_results()))
    return d


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("csv")
    rng = np.random.default_rng(0)
    names = ["cat", "dog", "owl", "yak"]
    lines = ["file_name,label,prediction,score," + ",".join(f"score_{n}" for n in names)]
    for i in range(80):
        s = rng.dirichlet(np.ones(4))
        label = names[rng.integers(4)] if rng.random() < 0.4 else names[int(np.argmax(s))]
        top = int(np.argmax(s))
        lines.append(f"img{i}.jpg,{label},{names[top]},{s[top]:.4f}," + ",".join(f"{v:.4f}" for v in s))
    (d / "labels.csv").write_text("\n".join(lines) + "\n")
    return d


def test_detection_report_json_and_plots(coco_files, tmp_path):
    out_json, plots = tmp_path / "metrics.json", tmp_path / "plots"
    code, stdout, err = run_cli(["evaluate", "--gt", str(coco_files / "gt.json"), "--pred",
                                 str(coco_files / "pred.json"), "--json", str(out_json), "--plots", str(plots)])
    assert code == 0, err
    for text in ("F1-optimal confidence", "COCO", "Error types", "Per class", "Confusion matrix", "Top confusions"):
        assert text in stdout
    doc = json.loads(out_json.read_text())
    assert list(doc) == ["task", "boxes", "coco", "per_class", "operating_point", "optimal_confidence", "error_types",
                         "confusion_matrix"]
    assert doc["task"] == "detection" and list(doc["coco"]) == COCO_KEYS and doc["boxes"] == "as_given"
    assert all(list(r) == ["category_id", "name", "AP", "AP50", "precision", "recall", "f1", "tp", "fp", "fn"]
               for r in doc["per_class"])
    assert list(doc["operating_point"]) == ["iou", "confidence", "precision", "recall", "f1"]
    assert list(doc["optimal_confidence"]) == ["confidence", "f1"]
    assert list(doc["error_types"]) == ["duplicate", "class", "localization", "both", "background", "missed"]
    assert list(doc["confusion_matrix"]) == ["labels", "matrix"]

    # Consistent with the engine on the same files.
    ds = load_dataset(DatasetSource(gt=coco_files / "gt.json", pred=coco_files / "pred.json"), check_images=False)
    ev = evaluate(ds)
    assert doc == json.loads(json.dumps(ev.to_json_dict()))
    assert doc["operating_point"]["confidence"] == doc["optimal_confidence"]["confidence"] == ev.optimal[0]
    assert doc["operating_point"]["f1"] == doc["optimal_confidence"]["f1"]
    m = np.array(doc["confusion_matrix"]["matrix"])
    k = len(ds.categories)
    assert doc["confusion_matrix"]["labels"] == [*ds.categories.names, "background"]
    assert m[:k].sum(axis=1).tolist() == np.bincount(ds.gt.class_idx[~ds.gt.iscrowd], minlength=k).tolist()
    assert sum(r["tp"] for r in doc["per_class"]) == int(np.trace(m[:k, :k])) == ev.totals["tp"]
    assert doc["error_types"]["missed"] == int(m[:k, k].sum())
    assert doc["error_types"]["class"] == int(m[:k, :k].sum() - np.trace(m[:k, :k]))
    fp_other = sum(doc["error_types"][key] for key in ("duplicate", "localization", "both", "background"))
    assert fp_other == int(m[k].sum())
    assert [r["AP"] for r in doc["per_class"]] == [None if np.isnan(v) else v for v in ev.coco.per_class_ap]

    names = sorted(p.name for p in plots.iterdir())
    assert names == ["confidence_curves.png", "confusion_matrix.png", "pr_curves.png"]
    for p in plots.iterdir():
        with Image.open(p) as im:
            im.verify()
            assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100


def test_given_confidence_and_iou(coco_files, tmp_path):
    out_json = tmp_path / "m.json"
    code, stdout, err = run_cli(["evaluate", "--gt", str(coco_files / "gt.json"), "--pred",
                                 str(coco_files / "pred.json"), "--conf", "0.3", "--iou", "0.7",
                                 "--json", str(out_json)])
    assert code == 0, err
    doc = json.loads(out_json.read_text())
    assert doc["operating_point"]["confidence"] == 0.3 and doc["operating_point"]["iou"] == 0.7
    assert "(given; the F1-optimal confidence is" in stdout


def test_classification_csv(csv_file, tmp_path):
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    out_json, plots = tmp_path / "c.json", tmp_path / "plots"
    code, stdout, err = run_cli(["evaluate", "--gt", str(csv_file / "labels.csv"), "--json", str(out_json),
                                 "--plots", str(plots)])
    assert code == 0, err
    assert "every prediction accepted" in stdout and "top-3 accuracy" in stdout
    doc = json.loads(out_json.read_text())
    assert list(doc) == ["task", "accuracy", "per_class", "macro", "weighted", "confusion_matrix"]
    ds = load_dataset(DatasetSource(gt=csv_file / "labels.csv"), check_images=False)
    y_true = np.full(ds.num_images, -1)
    y_true[ds.gt.image_idx] = ds.gt.class_idx
    y_pred = np.full(ds.num_images, -1)
    y_pred[ds.pred.image_idx] = ds.pred.class_idx
    assert doc["accuracy"] == accuracy_score(y_true, y_pred)
    k = len(ds.categories)
    assert doc["confusion_matrix"]["matrix"] == confusion_matrix(y_true, y_pred, labels=list(range(k))).tolist()
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(range(k)), zero_division=0)
    assert [row["precision"] for row in doc["per_class"]] == p.tolist()
    assert [row["recall"] for row in doc["per_class"]] == r.tolist()
    np.testing.assert_allclose([row["f1"] for row in doc["per_class"]], f, rtol=1e-15)
    assert [row["support"] for row in doc["per_class"]] == s.tolist()
    assert list(doc["macro"]) == ["precision", "recall", "f1"]
    assert sorted(x.name for x in plots.iterdir()) == ["confusion_matrix.png", "coverage_curves.png", "per_class.png"]
    for x in plots.iterdir():
        with Image.open(x) as im:
            im.verify()


@pytest.mark.parametrize(("extra", "message"), [
    (["--gt", "/nonexistent/gt.json", "--pred", "/nonexistent/pred.json"], "gt.json"),
    (["--conf", "1.5"], "conf"),
    (["--json", "/nonexistent/dir/m.json"], "does not exist"),
])
def test_errors_exit_2(coco_files, extra, message):
    base = ["--gt", str(coco_files / "gt.json"), "--pred", str(coco_files / "pred.json")]
    args = extra if extra[0] == "--gt" else base + extra
    code, _, err = run_cli(["evaluate", *args])
    assert code == 2 and message in err and "Traceback" not in err


def test_iou_with_classification_is_an_error(csv_file):
    code, _, err = run_cli(["evaluate", "--gt", str(csv_file / "labels.csv"), "--iou", "0.7"])
    assert code == 2 and err.startswith("error:") and "detection only" in err


@pytest.mark.parametrize("seed", range(3))
def test_at_equals_fresh_evaluation(seed):
    ds = make_synthetic_coco(num_images=40, num_classes=4, seed=seed).dataset
    ev = evaluate(ds)
    for c, t in ((0.2, None), (0.6, None), (0.45, 0.75), (None, 0.6)):
        moved = ev.at(confidence=c, iou=t)
        fresh = evaluate(ds, iou=0.5 if t is None else t, confidence=c)
        assert moved.confidence == fresh.confidence and moved.iou == fresh.iou
        assert moved.per_image.equals(fresh.per_image)
        assert np.array_equal(moved.confusion.counts, fresh.confusion.counts)
        assert moved.objects.equals(fresh.objects)
    assert ev.at(iou=0.75).matching is ev.at(iou=0.75, confidence=0.1).matching  # matched once per IoU
    # per-image tables add up to the totals and the matrix
    tab = ev.per_image
    assert int(tab.tp.sum()) == ev.totals["tp"] and int(tab.fn_missed.sum()) == int(ev.confusion.counts[:-1, -1].sum())
    counts = ev.objects.groupby(["kind", "outcome"], observed=True).size()
    assert counts.get(("pred", "fp_class"), 0) == int(tab.fp_class.sum())
    assert counts.get(("gt", "confused"), 0) == int(tab.fn.sum() - tab.fn_missed.sum())
