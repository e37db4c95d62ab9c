"""Several processes on one study, on SQLite and on the real PostgreSQL: each point taken once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from sweep import study as studies
from sweep.problems import load_problem
from sweep.spec import grid_points, load_spec

POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

CLAIM_ALL = """
import json, sys
from sweep import study as studies
study = studies.load_study(studies.open_storage(sys.argv[1]), "race")
taken = []
while (trial := studies.claim_next(study)) is not None:
    taken.append(trial.number)
    study.tell(trial, 1.0)
json.dump(taken, open(sys.argv[2], "w"))
"""

LAUNCH = """
import sys
from sweep import study as studies
from sweep.spec import grid_points, load_spec
spec = load_spec(sys.argv[2])
studies.create_or_resume(studies.open_storage(sys.argv[1]), spec, fingerprint="f", points=grid_points(spec, 8))
"""


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the local PostgreSQL server, dropped afterwards."""
    import sqlalchemy

    admin = sqlalchemy.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"sweep_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
    except sqlalchemy.exc.OperationalError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 ({error.orig})")
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    return sqlite_url if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def run_python(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stderr=subprocess.PIPE, text=True)


def test_eight_processes_take_each_of_a_hundred_points_exactly_once(shared_url: str, tmp_path: Path) -> None:
    study = optuna.create_study(study_name="race", storage=studies.open_storage(shared_url))
    for number in range(100):
        study.enqueue_trial({"x": number}, user_attrs={"key": str(number)})
    processes = [run_python(CLAIM_ALL, shared_url, str(tmp_path / f"taken{i}.json")) for i in range(8)]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()
    taken = [n for i in range(8) for n in json.loads((tmp_path / f"taken{i}.json").read_text())]
    assert sorted(taken) == list(range(100))  # every point once: none lost, none taken twice
    trials = optuna.load_study(study_name="race", storage=shared_url).get_trials()
    assert len(trials) == 100 and all(t.state == TrialState.COMPLETE for t in trials)


def test_simultaneous_launches_enqueue_each_point_once(shared_url: str, tiny_study: Path) -> None:
    processes = [run_python(LAUNCH, shared_url, str(tiny_study)) for _ in range(4)]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()
    keys = Counter(t.user_attrs["key"] for t in optuna.load_study(study_name="tiny", storage=shared_url).get_trials())
    assert keys == {"L=4 stateless": 1, "L=4 stateful": 1, "L=8 stateless": 1, "L=8 stateful": 1}


def test_a_sweep_runs_end_to_end_on_postgresql(postgres_url: str, tiny_study: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sweep", "run", str(tiny_study), "--workers", "2", "--storage", postgres_url],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    trials = optuna.load_study(study_name="tiny", storage=postgres_url).get_trials()
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert all(sorted(t.intermediate_values) == [0, 1, 2] for t in trials)


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
    dataset = load_problem(spec.problem)
    studies.create_or_resume(
        studies.open_storage(sqlite_url), spec, fingerprint=dataset.fingerprint,
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
