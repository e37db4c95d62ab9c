"""Racing: repeats trained in stages, a point stopped at a stage once it is shown worse than the
leader, so that the repeats go to the points still in the running.

At every stage boundary s (say 5, 10 and 20 of 30 repeats) the points still racing that reached s
meet with their first s scores each; the leader is the one with the best mean. A point's distance
to the leader (the difference of their means) is set against the range of the means (best less
worst) that the same scores give when they are dealt to the points at random: a permutation test
of the range, Tukey's idea, computed rather than looked up. The point stops when p < alpha /
stages. Where the points are equal, every deal is as likely as the one observed, so the range of
the deals bounds every point's distance to the leader at once: the chance that any point as good
as the leader is stopped at a stage is at most alpha / stages, whatever the number of points
(the leader being the one the data chose costs nothing more), and at most alpha over the race.
The test rests on nothing but the scores themselves: discrete scores and ties (an accuracy on a
small validation set, 1.0 in most repeats) keep the bound, where a t-test's do not.

The p-value is estimated by dealing the scores at random (sequentially: it stops at the 20th deal
as extreme as the one observed, Besag and Clifford's rule, so that a point far from the leader
costs few deals), seeded by the point, the leader and the stage, so that every machine reaches the
same verdict.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["DESCRIPTION", "Race", "Verdict", "range_p_value"]

DESCRIPTION = (
    "at each stage s the points that reached it meet with their first s scores; a point stops when its distance "
    "to the leader's mean is larger than the range of the means (best less worst) in all but p of the ways the same "
    "scores can be dealt to the points, with p < alpha / stages (a permutation test of the range): a point as good "
    "as the leader is stopped in at most alpha of races, however many points, discrete and tied scores included"
)
# Deals as extreme as the observed one after which the estimate stops (Besag and Clifford).
EXCEEDANCES = 20
_BATCH = 512


@dataclass(frozen=True)
class Verdict:
    """A point's test against the leader at a stage boundary."""

    stage: int  # repeats compared
    leader: str  # the leader's key (the point's own when it leads)
    p_value: float
    threshold: float

    @property
    def is_stopped(self) -> bool:
        return self.p_value < self.threshold


@dataclass(frozen=True)
class Race:
    """The stages of a study's race and the level of its test."""

    stages: tuple[int, ...]  # boundaries at which a point may stop, below the full count
    repeats: int
    alpha: float
    n_points: int
    maximize: bool

    @property
    def threshold(self) -> float:
        """The level of each stage's test: alpha over the looks (Bonferroni); the range of the
        deals already answers for every point and for the leader's being chosen by the data."""
        return self.alpha / len(self.stages)

    def target(self, n_finished: int) -> int:
        """The repeat count a point with `n_finished` repeats trains up to next."""
        return next((stage for stage in self.stages if stage > n_finished), self.repeats)

    def is_boundary(self, n_finished: int) -> bool:
        return n_finished in self.stages

    def judge(self, key: str, contenders: Mapping[str, Sequence[float]]) -> Verdict:
        """Test the point `key` against the leader among `contenders` (each point still racing,
        by key, with its scores in repeat order) at the stage of the point's own count."""
        stage = len(contenders[key])
        names = sorted(name for name, scores in contenders.items() if len(scores) >= stage)
        at_stage = np.asarray([list(contenders[name])[:stage] for name in names], dtype=float)
        sign = 1.0 if self.maximize else -1.0
        means = sign * at_stage.mean(axis=1)
        leader = max(range(len(names)), key=lambda index: (means[index], names[index] == key))
        point = names.index(key)
        if leader == point:
            return Verdict(stage=stage, leader=key, p_value=1.0, threshold=self.threshold)
        rng = np.random.default_rng(_seed(key, names[leader], stage))
        p_value = range_p_value(sign * at_stage, point=point, leader=leader, rng=rng, max_deals=self._max_deals())
        return Verdict(stage=stage, leader=names[leader], p_value=p_value, threshold=self.threshold)

    def _max_deals(self) -> int:
        """Enough deals that a p-value below the threshold can be seen: past them, fewer than
        EXCEEDANCES as extreme means p < threshold however many more were dealt."""
        return max(2 * _BATCH, math.ceil(2 * EXCEEDANCES / self.threshold))


def range_p_value(scores: np.ndarray, *, point: int, leader: int, rng: np.random.Generator, max_deals: int) -> float:
    """The share of random deals of the scores (one row per point, higher is better) whose range
    of means reaches the leader's lead over `point`: stopped at the EXCEEDANCES-th such deal
    (then EXCEEDANCES / deals), else (as extreme + 1) / (deals + 1) after `max_deals`."""
    n_points, n_scores = scores.shape
    means = scores.mean(axis=1)
    observed = means[leader] - means[point]
    if observed <= 0:
        return 1.0
    pooled = scores.ravel()
    # Means of the same scores in another order differ by rounding alone: those count as equal.
    observed -= 1e-9 * max(1.0, float(np.abs(pooled).max()))
    count = dealt = 0
    while dealt < max_deals:
        deals = rng.permuted(np.tile(pooled, (_BATCH, 1)), axis=1).reshape(_BATCH, n_points, n_scores).mean(axis=2)
        hits = np.cumsum(deals.max(axis=1) - deals.min(axis=1) >= observed)
        if count + hits[-1] >= EXCEEDANCES:
            return EXCEEDANCES / (dealt + int(np.searchsorted(hits, EXCEEDANCES - count)) + 1)
        count, dealt = count + int(hits[-1]), dealt + _BATCH
    return (count + 1) / (dealt + 1)


def _seed(key: str, leader: str, stage: int) -> int:
    digest = hashlib.sha256(f"race|{key}|{leader}|{stage}".encode()).digest()
    return int.from_bytes(digest[:8], "little")
