from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest

from sweep.store import protocol
from sweep.store.connection import open_storage
from sweep.report.summary import Report
from sweep.report.summary import collect as collect_report
from sweep.spec import Spec, grid_points, spec_from_dict
from sweep.store.record import read_results
from sweep.train.compile_cache import CACHE_ENV

POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

TINY_STUDY = """
name = "tiny"
repeats = 3
seed = 0

[problem]
kind = "echo-first"
length = 8
n_train = 40
n_test = 20
seed = 1

[grid]
lengths = [4, 8]
modes = ["stateless", "stateful"]

[model]
units = 4

[training]
epochs = 1
batch_size = 10

[objective]
metric = "accuracy"
per = "sample"
"""


@pytest.fixture(autouse=True, scope="session")
def compile_cache_of_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """XLA's compiled programs kept in a folder of the test session's, not in the user's cache;
    the worker processes of every test inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("compile-cache")))
        yield


@pytest.fixture
def tiny_study(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_STUDY)
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"


SYNTHETIC_SPEC = spec_from_dict({
    "name": "synthetic", "repeats": 3,
    "problem": {"kind": "echo-first", "length": 6},
    "grid": {"lengths": [3, 4, 6], "modes": ["stateless", "stateful"]},
})
SYNTHETIC_SCORES = {
    "L=3 stateless": [0.5, 0.6, 0.7],
    "L=3 stateful": [0.9, 0.95, 1.0],
    "L=4 stateless": [0.1, 0.2, 0.3],
    "L=4 stateful": [0.9, 1.0, 0.95],
    "L=6 stateless": [1.0, 2.0, 3.0],
}  # L=6 stateful stays waiting


def make_synthetic_study(url: str) -> optuna.Study:
    """Five finished grid points with known scores and one still waiting, as sweep stores them."""
    points = grid_points(SYNTHETIC_SPEC, 6)
    study = protocol.create_or_resume(open_storage(url), SYNTHETIC_SPEC, fingerprint="f", points=points, sequence_length=6)
    while (trial := protocol.claim_next(study)) is not None:
        point = protocol.suggest_point(trial, SYNTHETIC_SPEC, points)
        if point.key not in SYNTHETIC_SCORES:
            protocol.release_trial(study, trial)
            break
        for repeat, score in enumerate(SYNTHETIC_SCORES[point.key]):
            protocol.record_repeat(trial, repeat=repeat, score=score, details={"seed": repeat, "seconds": 1.0})
        protocol.finish_trial(study, trial, summary={"wall_seconds": 2.0}, value=float(np.mean(SYNTHETIC_SCORES[point.key])))
    return study


@pytest.fixture
def synthetic_study(sqlite_url: str) -> optuna.Study:
    return make_synthetic_study(sqlite_url)


# Tests on the PostgreSQL server share it (a shared lock on this file); a test marked
# `restarts_postgres` takes it alone (an exclusive lock), so that no other test loses its
# connections to the restart.
POSTGRES_LOCK = Path(tempfile.gettempdir()) / "sweep-tests-postgresql.lock"


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database on the local PostgreSQL server, dropped afterwards."""
    with POSTGRES_LOCK.open("a") as lock:
        alone = request.node.get_closest_marker("restarts_postgres") is not None
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        yield from _fresh_database()


def _fresh_database() -> Iterator[str]:
    import sqlalchemy

    admin = sqlalchemy.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool)
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


@pytest.fixture
def pgbouncer_binary() -> str:
    binary = shutil.which("pgbouncer", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if binary is None:
        pytest.skip("PgBouncer is not installed (Debian: apt-get install pgbouncer)")
    return binary


@pytest.fixture
def pgbouncer_url(postgres_url: str, pgbouncer_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`postgres_url` through a PgBouncer of its own in transaction pooling mode, as operators
    put one in front of many clients: a client holds a server connection for one transaction,
    so nothing may live in a session (prepared statements, session locks)."""
    with pgbouncer(pgbouncer_binary, tmp_path_factory.mktemp("pgbouncer")) as port:
        yield postgres_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{port}/")


@contextlib.contextmanager
def pgbouncer(binary: str, folder: Path, *, databases: str = "* = host=127.0.0.1 port=5432", **settings: object) -> Iterator[int]:
    """A PgBouncer in front of the local server on a free port, in transaction mode, ended after;
    `databases` is its [databases] section (every database of the local server by default)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)  # it drops root for the postgres user, who must read its files
    (folder / "users.txt").write_text('"postgres" ""\n')
    options = {
        "listen_addr": "127.0.0.1", "listen_port": port, "auth_type": "trust",
        "auth_file": folder / "users.txt", "pool_mode": "transaction", "default_pool_size": 4,
        "max_client_conn": 100, "unix_socket_dir": "", **settings,
    }
    config = folder / "pgbouncer.ini"
    config.write_text(f"[databases]\n{databases}\n[pgbouncer]\n"
                      + "".join(f"{key} = {value}\n" for key, value in options.items()))
    for path in folder.iterdir():
        path.chmod(0o644)
    user = ["-u", "postgres"] if os.geteuid() == 0 else []
    log = folder / "pgbouncer.log"  # a file, not a pipe that would fill and stall it
    with log.open("w") as log_file:
        process = subprocess.Popen([binary, *user, str(config)], stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        _wait_for_port(port, process, log)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"PgBouncer ended at start: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"PgBouncer did not listen on port {port} in {seconds} s")


def collect(study: optuna.Study, spec: Spec, sequence_length: int) -> Report:
    """The report's numbers for a study built by hand."""
    results = read_results(study, maximize=spec.is_maximized, metric=spec.metric, sequence_length=sequence_length)
    return collect_report(results, spec)
