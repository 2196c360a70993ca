"""The built-in synthetic evaluated dataset with planted failure modes.

``generate_demo(out_dir, task=..., n=..., seed=...)`` renders shape scenes,
writes their ground truth and the predictions of a simulated model that fails in
three visually coherent ways (see :data:`PLANTED_MODES`), and names those images
in ``planted.json`` (read it back with :func:`read_planted`).
"""

from __future__ import annotations

from vecexplore.demo.scene import CLASSES, CONFUSED_PAIR, PLANTED_MODES, TEXTURE_FP_CLASS
from vecexplore.demo.write import DemoSummary, demo_source, generate_demo, read_planted

__all__ = [
    "CLASSES",
    "CONFUSED_PAIR",
    "PLANTED_MODES",
    "TEXTURE_FP_CLASS",
    "DemoSummary",
    "demo_source",
    "generate_demo",
    "read_planted",
]
