"""Words for clusters (:mod:`vecexplore.analysis.words`): the zero-shot ranking on hand-made
embeddings whose answer is known, hidden words with random weights (and the reason), and a build
with loaded (checkpoint) weights whose words reach the cluster table, recommendations, info and app.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from _info_helpers import info_output as _info
from scipy.special import softmax

from vecexplore.analysis.words import (
    CONDITIONS,
    by_cluster,
    describe,
    hidden_reason,
    phrase,
    vocabulary,
    zero_shot,
)

# ---------------------------------------------------------------- the ranking


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_zero_shot_is_a_softmax_per_group(seed):
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(40, 16))
    txt = rng.normal(size=(9, 16))
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    groups = ["a", "b", "a", "c", "b", "a", "c", "c", "b"]
    probs = zero_shot(img, txt, groups, logit_scale=30.0)
    for g in "abc":
        cols = [j for j, x in enumerate(groups) if x == g]
        np.testing.assert_allclose(probs[:, cols], softmax(30.0 * img @ txt[cols].T, axis=1), rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_cluster_near_a_prompt_is_described_by_it(seed):
    """Text vectors one-hot per vocabulary entry; the cluster's images lean towards entry ``night``
    (and, in the class group, towards its class); the rest lean nowhere in particular."""
    rng = np.random.default_rng(seed)
    vocab = vocabulary(["cat", "dog", "bird"])
    p = len(vocab)
    text = np.eye(p)
    night = [v["phrase"] for v in vocab].index("at night")
    dog = [v["phrase"] for v in vocab].index("dog")
    n, inside = 200, 30 + seed
    img = rng.normal(scale=0.05, size=(n, p))
    img[:inside, night] += 0.2
    img[:inside, dog] += 0.2
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    probs = zero_shot(img, text, [v["group"] for v in vocab])
    mask = np.arange(n) < inside
    words = describe(probs, mask, vocab)
    assert [w["phrase"] for w in words[:2]] == ["at night", "dog"] or [w["phrase"] for w in words[:2]] == ["dog", "at night"]
    assert all(w["score"] > 0 for w in words) and phrase(words).count(",") == len(words) - 1
    # the rest of the run is described by neither
    rest = [w["phrase"] for w in describe(probs, ~mask, vocab)]
    assert "at night" not in rest and "dog" not in rest
    # unusable images count nowhere
    usable = np.ones(n, bool)
    usable[:inside] = False
    assert describe(probs, mask, vocab, usable=usable) == []


def test_the_vocabulary_covers_each_condition_group_and_the_classes():
    vocab = vocabulary(["person", "car"])
    groups = {v["group"] for v in vocab}
    assert groups == {"lighting", "weather", "blur", "viewpoint", "scene", "class"}
    assert [v["phrase"] for v in vocab[len(CONDITIONS):]] == ["person", "car"]


def test_random_weights_hide_the_words_with_a_reason():
    assert "random weights" in hidden_reason({"weights_kind": "random", "random": True})
    assert hidden_reason({"weights_kind": "file", "random": False}) is None
    assert hidden_reason({"weights_kind": "pretrained", "random": False}) is None
    assert by_cluster({"hidden": "x", "clusters": [{"cluster": 0, "words": [{"phrase": "p"}]}]}) == {}


# ---------------------------------------------------------------- runs


def test_a_random_weight_run_hides_its_words_and_says_why(demo_run, capsys):
    from vecexplore.app.data import load_run_data
    from vecexplore.store import Run

    run_dir = demo_run[0]
    doc = json.loads((run_dir / "words.json").read_text())
    assert "random weights" in doc["hidden"] and doc["clusters"] == []
    assert not (run_dir / "text_embeddings.npy").exists()
    info = json.loads(_info(run_dir, capsys, "--json"))
    assert info["words"]["hidden"] == doc["hidden"]
    assert all(c["words"] == "" for c in info["clusters"])
    text = _info(run_dir, capsys)
    assert text.count("words for clusters are hidden: the model has random weights") == 1
    assert "looks like" not in text
    assert not any("CLIP describes" in r["evidence"] for r in Run(run_dir).json("recommendations.json"))
    data = load_run_data(run_dir)
    _, session, _ = _page(data)
    view = session.view("clusters")
    assert len(view.source.data["words"]) > 0 and all(w == "" for w in view.source.data["words"])
    assert "random weights" in view.caption.text


def _page(data):
    """A page of ``data`` with the clusters tab open (a tab computes when shown)."""
    from bokeh.document import Document

    from vecexplore.app.document import build_document

    doc = Document()
    session = build_document(doc, data, url_base="/vx/test")
    doc.get_model_by_name("tabs").active = [t.name for t in session.tab_views].index("clusters")
    return doc, session, None


def test_loaded_weights_describe_every_slice_everywhere(checkpoint_run, capsys):
    import open_clip
    import torch
    from conftest import TINY_MODEL

    from vecexplore.analysis.words import describe, zero_shot
    from vecexplore.app.data import load_run_data
    from vecexplore.embed.clip import load_clip
    from vecexplore.store import Run

    run_dir, ckpt = checkpoint_run
    run = Run(run_dir)
    assert run.manifest["model"]["weights_kind"] == "file"
    doc = run.json("words.json")
    assert doc["hidden"] is None and run.words == doc  # the notebook API's run object
    vocab = doc["vocabulary"]
    text = run.array("text_embeddings.npy")
    assert text.shape == (len(vocab), 64)
    # the stored text embeddings are the model's text tower on the prompts
    model = load_clip(TINY_MODEL, str(ckpt))
    with torch.no_grad():
        want = model.model.encode_text(open_clip.get_tokenizer(TINY_MODEL)([vocab[0]["prompt"], vocab[-1]["prompt"]]))
    want = (want / want.norm(dim=-1, keepdim=True)).numpy()
    np.testing.assert_allclose(text[[0, -1]], want, atol=1e-5)
    # the stored words are the ranking of the run's own embeddings
    probs = zero_shot(run.embeddings(), text, [v["group"] for v in vocab])
    labels = run.images["cluster"].to_numpy()
    usable = run.images["readable"].to_numpy(bool)
    clusters = run.clusters
    assert len(doc["clusters"]) == len(clusters) > 0
    for entry in doc["clusters"]:
        assert entry["words"] == describe(probs, np.isin(labels, entry["members"]), vocab, usable=usable)
    assert (clusters["words"] != "").any()
    words_of = {int(e["cluster"]): ", ".join(w["phrase"] for w in e["words"]) for e in doc["clusters"]}
    assert clusters["words"].tolist() == [words_of[int(c)] for c in clusters["cluster"]]
    # info, the recommendations and the app
    info = json.loads(_info(run_dir, capsys, "--json"))
    assert info["words"]["hidden"] is None and [c["words"] for c in info["clusters"]] == clusters["words"].tolist()
    recs = [r for r in info["recommendations"] if r["kind"] == "cluster"]
    for r in recs:
        w = words_of[int(r["numbers"]["cluster"])]
        assert (f"CLIP describes these images as: {w}" in r["evidence"]) == bool(w)
    text_out = _info(run_dir, capsys)
    assert "hidden" not in text_out
    if any(c.get("lift", 0) > 1 for c in info["clusters"]):
        assert "looks like (CLIP)" in text_out
    data = load_run_data(run_dir)
    _, session, _ = _page(data)
    view = session.view("clusters")
    shown = list(view.source.data["words"])
    assert any(shown) and "Note:" not in view.caption.text


def test_damaged_words_are_refused(checkpoint_run, tmp_path):
    from vecexplore.errors import RunStoreError
    from vecexplore.runcheck import open_run

    run_dir, _ = checkpoint_run
    for name, damage in (
        ("text_embeddings.npy", lambda p: np.save(p, np.load(p)[:-1])),
        ("words.json", lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "hidden": 3}))),
        ("words.json", lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "clusters": "x"}))),
        ("text_embeddings.npy", lambda p: p.unlink()),
    ):
        copy = tmp_path / f"run-{name}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(run_dir, copy)
        damage(copy / name)
        with pytest.raises(RunStoreError, match=name):
            open_run(copy)
