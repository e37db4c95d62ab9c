"""The results table's rows: every grid point as ``sweep status``, ``sweep list`` and the Python API
show it, from the stored record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from optuna.trial import FrozenTrial

from sweep.report.convergence import NOT_CONVERGED, point_convergence
from sweep.report.skill import BELOW_BASELINE, Yardstick
from sweep.store.record import Results, StoredPoint, read_point

__all__ = ["PointRow", "point_row", "rows"]


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
    skill: float | None = None  # against the yardstick (the best baseline); None without one
    is_below_baseline: bool = False  # finished, and its mean does not beat the best baseline


def rows(results: Results, *, maximize: bool, yardstick: Yardstick | None = None) -> list[PointRow]:
    """Every grid point of the snapshot as the table shows it, finished ones best first; a
    running one with the last heartbeat the snapshot holds."""
    return [point_row(point, results.heartbeats, maximize=maximize, yardstick=yardstick) for point in results.points]


def point_row(
    point: StoredPoint | FrozenTrial, heartbeats: dict[int, datetime] | None = None, *, maximize: bool | None = None,
    yardstick: Yardstick | None = None,
) -> PointRow:
    """A point as the results table shows it: a finished one with its statistics, any other with
    its repeats so far, a running one with its worker and, given `heartbeats`, its last beat.
    Given the direction (`maximize`), a finished point still improving says so; given the
    `yardstick`, its skill, and whether it does not beat the best baseline."""
    if isinstance(point, FrozenTrial):
        point = read_point(point)
    summary = point.summary if point.state == "done" else {"n": len(point.scores), "mean": point.summary.get("mean")}
    below = point.state == "done" and yardstick is not None and not yardstick.is_beaten_by(summary.get("mean"))
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
        note=_note(point, heartbeats or {}, maximize, below),
        skill=yardstick.skill(summary.get("mean")) if yardstick is not None else None,
        is_below_baseline=below,
    )


def _note(point: StoredPoint, heartbeats: dict[int, datetime], maximize: bool | None, is_below: bool) -> str:
    if point.state == "done":
        convergence = point_convergence(point, maximize=maximize) if maximize is not None else None
        flag = NOT_CONVERGED if convergence is not None and convergence.is_improving else ""
        return "; ".join(note for note in (BELOW_BASELINE if is_below else "", point.stopped, flag) if note)
    if point.state != "running":
        return point.fail_reason
    beat = heartbeats.get(point.number)
    seen = f", last heartbeat {beat:%Y-%m-%d %H:%M:%S}" if beat is not None else ""
    return f"{point.worker or 'unknown worker'}{seen}"
