"""Words for clusters: what CLIP's text tower says sets a group of images apart.

Zero-shot over a fixed vocabulary of conditions (:data:`CONDITIONS`: lighting,
weather, blur, viewpoint, scene) and the run's class names ("a photo of a
{class}"). Each image gets, per group, a softmax over that group's prompts of
``logit_scale · cos(image, prompt)`` (CLIP's zero-shot classifier; 100 is
CLIP's trained logit scale). A cluster's score for a phrase is its images' mean
probability minus the mean over all usable images (a lift in probability), so
"at night" describes a cluster only when its images are more often at night
than the run's; the phrases with the highest positive scores describe it
(:data:`TOP_WORDS`, ties by vocabulary order).

With random weights (the manifest's ``model.weights_kind`` is ``random``) the
text tower's words mean nothing: they are not computed, and every place that
would show them says why (:func:`hidden_reason`).

Stored in the run by the build: ``text_embeddings.npy`` (P, D) float32, L2-normed,
one row per entry of the vocabulary, and ``words.json``::

    {"hidden": null | reason, "logit_scale": 100.0,
     "vocabulary": [{"group", "phrase", "prompt"}, ...],            in text_embeddings order
     "clusters": [{"cluster", "members", "words": [{"phrase", "group", "score", "share"}]}]}
"""

from __future__ import annotations

import numpy as np

from vecexplore.errors import ValidationError
from vecexplore.store.layout import WORDS

#: (group, phrase, prompt) of the conditions; the class names join as group "class".
CONDITIONS = (
    ("lighting", "at night", "a photo taken at night"),
    ("lighting", "in bright daylight", "a photo taken in bright daylight"),
    ("lighting", "in low light", "a dark, underexposed photo"),
    ("lighting", "overexposed", "an overexposed, washed-out photo"),
    ("lighting", "backlit", "a backlit photo against the light"),
    ("weather", "in fog", "a photo taken in fog"),
    ("weather", "in rain", "a photo taken in the rain"),
    ("weather", "in snow", "a photo taken in snow"),
    ("weather", "in clear weather", "a photo taken in clear weather"),
    ("blur", "blurry", "a blurry photo"),
    ("blur", "motion-blurred", "a motion-blurred photo"),
    ("blur", "sharp", "a sharp, in-focus photo"),
    ("viewpoint", "close-up", "a close-up photo"),
    ("viewpoint", "from far away", "a photo taken from far away"),
    ("viewpoint", "from above", "a photo taken from above"),
    ("viewpoint", "from a low angle", "a photo taken from a low angle"),
    ("scene", "indoors", "a photo taken indoors"),
    ("scene", "outdoors", "a photo taken outdoors"),
    ("scene", "on a road", "a photo of a road"),
    ("scene", "in a city", "a photo of a city street"),
    ("scene", "in nature", "a photo of nature"),
    ("scene", "on a patterned background", "a photo with a busy, patterned background"),
    ("scene", "cluttered", "a photo of a cluttered scene"),
)
LOGIT_SCALE = 100.0
TOP_WORDS = 3


def vocabulary(class_names) -> list[dict]:
    """The vocabulary of a run: the conditions, then one entry per class (group ``class``)."""
    vocab = [{"group": g, "phrase": p, "prompt": t} for g, p, t in CONDITIONS]
    vocab += [{"group": "class", "phrase": str(c), "prompt": f"a photo of a {c}"} for c in class_names]
    return vocab


def hidden_reason(model_info: dict) -> str | None:
    """Why the words are hidden (one line), or None when the weights were loaded."""
    if model_info.get("weights_kind") == "random" or model_info.get("random"):
        return ("words for clusters are hidden: the model has random weights (not loaded from a pretrained tag "
                "or a checkpoint), so what its text tower says means nothing")
    return None


def zero_shot(image_vectors: np.ndarray, text_vectors: np.ndarray, groups, *,
              logit_scale: float = LOGIT_SCALE) -> np.ndarray:
    """(N, P) per-image probabilities: a softmax over each group's prompts of ``logit_scale · cos``.

    Args:
        image_vectors: (N, D) L2-normed; text_vectors: (P, D) L2-normed; groups: (P,) group names.
    """
    img = np.asarray(image_vectors, np.float64)
    txt = np.asarray(text_vectors, np.float64)
    groups = np.asarray(groups, object)
    if img.ndim != 2 or txt.ndim != 2 or img.shape[1] != txt.shape[1] or len(groups) != len(txt):
        raise ValidationError(f"words: image vectors {img.shape}, text vectors {txt.shape} and {len(groups)} "
                              "groups do not fit together")
    logits = logit_scale * (img @ txt.T)
    probs = np.empty_like(logits)
    for g in dict.fromkeys(groups.tolist()):
        cols = np.flatnonzero(groups == g)
        z = logits[:, cols] - logits[:, cols].max(axis=1, keepdims=True)
        e = np.exp(z)
        probs[:, cols] = e / e.sum(axis=1, keepdims=True)
    return probs


def describe(probs: np.ndarray, mask: np.ndarray, vocab: list[dict], *, usable: np.ndarray | None = None,
             top: int = TOP_WORDS) -> list[dict]:
    """The words of the images in ``mask``: ``[{"phrase", "group", "score", "share"}]``, best first.

    ``score`` = the images' mean probability of the phrase minus the mean over all ``usable`` images;
    ``share`` = their mean probability. Only positive scores; ties by vocabulary order; at most
    ``top``. Empty when ``mask`` holds no usable image.
    """
    usable = np.ones(len(probs), bool) if usable is None else np.asarray(usable, bool)
    inside = np.asarray(mask, bool) & usable
    if not inside.any():
        return []
    share = probs[inside].mean(axis=0)
    score = share - probs[usable].mean(axis=0)
    order = np.lexsort((np.arange(len(score)), -score))
    return [{"phrase": vocab[j]["phrase"], "group": vocab[j]["group"], "score": float(score[j]),
             "share": float(share[j])} for j in order[:top] if score[j] > 0]


def phrase(words: list[dict]) -> str:
    """"at night, in fog, blurry" from :func:`describe`'s list ("" for none)."""
    return ", ".join(w["phrase"] for w in words)


def words_doc(image_vectors, text_vectors, vocab, labels, slices, *, usable, hidden: str | None) -> dict:
    """The ``words.json`` object: the words of each slice (``slices``: (cluster, members) pairs)."""
    doc = {"hidden": hidden, "logit_scale": LOGIT_SCALE, "vocabulary": vocab, "clusters": []}
    if hidden is not None:
        return doc
    probs = zero_shot(image_vectors, text_vectors, [v["group"] for v in vocab])
    labels = np.asarray(labels)
    for cluster, members in slices:
        doc["clusters"].append({"cluster": int(cluster), "members": [int(m) for m in members],
                                "words": describe(probs, np.isin(labels, members), vocab, usable=usable)})
    return doc


def slice_phrases(probs: np.ndarray, vocab: list[dict], labels: np.ndarray, members, *,
                  usable: np.ndarray | None = None) -> list[str]:
    """One phrase per slice (``members``: each slice's cluster ids) from :func:`zero_shot`'s probabilities."""
    labels = np.asarray(labels)
    return [phrase(describe(probs, np.isin(labels, list(m)), vocab, usable=usable)) for m in members]


def of_run(run) -> dict | None:
    """The run's ``words.json`` (None for a run built before words were stored)."""
    return run.json(WORDS) if (run.path / WORDS).exists() else None


def by_cluster(doc: dict | None) -> dict[int, list[dict]]:
    """Slice id → its words, from a ``words.json`` object ({} when hidden or absent)."""
    if not doc or doc.get("hidden"):
        return {}
    return {int(c["cluster"]): list(c.get("words") or []) for c in doc.get("clusters") or []}
