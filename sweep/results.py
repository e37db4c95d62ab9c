"""Numbers read back from a study: per-point statistics of the repeats, and progress counts.

:func:`read_points` is the one way a study's stored record is read back: the results table, the
report, the dashboard note, ``sweep list`` and the Python API all start from its
:class:`StoredPoint`. Pure functions of stored trials: nothing here trains, guesses or draws.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from sweep.optuna_private import fixed_params
from sweep.prepare import n_chunks
from sweep.convergence import NOT_CONVERGED, Convergence, check
from sweep.study import (
    LOSS_CURVE,
    SEQUENCE_LENGTH_ATTR,
    SET_ASIDE_ATTR,
    STOPPED_AT_ATTR,
    STOPPED_EPOCH,
    TEST_SUMMARY_ATTR,
    VALIDATION_CURVE,
    VALIDATION_PREFIX,
    WORKER_ATTR,
    finished_repeats,
)

__all__ = [
    "Choice",
    "PointRow",
    "StoredPoint",
    "chosen_point",
    "collect_rows",
    "count_states",
    "current_trials",
    "read_points",
    "set_aside",
    "summarize",
]

STATE_NAMES = {
    TrialState.COMPLETE: "done",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
    TrialState.FAIL: "failed",
    TrialState.PRUNED: "pruned",
}


# The values each metric can take: a confidence interval never reaches past them.
METRIC_RANGES = {"accuracy": (0.0, 1.0), "log_loss": (0.0, math.inf), "rmse": (0.0, math.inf), "mae": (0.0, math.inf)}


def summarize(
    scores: Sequence[float], confidence: float = 0.95, *, metric: str | None = None
) -> dict[str, float | int | None]:
    """n, mean, std (n - 1), standard error, a Student-t confidence interval, median, min, max.

    With `metric` (``"accuracy"`` or ``"accuracy/sample"``), the interval is cut to the values the
    metric can take: with few repeats near 1.0, Student's t would reach past an accuracy of 1.
    """
    values = np.asarray(scores, dtype=float)
    n = len(values)
    mean = float(values.mean())
    if n > 1:
        std = float(values.std(ddof=1))
        sem = std / math.sqrt(n)
        low, high = (mean, mean) if sem == 0 else stats.t.interval(confidence, df=n - 1, loc=mean, scale=sem)
    else:
        std = sem = low = high = math.nan
    if metric is not None and math.isfinite(low):
        floor, ceiling = METRIC_RANGES[metric.split("/")[0]]
        if floor <= values.min() and values.max() <= ceiling:  # scores of that metric indeed
            low, high = max(float(low), floor), min(float(high), ceiling)
    return {
        "n": n,
        "mean": mean,
        "std": _finite(std),
        "sem": _finite(sem),
        "ci95_low": _finite(float(low)),
        "ci95_high": _finite(float(high)),
        "median": float(np.median(values)),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


SUMMARY_KEYS = ("n", "mean", "std", "sem", "ci95_low", "ci95_high", "median", "min", "max")


@dataclass(frozen=True)
class StoredPoint:
    """One grid point as its latest trial stores it."""

    number: int
    key: str
    params: dict[str, Any]  # length, mode and any crossed settings
    state: str  # done, running, waiting, failed
    scores: tuple[float, ...]  # the repeats' objective scores, by repeat index
    repeats: dict[int, dict[str, Any]]  # each repeat's seed, every metric, seconds and worker
    summary: dict[str, Any]  # n, mean, std, interval...: stored for a finished point, else of the scores so far
    padding_fraction: float | None  # share of padding steps in its training subsequences
    wall_seconds: float | None
    fail_reason: str
    worker: str | None  # host:pid of the process that claimed it last
    stopped: str = ""  # a raced point stopped at a stage: at how many repeats, and why
    metric: str | None = None  # the objective, "<metric>/<scope>"
    ranked_on: str = "test"  # the data the objective scores come from: "validation" or "test"
    test_summary: dict[str, Any] | None = None  # ranked on validation data: statistics on the test data

    @property
    def length(self) -> int:
        return int(self.params.get("length", 0))

    @property
    def mode(self) -> str:
        return str(self.params.get("mode", ""))

    @property
    def test_mean(self) -> float | None:
        """The mean of its repeats' objective on the test data (so far, for an unfinished point)."""
        if self.ranked_on == "test":
            return self.summary.get("mean")
        if self.test_summary is not None:
            return self.test_summary["mean"]
        scores = [details[self.metric] for details in self.repeats.values() if self.metric in details]
        return float(np.mean(scores)) if scores else None

    def convergence(self, *, maximize: bool) -> Convergence | None:
        """The capacity check over the repeats' curves (see :mod:`sweep.convergence`): the
        objective on the validation data where stored, else the training loss; None where the
        repeats stored neither, or a finished point's check cannot say."""
        repeats = list(self.repeats.values())
        if not repeats:
            return None
        if all(VALIDATION_CURVE in details for details in repeats):
            curves = [details[VALIDATION_CURVE] for details in repeats if STOPPED_EPOCH not in details]
            return check(
                curves, maximize=maximize, curve=f"validation {self.metric or 'objective'}",
                n_stopped_early=len(repeats) - len(curves),
            )
        if all(LOSS_CURVE in details for details in repeats):
            return check([details[LOSS_CURVE] for details in repeats], maximize=False, curve="training loss")
        return None


def read_points(study: optuna.Study, *, metric: str | None = None, sequence_length: int | None = None) -> list[StoredPoint]:
    """Every grid point, finished ones from best to worst (by the study's direction), then the
    rest in grid order. `metric` and `sequence_length` serve studies that stored neither."""
    points = [stored_point(trial, metric=metric, sequence_length=sequence_length) for trial in current_trials(study)]
    sign = -1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1
    done = sorted((p for p in points if p.state == "done"), key=lambda p: (sign * p.summary["mean"], p.number))
    return done + [p for p in points if p.state != "done"]


def stored_point(trial: FrozenTrial, *, metric: str | None = None, sequence_length: int | None = None) -> StoredPoint:
    attrs = trial.user_attrs
    params = dict(trial.params or fixed_params(trial))
    scores = tuple(trial.intermediate_values[step] for step in sorted(trial.intermediate_values))
    metric = attrs.get("metric", metric)
    return StoredPoint(
        number=trial.number,
        key=attrs.get("key", f"L={params.get('length')} {params.get('mode')}" if params else f"#{trial.number}"),
        params=params,
        state=STATE_NAMES.get(trial.state, trial.state.name.lower()),
        scores=scores,
        repeats=finished_repeats(trial),
        summary=_summary(trial, scores, metric),
        padding_fraction=attrs.get("padding_fraction", _padding(params.get("length"), sequence_length)),
        wall_seconds=attrs.get("wall_seconds"),
        fail_reason=attrs.get("fail_reason", ""),
        worker=attrs.get(WORKER_ATTR),
        stopped=stop_reason(attrs),
        metric=metric,
        ranked_on=attrs.get("ranked_on") or _ranked_on(finished_repeats(trial)),
        test_summary=attrs.get(TEST_SUMMARY_ATTR),
    )


def _ranked_on(repeats: dict[int, dict[str, Any]]) -> str:
    """The data a point's repeats were ranked on, before the point stored it: repeats scored on
    validation data were ranked on them."""
    scored = [name for details in repeats.values() for name in details]
    return "validation" if any(name.startswith(VALIDATION_PREFIX) for name in scored) else "test"


def stop_reason(attrs: dict[str, Any]) -> str:
    """Why a raced point stopped before its full count ("" for any other point)."""
    stage = attrs.get(STOPPED_AT_ATTR)
    if stage is None:
        return ""
    return (
        f"stopped at {stage} repeats: worse than {attrs.get('stop_leader')} "
        f"(p={attrs.get('stop_p_value', math.nan):.2g} < {attrs.get('stop_threshold', math.nan):.2g})"
    )


def _summary(trial: FrozenTrial, scores: tuple[float, ...], metric: str | None) -> dict[str, Any]:
    """A finished point's stored statistics (its interval cut to the metric's range, for studies
    stored before the cut); the statistics of the scores so far for any other, or a point that
    stored none."""
    attrs = trial.user_attrs
    if trial.state == TrialState.COMPLETE and "ci95_low" in attrs:
        stored = {name: attrs.get(name) for name in SUMMARY_KEYS}
        stored.update(
            n=int(attrs.get("n", len(scores))), mean=trial.value,
            ci95_low=_within(attrs.get("ci95_low"), metric, side=0), ci95_high=_within(attrs.get("ci95_high"), metric, side=1),
        )
        return stored
    if scores:
        return summarize(scores, metric=metric)
    return {"n": 0, "mean": trial.value}


def _padding(length: Any, sequence_length: int | None) -> float | None:
    """The padding share of sequences of one length cut into subsequences of `length`."""
    if not length or not sequence_length:
        return None
    steps = n_chunks(sequence_length, int(length)) * int(length)
    return (steps - sequence_length) / steps


@dataclass(frozen=True)
class PointRow:
    """One grid point as a table shows it."""

    number: int
    key: str
    state: str
    n: int
    mean: float | None
    std: float | None
    ci95_low: float | None
    ci95_high: float | None
    seconds: float | None
    note: str


def _within(bound: float | None, metric: str | None, *, side: int) -> float | None:
    """A stored interval's end cut to the metric's range (studies stored before the cut)."""
    if bound is None or metric is None or metric.split("/")[0] not in METRIC_RANGES:
        return bound
    floor, ceiling = METRIC_RANGES[metric.split("/")[0]]
    return max(bound, floor) if side == 0 else min(bound, ceiling)


def point_row(
    point: StoredPoint | FrozenTrial, heartbeats: dict[int, Any] | None = None, *, maximize: bool | None = None
) -> PointRow:
    """A point as the results table shows it: a finished one with its statistics, any other with
    its repeats so far, a running one with its worker and, given `heartbeats`, its last beat.
    Given the direction (`maximize`), a finished point still improving says so."""
    if isinstance(point, FrozenTrial):
        point = stored_point(point)
    summary = point.summary if point.state == "done" else {"n": len(point.scores), "mean": point.summary.get("mean")}
    return PointRow(
        number=point.number,
        key=point.key,
        state=point.state,
        n=int(summary.get("n") or 0),
        mean=summary.get("mean"),
        std=summary.get("std"),
        ci95_low=summary.get("ci95_low"),
        ci95_high=summary.get("ci95_high"),
        seconds=point.wall_seconds if point.state == "done" else None,
        note=_note(point, heartbeats or {}, maximize),
    )


def _note(point: StoredPoint, heartbeats: dict[int, Any], maximize: bool | None) -> str:
    if point.state == "done":
        convergence = point.convergence(maximize=maximize) if maximize is not None else None
        flag = NOT_CONVERGED if convergence is not None and convergence.is_improving else ""
        return "; ".join(note for note in (point.stopped, flag) if note)
    if point.state != "running":
        return point.fail_reason
    beat = heartbeats.get(point.number)
    seen = f", last heartbeat {beat:%Y-%m-%d %H:%M:%S}" if beat is not None else ""
    return f"{point.worker or 'unknown worker'}{seen}"


def current_trials(study: optuna.Study) -> list[FrozenTrial]:
    """One trial per grid point: the latest. A point retried after its worker died, or requeued
    after it failed, leaves its earlier attempts behind as failed trials of the same key."""
    latest: dict[str, FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get(SET_ASIDE_ATTR):
            continue  # no grid point: enqueued by hand with Optuna, failed for good
        key = trial.user_attrs.get("key", f"#{trial.number}")
        if key not in latest or trial.number > latest[key].number:
            latest[key] = trial
    return sorted(latest.values(), key=lambda t: t.number)


def collect_rows(study: optuna.Study, heartbeats: dict[int, Any] | None = None) -> list[PointRow]:
    """Every grid point as the results table shows it, in :func:`read_points`' order."""
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    return [point_row(point, heartbeats, maximize=maximize) for point in read_points(study)]


@dataclass(frozen=True)
class Choice:
    """The best finished point, and what its score on data that played no part in choosing it is."""

    key: str
    metric: str
    ranked_on: str  # "validation" or "test"
    mean: float  # the objective's mean on the data it was ranked on
    test: dict[str, Any] | None  # ranked on validation data: its statistics on the test data

    def describe(self) -> str:
        """Which point was chosen on which data, the score to report, and why."""
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
    """The best finished point of :func:`read_points`' list (None before any is done)."""
    if not points or points[0].state != "done":
        return None
    best = points[0]
    return Choice(
        key=best.key, metric=best.metric or "objective", ranked_on=best.ranked_on,
        mean=best.summary["mean"], test=best.test_summary if best.ranked_on == "validation" else None,
    )


def sequence_length_of(study: optuna.Study) -> int | None:
    """The study's sequence length, stored when it was made (None for studies made before)."""
    return study.user_attrs.get(SEQUENCE_LENGTH_ATTR)


def set_aside(study: optuna.Study) -> list[FrozenTrial]:
    """Trials that are none of the grid's points, failed for good with the reason stored."""
    return [trial for trial in study.get_trials(deepcopy=False) if trial.user_attrs.get(SET_ASIDE_ATTR)]


def count_states(study: optuna.Study) -> dict[str, int]:
    counts = Counter(STATE_NAMES.get(t.state, t.state.name.lower()) for t in current_trials(study))
    return {name: counts.get(name, 0) for name in ("done", "running", "waiting", "failed")}
