"""Merging findings (one failure mode, one finding) on hand-built claims.

Images 0..199; the run fails at a base rate of 0.1 per image, except where a case
plants a mode. Each finding is a claim over a population of units (images, or two
objects per image) with exact, not random, errors, so every case is decided by
the rule it checks and nothing else.
"""

from __future__ import annotations

import numpy as np
import pytest

from vecexplore.analysis.findings import (
    Candidate,
    Population,
    RateTest,
    explained_by,
    merge_findings,
    merged_recommendation,
)
from vecexplore.analysis.recbase import Recommendation, sel

N = 200


def rates(**modes) -> np.ndarray:
    """Per-image error rates: 0.1, and ``rate`` on each planted range ``name=(start, stop, rate)``."""
    r = np.full(N, 0.1)
    for start, stop, value in modes.values():
        r[start:stop] = value
    return r


def mask(*ranges) -> np.ndarray:
    m = np.zeros(N, bool)
    for start, stop in ranges:
        m[start:stop] = True
    return m


def image_claim(rate: np.ndarray, images: np.ndarray) -> RateTest:
    pop = Population(np.arange(N), rate)
    return RateTest(pop, np.flatnonzero(images), float(rate.mean()), min_errors=5)


def finding(kind: str, title: str, images: np.ndarray, tests, severity: float) -> Candidate:
    rec = Recommendation(kind, title, "", "", severity, sel(np.flatnonzero(images)))
    return Candidate(rec, images, list(tests))


def titles(out) -> list[tuple[str, list[str]]]:
    return [(c.rec.title, sorted(a.rec.title for a in c.absorbed)) for c in out]


def objects_claim(image_errors: dict[tuple[int, int], float], units_of_class: np.ndarray) -> RateTest:
    """Two objects per image; objects on the images of each range fail at its rate (the rest: never);
    the claim is about the objects in ``units_of_class`` (a class)."""
    image_idx = np.repeat(np.arange(N), 2)
    errors = np.zeros(2 * N)
    for (start, stop), value in image_errors.items():
        on = (image_idx >= start) & (image_idx < stop)
        errors[on] = (np.arange(2 * N)[on] % 10) < value * 10  # exactly `value` of them, spread evenly
    pop = Population(image_idx, errors)
    return RateTest(pop, units_of_class, float(errors.mean()), min_errors=5)


def test_rate_test_holds_inside_and_beyond_the_rest():
    r = rates(dark=(0, 40, 0.8))
    t = image_claim(r, mask((0, 60)))
    assert t.holds() and t.holds(mask((0, 40)))
    assert not t.holds(mask((40, 60)))  # the claim's ordinary images alone are not worse than the run
    assert not t.beyond_rest(~mask((0, 40)))  # outside the mode it is no worse than the other images there
    assert t.beyond_rest(mask((0, 200)))


def test_disjoint_findings_stay_apart():
    r = rates(dark=(0, 40, 0.8), blur=(100, 140, 0.8))
    a = finding("property", "dark", mask((0, 40)), [image_claim(r, mask((0, 40)))], 0.2)
    b = finding("property", "blurry", mask((100, 140)), [image_claim(r, mask((100, 140)))], 0.1)
    assert not explained_by(a, b) and not explained_by(b, a)
    assert titles(merge_findings([a, b], severity=lambda c: c.rec.severity)) == [("dark", []), ("blurry", [])]


def test_findings_over_the_same_images_are_one_with_every_kind_of_evidence():
    r = rates(dark=(0, 40, 0.8))
    cluster = finding("cluster", "cluster 4", mask((0, 42)), [image_claim(r, mask((0, 42)))], 0.12)
    tail = finding("property", "dark", mask((0, 40)), [image_claim(r, mask((0, 40)))], 0.10)
    units = np.arange(0, 2 * N, 2)  # class 0: the first object of every image
    cls = finding("class_fn", "class 0 missed", mask((0, 40)),
                  [objects_claim({(0, 40): 0.8}, units)], 0.05)
    out = merge_findings([cluster, tail, cls], severity=lambda c: c.rec.severity)
    assert len(out) == 1
    rec = merged_recommendation(out[0], max(c.rec.severity for c in (cluster, tail, cls)))
    assert rec.evidence_kinds == ["cluster", "property", "class"] and len(rec.merged) == 2
    assert rec.severity == pytest.approx(0.12)
    assert "merged" in rec.to_json() and all("merged" not in m for m in rec.merged)


def test_a_small_overlap_does_not_make_two_findings_one():
    """F shares 5 images with G; G's errors are elsewhere: neither explains the other."""
    r = rates(dark=(0, 40, 0.8), tint=(60, 120, 0.8))
    f = finding("property", "dark", mask((0, 40)), [image_claim(r, mask((0, 40)))], 0.2)
    g = finding("cluster", "tinted", mask((35, 120)), [image_claim(r, mask((35, 120)))], 0.2)
    assert not explained_by(f, g) and not explained_by(g, f)
    assert len(merge_findings([f, g], severity=lambda c: c.rec.severity)) == 2


def test_a_large_set_with_other_errors_explains_nothing():
    """G contains F's images but G's claim (objects of class 1) fails only outside them."""
    r = rates(dark=(0, 40, 0.8))
    f = finding("property", "dark", mask((0, 40)), [image_claim(r, mask((0, 40)))], 0.2)
    units = np.arange(1, 2 * N, 2)  # class 1: the second object of every image
    g = finding("class_fp", "class 1 false positives", mask((0, 160)),
                [objects_claim({(100, 160): 0.9}, units)], 0.3)
    assert not explained_by(f, g)
    assert len(merge_findings([f, g], severity=lambda c: c.rec.severity)) == 2


def test_a_mixture_goes_into_its_parts_and_never_takes_them():
    """M covers two modes that fail differently; it merges into one of them, both stay."""
    r = rates(dark=(0, 40, 0.8), blur=(100, 140, 0.8))
    a = finding("property", "dark", mask((0, 40)), [image_claim(r, mask((0, 40)))], 0.10)
    b = finding("property", "blurry", mask((100, 140)), [image_claim(r, mask((100, 140)))], 0.09)
    m = finding("property", "low sharpness", mask((0, 40), (100, 140), (150, 160)),
                [image_claim(r, mask((0, 40), (100, 140), (150, 160)))], 0.15)

    def apart(common, extra):  # a profile check: the dark and the blurry images do not fail alike
        return not (common[:40].any() and extra[100:140].any()) and not (common[100:140].any() and extra[:40].any())

    out = merge_findings([a, b, m], severity=lambda c: c.rec.severity, same_failure=apart)
    assert sorted(c.rec.title for c in out) == ["blurry", "dark"]
    assert sum("low sharpness" in [x.rec.title for x in c.absorbed] for c in out) == 1
    # Without the profile check the mixture would have taken a part: the check is what keeps them.
    together = merge_findings([a, b, m], severity=lambda c: c.rec.severity)
    assert len(together) < 2 or "low sharpness" in [c.rec.title for c in together]


def test_a_mixture_goes_to_the_part_most_like_it_not_the_largest():
    """A mixture over the dark and the blurry images goes to the dark finding, which it is most like,
    not to a large finding that holds more of its images only by being large (blur plus many ordinary
    images, e.g. objects of a common shape that are missed in blurry scenes)."""
    r = rates(dark=(0, 40, 0.8), blur=(100, 140, 0.8))
    ranges = {"dark": (0, 40), "blur": (100, 140)}

    def f(kind, title, m, sev):
        return finding(kind, title, m, [image_claim(r, m)], sev)

    dark = f("property", "dark", mask((0, 40)), 0.10)
    blurry = f("property", "blurry", mask((100, 140)), 0.09)
    large = f("property", "wide objects", mask((95, 200)), 0.12)
    mixture = f("property", "low sharpness", mask((0, 40), (95, 140)), 0.20)
    out = merge_findings([mixture, large, dark, blurry], severity=lambda c: c.rec.severity,
                         same_failure=_modes_of(ranges))
    assert sorted(titles(out)) == [("dark", ["low sharpness"]), ("wide objects", ["blurry"])]


def test_the_purer_of_two_descriptions_of_the_same_errors_leads():
    """A tail of the mode's images and a larger set with the same claim plus ordinary images."""
    r = rates(dark=(0, 40, 0.8))
    tail = finding("property", "dark", mask((0, 40)), [image_claim(r, mask((0, 40)))], 0.10)
    wide = finding("cluster", "cluster 2", mask((0, 70)), [image_claim(r, mask((0, 70)))], 0.12)

    def surely_worse_extra(common, extra):
        return r[extra].mean() > 0.5

    out = merge_findings([tail, wide], severity=lambda c: c.rec.severity, same_failure=surely_worse_extra)
    assert titles(out) == [("dark", ["cluster 2"])]


def _modes_of(ranges: dict[str, tuple[int, int]]):
    """A profile check: ``extra`` fails alike when it touches no mode that ``common`` does not."""
    def alike(common, extra):
        touched = {name for name, (a, b) in ranges.items() if extra[a:b].any()}
        return touched <= {name for name, (a, b) in ranges.items() if common[a:b].any()}
    return alike


def test_a_mode_inside_two_mixtures_is_not_taken_by_them():
    """The dark cluster lies in two tails that each mix it with another mode; it stays, they go."""
    r = rates(dark=(0, 50, 0.8), blur=(100, 140, 0.8), tint=(150, 170, 0.8))
    ranges = {"dark": (0, 50), "blur": (100, 140), "tint": (150, 170)}

    def f(kind, title, m, sev):
        return finding(kind, title, m, [image_claim(r, m)], sev)

    dark, blurry, tinted = (f("cluster", "dark", mask((0, 50)), 0.10), f("property", "blurry", mask((100, 140)), 0.09),
                            f("confusion", "tinted", mask((150, 170)), 0.08))
    sharp = f("property", "low sharpness", mask((0, 40), (100, 140)), 0.20)
    contrast = f("property", "low contrast", mask((10, 50), (150, 170)), 0.15)
    out = merge_findings([sharp, contrast, dark, blurry, tinted], severity=lambda c: c.rec.severity,
                         same_failure=_modes_of(ranges))
    assert sorted(c.rec.title for c in out) == ["blurry", "dark", "tinted"]
    carried = [a.rec.title for c in out for a in c.absorbed]
    assert sorted(carried) == ["low contrast", "low sharpness"]


def test_a_few_images_of_another_mode_do_not_keep_a_cluster_apart():
    """A tinted cluster holds four striped images whose false positives are the striped tail's (ranked below)."""
    r = rates(tint=(0, 40, 0.8), stripes=(100, 130, 0.9))
    ranges = {"tint": (0, 40), "stripes": (100, 130)}
    image_idx = np.repeat(np.arange(N), 2)
    cl_images = mask((0, 40), (100, 104))
    confusion = finding("confusion", "tinted", mask((0, 40)), [image_claim(r, mask((0, 40)))], 0.20)
    cluster = finding("cluster", "cluster 1", cl_images,
                      [image_claim(r, cl_images),
                       objects_claim({(0, 40): 0.8, (100, 130): 1.0}, np.flatnonzero(cl_images[image_idx]))], 0.15)
    stripes = finding("property", "striped", mask((100, 130)), [image_claim(r, mask((100, 130)))], 0.10)
    assert not explained_by(cluster, confusion)  # its striped images' errors are beyond the rest outside it
    out = merge_findings([confusion, cluster, stripes], severity=lambda c: c.rec.severity,
                         same_failure=_modes_of(ranges))
    assert titles(out) == [("tinted", ["cluster 1"]), ("striped", [])]


def test_a_covered_finding_goes_to_the_home_whose_claim_holds_on_its_images():
    """A high-contrast tail inside a textured cluster (both false positives) also lies inside a wider
    finding below about small missed objects, which shares more of its images and is not contradicted
    there but claims nothing there: the tail still goes to the cluster (before, the wider finding was
    taken for the better home and the tail stayed a second finding of the texture)."""
    r = rates(texture=(0, 40, 0.8))
    ranges = {"texture": (0, 40)}
    image_idx = np.repeat(np.arange(N), 2)

    def alike(common, extra):  # surely worse images of the same modes
        return r[extra].mean() > 0.5 and _modes_of(ranges)(common, extra)

    def otherwise(common, extra):
        return r[extra].mean() > 0.5 and not _modes_of(ranges)(common, extra)

    cl_images = mask((0, 56))
    cluster = finding("cluster", "textured cluster", cl_images, [image_claim(r, cl_images)], 0.20)
    tail_images = mask((0, 28), (56, 58))
    tail = finding("property", "high contrast", tail_images, [image_claim(r, tail_images)], 0.15)
    small_images = mask((0, 30), (56, 120))
    small = finding("property", "small objects missed", small_images,
                    [objects_claim({(0, 30): 0.3, (60, 120): 1.0}, np.flatnonzero(small_images[image_idx]))],
                    0.10)
    assert small.allows(tail_images) and not small.holds(tail_images)  # no contradiction, no claim either
    out = merge_findings([cluster, tail, small], severity=lambda c: c.rec.severity, same_failure=alike,
                         other_failure=otherwise)
    assert titles(out) == [("textured cluster", ["high contrast"]), ("small objects missed", [])]


def _fog_and_contrast(other_rate: float):
    """Foggy images 0–30 fail at 0.8; a bright tail holds exactly them; a low-contrast tail holds them
    and 30 more (100–130) that fail at ``other_rate`` and not alike (another failure, or a mild one)."""
    r = rates(fog=(0, 30, 0.8), other=(100, 130, other_rate))
    ranges = {"fog": (0, 30), "other": (100, 130)}
    bright = finding("property", "bright", mask((0, 30)), [image_claim(r, mask((0, 30)))], 0.20)
    contrast_images = mask((0, 30), (100, 130))
    contrast = finding("property", "low contrast", contrast_images, [image_claim(r, contrast_images)], 0.15)
    blur = finding("property", "blurry", mask((150, 190)),
                   [image_claim(rates(blur=(150, 190, 0.7)), mask((150, 190)))], 0.10)
    out = merge_findings([bright, contrast, blur], severity=lambda c: c.rec.severity,
                         same_failure=_modes_of(ranges))
    return out


def test_a_finding_whose_excess_the_findings_above_tell_is_not_told_again():
    """The low-contrast tail's own excess is all on the foggy images the bright tail lists above it:
    its other images fail only a little (0.3, surely below the run's rate at this size). It is not a
    second finding of the fog (which would push the blur finding down); the bright tail carries it."""
    out = _fog_and_contrast(0.3)
    assert titles(out) == [("bright", ["low contrast"]), ("blurry", [])]
    assert [c.share for c in out] == [1.0, 1.0]


def test_a_finding_with_its_own_excess_beyond_the_findings_above_keeps_it():
    """The same tail whose other images fail hard (0.8, another failure) says something the bright tail
    does not: it stays, ranked by the share of its excess outside the bright tail's images."""
    out = _fog_and_contrast(0.8)
    assert sorted(c.rec.title for c in out) == ["blurry", "bright", "low contrast"]
    contrast = next(c for c in out if c.rec.title == "low contrast")
    assert 0.0 < contrast.share < 1.0
    assert merged_recommendation(contrast, 0.15).severity == pytest.approx(0.15 * contrast.share)
    assert out[0].rec.title == "bright"
