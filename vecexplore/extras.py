"""Optional parts of the install, and the clear error when one is missing.

The core install (``pip install vecexplore``) loads, validates and evaluates
datasets (``check-data``, ``evaluate``) and reads runs (``info``, ``export``),
with no torch. The rest comes in extras:

========  ==================================  =====================================
extra     packages                            needed by
========  ==================================  =====================================
embed     torch, open_clip_torch              ``build``, ``demo`` (CLIP embeddings)
map       umap-learn, pynndescent, hdbscan    ``build``, ``demo`` (map and clusters)
app       bokeh, tornado                      ``serve``, ``demo`` (the web app)
mine      faiss-cpu                           ``mine`` (vector search over a pool)
ray       ray[data]                           ``build --engine ray`` (scaling out)
all       embed, map, app, mine               ``make demo`` installs it
dev       all, ray and the test tools         ``make test`` installs it
========  ==================================  =====================================
"""

from __future__ import annotations

import importlib.util

from vecexplore.errors import ConfigError

#: The import names each extra provides.
EXTRAS: dict[str, tuple[str, ...]] = {
    "embed": ("torch", "open_clip"),
    "map": ("umap", "pynndescent", "hdbscan"),
    "app": ("bokeh", "tornado"),
    "mine": ("faiss",),
    "ray": ("ray",),
}


class MissingExtraError(ConfigError):
    """A command needs packages of an extra that is not installed."""


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(*extras: str, what: str) -> None:
    """Raise :class:`MissingExtraError` unless every package of ``extras`` can be imported.

    Cheap: it looks the modules up without importing them.
    """
    need = [e for e in extras if not all(_installed(m) for m in EXTRAS[e])]
    if need:
        missing = [m for e in need for m in EXTRAS[e] if not _installed(m)]
        raise MissingExtraError(
            f"{what} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed: "
            f"pip install 'vecexplore[{','.join(need)}]' (or 'vecexplore[all]')"
        )
