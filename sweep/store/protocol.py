"""Sweep's studies and its trial protocol: creating and resuming studies, enqueuing the grid,
and claiming, recording, failing and releasing trials.

One grid point is one Optuna trial. The whole grid is enqueued up front, one WAITING trial per
point with its key, so its size and progress are plain to see. A trial's repeats are stored as
they finish, as intermediate values at step = repeat index, so an interrupted trial goes back to
WAITING with them and the next run trains only the repeats still missing. This module says when
and in which transaction things are written; what is written is :mod:`sweep.store.record`'s
business, and how the database is reached :mod:`sweep.store.connection`'s. Every write retries
itself through a dropped connection.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import Trial, TrialState
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from sweep.errors import SpecError, StorageError
from sweep.spec import GridPoint, Spec, is_given, spec_from_dict
from sweep.store import record
from sweep.store.connection import WORKER, DatabaseLostError, database_lock, database_name, quiet_experimental, retrying
from sweep.store.connection import connections_by_process as counted_connections
from sweep.store.optuna_private import (
    engine_of,
    fixed_params,
    heartbeat_interval,
    last_heartbeats,
    put_back,
    report,
    set_user_attrs,
    storage_of,
    stored_trial,
    study_id_of,
    take,
    trial_id_of,
    waiting_trial_ids,
    waiting_trial_params,
    url_of,
)
from sweep.store import data_files
from sweep.store import weights as kept

__all__ = [
    "as_resumed",
    "claim_next",
    "create_or_resume",
    "fail_trial",
    "finish_trial",
    "load_study",
    "connections_by_process",
    "database_of",
    "delete_kept_data_files",
    "delete_kept_weights",
    "keep_data_files",
    "kept_data_files",
    "load_kept_data_files",
    "keep_weights_of_one",
    "kept_weights",
    "record_repeat",
    "restore_missing_scores",
    "stored_repeats",
    "store_suggestion",
    "release_trial",
    "study_spec",
]

_T = TypeVar("_T")


def store_suggestion(study: optuna.Study, suggestion: dict[str, Any]) -> None:
    """Keep the data's suggestion with a study whose grid lengths came from it."""
    if record.SUGGESTION not in study.user_attrs:
        retrying(lambda: study.set_user_attr(record.SUGGESTION, suggestion), what="storing the suggested lengths")


def load_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    """A study that sweep made; any other is refused, and left as it is."""
    study = _load_any_study(storage, name)
    if not record.is_sweep_study(study.user_attrs):
        raise StorageError(
            f"study {name!r} was not made by sweep (it has no sweep marker), and sweep leaves it alone; "
            "check the name, or remove it with Optuna (optuna delete-study) if it is yours"
        )
    return study


def study_names(storage: optuna.storages.BaseStorage) -> list[tuple[str, bool]]:
    """Every study in the storage by name, and whether sweep made it."""
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    return sorted((summary.study_name, record.is_sweep_study(summary.user_attrs)) for summary in summaries)


def _load_any_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler())
    except KeyError:
        names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False))
        known = f"studies there: {', '.join(names)}" if names else "the storage holds no study yet"
        raise StorageError(f"no study named {name!r} in this storage ({known}); check --storage or the name") from None


def study_exists(study: optuna.Study) -> bool:
    """Whether the study is still in its storage (another command may have deleted it)."""
    try:
        return study.study_name in optuna.get_all_study_names(storage_of(study))
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError):
        return True  # cannot tell: let the first error speak


def study_spec(study: optuna.Study) -> Spec:
    """The spec a study was made with, in today's form (record.SPEC_UPGRADES)."""
    version = record.format_version(study.user_attrs)
    if isinstance(version, int) and version > record.FORMAT_VERSION:
        raise StorageError(
            f"study {study.study_name!r} was made by a newer sweep (format {version}; this one reads up to "
            f"{record.FORMAT_VERSION}); upgrade sweep on this machine to work on it"
        )
    if not record.has_spec(study.user_attrs):
        raise StorageError(f"study {study.study_name!r} was not made by sweep (it has no spec); pick another name")
    stored = record.raw_spec(study.user_attrs)
    if stored is None:
        raise StorageError(
            f"study {study.study_name!r} has a damaged spec (its stored settings are not a study's settings); "
            f"restore it, or remove the study (sweep delete {study.study_name})"
        )
    try:
        return spec_from_dict(record.upgraded_spec(stored), source=f"study {study.study_name!r}")
    except SpecError as error:
        raise StorageError(f"{error} (the stored spec is damaged: restore it, or sweep delete {study.study_name})") from None


def as_resumed(storage: optuna.storages.BaseStorage, spec: Spec) -> Spec:
    """`spec` as it resumes its study: a study file that leaves the validation split to its
    default resumes a study made before the split with the split off, as that study was made."""
    if is_given(spec, "validation"):
        return spec
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if spec.name not in names:
        return spec
    study = _load_any_study(storage, spec.name)
    stored = record.raw_spec(study.user_attrs)
    if not record.is_sweep_study(study.user_attrs) or stored is None or "validation" in stored:
        return spec  # not sweep's, damaged, or made since the split: compared as it is
    return spec.model_copy(update={"validation": study_spec(study).validation})


def create_or_resume(
    storage: optuna.storages.BaseStorage,
    spec: Spec,
    *,
    fingerprint: str,
    points: Sequence[GridPoint],
    sequence_length: int | None = None,
    encoding: dict | None = None,
    baselines: dict | None = None,
) -> optuna.Study:
    """The study of `spec`, created with its whole grid enqueued, or resumed if it exists.

    Resuming checks that the stored spec and data fingerprint match and enqueues only the grid
    points that have no trial yet, so running twice never adds a point twice. `encoding` (class
    names, standardization) is stored with a new study; `baselines` (the naive forecasts' scores)
    with any study that has none yet.
    """
    ready = _ready_study(storage, spec, fingerprint=fingerprint, points=points, baselines=baselines)
    if ready is not None:
        return ready
    with database_lock(storage, spec.name):
        study = _create_or_resume(
            storage, spec, fingerprint=fingerprint, points=points, sequence_length=sequence_length, encoding=encoding
        )
        if baselines is not None and not record.has_baselines(study.user_attrs):
            study.set_user_attr(*record.baselines_attr(baselines))
        return study


def _ready_study(
    storage: optuna.storages.BaseStorage,
    spec: Spec,
    *,
    fingerprint: str,
    points: Sequence[GridPoint],
    baselines: dict | None,
) -> optuna.Study | None:
    """The study, where it exists with this spec and data and lacks nothing create would add;
    else None. Read without the lock: a hundred workers that join a study at once find it
    complete in parallel, instead of taking the lock one after another to write nothing."""
    if spec.name not in optuna.get_all_study_names(storage):
        return None
    study = _load_any_study(storage, spec.name)
    if not record.is_sweep_study(study.user_attrs) or not record.has_spec(study.user_attrs):
        return None
    _check_same_study(study, spec, fingerprint)
    if record.grid_size(study.user_attrs) != len(points):
        return None
    if baselines is not None and not record.has_baselines(study.user_attrs):
        return None
    taken = record.keys_taken(study.get_trials(deepcopy=False))
    return study if all(point.key in taken for point in points) else None


def _create_or_resume(
    storage: optuna.storages.BaseStorage,
    spec: Spec,
    *,
    fingerprint: str,
    points: Sequence[GridPoint],
    sequence_length: int | None,
    encoding: dict | None,
) -> optuna.Study:
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if spec.name in names:
        study = _load_any_study(storage, spec.name)
        if not record.is_sweep_study(study.user_attrs):
            raise StorageError(
                f"study {spec.name!r} exists but was not made by sweep, and sweep leaves it alone; "
                "give this one another name (--name)"
            )
        _check_same_study(study, spec, fingerprint)
    else:
        study = optuna.create_study(
            study_name=spec.name,
            storage=storage,
            direction=spec.direction,
            sampler=optuna.samplers.RandomSampler(),
        )
    if not record.has_spec(study.user_attrs):
        attrs = record.study_attrs(spec, fingerprint=fingerprint, sequence_length=sequence_length, encoding=encoding)
        for name, value in attrs.items():
            study.set_user_attr(name, value)
    if record.grid_size(study.user_attrs) != len(points):
        # Stored before the points, so that a grid whose enqueuing was cut short shows as such.
        study.set_user_attr(*record.grid_size_attr(len(points)))
    enqueue_grid(study, points)
    return study


def _check_same_study(study: optuna.Study, spec: Spec, fingerprint: str) -> None:
    # Read as a spec: keys added since the study was stored take the values it was made with.
    stored = study_spec(study).model_dump(mode="json")
    wanted = spec.model_dump(mode="json")
    difference = _first_difference(stored, wanted)
    if difference is not None:
        key, old, new = difference
        raise StorageError(
            f"study {spec.name!r} already exists with {key} = {old!r}, not {new!r}; resume it as it is, "
            f"or give this one another name (--name) or remove the old one (sweep delete {spec.name})"
        )
    stored_fingerprint = record.fingerprint(study.user_attrs)
    if stored_fingerprint != fingerprint:
        raise StorageError(
            f"study {spec.name!r} was made with different data (fingerprint "
            f"{stored_fingerprint}, here {fingerprint}); use the same data file or another name"
        )


def _first_difference(old: Any, new: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new)):
            found = _first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
            if found is not None:
                return found
        return None
    return None if old == new else (prefix.rstrip("."), old, new)


def enqueue_grid(study: optuna.Study, points: Sequence[GridPoint]) -> int:
    """Enqueue the grid points that have no trial yet; returns how many were added."""
    taken = record.keys_taken(study.get_trials(deepcopy=False))
    missing = [point for point in points if point.key not in taken]
    for point in missing:
        study.enqueue_trial(point.params, user_attrs=record.grid_point_attrs(point.key))
    return len(missing)


def claim_next(
    study: optuna.Study, *, fewest_repeats_first: bool = False, prefer: Callable[[dict[str, Any]], int] | None = None
) -> Trial | None:
    """Take the next WAITING trial, marking it RUNNING; None when no point is waiting.

    The claim reads and updates the trial in one transaction that locks its row (or, on SQLite,
    the database), so two workers never take the same point. With `fewest_repeats_first` (a
    race), the point with the fewest finished repeats comes first, so that every point reaches
    a stage before any goes past it. With `prefer`, the points it ranks lowest, by the
    parameters they were enqueued with, come first, each rank in the queue's order.
    """
    return retrying(lambda: _claim_next(study, fewest_repeats_first, prefer), what="claiming a grid point")


def count_waiting(study: optuna.Study) -> int:
    """How many points are waiting to be claimed."""
    return retrying(lambda: len(waiting_trial_ids(study)), what="counting the waiting grid points")


def _claim_next(study: optuna.Study, fewest_repeats_first: bool, prefer: Callable[[dict[str, Any]], int] | None) -> Trial | None:
    if fewest_repeats_first:
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        queue = [t._trial_id for t in sorted(waiting, key=lambda t: (len(record.finished_repeats(t)), t.number))]
    elif prefer is not None:
        queue = [trial_id for trial_id, params in sorted(waiting_trial_params(study), key=lambda item: prefer(item[1]))]
    else:
        queue = waiting_trial_ids(study)
    for trial_id in _spread_after_the_first(queue):
        try:
            trial = take(study, trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        if trial is not None:
            set_user_attrs(trial, record.claim(stored_trial(trial), worker=WORKER))
            return trial
    return None


# A worker that lost the first waiting point to another goes on from a random one of the next
# CLAIM_SPREAD, instead of queueing behind every other worker on each point's row lock in turn.
CLAIM_SPREAD = 16


def _spread_after_the_first(queue: list[int]) -> list[int]:
    """The first point, then the rest from a random place among the next few, all in the end: a
    worker alone takes points in their order, workers in a crowd scatter after one lost race."""
    if len(queue) < 3:
        return queue
    rest = queue[1:]
    start = random.randrange(min(len(rest), CLAIM_SPREAD))
    return [queue[0], *rest[start:], *rest[:start]]


def requeue_failed(study: optuna.Study) -> tuple[list[str], list[str]]:
    """Queue again every failed grid point (its latest trial), with its repeats.

    Returns the keys requeued, and those left failed because they diverged: the same settings
    and seeds would diverge again.
    """
    with quiet_experimental():
        retry = RetryHeartbeatStaleTrialCallback(inherit_intermediate_values=True)
    current = record.current_trials(study)
    failed = [trial for trial in current if trial.state == TrialState.FAIL and not record.is_set_aside(trial)]
    diverged = [trial for trial in failed if record.is_diverged(trial)]
    for trial in failed:
        if trial not in diverged:
            retry(study, trial)
    keys = [record.key_of(trial) for trial in failed if trial not in diverged]
    return keys, [record.key_of(trial) for trial in diverged]


def requeue_stale(study: optuna.Study) -> None:
    """Fail the points whose worker stopped beating and queue them again with their repeats."""
    def fail_stale() -> None:
        with quiet_experimental():
            optuna.storages.fail_stale_trials(study)

    retrying(fail_stale, what="checking for dead workers")


def others_alive(study: optuna.Study) -> bool:
    """Queue again the points of dead workers; True while a point is waiting or has a live worker."""
    requeue_stale(study)
    active = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    if any(trial.state == TrialState.WAITING for trial in active):
        return True
    # A point claimed before heartbeats were on never goes stale; do not wait for it forever.
    beating = last_heartbeats(study)
    return any(trial.number in beating for trial in active)


def liveness_interval(study: optuna.Study) -> int | None:
    """Seconds between a claimed point's heartbeats; None with heartbeats off."""
    return heartbeat_interval(study)


def suggest_point(trial: Trial, spec: Spec, points: Sequence[GridPoint]) -> GridPoint | None:
    """Record the trial's grid point as its parameters, with distributions that span the grid.

    None for a trial that is none of the grid's points (one enqueued by hand with Optuna).
    """
    fixed = retrying(lambda: fixed_params(trial), what=f"reading trial {trial.number}")
    keys = {point.key for point in points}
    if "length" not in fixed or "mode" not in fixed or GridPoint.from_params(fixed).key not in keys:
        return None
    for name in fixed:
        values = sorted({point.params[name] for point in points if name in point.params})
        if isinstance(values[0], bool) or isinstance(values[0], str):
            trial.suggest_categorical(name, values)
        elif isinstance(values[0], int):
            trial.suggest_int(name, values[0], max(values[-1], values[0]))
        else:
            trial.suggest_float(name, values[0], values[-1])
    return GridPoint.from_params(fixed)


def record_repeat(
    trial: Trial, *, repeat: int, score: float, details: Mapping[str, Any], weights: Sequence[np.ndarray] = ()
) -> None:
    """Store one finished repeat: see :func:`record_repeats`."""
    record_repeats(trial, [FinishedRepeat(repeat=repeat, score=score, details=details, weights=weights)])


@dataclass(frozen=True)
class FinishedRepeat:
    """A repeat to record: its index, objective score, every metric, and its weights (empty: not kept)."""

    repeat: int
    score: float
    details: Mapping[str, Any]
    weights: Sequence[np.ndarray] = ()


def record_repeats(trial: Trial, repeats: Sequence[FinishedRepeat]) -> None:
    """Store finished repeats of a trial: their weights (where kept), in one transaction, then every
    metric as attributes, in one, then the objective scores as intermediate values, in one (in that
    order: a recorded repeat always has its weights, and :func:`restore_missing_scores` can mend a
    cut between the last two). A pack's repeats cost three transactions, where one at a time they
    cost three each."""
    if not repeats:
        return
    engine = engine_of(storage_of(trial.study))
    numbers = [finished.repeat for finished in repeats]
    named = f"repeat {numbers[0]}" if len(numbers) == 1 else f"repeats {', '.join(map(str, numbers))}"
    kept_weights = {finished.repeat: finished.weights for finished in repeats if finished.weights}
    attributes = {record.repeat_attr(finished.repeat): dict(finished.details) for finished in repeats}
    try:
        if kept_weights and engine is not None:
            retrying(
                lambda: kept.store_many_weights(
                    engine, study_id=study_id_of(trial.study), trial_id=trial_id_of(trial), weights=kept_weights
                ),
                what=f"keeping the weights of {named} of trial {trial.number}",
            )
        retrying(lambda: set_user_attrs(trial, attributes), what=f"recording {named} of trial {trial.number}")
    except DatabaseLostError as error:
        raise error.but(n_unrecorded=len(repeats)) from None
    # Recorded from here: a score not reported is restored from its attribute.
    retrying(
        lambda: report(trial, {finished.repeat: finished.score for finished in repeats}),
        what=f"recording the scores of {named} of trial {trial.number}",
    )


def restore_missing_scores(trial: Trial, metric: str) -> None:
    """Report the score of every stored repeat that has none: a worker killed between a repeat's
    two writes leaves its attribute (written first, with every metric) without the score."""
    def restore() -> None:
        stored = stored_trial(trial)
        missing = {
            repeat: details[metric] for repeat, details in sorted(record.finished_repeats(stored).items())
            if repeat not in stored.intermediate_values
        }
        report(trial, missing)

    retrying(restore, what=f"reading trial {trial.number}")


def stored_repeats(trial: Trial) -> dict[int, dict[str, Any]]:
    """The repeats stored on a trial now, by every worker that held it."""
    return record.finished_repeats(retrying(lambda: stored_trial(trial), what=f"reading trial {trial.number}"))


def finish_trial(study: optuna.Study, trial: Trial, *, summary: Mapping[str, Any], value: float) -> None:
    """Store the point's summary and complete it; safe to repeat after a lost connection."""

    def finish() -> None:
        if stored_trial(trial).state.is_finished():
            return
        set_user_attrs(trial, summary)
        study.tell(trial, value, skip_if_finished=True)

    retrying(finish, what=f"recording the result of trial {trial.number}")


def set_aside(study: optuna.Study, trial: Trial) -> None:
    """Fail a trial that is none of the grid's points, for good: requeue leaves it be."""
    fixed = retrying(lambda: fixed_params(trial), what=f"reading trial {trial.number}")
    retrying(lambda: trial.set_user_attr(*record.set_aside_attr()), what=f"setting aside trial {trial.number}")
    fail_trial(study, trial, f"set aside: parameters {fixed} are none of this study's grid points")


def fail_trial(study: optuna.Study, trial: Trial, reason: str, *, kind: str = "") -> None:
    """Fail the trial with its reason (and kind: record.DIVERGED, record.ERRORED); safe to repeat
    after a lost connection."""

    def fail() -> None:
        if stored_trial(trial).state.is_finished():
            return
        for name, value in record.failure(reason, kind=kind).items():
            trial.set_user_attr(name, value)
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)

    retrying(fail, what=f"recording the failure of trial {trial.number}")


def release_trial(study: optuna.Study, trial: Trial) -> None:
    """Put a claimed trial back in the queue, with the repeats it finished, for a later run."""
    retrying(lambda: put_back(trial), what=f"putting trial {trial.number} back in the queue")



def kept_weights(study: optuna.Study, *, number: int, repeat: int) -> list[np.ndarray] | None:
    """The weights kept of a repeat of the point stored as trial `number`; None where none are."""
    trial_id = _trial_id(study, number)
    return _in_database(
        study, lambda engine: kept.load_weights(engine, trial_id=trial_id, repeat=repeat),
        what=f"reading the weights of trial {number}", otherwise=None,
    )


def keep_weights_of_one(study: optuna.Study, *, number: int) -> int:
    """Drop the kept weights of every point but the one stored as trial `number`; how many repeats' were dropped."""
    trial_id = _trial_id(study, number)
    return _in_database(
        study, lambda engine: kept.keep_only(engine, study_id=study_id_of(study), trial_id=trial_id),
        what="dropping kept weights", otherwise=0,
    )


def delete_kept_weights(study: optuna.Study) -> None:
    """Drop every weight the study kept (before the study itself is deleted)."""
    _in_database(
        study, lambda engine: kept.delete_study_weights(engine, study_id=study_id_of(study)),
        what="deleting kept weights", otherwise=None,
    )


def keep_data_files(study: optuna.Study, *, fingerprint: str, files: dict[str, bytes]) -> None:
    """Keep the study's data files in its database under their data fingerprint."""
    _in_database(
        study, lambda engine: data_files.store_files(engine, fingerprint=fingerprint, files=files),
        what="keeping the data files", otherwise=None,
    )


def kept_data_files(study: optuna.Study, *, fingerprint: str) -> dict[str, int]:
    """The data files kept for a fingerprint in the study's database, with their sizes; empty where none are."""
    return _in_database(
        study, lambda engine: data_files.kept_files(engine, fingerprint=fingerprint),
        what="reading the kept data files", otherwise={},
    )


def load_kept_data_files(study: optuna.Study, *, fingerprint: str) -> dict[str, bytes]:
    """The data files kept for a fingerprint, as they were read at create."""
    return _in_database(
        study, lambda engine: data_files.load_files(engine, fingerprint=fingerprint),
        what="reading the kept data files", otherwise={},
    )


def delete_kept_data_files(study: optuna.Study) -> None:
    """Drop the data files the study kept (before the study itself is deleted), unless another
    study in the database was made from the same data."""
    fingerprint = record.fingerprint(study.user_attrs)
    if fingerprint is None:
        return
    others = optuna.get_all_study_summaries(storage_of(study), include_best_trial=False)
    if any(record.fingerprint(other.user_attrs) == fingerprint for other in others if other.study_name != study.study_name):
        return
    _in_database(
        study, lambda engine: data_files.delete_files(engine, fingerprint=fingerprint),
        what="deleting the kept data files", otherwise=None,
    )


def connections_by_process(study: optuna.Study) -> dict[str, int] | None:
    """The connections sweep processes hold to the study's PostgreSQL database (None elsewhere)."""
    return _in_database(study, counted_connections, what="counting connections", otherwise=None)


def _in_database(study: optuna.Study, action: Callable[[Engine], _T], *, what: str, otherwise: _T) -> _T:
    """`action` on the engine of the study's database, retried through a dropped connection;
    `otherwise` for a study kept in memory, which has no database for sweep's own tables."""
    engine = engine_of(storage_of(study))
    if engine is None:
        return otherwise
    return retrying(lambda: action(engine), what=what)


def _trial_id(study: optuna.Study, number: int) -> int:
    storage = storage_of(study)
    return retrying(
        lambda: storage.get_trial_id_from_study_id_trial_number(study_id_of(study), number), what=f"reading trial {number}"
    )


def database_of(study: optuna.Study) -> str | None:
    """The study's database as messages name it (None for a storage that is no database)."""
    url = url_of(study)
    return database_name(url) if url is not None else None

