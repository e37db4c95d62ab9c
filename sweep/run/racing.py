"""Racing: repeats trained in stages, a point stopped at a stage once it is shown worse than the
leader, so that the repeats go to the points still in the running.

At every stage boundary s (say 5, 10 and 20 of 30 repeats) a point's first s scores meet the
leader's first s: the leader is the point with the best mean of its first s scores among those
that have s (a point stopped earlier is out of the race). A one-sided Welch t-test asks whether
the point is worse; it stops when p is below alpha / (looks x other points): Bonferroni over the
stage boundaries at which the point is tested and the points it may be compared with. So a point
as good as the leader is stopped with probability at most alpha over the whole race, however
many points and stages. The leader and every point not shown worse go on to the full count.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["DESCRIPTION", "Race", "Verdict"]

DESCRIPTION = (
    "one-sided Welch t-test of a point's first s scores against the leader's first s at each stage s, "
    "the point stopped when p < alpha / (stages x other points), Bonferroni over the looks and the points"
)


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
        """The level of each test: alpha over the looks and the other points (Bonferroni)."""
        return self.alpha / (len(self.stages) * max(1, self.n_points - 1))

    def target(self, n_finished: int) -> int:
        """The repeat count a point with `n_finished` repeats trains up to next."""
        return next((stage for stage in self.stages if stage > n_finished), self.repeats)

    def is_boundary(self, n_finished: int) -> bool:
        return n_finished in self.stages

    def judge(self, key: str, contenders: Mapping[str, Sequence[float]]) -> Verdict:
        """Test the point `key` against the leader among `contenders` (each point still racing,
        by key, with its scores in repeat order) at the stage of the point's own count."""
        stage = len(contenders[key])
        at_stage = {name: np.asarray(scores[:stage], dtype=float) for name, scores in contenders.items() if len(scores) >= stage}
        sign = 1.0 if self.maximize else -1.0
        leader = max(at_stage, key=lambda name: (sign * float(at_stage[name].mean()), name == key))
        p_value = 1.0 if leader == key else one_sided_p(at_stage[key], at_stage[leader], maximize=self.maximize)
        return Verdict(stage=stage, leader=leader, p_value=p_value, threshold=self.threshold)


def one_sided_p(scores: np.ndarray, leader: np.ndarray, *, maximize: bool) -> float:
    """Welch's t-test of `scores` being worse than `leader` (lower when maximizing). Two sets of
    identical scores each are told apart by their means alone: p 0 if worse, else 1."""
    if np.ptp(scores) == 0 and np.ptp(leader) == 0:
        worse = scores[0] < leader[0] if maximize else scores[0] > leader[0]
        return 0.0 if worse else 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(scores, leader, equal_var=False, alternative="less" if maximize else "greater")
    return float(result.pvalue) if math.isfinite(result.pvalue) else 1.0
