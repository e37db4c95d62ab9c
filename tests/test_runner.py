"""Working through a study: resuming, interrupting, failing one point and going on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
from optuna.trial import TrialState

from sweep.store import protocol, record
from sweep.store.connection import open_storage
from sweep.data.problems import load_data
from sweep.run.packs import MAX_PACK_PARAMETERS, split_into_packs
from sweep.run.runner import run_study
from sweep.spec import grid_points, load_spec, spec_from_dict


def prepared(path: Path, storage_url: str):
    spec = load_spec(path)
    dataset = load_data(spec)
    points = grid_points(spec, dataset.sequence_length)
    storage = open_storage(storage_url)
    study = protocol.create_or_resume(storage, spec, fingerprint=dataset.fingerprint, points=points)
    return spec, dataset, points, study


def repeat_details(*, validation_score: float) -> dict:
    """A stored repeat's details: every metric on the test data and on the validation data."""
    test = {"accuracy/sample": 0.9, "accuracy/sequence": 0.5, "log_loss/sample": 0.7, "log_loss/sequence": 0.7}
    validation = {f"validation/{name}": value for name, value in test.items()}
    return {"seed": 1, "seconds": 0.5, **test, **validation, "validation/accuracy/sample": validation_score}


def test_creating_twice_enqueues_each_point_once(tiny_study: Path, sqlite_url: str) -> None:
    prepared(tiny_study, sqlite_url)
    _, _, points, study = prepared(tiny_study, sqlite_url)
    trials = study.get_trials()
    assert len(trials) == len(points) == 4
    assert all(t.state == TrialState.WAITING for t in trials)
    assert [t.user_attrs["key"] for t in trials] == [p.key for p in points]


def test_a_claim_takes_the_points_it_prefers_first_each_rank_in_the_queue_s_order(tiny_study: Path, sqlite_url: str) -> None:
    _, _, points, study = prepared(tiny_study, sqlite_url)
    claimed = []
    while (trial := protocol.claim_next(study, prefer=lambda params: 0 if params["mode"] == "stateful" else 1)) is not None:
        claimed.append(trial.user_attrs["key"])
    by_mode = sorted(points, key=lambda point: point.mode != "stateful")
    assert claimed == [point.key for point in by_mode] and {point.mode for point in points} == {"stateless", "stateful"}


@pytest.mark.slow
def test_a_released_point_keeps_its_repeats_and_trains_only_the_missing_ones(tiny_study: Path, sqlite_url: str) -> None:
    spec, dataset, points, study = prepared(tiny_study, sqlite_url)
    trial = protocol.claim_next(study)
    marker = repeat_details(validation_score=0.123)
    protocol.record_repeat(trial, repeat=1, score=0.123, details=marker)
    protocol.release_trial(study, trial)
    assert study.get_trials()[0].state == TrialState.WAITING

    run_study(study, spec, dataset, points=points, n_workers=1)

    first = study.get_trials()[0]
    assert first.state == TrialState.COMPLETE
    assert first.intermediate_values[1] == 0.123
    assert first.user_attrs["seeds"][1] == 1
    assert sorted(first.intermediate_values) == [0, 1, 2]
    assert len(study.get_trials()) == 4


@pytest.mark.slow
def test_a_repeat_stored_without_its_score_gets_its_score_back_not_a_second_training(
    tiny_study: Path, sqlite_url: str
) -> None:
    # A worker killed between a repeat's two writes (its attribute, then its intermediate value)
    # leaves the repeat with no score; the next run restores the score from the attribute.
    spec, dataset, points, study = prepared(tiny_study, sqlite_url)
    trial = protocol.claim_next(study)
    marker = repeat_details(validation_score=0.123)
    trial.set_user_attr(f"{record.REPEAT_PREFIX}0001", marker)
    protocol.release_trial(study, trial)

    run_study(study, spec, dataset, points=points, n_workers=1)

    first = study.get_trials()[0]
    assert sorted(first.intermediate_values) == [0, 1, 2]
    assert first.intermediate_values[1] == 0.123 and first.user_attrs["seeds"][1] == 1


@pytest.mark.slow
def test_a_diverging_point_fails_with_its_reason_and_the_sweep_goes_on(sqlite_url: str) -> None:
    spec = spec_from_dict({
        "name": "diverges", "repeats": 2,
        "problem": {"kind": "lag-echo", "length": 6, "lag": 1, "n_train": 16, "n_test": 8},
        "grid": {"lengths": [6], "modes": ["stateless"], "learning_rate": [1e12, 0.01]},
        "training": {"optimizer": "sgd", "epochs": 3, "batch_size": 8},
        "objective": {"metric": "rmse"},
    })
    dataset = load_data(spec)
    points = grid_points(spec, dataset.sequence_length)
    study = protocol.create_or_resume(open_storage(sqlite_url), spec, fingerprint=dataset.fingerprint, points=points)
    run_study(study, spec, dataset, points=points, n_workers=1)
    failed, done = sorted(study.get_trials(), key=lambda t: t.params["learning_rate"], reverse=True)
    assert failed.state == TrialState.FAIL and "lower training.learning_rate" in failed.user_attrs["fail_reason"]
    assert done.state == TrialState.COMPLETE and len(done.intermediate_values) == 2


def study_on_disk(tmp_path: Path, name: str, *, repeats: int, lengths: str) -> tuple[Path, str]:
    study_file = tmp_path / "s.toml"
    study_file.write_text(
        f'name = "{name}"\nrepeats = {repeats}\n[problem]\nkind = "echo-first"\nlength = 20\nn_train = 400\n'
        f'[grid]\nlengths = {lengths}\nmodes = ["stateful"]\n'
    )
    return study_file, f"sqlite:///{tmp_path / 'sweep.db'}"


def start_sweep(study_file: Path, url: str, **popen: object) -> subprocess.Popen:
    """A sweep that trains one network at a time on one worker, so that repeats finish one by one."""
    command = [sys.executable, "-m", "sweep", "run", str(study_file), "--workers", "1", "--reference", "--storage", url]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


@pytest.mark.slow
def test_ctrl_c_puts_the_point_back_and_the_next_run_finishes_it(tmp_path: Path) -> None:
    # Twelve repeats, one by one: time enough to see two of the first point's stored while it runs.
    study_file, url = study_on_disk(tmp_path, "interrupted", repeats=12, lengths="[10, 20]")
    process = start_sweep(
        study_file, url, start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
    )
    kept = wait_for_partial_trial(url, "interrupted", deadline=time.monotonic() + 300, process=process)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends to the whole foreground group
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert err.strip().splitlines() == ["interrupted: the point in progress keeps its finished repeats; run again to resume"]
    first = optuna.load_study(study_name="interrupted", storage=url).get_trials()[0]
    assert first.state == TrialState.WAITING
    assert set(kept) <= set(first.intermediate_values)

    resumed = subprocess.run(
        [sys.executable, "-m", "sweep", "run", "interrupted", "--storage", url], capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    first = optuna.load_study(study_name="interrupted", storage=url).get_trials()[0]
    assert first.state == TrialState.COMPLETE and sorted(first.intermediate_values) == list(range(12))
    assert all(first.intermediate_values[step] == value for step, value in kept.items())


def wait_for_trials(
    url: str, name: str, *, until: Callable[[list], bool], deadline: float, process: subprocess.Popen, what: str,
    every: float = 0.3,
) -> list:
    """The study's trials once `until` holds for them; fails (killing the sweep) if the sweep ends
    first or `deadline` passes, saying `what` never happened."""
    while time.monotonic() < deadline:
        time.sleep(every)
        if process.poll() is not None:
            raise AssertionError(f"the sweep ended (status {process.returncode}) first: {process.communicate()[1][-2000:]}")
        try:
            trials = optuna.load_study(study_name=name, storage=url).get_trials()
        except (KeyError, sqlalchemy.exc.SQLAlchemyError):
            continue  # not made yet, or being made: Optuna here and sweep there both stamp a new database
        if until(trials):
            return trials
    process.kill()
    raise AssertionError(f"{what} in time: {process.communicate()[1][-2000:]}")


def wait_for_partial_trial(url: str, name: str, *, deadline: float, process: subprocess.Popen) -> dict[int, float]:
    """The first point's repeats once two are stored while it runs."""
    trials = wait_for_trials(
        url, name, deadline=deadline, process=process, what="no repeat finished",
        until=lambda trials: bool(trials) and trials[0].state == TrialState.RUNNING and len(trials[0].intermediate_values) >= 2,
    )
    return dict(trials[0].intermediate_values)


def worker_pids(parent: int) -> list[int]:
    children = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_no_finished_repeat_is_lost_or_trained_twice(tmp_path: Path) -> None:
    # Twelve repeats: the window in which the point runs with two or more stored stays wide under load.
    study_file, url = study_on_disk(tmp_path, "killed", repeats=12, lengths="[10]")
    process = start_sweep(study_file, url)
    kept = wait_for_partial_trial(url, "killed", deadline=time.monotonic() + 300, process=process)
    workers = worker_pids(process.pid)
    assert len(workers) == 1
    os.kill(workers[0], signal.SIGKILL)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    trial = optuna.load_study(study_name="killed", storage=url).get_trials()[0]
    assert trial.state == TrialState.COMPLETE and sorted(trial.intermediate_values) == list(range(12))
    assert all(trial.intermediate_values[step] == value for step, value in kept.items())
    assert trial.user_attrs["n"] == 12 and len(trial.user_attrs["seeds"]) == 12


@pytest.mark.parametrize(
    ("n_repeats", "n_workers", "units", "expected_sizes"),
    [
        (30, 2, 10, [15, 15]),  # small networks: one pack per worker
        (30, 2, 100, [3] * 10),  # large ones: packs that fit the cache, five rounds of two
        (30, 4, 100, [3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2]),  # three rounds of four
        (5, 2, 100, [3, 2]),
        (1, 4, 10, [1]),
        (0, 2, 10, []),
        (4, 2, 500, [1, 1, 1, 1]),  # one network over the limit still trains, alone
    ],
)
def test_a_points_repeats_split_into_balanced_packs_every_repeat_once(
    n_repeats: int, n_workers: int, units: int, expected_sizes: list[int]
) -> None:
    repeats = list(range(n_repeats))
    packs = split_into_packs(repeats, n_workers=n_workers, units=units, n_features=1)
    assert [len(pack) for pack in packs] == expected_sizes
    assert sorted(repeat for pack in packs for repeat in pack) == repeats
    if len(packs) > 1:
        assert len(packs) % n_workers == 0 or len(packs) == n_repeats
    per_repeat = 4 * units * (units + 2) + units + 1
    assert all(len(pack) * per_repeat <= MAX_PACK_PARAMETERS for pack in packs if len(pack) > 1)
