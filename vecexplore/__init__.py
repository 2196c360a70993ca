"""vecexplore: see where your computer-vision model fails.

Importing this package is cheap: torch, open_clip, umap, hdbscan and bokeh are
imported only by the functions that need them.
"""

from __future__ import annotations

from vecexplore.errors import VecexploreError
from vecexplore.types import Boxes, Categories, Dataset, ImageTable, Labels

__version__ = "0.1.0"

__all__ = [
    "Boxes",
    "Categories",
    "Dataset",
    "ImageTable",
    "Labels",
    "VecexploreError",
    "__version__",
]
