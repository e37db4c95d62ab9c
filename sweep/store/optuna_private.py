"""Optuna's private API: the one module of sweep that touches it.

Sweep needs a few things Optuna's public API does not offer: to claim a waiting trial atomically
(``study.ask()`` would take one, but also run the sampler and could not tell a lost race), to
read a trial as stored now, the parameters a trial was enqueued with, and the heartbeats Optuna
keeps for stale-trial detection. Each is one function here, and tests/test_optuna_private.py
pins each behaviour, so that an Optuna upgrade that changes one fails one clear test.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

__all__ = [
    "RDB_WRITING_METHODS",
    "engine_of",
    "fixed_params",
    "heartbeat_interval",
    "optuna_table_names",
    "last_heartbeats",
    "put_back",
    "record_heartbeat",
    "report",
    "report_in_one_transaction",
    "schema_versions",
    "set_user_attrs",
    "set_user_attrs_in_one_transaction",
    "storage_of",
    "url_of",
    "study_id_of",
    "stored_trial",
    "take",
    "waiting_trial_ids",
    "waiting_trial_params",
    "trial_id_of",
]

# RDBStorage's methods that write, the public ones and the private ones Optuna's cache calls
# instead. Each reads and writes in one transaction: setting a trial's state, for one, reads the
# state it replaces. tests/test_storage.py checks that every write Optuna makes runs in one.
RDB_WRITING_METHODS = (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "create_new_trial",
    "_create_new_trial",
    "set_trial_param",
    "_set_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "record_heartbeat",
    "upgrade",
)


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study reads and writes (under Optuna's cache, for an RDBStorage)."""
    return study._storage


def take(study: optuna.Study, waiting: FrozenTrial | int) -> Trial | None:
    """Mark a WAITING trial (or the trial of that id) RUNNING in one transaction; the trial, or
    None if another process took it first. Raises UpdateFinishedTrialError if it finished meanwhile."""
    trial_id = waiting if isinstance(waiting, int) else waiting._trial_id
    if not study._storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
        return None
    return Trial(study, trial_id)


def waiting_trial_ids(study: optuna.Study) -> list[int]:
    """The ids of the study's WAITING trials in the order they were enqueued, read with one small
    query (reading the trials themselves would load every attribute of each, at every claim)."""
    storage = getattr(study._storage, "_backend", study._storage)
    if not isinstance(storage, optuna.storages.RDBStorage):
        return [trial._trial_id for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))]
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(storage.scoped_session) as session:
        rows = (
            session.query(models.TrialModel.trial_id)
            .filter(models.TrialModel.study_id == study._study_id, models.TrialModel.state == TrialState.WAITING)
            .order_by(models.TrialModel.number)
            .all()
        )
    return [trial_id for (trial_id,) in rows]


def waiting_trial_params(study: optuna.Study) -> list[tuple[int, dict[str, Any]]]:
    """The ids of the study's WAITING trials in the order they were enqueued, each with the
    parameters it was enqueued with (empty where it has none), read with one small query."""
    storage = getattr(study._storage, "_backend", study._storage)
    if not isinstance(storage, optuna.storages.RDBStorage):
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        return [(trial._trial_id, fixed_params(trial)) for trial in waiting]
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    attribute = models.TrialSystemAttributeModel
    with _create_scoped_session(storage.scoped_session) as session:
        rows = (
            session.query(models.TrialModel.trial_id, attribute.value_json)
            .outerjoin(
                attribute, (attribute.trial_id == models.TrialModel.trial_id) & (attribute.key == "fixed_params")
            )
            .filter(models.TrialModel.study_id == study._study_id, models.TrialModel.state == TrialState.WAITING)
            .order_by(models.TrialModel.number)
            .all()
        )
    return [(trial_id, dict(json.loads(value) or {}) if value else {}) for trial_id, value in rows]


def set_user_attrs(trial: Trial, attrs: Mapping[str, Any]) -> None:
    """Set many user attributes of a trial in one transaction: Optuna's own commits each alone,
    some 28 round trips for a point's record. On a storage other than sweep's, one by one."""
    storage = getattr(trial.study._storage, "_backend", trial.study._storage)
    if hasattr(storage, "set_trial_user_attrs"):
        storage.set_trial_user_attrs(trial._trial_id, attrs)
        return
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def set_user_attrs_in_one_transaction(storage: optuna.storages.RDBStorage, trial_id: int, attrs: Mapping[str, Any]) -> None:
    """What RDBStorage.set_trial_user_attr does for one attribute, for all of them in two
    statements under one commit: the trial checked once (it must not be finished), the keys'
    old values deleted and the new ones inserted, as JSON as Optuna writes them."""
    import json

    import sqlalchemy as sa
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    table = models.TrialUserAttributeModel.__table__
    rows = [dict(trial_id=trial_id, key=key, value_json=json.dumps(value)) for key, value in attrs.items()]
    with _create_scoped_session(storage.scoped_session, True) as session:
        trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
        storage.check_trial_is_updatable(trial_id, trial.state)
        session.execute(sa.delete(table).where(table.c.trial_id == trial_id, table.c.key.in_(list(attrs))))
        if rows:
            session.execute(sa.insert(table), rows)


def report(trial: Trial, values: Mapping[int, float]) -> None:
    """Report many steps' values at once, as `trial.report` would one by one: in one transaction
    on sweep's storage (Optuna commits each alone: 30 round trips for a pack of 30 repeats). A
    step already reported keeps its value, as with `trial.report`."""
    new = {step: float(value) for step, value in values.items() if step not in trial._cached_frozen_trial.intermediate_values}
    if not new:
        return
    storage = getattr(trial.study._storage, "_backend", trial.study._storage)
    if not hasattr(storage, "set_trial_intermediate_values"):
        for step, value in new.items():
            trial.report(value, step=step)
        return
    storage.set_trial_intermediate_values(trial._trial_id, new)
    trial._cached_frozen_trial.intermediate_values.update(new)


def report_in_one_transaction(storage: optuna.storages.RDBStorage, trial_id: int, values: Mapping[int, float]) -> None:
    """What RDBStorage.set_trial_intermediate_value does for one step, for all of them under one
    commit: the trial checked once (it must not be finished), each step's row added or replaced."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(storage.scoped_session, True) as session:
        trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
        storage.check_trial_is_updatable(trial_id, trial.state)
        stored = {row.step: row for row in session.query(models.TrialIntermediateValueModel).filter_by(trial_id=trial_id)}
        for step, value in values.items():
            number, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(value)
            if step in stored:
                stored[step].intermediate_value, stored[step].intermediate_value_type = number, kind
            else:
                session.add(models.TrialIntermediateValueModel(
                    trial_id=trial_id, step=step, intermediate_value=number, intermediate_value_type=kind
                ))


def schema_versions(storage: optuna.storages.RDBStorage) -> tuple[str, str, bool]:
    """The schema version of the storage's tables, the one this Optuna writes, and whether this
    Optuna knows the first (it can upgrade them). Read one connection at a time: Optuna's own
    check holds a transaction open while it opens a second connection, and many processes that
    open a storage at once through a pooler then hold every server connection, each waiting for
    a second one."""
    current = storage.get_current_version()
    return current, storage.get_head_version(), current in storage.get_all_versions()


def put_back(trial: Trial) -> None:
    """Mark a RUNNING trial WAITING again, with everything it stored."""
    trial.study._storage.set_trial_state_values(trial._trial_id, state=TrialState.WAITING)


def stored_trial(trial: Trial) -> FrozenTrial:
    """The trial as stored now, not as this process last saw it."""
    return trial.study._storage.get_trial(trial._trial_id)


def fixed_params(trial: Trial | FrozenTrial) -> dict[str, Any]:
    """The parameters the trial was enqueued with (``enqueue_trial`` keeps them as a system
    attribute until the trial suggests them)."""
    if isinstance(trial, Trial):
        attrs = trial.study._storage.get_trial_system_attrs(trial._trial_id)
    else:
        attrs = trial.system_attrs
    return dict(attrs.get("fixed_params") or {})


def heartbeat_interval(study: optuna.Study) -> int | None:
    """The storage's heartbeat interval in seconds; None when heartbeats are off."""
    storage = study._storage
    return storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None


def record_heartbeat(trial: Trial) -> None:
    trial.study._storage.record_heartbeat(trial._trial_id)


def last_heartbeats(study: optuna.Study) -> dict[int, datetime]:
    """When each trial's worker last proved alive, by trial number (points never claimed: absent).

    Optuna reads its heartbeat table only to find stale trials; it is the one place they are kept.
    """
    from optuna.storages._rdb import models

    storage = getattr(study._storage, "_backend", study._storage)  # under Optuna's cache, the RDBStorage
    if not hasattr(storage, "scoped_session"):
        return {}
    numbers = {trial._trial_id: trial.number for trial in study.get_trials(deepcopy=False)}
    with storage.scoped_session() as session:
        rows = session.query(models.TrialHeartbeatModel).filter(models.TrialHeartbeatModel.trial_id.in_(list(numbers)))
        beats = {numbers[row.trial_id]: row.heartbeat for row in rows}
    storage.scoped_session.remove()
    return beats


def trial_id_of(trial: Trial | FrozenTrial) -> int:
    """The trial's id, unique in its database (its number is unique in its study alone)."""
    return trial._trial_id


def engine_of(storage: optuna.storages.BaseStorage):
    """The SQLAlchemy engine under an RDBStorage (or under Optuna's cache of one); None otherwise."""
    return getattr(getattr(storage, "_backend", storage), "engine", None)


def url_of(study: optuna.Study) -> str | None:
    """The URL of the study's database, password included (None for a storage that is no database)."""
    engine = engine_of(storage_of(study))
    return engine.url.render_as_string(hide_password=False) if engine is not None else None


def study_id_of(study: optuna.Study) -> int:
    """The study's id in its database."""
    return study._study_id


def optuna_table_names() -> list[str]:
    """The tables Optuna's storage makes (besides Alembic's version stamp)."""
    from optuna.storages._rdb import models

    return sorted(models.BaseModel.metadata.tables)
