"""Each behaviour of Optuna's private API that sweep relies on, pinned: an Optuna upgrade that
changes one fails here, by name."""

from __future__ import annotations

import time

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from sweep.store import optuna_private as private
from sweep.store.connection import Liveness, open_storage

# Optuna warns when heartbeats are used outside study.optimize; sweep claims trials itself.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")


@pytest.fixture
def study(sqlite_url: str) -> optuna.Study:
    storage = open_storage(sqlite_url, liveness=Liveness(heartbeat_interval=1, grace_period=2))
    return optuna.create_study(study_name="pin", storage=storage)


def test_the_storage_of_a_study_is_the_one_it_was_opened_on(study: optuna.Study) -> None:
    names = optuna.get_all_study_names(private.storage_of(study))
    assert names == ["pin"]


def test_taking_a_waiting_trial_marks_it_running_once(study: optuna.Study) -> None:
    study.enqueue_trial({"x": 1.0})
    waiting = study.get_trials(states=(TrialState.WAITING,))[0]
    trial = private.take(study, waiting)
    assert trial is not None and trial.number == waiting.number
    assert study.get_trials()[0].state == TrialState.RUNNING
    assert private.take(study, waiting) is None  # a second process loses the race
    study.tell(trial, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        private.take(study, waiting)


def test_a_trial_put_back_waits_with_what_it_stored(study: optuna.Study) -> None:
    study.enqueue_trial({"x": 1.0})
    trial = private.take(study, study.get_trials()[0])
    trial.report(0.5, step=3)
    private.put_back(trial)
    (again,) = study.get_trials()
    assert again.state == TrialState.WAITING and again.intermediate_values == {3: 0.5}


def test_a_stored_trial_is_read_afresh_and_keeps_its_enqueued_parameters(study: optuna.Study) -> None:
    study.enqueue_trial({"length": 4, "mode": "stateful"})
    trial = private.take(study, study.get_trials()[0])
    assert private.fixed_params(trial) == {"length": 4, "mode": "stateful"}
    assert private.fixed_params(study.get_trials()[0]) == {"length": 4, "mode": "stateful"}
    other = optuna.load_study(study_name="pin", storage=private.storage_of(study))
    other.get_trials()  # another handle writes; this one must see it
    optuna.trial.Trial(other, trial._trial_id).report(0.25, step=0)
    assert private.stored_trial(trial).intermediate_values == {0: 0.25}


@pytest.mark.parametrize("storage", ["sweep", "optuna"])
def test_many_steps_are_reported_at_once_as_one_by_one(sqlite_url: str, storage: str) -> None:
    opened = open_storage(sqlite_url) if storage == "sweep" else optuna.storages.RDBStorage(sqlite_url)
    study = optuna.create_study(study_name="pin", storage=opened, direction="maximize")
    trial = study.ask()
    trial.report(0.5, step=1)
    private.report(trial, {0: 0.25, 1: 0.75, 2: float("inf")})
    assert private.stored_trial(trial).intermediate_values == {0: 0.25, 1: 0.5, 2: float("inf")}  # step 1 kept
    private.report(trial, {3: 0.125})
    assert study.get_trials()[0].intermediate_values == {0: 0.25, 1: 0.5, 2: float("inf"), 3: 0.125}
    study.tell(trial, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        private.report(optuna.trial.Trial(study, trial._trial_id), {4: 1.0})


@pytest.mark.slow
def test_heartbeats_are_recorded_and_read_back_by_trial_number(study: optuna.Study) -> None:
    assert private.heartbeat_interval(study) == 1
    first, second = study.ask(), study.ask()
    private.record_heartbeat(second)
    beats = private.last_heartbeats(study)
    assert list(beats) == [second.number] and first.number not in beats
    time.sleep(3.5)  # past the grace period, which the database counts in whole seconds
    optuna.storages.fail_stale_trials(study)  # Optuna finds the silent trial by its heartbeat
    assert study.get_trials()[second.number].state == TrialState.FAIL


def test_heartbeats_are_off_without_liveness(sqlite_url: str) -> None:
    study = optuna.create_study(study_name="quiet", storage=open_storage(sqlite_url))
    assert private.heartbeat_interval(study) is None and private.last_heartbeats(study) == {}


def test_every_writing_method_named_exists_on_optunas_storage() -> None:
    missing = [name for name in private.RDB_WRITING_METHODS if not hasattr(optuna.storages.RDBStorage, name)]
    assert missing == []


def test_many_user_attributes_are_set_in_one_transaction_as_optuna_sets_one(study: optuna.Study) -> None:
    study.enqueue_trial({"x": 1.0})
    trial = private.take(study, study.get_trials()[0])
    trial.set_user_attr("mean", 0.1)
    commits: list[str] = []
    engine = private.engine_of(private.storage_of(study))
    sqlalchemy.event.listen(engine, "commit", lambda connection: commits.append("commit"))
    private.set_user_attrs(trial, {"mean": 0.5, "scores": [0.5, 0.5], "ci95_low": None})
    assert commits == ["commit"]
    assert study.get_trials()[0].user_attrs == {"mean": 0.5, "scores": [0.5, 0.5], "ci95_low": None}
    study.tell(trial, 0.5)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        private.set_user_attrs(trial, {"mean": 0.7})


def test_waiting_trial_ids_come_in_the_order_they_were_enqueued(study: optuna.Study) -> None:
    for x in range(5):
        study.enqueue_trial({"x": float(x)})
    taken = private.take(study, study.get_trials()[2])
    ids = private.waiting_trial_ids(study)
    assert ids == [t._trial_id for t in study.get_trials() if t.state == TrialState.WAITING]
    assert taken is not None and taken._trial_id not in ids and len(ids) == 4


def test_waiting_trials_come_with_the_parameters_they_were_enqueued_with(study: optuna.Study) -> None:
    for x in range(4):
        study.enqueue_trial({"x": float(x), "mode": "stateful"})
    private.take(study, study.get_trials()[1])
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING))  # enqueued with no parameters
    waiting = private.waiting_trial_params(study)
    assert [trial_id for trial_id, _ in waiting] == private.waiting_trial_ids(study)
    assert [params for _, params in waiting] == [{"x": x, "mode": "stateful"} for x in (0.0, 2.0, 3.0)] + [{}]


def test_the_schema_versions_of_a_new_storage_are_this_optuna_s(study: optuna.Study) -> None:
    current, head, known = private.schema_versions(private.storage_of(study)._backend)
    assert current == head and known


def test_a_storage_opens_on_a_pool_of_one_connection(postgres_url: str) -> None:
    """Behind a pooler, a process may get one server connection at a time: opening the storage
    must never need a second while it holds the first (Optuna's own schema check does)."""
    from sweep.store.connection import build_storage

    open_storage(postgres_url)  # the tables
    storage = build_storage(postgres_url, engine_kwargs={"pool_size": 1, "max_overflow": 0, "pool_timeout": 5})
    assert optuna.get_all_study_names(storage) == []
