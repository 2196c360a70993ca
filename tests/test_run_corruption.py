"""A damaged run never gives a traceback or a server that answers 500.

Every file of a built run is damaged in every way that fits it (deleted,
emptied, truncated, overwritten with random bytes; JSON made invalid, the wrong
top-level type or given wrong fields; parquet tables losing a column, a row or
a column's type; arrays losing a row, their dtype or their shape). Then
``info``, ``info --json``, ``export`` and the server builder open it and must:

* refuse it with exit 2 and one ``error:`` line naming the damaged file (and
  ``rebuild with --force``), the server refusing before it listens; or
* for an optional file that is absent or empty-but-valid, work as usual; or
* for the thumbnail store, work, with the "unreadable" placeholder (not
  cached) in place of every thumbnail it cannot vouch for.

A few cases run the real entry points in subprocesses (``vecexplore info``,
``vecexplore serve``, ``bokeh serve server --args RUN``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]

JSON_FILES = ("manifest.json", "categories.json", "metrics.json", "analysis.json", "recommendations.json",
              "leakage.json", "words.json")
TABLES = ("images.parquet", "objects.parquet", "clusters.parquet", "cluster_tree.parquet", "label_issues.parquet",
          "near_duplicates.parquet", "object_slices.parquet")
ARRAYS = ("embeddings.npy", "thumbs.npy", "object_embeddings.npy")
OPTIONAL = ("analysis.json", "recommendations.json", "class_scores.npy", "cluster_tree.parquet",
            "label_issues.parquet", "words.json", "object_embeddings.npy", "object_slices.parquet")
THUMBS = ("thumbs.bin", "thumbs.npy")


# ---------------------------------------------------------------- the damage


def _rewrite_json(change):
    def damage(path: Path) -> None:
        doc = json.loads(path.read_text())
        change(doc)
        path.write_text(json.dumps(doc))

    return damage


def _set(*keys_value):
    *keys, value = keys_value

    def change(doc):
        for key in keys[:-1]:
            doc = doc[key]
        doc[keys[-1]] = value

    return change


def _rewrite_table(change):
    def damage(path: Path) -> None:
        change(pd.read_parquet(path)).to_parquet(path, index=False)

    return damage


def _rewrite_array(change):
    def damage(path: Path) -> None:
        array = change(np.load(path))
        with open(path, "wb") as fh:
            np.save(fh, array, allow_pickle=True)

    return damage


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _random(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(max(path.stat().st_size, 64)))


BYTES = {
    "delete": lambda p: p.unlink(),
    "empty": lambda p: p.write_bytes(b""),
    "truncate": _truncate,
    "random": _random,
}
JSON_DOCS = {
    "invalid-json": b'{"oops": [1, 2',
    "[]": b"[]",
    "{}": b"{}",
    "null": b"null",
    "text": b'"a run"',
    "number": b"3",
}
FIELDS = {
    "manifest.json": {
        "counts-list": _rewrite_json(_set("counts", [])),
        "task-unknown": _rewrite_json(_set("task", "segmentation")),
        "schema-2": _rewrite_json(_set("schema_version", 2)),
        "images-count-off": _rewrite_json(lambda d: d["counts"].update(images=d["counts"]["images"] + 1)),
        "iou-text": _rewrite_json(_set("config", "iou", "half")),
        "iou-zero": _rewrite_json(_set("config", "iou", 0)),
        "confidence-above-1": _rewrite_json(_set("config", "confidence", 1.5)),
        "inputs-list": _rewrite_json(_set("inputs", [])),
        "unfinished": _rewrite_json(_set("status", "writing")),
    },
    "categories.json": {
        "entry-without-name": _rewrite_json(lambda d: d[0].pop("name")),
        "duplicate-ids": _rewrite_json(lambda d: d[1].update(id=d[0]["id"])),
        "one-less": _rewrite_json(lambda d: d.pop()),
    },
    "metrics.json": {
        "other-task": _rewrite_json(_set("task", "classification")),
        "coco-list": _rewrite_json(_set("coco", [])),
    },
    "analysis.json": {
        "importance-text": _rewrite_json(_set("importance", "brightness")),
        "operating-point-list": _rewrite_json(_set("operating_point", [0.5])),
    },
    "leakage.json": {
        "threshold-text": _rewrite_json(_set("threshold", "high")),
        "leaking-out-of-range": _rewrite_json(_set("leaking_image_idx", [10**6])),
        "metrics-list": _rewrite_json(_set("metrics", [1, 2])),
        "n-leaking-negative": _rewrite_json(_set("n_leaking", -1)),
    },
    "words.json": {
        "hidden-number": _rewrite_json(_set("hidden", 3)),
        "vocabulary-text": _rewrite_json(_set("vocabulary", "night")),
        "clusters-text": _rewrite_json(_set("clusters", "all")),
    },
    "recommendations.json": {
        "entry-text": _rewrite_json(lambda d: d.__setitem__(0, "look at cluster 2")),
        "image-idx-out-of-range": _rewrite_json(lambda d: d[0]["selection"].update(image_idx=[10**6])),
    },
}
COLUMN_OF = {"images.parquet": "readable", "objects.parquet": "iscrowd", "clusters.parquet": "lift",
             "cluster_tree.parquet": "parent", "label_issues.parquet": "likely", "near_duplicates.parquet": "similarity",
             "object_slices.parquet": "object_idx"}
TYPED_COLUMN_OF = {"object_slices.parquet": "object_idx", "images.parquet": "readable", "objects.parquet": "class_idx", "clusters.parquet": "cluster",
                   "cluster_tree.parquet": "node", "label_issues.parquet": "score"}
TABLE_DAMAGE = {
    "missing-column": lambda name: _rewrite_table(lambda df: df.drop(columns=[COLUMN_OF[name]])),
    "one-row-less": lambda name: _rewrite_table(lambda df: df.iloc[:-1]),
    "column-as-text": lambda name: _rewrite_table(lambda df: df.assign(**{TYPED_COLUMN_OF[name]: "x"})),
}


def _with_pair(**values):
    """near_duplicates.parquet with one more pair (images 0 and 1; the demo runs have none), with ``values``."""
    def change(df):
        row = {"image_idx_a": 0, "image_idx_b": 1, "image_id_a": 1, "image_id_b": 2, "similarity": 0.99,
               "exact": False, "split_a": "val", "split_b": "test", "cross_split": True, **values}
        return pd.concat([df.astype({k: type(v) for k, v in row.items() if k in df}), pd.DataFrame([row])],
                         ignore_index=True)

    return _rewrite_table(change)


#: The demo runs have no near duplicate (random weights: identical files only): damage an added pair.
PAIR_DAMAGE = {
    "missing-column": TABLE_DAMAGE["missing-column"]("near_duplicates.parquet"),
    "column-as-text": _with_pair(image_idx_a="x"),
    "image-idx-out-of-range": _with_pair(image_idx_b=10**6),
    "similarity-above-one": _with_pair(similarity=3.0),
    "one-pair-more": _with_pair(),
}
ARRAY_DAMAGE = {
    "one-row-less": _rewrite_array(lambda a: a[:-1]),
    "integers": _rewrite_array(lambda a: a.astype(np.int64) if a.dtype.kind == "f" else a.astype(np.float64)),
    "flat": _rewrite_array(lambda a: a.ravel()),
    "pickled": _rewrite_array(lambda a: np.array([a], dtype=object)),
}


def _cases(files, tables=(), arrays=()):
    out = []
    for name in files + tables + arrays + ("thumbs.bin",) * ("thumbs.bin" not in files):
        kinds = dict(BYTES)
        if name.endswith(".json"):
            kinds.update({k: (lambda doc: lambda p: p.write_bytes(doc))(v) for k, v in JSON_DOCS.items()})
            kinds.update(FIELDS.get(name, {}))
        elif name == "near_duplicates.parquet":
            kinds.update(PAIR_DAMAGE)
        elif name in tables:
            kinds.update({k: make(name) for k, make in TABLE_DAMAGE.items()})
        elif name in arrays:
            kinds.update(ARRAY_DAMAGE)
        out += [(name, kind, damage) for kind, damage in kinds.items()]
    return out


DETECTION_CASES = _cases(JSON_FILES, TABLES, ARRAYS)
CLASSIFICATION_CASES = [c for c in _cases((), ("images.parquet", "label_issues.parquet"), ("class_scores.npy",))
                        if c[0] != "thumbs.bin"]
CLASSIFICATION_CASES += [
    ("images.parquet", "no-pred_score", _rewrite_table(lambda df: df.drop(columns=["pred_score"]))),
    ("images.parquet", "gt-class-out-of-range", _rewrite_table(lambda df: df.assign(gt_class_idx=99))),
    ("label_issues.parquet", "image-idx-out-of-range", _rewrite_table(lambda df: df.assign(image_idx=10**6))),
]


def expected(name: str, kind: str) -> str:
    """``"ok"`` (works as usual), ``"placeholders"`` (works, thumbnails degrade) or ``"refused"``."""
    if name in THUMBS:
        return "placeholders"
    if name in OPTIONAL and kind == "delete":
        return "ok"
    if (name, kind) in {("analysis.json", "{}"), ("recommendations.json", "[]")}:  # valid, just empty
        return "ok"
    if (name, kind) == ("label_issues.parquet", "one-row-less"):  # a valid table with one suspicion less
        return "ok"
    if (name, kind) == ("object_slices.parquet", "one-row-less"):  # a valid table with one slice less
        return "ok"
    if (name, kind) == ("near_duplicates.parquet", "one-pair-more"):  # a valid table with one more pair
        return "ok"
    return "refused"


# ---------------------------------------------------------------- running the commands


def _cli(argv, capsys) -> tuple[int, str, str]:
    from vecexplore.cli import main

    capsys.readouterr()
    try:
        main(argv)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def _fetch(url: str):
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def _damaged_copy(src: Path, tmp_path: Path, name: str, damage) -> Path:
    run = tmp_path / "run"
    shutil.copytree(src, run)
    damage(run / name)
    return run


def _assert_refused(message: str, name: str) -> None:
    assert "Traceback" not in message
    assert name in message, message
    if name != "manifest.json" or "rebuild" in message:
        assert "rebuild with --force" in message, message


def _check(run: Path, tmp_path: Path, capsys, name: str, kind: str, export_format: str) -> None:
    from vecexplore.app.server import ServerThread, make_server
    from vecexplore.errors import RunStoreError

    outcome = expected(name, kind)
    export = ["export", str(run), "--where", "image_idx >= 0", "--format", export_format,
              "--out", str(tmp_path / f"export.{export_format}")]
    for argv in (["info", str(run)], ["info", str(run), "--json"], export):
        code, out, err = _cli(argv, capsys)
        assert "Traceback" not in err + out
        if outcome == "refused":
            assert code == 2, (argv, out, err)
            assert err.startswith("error: ") and err.count("\n") == 1, err
            _assert_refused(err, name)
        else:
            assert code == 0, (argv, err)
    if outcome == "refused":
        with pytest.raises(RunStoreError) as refused:
            make_server([run], port=0)
        _assert_refused(str(refused.value), name)
        return
    assert json.loads(_cli(["info", str(run), "--json"], capsys)[1])["run"] == str(run)
    server = ServerThread([run])
    try:
        data = server.app.runs[0].get()
        if outcome == "ok" or kind in ("delete", "random"):  # the page itself (~1 s each: not for every case)
            assert _fetch(server.url)[0] == 200
        for idx in (0, data.num_images - 1):
            status, headers, body = _fetch(f"{server.url}vx/{data.key}/thumb/{int(data.images.image_id[idx])}")
            assert status == 200 and body
            if headers["Content-Type"] == "image/jpeg":  # only whole JPEG records are ever served as such
                assert outcome == "ok" or (kind == "truncate" and idx == 0)
                assert body[:2] == b"\xff\xd8" and body[-2:] == b"\xff\xd9"
            else:
                assert outcome == "placeholders", (name, kind, idx)
                assert headers["X-Vecexplore-Unreadable"] == "1" and headers["Cache-Control"] == "no-cache"
    finally:
        server.stop()


@pytest.mark.parametrize(("name", "kind", "damage"), DETECTION_CASES,
                         ids=[f"{n}-{k}" for n, k, _ in DETECTION_CASES])
def test_a_damaged_detection_run(demo_run, tmp_path, capsys, name, kind, damage):
    run = _damaged_copy(demo_run[0], tmp_path, name, damage)
    _check(run, tmp_path, capsys, name, kind, "coco")


@pytest.mark.parametrize(("name", "kind", "damage"), CLASSIFICATION_CASES,
                         ids=[f"{n}-{k}" for n, k, _ in CLASSIFICATION_CASES])
def test_a_damaged_classification_run(demo_run_classification, tmp_path, capsys, name, kind, damage):
    run = _damaged_copy(demo_run_classification[0], tmp_path, name, damage)
    _check(run, tmp_path, capsys, name, kind, "csv")


def test_the_matrix_covers_every_file_of_a_run(demo_run, demo_run_classification):
    """Every file a build writes is damaged by some case (a new file must join the matrix)."""
    damaged = {n for n, _, _ in DETECTION_CASES} | {n for n, _, _ in CLASSIFICATION_CASES}
    written = {p.name for run in (demo_run[0], demo_run_classification[0]) for p in Path(run).iterdir()}
    # exports/ is the app's output (other tests of the session may have made it), never read as the run
    assert written - damaged - {"exports"} == set()


# ---------------------------------------------------------------- the real entry points


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize(("name", "damage"), [
    ("metrics.json", lambda p: p.write_text("{not json")),
    ("manifest.json", lambda p: p.write_text("[]")),
    ("images.parquet", _truncate),
])
def test_the_real_commands_refuse_a_damaged_run(demo_run, tmp_path, name, damage):
    run = _damaged_copy(demo_run[0], tmp_path, name, damage)
    info = subprocess.run([sys.executable, "-m", "vecexplore", "info", str(run)], capture_output=True, text=True)
    assert info.returncode == 2 and info.stdout == ""
    assert info.stderr.startswith(f"error: {run / name}: ") and "rebuild with --force" in info.stderr
    assert "Traceback" not in info.stderr

    port = _free_port()
    serve = subprocess.run([sys.executable, "-m", "vecexplore", "serve", str(run), "--port", str(port)],
                           capture_output=True, text=True, timeout=300)
    assert serve.returncode == 2
    assert "serving" not in serve.stdout and "Traceback" not in serve.stderr
    assert f"error: {run / name}: " in serve.stderr and "rebuild with --force" in serve.stderr
    assert not _listening(port)


def test_bokeh_serve_refuses_a_damaged_run(demo_run, tmp_path):
    """``bokeh serve server --args RUN`` stops with the reason instead of serving 500s."""
    run = _damaged_copy(demo_run[0], tmp_path, "categories.json", lambda p: p.write_text('{"id": 1}'))
    port = _free_port()
    bokeh = Path(sys.executable).parent / "bokeh"
    proc = subprocess.Popen([str(bokeh), "serve", str(REPO / "server"), "--port", str(port), "--args", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert f"error: {run / 'categories.json'}: " in out and "rebuild with --force" in out
    assert "Traceback" not in out


def test_the_real_serve_shows_placeholders_for_a_truncated_thumbnail_store(demo_run, tmp_path):
    run = _damaged_copy(demo_run[0], tmp_path, "thumbs.bin", lambda p: p.write_bytes(b""))
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "vecexplore", "serve", str(run), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"vecexplore: serving {run} at "), proc.stderr.read() if proc.poll() else line
        image_id = json.loads((demo_run[1] / "annotations.json").read_text())["images"][0]["id"]
        deadline = time.monotonic() + 60
        while True:
            try:
                status, headers, body = _fetch(f"http://127.0.0.1:{port}/vx/run/thumb/{image_id}")
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert status == 200 and headers["X-Vecexplore-Unreadable"] == "1"
        assert headers["Cache-Control"] == "no-cache" and headers["Content-Type"] == "image/png" and body
    finally:
        proc.terminate()
        proc.wait(20)
    assert os.path.getsize(run / "thumbs.bin") == 0  # nothing was "repaired" behind the user's back


def test_a_damaged_thumbnail_store_is_a_warning_in_info(demo_run, tmp_path):
    run = _damaged_copy(demo_run[0], tmp_path, "thumbs.bin", _truncate)
    info = subprocess.run([sys.executable, "-m", "vecexplore", "info", str(run)], capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    assert f"{run / 'thumbs.bin'}: " in info.stderr and "placeholders" in info.stderr
    assert "Traceback" not in info.stderr
