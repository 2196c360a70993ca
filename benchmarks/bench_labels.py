"""Label issues on planted errors: recovery (precision in the top k, k = planted) and time, vecexplore
beside cleanlab on the same data.

Data: ``tests/_label_errors.py`` (5 % of GT classes swapped, 5 % of the well-detected
objects' GT deleted; classification: 5 % of labels swapped). Detection reference:
cleanlab's per-box swap and overlooked scores (``cleanlab.object_detection.rank``),
lowest quality first. Classification reference: cleanlab's ``normalized_margin``
ranking (vecexplore's score is 1 − it, so the columns agree by construction; the time
is what differs).

``python benchmarks/run.py labels [--sizes=300,1000,3000] [--seeds=3]``
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _arg(argv, name, default):
    for a in argv:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return default


def _prec(ranked, planted) -> float:
    top = np.asarray(ranked)[: len(planted)]
    return float(np.isin(top, list(planted)).sum() / max(len(top), 1))


def _cleanlab_inputs(ds):
    k = len(ds.categories)
    gxy, pxy = ds.gt.xyxy, ds.pred.xyxy
    labels, preds, pred_ids, gt_ids = [], [], [], []
    for i in range(ds.num_images):
        g, p = ds.gt.image_idx == i, ds.pred.image_idx == i
        labels.append({"bboxes": gxy[g], "labels": ds.gt.class_idx[g]})
        per = []
        for c in range(k):
            m = p & (ds.pred.class_idx == c)
            per.append(np.c_[pxy[m], ds.pred.score[m]].astype(np.float32))
            pred_ids.append(ds.pred.object_id[m])
        preds.append(per)
        gt_ids.append(ds.gt.object_id[g])
    return labels, preds, np.concatenate(gt_ids), np.concatenate(pred_ids)


def detection(sizes, seeds) -> None:
    from _label_errors import detection_with_errors

    from vecexplore.analysis.label_issues import label_issues
    from vecexplore.eval.evaluate import evaluate

    try:
        from cleanlab.object_detection.rank import (
            compute_overlooked_box_scores,
            compute_swap_box_scores,
        )
    except ImportError:
        compute_swap_box_scores = None
    print("detection: precision in the top k of each kind (k = planted); time of the scoring alone")
    print(f"{'images':>7} {'seed':>4} {'k_swap':>6} {'k_del':>5} | {'vx swap':>7} {'vx miss':>7} {'vx both':>7} "
          f"{'vx s':>6} | {'cl swap':>7} {'cl miss':>7} {'cl s':>6}")
    for n in sizes:
        for seed in range(seeds):
            ds, planted = detection_with_errors(n_images=n, seed=seed)
            ev = evaluate(ds)
            t0 = time.perf_counter()
            li = label_issues(ev)
            t_vx = time.perf_counter() - t0
            p_swap = _prec(li[li["kind"] == "wrong_class"]["annotation_id"].to_numpy(), planted["swapped"])
            p_miss = _prec(li[li["kind"] == "missing"]["pred_id"].to_numpy(), planted["deleted"])
            top = li.head(len(planted["swapped"]) + len(planted["deleted"]))
            hit = ((top["kind"] == "wrong_class") & top["annotation_id"].isin(planted["swapped"])) | \
                  ((top["kind"] == "missing") & top["pred_id"].isin(planted["deleted"]))
            cl = "      –       –      –"
            if compute_swap_box_scores is not None:
                labels, preds, gt_ids, pred_ids = _cleanlab_inputs(ds)
                t0 = time.perf_counter()
                swap = np.concatenate(compute_swap_box_scores(labels=labels, predictions=preds))
                over = np.concatenate(compute_overlooked_box_scores(labels=labels, predictions=preds))
                t_cl = time.perf_counter() - t0
                over = np.nan_to_num(over, nan=1.0)
                c_swap = _prec(gt_ids[np.argsort(swap, kind="stable")], planted["swapped"])
                c_miss = _prec(pred_ids[np.argsort(over, kind="stable")], planted["deleted"])
                cl = f"{c_swap:7.2f} {c_miss:7.2f} {t_cl:6.2f}"
            print(f"{n:7d} {seed:4d} {len(planted['swapped']):6d} {len(planted['deleted']):5d} | {p_swap:7.2f} "
                  f"{p_miss:7.2f} {hit.mean():7.2f} {t_vx:6.2f} | {cl}", flush=True)


def classification(sizes, seeds) -> None:
    from _label_errors import classification_with_errors

    from vecexplore.analysis.label_issues import label_issues
    from vecexplore.eval.evaluate import evaluate

    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError:
        get_label_quality_scores = None
    print("classification: precision in the top k (k = planted swaps); likely = flagged by confident learning")
    print(f"{'images':>7} {'seed':>4} {'k':>5} | {'vx prec':>7} {'likely':>6} {'prec':>5} {'vx s':>6} | "
          f"{'cl prec':>7} {'cl flag':>7} {'cl s':>6}")
    for n in sizes:
        for seed in range(seeds):
            ds, planted = classification_with_errors(n_images=n, seed=seed)
            ev = evaluate(ds)
            t0 = time.perf_counter()
            li = label_issues(ev)
            t_vx = time.perf_counter() - t0
            p = _prec(li["image_idx"].to_numpy(), planted["swapped"])
            likely = li[li["likely"]]["image_idx"].to_numpy()
            p_likely = float(np.isin(likely, list(planted["swapped"])).mean()) if len(likely) else float("nan")
            cl = "      –       –      –"
            if get_label_quality_scores is not None:
                t0 = time.perf_counter()
                q = get_label_quality_scores(ds.gt.class_idx, ds.pred.scores, method="normalized_margin",
                                             adjust_pred_probs=False)
                flagged = find_label_issues(ds.gt.class_idx, ds.pred.scores, filter_by="confident_learning")
                t_cl = time.perf_counter() - t0
                cl = f"{_prec(np.argsort(q, kind='stable'), planted['swapped']):7.2f} {int(flagged.sum()):7d} {t_cl:6.2f}"
            print(f"{n:7d} {seed:4d} {len(planted['swapped']):5d} | {p:7.2f} {len(likely):6d} {p_likely:5.2f} "
                  f"{t_vx:6.2f} | {cl}", flush=True)


def main(argv: list[str]) -> None:
    sizes = [int(s) for s in _arg(argv, "sizes", "300,1000,3000").split(",")]
    seeds = int(_arg(argv, "seeds", "3"))
    detection(sizes, seeds)
    classification(sizes, seeds)


if __name__ == "__main__":
    main(sys.argv[1:])
