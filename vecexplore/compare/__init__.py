"""Comparing two models on the same images and ground truth (``vecexplore compare``).

* :mod:`~vecexplore.compare.match`: are the runs on the same data (or how they differ);
* :mod:`~vecexplore.compare.interval`: the paired bootstrap interval on a change of error rate;
* :mod:`~vecexplore.compare.changes`: per-image change and per-slice ranking (pure);
* :mod:`~vecexplore.compare.write`: the comparison run.
"""

from vecexplore.compare.write import compare_runs, is_comparison

__all__ = ["compare_runs", "is_comparison"]
