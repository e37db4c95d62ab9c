"""The metrics a study can be scored by: one table, asked everywhere a metric's nature matters.

Each metric knows its task, whether more is better, the values it can take and how it is shown.
Scores are keyed ``"<metric>/<scope>"`` (``"accuracy/sample"``); every function here takes either
the bare name or such a key. How a metric is computed from predictions is
:mod:`sweep.data.scoring`'s business, keyed by the same names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["METRICS", "Metric", "is_maximized", "metric", "metric_names"]


@dataclass(frozen=True)
class Metric:
    name: str
    task: str  # "classification" or "regression"
    is_maximized: bool
    low: float  # the values a score can take: a confidence interval never reaches past them
    high: float
    label: str  # how people name it

    @property
    def direction(self) -> str:
        """Optuna's word for the metric's direction."""
        return "maximize" if self.is_maximized else "minimize"

    def clip(self, value: float) -> float:
        """`value` within the metric's range."""
        return min(max(value, self.low), self.high)

    def holds(self, low: float, high: float) -> bool:
        """Whether scores from `low` to `high` can be this metric's at all."""
        return self.low <= low and high <= self.high

    def beats(self, score: float, other: float) -> bool:
        """Whether `score` is strictly better than `other`."""
        return score > other if self.is_maximized else score < other

    def skill(self, score: float, baseline: float) -> float | None:
        """The share of the way from the baseline to a perfect score that `score` goes: for an
        accuracy (score - baseline) / (1 - baseline), for an error 1 - score / baseline; 1 is
        perfect, 0 no better than the baseline, below 0 worse. None where the baseline is perfect."""
        if self.is_maximized:
            return (score - baseline) / (self.high - baseline) if baseline < self.high else None
        return 1.0 - score / baseline if baseline > self.low else None


METRICS = {
    entry.name: entry
    for entry in (
        Metric("accuracy", "classification", is_maximized=True, low=0.0, high=1.0, label="accuracy"),
        Metric("log_loss", "classification", is_maximized=False, low=0.0, high=math.inf, label="log-loss"),
        Metric("rmse", "regression", is_maximized=False, low=0.0, high=math.inf, label="root mean squared error"),
        Metric("mae", "regression", is_maximized=False, low=0.0, high=math.inf, label="mean absolute error"),
    )
}


def metric(name_or_key: str) -> Metric:
    """The metric of a name (``"rmse"``) or a score's key (``"rmse/sample"``, ``"validation/rmse/step"``)."""
    for part in name_or_key.split("/"):
        if part in METRICS:
            return METRICS[part]
    raise KeyError(f"unknown metric {name_or_key!r}; known: {', '.join(METRICS)}")


def is_maximized(name_or_key: str) -> bool:
    """Whether a higher score of this metric is better: the one place the direction is decided."""
    return metric(name_or_key).is_maximized


def metric_names(task: str) -> tuple[str, ...]:
    """The metrics that score a task, in the table's order."""
    return tuple(name for name, entry in METRICS.items() if entry.task == task)
