"""The report's numbers: every grid point's repeats and statistics from one snapshot of the
study's record, and each point's comparison with the best.

Collecting (:func:`collect`) is pure and tested directly; :mod:`sweep.report.figures` draws what
was collected and :mod:`sweep.report.html` lays it out in one file. Nothing is re-trained or
guessed: every number comes from the repeats stored in the study.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from sweep.report.choice import Choice, chosen_point
from sweep.report.comparison import ALPHA, TEST_DESCRIPTION, adjusted_p_values
from sweep.report.convergence import Convergence, point_convergence
from sweep.report.skill import Yardstick, yardstick_of
from sweep.spec import Spec, describe_spec
from sweep.store.record import Results, StoredPoint

__all__ = ["ALPHA", "PointStats", "Report", "TEST_DESCRIPTION", "collect", "compare_to_best", "export_command"]



@dataclass(frozen=True)
class PointStats:
    """One grid point's repeat scores and their statistics."""

    number: int
    key: str
    length: int
    mode: str
    group: str  # the mode and any crossed settings: one colour in the figures
    state: str
    scores: tuple[float, ...]
    summary: dict[str, Any]
    is_padded: bool
    padding_fraction: float
    wall_seconds: float | None
    fail_reason: str = ""
    stopped: str = ""  # a raced point stopped at a stage, and why
    curves: tuple[tuple[float, ...], ...] = ()  # each repeat's training loss per epoch
    validation_curves: tuple[tuple[float, ...], ...] = ()  # each repeat's objective on the validation data per epoch
    convergence: Convergence | None = None  # the capacity check (see sweep.report.convergence)
    p_value: float | None = None  # adjusted, against the best point
    is_best: bool = False
    skill: float | None = None  # against the best baseline
    is_below_baseline: bool = False

    @property
    def is_distinguishable(self) -> bool | None:
        return None if self.p_value is None else self.p_value < ALPHA

    @property
    def is_converging(self) -> bool:
        """Whether the capacity check found it still clearly improving."""
        return self.convergence is not None and self.convergence.is_improving


@dataclass(frozen=True)
class Report:
    study_name: str
    metric: str
    direction: str
    settings: list[tuple[str, str]]
    counts: dict[str, int]
    points: list[PointStats] = field(default_factory=list)
    suggestion: dict[str, Any] | None = None  # as stored when the grid's lengths were suggested
    choice: Choice | None = None  # the best point, the data it was chosen on, its test score
    yardstick: Yardstick | None = None  # the best baseline (None: the study stored none)

    @property
    def is_finished(self) -> bool:
        return self.counts["running"] == 0 and self.counts["waiting"] == 0

    @property
    def finished_points(self) -> list[PointStats]:
        return [point for point in self.points if point.state == "done"]


def collect(results: Results, spec: Spec) -> Report:
    """Every grid point's statistics, best first, with its test against the best point."""
    stored = results.points
    stick = yardstick_of(results, spec)
    points = [_point(point, maximize=spec.is_maximized, yardstick=stick) for point in stored]
    done = [point for point in points if point.state == "done"]
    # Studies stored before the validation split ranked on the test data.
    ranked_on = stored[0].ranked_on if stored and stored[0].state == "done" else spec.ranked_on
    return Report(
        study_name=results.study_name,
        metric=f"{spec.objective.metric} per {spec.objective.per} on the {ranked_on} data",
        direction=spec.direction,
        settings=list(describe_spec(spec)),
        counts=results.counts,
        points=compare_to_best(done) + [point for point in points if point.state != "done"],
        suggestion=results.suggestion,
        choice=chosen_point(stored, yardstick=stick),
        yardstick=stick,
    )


def _point(point: StoredPoint, *, maximize: bool, yardstick: Yardstick | None) -> PointStats:
    extras = [f"{name}={value}" for name, value in sorted(point.params.items()) if name not in ("length", "mode")]
    padding = point.padding_fraction or 0.0
    return PointStats(
        number=point.number,
        key=point.key,
        length=point.length,
        mode=point.mode,
        group=" ".join([point.mode, *extras]),
        state=point.state,
        scores=point.scores,
        summary=point.summary,
        is_padded=padding > 0,
        padding_fraction=padding,
        wall_seconds=point.wall_seconds,
        fail_reason=point.fail_reason,
        stopped=point.stopped,
        curves=point.curves(),
        validation_curves=point.curves(validation=True),
        convergence=point_convergence(point, maximize=maximize) if point.state == "done" else None,
        skill=yardstick.skill(point.summary.get("mean")) if yardstick is not None and point.state == "done" else None,
        is_below_baseline=point.state == "done" and yardstick is not None
        and not yardstick.is_beaten_by(point.summary.get("mean")),
    )


def compare_to_best(done: list[PointStats]) -> list[PointStats]:
    """Mark the first (best) point, and give every other its adjusted p-value against it."""
    if not done:
        return []
    best, others = done[0], done[1:]
    adjusted = adjusted_p_values(best.scores, [point.scores for point in others])
    return [replace(best, is_best=True)] + [replace(point, p_value=p) for point, p in zip(others, adjusted)]


def export_command(study_name: str) -> str:
    """The command that exports the chosen point's representative network (see sweep.export)."""
    return f"sweep export {study_name} -o {study_name}-model"
