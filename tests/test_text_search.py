"""Text search: a phrase through the run's own CLIP text tower ranks its images (13 §4).

The reference is computed here from scratch: the checkpoint loaded again with open_clip,
the phrase tokenised and encoded, the cosine with the run's stored embeddings, and a sort.
Runs with random weights refuse, with the reason, in the API, the CLI and the app.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from vecexplore.errors import ConfigError, WeightsError
from vecexplore.text_search import MAX_PHRASE, TextSearch, check_phrase, hidden_reason, rank

PHRASES = ("at night", "a photo of a dog in fog", "  blurry   photo ")


def _reference(run_dir, ckpt, phrase: str) -> np.ndarray:
    """Cosine of every stored image embedding with the phrase, from open_clip directly (NaN: unreadable)."""
    import open_clip
    import torch
    from conftest import TINY_MODEL

    from vecexplore.store import Run

    model, _, _ = open_clip.create_model_and_transforms(TINY_MODEL, pretrained=str(ckpt))
    model.eval()
    with torch.no_grad():
        t = model.encode_text(open_clip.get_tokenizer(TINY_MODEL)([" ".join(phrase.split())]))[0].numpy()
    run = Run(run_dir)
    x = np.asarray(run.embeddings(), np.float64)
    sim = (x @ t.astype(np.float64)) / (np.linalg.norm(x, axis=1) * np.linalg.norm(t))
    sim[~run.images["readable"].to_numpy(bool)] = np.nan
    return sim


def _want_order(sim: np.ndarray) -> np.ndarray:
    idx = np.flatnonzero(~np.isnan(sim))
    return idx[np.lexsort((idx, -sim[idx]))]


# ---------------------------------------------------------------- pure parts


@pytest.mark.parametrize("seed", range(6))
def test_rank_is_similarity_descending_ties_by_index_nan_never(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    sim = rng.choice(np.linspace(-1, 1, 9), n).astype(np.float32)  # many ties
    sim[rng.random(n) < 0.1] = np.nan
    top = int(rng.integers(1, n + 5))
    np.testing.assert_array_equal(rank(sim, top), _want_order(sim.astype(np.float64))[:top])


@pytest.mark.parametrize("top", [0, -3, 2.5, True, "10", None])
def test_rank_refuses_a_bad_top(top):
    with pytest.raises(ConfigError, match="top must be a positive integer"):
        rank(np.zeros(3), top)


@pytest.mark.parametrize(("phrase", "match"), [
    ("", "empty"), ("   \n\t", "empty"), (None, "must be a string"), (3, "must be a string"),
    ("x" * (MAX_PHRASE + 1), "at most"),
])
def test_a_bad_phrase_is_refused_with_the_reason(phrase, match):
    with pytest.raises(ConfigError, match=match):
        check_phrase(phrase)


def test_a_phrase_is_searched_with_its_whitespace_collapsed():
    assert check_phrase("  in \n fog ") == "in fog"


def test_random_weights_and_an_unrecorded_model_turn_text_search_off():
    assert "random weights" in hidden_reason({"model": "m", "weights_id": "random:0", "weights_kind": "random"})
    assert "random weights" in hidden_reason({"model": "m", "weights_id": "random:0", "random": True})
    assert "does not record" in hidden_reason({})
    assert hidden_reason({"model": "m", "weights_id": "file:abc", "weights_kind": "file", "random": False}) is None


def test_similarity_follows_the_given_encoder_and_skips_unreadable_images(demo_run):
    """With an encoder of its own (no model), the ranking is the cosine with the stored vectors."""
    from vecexplore.store import Run

    run = Run(demo_run[0])
    x = np.asarray(run.embeddings(), np.float64)
    rng = np.random.default_rng(1)
    t = rng.standard_normal(x.shape[1])
    search = TextSearch(run, encode=lambda phrases: (t * len(phrases[0]))[None].astype(np.float32))
    sim = search.similarity("anything")
    want = (x @ t) / (np.linalg.norm(x, axis=1) * np.linalg.norm(t))
    readable = run.images["readable"].to_numpy(bool)
    np.testing.assert_allclose(sim[readable], want[readable], atol=1e-5)
    assert np.isnan(sim[~readable]).all()
    top = search.search("anything", 7)
    np.testing.assert_array_equal(top.image_idx, _want_order(np.where(readable, want, np.nan))[:7])
    assert top.median == pytest.approx(np.median(want[readable]), abs=1e-5)
    assert search.similarity("anything") is sim  # cached
    with pytest.raises(WeightsError, match="dimension"):
        TextSearch(run, encode=lambda p: np.ones((1, 3), np.float32)).similarity("x")


# ---------------------------------------------------------------- a run with loaded weights


@pytest.mark.parametrize("phrase", PHRASES)
def test_the_ranking_is_the_text_towers_cosine_with_the_run(checkpoint_run, phrase):
    from vecexplore.store import Run

    run_dir, ckpt = checkpoint_run
    want = _reference(run_dir, ckpt, phrase)
    search = TextSearch(Run(run_dir))
    assert search.hidden is None
    sim = search.similarity(phrase)
    ok = ~np.isnan(want)
    np.testing.assert_allclose(sim[ok], want[ok], atol=1e-4)
    assert np.isnan(sim[~ok]).all()
    matches = search.search(phrase, 12)
    np.testing.assert_array_equal(matches.image_idx, rank(sim, 12))
    # the top is the reference's top (up to float noise at the cut)
    assert len(set(matches.image_idx[:10]) & set(_want_order(want)[:12])) == 10
    assert np.all(np.diff(matches.similarity) <= 0)


def test_the_api_and_the_cli_select_the_same_images(checkpoint_run, tmp_path, capsys):
    import vecexplore as vx
    from vecexplore.cli import main
    from vecexplore.export import image_paths
    from vecexplore.store import Run

    run_dir, _ = checkpoint_run
    run = Run(run_dir)
    frame = vx.search_text(run_dir, "at night", top=9)
    assert list(frame.columns) == ["rank", "image_idx", "image_id", "file_name", "similarity"]
    assert frame["rank"].tolist() == list(range(1, 10))
    np.testing.assert_array_equal(frame["image_idx"], TextSearch(run).search("at night", 9).image_idx)
    assert frame["image_id"].tolist() == run.images["image_id"].to_numpy()[frame["image_idx"]].tolist()
    out = tmp_path / "night.txt"
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(run_dir), "--text", "at night", "--text-top", "9", "--format", "txt", "--out", str(out)])
    assert exit_info.value.code in (0, None)
    paths = image_paths(run)
    assert sorted(out.read_text().split()) == sorted(paths[i] for i in frame["image_idx"])
    # selectors intersect: the phrase's top 9 within the cluster of the best match
    clusters = run.images["cluster"].to_numpy()
    best = int(clusters[frame["image_idx"][clusters[frame["image_idx"]] >= 0].iloc[0]])
    members = np.flatnonzero(clusters == best)
    want = np.intersect1d(frame["image_idx"], members)
    assert 0 < len(want) < len(members)
    out2 = tmp_path / "night0.txt"
    with pytest.raises(SystemExit):
        main(["export", str(run_dir), "--text", "at night", "--text-top", "9", "--cluster", str(best),
              "--format", "txt", "--out", str(out2)])
    assert sorted(out2.read_text().split()) == sorted(paths[i] for i in want)


def test_a_checkpoint_that_changed_since_the_build_is_refused(checkpoint_run, tmp_path):
    from vecexplore.store import Run

    run_dir, _ = checkpoint_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["model"]["weights_id"] = "file:0000"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match="would not be comparable"):
        TextSearch(Run(copy)).similarity("at night")


# ---------------------------------------------------------------- random weights


def test_random_weights_refuse_in_the_api_and_the_cli(demo_run, tmp_path, capsys):
    import vecexplore as vx
    from vecexplore.cli import main

    with pytest.raises(WeightsError, match="random weights"):
        vx.search_text(demo_run[0], "at night")
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(demo_run[0]), "--text", "at night", "--out", str(tmp_path / "x.txt"), "--format", "txt"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: text search is off: the model has random weights") and "Traceback" not in err
    assert not (tmp_path / "x.txt").exists()


# ---------------------------------------------------------------- the app (a bare document: jobs run at once)


def _page(run_dir):
    from bokeh.document import Document

    from vecexplore.app.data import load_run_data
    from vecexplore.app.document import build_document

    data = load_run_data(run_dir)
    doc = Document()
    session = build_document(doc, data, url_base="/vx/test")
    doc.get_model_by_name("tabs").active = [t.name for t in session.tab_views].index("query")
    return doc, session, data


def test_the_app_selects_the_top_images_shows_them_closest_first_and_colours_by_similarity(checkpoint_run):
    run_dir, ckpt = checkpoint_run
    doc, session, data = _page(run_dir)
    want = _reference(run_dir, ckpt, "at night")
    assert ("text", "Similarity to the phrase") in doc.get_model_by_name("colour-by").options
    assert "text" in [v for v, _ in doc.get_model_by_name("gallery-sort").options]
    doc.get_model_by_name("text-top").value = "25"
    doc.get_model_by_name("text-search").value = "at night"
    sim = data.text_search.similarity("at night")
    top = rank(sim, 25)
    assert session.state.phrase == "at night" and session.state.sort == "text"
    assert session.derived.selection.tolist() == sorted(top.tolist())
    assert "at night" in session.state.pick_how
    assert len(set(top[:20]) & set(_want_order(want)[:25])) == 20
    # the gallery's first page is the ranking, closest first
    per_page = len(session.derived.gallery.image_idx)
    assert per_page > 0
    np.testing.assert_array_equal(session.derived.gallery.image_idx, top[:per_page])
    assert "closest to “at night” first" in doc.get_model_by_name("gallery-caption").text
    message = doc.get_model_by_name("text-search-message").text
    assert message.startswith("The 25 images closest to “at night”") and f"{float(sim[top[0]]):.3f}" in message
    # colour by the similarity: the scatter's colour column is it
    doc.get_model_by_name("colour-by").value = "text"
    c = np.asarray(doc.get_model_by_name("scatter-source").data["c"], np.float64)
    ok = ~np.isnan(sim)
    np.testing.assert_allclose(c[ok], sim[ok], atol=1e-6)
    assert np.isnan(c[~ok]).all()
    # a new phrase recolours and re-ranks
    doc.get_model_by_name("text-search").value = "a blurry photo"
    sim2 = data.text_search.similarity("a blurry photo")
    c2 = np.asarray(doc.get_model_by_name("scatter-source").data["c"], np.float64)
    np.testing.assert_allclose(c2[ok], sim2[ok], atol=1e-6)
    assert session.derived.selection.tolist() == sorted(rank(sim2, 25).tolist())


def test_the_app_says_why_text_search_is_off_with_random_weights(demo_run):
    doc, session, _ = _page(demo_run[0])
    box = doc.get_model_by_name("text-search")
    assert box.disabled and doc.get_model_by_name("text-search-run").disabled
    assert "random weights" in doc.get_model_by_name("text-search-message").text
    assert "text" not in [v for v, _ in doc.get_model_by_name("colour-by").options]
    assert "text" not in [v for v, _ in doc.get_model_by_name("gallery-sort").options]
    box.value = "at night"  # a page that sends it anyway selects nothing
    assert session.derived.selection is None and session.state.phrase == ""


def test_a_failed_search_is_shown_not_raised(checkpoint_run, monkeypatch):
    doc, session, data = _page(checkpoint_run[0])

    def broken(phrase):
        raise WeightsError("weights file not found: /gone.pt")

    monkeypatch.setattr(data.text_search, "similarity", broken)
    doc.get_model_by_name("text-search").value = "at night"
    assert doc.get_model_by_name("text-search-message").text == "Text search failed: weights file not found: /gone.pt"
    assert session.derived.selection is None
