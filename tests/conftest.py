"""Shared pytest fixtures. Keep additions small and additive; module-specific
fixtures belong in their own test modules."""

from __future__ import annotations

import os

import pytest

# Tests never touch the network: make Hugging Face and open_clip fail fast offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def umap_warm():
    """Compile UMAP's numba kernels once per session (tens of seconds the first
    time on a cold cache) by running a tiny map; tests that run UMAP use this."""
    import numpy as np

    from vecexplore.mapping import MapConfig, build_map

    rng = np.random.default_rng(0)
    build_map(rng.normal(size=(60, 16)).astype(np.float32), MapConfig(seed=0))
