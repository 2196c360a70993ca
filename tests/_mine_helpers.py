"""Unlabeled pools for the ``mine`` tests, rendered like the demo's scenes.

``write_pool(dir, n=..., mode=..., share=..., seed=...)`` renders ``n`` demo
scenes (:func:`vecexplore.demo.scene.sample_scene`): about ``share`` of them in
the planted failure ``mode`` (the same low-level appearance as that mode's images
in a demo run), the rest clean (80 %) or in the other planted modes, each of
them in its own seeded stream, and returns the paths of the mode's images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vecexplore.demo import PLANTED_MODES
from vecexplore.demo.scene import encode_jpeg, render_scene, sample_scene


def write_pool(directory: str | Path, *, n: int, mode: str, share: float = 0.1, seed: int = 0,
               task: str = "detection") -> list[str]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    master = np.random.default_rng([seed, 77])
    others = [m for m in PLANTED_MODES if m != mode]
    n_mode = round(share * n)
    rest = master.choice(["clean", *others], size=n - n_mode, p=[0.8, *[0.2 / len(others)] * len(others)])
    modes = master.permutation(np.concatenate([[mode] * n_mode, rest]))
    wanted = []
    for i, child in enumerate(np.random.SeedSequence([seed, 78]).spawn(n)):
        scene = sample_scene(np.random.default_rng(child), mode=str(modes[i]), task=task)
        path = directory / f"sub{i % 3}" / f"p{i:05d}.jpg"  # nested: the pool folder is searched recursively
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(encode_jpeg(render_scene(scene)))
        if modes[i] == mode:
            wanted.append(str(path.resolve()))
    return wanted


def mode_clusters(run, file_names, *, purity: float = 0.8) -> list[int]:
    """The run's clusters of which at least ``purity`` of the images are in ``file_names``
    (as in planted.json; its ``image_ids`` are 1-based, a classification run's 0-based)."""
    images = run.images
    hit = images["file_name"].isin(set(file_names))
    share = hit.groupby(images["cluster"]).mean()
    return [int(c) for c, s in share.items() if c >= 0 and s >= purity]
