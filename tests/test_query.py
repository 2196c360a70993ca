"""The selection language (``export --where`` and the app's query box), saved selections and tags.

The language is checked against plain Python evaluated row by row on random
tables (every operator, NaN, strings, lists, tags), and against what it must
refuse: anything that could run code, unknown columns, type mixes.
"""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from vecexplore.errors import ConfigError, RunStoreError
from vecexplore.query import evaluate


def table(seed: int, n: int = 60) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    er = rng.random(n)
    er[rng.random(n) < 0.1] = np.nan
    return {
        "error_rate": er, "fn": rng.integers(0, 5, n), "cluster": rng.integers(-1, 6, n),
        "split": np.array(rng.choice(["train", "val", "test", ""], n), dtype=object),
        "readable": rng.random(n) < 0.9, "brightness": rng.random(n),
    }


EXPRESSIONS = [
    "error_rate > 0.5",
    "error_rate > 0.5 and split == 'val'",
    "fn >= 2 or (brightness < 0.2 and not readable)",
    "cluster in [1, 3, -1]",
    "cluster not in (1, 3)",
    "split != 'test' and split != ''",
    "0.2 < brightness <= 0.7",
    "fn * 2 + 1 > 4",
    "(error_rate > 0.3) & (fn > 0) | ~readable",
    "-fn < -2",
    "fn % 2 == 1",
    "readable == True",
    "readable",
    "split == None",
    "error_rate / 2 > 0.2",
]


def _python(expr: str, row: dict, tags_of: set) -> bool:
    """The same condition, row by row, in plain Python (NaN compares False as numpy does)."""
    env = dict(row)
    env["tags"] = tags_of
    py = expr.replace("split == None", "(split == '' or split is None)")
    value = eval(py, {"__builtins__": {}}, env)
    return bool(value)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_conditions_equal_python_row_by_row(seed, expr):
    cols = table(seed)
    n = len(cols["fn"])
    got = evaluate(expr, cols, n=n)
    assert got.dtype == bool and got.shape == (n,)
    for i in range(n):
        row = {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in cols.items()}
        py_expr = expr.replace("&", " and ").replace("|", " or ").replace("~", " not ")
        assert got[i] == _python(py_expr, row, set()), (expr, i, row)


def test_tags():
    cols = table(0)
    n = len(cols["fn"])
    tags = {"hard": np.array([1, 5, 7]), "night": np.array([5])}
    np.testing.assert_array_equal(np.flatnonzero(evaluate("'hard' in tags", cols, n=n, tags=tags)), [1, 5, 7])
    got = evaluate("'hard' in tags and not 'night' in tags", cols, n=n, tags=tags)
    np.testing.assert_array_equal(np.flatnonzero(got), [1, 7])
    assert not evaluate("'nope' in tags", cols, n=n, tags=tags).any()
    assert evaluate("'nope' not in tags", cols, n=n, tags=tags).all()


@pytest.mark.parametrize(("expr", "message"), [
    ("__import__('os').system('x')", "function call"),
    ("error_rate.__class__", "attribute"),
    ("split[0] == 'v'", "indexing"),
    ("(lambda: 1)()", "function call"),
    ("nope > 1", "unknown column 'nope'"),
    ("split > 3", "cannot compare str with num"),
    ("error_rate", "not a true/false condition"),
    ("error_rate > ", "not a valid condition"),
    ("", "empty condition"),
    ("fn in fn", "needs a list"),
    ("tags", "'name' in tags"),
    ("fn in [fn]", "constants only"),
    ("split + 1 > 2", "arithmetic needs numbers"),
    ("x" * 3000, "longer than"),
    ("{1: 2}", "a dict"),
    ("3 in tags", "tag name in quotes"),
])
def test_what_is_refused(expr, message):
    with pytest.raises(ConfigError, match=message) as err:
        evaluate(expr, table(0), n=60, what="--where")
    if expr:
        assert "columns: brightness, cluster" in str(err.value) or "longer" in str(err.value)


# ---------------------------------------------------------------- selections and tags in a run


@pytest.fixture
def run(demo_run, tmp_path):
    import shutil

    from vecexplore.store import Run

    dst = tmp_path / "run"
    shutil.copytree(demo_run[0], dst, ignore=shutil.ignore_patterns("exports"))
    return Run(dst)


def test_saved_selections_round_trip_and_export_by_name(run, tmp_path):
    from vecexplore.cli import main
    from vecexplore.selections import list_selections, load_selection, save_selection

    idx = np.array([5, 1, 9, 9])
    path = save_selection(run, "night misses", idx, how="cluster 3")
    assert path == run.path / "selections" / "night misses.json"
    data = json.loads(path.read_text())
    assert data["image_ids"] == sorted(run.images["image_id"].to_numpy()[[1, 5, 9]].tolist())
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o044  # readable by others under the default umask
    np.testing.assert_array_equal(load_selection(run, "night misses"), [1, 5, 9])
    assert [s["name"] for s in list_selections(run)] == ["night misses"]
    out = tmp_path / "sel.txt"
    with pytest.raises(SystemExit) as code:
        main(["export", str(run.path), "--selection", "night misses", "--format", "txt", "--out", str(out)])
    assert code.value.code in (0, None)
    assert len(out.read_text().splitlines()) == 3
    with pytest.raises(ConfigError, match=r"no saved selection .other.*saved: night misses"):
        load_selection(run, "other")
    for bad in ("", ".hidden", "a/b", "x" * 65, "..", "a\x00b"):
        with pytest.raises(ConfigError, match="use 1-64"):
            save_selection(run, bad, idx)


def test_a_damaged_selection_is_named(run):
    from vecexplore.selections import list_selections, load_selection, save_selection

    path = save_selection(run, "s", [1, 2])
    path.write_text("{not json")
    with pytest.raises(RunStoreError, match=r"s\.json: unreadable"):
        load_selection(run, "s")
    assert "error" in list_selections(run)[0]
    path.write_text(json.dumps({"name": "s", "image_ids": [10**12]}))
    with pytest.raises(RunStoreError, match="not in this run"):
        load_selection(run, "s")


def test_tags_add_remove_and_query(run, tmp_path):
    import threading

    from vecexplore.cli import main
    from vecexplore.export import select_where
    from vecexplore.selections import load_tags, tag_images

    assert tag_images(run, "hard", [3, 4]) == 2
    assert tag_images(run, "hard", [4, 8]) == 3
    assert tag_images(run, "hard", [3], remove=True) == 2
    np.testing.assert_array_equal(load_tags(run)["hard"], [4, 8])
    np.testing.assert_array_equal(select_where(run, "'hard' in tags"), [4, 8])
    np.testing.assert_array_equal(select_where(run, "'hard' in tags and cluster == cluster"), [4, 8])
    # concurrent taggers lose nothing
    threads = [threading.Thread(target=tag_images, args=(run, "many", [k])) for k in range(20, 40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(load_tags(run)["many"], np.arange(20, 40))
    assert tag_images(run, "hard", [4, 8], remove=True) == 0
    assert "hard" not in load_tags(run)
    out = tmp_path / "w.csv"
    with pytest.raises(SystemExit) as code:
        main(["export", str(run.path), "--where", "'many' in tags and fn >= 0", "--out", str(out)])
    assert code.value.code in (0, None) and len(out.read_text().splitlines()) == 21


def test_where_errors_name_the_columns_on_the_cli(run, capsys):
    from vecexplore.cli import main

    with pytest.raises(SystemExit) as code:
        main(["export", str(run.path), "--where", "open('x').read()", "--out", "/tmp/never.csv"])
    assert code.value.code == 2
    err = capsys.readouterr().err
    assert "error: --where" in err and "function call" in err and "error_rate" in err and "Traceback" not in err
