"""Near-duplicate images and split leakage.

Two images are **near duplicates** when the cosine similarity of their
embeddings (the run's L2-normalised CLIP vectors, so cosine = dot product) is
at least ``threshold`` (default :data:`DEFAULT_THRESHOLD` = 0.95), or when
their files are byte-identical (same content digest; similarity 1 then).
Why 0.95: with CLIP ViT-B/32 a re-encoded, slightly cropped or re-exposed copy
of a photo stays above ~0.95, while two different photos of the same kind of
scene rarely reach it (they sit around 0.7-0.9); lower values start pairing
images that merely look alike, higher ones miss crops. ``--dup-threshold``
changes it.

With random weights (``--weights random``) the embeddings carry no semantics:
distinct images reach 0.99 and more, so no cosine threshold separates copies
from look-alikes. Only byte-identical files are paired then, and every report
says so (:data:`RANDOM_NOTE`).

The search is exact and memory-bounded: the vectors are compared in row blocks
(``block_rows × N`` similarities at a time, never ``N × N``), which is fine to
~100k images. Each image keeps its :data:`MAX_NEIGHBORS` most similar partners
(ties by index), so a burst of copies does not list every pair; the leakage
flags below do not depend on that cap.

**Leakage.** With a train split (``--train-split``, default ``train``), an
image of another split *leaks* when it has a near duplicate in the train split
(exactly, over all train images). :func:`leakage` re-evaluates the non-train
images with and without the leaking ones, with the evaluation the build uses
(COCO metrics for detection, accuracy/F1 for classification), at the build's
operating point.

Stored in the run by the build's analysis stage:

``near_duplicates.parquet`` (:data:`COLUMNS`): one row per pair ``a < b``
(image_idx), most similar first (ties by a, then b): ``image_idx_a``,
``image_idx_b``, ``image_id_a``, ``image_id_b``, ``similarity`` float64,
``exact`` (byte-identical), ``split_a``, ``split_b`` ("" without splits),
``cross_split`` bool.

``leakage.json``: ``{"threshold", "random_weights", "note", "train_split",
"has_train", "eval_splits", "n_eval", "n_leaking", "leaking_image_idx",
"metrics": {"all", "without_leaking"}}`` (the metrics as
:func:`vecexplore.info.headline_metrics`; null without a train split).
"""

from __future__ import annotations

import logging

import numpy as np

from vecexplore.errors import ConfigError, ValidationError
from vecexplore.store.layout import LEAKAGE, NEAR_DUPLICATES, table_file

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.95
DEFAULT_TRAIN_SPLIT = "train"
#: Partners kept per image in the pair table (the most similar ones).
MAX_NEIGHBORS = 10
#: Similarities held at once by the blocked search (float32: 4 bytes each).
BLOCK_ELEMENTS = 1 << 24
COLUMNS = ("image_idx_a", "image_idx_b", "image_id_a", "image_id_b", "similarity", "exact",
           "split_a", "split_b", "cross_split")
RANDOM_NOTE = ("the model has random weights: its embeddings carry no meaning, so only byte-identical "
               "files are paired; near duplicates need trained weights")


def check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not (np.isfinite(t) and 0.0 < t <= 1.0):
        raise ConfigError(f"--dup-threshold must be in (0, 1], got {threshold}")
    return t


def _top_partners(sim: np.ndarray, hit_r: np.ndarray, hit_c: np.ndarray, rows: np.ndarray, k: int):
    """Pairs (row, col, sim) of one block's hits (``sim >= threshold``): each row's ``k`` most similar."""
    if hit_r.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    s = sim[hit_r, hit_c]
    order = np.lexsort((hit_c, -s, hit_r))  # per row: most similar first, ties by column
    hit_r, hit_c, s = hit_r[order], hit_c[order], s[order]
    start = np.searchsorted(hit_r, hit_r, side="left")
    keep = (np.arange(hit_r.size) - start) < k
    return rows[hit_r[keep]], hit_c[keep].astype(np.int64), s[keep].astype(np.float64)


def _block_similarity(v: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(len(rows), N) cosine similarities of one block of rows with every row."""
    return v[rows] @ v.T


def similar_pairs(vectors: np.ndarray, *, threshold: float = DEFAULT_THRESHOLD,
                  usable: np.ndarray | None = None, train: np.ndarray | None = None,
                  max_neighbors: int = MAX_NEIGHBORS, block_rows: int | None = None):
    """Exact blocked search for pairs with cosine ≥ ``threshold``.

    Args:
        vectors: (N, D) float, L2-normalised rows.
        usable: (N,) bool, rows that take part (unreadable images have zero vectors); None = all.
        train: (N,) bool, the train split's rows, for the leak flags; None = no train split.
        max_neighbors: partners kept per image (its most similar; ties by index).
        block_rows: rows compared at once (None: :data:`BLOCK_ELEMENTS` // N).

    Returns:
        ``(a, b, similarity, leaks)``: int64 ``a < b``, float64 similarity, sorted most similar first
        (ties by a, then b); ``leaks`` (N,) bool, a usable non-train row with a partner ≥ threshold
        among the usable train rows (all of them, regardless of ``max_neighbors``).
    """
    threshold = check_threshold(threshold)
    v = np.asarray(vectors, np.float32)
    if v.ndim != 2:
        raise ValidationError(f"near duplicates: vectors must be (N, D), got shape {v.shape}")
    n = len(v)
    usable = np.ones(n, bool) if usable is None else np.asarray(usable, bool)
    train = np.zeros(n, bool) if train is None else np.asarray(train, bool)
    for name, arr in (("usable", usable), ("train", train)):
        if arr.shape != (n,):
            raise ValidationError(f"near duplicates: {name} has shape {arr.shape}, expected ({n},)")
    if max_neighbors < 1:
        raise ConfigError(f"near duplicates: max_neighbors must be ≥ 1, got {max_neighbors}")
    block = max(1, block_rows or BLOCK_ELEMENTS // max(n, 1))
    # Unusable rows compare as 0 with everything: below any threshold (which is > 0).
    v = np.where(usable[:, None], v, np.float32(0))
    leaks = np.zeros(n, bool)
    parts = []
    for lo in range(0, n, block):
        rows = np.arange(lo, min(lo + block, n))
        sim = _block_similarity(v, rows)
        sim[np.arange(len(rows)), rows] = -np.inf  # an image is not its own duplicate
        hit_r, hit_c = np.nonzero(sim >= threshold)
        if hit_r.size:
            leaks[rows[hit_r[train[hit_c]]]] = True
        parts.append(_top_partners(sim, hit_r, hit_c, rows, max_neighbors))
    leaks &= ~train
    a = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    b = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
    s = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0)
    return (*_unique_pairs(a, b, s), leaks)


def _unique_pairs(a, b, s):
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    if lo.size:
        key = lo.astype(np.int64) * (int(hi.max()) + 1) + hi
        _, first = np.unique(key, return_index=True)
        lo, hi, s = lo[first], hi[first], s[first]
    order = np.lexsort((hi, lo, -s))
    return lo[order].astype(np.int64), hi[order].astype(np.int64), s[order].astype(np.float64)


def identical_pairs(digests, *, max_neighbors: int = MAX_NEIGHBORS):
    """Pairs ``a < b`` of images with the same non-empty content digest (each image with at most
    ``max_neighbors`` partners: the first ones by index)."""
    groups: dict[str, list[int]] = {}
    for i, d in enumerate(digests):
        if d:
            groups.setdefault(str(d), []).append(i)
    a, b = [], []
    for members in groups.values():
        for pos, i in enumerate(members):
            for j in members[pos + 1: pos + 1 + max_neighbors]:
                a.append(i)
                b.append(j)
    return np.asarray(a, np.int64), np.asarray(b, np.int64)


def duplicate_table(vectors, *, image_id, split, digests, usable, threshold: float = DEFAULT_THRESHOLD,
                    random_weights: bool = False, train_split: str = DEFAULT_TRAIN_SPLIT,
                    max_neighbors: int = MAX_NEIGHBORS, block_rows: int | None = None):
    """The pair table (:data:`COLUMNS`) and the (N,) leak flags of a run's images.

    ``split`` is (N,) text or None (no splits: every image in split ""); ``digests`` (N,) the content
    digests ("" or None when unreadable). With ``random_weights`` only byte-identical files pair up.
    """
    import pandas as pd

    threshold = check_threshold(threshold)
    n = len(image_id)
    split = np.full(n, "", object) if split is None else np.asarray([str(s) for s in split], object)
    digests = np.asarray(["" if d is None else str(d) for d in digests], object)
    usable = np.asarray(usable, bool)
    train = split == train_split
    exact_a, exact_b = identical_pairs(np.where(usable, digests, ""), max_neighbors=max_neighbors)
    if random_weights:
        a, b, s = _unique_pairs(exact_a, exact_b, np.ones(exact_a.size))
        in_train = {d for d, t, u in zip(digests, train, usable, strict=True) if t and u and d}
        leaks = usable & ~train & np.array([d in in_train for d in digests], bool)
    else:
        a, b, s, leaks = similar_pairs(vectors, threshold=threshold, usable=usable, train=train,
                                       max_neighbors=max_neighbors, block_rows=block_rows)
        # Identical files are duplicates whatever the model says (similarity 1; listed first, kept).
        a, b, s = _unique_pairs(np.concatenate([exact_a, a]), np.concatenate([exact_b, b]),
                                np.concatenate([np.ones(exact_a.size), np.minimum(s, 1.0)]))
        in_train = {d for d, t, u in zip(digests, train, usable, strict=True) if t and u and d}
        leaks |= usable & ~train & np.array([d in in_train for d in digests], bool)
    image_id = np.asarray(image_id, np.int64)
    table = pd.DataFrame({
        "image_idx_a": a, "image_idx_b": b, "image_id_a": image_id[a], "image_id_b": image_id[b],
        "similarity": s, "exact": (digests[a] == digests[b]) & (digests[a] != ""),
        "split_a": split[a].astype(str), "split_b": split[b].astype(str),
    })
    table["cross_split"] = table["split_a"].to_numpy() != table["split_b"].to_numpy()
    return table[list(COLUMNS)], leaks


def leakage(ev, leaks: np.ndarray, *, split, train_split: str = DEFAULT_TRAIN_SPLIT,
            threshold: float = DEFAULT_THRESHOLD, random_weights: bool = False) -> dict:
    """The ``leakage.json`` object (module docstring) of an evaluation and its (N,) leak flags.

    The non-train images are evaluated twice with :func:`vecexplore.eval.evaluate.evaluate` at
    ``ev``'s operating point (IoU, IoU type, confidence): all of them, and without the leaking
    ones. Without a train split there is nothing to leak into: ``has_train`` false, metrics null.
    """
    dataset = ev.dataset
    n = dataset.num_images
    leaks = np.asarray(leaks, bool)
    if leaks.shape != (n,):
        raise ValidationError(f"leakage: {leaks.shape[0]} leak flags for {n} images")
    split = np.full(n, "", object) if split is None else np.asarray([str(s) for s in split], object)
    train = split == train_split
    eval_idx = np.flatnonzero(~train)
    kept = np.flatnonzero(~train & ~leaks)
    out = {
        "threshold": float(threshold), "random_weights": bool(random_weights),
        "note": RANDOM_NOTE if random_weights else None, "train_split": train_split,
        "has_train": bool(train.any()), "eval_splits": sorted(set(split[eval_idx].tolist())),
        "n_eval": int(eval_idx.size), "n_leaking": int(leaks.sum()),
        "leaking_image_idx": np.flatnonzero(leaks).tolist(), "metrics": None,
    }
    if train.any():
        every = _headline(ev, eval_idx)
        out["metrics"] = {"all": every, "without_leaking": every if kept.size == eval_idx.size else _headline(ev, kept)}
    return out


def _headline(ev, image_idx: np.ndarray) -> dict | None:
    """Headline metrics of ``ev``'s dataset restricted to ``image_idx``, at ``ev``'s operating point."""
    from vecexplore.eval.evaluate import evaluate
    from vecexplore.info import headline_metrics

    if image_idx.size == 0:
        return None
    sub = ev.dataset.subset(image_idx)
    if ev.task == "detection":
        sub_ev = evaluate(sub, iou=ev.iou, confidence=ev.confidence, iou_type=getattr(ev, "iou_type", None))
    else:
        sub_ev = evaluate(sub, confidence=ev.confidence)
    return {"n_images": int(image_idx.size), **headline_metrics(sub_ev.to_json_dict())}


def of_run(run) -> tuple:
    """``(pairs table, leakage dict)`` of a :class:`~vecexplore.store.Run`: the stored ones, or an
    empty table and None for a run built before near duplicates were stored."""
    import pandas as pd

    if (run.path / table_file(NEAR_DUPLICATES)).exists():
        table = run.table(NEAR_DUPLICATES)
    else:
        table = pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            COLUMNS, ("int64", "int64", "int64", "int64", "float64", "bool", "str", "str", "bool"), strict=True)})
    leak = run.json(LEAKAGE) if (run.path / LEAKAGE).exists() else None
    return table, leak


def summary(table, leak: dict | None, *, image_id, top: int = 10) -> dict:
    """The ``info --json`` blocks ``{"near_duplicates": ..., "leakage": ...}`` of a run's pairs.

    ``near_duplicates``: ``{"threshold", "random_weights", "note", "pairs", "within_split",
    "across_splits", "exact", "top": [{"image_id_a", "image_id_b", "split_a", "split_b",
    "similarity", "exact"}]}``; ``leakage``: ``{"train_split", "eval_splits", "n_eval", "n_leaking",
    "leaking_image_ids", "metrics": {"all", "without_leaking"}}`` (null without a train split).
    Both null for a run built before near duplicates were stored.
    """
    if leak is None:
        return {"near_duplicates": None, "leakage": None}
    cross = table["cross_split"].to_numpy(bool)
    rows = table.head(top)
    dup = {
        "threshold": leak.get("threshold"), "random_weights": bool(leak.get("random_weights")),
        "note": leak.get("note"), "pairs": len(table), "within_split": int((~cross).sum()),
        "across_splits": int(cross.sum()), "exact": int(table["exact"].to_numpy(bool).sum()),
        "top": [{"image_id_a": int(r.image_id_a), "image_id_b": int(r.image_id_b), "split_a": str(r.split_a),
                 "split_b": str(r.split_b), "similarity": float(r.similarity), "exact": bool(r.exact)}
                for r in rows.itertuples(index=False)],
    }
    lk = None
    if leak.get("has_train"):
        ids = np.asarray(image_id, np.int64)
        lk = {"train_split": leak.get("train_split"), "eval_splits": leak.get("eval_splits"),
              "n_eval": leak.get("n_eval"), "n_leaking": leak.get("n_leaking"),
              "leaking_image_ids": ids[np.asarray(leak.get("leaking_image_idx") or [], np.int64)].tolist(),
              "metrics": leak.get("metrics")}
    return {"near_duplicates": dup, "leakage": lk}
