"""Numbers read back from a study: per-point statistics of the repeats, and progress counts.

Pure functions of stored trials: nothing here trains, guesses or draws.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from sweep.study import SET_ASIDE_ATTR

__all__ = ["PointRow", "collect_rows", "count_states", "current_trials", "set_aside", "summarize"]

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


def point_row(trial: FrozenTrial) -> PointRow:
    attrs = trial.user_attrs
    if trial.state == TrialState.COMPLETE:
        return PointRow(
            number=trial.number,
            key=attrs.get("key", str(trial.params)),
            state="done",
            n=int(attrs.get("n", len(trial.intermediate_values))),
            mean=trial.value,
            std=attrs.get("std"),
            ci95_low=_within(attrs.get("ci95_low"), attrs.get("metric"), side=0),
            ci95_high=_within(attrs.get("ci95_high"), attrs.get("metric"), side=1),
            seconds=attrs.get("wall_seconds"),
            note="",
        )
    partial = list(trial.intermediate_values.values())
    return PointRow(
        number=trial.number,
        key=attrs.get("key", str(trial.params)),
        state=STATE_NAMES.get(trial.state, trial.state.name.lower()),
        n=len(partial),
        mean=float(np.mean(partial)) if partial else None,
        std=None,
        ci95_low=None,
        ci95_high=None,
        seconds=None,
        note=attrs.get("fail_reason", ""),
    )


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
    """Every grid point, finished ones first from best to worst, then the rest in grid order.

    Running points say which worker has them and, given `heartbeats`, when it last beat.
    """
    trials = current_trials(study)
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    done.sort(key=lambda t: (-t.value if maximize else t.value, t.number))
    rest = sorted((t for t in trials if t.state != TrialState.COMPLETE), key=lambda t: t.number)
    return [_with_worker(point_row(trial), trial, heartbeats or {}) for trial in done + rest]


def _with_worker(row: PointRow, trial: FrozenTrial, heartbeats: dict[int, Any]) -> PointRow:
    if trial.state != TrialState.RUNNING:
        return row
    beat = heartbeats.get(trial.number)
    seen = f", last heartbeat {beat:%Y-%m-%d %H:%M:%S}" if beat is not None else ""
    return replace(row, note=f"{trial.user_attrs.get('worker', 'unknown worker')}{seen}")


def set_aside(study: optuna.Study) -> list[FrozenTrial]:
    """Trials that are none of the grid's points, failed for good with the reason stored."""
    return [trial for trial in study.get_trials(deepcopy=False) if trial.user_attrs.get(SET_ASIDE_ATTR)]


def count_states(study: optuna.Study) -> dict[str, int]:
    counts = Counter(STATE_NAMES.get(t.state, t.state.name.lower()) for t in current_trials(study))
    return {name: counts.get(name, 0) for name in ("done", "running", "waiting", "failed")}
