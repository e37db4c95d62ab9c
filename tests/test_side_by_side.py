"""Points side by side: with small networks each worker trains whole points, several at once,
and every repeat ends as it does when the points are trained one after another."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

import sweep
from sweep.spec import spec_from_dict

from tests.test_runner import wait_for_trials, worker_pids

SMALL = {
    "repeats": 3, "seed": 0,
    "problem": {"kind": "echo-first", "length": 6, "n_train": 60, "n_test": 20},
    "grid": {"lengths": [2, 3, 6], "modes": ["stateless", "stateful"]},
    "training": {"epochs": 1},
}


class Events:
    """A progress that keeps what it is told, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def point_started(self, key: str, *, n_repeats: int, n_finished: int) -> None:
        self.events.append(("started", key))

    def repeat_finished(self, key: str) -> None:
        self.events.append(("repeat", key))

    def point_finished(self, key: str, *, is_complete: bool) -> None:
        self.events.append(("finished", key))

    def most_at_once(self) -> int:
        running, most = set(), 0
        for event, key in self.events:
            if event == "started":
                running.add(key)
                most = max(most, len(running))
            elif event == "finished":
                running.discard(key)
        return most


class OldProgress:
    """A progress written before points ran side by side: its repeat_finished takes no key."""

    def __init__(self) -> None:
        self.repeats = 0

    def point_started(self, key: str, *, n_repeats: int, n_finished: int) -> None:
        pass

    def repeat_finished(self) -> None:
        self.repeats += 1

    def point_finished(self, key: str, *, is_complete: bool) -> None:
        pass


def _scores(study: sweep.Study) -> dict[tuple[str, int], list[float]]:
    return {
        (row["key"], row["repeat"]): [row[name] for name in sorted(row) if "/" in name] for row in study.repeat_records()
    }


def test_two_workers_train_two_points_at_once_each_repeat_as_one_after_another(sqlite_url: str) -> None:
    side_by_side = sweep.Study.create(spec_from_dict({**SMALL, "name": "side-by-side"}), storage=sqlite_url)
    events = Events()
    outcome = side_by_side.run(workers=2, progress=events)
    assert outcome.counts == {"done": 6, "running": 0, "waiting": 0, "failed": 0}
    # Two training, and at most two more whose repeats are being stored while their workers start the next.
    assert 2 <= events.most_at_once() <= 4
    for key in {key for _, key in events.events}:  # every repeat told under its own point
        assert events.events.count(("repeat", key)) == 3

    one_by_one = sweep.Study.create(spec_from_dict({**SMALL, "name": "one-after-another"}), storage=sqlite_url)
    assert one_by_one.run(workers=1).counts["done"] == 6
    together, apart = _scores(side_by_side), _scores(one_by_one)
    assert sorted(together) == sorted(apart) and len(together) == 18
    for repeat, scores in apart.items():
        np.testing.assert_allclose(together[repeat], scores, rtol=1e-5, atol=1e-5)
    for point in side_by_side.results().points:
        assert point.summary["n"] == 3 and sorted(point.repeats) == [0, 1, 2]


def test_a_progress_written_before_side_by_side_still_hears_of_every_repeat(sqlite_url: str) -> None:
    study = sweep.Study.create(spec_from_dict({**SMALL, "name": "old-progress"}), storage=sqlite_url)
    progress = OldProgress()
    study.run(workers=2, progress=progress)
    assert progress.repeats == 18


def _study_file(tmp_path: Path, name: str) -> tuple[Path, str]:
    study_file = tmp_path / f"{name}.toml"
    study_file.write_text(
        f'name = "{name}"\nrepeats = 6\n[problem]\nkind = "echo-first"\nlength = 20\nn_train = 800\n'
        '[grid]\nlengths = [1, 2, 4, 5]\nmodes = ["stateless", "stateful"]\n[training]\nepochs = 2\n'
    )
    return study_file, f"sqlite:///{tmp_path / 'sweep.db'}"


def _started_side_by_side(tmp_path: Path, name: str, **popen: object) -> tuple[subprocess.Popen, str]:
    """`sweep run` of a small study on two workers, once two of its points run at once; and its storage."""
    study_file, url = _study_file(tmp_path, name)
    process = subprocess.Popen(
        [sys.executable, "-m", "sweep", "run", str(study_file), "--workers", "2", "--storage", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen,
    )
    wait_for_trials(
        url, name, deadline=time.monotonic() + 300, process=process, what="two points never ran at once", every=0.2,
        until=lambda trials: sum(trial.state == TrialState.RUNNING for trial in trials) == 2,
    )
    return process, url


def _every_point_complete_once(url: str, name: str, repeats: int) -> None:
    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    assert {trial.state for trial in trials} == {TrialState.COMPLETE}
    for trial in trials:
        assert sorted(trial.intermediate_values) == list(range(repeats))
        assert trial.user_attrs["n"] == repeats and len(trial.user_attrs["seeds"]) == repeats


@pytest.mark.slow
def test_a_worker_killed_while_points_run_side_by_side_loses_and_doubles_nothing(tmp_path: Path) -> None:
    process, url = _started_side_by_side(tmp_path, "killed-side-by-side")
    workers = worker_pids(process.pid)
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    _every_point_complete_once(url, "killed-side-by-side", 6)


@pytest.mark.slow
def test_ctrl_c_puts_back_every_point_running_side_by_side(tmp_path: Path) -> None:
    process, url = _started_side_by_side(
        tmp_path, "interrupted-side-by-side",
        start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    states = [trial.state for trial in optuna.load_study(study_name="interrupted-side-by-side", storage=url).get_trials()]
    assert TrialState.RUNNING not in states and TrialState.WAITING in states, err
    assert not worker_pids(process.pid)

    resumed = subprocess.run(
        [sys.executable, "-m", "sweep", "run", "interrupted-side-by-side", "--storage", url],
        capture_output=True, text=True, timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    _every_point_complete_once(url, "interrupted-side-by-side", 6)


def test_points_go_whole_to_a_worker_and_the_last_is_shared_by_the_workers_it_would_leave_idle(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sweep.train.pool import RepeatPool

    submitted: list[tuple[str, tuple[int, ...]]] = []
    submit = RepeatPool.submit
    monkeypatch.setattr(RepeatPool, "submit", lambda pool, job: submitted.append((job.key, job.repeats)) or submit(pool, job))

    grid = sweep.Study.create(spec_from_dict({**SMALL, "name": "whole-points"}), storage=sqlite_url)
    assert grid.run(workers=2).counts["done"] == 6
    assert len(submitted) == 6 and all(repeats == (0, 1, 2) for _, repeats in submitted)

    submitted.clear()
    one_point = {**SMALL, "name": "one-point", "repeats": 4, "grid": {"lengths": [6], "modes": ["stateful"]}}
    alone = sweep.Study.create(spec_from_dict(one_point), storage=sqlite_url)
    assert alone.run(workers=2).counts["done"] == 1
    assert sorted(repeats for _, repeats in submitted) == [(0, 2), (1, 3)]
    assert sorted(alone.results().points[0].repeats) == [0, 1, 2, 3]



def test_a_free_worker_prefers_the_shapes_it_traced_then_shapes_nobody_traced() -> None:
    """Both state modes of a length share a worker's traced loops: a free worker ranks first the
    points of shapes it has trained, then shapes no other worker has trained or is training."""
    from sweep.run.runner import _Claimed, _SideBySide
    from sweep.spec import GridPoint

    scheduler = _SideBySide.__new__(_SideBySide)  # its ranking alone, without a run
    scheduler.traced = {101: {(2, None, ())}, 102: {(3, None, ())}}
    running = _Claimed(trial=None, heartbeat=None, point=GridPoint(length=6, mode="stateless"))
    scheduler.in_flight = {object(): (running, None)}
    rank = scheduler._preference(101)
    params = {length: GridPoint(length=length, mode="stateful").params for length in (2, 3, 4, 6)}
    assert [rank(params[length]) for length in (2, 3, 4, 6)] == [0, 2, 1, 2]
    assert rank({}) == 1  # a trial enqueued by hand: neither
    # A worker not known yet (the first jobs of a run) keeps off what the others train.
    assert [scheduler._preference(None)(params[length]) for length in (2, 3, 4, 6)] == [2, 2, 1, 2]
