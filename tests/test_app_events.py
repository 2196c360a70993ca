"""The app's events and ``reduce``: pure, Bokeh-free.

Selections combine in the four modes exactly like set algebra (checked against
Python sets on random picks), an empty result stays empty, the history walks
back and forward, and the aspects that changed say which views recompute.
"""

from __future__ import annotations

import numpy as np
import pytest

from vecexplore.app import events as ev
from vecexplore.app import state as st

N = 50


def state(**kw) -> st.SessionState:
    return st.SessionState(iou=0.5, confidence=0.3, num_images=N, **kw)


def _set(a) -> set:
    return set() if a is None else set(np.asarray(a).tolist())


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("mode", st.SELECT_MODES)
def test_modes_are_set_algebra(seed, mode):
    rng = np.random.default_rng(seed)
    first = rng.choice(N, rng.integers(0, 20), replace=False)
    second = rng.choice(N, rng.integers(0, 20), replace=False)
    s = ev.reduce(state(), ev.Select(first, "a"))
    s = ev.reduce(s, ev.Select(second, "b", mode=mode))
    a, b = _set(first), _set(second)
    want = {"replace": b, "add": a | b, "intersect": a & b, "subtract": a - b}[mode]
    assert _set(s.pick) == want
    assert s.pick is not None  # even an empty result is a selection of nothing, not "the whole run"
    assert s.pick_how == ("b" if mode == "replace" else f"a {ev.SIGNS[mode]} b")


@pytest.mark.parametrize("mode", st.SELECT_MODES)
def test_modes_without_a_pick(mode):
    images = np.array([3, 1, 4])
    s = ev.reduce(state(select_mode=mode), ev.Select(images, "x"))
    want = set(range(N)) - {1, 3, 4} if mode == "subtract" else {1, 3, 4}
    assert _set(s.pick) == want


def test_the_session_mode_applies_unless_the_event_says_otherwise():
    s = ev.reduce(state(), ev.SetSelectMode("add"))
    s = ev.reduce(s, ev.Select(np.array([1]), "one"))
    s = ev.reduce(s, ev.Select(np.array([2]), "two"))
    assert _set(s.pick) == {1, 2}
    s = ev.reduce(s, ev.Select(np.array([9]), "nine", mode="replace"))
    assert _set(s.pick) == {9}
    with pytest.raises(ValueError):
        ev.reduce(s, ev.SetSelectMode("xor"))


def test_history_walks_back_and_forward_and_forgets_the_future():
    s = state()
    picks = [np.array([i, i + 1]) for i in range(4)]
    for i, p in enumerate(picks):
        s = ev.reduce(s, ev.Select(p, f"p{i}"))
    assert s.history_pos == 4 and len(s.history) == 5  # the initial "nothing" plus four
    s = ev.reduce(ev.reduce(s, ev.Back()), ev.Back())
    assert _set(s.pick) == {1, 2} and s.pick_how == "p1"
    s = ev.reduce(s, ev.Forward())
    assert _set(s.pick) == {2, 3}
    s = ev.reduce(s, ev.Select(np.array([40]), "new"))
    # the future (p3) was dropped: nothing, p0, p1, p2, new
    assert [e.how for e in s.history] == ["", "p0", "p1", "p2", "new"] and ev.reduce(s, ev.Forward()) is s
    for _ in range(10):
        s = ev.reduce(s, ev.Back())
    assert s.pick is None and s.history_pos == 0
    s = ev.reduce(s, ev.Clear())
    assert s.pick is None


def test_history_is_bounded():
    s = state()
    for i in range(st.HISTORY + 20):
        s = ev.reduce(s, ev.Select(np.array([i % N]), str(i)))
    assert len(s.history) == st.HISTORY and s.history_pos == st.HISTORY - 1


def test_marks_follow_the_pick():
    s = ev.reduce(state(), ev.Select(np.array([1]), "cell", marks=(("confusion", 3),)))
    assert s.marked("confusion") == [3]
    s = ev.reduce(s, ev.Select(np.array([2]), "cell", marks=(("confusion", 5),), mode="add"))
    assert s.marked("confusion") == [3, 5]
    s = ev.reduce(s, ev.Select(np.array([2]), "cluster", marks=(("clusters", 7),)))
    assert s.marked("confusion") == [] and s.marked("clusters") == [7]
    s = ev.reduce(s, ev.Back())
    assert s.marked("confusion") == [3, 5]


def test_view_changes_and_their_page_rules():
    s = state(page=3)
    assert ev.reduce(s, ev.SetView.of(sort="confidence_asc")).page == 0
    s2 = ev.reduce(state(page=3, gallery_shape=(8, 3)), ev.SetView.of(gallery_shape=(4, 2)))
    assert s2.page == 3 * 24 // 8  # the first image of the page stays in view
    with pytest.raises(ValueError):
        ev.SetView.of(pick=np.array([1]))


@pytest.mark.parametrize(("event", "aspects"), [
    (ev.SetOperatingPoint(confidence=0.7), {"op"}),
    (ev.SetOperatingPoint(iou=0.75), {"op"}),
    (ev.SetOperatingPoint(confidence=0.3), set()),
    (ev.Select(np.array([1, 2]), "x"), {"selection", "history", "gallery"}),
    (ev.SetFilters(classes=(1,)), {"filters", "selection", "gallery"}),
    (ev.SetView.of(colour="fp"), {"colour"}),
    (ev.SetView.of(matrix_mode="row"), {"matrix"}),
    (ev.OpenImage(4), {"detail"}),
    (ev.ShowTab(2), {"tab"}),
    (ev.SetSelectMode("add"), {"history"}),
])
def test_changed_aspects(event, aspects):
    s = state(page=1)
    assert ev.changed_aspects(s, ev.reduce(s, event)) == aspects


def test_the_operating_point_moves_the_selection_only_under_a_class_filter():
    s = state()
    assert "selection" not in ev.changed_aspects(s, ev.reduce(s, ev.SetOperatingPoint(confidence=0.9)))
    f = ev.reduce(s, ev.SetFilters(classes=(0,)))
    assert "selection" in ev.changed_aspects(f, ev.reduce(f, ev.SetOperatingPoint(confidence=0.9)))


def test_reduce_is_pure():
    s = state()
    e = ev.Select(np.array([5, 1]), "x")
    a, b = ev.reduce(s, e), ev.reduce(s, e)
    assert _set(a.pick) == _set(b.pick) and s.pick is None and len(s.history) == 1
    with pytest.raises(TypeError):
        ev.reduce(s, object())


def test_an_export_is_remembered_with_its_selection():
    s = ev.reduce(state(), ev.Select(np.array([1, 2]), "x"))
    s = ev.reduce(s, ev.Exported("Wrote 2 images", images=s.pick, path="/p", url="/u|p"))
    assert s.export.serial == 1 and s.export.images.tolist() == [1, 2]
    s = ev.reduce(s, ev.Exported("Export failed: disk full", images=s.pick, error=True))
    assert s.export.serial == 2 and s.export.error
