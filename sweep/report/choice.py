"""The chosen point: which grid point a study names as its result, on which data it was chosen,
and the score to report for it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sweep.store.record import StoredPoint

__all__ = ["Choice", "chosen_point"]


@dataclass(frozen=True)
class Choice:
    """The best finished point, and what its score on data that played no part in choosing it is."""

    key: str
    metric: str
    ranked_on: str  # "validation" or "test"
    mean: float  # the objective's mean on the data it was ranked on
    test: dict[str, Any] | None  # ranked on validation data: its statistics on the test data
    n: int = 0  # the repeats its mean is over
    # Why the chosen point has fewer repeats than the grid's full count ("": it has them all).
    shortfall: str = ""

    def describe(self) -> str:
        """Which point was chosen on which data, the score to report, and why."""
        if self.shortfall:
            return (
                f"no grid point finished its full count of repeats: {self.shortfall}. {self.key} went furthest, "
                f"{self.metric} {self.mean:.4g} over {self.n} repeats, which is no result to report; once the cause "
                "is fixed, sweep requeue the failed points and run again."
            )
        if self.test is None:
            return (
                f"chosen on the test data: {self.key}, {self.metric} {self.mean:.4g}. The test data both chose it and "
                "score it, which flatters it: hold out validation data (validation.fraction) to score it honestly."
            )
        low, high = self.test.get("ci95_low"), self.test.get("ci95_high")
        interval = f", 95% CI {low:.4g}..{high:.4g}" if low is not None and high is not None else ""
        return (
            f"chosen on the validation data: {self.key}, {self.metric} {self.mean:.4g} there. Its test score, "
            f"{self.test['mean']:.4g}{interval} over {self.test['n']} repeats, is the one to report: the test data "
            "played no part in choosing it, so the choice does not flatter it."
        )


def chosen_point(points: Sequence[StoredPoint]) -> Choice | None:
    """The best finished point of a snapshot's points, best first: the first that trained its
    full count, or where none did, the one a race stopped last, saying so (None before any point
    is done, or where every finished mean is not a number)."""
    complete = [point for point in points if point.is_complete]
    stopped = [point for point in points if point.state == "done" and point.stopped_at is not None and _is_finite(point)]
    best = complete[0] if complete else stopped[0] if stopped else None
    if best is None:
        return None
    shortfall = "" if complete else f"the race stopped each of the {len(stopped)} finished points, and no point it spared finished"
    return Choice(
        key=best.key, metric=best.metric or "objective", ranked_on=best.ranked_on,
        mean=best.summary["mean"], test=best.test_summary if best.ranked_on == "validation" else None,
        n=int(best.summary.get("n") or len(best.scores)), shortfall=shortfall,
    )


def _is_finite(point: StoredPoint) -> bool:
    mean = point.summary.get("mean")
    return mean is not None and math.isfinite(mean)
