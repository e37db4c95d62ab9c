"""The connection to the study database: storage URLs and passwords, engine settings, SQLite's
locking, retries through a dropped connection, the liveness of workers on a shared study, and
one-line descriptions of what goes wrong with a database.

Optuna's ``RDBStorage`` does the storing; this module decides how it connects. On SQLite, a
transaction that will write takes the write lock when it begins, so that a claim reads and
updates a trial under one lock; reads take no lock at all (see :class:`SweepRDBStorage`).

Liveness: a worker that holds a point records a heartbeat every few seconds in the study's
storage (:func:`kept_alive`). When a machine dies, its heartbeats stop, and after the grace
period any other worker fails the point as stale and puts a copy back in the queue with the
repeats already finished (Optuna's ``RetryHeartbeatStaleTrialCallback`` with
``inherit_intermediate_values``), so only the missing repeats are trained again.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import functools
import hashlib
import itertools
import logging
import os
import random
import socket
import sqlite3
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy
import sqlalchemy.event
import sqlalchemy.exc
from optuna.storages import RetryHeartbeatStaleTrialCallback

from sweep.errors import EmptyDatabaseError, StorageError, first_line
from sweep.store.optuna_private import (
    RDB_WRITING_METHODS,
    optuna_table_names,
    record_heartbeat,
    report_in_one_transaction,
    schema_versions,
    set_user_attrs_in_one_transaction,
)

__all__ = [
    "DEFAULT_STORAGE",
    "DatabaseLostError",
    "database_name",
    "Liveness",
    "SweepRDBStorage",
    "WORKER",
    "build_storage",
    "close_storages",
    "connections_by_process",
    "database_exists",
    "database_lock",
    "describe_database_error",
    "display_url",
    "kept_alive",
    "last_opened_url",
    "open_storage",
    "quiet_experimental",
    "retrying",
    "storage_url",
]

DEFAULT_STORAGE = "sqlite:///sweep.db"
STORAGE_ENV = "SWEEP_STORAGE"
PASSWORD_FILE_ENV = "SWEEP_STORAGE_PASSWORD_FILE"
# How long a process waits for another to finish creating a study in the same SQLite file.
LOCK_WAIT_SECONDS = 30
# A point whose worker went silent is queued again this many times, then left failed: a point
# that kills every machine it runs on (out of memory, say) must not be retried forever. Within
# one machine, dead worker processes stop a point after three attempts likewise.
MAX_STALE_RETRIES = 2
WORKER = f"{socket.gethostname()}:{os.getpid()}"  # this process, host:pid
# Errors a dropped connection or a restarting server produce; Optuna wraps SQLAlchemy's own.
TRANSIENT = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)
RETRY_DELAYS = (0.5, 1, 2, 4, 8, 15, 30)  # between tries while the database is away; then every 30 s
# How long the database may stay away before a process gives up (all its steps together).
OUTAGE_SECONDS = 120.0
OUTAGE_ENV = "SWEEP_OUTAGE_SECONDS"
# Connections a process keeps open to a database server (a burst may open two more for a moment).
POOL_SIZE = 2
# How long a SQLite transaction waits for another process's lock before it counts as an outage.
SQLITE_BUSY_SECONDS = 60.0
# The tables whose presence makes a database a study storage (Optuna's; more come with them).
STORAGE_TABLES = frozenset({"studies", "trials", "version_info"})
_T = TypeVar("_T")
log = logging.getLogger("sweep")

optuna.logging.set_verbosity(optuna.logging.WARNING)


@contextlib.contextmanager
def quiet_experimental() -> Iterator[None]:
    """Optuna's heartbeat and note features warn that they are experimental: noise to users."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def storage_url(url: str | None) -> str:
    """The storage to use: the one given, else $SWEEP_STORAGE, else sweep.db in this directory.

    A URL without a password takes the one in the file $SWEEP_STORAGE_PASSWORD_FILE names, so
    that a password can come from a secret file rather than the URL or the environment.
    """
    url = url or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE
    password_file = os.environ.get(PASSWORD_FILE_ENV)
    return _with_password(url, Path(password_file)) if password_file else url


def _with_password(url: str, password_file: Path) -> str:
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return url  # open_storage names the bad URL
    if parsed.password is not None or parsed.get_backend_name() == "sqlite":
        return url
    try:
        password = password_file.read_text().strip()
    except OSError as error:
        raise StorageError(
            f"cannot read the database password file {str(password_file)!r} named by ${PASSWORD_FILE_ENV} "
            f"({error.strerror}); create it or unset ${PASSWORD_FILE_ENV}"
        ) from None
    return parsed.set(password=password).render_as_string(hide_password=False)


def open_storage(
    url: str | None, *, liveness: Liveness | None = None, must_exist: bool = False
) -> optuna.storages.RDBStorage:
    """The study database. With `liveness`, claimed points record heartbeats, and points whose
    heartbeats stopped are failed and queued again with their finished repeats. With
    `must_exist`, a SQLite file that is not there is an error, not created, and no table is made:
    commands that only read or join a study never leave a database behind, nor tables in one.
    A database that is another program's (tables, but not those of a study storage) is refused
    before anything is written to it, by every command."""
    url = storage_url(url)
    database = _sqlite_file(url)
    if must_exist and database is not None and not os.path.exists(database):
        raise StorageError(
            f"no study database at {database}; check --storage (or $SWEEP_STORAGE), or run a study file first"
        )
    if _is_in_memory(url):
        raise StorageError(
            f"storage {url!r} is an in-memory database, gone when the command ends and unseen by worker "
            "processes; use a file, e.g. sqlite:///sweep.db"
        )
    try:
        _refuse_other_programs_database(url, creating=not must_exist)
        storage = _new_storage(url, liveness, create_tables=not must_exist)
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ValueError) as error:
        raise StorageError(
            f"bad storage URL {_redacted(url)!r} ({first_line(error)}); use sqlite:///FILE.db or "
            "postgresql+psycopg://USER@HOST/DB"
        ) from None
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as error:
        raise StorageError(describe_database_error(error, url)) from None
    except sqlalchemy.exc.DatabaseError as error:  # not a database, no rights
        raise StorageError(describe_database_error(error, url)) from None
    except ImportError as error:
        raise StorageError(f"no driver for storage URL {_redacted(url)} ({error}); install it with pip") from None
    _LAST_OPENED[0] = url
    return storage


# The storage URL this process opened last: a database error that reaches the CLI from deep
# inside Optuna carries no URL, and its line must still name the database.
_LAST_OPENED: list[str | None] = [None]


def last_opened_url() -> str | None:
    """The storage URL this process opened last (None before any)."""
    return _LAST_OPENED[0]


# What a database says when retrying cannot help: it must be fixed by hand.
_PERMANENT = ("readonly", "read-only", "permission denied", "not a database", "malformed")


def is_permanent_database_error(error: BaseException) -> bool:
    return any(marker in first_line(_root_cause(error)).lower() for marker in _PERMANENT)


def _root_cause(error: BaseException) -> BaseException:
    """The driver's own error under SQLAlchemy's and Optuna's wrappers."""
    while True:
        inner = getattr(error, "orig", None) or error.__cause__
        if inner is None or inner is error:
            return error
        error = inner


def describe_database_error(error: BaseException, url: str | None = None) -> str:
    """One line for a database that cannot be used: which (if `url` is known), why, and what to do."""
    cause = first_line(_root_cause(error))
    where = f" {_sqlite_file(url) or _redacted(url)}" if url is not None else ""
    for markers, problem, fix in _DATABASE_PROBLEMS:
        if any(marker in cause.lower() for marker in markers):
            return f"{problem} the study database{where} ({cause}); {fix}"
    return f"cannot reach the study database{where} ({cause}); check that the server is up and the URL is right"


_POOLER = "the connection pooler (PgBouncer)"
# (what the database says, what went wrong, what to do), the first that matches.
_DATABASE_PROBLEMS = (
    # A pooler answers for the server; its failures are its settings', not the server's.
    (("pgbouncer cannot connect to server", "server login has been failing"), f"{_POOLER} cannot reach the server of",
     "check that the server is up and the host and port of this database in the pooler's [databases] section"),
    (("max_client_conn",), f"{_POOLER} refuses more clients for",
     "raise max_client_conn in pgbouncer.ini, or run fewer worker processes"),
    (("no such database:",), f"{_POOLER} has no entry for",
     "add it to the [databases] section of pgbouncer.ini, or fix its name in the URL"),
    (("query_wait_timeout", "query_timeout"), f"{_POOLER} found no free server connection for",
     "raise default_pool_size (or query_wait_timeout) in pgbouncer.ini, or run fewer worker processes"),
    (('prepared statement "',), "a connection pooler in transaction mode lost a prepared statement of",
     "sweep's own connections prepare none; pool this database in session mode, or set max_prepared_statements "
     "(PgBouncer 1.21 or later)"),
    # PostgreSQL: "sorry, too many clients already", "remaining connection slots are reserved ...".
    (("too many clients", "connection slots are reserved"), "the server has no connection left for",
     "each sweep process holds two; put PgBouncer in front of the server (see README), raise its "
     "max_connections, or run fewer worker processes"),
    (("not a database", "malformed"), "cannot use", "point --storage at a sweep database or at a new file"),
    (("readonly", "read-only"), "cannot write to",
     "sweep needs to write there, even to read (SQLite's write-ahead log): make the file and its directory writable"),
    (("unable to open",), "cannot reach", "check that its directory exists and is writable"),
    (("permission denied", "privilege"), "cannot use",
     "grant the database user the rights on the database and its tables, or use another user"),
    (("locked",), "cannot use", "another process holds the database; wait for it or end it"),
    (("password authentication failed", "no password supplied"), "cannot log in to",
     f"fix the user or password in the URL (or the file ${PASSWORD_FILE_ENV} names)"),
    (('role "',), "cannot log in to", "fix the user in the URL: the server has no such role"),
    # Two writers at one row, which sweep's own writes avoid: not a connection problem.
    (("duplicate key value", "unique constraint"), "two processes wrote the same row of",
     "run the command again; if it happens again, run it with --debug and report the traceback"),
    # PostgreSQL: 'database "NAME" does not exist' (a missing table says 'relation "NAME" ...').
    (('database "',), "cannot use", "create that database first (createdb NAME) or fix its name in the URL"),
)


def database_exists(url: str | None) -> bool:
    """False only for a SQLite file that is not there (a server's database is taken as there)."""
    database = _sqlite_file(storage_url(url))
    return database is None or os.path.exists(database)


def _sqlite_database(url: str) -> str | None:
    """The database of a SQLite URL as written ("" or ":memory:" in memory); None for others."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return None
    return (parsed.database or "") if parsed.get_backend_name() == "sqlite" else None


def _sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL; None for other databases and in-memory ones."""
    database = _sqlite_database(url)
    if not database or database == ":memory:":
        return None
    # A URI filename (sqlite:///file:PATH?mode=ro&uri=true) names its file after "file:".
    return os.path.abspath(database.removeprefix("file:").split("?")[0])


def _is_in_memory(url: str) -> bool:
    return _sqlite_database(url) in ("", ":memory:")


@dataclass(frozen=True)
class Liveness:
    """How often a worker proves it is alive, and how long silence means it is dead (seconds)."""

    heartbeat_interval: int = 10
    grace_period: int = 60

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_interval < self.grace_period:
            raise StorageError(
                f"heartbeat interval {self.heartbeat_interval} s and grace period {self.grace_period} s "
                "(--heartbeat-interval, --grace-period): the interval must be positive and the grace period "
                "longer; a few intervals is usual"
            )

    def storage_options(self) -> dict[str, Any]:
        """RDBStorage's options for these settings: a point silent for the grace period is failed
        and queued again with its finished repeats, at most MAX_STALE_RETRIES times."""
        with quiet_experimental():
            retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_STALE_RETRIES, inherit_intermediate_values=True)
        return {
            "heartbeat_interval": self.heartbeat_interval,
            "grace_period": self.grace_period,
            "heartbeat_stale_trial_callback": retry,
        }


@contextlib.contextmanager
def kept_alive(trial: optuna.Trial, *, interval: float | None) -> Iterator[None]:
    """Record the trial's heartbeat every `interval` seconds on a thread while the block runs
    (nothing with heartbeats off, `interval` None).

    Optuna's own heartbeat thread dies at the first database error, and the trial then looks dead
    to every other worker; this one logs the error and beats again at the next interval.
    """
    if interval is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                record_heartbeat(trial)
            except Exception as error:  # noqa: BLE001 (any failure: beat again next time)
                log.warning("heartbeat of trial %s not recorded (%s); trying again", trial.number, first_line(_root_cause(error)))
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class DatabaseLostError(StorageError):
    """The database stayed away for the whole outage budget: the step that failed last, the
    driver's own cause, how long it was gone, and (where known) which database it was and how
    many finished repeats could not be recorded."""

    def __init__(
        self, *, what: str, cause: str, seconds: float, n_unrecorded: int = 0, database: str | None = None
    ) -> None:
        self.what, self.cause, self.seconds = what, cause, seconds
        self.n_unrecorded, self.database = n_unrecorded, database
        super().__init__(self._describe())

    def but(self, **changes: Any) -> DatabaseLostError:
        """The same loss, with more known about it (`n_unrecorded`, `database`)."""
        known = dict(what=self.what, cause=self.cause, seconds=self.seconds, n_unrecorded=self.n_unrecorded, database=self.database)
        return DatabaseLostError(**{**known, **changes})

    def _describe(self) -> str:
        which = f" {self.database}" if self.database else ""
        n = self.n_unrecorded
        lost = f"; {n} finished since {'were' if n != 1 else 'was'} not and will be trained again" if n else ""
        return (
            f"lost the study database{which} while {self.what} ({self.cause}), for {self.seconds:.0f} s; the repeats "
            f"recorded before it went away are kept{lost}; run the same command again once the database is back"
        )


def database_name(url: str) -> str:
    """A database as messages name it: a SQLite file's path, else the URL with any password hidden."""
    return _sqlite_file(url) or _redacted(url)


class _Outage:
    """When this process last found the database gone (None: it answers). Every storage write
    that fails while it is gone shares one budget, counted from the first failure: a run gives up
    once, after the budget, not once per step it tries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None

    def seconds(self, *, since: float) -> float:
        """How long the database has been away, counted from `since` (when the failed try began,
        on the monotonic clock) at the first failure: a try that waited on a lock has waited
        its time out of the budget."""
        with self._lock:
            if self._since is None:
                self._since = since
            return time.monotonic() - self._since

    def left(self, budget: float) -> float:
        """Seconds of `budget` not yet spent by the present outage (all of it when there is none)."""
        with self._lock:
            return budget if self._since is None else budget - (time.monotonic() - self._since)

    def over(self) -> None:
        with self._lock:
            self._since = None


_OUTAGE = _Outage()


def outage_budget() -> float:
    """Seconds a process waits for a database that went away before it gives up: $SWEEP_OUTAGE_SECONDS,
    else OUTAGE_SECONDS."""
    value = os.environ.get(OUTAGE_ENV)
    if value is None:
        return OUTAGE_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise StorageError(f"${OUTAGE_ENV} is {value!r}; give it a number of seconds above 0, or unset it (default {OUTAGE_SECONDS:.0f})")
    return seconds


def retrying(action: Callable[[], _T], *, what: str, delays: tuple[float, ...] = RETRY_DELAYS) -> _T:
    """Run a storage write, retrying through transient database errors (waiting `delays` between
    tries, the last again and again) until the database has been away for the outage budget;
    then give up with one line (DatabaseLostError) that names the step and the driver's cause."""
    budget = outage_budget()
    for attempt in itertools.count():
        began = time.monotonic()
        try:
            result = action()
        except TRANSIENT as error:
            if is_permanent_database_error(error):
                raise StorageError(describe_database_error(error)) from None
            cause = first_line(_root_cause(error))
            away = _OUTAGE.seconds(since=began)
            if away >= budget:
                raise DatabaseLostError(what=what, cause=cause, seconds=away) from None
            delay = min(delays[min(attempt, len(delays) - 1)] if delays else 0.0, budget - away)
            log.warning("database error while %s (%s); retrying in %.1f s", what, cause, delay)
            time.sleep(delay)
        else:
            _OUTAGE.over()
            return result
    raise AssertionError("unreachable")


def _refuse_other_programs_database(url: str, *, creating: bool) -> None:
    """Refuse, before Optuna writes anything, a database that holds tables but is no study
    storage (another program's, or a mistyped URL that happens to exist), and, unless
    `creating`, one without any table. The tables are listed read-only: a SQLite file is opened
    in read-only mode, so that even its journal mode stays as it was."""
    tables = _table_names(url)
    if tables and _may_be_half_made(url, tables):
        # SQLite makes Optuna's tables one statement at a time, so a process that makes a new
        # database shows some of them before all; it holds the lock beside the file till the
        # last, so wait for it and look again rather than take its half for another program's.
        with _sqlite_file_lock(url):
            tables = _table_names(url)
    if tables is None or STORAGE_TABLES <= tables:
        return
    where = _sqlite_file(url) or _redacted(url)
    if not tables:
        if creating:
            return
        raise EmptyDatabaseError(
            f"{where} holds no studies (it has no tables); check --storage (or $SWEEP_STORAGE), or run a study file first"
        )
    clashing = sorted(tables & set(optuna_table_names()))
    shown = ", ".join(sorted(tables)[:6]) + (", ..." if len(tables) > 6 else "")
    if clashing:
        problem = f"its tables ({shown}) are another program's, named as a study storage's ({', '.join(clashing)}) are"
    else:
        problem = f"it holds another program's tables ({shown}) and no studies"
    fix = "point --storage at a new database for sweep's studies" if creating else "check --storage (or $SWEEP_STORAGE)"
    raise StorageError(f"{where} is not a study database: {problem}; sweep leaves it as it is: {fix}")


def _may_be_half_made(url: str, tables: set[str]) -> bool:
    """Whether `tables` could be a study storage still being made: Optuna's tables, not all of
    them, in a SQLite file whose creation lock exists (its maker leaves it there)."""
    database = _sqlite_file(url)
    return (
        database is not None
        and not STORAGE_TABLES <= tables
        and tables <= set(optuna_table_names()) | {"version_info", "alembic_version"}
        and os.path.exists(f"{database}.lock")
    )


def _table_names(url: str) -> set[str] | None:
    """The tables of the database, read without writing; None for a SQLite file not there yet."""
    database = _sqlite_file(url)
    if database is not None:
        if not os.path.exists(database):
            return None
        try:
            with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=60)) as connection:
                rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        except sqlite3.DatabaseError as error:  # not a database, or damaged: say so, naming the file
            raise StorageError(describe_database_error(error, url)) from None
        return {name for (name,) in rows}
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, **{
        key: value for key, value in _engine_kwargs(url).items() if key == "connect_args"
    })
    try:
        return set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _new_storage(url: str, liveness: Liveness | None, *, create_tables: bool = True, attempts: int = 5) -> SweepRDBStorage:
    """Optuna's storage; processes that create the same new database at once collide on its
    tables and version stamp, and the loser finds them made when it tries again. Without
    `create_tables`, none is made (the database was checked to hold them)."""
    options: dict[str, Any] = liveness.storage_options() if liveness is not None else {}
    if not create_tables:
        options["skip_table_creation"] = True
    # The lock keeps processes that make a new database at once apart; an existing one needs none
    # (and a read must not wait on a stopped `sweep create`).
    database = _sqlite_file(url)
    is_new = database is not None and not os.path.exists(database)
    for attempt in range(attempts):
        try:
            with _sqlite_file_lock(url) if is_new else contextlib.nullcontext():
                return build_storage(url, **options)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def build_storage(url: str, *, engine_kwargs: dict[str, Any] | None = None, **options: Any) -> SweepRDBStorage:
    """Optuna's storage as sweep connects it: sweep's engine settings (`engine_kwargs` override
    them) and SQLite's locking; `options` go to RDBStorage as they are. No checks: see open_storage."""
    with quiet_experimental():
        storage = SweepRDBStorage(url, engine_kwargs={**_engine_kwargs(url), **(engine_kwargs or {})}, **options)
    _lock_sqlite_writes_up_front(storage.engine)
    return storage


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Wait for a busy database rather than failing at once (see _sqlite_busy_wait_ms).
        return {"connect_args": {"timeout": SQLITE_BUSY_SECONDS}}
    # A process uses one connection for its work and one for its heartbeats; two more may open
    # for a moment (creating a study takes a lock on one); none is kept beyond those two.
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_recycle": 300, "pool_size": POOL_SIZE, "max_overflow": 2}
    if url.startswith(("postgresql+psycopg:", "postgresql+psycopg2:", "postgresql:")):
        kwargs["connect_args"] = {
            # Notice a dead server or network in seconds, not in the kernel's two hours.
            "connect_timeout": 10,
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            # Who holds a connection, in pg_stat_activity.
            "application_name": f"sweep {WORKER}"[:63],
        }
    if url.startswith("postgresql+psycopg:"):
        # psycopg 3 prepares a statement run five times on its session; behind a pooler in
        # transaction mode the next transaction may be on another server session, where that
        # statement does not exist. sweep's statements are cheap to plan: prepare none.
        kwargs["connect_args"]["prepare_threshold"] = None
    return kwargs


# Set while one of the storage's writing methods runs, in this thread (see SweepRDBStorage).
_WRITING: contextvars.ContextVar[bool] = contextvars.ContextVar("sweep_storage_writing", default=False)

class SweepRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage, whose writing methods, on SQLite, lock the database when they begin.

    SQLite ignores SELECT ... FOR UPDATE, so two processes could both read a trial as WAITING and
    both claim it; and a transaction that reads, then writes after another process has written,
    fails at once, however long the busy timeout. A writing method's transaction therefore
    begins with BEGIN IMMEDIATE: its reads and its writes happen under the write lock, one
    process at a time, and other writers wait their turn. Every other transaction is a plain
    BEGIN, which in WAL mode neither waits for nor blocks anyone.
    """

    def __init__(self, url: str, *args: Any, skip_compatibility_check: bool = False, **kwargs: Any) -> None:
        super().__init__(url, *args, skip_compatibility_check=True, **kwargs)
        _OPEN_STORAGES.add(self)
        self.checks_schema = not skip_compatibility_check
        if self.checks_schema:
            _check_schema(self)

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)  # a new engine, which needs the listeners again
        _OPEN_STORAGES.add(self)
        _lock_sqlite_writes_up_front(self.engine)
        if self.checks_schema:
            _check_schema(self)

    def set_trial_user_attrs(self, trial_id: int, attrs: Mapping[str, Any]) -> None:
        """Set many user attributes of a trial in one transaction (a writing method, as below)."""
        set_user_attrs_in_one_transaction(self, trial_id, attrs)

    def set_trial_intermediate_values(self, trial_id: int, values: Mapping[int, float]) -> None:
        """Report many steps of a trial in one transaction (a writing method, as below)."""
        report_in_one_transaction(self, trial_id, values)


# Every storage this process has opened and still holds.
_OPEN_STORAGES: weakref.WeakSet[SweepRDBStorage] = weakref.WeakSet()


def close_storages() -> None:
    """Close every database connection this process holds. A SQLite database folds its write-ahead
    log back into its file as its last connection closes, and leaves no -wal or -shm file beside
    it; a process that ends without the collector's last pass (see the CLI) still closes them so."""
    for storage in list(_OPEN_STORAGES):
        # A database that went away has nothing left to fold in; the error that ended the
        # command, if any, is the one to tell.
        with contextlib.suppress(Exception):
            storage.remove_session()
        with contextlib.suppress(Exception):
            storage.engine.dispose()


def _check_schema(storage: SweepRDBStorage) -> None:
    """Refuse tables of a schema this Optuna does not write (see schema_versions)."""
    current, head, known = schema_versions(storage)
    if current == head:
        return
    fix = (
        "upgrade them with: optuna storage upgrade --storage URL" if known
        else "upgrade Optuna on this machine (pip install -U optuna)"
    )
    raise StorageError(
        f"the tables of the study database {_sqlite_file(storage.url) or _redacted(storage.url)} are of "
        f"another Optuna's schema ({current}; Optuna {optuna.__version__} writes {head}); {fix}"
    )


def _writing(method: Callable[..., _T]) -> Callable[..., _T]:
    @functools.wraps(method)
    def under_the_write_lock(*args: Any, **kwargs: Any) -> _T:
        token = _WRITING.set(True)
        try:
            return method(*args, **kwargs)
        finally:
            _WRITING.reset(token)

    return under_the_write_lock


for _name in (*RDB_WRITING_METHODS, "set_trial_user_attrs", "set_trial_intermediate_values"):
    setattr(SweepRDBStorage, _name, _writing(getattr(SweepRDBStorage, _name)))


def _sqlite_busy_wait_ms() -> int:
    """How long a transaction waits for another process's lock on a SQLite file: a minute, but
    never longer than the outage budget has left, so that a locked file ends a run on time."""
    return max(1, round(1000 * min(SQLITE_BUSY_SECONDS, _OUTAGE.left(outage_budget()))))


def _lock_sqlite_writes_up_front(engine: sqlalchemy.engine.Engine) -> None:
    """On SQLite: WAL, a busy timeout, and transactions begun as SweepRDBStorage says."""
    if engine.dialect.name != "sqlite":
        return

    @sqlalchemy.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None  # sqlite3 emits no BEGIN of its own
        dbapi_connection.execute("PRAGMA journal_mode=WAL")

    @sqlalchemy.event.listens_for(engine, "begin")
    def _on_begin(connection: sqlalchemy.engine.Connection) -> None:
        connection.exec_driver_sql(f"PRAGMA busy_timeout={_sqlite_busy_wait_ms()}")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if _WRITING.get() else "BEGIN")

    # Connections opened before the listeners existed would still begin lazily.
    engine.dispose()


def connections_by_process(engine: sqlalchemy.engine.Engine) -> dict[str, int] | None:
    """The connections sweep processes hold to this PostgreSQL database, by process (host:pid, as
    each names its connections), this process's own left out; None on other databases. Through
    a pooler the server sees the pooler's connections, named after the client that last used each."""
    if engine.dialect.name != "postgresql":
        return None
    query = sqlalchemy.text(
        "SELECT application_name, count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name LIKE 'sweep %' GROUP BY application_name"
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    counts = {name.removeprefix("sweep "): int(n) for name, n in rows}
    counts.pop(WORKER, None)
    return counts


def display_url(url: str | None) -> str:
    """The storage URL to show: the one in use, with any password hidden."""
    return _redacted(storage_url(url))


def _redacted(url: str) -> str:
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url



@contextlib.contextmanager
def database_lock(storage: optuna.storages.BaseStorage, name: str) -> Iterator[None]:
    """One process at a time creates a study or enqueues its grid, so no point is enqueued twice.

    PostgreSQL: an advisory lock named after the study, taken by a transaction of its own
    connection and let go when that transaction ends, so that it dies with a process that dies
    holding it. A process that finds it taken ends its transaction and tries again a moment
    later, rather than wait inside one: behind a pooler in transaction mode, waiters that each
    held a server connection could take them all, and the holder would wait for one in vain.
    SQLite: a lock file beside the database (SQLite studies are shared only between processes of
    one machine). Other storages: none.
    """
    engine = getattr(storage, "engine", None)
    if engine is not None and engine.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"sweep:{name}".encode()).digest()[:8], "big", signed=True)
        with engine.connect() as connection, _holding_advisory_lock(connection, key):
            yield
        return
    with _sqlite_file_lock(str(engine.url) if engine is not None else ""):
        yield


def _holding_advisory_lock(connection: sqlalchemy.engine.Connection, key: int) -> sqlalchemy.engine.Transaction:
    """A transaction of `connection` that holds the advisory lock `key` (commit or roll it back to let go)."""
    query = sqlalchemy.text("SELECT pg_try_advisory_xact_lock(:lock_id)")
    while True:
        transaction = connection.begin()
        if connection.execute(query, {"lock_id": key}).scalar():
            return transaction
        transaction.rollback()
        time.sleep(random.uniform(0.05, 0.3))


@contextlib.contextmanager
def _sqlite_file_lock(url: str) -> Iterator[None]:
    """An exclusive lock on a file beside a SQLite database; nothing for other URLs."""
    database = _sqlite_file(url)
    if database is None or not os.path.isdir(os.path.dirname(database)):
        yield
        return
    with open(f"{database}.lock", "a+") as lock_file:
        _wait_for_lock(lock_file, database)
        lock_file.truncate(0)
        lock_file.write(f"{WORKER}\n")  # who holds it, for whoever waits
        lock_file.flush()
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _wait_for_lock(lock_file: Any, database: str) -> None:
    """Take the lock, waiting at most LOCK_WAIT_SECONDS; then say who holds it."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                lock_file.seek(0)
                holder = lock_file.read().strip() or "another process"
                raise StorageError(
                    f"{database} has been locked for {LOCK_WAIT_SECONDS} s by sweep process {holder} (creating a study "
                    "or its grid); let it finish, or end it if it is stopped (Ctrl-Z), then try again"
                ) from None
            time.sleep(0.1)

