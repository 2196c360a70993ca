"""One failure mode, one finding: merging findings that others already explain.

Every failure finding of :func:`~vecexplore.analysis.recommend.recommend` is a
claim that some rate is surely above the run's (a cluster's error rate, a
class's FN rate, a pair's confusion rate, a property tail's rate of one error
type) plus the images behind it. The claim is a :class:`RateTest`: units
(images or objects, each on one image), errors per unit, and the run's rate.

**The rule** (:func:`merge_findings`). Finding F is *explained by* finding G
when F's claim holds on F's units inside G's images, F's units outside G's
images are not surely worse than the other units there ("the rest": the run's
rate would count F's own errors), and G's claim holds on G's units inside F's
images: F's errors all happen in G, where G's errors are too (a large set that
merely contains F's images, with a claim about other errors, explains
nothing). Whether the images only one of two findings holds *fail alike* is
``same_failure``: they are surely worse than the run too and their failure
profile agrees (:func:`vecexplore.analysis.slicing.profiles_agree`). Visiting
findings from the least severe up, each explained F merges:

1. *G explains F, F does not explain G* (G's claim also holds beyond F): into
   G if G's extra images fail alike (a property tail over both halves of a
   split mode); otherwise G mixes F's failure with another (a tail of low
   sharpness over dark and blurry scenes), F stays its own finding and, when
   G's other images are surely worse too but fail otherwise
   (``other_failure``), G is a *known mixture*: it never takes another
   finding, in this pass or the two below (a fog cluster lying inside two
   such tails is not theirs);
2. *they explain each other* (they claim the same errors): the larger takes
   the smaller if its extra images fail alike (a dark cluster and a tail of
   its darkest images), else the smaller, purer description takes the larger
   (a tail of striped images takes every image with a false positive of one
   class, when that class also fails on blurry scenes).

F goes to the G among those that explain it that shares most images with it
(then the more severe), so chains end in one finding that carries them all.
Two passes complete the rule: a known mixture that no single finding explains
but the other findings whose claims hold on its images explain together goes
to the one of them most like it: most images in common over images in either
(:func:`_absorb_mixtures`);
then, most severe first, a finding whose claim no longer holds beyond the rest
outside the images of the findings kept above it and of those below it (those
whose units on its images do not fail surely less than their run's rate) goes
to the one above it that shares most images with it, unless one below shares
more (then that one is the better home, and it is visited later)
(:func:`_absorb_covered`). A home is a finding whose own claim holds on the
covered finding's images and whose other images do not fail surely otherwise
(``other_failure``): a tail of small missed objects that holds a high-contrast
tail's images but claims nothing there is no home for its false positives.

The merged finding keeps its images, title and action, carries the others in
``Recommendation.merged`` and ranks by the largest severity among them.

No overlap threshold is needed: "covers mostly the same images" is what the
tests measure, with the Wilson 95 % bound and ``min_errors`` of the findings
themselves: a finding disjoint from G never holds inside it, and a large
finding is explained by a small one only when its whole excess lies there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from vecexplore.rates import wilson_interval

log = logging.getLogger(__name__)

#: Evidence kind of each finding kind (what ``Recommendation.evidence_kinds`` lists).
EVIDENCE_KIND = {"cluster": "cluster", "property": "property", "class_fn": "class", "class_fp": "class",
                 "confusion": "class"}


@dataclass(frozen=True, eq=False)
class Population:
    """Every unit of one kind in the run (images, non-crowd GT objects, counted predictions).

    Attributes:
        image_idx: (p,) int64, the image of each unit.
        errors: (p,) float64 in [0, 1], errors per unit (1/0 for an object, a
            per-image rate for an image).
    """

    image_idx: np.ndarray
    errors: np.ndarray

    def sums(self, mask: np.ndarray) -> tuple[int, float]:
        """(units, errors) on the images of ``mask``."""
        keep = mask[self.image_idx]
        return int(keep.sum()), float(self.errors[keep].sum())


@dataclass(frozen=True, eq=False)
class RateTest:
    """"The units' rate of errors is surely above ``base``", on any subset of images.

    Attributes:
        population: the units of this kind in the run; the claim's units are some of them.
        units: (u,) int64 positions of the claim's units in ``population``.
        base: the run's rate to beat (what a finding must beat to exist).
        min_errors: the claim needs at least this many errors.
        z: normal quantile of the Wilson bound.
        errors: (u,) the claim's own errors per unit when they are not the
            population's (a pair's confusions among the GT of its two classes).
    """

    population: Population
    units: np.ndarray
    base: float
    min_errors: float
    z: float = 1.96
    errors: np.ndarray | None = None

    @property
    def image_idx(self) -> np.ndarray:
        return self.population.image_idx[self.units]

    def _sums(self, mask: np.ndarray | None) -> tuple[int, float, np.ndarray]:
        errors = self.population.errors[self.units] if self.errors is None else self.errors
        keep = np.ones(len(self.units), bool) if mask is None else mask[self.image_idx]
        return int(keep.sum()), float(errors[keep].sum()), keep

    def _low(self, n: int, s: float) -> float | None:
        if n == 0 or s < self.min_errors:
            return None
        return float(wilson_interval(min(s, n), n, z=self.z)[0])

    def excess(self, mask: np.ndarray | None = None) -> float:
        """``(lower bound − base) × units`` on the units whose image is in ``mask`` (None = all); ≤ 0 = no claim."""
        n, s, _ = self._sums(mask)
        low = self._low(n, s)
        return 0.0 if low is None else (low - self.base) * n

    def holds(self, mask: np.ndarray | None = None) -> bool:
        return self.excess(mask) > 0

    def allows(self, mask: np.ndarray) -> bool:
        """The units on ``mask``'s images are not surely better than ``base``: the Wilson upper bound of
        their rate reaches it (False without units there: the claim says nothing about those images)."""
        n, s, _ = self._sums(mask)
        return n > 0 and float(wilson_interval(min(s, n), n, z=self.z)[1]) >= self.base

    def beyond_rest(self, mask: np.ndarray) -> bool:
        """On ``mask``'s images, the units' lower bound is above the rate of the population's other units there.

        The run's ``base`` counts the claim's own errors; where a finding is
        asked whether it still holds outside another, "the rest" there is the
        fair reference (the base otherwise, when nothing else is there).
        """
        n, s, keep = self._sums(mask)
        low = self._low(n, s)
        if low is None:
            return False
        pop_n, pop_s = self.population.sums(mask)
        own = float(self.population.errors[self.units][keep].sum())
        rest_n = pop_n - n
        rest = (pop_s - own) / rest_n if rest_n > 0 else self.base
        return low > rest


@dataclass(eq=False)
class Candidate:
    """A finding being merged: its recommendation, its images and its claim(s).

    ``tests``: the finding holds on a set of images when any of its tests does
    (a cluster is worse by its image error rate, or by its FN or FP rate).
    """

    rec: object
    images: np.ndarray  # (N,) bool
    tests: Sequence[RateTest]
    absorbed: list = field(default_factory=list)
    share: float = 1.0  # of its claim's excess that the findings ranked above do not tell (_discount_told)

    def excess(self, mask: np.ndarray | None = None) -> float:
        """The largest excess of its tests on ``mask``'s images (None = all; see :meth:`RateTest.excess`)."""
        return max((t.excess(mask) for t in self.tests), default=0.0)

    def holds(self, mask: np.ndarray) -> bool:
        return any(t.holds(mask) for t in self.tests)

    def beyond_rest(self, mask: np.ndarray) -> bool:
        return any(t.beyond_rest(mask) for t in self.tests)

    def allows(self, mask: np.ndarray) -> bool:
        return any(t.allows(mask) for t in self.tests)


def explained_by(f: Candidate, g: Candidate) -> bool:
    """Whether ``g`` alone explains ``f``: f holds inside g, not beyond the rest outside it, and g holds inside f."""
    inside = g.images
    if not (f.images & inside).any():
        return False
    return f.holds(inside) and not f.beyond_rest(~inside) and g.holds(f.images)


def merge_findings(candidates: list[Candidate], *, severity: Callable[[Candidate], float],
                   same_failure: Callable[[np.ndarray, np.ndarray], bool] | None = None,
                   other_failure: Callable[[np.ndarray, np.ndarray], bool] | None = None) -> list[Candidate]:
    """Merge every finding that others explain (module docstring).

    Args:
        candidates: the failure findings.
        severity: the ranking key of a candidate (higher = more severe).
        same_failure: ``(common, extra)`` image masks → whether the ``extra``
            images (held by one finding only) fail the way the ``common`` ones
            do; None = always.
        other_failure: ``(common, extra)`` → whether the ``extra`` images fail
            surely worse than the run, but otherwise (a second failure: what
            makes a finding a mixture); None = not ``same_failure``.

    Returns:
        The remaining candidates, most severe first (by the largest severity of
        their group); each one's ``absorbed`` lists the candidates merged into
        it, most severe first.
    """
    n = len(candidates)
    if n == 0:
        return []
    images = [c.images for c in candidates]
    masks = np.stack(images).astype(np.float32)
    overlap = masks @ masks.T  # images in common, (n, n)
    size = np.diag(overlap).copy()
    explains = np.zeros((n, n), bool)  # explains[i, j]: j alone explains i
    for i, j in zip(*np.nonzero(overlap > 0), strict=True):
        if i != j:
            explains[i, j] = explained_by(candidates[i], candidates[j])
    alone = explains.copy()
    groups = {i: [i] for i in range(n)}  # leading finding -> the findings it carries (itself first)

    def rank(r: int) -> float:
        return max(severity(candidates[m]) for m in groups[r])

    verdicts: dict[tuple[int, int], bool] = {}

    def alike(i: int, j: int) -> bool:
        """Do the images ``j`` holds beyond ``i`` fail as the images they share do?"""
        if (i, j) not in verdicts:
            extra = images[j] & ~images[i]
            verdicts[i, j] = not extra.any() or same_failure is None or same_failure(images[i] & images[j], extra)
        return verdicts[i, j]

    # A mixture explains a finding while its other images fail surely, and otherwise (not ordinary
    # images that merely dilute it): it speaks for two failures, so it never leads one; it may go
    # into one of its parts (below).
    def otherwise(i: int, j: int) -> bool:
        extra = images[j] & ~images[i]
        if other_failure is None or not extra.any():
            return not alike(i, j)
        return other_failure(images[i] & images[j], extra)

    mixed = {j for i, j in zip(*np.nonzero(explains & ~explains.T), strict=True) if otherwise(i, j)}
    while True:
        pick = next(((i, covers) for i in sorted(groups, key=lambda r: (rank(r), -r))
                     if (covers := [j for j in groups if explains[i, j]])), None)
        if pick is None:
            break
        i, covers = pick
        j = max(covers, key=lambda j: (overlap[i, j], rank(j), -j))
        if explains[j, i]:  # the same errors: the larger leads if its extra images fail alike, else the smaller
            big, small = (i, j) if (size[i], rank(i)) > (size[j], rank(j)) else (j, i)
            keep, drop = (big, small) if alike(small, big) else (small, big)
        elif j not in mixed and alike(i, j):  # j covers more, and more of the same failure
            keep, drop = j, i
        else:  # j mixes i's failure with another: i stays its own finding
            log.debug("not merged (mixture): %r in %r", candidates[i].rec.title, candidates[j].rec.title)
            explains[i, j] = False
            continue
        log.debug("merged: %r carries %r", candidates[keep].rec.title, candidates[drop].rec.title)
        groups[keep] += groups.pop(drop)
    _absorb_mixtures(candidates, groups, overlap, rank, alone, mixed)
    _absorb_covered(candidates, groups, overlap, rank, mixed, other_failure)
    _discount_told(candidates, groups, overlap, rank, mixed)
    out = []
    for r in sorted(groups, key=lambda r: (-candidates[r].share * rank(r), r)):
        c = candidates[r]
        c.absorbed = sorted((candidates[m] for m in groups[r] if m != r), key=lambda a: -severity(a))
        out.append(c)
    return out


def _absorb_mixtures(candidates, groups: dict, overlap: np.ndarray, rank, alone: np.ndarray,
                     mixed: set[int]) -> None:
    """Merge each known mixture that no one finding explains but the others explain together.

    F (one of ``mixed``) goes when F's claim holds inside the union of the findings
    whose own claims hold on F's images, and not beyond the rest outside it
    (a tail of low sharpness over dark scenes and blurry ones, each its own
    finding). F then goes to the one of them most like it (the largest
    ratio of images in common to images in either): by images in common alone,
    a tail of missed wide objects that holds half the run would take a mixture
    of dark and blurry scenes from the dark finding.
    Known mixtures (``mixed``) are never among those parts: a dark cluster
    whose images lie in two mixtures (missed objects over low sharpness, over
    low contrast) is not itself a mixture of them.
    """
    size = np.diag(overlap)
    while True:
        for r in sorted(groups, key=lambda r: (rank(r), -r)):
            f = candidates[r]
            if r not in mixed:
                continue  # no part of it fails otherwise: what else holds on its images describes the same
            if any(alone[r, g] and not alone[g, r] for g in groups if g != r):
                continue  # a part of another finding (two that explain each other claim the same errors)
            others = [g for g in groups if g != r and g not in mixed and overlap[r, g] > 0
                      and candidates[g].holds(f.images)]
            if len(others) < 2:
                continue
            union = np.any([candidates[g].images for g in others], axis=0)
            if f.holds(union) and not f.beyond_rest(~union):
                # The part most like F (images in common over images in either): by images in
                # common alone a part that holds half the run would take every mixture it touches.
                target = max(others, key=lambda g: (overlap[r, g] / (size[r] + size[g] - overlap[r, g]), rank(g), -g))
                log.debug("merged (mixture of %d): %r carries %r", len(others), candidates[target].rec.title,
                          f.rec.title)
                groups[target] += groups.pop(r)
                break
        else:
            return


def _absorb_covered(candidates, groups: dict, overlap: np.ndarray, rank, mixed: set[int],
                    other_failure=None) -> None:
    """Most severe first, merge each finding whose claim no longer holds outside the images listed above it.

    What such a finding says is already said by the findings ranked above it
    (a cluster whose extra errors are all on blurry images a tail above lists),
    together with those below it that hold some of its images (a few striped
    images with false positives inside a cluster of tinted ones); it goes to
    the one above it shares most images with, unless one below shares more
    (a pure tail inside a mixture's parts stays; the one below is tested in
    its turn). Only findings whose
    claims their units on its images do not contradict count (:meth:`RateTest.allows`:
    a set of images may hold a finding's images without its errors being there),
    and no known mixture: what it says above is about two failures, not this one.
    """
    kept: list[int] = []
    order = sorted(groups, key=lambda r: (-rank(r), r))
    for at, r in enumerate(order):
        f = candidates[r]
        speaks = [g for g in order if g != r and g not in mixed and overlap[r, g] > 0
                  and candidates[g].allows(f.images)]
        near = [g for g in speaks if g in kept]
        below = [g for g in speaks if g in order[at + 1:]]  # the rest of it (a few striped images in a tinted cluster)
        covered = np.any([candidates[g].images for g in near + below], axis=0) if near else None
        # A home's other images must not fail surely otherwise: a tail of small missed objects on the
        # same images is no home for their false positives, nor a tail of blur for bright scenes' misses.
        homes = [g for g in near + below if candidates[g].holds(f.images) and (other_failure is None
                 or not other_failure(f.images & candidates[g].images, candidates[g].images & ~f.images))]
        best = max(homes, key=lambda g: (overlap[r, g], rank(g), -g)) if near and homes else None
        if best in near and f.holds(covered) and not f.beyond_rest(~covered):
            target = best
            log.debug("merged (covered above): %r carries %r", candidates[target].rec.title, f.rec.title)
            groups[target] += groups.pop(r)
            continue
        kept.append(r)


def _discount_told(candidates, groups: dict, overlap: np.ndarray, rank, mixed: set[int]) -> None:
    """Rank each finding by the part of its claim that the findings above it do not already tell.

    Two findings can describe one failure without either explaining the other
    (a low-contrast tail over foggy scenes and a few others, and a bright tail
    of those foggy scenes: the extra images fail differently, so neither merges).
    Listing the second at its full severity tells the failure twice. Most severe
    first, each finding's ``share`` is its claim's excess outside the images of
    the findings ranked above it whose own claims hold on its images (not known
    mixtures: they tell two failures), over its whole excess (0 to 1); its
    severity is scaled by it; one with nothing left (share 0) goes to the one of
    those it shares most images with. A finding whose errors lie elsewhere keeps its rank.
    """
    told: list[int] = []
    for r in sorted(groups, key=lambda r: (-rank(r), r)):
        c = candidates[r]
        above = [g for g in told if candidates[g].holds(c.images)]
        whole = c.excess()
        if above and whole > 0:
            outside = ~np.any([candidates[g].images for g in above], axis=0)
            c.share = float(np.clip(c.excess(outside) / whole, 0.0, 1.0))
            if c.share == 0.0:  # all of it is told above: it goes to the one it shares most images with
                target = max(above, key=lambda g: (overlap[r, g], rank(g), -g))
                log.debug("merged (told above): %r carries %r", candidates[target].rec.title, c.rec.title)
                c.share = 1.0
                groups[target] += groups.pop(r)
                continue
        if r not in mixed:
            told.append(r)


def merged_recommendation(c: Candidate, severity: float):
    """The candidate's recommendation carrying its absorbed findings (``merged``) at ``severity``
    (scaled by its :attr:`Candidate.share`)."""
    return replace(c.rec, severity=severity * c.share, merged=tuple(a.rec.to_json() for a in c.absorbed))
