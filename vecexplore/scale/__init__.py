"""Scaling out: the embed stage and the image scan as Ray Data pipelines.

``vecexplore build --engine ray`` (see :mod:`vecexplore.scale.cluster`). The
default engine is local; importing this package does not import Ray.
"""

from __future__ import annotations

ENGINES: tuple[str, ...] = ("local", "ray")
