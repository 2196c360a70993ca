"""Text search: rank a run's images by how well CLIP says they match a phrase ("at night", "in fog").

The phrase goes through the run's own text tower (the model and weights the run was
embedded with, loaded once and checked against the manifest:
:func:`vecexplore.mining.pool.load_run_model`), encoded as typed (whitespace collapsed):
CLIP's text tower reads bare phrases and full prompts alike. An image's *similarity* is the cosine of its embedding and the phrase's,
in [-1, 1]; images that could not be decoded (no embedding) get NaN and rank last. The
ranking is by similarity, descending; ties keep image order (stable sort).

With random weights (the manifest's ``model.random``) the text tower's similarities mean
nothing, so the search is refused with the reason (:func:`hidden_reason`), as the words for
clusters are hidden (:mod:`vecexplore.analysis.words`).

Cost: one text forward pass per new phrase (milliseconds once the model is loaded; the
first search pays the model load) and one ``(N, D) · (D,)`` product. The last
:data:`CACHED_PHRASES` phrases' similarity columns are kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from vecexplore.errors import ConfigError, WeightsError

#: Similarity columns kept per searcher (one float32 per image each).
CACHED_PHRASES = 16
#: Longest phrase accepted (CLIP's context is 77 tokens; a phrase is a few words).
MAX_PHRASE = 200


def hidden_reason(model_info: dict) -> str | None:
    """Why text search is off (one line), or None when the run's weights were loaded from a tag or a file."""
    if not model_info.get("model") or not model_info.get("weights_id"):
        return "text search is off: the run's manifest does not record its model; rebuild the run"
    if model_info.get("weights_kind") == "random" or model_info.get("random"):
        return ("text search is off: the model has random weights (not loaded from a pretrained tag or a "
                "checkpoint), so how well an image matches a phrase means nothing")
    return None


def check_phrase(phrase: object) -> str:
    """The phrase, stripped; ConfigError when it is not a non-empty string of at most MAX_PHRASE characters."""
    if not isinstance(phrase, str):
        raise ConfigError(f"text search: the phrase must be a string, got {type(phrase).__name__}")
    text = " ".join(phrase.split())
    if not text:
        raise ConfigError("text search: the phrase is empty; type a few words such as 'at night'")
    if len(text) > MAX_PHRASE:
        raise ConfigError(f"text search: the phrase has {len(text)} characters; at most {MAX_PHRASE} are accepted")
    return text


@dataclass(frozen=True)
class TextMatches:
    """The ``top`` images that match a phrase best, best first.

    Attributes:
        phrase: the phrase as searched (whitespace collapsed).
        image_idx: ``(t,) int64`` run rows.
        similarity: ``(t,) float32`` cosine similarity of each to the phrase.
        median: the median similarity over every embedded image of the run (what "high" is relative to).
    """

    phrase: str
    image_idx: np.ndarray
    similarity: np.ndarray
    median: float


def rank(similarity: np.ndarray, top: int) -> np.ndarray:
    """Indices of the ``top`` highest similarities, highest first (NaN never; ties: lower index first)."""
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ConfigError(f"text search: top must be a positive integer, got {top!r}")
    sim = np.asarray(similarity, np.float64)
    valid = np.flatnonzero(~np.isnan(sim))
    order = valid[np.argsort(-sim[valid], kind="stable")]
    return order[: int(top)].astype(np.int64)


class TextSearch:
    """Phrase → per-image similarity for one run, with the run's model loaded on first use (thread-safe).

    Args:
        run: a :class:`~vecexplore.store.Run`.
        device: where the text tower runs (``auto`` = GPU when there is one).
        encode: ``(phrases) -> (P, D)`` L2-normed text vectors; default: the run's own model
            (tests pass their own to check the ranking without a model).
    """

    def __init__(self, run, *, device: str = "cpu", encode=None):
        self.run = run
        self.device = device
        self.hidden = None if encode is not None else hidden_reason(dict(run.manifest.get("model") or {}))
        self._encode = encode
        self._lock = threading.Lock()
        self._vectors: np.ndarray | None = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def _image_vectors(self) -> np.ndarray:
        if self._vectors is None:
            vectors = np.asarray(self.run.embeddings(), np.float32)
            norms = np.linalg.norm(vectors, axis=1)
            readable = self._readable(len(vectors))
            with np.errstate(invalid="ignore", divide="ignore"):
                unit = vectors / norms[:, None]
            unit[~readable | ~(norms > 0)] = np.nan
            self._vectors = unit
        return self._vectors

    def _readable(self, n: int) -> np.ndarray:
        images = self.run.images
        if "readable" in images:
            readable = images["readable"].to_numpy(bool)
            if len(readable) == n:
                return readable
        return np.ones(n, bool)

    def _encoder(self):
        if self._encode is None:
            from vecexplore.embed.text import encode_prompts
            from vecexplore.mining.pool import load_run_model

            model = load_run_model(self.run, device=self.device, what="the phrase's vector")
            self._encode = lambda phrases: encode_prompts(model, phrases)
        return self._encode

    def similarity(self, phrase: str) -> np.ndarray:
        """``(N,) float32`` cosine similarity of every image to ``phrase`` (NaN: no embedding).

        Raises:
            WeightsError: text search is off for this run (random weights), or its model cannot be loaded.
            ConfigError: a bad phrase.
        """
        text = check_phrase(phrase)
        if self.hidden:
            raise WeightsError(self.hidden)
        with self._lock:
            if text in self._cache:
                self._cache.move_to_end(text)
                return self._cache[text]
            vec = np.asarray(self._encoder()([text]), np.float32)
            images = self._image_vectors()
            if vec.ndim != 2 or vec.shape != (1, images.shape[1]):
                raise WeightsError(f"text search: the text tower gives vectors of shape {vec.shape[1:]}, "
                                   f"the run's images have dimension {images.shape[1]}")
            vec = vec[0] / max(float(np.linalg.norm(vec[0])), 1e-12)
            sim = (images @ vec).astype(np.float32)
            sim.setflags(write=False)
            self._cache[text] = sim
            while len(self._cache) > CACHED_PHRASES:
                self._cache.popitem(last=False)
            return sim

    def search(self, phrase: str, top: int = 100) -> TextMatches:
        """The ``top`` images most similar to ``phrase``, best first."""
        sim = self.similarity(phrase)
        idx = rank(sim, top)
        valid = sim[~np.isnan(sim)]
        median = float(np.median(valid)) if valid.size else float("nan")
        return TextMatches(check_phrase(phrase), idx, sim[idx].astype(np.float32), median)


__all__ = ["CACHED_PHRASES", "MAX_PHRASE", "TextMatches", "TextSearch", "check_phrase", "hidden_reason", "rank"]
