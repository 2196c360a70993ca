"""The curated Python API (``import vecexplore as vx``) and the install's extras.

- ``vx.load_dataset / evaluate / build / open_run / serve`` work end to end and
  importing them pulls in nothing heavy;
- pyproject.toml declares exactly the packages the code imports;
- with the extras missing, evaluating still works and the commands that need
  them say which extra to install (exit 2, no traceback).
"""

from __future__ import annotations

import ast
import contextlib
import importlib.metadata
import io
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "open_clip", "umap", "hdbscan", "bokeh", "pynndescent")


def _run_py(code: str, *, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=check, cwd=ROOT)


def _heavy_modules_line(body: str) -> list[str]:
    code = (f"import sys\n{body}\n"
            f"print('HEAVY=' + ','.join(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))")
    out = _run_py(code).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("HEAVY=")][-1]
    return [m for m in line.removeprefix("HEAVY=").split(",") if m]


# ---------------------------------------------------------------- the API


def test_api_names_are_lazy_and_light():
    body = ("import vecexplore as vx\n"
            "fs = [vx.load_dataset, vx.evaluate, vx.build, vx.open_run, vx.serve]\n"
            "assert all(callable(f) for f in fs)\n"
            "assert {'load_dataset', 'serve'} <= set(dir(vx))")
    assert _heavy_modules_line(body) == []


def test_unknown_attribute_is_an_attribute_error():
    import vecexplore as vx

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        vx.nope  # noqa: B018


def _write_coco(root: Path, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "file_name": f"{i}.jpg", "width": 200, "height": 160} for i in range(30)]
    anns, preds = [], []
    for img in images:
        for _ in range(int(rng.integers(0, 4))):
            x, y = rng.uniform(0, 150), rng.uniform(0, 110)
            w, h = rng.uniform(5, 50), rng.uniform(5, 50)
            cat = int(rng.integers(1, 4))
            anns.append({"id": len(anns) + 1, "image_id": img["id"], "category_id": cat,
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
            if rng.random() < 0.8:
                preds.append({"image_id": img["id"], "category_id": cat, "score": float(rng.random()),
                              "bbox": [x + rng.normal(0, 3), y + rng.normal(0, 3), w, h]})
        preds.append({"image_id": img["id"], "category_id": int(rng.integers(1, 4)), "score": float(rng.random()),
                      "bbox": [rng.uniform(0, 150), rng.uniform(0, 110), 20.0, 20.0]})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]}
    gt_path, pred_path = root / "gt.json", root / "pred.json"
    gt_path.write_text(json.dumps(gt))
    pred_path.write_text(json.dumps(preds))
    return gt_path, pred_path


@pytest.mark.parametrize("seed", [0, 1])
def test_load_and_evaluate_equal_the_modules_and_pycocotools(tmp_path, seed):
    import vecexplore as vx
    from vecexplore.eval.evaluate import evaluate
    from vecexplore.io.source import DatasetSource, load_dataset

    gt, pred = _write_coco(tmp_path, seed)
    ds = vx.load_dataset(gt=gt, pred=pred, check_images=False)
    same = load_dataset(DatasetSource(gt=gt, pred=pred), check_images=False)
    assert ds.images.file_name.tolist() == same.images.file_name.tolist()
    ev = vx.evaluate(ds, iou=0.5)
    np.testing.assert_array_equal(ev.coco.stats, evaluate(same, iou=0.5).coco.stats)
    # a source instead of a dataset is loaded first
    np.testing.assert_array_equal(vx.evaluate(DatasetSource(gt=gt, pred=pred)).coco.stats, ev.coco.stats)

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        g = COCO(str(gt))
        e = COCOeval(g, g.loadRes(str(pred)), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    np.testing.assert_array_equal(ev.coco.stats, np.asarray(e.stats, dtype=float))


def test_load_dataset_refuses_both_forms_and_none(tmp_path):
    import vecexplore as vx
    from vecexplore.errors import ConfigError
    from vecexplore.io.source import DatasetSource

    gt, pred = _write_coco(tmp_path, 0)
    with pytest.raises(ConfigError, match="not both"):
        vx.load_dataset(DatasetSource(gt=gt, pred=pred), gt=gt)
    with pytest.raises(ConfigError, match="no inputs given"):
        vx.load_dataset()
    with pytest.raises(ConfigError, match="at least one run"):
        vx.serve()


def test_build_open_and_serve(tmp_path, umap_warm):
    from conftest import TINY_MODEL

    import vecexplore as vx
    from vecexplore.demo import demo_source, generate_demo

    data = tmp_path / "data"
    generate_demo(data, n=60, seed=3)
    src = demo_source(data)
    run = vx.build(src, out=tmp_path / "run", model=TINY_MODEL, weights="random", device="cpu",
                   workers=0, progress=False)
    assert (run.path / "manifest.json").is_file()
    again = vx.open_run(tmp_path / "run")
    assert again.path == run.path
    assert len(again.images) == 60

    server = vx.serve(run, port=0, block=False)
    try:
        with urllib.request.urlopen(server.url, timeout=30) as resp:
            page = resp.read().decode()
        assert resp.status == 200 and "bokeh" in page.lower()
    finally:
        server.stop()


# ---------------------------------------------------------------- the install


def _declared() -> dict[str, set[str]]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"core": doc["dependencies"], **doc["optional-dependencies"]}

    def name(req: str) -> str:
        for sep in "<>=!~[ ;":
            req = req.split(sep)[0]
        return req.strip().lower().replace("_", "-")

    return {g: {name(r) for r in reqs if not r.startswith("vecexplore")} for g, reqs in groups.items()}


def _imported_distributions() -> dict[str, set[str]]:
    """Distribution → the modules of vecexplore/ that import it (top-level third-party only)."""
    dists = importlib.metadata.packages_distributions()
    found: dict[str, set[str]] = {}
    for path in (ROOT / "vecexplore").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top in sys.stdlib_module_names or top in ("vecexplore", "__future__"):
                    continue
                for dist in dists.get(top, [top]):
                    found.setdefault(dist.lower().replace("_", "-"), set()).add(path.name)
    return found


def test_every_imported_package_is_declared_and_every_declared_one_imported():
    declared = _declared()
    runtime = declared["core"] | declared["embed"] | declared["map"] | declared["app"] | declared["mine"] | declared["ray"]
    imported = _imported_distributions()
    undeclared = {d: sorted(files) for d, files in imported.items() if d not in runtime}
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
    unused = runtime - set(imported)
    assert not unused, f"declared but never imported by vecexplore/: {sorted(unused)}"


def test_the_core_install_has_no_torch_and_the_extras_add_it():
    declared = _declared()
    assert {"torch", "open-clip-torch", "umap-learn", "hdbscan", "bokeh"}.isdisjoint(declared["core"])
    assert {"torch", "open-clip-torch"} <= declared["embed"]
    assert {"umap-learn", "hdbscan"} <= declared["map"]
    assert {"bokeh"} <= declared["app"]
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"faiss-cpu"} <= declared["mine"]
    assert {"ray"} <= declared["ray"] and "vecexplore[ray]" in doc["dev"]  # make test installs it, make demo not
    assert doc["all"] == ["vecexplore[embed,map,app,mine]"]
    assert "'.[all,dev]'" in (ROOT / "Makefile").read_text()


_BLOCK = """
import sys
class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _Blocker())
from vecexplore.cli import main
main({argv!r})
"""


def _cli_without(blocked: tuple[str, ...], argv: list[str]) -> subprocess.CompletedProcess:
    return _run_py(_BLOCK.format(blocked=blocked, argv=argv), check=False)


def test_evaluate_works_without_the_extras(tmp_path):
    gt, pred = _write_coco(tmp_path, 0)
    out = tmp_path / "metrics.json"
    res = _cli_without((*HEAVY, "tornado"), ["evaluate", "--gt", str(gt), "--pred", str(pred), "--json", str(out)])
    assert res.returncode == 0, res.stderr
    assert "AP" in res.stdout
    doc = json.loads(out.read_text())
    assert set(doc["coco"]) >= {"AP", "AP50"}


@pytest.mark.parametrize(("blocked", "argv", "extra"), [
    (("torch",), ["build", "--out", "{tmp}/run", "--gt", "{gt}", "--pred", "{pred}"], "embed"),
    (("umap", "hdbscan"), ["build", "--out", "{tmp}/run", "--gt", "{gt}", "--pred", "{pred}"], "map"),
    (("bokeh",), ["serve", "{tmp}"], "app"),
    (("torch", "bokeh"), ["demo", "--dir", "{tmp}/demo"], "embed,app"),
    (("faiss",), ["mine", "{tmp}", "--cluster", "0", "--pool", "{tmp}", "--k", "1", "--out", "{tmp}/o.txt"], "mine"),
    (("ray",), ["build", "--out", "{tmp}/run", "--gt", "{gt}", "--pred", "{pred}", "--engine", "ray"], "ray"),
])
def test_commands_name_the_missing_extra(tmp_path, blocked, argv, extra):
    gt, pred = _write_coco(tmp_path, 0)
    if argv[0] == "serve":  # a real run is not needed: the check comes before the run is read
        (tmp_path / "manifest.json").write_text("{}")
    argv = [a.format(tmp=tmp_path, gt=gt, pred=pred) for a in argv]
    res = _cli_without(blocked, argv)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    assert f"pip install 'vecexplore[{extra}]'" in res.stderr, res.stderr
    assert not (tmp_path / "run").exists()


def _readme_python_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    return section[section.index("```python\n") + len("```python\n"):section.index("\n```", section.index("```python"))]


def test_the_readme_python_example_runs_as_written(tmp_path, umap_warm):
    code = _readme_python_block()
    assert "import vecexplore as vx" in code and "vx.serve(" in code
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "'AP'" in res.stdout and "open http://127.0.0.1:" in res.stdout
    assert (tmp_path / "runs" / "demo" / "manifest.json").is_file()


def test_vx_build_stays_the_function_after_the_builder_is_imported():
    import vecexplore as vx
    import vecexplore.builder

    assert callable(vx.build) and vx.build.__module__ == "vecexplore.api"
    assert all(getattr(vx, name).__module__ == "vecexplore.api" for name in vx._API)
