"""Several processes on one study, on SQLite and on the real PostgreSQL: each point taken once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import optuna
import pytest
import sqlalchemy.exc
from optuna.trial import TrialState

from sweep.store import protocol, record
from sweep.data.problems import load_data
from sweep.spec import grid_points, load_spec
from sweep.store.connection import open_storage

CLAIM_ALL = """
import json, sys
from sweep.store import protocol, record
from sweep.store.connection import open_storage
study = protocol.load_study(open_storage(sys.argv[1]), "race")
taken = []
while (trial := protocol.claim_next(study)) is not None:
    taken.append(trial.number)
    study.tell(trial, 1.0)
json.dump(taken, open(sys.argv[2], "w"))
"""

LAUNCH = """
import sys
from sweep.store import protocol, record
from sweep.store.connection import open_storage
from sweep.spec import grid_points, load_spec
spec = load_spec(sys.argv[2])
protocol.create_or_resume(open_storage(sys.argv[1]), spec, fingerprint="f", points=grid_points(spec, 8))
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    return sqlite_url if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def run_python(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_eight_processes_take_each_of_a_hundred_points_exactly_once(shared_url: str, tmp_path: Path) -> None:
    study = optuna.create_study(study_name="race", storage=open_storage(shared_url))
    study.set_user_attr(record.MARKER, record.FORMAT_VERSION)  # sweep works only on studies it marked
    for number in range(100):
        study.enqueue_trial({"x": number}, user_attrs={"key": str(number)})
    processes = [run_python(CLAIM_ALL, shared_url, str(tmp_path / f"taken{i}.json")) for i in range(8)]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()
    taken = [n for i in range(8) for n in json.loads((tmp_path / f"taken{i}.json").read_text())]
    assert sorted(taken) == list(range(100))  # every point once: none lost, none taken twice
    trials = optuna.load_study(study_name="race", storage=shared_url).get_trials()
    assert len(trials) == 100 and all(t.state == TrialState.COMPLETE for t in trials)


@pytest.mark.slow
def test_simultaneous_launches_enqueue_each_point_once(shared_url: str, tiny_study: Path) -> None:
    processes = [run_python(LAUNCH, shared_url, str(tiny_study)) for _ in range(4)]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()
    keys = Counter(t.user_attrs["key"] for t in optuna.load_study(study_name="tiny", storage=shared_url).get_trials())
    assert keys == {"L=4 stateless": 1, "L=4 stateful": 1, "L=8 stateless": 1, "L=8 stateful": 1}


@pytest.mark.slow
def test_a_sweep_runs_end_to_end_on_postgresql(postgres_url: str, tiny_study: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sweep", "run", str(tiny_study), "--workers", "2", "--storage", postgres_url],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    trials = optuna.load_study(study_name="tiny", storage=postgres_url).get_trials()
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert all(sorted(t.intermediate_values) == [0, 1, 2] for t in trials)


@pytest.mark.slow
def test_a_worker_joins_with_the_name_alone_and_refuses_other_data(tmp_path: Path, sqlite_url: str) -> None:
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.normal(size=(16, 6, 1)), "y_train": rng.normal(size=16),
              "x_test": rng.normal(size=(8, 6, 1)), "y_test": rng.normal(size=8)}
    np.savez(tmp_path / "data.npz", **arrays)
    study_file = tmp_path / "mine.toml"
    study_file.write_text(
        'name = "mine"\nrepeats = 2\n[problem]\nkind = "npz"\npath = "data.npz"\ntask = "regression"\n'
        '[grid]\nlengths = [3, 6]\nmodes = ["stateless"]\n[training]\nepochs = 1\n[objective]\nmetric = "rmse"\n'
    )
    spec = load_spec(study_file)  # machine A creates the study and enqueues its grid
    dataset = load_data(spec)
    protocol.create_or_resume(
        open_storage(sqlite_url), spec, fingerprint=dataset.fingerprint,
        points=grid_points(spec, dataset.sequence_length), sequence_length=dataset.sequence_length,
    )
    other_machine = tmp_path / "elsewhere"
    other_machine.mkdir()
    joined = subprocess.run([sys.executable, "-m", "sweep", "worker", "mine", "--storage", sqlite_url, "--workers", "1"],
                            capture_output=True, text=True, cwd=other_machine, timeout=600)
    assert joined.returncode == 0, joined.stderr
    assert len(optuna.load_study(study_name="mine", storage=sqlite_url).get_trials(states=(TrialState.COMPLETE,))) == 2

    arrays["x_train"][0, 0, 0] += 1.0
    np.savez(tmp_path / "data.npz", **arrays)
    refused = subprocess.run([sys.executable, "-m", "sweep", "worker", "mine", "--storage", sqlite_url],
                             capture_output=True, text=True, cwd=other_machine, timeout=600)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: study 'mine' was made with different data") and refused.stderr.count("\n") == 1


def sweep_process(*args: str, **popen: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sweep", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)


def one_point_study(tmp_path: Path, name: str, repeats: int) -> Path:
    study_file = tmp_path / f"{name}.toml"
    study_file.write_text(
        f'name = "{name}"\nrepeats = {repeats}\n[problem]\nkind = "echo-first"\nlength = 20\nn_train = 400\n'
        '[grid]\nlengths = [10]\nmodes = ["stateful"]\n'
    )
    return study_file


def wait_for_repeats(url: str, name: str, n: int, *, timeout: float = 300) -> optuna.trial.FrozenTrial:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.3)
        try:
            trials = optuna.load_study(study_name=name, storage=url).get_trials(states=(TrialState.RUNNING,))
        except (KeyError, sqlalchemy.exc.SQLAlchemyError):
            continue  # not made yet, or being made
        if trials and len(trials[0].intermediate_values) >= n:
            return trials[0]
    raise AssertionError(f"no running point reached {n} repeats in {timeout} s")


# One network at a time on one worker process, so that repeats finish one by one; fast heartbeats.
SLOW_AND_WATCHFUL = ["--reference", "--workers", "1", "--heartbeat-interval", "1", "--grace-period", "4"]


@pytest.mark.slow
def test_a_dead_machine_s_point_is_taken_over_keeping_its_finished_repeats(postgres_url: str, tmp_path: Path) -> None:
    study_file = one_point_study(tmp_path, "takeover", repeats=6)
    machine_b = sweep_process("run", str(study_file), "--storage", postgres_url, *SLOW_AND_WATCHFUL,
                              start_new_session=True)
    before = wait_for_repeats(postgres_url, "takeover", 2)
    os.killpg(machine_b.pid, signal.SIGKILL)  # the whole machine goes: main process and its workers
    machine_b.wait(timeout=60)
    kept = optuna.load_study(study_name="takeover", storage=postgres_url).get_trials()[0]
    assert kept.state == TrialState.RUNNING and len(kept.intermediate_values) >= len(before.intermediate_values)

    machine_a = sweep_process("worker", "takeover", "--storage", postgres_url, *SLOW_AND_WATCHFUL, cwd=tmp_path)
    _, err = machine_a.communicate(timeout=600)
    assert machine_a.returncode == 0, err

    trials = optuna.load_study(study_name="takeover", storage=postgres_url).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 1 and [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    point = complete[0]
    assert sorted(point.intermediate_values) == list(range(6)) and point.user_attrs["n"] == 6
    for step, score in kept.intermediate_values.items():
        assert point.intermediate_values[step] == score
        # Trained by the dead machine, not again: the repeat still names the worker that trained it.
        assert point.user_attrs[f"repeat/{step:04d}"]["worker"] == kept.user_attrs["worker"]
    retrained = [s for s in range(6) if point.user_attrs[f"repeat/{s:04d}"]["worker"] != kept.user_attrs["worker"]]
    assert retrained == [s for s in range(6) if s not in kept.intermediate_values]

    status = subprocess.run([sys.executable, "-m", "sweep", "status", "takeover", "--storage", postgres_url],
                            capture_output=True, text=True, timeout=120)
    assert "1 points: 1 done, 0 running, 0 waiting, 0 failed" in status.stdout


@pytest.mark.slow
@pytest.mark.restarts_postgres
def test_a_postgresql_restart_during_a_point_loses_nothing(postgres_url: str, tmp_path: Path) -> None:
    study_file = one_point_study(tmp_path, "restart", repeats=6)
    worker = sweep_process("run", str(study_file), "--storage", postgres_url, *SLOW_AND_WATCHFUL)
    wait_for_repeats(postgres_url, "restart", 2)
    postgresql("restart")
    _, err = worker.communicate(timeout=600)
    assert worker.returncode == 0, err
    trials = optuna.load_study(study_name="restart", storage=postgres_url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE]
    assert sorted(trials[0].intermediate_values) == list(range(6))


@pytest.mark.slow
def test_requeue_puts_failed_points_back_with_their_repeats(sqlite_url: str, tiny_study: Path) -> None:
    from sweep.spec import load_spec as load

    spec = load(tiny_study)
    study = protocol.create_or_resume(open_storage(sqlite_url), spec, fingerprint="f",
                                     points=grid_points(spec, 8), sequence_length=8)
    trial = protocol.claim_next(study)
    protocol.record_repeat(trial, repeat=0, score=0.5, details={"seed": 1, "seconds": 1.0})
    protocol.fail_trial(study, trial, "a repeat diverged")
    done = subprocess.run([sys.executable, "-m", "sweep", "requeue", "tiny", "--storage", sqlite_url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "requeued 1 failed point: L=4 stateless" in done.stdout
    trials = optuna.load_study(study_name="tiny", storage=sqlite_url).get_trials()
    copy = [t for t in trials if t.user_attrs["key"] == "L=4 stateless" and t.state == TrialState.WAITING]
    assert len(copy) == 1 and copy[0].intermediate_values == {0: 0.5}
    again = subprocess.run([sys.executable, "-m", "sweep", "requeue", "tiny", "--storage", sqlite_url],
                           capture_output=True, text=True, timeout=120)
    assert "requeued 0 failed points" in again.stdout


@pytest.mark.slow
def test_two_machines_finish_a_grid_each_point_trained_once(postgres_url: str, tiny_study: Path, tmp_path: Path) -> None:
    from sweep.spec import load_spec as load

    spec = load(tiny_study)
    protocol.create_or_resume(open_storage(postgres_url), spec, fingerprint=load_data(spec).fingerprint,
                             points=grid_points(spec, 8), sequence_length=8)
    machines = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        machines.append(sweep_process("worker", "tiny", "--storage", postgres_url, "--workers", "1", "--reference",
                                      cwd=tmp_path / name))
    for machine in machines:
        _, err = machine.communicate(timeout=600)
        assert machine.returncode == 0, err
    trials = optuna.load_study(study_name="tiny", storage=postgres_url).get_trials()
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)  # no point claimed twice
    for trial in trials:
        trainers = {trial.user_attrs[f"repeat/{r:04d}"]["worker"] for r in range(3)}
        assert trainers == {trial.user_attrs["worker"]}  # every repeat trained by the one claimer


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid`, read from /proc (Linux)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            if int(fields[1]) == pid:
                children.append(int(entry.name))
    return children


def is_alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its entry waits to be read


def killed_with_its_workers_left(process: subprocess.Popen, url: str, name: str) -> list[int]:
    """SIGKILL the main process once its point has a repeat (its workers are busy training the
    rest); the worker processes still alive 10 s later."""
    wait_for_repeats(url, name, 1)
    workers = children_of(process.pid)
    assert workers, "the run started no worker process"
    process.kill()
    process.wait(timeout=30)
    time.sleep(10)
    return [pid for pid in workers if is_alive(pid)]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc")
def test_the_workers_of_a_killed_run_end_with_it(tmp_path: Path, sqlite_url: str) -> None:
    study_file = one_point_study(tmp_path, "orphans", repeats=40)
    run = sweep_process("run", str(study_file), "--storage", sqlite_url, "--reference", "--workers", "2")
    assert killed_with_its_workers_left(run, sqlite_url, "orphans") == []


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc")
def test_the_workers_of_a_killed_worker_end_with_it_and_the_study_resumes_whole(tmp_path: Path, sqlite_url: str) -> None:
    study_file = one_point_study(tmp_path, "orphans", repeats=12)
    assert sweep_process("create", str(study_file), "--storage", sqlite_url).wait(timeout=120) == 0
    worker = sweep_process("worker", "orphans", "--storage", sqlite_url, *SLOW_AND_WATCHFUL, cwd=tmp_path)
    assert killed_with_its_workers_left(worker, sqlite_url, "orphans") == []
    kept = optuna.load_study(study_name="orphans", storage=sqlite_url).get_trials()[0].intermediate_values

    point = resumed_to_completion(sqlite_url, "orphans", tmp_path)
    assert sorted(point.intermediate_values) == list(range(12)) and point.user_attrs["n"] == 12
    assert all(point.intermediate_values[step] == score for step, score in kept.items())


def resumed_to_completion(url: str, name: str, folder: Path) -> optuna.trial.FrozenTrial:
    """Join the study as a new worker until it is done; its completed point."""
    resumed = sweep_process("worker", name, "--storage", url, *SLOW_AND_WATCHFUL, cwd=folder)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    return [t for t in optuna.load_study(study_name=name, storage=url).get_trials() if t.state == TrialState.COMPLETE][0]


def postgresql(action: str) -> None:
    cluster = os.listdir("/etc/postgresql")[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", action], check=True, timeout=120)


@pytest.mark.slow
@pytest.mark.restarts_postgres
def test_a_database_that_stays_away_ends_the_run_once_on_time_with_its_cause(postgres_url: str, tmp_path: Path) -> None:
    """The server stops mid-point and stays down: the run gives up once, within the outage budget
    (20 s here) plus 20%, its last line naming the driver's cause and what is kept; with the
    server back, the study resumes and finishes with every repeat recorded once."""
    study_file = one_point_study(tmp_path, "outage", repeats=30)
    env = {**os.environ, "SWEEP_OUTAGE_SECONDS": "20"}
    run = sweep_process("run", str(study_file), "--storage", postgres_url, *SLOW_AND_WATCHFUL, env=env)
    wait_for_repeats(postgres_url, "outage", 2)
    try:
        postgresql("stop")
        stopped = time.monotonic()
        _, err = run.communicate(timeout=120)
        gave_up_after = time.monotonic() - stopped
    finally:
        postgresql("start")
    last = err.strip().splitlines()[-1]
    assert run.returncode == 1 and gave_up_after <= 20 * 1.2 + 5, (gave_up_after, err[-3000:])
    assert last.startswith(f"error: lost the study database {postgres_url} while") and " repeat " in last, last
    assert "exceeding max length" not in err and "connection" in last.lower(), last
    assert "the repeats recorded before it went away are kept" in last and last.count("\n") == 0
    assert err.count("error:") == 1

    time.sleep(5)  # the stopped run's point: silent past its grace period, taken over below
    point = resumed_to_completion(postgres_url, "outage", tmp_path)
    assert sorted(point.intermediate_values) == list(range(30)) and point.user_attrs["n"] == 30


@pytest.mark.slow
def test_a_sqlite_file_locked_by_another_process_ends_the_run_on_time_with_its_cause(sqlite_url: str, tmp_path: Path) -> None:
    """Another process takes the write lock of the study's SQLite file mid-point and keeps it: the
    run gives up within the outage budget (10 s here) plus 20%, however long SQLite's busy timeout
    (a minute) would have had a try wait, naming the lock; once it is let go, the study resumes
    with every repeat recorded once."""
    study_file = one_point_study(tmp_path, "locked", repeats=30)
    env = {**os.environ, "SWEEP_OUTAGE_SECONDS": "10"}
    run = sweep_process("run", str(study_file), "--storage", sqlite_url, *SLOW_AND_WATCHFUL, env=env)
    wait_for_repeats(sqlite_url, "locked", 2)
    holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # a writer that never commits
        locked = time.monotonic()
        _, err = run.communicate(timeout=120)
        gave_up_after = time.monotonic() - locked
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    last = err.strip().splitlines()[-1]
    assert run.returncode == 1 and gave_up_after <= 10 * 1.2 + 3, (gave_up_after, err[-3000:])
    assert last.startswith("error: lost the study database ") and "(database is locked)" in last, last
    assert "exceeding max length" not in err and err.count("error:") == 1

    time.sleep(5)  # the stopped run's point: silent past its grace period, taken over below
    point = resumed_to_completion(sqlite_url, "locked", tmp_path)
    assert sorted(point.intermediate_values) == list(range(30)) and point.user_attrs["n"] == 30


@pytest.mark.slow
def test_two_workers_share_a_study_through_pgbouncer_in_transaction_mode(pgbouncer_url: str, tiny_study: Path, tmp_path: Path) -> None:
    """Through a pooler that gives a client a server connection for one transaction at a time
    (no prepared statement or session lock survives between two), two workers finish the grid
    with each point trained once."""
    created = sweep_process("create", str(tiny_study), "--storage", pgbouncer_url)
    _, err = created.communicate(timeout=300)
    assert created.returncode == 0, err
    workers = [sweep_process("worker", "tiny", "--storage", pgbouncer_url, "--workers", "1", cwd=tiny_study.parent) for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err
    trials = optuna.load_study(study_name="tiny", storage=pgbouncer_url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert len({t.user_attrs["key"] for t in trials}) == 4
    assert all(sorted(t.intermediate_values) == [0, 1, 2] and t.user_attrs["n"] == 3 for t in trials)


def test_a_failure_of_the_pooler_is_named_as_the_pooler_s(
    capsys, monkeypatch, pgbouncer_binary: str, tmp_path: Path
) -> None:
    """A PgBouncer that serves only the databases its settings list answers for a missing one:
    the line names the pooler and the setting to fix, not 'check that the server is up'."""
    from tests.conftest import pgbouncer
    from tests.test_cli import sweep_in_process

    with pgbouncer(pgbouncer_binary, tmp_path / "bouncer", databases="studies = host=127.0.0.1 port=5432 dbname=test") as port:
        url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/sweeps"
        code, _, err = sweep_in_process(capsys, monkeypatch, "list", "--storage", url)
    assert code != 0 and err.count("\n") == 1, err
    assert err.startswith(f"error: the connection pooler (PgBouncer) has no entry for the study database {url} ("), err
    assert "no such database: sweeps" in err and "[databases] section of pgbouncer.ini" in err


def test_a_lost_prepared_statement_is_named_as_the_pooler_s(pgbouncer_url: str) -> None:
    """What psycopg's own prepared statements meet behind a pooler in transaction mode (sweep's
    storage prepares none: the sharing test above runs through one)."""
    import psycopg

    from sweep.store.connection import describe_database_error

    dsn = pgbouncer_url.replace("postgresql+psycopg://", "postgresql://")
    connections = [psycopg.connect(dsn, autocommit=True, prepare_threshold=0) for _ in range(3)]
    try:
        with pytest.raises(psycopg.Error) as failure:
            for _ in range(20):  # prepared on one server session, run on another
                for connection in connections:
                    connection.execute("SELECT 1").fetchall()
    finally:
        for connection in connections:
            connection.close()
    line = describe_database_error(failure.value, pgbouncer_url)
    assert line.startswith("a connection pooler in transaction mode lost a prepared statement of the study database"), line
    assert "session mode" in line and "max_prepared_statements" in line


@pytest.mark.slow
def test_status_lists_the_working_processes_with_their_connections(postgres_url: str, tmp_path: Path) -> None:
    study_file = one_point_study(tmp_path, "crowd", repeats=30)
    run = sweep_process("run", str(study_file), "--storage", postgres_url, *SLOW_AND_WATCHFUL)
    try:
        wait_for_repeats(postgres_url, "crowd", 1)
        status = subprocess.run([sys.executable, "-m", "sweep", "status", "crowd", "--workers", "--storage", postgres_url],
                                capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    finally:
        run.terminate()
        run.communicate(timeout=120)
    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if f":{run.pid} " in line)
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells[1] == "L=10 stateful" and cells[2] != "-", row
    assert 1 <= int(cells[3]) <= 4, row  # two kept (work, heartbeats), two more for a moment at most
