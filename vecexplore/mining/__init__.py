"""``vecexplore mine``: find more images like a failure in an unlabeled pool.

A selection of a run (a failure cluster, a saved selection, a list of images)
and a pool of unlabeled images go in; the pool images that look most like the
selection *and not like the rest of the run* come out, best first, with a
contact sheet. Stages:

1. **pool**: list the pool (:func:`~vecexplore.mining.pool.list_pool`) and embed it
   with the run's own model through the embedding cache
   (:func:`~vecexplore.mining.pool.embed_pool`);
2. **rank**: a weighted kNN vote of the run's images on each pool image, every
   search through FAISS (:mod:`vecexplore.mining.rank`, :mod:`vecexplore.mining.index`);
   a pool too large to search exactly gets an IVF index, built once and kept beside
   the embedding cache (:func:`~vecexplore.mining.pool.pool_index_dir`), keyed by the
   pool's content, so later queries of the same pool load it, and with it the table
   of the run's nearest images of every pool image, which the vote reads
   (:mod:`vecexplore.mining.neighbors`);
3. **write**: the list (txt / csv / label-studio), the contact sheet and the
   unreadable images, atomically (:mod:`vecexplore.mining.write`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vecexplore.errors import ConfigError, InputError
from vecexplore.mining.rank import DEFAULT_NEIGHBORS, Ranking
from vecexplore.mining.write import FORMATS, MineFormat

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MineResult:
    """What one :func:`mine_pool` found and wrote.

    Attributes:
        paths: the top pool images, best first.
        scores: ``(len(paths),) float32``, their scores (see :mod:`vecexplore.mining.rank`).
        files: ``{"out", "sheet"}`` and ``"unreadable"`` when some pool images failed.
        n_pool: images in the pool; ``n_cached`` of them came from the embedding cache,
            ``n_embedded`` were embedded now and ``n_failed`` could not be embedded.
        unreadable: ``(path, reason)`` of each pool image that could not be embedded.
        n_selected: embedded run images in the selection.
    """

    paths: list[str]
    scores: np.ndarray
    files: dict[str, Path]
    n_pool: int
    n_cached: int
    n_embedded: int
    n_failed: int
    n_selected: int
    unreadable: list[tuple[str, str]] = field(default_factory=list, repr=False)
    ranking: Ranking | None = field(default=None, repr=False)


def mine_pool(run, selection: np.ndarray, pool: str | Path, *, k: int, out: str | Path,
              fmt: MineFormat = "txt", neighbors: int = DEFAULT_NEIGHBORS, device: str = "auto",
              batch_size: int | None = None, num_workers: int | None = None,
              cache_dir: str | Path | None = None, force: bool = False, progress: bool = False) -> MineResult:
    """Rank the pool by likeness to ``selection`` (image_idx of ``run``) and write the top ``k``.

    Raises:
        ConfigError: bad ``k``/``fmt``, an empty selection (or one without an embedded
            image, or the whole run), ``out`` exists without ``force``.
        InputError: the pool is missing or empty, or none of its images can be embedded.
        WeightsError: the run's model cannot be loaded.
    """
    from vecexplore.extras import require
    from vecexplore.mining import index
    from vecexplore.mining.neighbors import cached_run_neighbors
    from vecexplore.mining.pool import embed_pool, list_pool, pool_index_dir
    from vecexplore.mining.rank import check_selection, rank_pool
    from vecexplore.mining.write import write_mined

    require("embed", "mine", what="mine")
    out = Path(out)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if k < 1:
        raise ConfigError(f"--k must be >= 1, got {k}")
    if out.exists() and not force:
        raise ConfigError(f"{out}: already exists; pass --force to overwrite")
    selection = np.unique(np.asarray(selection, dtype=np.int64))
    if selection.size == 0:
        raise ConfigError("the selection is empty; nothing to look for")
    readable = run.images["readable"].to_numpy(bool)
    in_selection = np.zeros(len(readable), bool)
    in_selection[selection] = True
    check_selection(in_selection[readable])  # before the pool is embedded
    paths = list_pool(pool)
    emb = embed_pool(run, paths, device=device, batch_size=batch_size, num_workers=num_workers,
                     cache_dir=cache_dir, progress=progress)
    unreadable = [(paths[i], str(emb.error[i])) for i in np.flatnonzero(~emb.ok)]
    ok = np.flatnonzero(emb.ok)
    if ok.size == 0:
        head = "; ".join(f"{p}: {r}" for p, r in unreadable[:3])
        raise InputError(f"none of the {len(paths)} pool images could be embedded ({head}"
                         f"{' …' if len(unreadable) > 3 else ''})", path=pool)
    vectors = np.asarray(run.embeddings())
    pool_vectors = emb.vectors[ok]
    model_key = emb.model_info["cache_key"]
    digests = [str(d) for d in emb.digests[ok]]
    index_dir = pool_index_dir(cache_dir, model_key)
    pool_index = index.cached_index(pool_vectors, directory=index_dir, model_key=model_key, digests=digests,
                                    exact_limit=index.EXACT_LIMIT, progress=progress)
    run_vectors = vectors[readable]
    table = None
    if pool_index.kind == "ivf":  # a large pool: the vote's neighbours are worth keeping too
        table = cached_run_neighbors(pool_vectors, run_vectors, neighbors, pool_digests=digests,
                                     directory=index_dir, model_key=model_key, progress=progress)
    ranking = rank_pool(run_vectors, in_selection[readable], pool_vectors, top=k, neighbors=neighbors,
                        pool_index=pool_index, run_neighbors=table)
    top_paths = [paths[i] for i in ok[ranking.pool_idx]]
    files = write_mined(out, top_paths, ranking.score, fmt=fmt, unreadable=unreadable)
    return MineResult(
        paths=top_paths, scores=ranking.score, files=files, n_pool=len(paths), n_cached=emb.stats.n_cached,
        n_embedded=emb.stats.n_embedded, n_failed=emb.stats.n_failed, n_selected=int(in_selection[readable].sum()),
        unreadable=unreadable, ranking=ranking,
    )


__all__ = ["MineResult", "mine_pool"]
