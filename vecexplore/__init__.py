"""vecexplore: see where your computer-vision model fails.

    import vecexplore as vx
    ds = vx.load_dataset(gt="annotations.json", pred="predictions.json")
    ev = vx.evaluate(ds)
    run = vx.build(gt="annotations.json", pred="predictions.json", out="runs/exp")
    vx.serve(run)
    vx.search_text(run, "at night", top=50)
    vx.mine(run, cluster=3, pool="unlabeled/", k=500, out="collect.txt")

Importing this package is cheap: the seven calls above (see :mod:`vecexplore.api`)
are resolved on first use, and torch, open_clip, umap, hdbscan and bokeh are
imported only by the functions that need them.
"""

from __future__ import annotations

from vecexplore.errors import VecexploreError
from vecexplore.types import Boxes, Categories, Dataset, ImageTable, Labels

__version__ = "0.1.0"

#: The curated API, imported from :mod:`vecexplore.api` on first access.
_API = ("build", "evaluate", "load_dataset", "mine", "open_run", "search_text", "serve")


def __getattr__(name: str):
    if name in _API:
        from vecexplore import api

        return getattr(api, name)
    raise AttributeError(f"module 'vecexplore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))


__all__ = [
    "Boxes",
    "Categories",
    "Dataset",
    "ImageTable",
    "Labels",
    "VecexploreError",
    "__version__",
    "build",
    "evaluate",
    "load_dataset",
    "mine",
    "open_run",
    "search_text",
    "serve",
]
