"""Skill against a yardstick: how a grid point compares with the best naive forecast the study
scored when it was made (see :mod:`sweep.data.baselines`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sweep.metrics import metric as metric_of
from sweep.spec import Spec
from sweep.store.record import Results

__all__ = ["NO_BASELINE", "Yardstick", "yardstick", "yardstick_of"]

NO_BASELINE = "no baseline stored"
BELOW_BASELINE = "below baseline"


@dataclass(frozen=True)
class Yardstick:
    """The best baseline on the data the points are ranked on, and what it scores on the test data."""

    name: str
    metric: str  # "<metric>/<scope>"
    score: float  # on the data the points are ranked on
    test_score: float | None
    others: tuple[tuple[str, float], ...] = ()  # every baseline, by name, on the same data

    def skill(self, score: float | None) -> float | None:
        """1 is perfect, 0 no better than the yardstick, below 0 worse (see Metric.skill)."""
        return None if score is None else metric_of(self.metric).skill(score, self.score)

    def is_beaten_by(self, score: float | None) -> bool:
        return score is not None and metric_of(self.metric).beats(score, self.score)

    def describe(self) -> str:
        """The baselines in one line: each one's score, the best named."""
        listed = ", ".join(f"{name} {score:.4g}" for name, score in self.others)
        return f"baselines ({self.metric}): {listed}; skill is measured against the best, {self.name}"


def yardstick(baselines: dict[str, Any] | None, *, metric: str, ranked_on: str) -> Yardstick | None:
    """The best of the stored baselines on the data the points are ranked on; None without any."""
    if not baselines:
        return None
    entry = metric_of(metric)
    scored = [
        (name, parts[ranked_on][metric], parts.get("test", {}).get(metric))
        for name, parts in baselines.items() if metric in parts.get(ranked_on, {})
    ]
    if not scored:
        return None
    best = scored[0]
    for candidate in scored[1:]:
        if entry.beats(candidate[1], best[1]):
            best = candidate
    return Yardstick(
        name=best[0], metric=metric, score=best[1], test_score=best[2],
        others=tuple((name, score) for name, score, _ in scored),
    )


def yardstick_of(results: Results, spec: Spec) -> Yardstick | None:
    """The yardstick of a study's snapshot: its best baseline on the data it ranks points on."""
    return yardstick(results.baselines, metric=spec.metric, ranked_on=spec.ranked_on)
