"""The chosen point: which grid point a study names as its result, on which data it was chosen,
and the score to report for it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sweep.report.comparison import ALPHA, adjusted_p_values
from sweep.report.skill import Yardstick
from sweep.store.record import StoredPoint, shown_mean

__all__ = ["TIE_RULE", "Choice", "chosen_point"]

TIE_RULE = (
    "of points whose means tie (equal as shown, to 4 decimals), the one with the shortest forward length k1 is "
    "chosen, then the shortest backward length k2, then the first in the grid's order"
)


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
    tied: tuple[str, ...] = ()  # the other points whose means tie with its own
    rule: str = TIE_RULE  # how one of tied points is chosen
    n_not_worse: int = 0  # other points not significantly worse, besides the tied ones
    yardstick: Yardstick | None = None  # the best baseline (None: the study stored none)

    @property
    def skill(self) -> float | None:
        """Its skill against the best baseline, on the data it was chosen on."""
        return self.yardstick.skill(self.mean) if self.yardstick is not None else None

    @property
    def is_below_baseline(self) -> bool:
        return self.yardstick is not None and not self.yardstick.is_beaten_by(self.mean)

    def describe_baseline(self) -> str:
        """How it fares against the best naive forecast, in plain words."""
        stick = self.yardstick
        if stick is None:
            return "No baseline stored: how a naive forecast scores is unknown."
        if self.is_below_baseline:
            return (
                f"Below baseline: {self.key} scores {self.metric} {self.mean:.4g}, and the naive forecast "
                f"'{stick.name}' scores {stick.score:.4g} without learning anything; no grid point learned more than it."
            )
        return f"Skill against the naive forecast '{stick.name}' ({stick.score:.4g}): {self.skill:.3g}."

    def describe_ties(self) -> str:
        """What else is as good: the points that tie, the rule that picked this one among them,
        and how many more are not significantly worse ("" where none is)."""
        parts = []
        if self.tied:
            others = f"{len(self.tied)} other point{'s' if len(self.tied) != 1 else ''}"
            parts.append(f"It ties with {others} at {self.mean:.4g} ({', '.join(self.tied)}); {self.rule}.")
        if self.n_not_worse:
            parts.append(f"{self.n_not_worse} more not significantly worse (two-sided Mann-Whitney, adjusted p >= {ALPHA:g}).")
        return " ".join(parts)

    def describe(self) -> str:
        """Which point was chosen on which data, the score to report, and why."""
        if self.shortfall:
            return (
                f"no grid point finished its full count of repeats: {self.shortfall}. {self.key} went furthest, "
                f"{self.metric} {self.mean:.4g} over {self.n} repeats, which is no result to report; once the cause "
                "is fixed, sweep requeue the failed points and run again."
            )
        if self.test is None:
            sentence = (
                f"chosen on the test data: {self.key}, {self.metric} {self.mean:.4g}. The test data both chose it and "
                "score it, which flatters it: hold out validation data (validation.fraction) to score it honestly."
            )
        else:
            low, high = self.test.get("ci95_low"), self.test.get("ci95_high")
            interval = f", 95% CI {low:.4g}..{high:.4g}" if low is not None and high is not None else ""
            sentence = (
                f"chosen on the validation data: {self.key}, {self.metric} {self.mean:.4g} there. Its test score, "
                f"{self.test['mean']:.4g}{interval} over {self.test['n']} repeats, is the one to report: the test data "
                "played no part in choosing it, so the choice does not flatter it."
            )
        ties = self.describe_ties()
        if self.is_below_baseline:  # first, in plain words
            return " ".join(part for part in (self.describe_baseline(), sentence, ties) if part)
        return " ".join(part for part in (sentence, ties, self.describe_baseline()) if part)


def chosen_point(points: Sequence[StoredPoint], *, yardstick: Yardstick | None = None) -> Choice | None:
    """The best finished point of a snapshot's points, best first: the first that trained its
    full count, or where none did, the one a race stopped last, saying so (None before any point
    is done, or where every finished mean is not a number)."""
    complete = [point for point in points if point.is_complete]
    stopped = [point for point in points if point.state == "done" and point.stopped_at is not None and point.has_finite_mean]
    best = complete[0] if complete else stopped[0] if stopped else None
    if best is None:
        return None
    shortfall = "" if complete else f"the race stopped each of the {len(stopped)} finished points, and no point it spared finished"
    rivals = [point for point in (complete or stopped) if point is not best]
    tied = [point.key for point in rivals if shown_mean(point) == shown_mean(best)]
    adjusted = adjusted_p_values(best.scores, [point.scores for point in rivals])
    n_not_worse = sum(p >= ALPHA for point, p in zip(rivals, adjusted) if point.key not in tied)
    return Choice(
        key=best.key, metric=best.metric or "objective", ranked_on=best.ranked_on,
        mean=best.summary["mean"], test=best.test_summary if best.ranked_on == "validation" else None,
        n=int(best.summary.get("n") or len(best.scores)), shortfall=shortfall, tied=tuple(tied), n_not_worse=n_not_worse,
        yardstick=yardstick,
    )

