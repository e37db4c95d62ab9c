"""Each behaviour of Optuna's private API that sweep relies on, pinned: an Optuna upgrade that
changes one fails here, by name."""

from __future__ import annotations

import time

import optuna
import pytest
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
