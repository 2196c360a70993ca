"""Shared pytest fixtures. Keep additions small and additive; module-specific
fixtures belong in their own test modules."""

from __future__ import annotations

import os

# Tests never touch the network: make Hugging Face and open_clip fail fast offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
