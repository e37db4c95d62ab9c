"""A database that is not a study storage (another program's, a mistyped URL that exists, one whose
own `studies` table clashes with Optuna's) is left exactly as it was by every command: reading
commands say so in one line, and run and create refuse to add tables beside someone else's."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy

import sweep

READING = [["list"], ["status", "x"], ["report", "x"], ["delete", "x", "--yes"], ["worker", "x"], ["dashboard", "--port", "8765"]]
WRITING = [["run", "STUDY"], ["create", "STUDY"]]
TABLES = {"another program's": "CREATE TABLE customers (id INTEGER, name TEXT)",
          "clashing": "CREATE TABLE studies (id INTEGER, owner TEXT)"}


def sweep_cli(args: list[str], url: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweep", *args, "--storage", url], capture_output=True, text=True,
                          cwd=cwd, timeout=120, env={**os.environ, "COLUMNS": "200"})


def snapshot(url: str) -> tuple:
    """The database's tables with their columns, and a SQLite file's journal mode, read only."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            schema = sorted(connection.execute("SELECT name, sql FROM sqlite_master").fetchall())
            return schema, connection.execute("PRAGMA journal_mode").fetchone()
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    inspector = sqlalchemy.inspect(engine)
    schema = sorted((name, str([c["name"] for c in inspector.get_columns(name)])) for name in inspector.get_table_names())
    engine.dispose()
    return schema, None


def foreign_database(url: str, kind: str) -> None:
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    with engine.begin() as connection:
        connection.exec_driver_sql(TABLES[kind])
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'theirs.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.mark.parametrize("kind", sorted(TABLES))
def test_no_command_touches_another_program_s_database(any_url: str, kind: str, tmp_path: Path, tiny_study: Path) -> None:
    foreign_database(any_url, kind)
    before = snapshot(any_url)
    for args in READING + WRITING:
        args = [str(tiny_study) if arg == "STUDY" else arg for arg in args]
        done = sweep_cli(args, any_url, tmp_path)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "is not a study database" in lines[0] and "Traceback" not in done.stderr, (args, lines)
        assert "leaves it as it is" in lines[0]
        assert ("a new database" in lines[0]) == (args[0] in ("run", "create")), lines[0]
        assert snapshot(any_url) == before, args
    with pytest.raises(sweep.StorageError, match="is not a study database"):
        sweep.Study.open("x", storage=any_url)
    assert snapshot(any_url) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("theirs")) == (
        ["theirs.db"] if any_url.startswith("sqlite") else []
    )


def test_an_empty_database_has_no_studies_and_stays_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    url = f"sqlite:///{path}"
    done = sweep_cli(["list"], url, tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"no studies in {url}"
    done = sweep_cli(["status", "x"], url, tmp_path)
    assert done.returncode == 1 and "holds no studies (it has no tables)" in done.stderr
    assert snapshot(url) == ([], ("delete",))


def test_a_dashboard_on_an_empty_database_waits_for_a_study_and_makes_no_table(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    server = subprocess.Popen([sys.executable, "-m", "sweep", "dashboard", "--storage", f"sqlite:///{path}", "--port", "8766"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        out, _ = server.communicate(timeout=8)
    except subprocess.TimeoutExpired:
        server.terminate()
        out, _ = server.communicate(timeout=20)
    assert "waiting for a study in sqlite:///" in out and "the database has no tables yet" in out, out
    assert snapshot(f"sqlite:///{path}") == ([], ("delete",))


def test_a_study_database_still_being_made_is_waited_for_not_refused(tmp_path: Path) -> None:
    """A process that makes a new SQLite storage shows Optuna's tables one at a time; another
    that opens the file meanwhile waits for the maker's lock instead of calling it another program's."""
    import fcntl
    import threading

    import optuna

    path = tmp_path / "studies.db"
    url = f"sqlite:///{path}"
    with sqlite3.connect(path) as connection:  # what the maker has made so far
        connection.execute("CREATE TABLE studies (study_id INTEGER NOT NULL, study_name VARCHAR(512) NOT NULL, PRIMARY KEY (study_id))")
    lock = open(f"{path}.lock", "a+")
    fcntl.flock(lock, fcntl.LOCK_EX)

    def finish_making() -> None:
        optuna.storages.RDBStorage(url)  # the rest of the tables
        fcntl.flock(lock, fcntl.LOCK_UN)

    maker = threading.Timer(1.0, finish_making)
    maker.start()
    try:
        storage = sweep.store.connection.open_storage(url)
    finally:
        maker.join()
        lock.close()
    assert storage.get_all_studies() == []
