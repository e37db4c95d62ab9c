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


class FakeClock:
    """time.monotonic and time.sleep of the connection module, advanced by sleeping alone."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        monkeypatch.setattr(storages.time, "monotonic", lambda: self.now)
        monkeypatch.setattr(storages.time, "sleep", self.sleep)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def lost_connection() -> Exception:
    """What Optuna raises when the server is gone during a commit: its generic wrapper over
    SQLAlchemy's error over the driver's."""
    driver = ConnectionRefusedError("connection to server at 127.0.0.1 port 5432 failed: Connection refused")
    wrapped = sqlalchemy.exc.OperationalError("COMMIT", {}, driver)
    error = optuna.exceptions.StorageInternalError(
        "An exception is raised during the commit. This typically happens due to invalid data in the commit, e.g. exceeding max length."
    )
    error.__cause__ = wrapped
    return error


def test_an_outage_is_given_one_budget_for_every_step_and_named_by_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(monkeypatch)
    monkeypatch.setattr(storages, "_OUTAGE", storages._Outage())

    def fails() -> None:
        raise lost_connection()

    with pytest.raises(storages.DatabaseLostError) as lost:
        storages.retrying(fails, what="recording repeat 3 of trial 0")
    assert clock.now - 1000.0 == pytest.approx(storages.OUTAGE_SECONDS)
    message = str(lost.value)
    assert message.startswith("lost the study database while recording repeat 3 of trial 0 (connection to server at")
    assert "exceeding max length" not in message and "for 120 s" in message
    # The next step of the same outage (putting the point back) tries once, not for another budget.
    tries_before = len(clock.sleeps)
    with pytest.raises(storages.DatabaseLostError):
        storages.retrying(fails, what="putting trial 0 back in the queue")
    assert len(clock.sleeps) == tries_before
    # Once the database answers, the next outage has a budget of its own again.
    assert storages.retrying(lambda: "stored", what="recording repeat 4 of trial 0") == "stored"
    started = clock.now
    with pytest.raises(storages.DatabaseLostError):
        storages.retrying(fails, what="recording repeat 5 of trial 0")
    assert clock.now - started == pytest.approx(storages.OUTAGE_SECONDS)


def test_a_try_that_waited_on_a_lock_spends_its_wait_from_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SQLite try can wait out a minute's busy timeout before it fails: the outage counts from
    when that try began, and the next try waits no longer than the budget has left."""
    clock = FakeClock(monkeypatch)
    monkeypatch.setattr(storages, "_OUTAGE", storages._Outage())
    monkeypatch.setenv("SWEEP_OUTAGE_SECONDS", "90")
    waits: list[int] = []

    def waits_then_fails() -> None:
        waits.append(storages._sqlite_busy_wait_ms())
        clock.now += waits[-1] / 1000  # SQLite's busy timeout, spent
        raise sqlalchemy.exc.OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))

    started = clock.now
    with pytest.raises(storages.DatabaseLostError, match=r"\(database is locked\), for 90 s"):
        storages.retrying(waits_then_fails, what="recording repeat 3 of trial 0")
    assert clock.now - started == pytest.approx(90)
    assert waits[0] == 60_000 and waits[1] == 29_500  # a minute, then what the budget left after 0.5 s
    storages._OUTAGE.over()
    monkeypatch.setenv("SWEEP_OUTAGE_SECONDS", "20")
    assert storages._sqlite_busy_wait_ms() == 20_000  # never past a budget shorter than a minute


def test_the_outage_budget_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEEP_OUTAGE_SECONDS", "20")
    assert storages.outage_budget() == 20.0
    monkeypatch.setenv("SWEEP_OUTAGE_SECONDS", "soon")
    with pytest.raises(storages.StorageError, match=r"\$SWEEP_OUTAGE_SECONDS is 'soon'; give it a number of seconds"):
        storages.outage_budget()


@pytest.mark.parametrize(("said", "starts", "fix"), [
    ("FATAL:  sorry, too many clients already", "the server has no connection left for", "max_connections"),
    ("no more connections allowed (max_client_conn)", "the connection pooler (PgBouncer) refuses more clients for", "max_client_conn"),
    ("query_wait_timeout", "the connection pooler (PgBouncer) found no free server connection for", "default_pool_size"),
    ("pgbouncer cannot connect to server", "the connection pooler (PgBouncer) cannot reach the server of", "[databases]"),
    ('duplicate key value violates unique constraint "pg_type_typname_nsp_index"', "two processes wrote the same row of",
     "--debug"),
])
def test_what_the_database_or_pooler_says_is_named_with_what_to_do(said: str, starts: str, fix: str) -> None:
    error = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception(said))
    line = storages.describe_database_error(error, "postgresql+psycopg://sweep:secret@db-host:6432/sweeps")
    assert line.startswith(f"{starts} the study database postgresql+psycopg://sweep:***@db-host:6432/sweeps ({said}); "), line
    assert fix in line and "secret" not in line


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_workers_that_keep_their_first_weights_at_once_make_the_table_once_and_keep_them_all(
    database: str, request: pytest.FixtureRequest
) -> None:
    import threading

    import numpy as np

    from sweep.store import weights

    url = request.getfixturevalue("sqlite_url" if database == "sqlite" else "postgres_url")
    workers = 8
    engines = [storages.build_storage(url).engine for _ in range(workers)]
    start = threading.Barrier(workers)
    failures: list[BaseException] = []

    def keep_first_weights(trial_id: int) -> None:
        start.wait()
        try:
            weights.store_weights(engines[trial_id], study_id=1, trial_id=trial_id, repeat=0, weights=[np.full(3, trial_id)])
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            failures.append(error)

    threads = [threading.Thread(target=keep_first_weights, args=(trial_id,)) for trial_id in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    kept = [weights.load_weights(engines[0], trial_id=trial_id, repeat=0) for trial_id in range(workers)]
    assert [int(arrays[0][0]) for arrays in kept] == list(range(workers))
    for engine in engines:
        engine.dispose()
