"""The connection sweep builds: on SQLite, every write Optuna makes holds the write lock from the
start of its transaction, and nothing else takes it."""

from __future__ import annotations

import time

import optuna
import pytest
import sqlalchemy

from sweep.store import connection as storages
from sweep.store.connection import Liveness, open_storage

# Optuna warns when heartbeats are used outside study.optimize; sweep claims trials itself.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")


@pytest.mark.slow
def test_every_write_optuna_makes_on_sqlite_begins_under_the_write_lock(sqlite_url: str) -> None:
    # An Optuna upgrade that writes from a method sweep does not know of fails here, not in a
    # race between workers.
    storage = open_storage(sqlite_url, liveness=Liveness(heartbeat_interval=1, grace_period=2))
    unlocked: list[str] = []

    @sqlalchemy.event.listens_for(storage.engine, "before_cursor_execute")
    def _check(connection, cursor, statement: str, *_) -> None:
        verb = statement.lstrip().split()[0].upper()
        if verb in ("INSERT", "UPDATE", "DELETE") and not storages._WRITING.get():
            unlocked.append(statement.splitlines()[0])

    study = optuna.create_study(study_name="pin", storage=storage)
    study.set_user_attr("owner", "sweep")
    study.enqueue_trial({"x": 1.0}, user_attrs={"key": "x=1"})
    trial = study.ask()  # takes the enqueued trial: a state change that reads the old state
    trial.suggest_float("x", 0.0, 2.0)
    trial.set_user_attr("repeat/0000", {"seed": 1})
    trial.report(0.5, step=0)
    study.tell(trial, 0.5)
    study.optimize(lambda t: t.suggest_float("x", 0.0, 2.0), n_trials=2)  # with Optuna's own heartbeats
    silent = study.ask()
    storage.record_heartbeat(silent._trial_id)
    time.sleep(3.5)  # past the grace period, which the database counts in whole seconds
    optuna.storages.fail_stale_trials(study)  # fails it and queues a copy
    optuna.delete_study(study_name="pin", storage=storage)

    assert unlocked == []
