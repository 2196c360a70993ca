"""The app's pure state and view functions: selection, filters, gallery, header, matrix, colours.

Everything here runs without Bokeh or a browser; numbers are checked against the
evaluation engine (itself tested against pycocotools / scikit-learn) and against
brute-force Python on random inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

from vecexplore.app import colouring
from vecexplore.app import state as st
from vecexplore.app.views.clusters import cluster_rows, most_confused
from vecexplore.app.views.detail import fit_ranges, place_labels
from vecexplore.app.views.gallery import badges, shape_for, tile_layout
from vecexplore.app.views.header import header_html, metric_rows
from vecexplore.eval.classification import classification_metrics
from vecexplore.eval.evaluate import evaluate
from vecexplore.eval.outcomes import count_columns, rate_columns
from vecexplore.types import Boxes, Categories, Dataset, ImageTable, Labels

# ---------------------------------------------------------------- random datasets


def random_detection(seed: int, n_images: int = 30, n_classes: int = 4) -> Dataset:
    """A detection dataset on an integer grid: ties, crowd, wrong classes, empty images."""
    rng = np.random.default_rng(seed)
    gt_rows, pred_rows = [], []
    for img in range(n_images):
        for _ in range(rng.integers(0, 5)):
            x, y, w, h = *rng.integers(0, 40, 2), *rng.integers(3, 15, 2)
            gt_rows.append((img, rng.integers(0, n_classes), x, y, w, h, rng.random() < 0.05))
            for _ in range(rng.integers(0, 3)):
                j = rng.integers(-3, 4, 4)
                cls = gt_rows[-1][1] if rng.random() < 0.7 else rng.integers(0, n_classes)
                pred_rows.append((img, cls, x + j[0], y + j[1], max(1, w + j[2]), max(1, h + j[3])))
        for _ in range(rng.integers(0, 3)):
            pred_rows.append((img, rng.integers(0, n_classes), *rng.integers(0, 50, 2), *rng.integers(2, 12, 2)))
    g = np.array(gt_rows, np.float64).reshape(-1, 7)
    p = np.array(pred_rows, np.float64).reshape(-1, 6)
    gt = Boxes(g[:, 0].astype(int), g[:, 1].astype(int), g[:, 2:6], np.arange(len(g)) + 1, iscrowd=g[:, 6] > 0)
    pred = Boxes(p[:, 0].astype(int), p[:, 1].astype(int), p[:, 2:6], np.arange(len(p)) + 1,
                 score=rng.choice([0.3, 0.5, 0.7, 0.9], len(p)) if seed % 2 else rng.random(len(p)).round(2))
    images = ImageTable(image_id=np.arange(n_images) + 10, file_name=[f"{i}.jpg" for i in range(n_images)],
                        width=np.full(n_images, 64), height=np.full(n_images, 48),
                        split=["a" if i % 3 else "b" for i in range(n_images)])
    return Dataset(task="detection", images=images, categories=Categories.from_names([f"c{k}" for k in range(n_classes)]),
                   gt=gt, pred=pred)


def random_classification(seed: int, n_images: int = 60, n_classes: int = 4) -> Dataset:
    rng = np.random.default_rng(seed)
    labelled = np.flatnonzero(rng.random(n_images) < 0.9)
    predicted = np.flatnonzero(rng.random(n_images) < 0.95)
    scores = rng.dirichlet(np.ones(n_classes), len(predicted))
    images = ImageTable(image_id=np.arange(n_images), file_name=[f"{i}.png" for i in range(n_images)],
                        width=np.full(n_images, 32), height=np.full(n_images, 32))
    return Dataset(task="classification", images=images,
                   categories=Categories.from_names([f"k{k}" for k in range(n_classes)]),
                   gt=Labels(labelled, rng.integers(0, n_classes, len(labelled))),
                   pred=Labels(predicted, scores.argmax(1), score=scores.max(1), scores=scores))


# ---------------------------------------------------------------- selection and filters

PICK_CASES = [
    # (pick, universe, expected)
    (None, None, None),
    (None, [True, False, True, False], [0, 2]),
    ([3, 1], None, [1, 3]),
    ([0, 1, 3], [True, False, True, True], [0, 3]),
    ([1], [True, False, True, True], []),
]


@pytest.mark.parametrize(("pick", "uni", "want"), PICK_CASES)
def test_selection_is_pick_within_universe(pick, uni, want):
    s = st.SessionState(iou=0.5, confidence=0.3).with_pick(pick)
    got = st.selection_of(s.pick, None if uni is None else np.array(uni))
    if want is None:
        assert got is None
    else:
        assert got.dtype == np.int64 and got.tolist() == want


@pytest.mark.parametrize(("pick", "want"), [([5, 2, 2, 9], [2, 5, 9]), ([], []), (None, None), (np.array([7]), [7])])
def test_with_pick_sorts_dedups_and_resets_page(pick, want):
    s = st.SessionState(iou=0.5, confidence=0.3, page=4).with_pick(pick, "lasso")
    assert s.page == 0
    if want is None:
        assert s.pick is None and s.pick_how == ""
    else:  # an empty pick is a real, empty selection: never "the whole run"
        assert s.pick.tolist() == want and s.pick_how == "lasso"
        assert st.selection_of(s.pick, None).tolist() == want


@pytest.mark.parametrize(("classes", "splits", "want"), [
    ((), (), None),
    ((1,), (), [0, 2]),
    ((), ("b",), [1, 2]),
    ((1,), ("b",), [2]),
    ((0, 2), ("a", "b"), [1, 3]),
])
def test_universe_combines_class_and_split_filters(classes, splits, want):
    s = st.SessionState(iou=0.5, confidence=0.3).with_filters(classes=classes, splits=splits)
    gt_pairs = (np.array([0, 1, 3]), np.array([1, 0, 2]))
    pred_pairs = (np.array([2, 3]), np.array([1, 2]))
    mask = st.universe(s, num_images=4, split=np.array(["a", "b", "b", "a"], object),
                       class_pairs=[gt_pairs, pred_pairs])
    assert (mask is None) if want is None else np.flatnonzero(mask).tolist() == want


def test_describe_names_pick_and_filters():
    s = st.SessionState(iou=0.5, confidence=0.3).with_pick([1], "cluster 3").with_filters(classes=[1], splits=["val"])
    assert st.describe(s, ["cat", "dog"]) == "cluster 3 · class dog · split val"
    assert st.describe(st.SessionState(iou=0.5, confidence=0.3), ["cat"]) == "all images"
    only = st.SessionState(iou=0.5, confidence=0.3).with_filters(classes=[0, 1], splits=["a", "b"])
    assert st.describe(only, ["hexagon", "dog"]) == "classes hexagon, dog · splits a, b"
    assert st.describe(st.SessionState(iou=0.5, confidence=0.3).with_filters(classes=[0]), ["hexagon"]) == "class hexagon"


# ---------------------------------------------------------------- gallery


def brute_order(cand, sort, er, score, text=None):
    def key(i):
        if sort == "error":
            return (-er[i], i)
        if sort == "text" and text is None:
            return (0, 0.0, i)
        s = text[i] if sort == "text" else score[i]
        if np.isnan(s):
            return (1, 0.0, i)
        return (0, s if sort == "confidence_asc" else -s, i)
    return sorted(cand, key=key)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("sort", st.SORT_KEYS)
def test_gallery_order_equals_brute_force(seed, sort):
    rng = np.random.default_rng(seed)
    n = 200
    er = rng.choice([0.0, 0.25, 0.5, 1.0], n)  # many ties
    score = np.where(rng.random(n) < 0.2, np.nan, rng.choice([0.1, 0.5, 0.9], n))
    text = np.where(rng.random(n) < 0.1, np.nan, rng.choice([-0.2, 0.1, 0.3], n)).astype(np.float32)
    cand = rng.choice(n, 80, replace=False)
    got = st.gallery_order(cand, sort=sort, error_rate=er, score=score, text=text)
    assert got.tolist() == brute_order(cand.tolist(), sort, er, score, text)
    # without a phrase the "text" order is image order (every image ties); the others ignore it
    got = st.gallery_order(cand, sort=sort, error_rate=er, score=score)
    assert got.tolist() == brute_order(cand.tolist(), sort, er, score)


@pytest.mark.parametrize("sort", st.SORT_KEYS)
@pytest.mark.parametrize("page", [0, 1, 5, 41])
def test_partial_sort_of_early_pages_equals_the_full_order(sort, page):
    rng = np.random.default_rng(page)
    n = 1000
    er = rng.choice([0.0, 0.5, 1.0], n, p=[0.5, 0.3, 0.2])  # heavy ties at the page boundary
    score = np.where(rng.random(n) < 0.3, np.nan, rng.choice([0.2, 0.9], n))
    cand = np.sort(rng.choice(n, 990, replace=False))
    text = np.where(rng.random(n) < 0.2, np.nan, rng.choice([0.1, 0.2, 0.3], n))
    p = st.gallery_page(cand, sort=sort, page=page, error_rate=er, score=score, text=text)
    whole = st.gallery_order(cand, sort=sort, error_rate=er, score=score, text=text)
    assert p.image_idx.tolist() == whole[p.page * st.PER_PAGE:(p.page + 1) * st.PER_PAGE].tolist()


@pytest.mark.parametrize(("total", "page", "want_page", "want_len", "pages"), [
    (0, 0, 0, 0, 1), (10, 0, 0, 10, 1), (24, 1, 0, 24, 1), (25, 1, 1, 1, 2), (100, 9, 4, 4, 5), (100, -2, 0, 24, 5),
])
def test_gallery_paging(total, page, want_page, want_len, pages):
    er = np.linspace(0, 1, 200)
    p = st.gallery_page(np.arange(total), sort="error", page=page, error_rate=er, score=er)
    assert (p.page, len(p.image_idx), p.pages, p.total) == (want_page, want_len, pages, total)
    whole = st.gallery_order(np.arange(total), sort="error", error_rate=er, score=er)
    assert p.image_idx.tolist() == whole[p.page * st.PER_PAGE:(p.page + 1) * st.PER_PAGE].tolist()


# ---------------------------------------------------------------- header numbers vs the engine


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("confidence", [0.0, 0.45, 0.8])
def test_detection_summary_equals_engine_on_subsets(seed, confidence):
    ds = random_detection(seed)
    ev = evaluate(ds, confidence=confidence)
    out = st.image_outcomes(ev.per_image)
    rng = np.random.default_rng(seed)
    subset = np.flatnonzero(rng.random(ds.num_images) < 0.4)
    mask = np.zeros(ds.num_images, bool)
    mask[subset] = True
    pc = ev.outcomes.pred_counts(by="class", images=mask).sum(0, keepdims=True)
    gc = ev.outcomes.gt_counts(by="class", images=mask).sum(0, keepdims=True)
    cols = count_columns(pc, gc)
    rates = rate_columns(cols["tp"], cols["fp"], cols["fn"])
    got = st.detection_summary(out, subset)
    assert (got["tp"], got["fp"], got["fn"]) == (cols["tp"][0], cols["fp"][0], cols["fn"][0])
    for k in ("precision", "recall", "f1"):
        np.testing.assert_equal(got[k], rates[k][0])
    whole = st.detection_summary(out)
    assert {k: whole[k] for k in ("tp", "fp", "fn")} == {k: ev.totals[k] for k in ("tp", "fp", "fn")}
    np.testing.assert_equal(whole["f1"], ev.totals["f1"])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("confidence", [0.0, 0.45, 0.8])
def test_dominant_error_type_is_the_first_largest_count(seed, confidence):
    """Each image's error type is the argmax of its error-type counts (first on ties), -1 with none."""
    ev = evaluate(random_detection(seed), confidence=confidence)
    out = st.image_outcomes(ev.per_image)
    counts = ev.per_image[list(st.ERROR_TYPES)].to_numpy(np.int64)
    want = np.where(counts.max(axis=1) > 0, counts.argmax(axis=1), -1)
    np.testing.assert_array_equal(out.error_type, want)
    assert (out.error_type >= 0).any()
    rng = np.random.default_rng(seed)
    ties = [rng.integers(0, 3, 500) for _ in st.ERROR_TYPES]
    for t in ties:
        t[:5] = 0  # images without errors
    stacked = np.stack(ties, axis=1)
    got = st._dominant_type(ties)
    np.testing.assert_array_equal(got, np.where(stacked.max(axis=1) > 0, stacked.argmax(axis=1), -1))
    assert (got[:5] == -1).all()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("confidence", [0.0, 0.5])
def test_classification_summary_equals_sklearn_on_subsets(seed, confidence):
    from sklearn.metrics import accuracy_score, f1_score

    ds = random_classification(seed)
    ev = evaluate(ds, confidence=confidence)
    out = st.image_outcomes(ev.per_image)
    subset = np.flatnonzero(np.random.default_rng(seed).random(ds.num_images) < 0.5)
    label, pred = ev.arrays["label"][subset], ev.accepted[subset]
    labelled = label >= 0
    label, pred = label[labelled], pred[labelled]
    # A rejected prediction (below the threshold) is a prediction of no class: wrong, never a FP of a class.
    none = 4
    y_pred = np.where(pred >= 0, pred, none)
    present = sorted(set(label.tolist()) | set(pred[pred >= 0].tolist()))
    got = st.classification_summary(out, 4, subset)
    assert got["labelled"] == labelled.sum() and got["accepted"] == int((pred >= 0).sum())
    assert got["accuracy"] == pytest.approx(accuracy_score(label, y_pred), abs=1e-12)
    assert got["coverage"] == pytest.approx((pred >= 0).mean(), abs=1e-12)
    assert got["macro_f1"] == pytest.approx(f1_score(label, y_pred, labels=present, average="macro", zero_division=0),
                                            abs=1e-12)
    whole = st.classification_summary(out, 4)
    assert whole["correct"] == int(ev.per_image["correct"].sum())
    assert whole["accuracy"] == pytest.approx(whole["correct"] / whole["labelled"])
    if whole["accepted"] == whole["labelled"]:  # nothing rejected: the header says what scikit-learn says
        assert whole["accuracy"] == pytest.approx(ev.metrics.accuracy, abs=1e-12)
    else:  # a rejection counts as wrong: never above the accuracy of the accepted images
        assert whole["accuracy"] <= ev.metrics.accuracy + 1e-12


def test_classification_summary_of_empty_selection():
    ds = random_classification(0)
    out = st.image_outcomes(evaluate(ds).per_image)
    got = st.classification_summary(out, 4, np.zeros(0, np.int64))
    assert got["images"] == 0 and np.isnan(got["accuracy"])
    assert classification_metrics(y_true=np.zeros(0), y_pred=np.zeros(0), num_classes=4).n == 0


@pytest.mark.parametrize("task", ["detection", "classification"])
def test_metric_rows_and_header(task):
    rows = metric_rows(task, {"precision": 0.5, "tp": 3, "accuracy": float("nan")}, None, {"AP": 0.25})
    assert all(r[2] in ("–", "whole run", "") for r in rows)
    html = header_html(key="r<1>", task=task, model={"model": "m", "weights": "random", "random": True,
                                                     "fallback_reason": "offline"},
                       num_images=5, unreadable=2, iou=0.5, confidence=0.3, optimal=0.31, run={}, selection={},
                       coco={})
    assert "vx-banner" in html and "offline" in html and "r&lt;1&gt;" in html and "2 unreadable" in html
    # every metric's definition is one hover away
    from vecexplore.app.views.header import DEFINITIONS

    for title, _, _ in rows:
        assert f"title='{DEFINITIONS[title]}'" in html.replace("&#x27;", "'")


# ---------------------------------------------------------------- confusion matrix


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mode", ["raw", "row"])
def test_matrix_cells_and_scope(seed, mode):
    ds = random_detection(seed)
    ev = evaluate(ds, confidence=0.4)
    sel = np.arange(0, ds.num_images, 3)
    assert st.displayed_matrix(ev, None, "selection") is ev.confusion
    assert st.displayed_matrix(ev, sel, "run") is ev.confusion
    cm = st.displayed_matrix(ev, sel, "selection")
    np.testing.assert_array_equal(cm.counts, ev.confusion_of(sel).counts)
    cells = st.matrix_cells(cm, mode)
    n = len(cm.labels)
    np.testing.assert_array_equal(cells["count"].reshape(n, n), cm.counts)
    np.testing.assert_array_equal(cells["row"] * n + cells["col"], np.arange(n * n))
    assert ((cells["shade"] >= 0) & (cells["shade"] <= 1)).all()
    assert cells["error"][-1] and not cells["error"][0]  # background cell is an error, (0, 0) is not
    assert all((t == "") == (c == 0) for t, c in zip(cells["text"], cells["count"], strict=True))
    rows = cm.counts.sum(1) > 0
    np.testing.assert_allclose(cells["fraction"].reshape(n, n)[rows].sum(1), 1.0)


# ---------------------------------------------------------------- colours


@pytest.mark.parametrize("seed", range(3))
def test_colour_values_per_mode_detection(seed):
    ds = random_detection(seed)
    ev = evaluate(ds, confidence=0.5)
    out = st.image_outcomes(ev.per_image)
    n = ds.num_images
    cluster = np.arange(n) % 4 - 1
    gt_class = np.where(np.arange(n) % 5 == 0, -1, np.arange(n) % 4)
    readable = np.arange(n) % 7 != 0
    max_score = np.full(n, -np.inf)
    np.maximum.at(max_score, ds.pred.image_idx, ds.pred.score)
    score = colouring.confidence_at(np.where(np.isinf(max_score), np.nan, max_score), 0.5)
    counted = ev.outcomes.pred_code < 6
    pred_class = colouring.dominant_pred_class(ds.pred.image_idx, ds.pred.class_idx, counted, n, 4)
    from vecexplore.analysis.label_issues import image_scores, label_issues

    issue = image_scores(label_issues(ev), n)
    for mode, _ in colouring.DETECTION_MODES:
        col = colouring.colour_values(mode, outcomes=out, cluster=cluster, gt_class=gt_class, readable=readable,
                                      score=score, class_names=["a", "b", "c", "d"], pred_class=pred_class,
                                      label_issue=issue)
        assert col.values.dtype == np.float32 and col.values.shape == (n,)
        v = col.values[~np.isnan(col.values)]
        if col.categorical:
            assert np.array_equal(v, np.round(v)) and (v >= 0).all() and (v < len(col.factors)).all()
    er = colouring.colour_values("error_rate", outcomes=out, cluster=cluster, gt_class=gt_class, readable=readable,
                                 score=score, class_names="abcd")
    np.testing.assert_array_equal(er.values, ev.per_image["error_rate"].to_numpy(np.float32))
    cl = colouring.colour_values("cluster", outcomes=out, cluster=cluster, gt_class=gt_class, readable=readable,
                                 score=score, class_names="abcd")
    assert np.isnan(cl.values[cluster < 0]).all() and (cl.values[cluster >= 0] == cluster[cluster >= 0]).all()
    et = colouring.colour_values("error_type", outcomes=out, cluster=cluster, gt_class=gt_class, readable=readable,
                                 score=score, class_names="abcd")
    assert ((et.values == 0) == (out.error_type < 0)).all()
    assert (np.isnan(score) == (np.isinf(max_score) | (max_score < 0.5))).all()
    li = colouring.colour_values("label_issue", outcomes=out, cluster=cluster, gt_class=gt_class, readable=readable,
                                 score=score, class_names="abcd", label_issue=issue)
    np.testing.assert_array_equal(li.values, issue.astype(np.float32))
    assert not li.categorical and (li.low, li.high) == (0.0, 1.0)
    with pytest.raises(ValueError, match="label-issue score"):
        colouring.colour_values("label_issue", outcomes=out, cluster=cluster, gt_class=gt_class, readable=readable,
                                score=score, class_names="abcd")


@pytest.mark.parametrize("seed", range(5))
def test_dominant_pred_class_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    img, cls, counted = rng.integers(0, 20, 300), rng.integers(0, 5, 300), rng.random(300) < 0.7
    got = colouring.dominant_pred_class(img, cls, counted, 20, 5)
    for i in range(20):
        counts = np.bincount(cls[(img == i) & counted], minlength=5)
        assert got[i] == (int(np.argmax(counts)) if counts.any() else -1)


@pytest.mark.parametrize("seed", range(3))
def test_packed_outcomes_round_trip(seed):
    ds = random_detection(seed)
    out = st.image_outcomes(evaluate(ds, confidence=0.0).per_image)
    o = colouring.pack_outcomes(out)
    assert o.dtype == np.uint32
    np.testing.assert_array_equal(o & 1023, out.tp)
    np.testing.assert_array_equal((o >> 10) & 1023, out.fp)
    np.testing.assert_array_equal((o >> 20) & 1023, out.fn)
    cls = st.image_outcomes(evaluate(random_classification(seed), confidence=0.5).per_image)
    o = colouring.pack_outcomes(cls)
    np.testing.assert_array_equal((o & 0xFFFF).astype(np.int64) - 1, cls.label)
    np.testing.assert_array_equal((o >> 16).astype(np.int64) - 1, cls.prediction)


def test_classification_correct_colours_and_error_types():
    ds = random_classification(1)
    ev = evaluate(ds, confidence=0.5)
    out = st.image_outcomes(ev.per_image)
    col = colouring.colour_values("correct", outcomes=out, cluster=np.zeros(60, int), gt_class=out.label,
                                  readable=np.ones(60, bool), score=np.zeros(60), class_names="abcd")
    want = np.where(out.label < 0, 3, np.where(out.correct, 0, np.where(out.prediction >= 0, 1, 2)))
    np.testing.assert_array_equal(col.values, want)
    assert ((out.error_type == 0) == ((out.label >= 0) & (out.prediction >= 0) & ~out.correct)).all()


# ---------------------------------------------------------------- clusters, gallery, detail helpers


@pytest.mark.parametrize("seed", range(4))
def test_most_confused_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    cl, g, p = rng.integers(-1, 4, 100), rng.integers(0, 3, 100), rng.integers(0, 3, 100)
    ids = np.arange(4)
    got = most_confused(cl, g, p, ids, ["a", "b", "c"])
    for c in ids:
        pairs = sorted({(gi, pi) for ci, gi, pi in zip(cl, g, p, strict=True) if ci == c})
        if not pairs:
            assert got[c] == ""
            continue
        counts = {(gi, pi): int(((cl == c) & (g == gi) & (p == pi)).sum()) for gi, pi in pairs}
        best = min(pairs, key=lambda k: (-counts[k], k))
        assert got[c] == f"{'abc'[best[0]]} → {'abc'[best[1]]} ({counts[best]})"


@pytest.mark.parametrize("task", ["detection", "classification"])
def test_cluster_rows_rescore_at_the_operating_point(task):
    from vecexplore.mapping.slices import slice_table

    ds = random_detection(2) if task == "detection" else random_classification(2)
    labels = np.arange(ds.num_images) % 3 - (np.arange(ds.num_images) % 7 == 0)
    ev = evaluate(ds, confidence=0.6)
    names = list(ds.categories.names)
    # Without a hierarchy every cluster is its own slice: the rows are slice_table's.
    tab = cluster_rows(ev, labels, run=None, tree=None, class_names=names)
    want = slice_table(ev.per_image, labels, task=task, objects=ev.objects if task == "detection" else None,
                       class_names=names)
    np.testing.assert_array_equal(tab["cluster"], want["cluster"])
    np.testing.assert_allclose(tab["error_rate"], want["error_rate"])
    assert [list(m) for m in tab["members"]] == [[c] for c in want["cluster"]]
    assert tab["label"].tolist() == [str(c) for c in want["cluster"]]
    assert all(t.startswith(f"{e:.2f} [") for t, e in zip(tab["error_text"], tab["error_rate"], strict=True))
    # The GT class histogram is counted per slice, as slice_table counts it from the objects.
    assert tab["classes"].tolist() == want["top_classes"].tolist()


def test_badges_and_tiles():
    ds = random_detection(0)
    out = st.image_outcomes(evaluate(ds, confidence=0.5).per_image)
    texts, frames = badges(out, np.array([0, 1]), ds.categories.names)
    assert texts[0] == f"TP {out.tp[0]} FP {out.fp[0]} FN {out.fn[0]}" and len(frames) == 2
    cls = st.image_outcomes(evaluate(random_classification(0)).per_image)
    texts, _ = badges(cls, np.arange(60), [f"k{k}" for k in range(4)])
    for i, t in enumerate(texts):
        assert t.startswith("✓") == bool(cls.correct[i])
    long_names = ["motorcycle", "bicycle", "truck", "traffic light"]
    texts, _ = badges(cls, np.arange(60), long_names)
    wrong = [t for t in texts if t.startswith("✗")]
    assert wrong and all(len(t) <= 2 + 7 + 1 + 7 for t in wrong)  # "✗ " + name→name, each cut to 7
    assert any("…" in t for t in wrong)
    lay = tile_layout(np.array([200, 100, 0]), np.array([100, 100, 0]), 2)
    np.testing.assert_allclose(lay["w"] / lay["h"], [2.0, 1.0, 1.0])
    assert (lay["w"] <= 0.9).all() and (lay["h"] <= 0.9).all()
    np.testing.assert_allclose(lay["x"], [0.5, 1.5, 0.5])  # two columns: the third tile starts row 2
    assert lay["y"][2] < lay["y"][0] == lay["y"][1]


@pytest.mark.parametrize(("w", "h"), [(605, 210), (925, 350), (1400, 700), (300, 120), (None, None)])
def test_gallery_shape_fits_the_frame_with_two_rows_when_it_can(w, h):
    from vecexplore.app.views.gallery import LAST, MIN_TILE_PX, PITCH

    cols, rows = shape_for(w, h)
    if w is None:
        assert (cols, rows) == (8, 3)
        return
    tile = min(w / cols, h / ((rows - 1) * PITCH + LAST))  # the tile as drawn (square, everything fits)
    assert tile >= MIN_TILE_PX * 0.99 or cols == 3
    assert cols * tile <= w + 1e-9 and ((rows - 1) * PITCH + LAST) * tile <= h + 1e-9
    if h >= (LAST + PITCH) * MIN_TILE_PX:
        assert rows >= 2


def test_detail_labels_never_overlap():
    rng = np.random.default_rng(0)
    boxes = []
    for _ in range(40):
        x, y = rng.uniform(0, 500, 2)
        w, h = rng.uniform(5, 120, 2)
        boxes.append({"left": x, "right": x + w, "top": y, "bottom": y + h, "label": "cat 0.87 · FP loc"[:rng.integers(3, 18)]})
    for ppu in (0.5, 1.0, 3.0):
        spots = place_labels(boxes, ppu)
        rects = []
        for b, sp in zip(boxes, spots, strict=True):
            if not sp["shown"]:
                continue
            w, h = (6.0 * len(b["label"]) + 4) / ppu, 13.0 / ppu
            top = sp["y"] - h if sp["baseline"] == "bottom" else sp["y"]
            rects.append((sp["x"], top, sp["x"] + w, top + h))
        for i, a in enumerate(rects):
            for b in rects[i + 1:]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
        assert sum(sp["shown"] for sp in spots) >= 1


@pytest.mark.parametrize(("w", "h", "fw", "fh"), [(640, 480, 700, 360), (100, 400, 700, 360), (0, 0, 300, 300),
                                                  (1000, 100, 200, 400)])
def test_fit_ranges_show_the_whole_image_undistorted(w, h, fw, fh):
    (x0, x1), (yb, yt) = fit_ranges(w, h, fw, fh)
    ww, hh = (w, h) if w and h else (1, 1)
    assert x0 <= 0 and x1 >= ww and yt <= 0 and yb >= hh  # y points down: bottom > top
    assert (x1 - x0) / fw == pytest.approx((yb - yt) / fh)  # one data unit = same pixels on both axes


def test_cluster_rows_show_merged_siblings_as_one_slice():
    """With the run's hierarchy, two failing siblings are one row ("0+1") and a pick takes both."""
    from _quality_helpers import detection_dataset, run_tables

    from vecexplore.mapping.hierarchy import ClusterTree

    p_find = np.r_[np.full(60, 0.1), np.full(30, 0.97)]
    ds = detection_dataset(5, n_images=90, p_find=p_find, p_flip=0.0, fp_rate=0.0, crowd=0.0,
                           min_objects=2, max_objects=4)
    rng = np.random.default_rng(1)
    brightness = np.r_[rng.uniform(0.0, 0.05, 60), rng.uniform(0.3, 0.9, 30)]  # both siblings dark
    labels = np.repeat([0, 1, 2], 30)
    ev = evaluate(ds)
    tables, ev, _ = run_tables(ds, ev, props={"brightness": brightness}, labels=labels)
    tree = ClusterTree(3, np.array([3, 3, 4, 4, -1]), np.ones(5, np.int64), np.zeros(5))
    tab = cluster_rows(ev, labels, run=tables, tree=tree, class_names=list(ds.categories.names))
    assert sorted(tab["label"]) == ["0+1", "2"] and tab["label"].iloc[0] == "0+1"  # the failing slice first
    assert [list(m) for m in tab["members"]] == [[0, 1], [2]]  # a row's pick takes every member cluster


# ---------------------------------------------------------------- the gallery's explaining boxes


def _boxes_one_by_one(data, evaluation, image_idx, tiles, focus):
    """The explaining boxes by a loop over tiles and boxes: the reference for the vectorised pass."""
    from vecexplore.app.views.gallery import GT_STYLE, PRED_STYLE

    ds, oc, rows = data.dataset, evaluation.outcomes, []
    for t, i in enumerate(image_idx):
        w, h = float(data.images.width[i]), float(data.images.height[i])
        if w <= 0 or h <= 0:
            continue
        x0, y0 = tiles["x"][t] - tiles["w"][t] / 2, tiles["y"][t] + tiles["h"][t] / 2
        sx, sy = tiles["w"][t] / w, tiles["h"][t] / h
        for boxes, codes, style, wanted, cls, dash in (
                (ds.gt, oc.gt_code, GT_STYLE, focus.gt, focus.gt_class, 0),
                (ds.pred, oc.pred_code, PRED_STYLE, focus.pred, focus.pred_class, 1)):
            for r in np.flatnonzero(boxes.image_idx == i):
                if int(codes[r]) not in wanted or (cls is not None and boxes.class_idx[r] != cls):
                    continue
                bx, by, bw, bh = boxes.xywh[r]
                label, colour = style.get(int(codes[r]), ("", "#9aa5b1"))
                rows.append((x0 + bx * sx, x0 + (bx + bw) * sx, y0 - by * sy, y0 - (by + bh) * sy, colour,
                             f"{data.class_names[boxes.class_idx[r]]} · {label}", dash))
    return rows


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("focus", [st.ALL_ERRORS, st.Focus(gt=frozenset({0, 1, 2}), pred=frozenset(range(8))),
                                   st.Focus(pred=frozenset({0, 2}), pred_class=1), st.Focus(gt=frozenset({1}), gt_class=2),
                                   st.Focus()])
def test_explaining_boxes_equal_a_box_by_box_loop(seed, focus):
    from types import SimpleNamespace

    from vecexplore.app.data import ObjectIndex
    from vecexplore.app.views.gallery import explaining_boxes

    ds = random_detection(seed, n_images=40)
    width = ds.images.width.copy()
    width[3] = 0  # an image of unknown size draws no box
    data = SimpleNamespace(task="detection", dataset=ds, class_names=ds.categories.names,
                           images=SimpleNamespace(width=width, height=ds.images.height),
                           gt_index=ObjectIndex.of(ds.gt.image_idx, ds.num_images),
                           pred_index=ObjectIndex.of(ds.pred.image_idx, ds.num_images))
    ev = evaluate(ds, confidence=0.4)
    rng = np.random.default_rng(seed)
    page = rng.permutation(ds.num_images)[:24]
    page = np.concatenate([[3], page[page != 3]])
    tiles = tile_layout(width[page], ds.images.height[page], 6)
    got = explaining_boxes(data, ev, page, tiles, focus)
    want = _boxes_one_by_one(data, ev, page, tiles, focus)
    cols = ("left", "right", "top", "bottom", "colour", "label", "dash")
    assert [tuple(got[c][j] for c in cols) for j in range(len(got["left"]))] == want
    if focus.gt or focus.pred:
        assert want, "the case draws some box"
