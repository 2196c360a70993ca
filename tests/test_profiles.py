"""Failure profiles (``vecexplore.analysis.slicing``): when two sets of images fail alike.

The trait comparison must not be moved by chance: a small set tested on every
property side shows a trait or two by luck, and the missed objects of one image
are not independent draws. Checked against the plain binomial arithmetic on
random counts, and on the cases the merge rule depends on.
"""

from __future__ import annotations

from statistics import NormalDist
from types import SimpleNamespace

import numpy as np
import pytest

from vecexplore.analysis.describe import Trait
from vecexplore.analysis.slicing import Profile, profiles_agree
from vecexplore.rates import wilson_interval


def _profile(traits, *, size=100, mass=None, error="fn_missed", z=1.96):
    mass = 0.6 * size if mass is None else mass
    desc = SimpleNamespace(traits=tuple(traits), confusions=())
    return Profile(None, size, mass, {error: mass, "fp_background": 0.0}, 0.2, lambda _m: desc, trait_z=z)


def _trait(prop, count, total, base=0.1, level="image", side="low"):
    return Trait(prop, level, side, 0.0, count / total, base, count, total)


@pytest.mark.parametrize("seed", range(5))
def test_a_trait_counts_when_its_bound_at_the_family_quantile_beats_the_base(seed):
    rng = np.random.default_rng(seed)
    z = NormalDist().inv_cdf(1 - 0.025 / 28)
    traits, want = [], set()
    for k in range(40):
        total = int(rng.integers(5, 200))
        count = int(rng.integers(0, total + 1))
        base = float(rng.uniform(0.02, 0.3))
        t = _trait(f"p{k}", count, total, base=base)
        traits.append(t)
        if float(wilson_interval(count, total, z=z)[0]) > base:
            want.add((f"p{k}", "image", "low"))
    got = _profile(traits, z=z).traits
    assert got == want
    assert 0 < len(got) < len(traits)


def test_object_traits_count_one_observation_per_image():
    # 35 of 50 missed objects on one side (base 0.3) is a trait if the objects are independent;
    # on 8 images the evidence is that of 8 images (5.6 of 8): a trait at 1.96, not at the
    # family quantile, while an image trait of the same counts stays one.
    z = NormalDist().inv_cdf(1 - 0.025 / 28)
    obj = _trait("relative_area", 35, 50, base=0.3, level="object", side="high")
    img = _trait("brightness", 35, 50, base=0.3)
    assert _profile([obj, img], size=8, z=z).traits == {("brightness", "image", "low")}
    assert ("relative_area", "object", "high") in _profile([obj], size=8, z=1.96).traits
    assert ("relative_area", "object", "high") in _profile([obj], size=60, z=z).traits


def test_part_agrees_when_most_of_its_own_traits_are_shared():
    common = _profile([_trait("brightness", 80, 100), _trait("contrast", 70, 100), _trait("colorfulness", 60, 100)])
    only_shared = _profile([_trait("colorfulness", 30, 40)], size=40, mass=24)
    half = _profile([_trait("colorfulness", 30, 40), _trait("width", 30, 40)], size=40, mass=24)
    other = _profile([_trait("sharpness", 35, 40)], size=40, mass=24)
    plain = _profile([], size=40, mass=24)
    assert profiles_agree(common, only_shared, part=True)
    assert profiles_agree(common, half, part=True)
    assert profiles_agree(common, plain, part=True)  # ordinary images failing the same way
    assert not profiles_agree(common, other, part=True)  # a trait of their own: another failure
    assert not profiles_agree(common, only_shared)  # as equals, one shared trait of three is no majority
    wrong_error = _profile([_trait("colorfulness", 30, 40)], size=40, mass=24, error="fp_background")
    assert not profiles_agree(common, wrong_error, part=True)
