"""Hardened boundaries: absurd numbers, option errors, exit statuses, outputs and storages that
cannot be used. Each case is one line on stderr, a documented exit status and nothing written."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from sweep.store import protocol, record
from sweep.store.connection import Liveness, MAX_STALE_RETRIES, open_storage
from sweep.errors import DataError, SpecError, StorageError
from sweep.data.problems import load_data, load_npz
from sweep.data.statistics import summarize
from sweep.report.table import point_row
from sweep.spec import NpzProblem, grid_points, spec_from_dict
from tests.test_cli import sweep_cli, sweep_in_process


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


# Valid-looking numbers that are absurd


def test_a_range_of_a_billion_lengths_is_refused_before_it_is_built() -> None:
    spec = spec_from_dict({"name": "x", "problem": {"kind": "echo-first"}, "grid": {"lengths": {"start": 1, "stop": 1_000_000_000}}})
    started = time.perf_counter()
    with pytest.raises(SpecError, match="grid.lengths: 21 is longer than the sequence length 20"):
        grid_points(spec, 20)
    assert time.perf_counter() - started < 1.0


def npz_file(tmp_path: Path, **changes: np.ndarray) -> Path:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.normal(size=(8, 4, 1)), "y_train": np.array([0, 1] * 4),
        "x_test": rng.normal(size=(4, 4, 1)), "y_test": np.array([0, 1, 0, 1]),
    }
    arrays.update(changes)
    np.savez(tmp_path / "data.npz", **arrays)
    return tmp_path / "data.npz"


def load(path: Path, task: str = "classification"):
    return load_npz(NpzProblem(kind="npz", path=str(path), task=task))


def test_values_beyond_float32_are_refused_with_the_cause(tmp_path: Path) -> None:
    huge = np.full((8, 4, 1), 1e200)
    with pytest.raises(DataError, match="x_train holds values up to 1e\\+200, beyond float32.*rescale"):
        load(npz_file(tmp_path, x_train=huge))


def test_a_class_label_of_two_to_the_forty_is_refused(tmp_path: Path) -> None:
    labels = np.array([0, 2**40] * 4)
    with pytest.raises(DataError, match="means 1099511627777 classes, more than 10000"):
        load(npz_file(tmp_path, y_train=labels))


def test_boolean_labels_are_the_classes_false_and_true(tmp_path: Path) -> None:
    data = load(npz_file(tmp_path, y_train=np.array([False, True] * 4), y_test=np.array([True, False, True, False])))
    assert data.n_classes == 2
    assert data.y_train[:2, 0].tolist() == [0.0, 1.0]


def test_string_labels_in_an_npz_are_told_to_use_a_table(tmp_path: Path) -> None:
    with pytest.raises(DataError, match='targets must be numbers .*kind = "table"'):
        load(npz_file(tmp_path, y_train=np.array(["a", "b"] * 4)))


def test_a_test_class_never_seen_in_training_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="class 2 occurs in y_test but never in y_train"):
        load(npz_file(tmp_path, y_test=np.array([0, 1, 2, 1])))


@pytest.mark.parametrize("where", ["training", "grid"])
def test_an_infinite_learning_rate_is_refused(where: str) -> None:
    raw = {"name": "x", "problem": {"kind": "echo-first"}}
    if where == "training":
        raw["training"] = {"learning_rate": math.inf}
    else:
        raw["grid"] = {"learning_rate": [0.01, math.inf]}
    with pytest.raises(SpecError, match="learning_rate.* = inf: Input should be a finite number"):
        spec_from_dict(raw)


def test_an_accuracy_interval_stays_within_zero_and_one() -> None:
    scores = [1.0, 1.0, 0.9]
    unbounded = summarize(scores)
    assert unbounded["ci95_high"] > 1.0  # what Student's t gives with three repeats
    bounded = summarize(scores, metric="accuracy/sample")
    assert bounded["ci95_high"] == 1.0 and 0.0 <= bounded["ci95_low"] < bounded["mean"]
    assert summarize([0.01, 0.02, 0.2], metric="rmse/sample")["ci95_low"] == 0.0


@pytest.mark.parametrize("n", [2, 3, 5, 30, 200])
def test_the_interval_is_student_s_t_interval(n: int) -> None:
    from scipy import stats

    scores = np.random.default_rng(n).normal(0.7, 0.05, size=n)
    summary = summarize(scores)
    sem = scores.std(ddof=1) / math.sqrt(n)
    low, high = stats.t.interval(0.95, df=n - 1, loc=scores.mean(), scale=sem)
    assert summary["ci95_low"] == pytest.approx(low, rel=1e-12) and summary["ci95_high"] == pytest.approx(high, rel=1e-12)


def test_status_cuts_the_interval_that_an_earlier_version_stored(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'old.db'}", direction="maximize")
    trial = optuna.trial.create_trial(
        value=0.95, user_attrs={"key": "L=1 stateful", "metric": "accuracy/sample", "ci95_low": 0.85, "ci95_high": 1.0035}
    )
    study.add_trial(trial)
    row = point_row(study.trials[0])
    assert (row.ci95_low, row.ci95_high) == (0.85, 1.0)


# Exit statuses and the command line


@pytest.mark.slow
def test_a_run_whose_every_point_failed_exits_3_with_the_way_out(tmp_path: Path, sqlite_url: str) -> None:
    study = tmp_path / "diverge.toml"
    study.write_text(
        'name = "diverge"\nrepeats = 2\n[problem]\nkind = "lag-echo"\nlength = 6\nlag = 1\nn_train = 20\nn_test = 10\n'
        '[grid]\nlengths = [3]\nmodes = ["stateful"]\n[model]\nunits = 3\n'
        '[training]\nepochs = 3\noptimizer = "sgd"\nlearning_rate = 1e12\n[objective]\nmetric = "rmse"\n'
    )
    done = sweep_cli("run", str(study), "--workers", "1", "--storage", sqlite_url)
    assert done.returncode == 3, done.stderr
    assert "1 grid point failed (reasons: sweep status diverge)" in done.stderr
    assert "sweep requeue diverge" in done.stderr
    # The advice can be followed: a diverged point is not requeued to diverge again.
    requeued = sweep_cli("requeue", "diverge", "--storage", sqlite_url)
    assert "requeued 0 failed points" in requeued.stdout
    assert "not requeued, since the same settings and seeds would diverge again: L=3 stateful" in requeued.stdout
    states = [trial.state.name for trial in optuna.load_study(study_name="diverge", storage=sqlite_url).trials]
    assert states == ["FAIL"]
    reason = optuna.load_study(study_name="diverge", storage=sqlite_url).trials[0].user_attrs["fail_reason"]
    assert "run the study file with a lower training.learning_rate (or grid.learning_rate) under a new --name" in reason


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["run", "STUDY", "--repeats", "0"], {}, "Invalid value for '--repeats'"),
        (["run", "STUDY", "--workers", "0"], {}, "Invalid value for '--workers'"),
        (["run", "STUDY", "--epochs", "two"], {}, "Invalid value for '--epochs'"),
        (["run", "STUDY"], {"SWEEP_WORKERS": "abc"}, "Invalid value for '--workers'"),
        (["dashboard", "--port", "0"], {}, "Invalid value for '--port'"),
        (["nope"], {}, "No such command 'nope'"),
        (["run"], {}, "Missing argument 'STUDY'"),
    ],
)
def test_an_option_error_is_one_line_and_exit_status_2(
    capsys, monkeypatch, tiny_study: Path, args: list[str], env: dict, fragment: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = [str(tiny_study) if arg == "STUDY" else arg for arg in args]
    code, out, err = sweep_in_process(capsys, monkeypatch, *args)
    assert code == 2
    line = one_error_line(err)
    assert fragment in line and line.endswith("--help")


@pytest.fixture
def finished_study(tmp_path: Path, sqlite_url: str) -> str:
    from tests.conftest import make_synthetic_study

    make_synthetic_study(sqlite_url)
    return sqlite_url


@pytest.mark.parametrize("target", ["missing/dir/report.html", "a-directory", "read-only/report.html"])
def test_a_report_that_cannot_be_written_is_one_line(capsys, monkeypatch, tmp_path: Path, finished_study: str, target: str) -> None:
    (tmp_path / "a-directory").mkdir()
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o500)
    try:
        code, _, err = sweep_in_process(capsys, monkeypatch, "report", "synthetic", "--storage", finished_study, "-o", str(tmp_path / target))
    finally:
        read_only.chmod(0o700)
    if target.startswith("read-only") and code == 0:
        pytest.skip("this user may write anywhere (root ignores directory permissions)")
    assert code == 1
    assert "cannot write the report to" in one_error_line(err)


# Storages that cannot be used


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://"])
def test_an_in_memory_database_is_refused_in_one_line(url: str) -> None:
    with pytest.raises(StorageError, match="in-memory database.*use a file"):
        open_storage(url)


def test_a_bad_heartbeat_setting_is_named_as_such_not_as_a_bad_url(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="heartbeat interval 0 s") as info:
        open_storage(f"sqlite:///{tmp_path / 'x.db'}", liveness=Liveness(heartbeat_interval=0, grace_period=5))
    assert "bad storage URL" not in str(info.value)


# Studies and trials that sweep did not make


def stored_state(url: str, name: str) -> tuple[dict, list]:
    study = optuna.load_study(study_name=name, storage=url)
    return dict(study.user_attrs), [(trial.state, trial.params) for trial in study.trials]


@pytest.mark.parametrize("directions", [["minimize"], ["minimize", "maximize"]], ids=["other-direction", "multi-objective"])
def test_an_empty_optuna_study_of_the_name_is_not_adopted(tiny_study: Path, sqlite_url: str, directions: list[str]) -> None:
    optuna.create_study(study_name="tiny", storage=sqlite_url, directions=directions)
    before = stored_state(sqlite_url, "tiny")
    done = sweep_cli("run", str(tiny_study), "--workers", "1", "--storage", sqlite_url)
    assert done.returncode == 1
    assert "study 'tiny' exists but was not made by sweep" in one_error_line(done.stderr)
    assert stored_state(sqlite_url, "tiny") == before


def plain_study_with_a_failed_trial(url: str) -> None:
    study = optuna.create_study(study_name="plain", storage=url)
    study.optimize(lambda trial: float("nan") if trial.suggest_float("x", 0, 1) >= 0 else 0.0, n_trials=1)


@pytest.mark.parametrize("command", [["requeue", "plain"], ["status", "plain"], ["report", "plain"], ["worker", "plain"],
                                     ["run", "plain"], ["delete", "plain", "--yes"]])
def test_every_command_refuses_a_study_sweep_did_not_make_and_writes_nothing(sqlite_url: str, command: list[str]) -> None:
    plain_study_with_a_failed_trial(sqlite_url)
    before = stored_state(sqlite_url, "plain")
    done = sweep_cli(*command, "--storage", sqlite_url)
    assert done.returncode == 1
    assert "study 'plain' was not made by sweep" in one_error_line(done.stderr)
    assert stored_state(sqlite_url, "plain") == before


def test_list_shows_other_studies_as_such(sqlite_url: str, synthetic_study: optuna.Study) -> None:
    optuna.create_study(study_name="two-objectives", storage=sqlite_url, directions=["minimize", "maximize"])
    done = sweep_cli("list", "--storage", sqlite_url)
    assert done.returncode == 0, done.stderr
    assert "synthetic" in done.stdout
    assert next(line for line in done.stdout.splitlines() if "two-objectives" in line).count("not a sweep study") == 1


@pytest.mark.slow
def test_a_trial_enqueued_by_hand_is_set_aside_and_the_grid_finishes(tiny_study: Path, sqlite_url: str) -> None:
    created = sweep_cli("create", str(tiny_study), "--storage", sqlite_url, "--repeats", "1", "--epochs", "1")
    assert created.returncode == 0, created.stderr
    optuna.load_study(study_name="tiny", storage=sqlite_url).enqueue_trial({"x": 0.5})
    worker = sweep_cli("worker", "tiny", "--storage", sqlite_url, "--workers", "1")
    assert worker.returncode == 0, worker.stderr
    assert "4 done, 0 running, 0 waiting, 0 failed" in worker.stdout
    assert "set aside: parameters {'x': 0.5} are none of this study's grid points" in worker.stdout
    requeued = sweep_cli("requeue", "tiny", "--storage", sqlite_url)
    assert "requeued 0 failed points" in requeued.stdout
    states = [trial.state for trial in optuna.load_study(study_name="tiny", storage=sqlite_url).trials]
    assert sorted(state.name for state in states) == ["COMPLETE"] * 4 + ["FAIL"]


@pytest.mark.parametrize("damage", ["{not json", '"a string"', '{"name": "synthetic", "problem": {"kind": "sine"}}'])
def test_a_damaged_spec_is_one_line(sqlite_url: str, synthetic_study: optuna.Study, damage: str) -> None:
    synthetic_study.set_user_attr("spec", damage)
    done = sweep_cli("status", "synthetic", "--storage", sqlite_url)
    assert done.returncode == 1
    assert "study 'synthetic'" in one_error_line(done.stderr) and "damaged" in done.stderr


# The storage boundary


@pytest.mark.slow
def test_a_text_file_as_the_database_is_one_line_and_leaves_no_lock(tmp_path: Path) -> None:
    (tmp_path / "notadb.db").write_text("hello, not SQLite\n")
    url = f"sqlite:///{tmp_path / 'notadb.db'}"
    for command in (["status", "x"], ["list"], ["run", "x"]):
        done = sweep_cli(*command, "--storage", url)
        assert done.returncode == 1
        assert "notadb.db (file is not a database); point --storage at a sweep database" in one_error_line(done.stderr)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notadb.db"]


@pytest.mark.slow
def test_a_read_only_database_is_one_line(tmp_path: Path, tiny_study: Path, sqlite_url: str) -> None:
    assert sweep_cli("create", str(tiny_study), "--storage", sqlite_url).returncode == 0
    read_only = f"sqlite:///file:{tmp_path / 'studies.db'}?mode=ro&uri=true"
    done = sweep_cli("worker", "tiny", "--workers", "1", "--storage", read_only)
    assert done.returncode == 1
    line = one_error_line(done.stderr)
    assert "readonly database" in line and "make the file and its directory writable" in line


@pytest.mark.parametrize("command", [["status", "tiny"], ["list"], ["report", "tiny"], ["requeue", "tiny"], ["worker", "tiny"]])
def test_reading_a_study_that_does_not_exist_creates_nothing(tmp_path: Path, command: list[str]) -> None:
    done = sweep_cli(*command, cwd=tmp_path)
    assert done.returncode == (0 if command == ["list"] else 1)
    if done.returncode:
        assert "no study database at" in one_error_line(done.stderr)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_stopped_create_holding_the_lock_blocks_no_reader_and_is_named_after_a_bound(
    tmp_path: Path, sqlite_url: str, tiny_study: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    from sweep.spec import load_spec

    assert sweep_cli("create", str(tiny_study), "--storage", sqlite_url).returncode == 0
    with open(tmp_path / "studies.db.lock", "a+") as held:  # what a `sweep create` stopped with Ctrl-Z holds
        fcntl.flock(held, fcntl.LOCK_EX)
        held.truncate(0)
        held.write("other-host:4242\n")
        held.flush()
        started = time.perf_counter()
        assert sweep_cli("status", "tiny", "--storage", sqlite_url).returncode == 0
        assert sweep_cli("list", "--storage", sqlite_url).returncode == 0
        assert time.perf_counter() - started < 60
        monkeypatch.setattr("sweep.store.connection.LOCK_WAIT_SECONDS", 1)
        # Resuming a study that lacks nothing needs no lock; creating a new one does.
        spec = load_spec(tiny_study)
        fingerprint = load_data(spec).fingerprint
        resumed = protocol.create_or_resume(open_storage(sqlite_url), spec, fingerprint=fingerprint, points=grid_points(spec, 8))
        assert len(resumed.get_trials()) == 4  # (with the lock, this would be refused after 1 s)
        spec = spec.model_copy(update={"name": "tiny-2"})
        with pytest.raises(StorageError, match="locked for 1 s by sweep process other-host:4242"):
            protocol.create_or_resume(open_storage(sqlite_url), spec, fingerprint="f", points=grid_points(spec, 8))


def _finishes_within(seconds: float, action) -> bool:
    """Whether `action` returns within `seconds` (SQLite's busy timeout, a minute, is far longer)."""
    import threading

    worker = threading.Thread(target=action, daemon=True)
    worker.start()
    worker.join(timeout=seconds)
    return not worker.is_alive()


def test_on_sqlite_an_open_read_blocks_no_writer_and_a_held_write_lock_no_reader(sqlite_url: str) -> None:
    import sqlite3

    import sqlalchemy

    storage = open_storage(sqlite_url)
    optuna.create_study(study_name="s", storage=storage)
    reading = storage.scoped_session()  # a read transaction left open, as Optuna's own tests do
    assert reading.execute(sqlalchemy.text("SELECT count(*) FROM studies")).scalar() == 1
    other = open_storage(sqlite_url)  # another process's connection
    assert _finishes_within(10, lambda: optuna.load_study(study_name="s", storage=other).set_user_attr("k", 1))
    reading.close()

    holder = sqlite3.connect(str(sqlite_url.removeprefix("sqlite:///")), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a writer in the middle of its transaction
    try:
        assert _finishes_within(10, lambda: optuna.load_study(study_name="s", storage=other).user_attrs)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.slow
def test_a_postgresql_role_without_privileges_is_one_line(postgres_url: str, tiny_study: Path) -> None:
    import sqlalchemy

    assert sweep_cli("create", str(tiny_study), "--storage", postgres_url).returncode == 0
    admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool)
    role = "sweep_no_rights"
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
        connection.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
    try:
        url = postgres_url.replace("postgres@", f"{role}@", 1)
        for command in (["status", "tiny"], ["run", "tiny"]):
            done = sweep_cli(*command, "--storage", url)
            assert done.returncode == 1
            line = one_error_line(done.stderr)
            assert "permission denied" in line and "grant the database user the rights" in line
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP OWNED BY {role}")
            connection.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "deep-nesting", "directory"])
def test_a_study_file_that_is_no_study_file_is_one_line_at_once(capsys, monkeypatch, tmp_path: Path, kind: str) -> None:
    import os

    path = tmp_path / "x.toml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    else:
        path.write_text("a = " + "[" * 20_000 + "]" * 20_000 + "\n")
    started = time.perf_counter()
    code, _, err = sweep_in_process(capsys, monkeypatch, "data", str(path))
    assert code == 1 and time.perf_counter() - started < 10
    line = one_error_line(err)
    assert ("not a regular file" in line) if kind != "deep-nesting" else ("nested too deep" in line)


def test_the_dashboard_refuses_a_busy_port_and_a_bad_host_before_it_says_it_listens(
    capsys, monkeypatch, finished_study: str
) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        code, out, err = sweep_in_process(capsys, monkeypatch, "dashboard", "--storage", finished_study, "--port", str(port))
    assert code == 1 and out == ""
    assert f"port {port} on 127.0.0.1 is in use by another program; choose another --port" in one_error_line(err)
    code, out, err = sweep_in_process(capsys, monkeypatch, "dashboard", "--storage", finished_study, "--host", "999.1.1.1")
    assert code == 1 and out == ""
    assert "--host 999.1.1.1 is no address or known name" in one_error_line(err)


# Processes and lifecycles


def workers_of(pid: int) -> set[int]:
    """The worker processes a `sweep run` started (not multiprocessing's resource tracker)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == pid and b"spawn_main" in command:
                found.add(int(entry.name))
    return found


def is_alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}") / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_sigterm_stops_a_run_its_workers_and_puts_the_point_back(tmp_path: Path, sqlite_url: str) -> None:
    import signal
    import subprocess
    import sys

    study = tmp_path / "long.toml"
    study.write_text(
        'name = "long"\nrepeats = 40\n[problem]\nkind = "lag-echo"\nlength = 200\nlag = 1\nn_train = 400\nn_test = 20\n'
        '[grid]\nlengths = [200]\nmodes = ["stateful"]\n[model]\nunits = 8\n[training]\nepochs = 20\n[objective]\nmetric = "rmse"\n'
    )
    run = subprocess.Popen([sys.executable, "-m", "sweep", "run", str(study), "--workers", "2", "--storage", sqlite_url],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(workers_of(run.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(8)  # the workers are training
    workers = workers_of(run.pid)
    assert len(workers) >= 2
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 143, err
    assert "terminated: the point in progress keeps its finished repeats" in err
    deadline = time.monotonic() + 15
    while any(is_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [pid for pid in workers if is_alive(pid)], "worker processes outlived the run"
    trials = optuna.load_study(study_name="long", storage=sqlite_url).trials
    assert [trial.state.name for trial in trials] == ["WAITING"]


def test_an_interrupted_create_shows_its_grid_in_part_and_a_second_create_finishes_it(
    capsys, monkeypatch, tiny_study: Path, sqlite_url: str
) -> None:
    calls = []
    original = optuna.Study.enqueue_trial

    def interrupted_after_two(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, "enqueue_trial", interrupted_after_two)
    code, _, err = sweep_in_process(capsys, monkeypatch, "create", str(tiny_study), "--storage", sqlite_url)
    assert code == 130 and "run this command again to enqueue the rest" in err
    monkeypatch.setattr(optuna.Study, "enqueue_trial", original)
    code, out, _ = sweep_in_process(capsys, monkeypatch, "status", "tiny", "--storage", sqlite_url)
    assert code == 0 and "only 2 of the grid's 4 points are enqueued" in out
    code, _, _ = sweep_in_process(capsys, monkeypatch, "create", str(tiny_study), "--storage", sqlite_url)
    code, out, _ = sweep_in_process(capsys, monkeypatch, "status", "tiny", "--storage", sqlite_url)
    assert "4 points: 0 done, 0 running, 4 waiting" in out and "only" not in out


@pytest.mark.slow
def test_a_point_whose_workers_keep_going_silent_is_queued_again_a_bounded_number_of_times(sqlite_url: str) -> None:
    spec = spec_from_dict({"name": "silent", "repeats": 1, "problem": {"kind": "echo-first", "length": 4},
                           "grid": {"lengths": [4], "modes": ["stateful"]}})
    storage = open_storage(sqlite_url, liveness=Liveness(heartbeat_interval=1, grace_period=2))
    study = protocol.create_or_resume(storage, spec, fingerprint="f", points=grid_points(spec, 4))
    attempts = 0
    while (trial := protocol.claim_next(study)) is not None and attempts < 10:
        attempts += 1
        storage.record_heartbeat(trial._trial_id)  # one beat, then the machine is gone
        deadline = time.monotonic() + 10
        while storage.get_trial(trial._trial_id).state.name == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.5)
            protocol.requeue_stale(study)
    assert attempts == MAX_STALE_RETRIES + 1
    assert [trial.state.name for trial in optuna.load_study(study_name="silent", storage=sqlite_url).trials] == ["FAIL"] * attempts


@pytest.mark.slow
def test_delete_refuses_a_study_with_running_points_and_a_forced_delete_stops_the_run_in_one_line(
    tmp_path: Path, sqlite_url: str
) -> None:
    import subprocess
    import sys

    study = tmp_path / "busy.toml"
    study.write_text(
        'name = "busy"\nrepeats = 8\n[problem]\nkind = "lag-echo"\nlength = 100\nlag = 1\nn_train = 200\nn_test = 20\n'
        '[grid]\nlengths = [100]\nmodes = ["stateful"]\n[model]\nunits = 8\n[training]\nepochs = 10\n[objective]\nmetric = "rmse"\n'
    )
    run = subprocess.Popen([sys.executable, "-m", "sweep", "run", str(study), "--workers", "1", "--reference",
                            "--storage", sqlite_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if any(t.state.name == "RUNNING" for t in optuna.load_study(study_name="busy", storage=sqlite_url).trials):
                break
        except KeyError:
            pass
        time.sleep(0.5)
    refused = sweep_cli("delete", "busy", "--yes", "--storage", sqlite_url)
    assert refused.returncode == 1
    assert "study 'busy' has 1 running point" in one_error_line(refused.stderr) and "--force" in refused.stderr
    forced = sweep_cli("delete", "busy", "--yes", "--force", "--storage", sqlite_url)
    assert forced.returncode == 0, forced.stderr
    _, err = run.communicate(timeout=300)
    assert run.returncode == 1
    assert "study 'busy' was deleted while this run worked on it" in one_error_line(err)
