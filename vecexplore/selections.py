"""Named selections and tags, stored in the run so that the app, the CLI and a notebook share them.

Layout::

    RUN/selections/<name>.json   {"name", "image_ids": [...], "how", "created", "format": 1}
    RUN/tags/<tag>.json          {"tag", "image_ids": [...], "updated", "format": 1}

Both hold image ids (the user's, not positions), sorted, so a file stays
meaningful if it is read by other tools. Every write is atomic (temp file +
rename) and, for tags, a read-modify-write under an exclusive lock on
``RUN/tags/.lock``, so two browser sessions tagging at once lose nothing. Names
are plain: letters, digits, ``._-`` and spaces, 1-64 characters, not starting
with a dot. A damaged file is reported by name (:class:`RunStoreError`) when it
is used; it never stops a run from opening.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from vecexplore.atomic import atomic_write_json
from vecexplore.errors import ConfigError, RunStoreError
from vecexplore.store.layout import SELECTIONS, TAGS

FORMAT = 1
_NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9 ._-]{0,63}")


def check_name(name: str, *, what: str = "selection") -> str:
    """``name`` stripped, or ConfigError if it is not a plain name (see the module docstring)."""
    name = (name or "").strip()
    if not _NAME_RE.fullmatch(name) or name.endswith("."):
        raise ConfigError(f"{what} name {name!r}: use 1-64 letters, digits, spaces, '.', '_' or '-', not starting "
                          "with a dot")
    return name


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _ids_to_idx(run, ids, path: Path) -> np.ndarray:
    """Sorted image_idx of user image ``ids``; RunStoreError naming ``path`` if one is not in the run."""
    all_ids = run.images["image_id"].to_numpy(np.int64)
    order = np.argsort(all_ids, kind="stable")
    sorted_ids = all_ids[order]
    ids = np.asarray(ids, dtype=np.int64)
    pos = np.minimum(np.searchsorted(sorted_ids, ids), max(len(sorted_ids) - 1, 0))
    known = (sorted_ids[pos] == ids) if len(sorted_ids) else np.zeros(len(ids), bool)
    if not known.all():
        raise RunStoreError(f"{path}: image ids {ids[~known][:10].tolist()} are not in this run")
    return np.sort(order[pos]).astype(np.int64)


def _read(path: Path, key: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunStoreError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("image_ids"), list) or key not in data:
        raise RunStoreError(f"{path}: not a vecexplore {key} file (needs {key!r} and 'image_ids')")
    if not all(isinstance(i, int) and not isinstance(i, bool) and -(2**63) <= i < 2**63 for i in data["image_ids"]):
        raise RunStoreError(f"{path}: image_ids must be integers")
    return data


# ---------------------------------------------------------------- saved selections


def save_selection(run, name: str, image_idx, *, how: str = "", overwrite: bool = True) -> Path:
    """Write ``image_idx`` (of ``run``) as ``RUN/selections/<name>.json``; returns the path."""
    name = check_name(name)
    path = Path(run.path) / SELECTIONS / f"{name}.json"
    if path.exists() and not overwrite:
        raise ConfigError(f"{path}: a selection named {name!r} exists")
    idx = np.unique(np.asarray(image_idx, np.int64))
    ids = run.images["image_id"].to_numpy(np.int64)[idx]
    atomic_write_json(path, {"format": FORMAT, "name": name, "image_ids": sorted(int(i) for i in ids), "how": how,
                             "created": _now()})
    return path


def list_selections(run) -> list[dict]:
    """Every saved selection: ``{"name", "images", "how", "created"}``, by name; a damaged file is
    listed with ``"error"`` instead of being skipped silently."""
    folder = Path(run.path) / SELECTIONS
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = _read(path, "name")
            out.append({"name": path.stem, "images": len(data["image_ids"]), "how": str(data.get("how", "")),
                        "created": str(data.get("created", ""))})
        except RunStoreError as exc:
            out.append({"name": path.stem, "images": 0, "how": "", "created": "", "error": str(exc)})
    return out


def load_selection(run, name: str) -> np.ndarray:
    """The sorted image_idx of the saved selection ``name``.

    Raises:
        ConfigError: no such selection (the message lists the saved ones).
        RunStoreError: the file is damaged or names images the run lacks.
    """
    name = check_name(name)
    path = Path(run.path) / SELECTIONS / f"{name}.json"
    if not path.is_file():
        have = ", ".join(s["name"] for s in list_selections(run)) or "none"
        raise ConfigError(f"no saved selection {name!r} in {run.path} (saved: {have})")
    return _ids_to_idx(run, _read(path, "name")["image_ids"], path)


def delete_selection(run, name: str) -> None:
    path = Path(run.path) / SELECTIONS / f"{check_name(name)}.json"
    path.unlink(missing_ok=True)


# ---------------------------------------------------------------- tags


def _tag_lock(run):
    """An exclusive lock on ``RUN/tags/.lock`` (a context manager)."""
    import contextlib
    import fcntl

    @contextlib.contextmanager
    def locked():
        folder = Path(run.path) / TAGS
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return locked()


def tag_images(run, tag: str, image_idx, *, remove: bool = False) -> int:
    """Add (or with ``remove``, take away) ``tag`` on ``image_idx``; returns the images tagged after."""
    tag = check_name(tag, what="tag")
    path = Path(run.path) / TAGS / f"{tag}.json"
    ids = set(run.images["image_id"].to_numpy(np.int64)[np.unique(np.asarray(image_idx, np.int64))].tolist())
    with _tag_lock(run):
        have = set(_read(path, "tag")["image_ids"]) if path.is_file() else set()
        now = (have - ids) if remove else (have | ids)
        if now:
            atomic_write_json(path, {"format": FORMAT, "tag": tag, "image_ids": sorted(now), "updated": _now()})
        else:
            path.unlink(missing_ok=True)
    return len(now)


def load_tags(run) -> dict[str, np.ndarray]:
    """tag → sorted image_idx of every tag of the run (for queries: ``'hard' in tags``).

    Raises:
        RunStoreError: a tag file is damaged (named).
    """
    folder = Path(run.path) / TAGS
    out = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        out[path.stem] = _ids_to_idx(run, _read(path, "tag")["image_ids"], path)
    return out


__all__ = ["check_name", "delete_selection", "list_selections", "load_selection",
           "load_tags", "save_selection", "tag_images"]
