"""The study database: storage URLs, creating and resuming studies, enqueuing the grid, and
claiming and recording trials.

One grid point is one Optuna trial. The whole grid is enqueued up front, one WAITING trial per
point with its key, so its size and progress are plain to see. A trial's repeats are stored as
they finish, as intermediate values at step = repeat index, so an interrupted trial goes back to
WAITING with them and the next run trains only the repeats still missing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RetryHeartbeatStaleTrialCallback
import sqlalchemy.event
import sqlalchemy.exc
from optuna.trial import FrozenTrial, Trial, TrialState

from sweep.errors import SpecError, StorageError
from sweep.spec import GridPoint, Spec, spec_from_dict

__all__ = [
    "DEFAULT_STORAGE",
    "claim_next",
    "create_or_resume",
    "fail_trial",
    "finish_trial",
    "load_study",
    "open_storage",
    "record_repeat",
    "restore_missing_scores",
    "release_trial",
    "storage_url",
    "study_spec",
]

DEFAULT_STORAGE = "sqlite:///sweep.db"
STORAGE_ENV = "SWEEP_STORAGE"
PASSWORD_FILE_ENV = "SWEEP_STORAGE_PASSWORD_FILE"
SPEC_ATTR = "spec"
MARKER_ATTR = "sweep_format"  # sweep's mark on a study it made: the version of its format
FORMAT_VERSION = 1
# How long a process waits for another to finish creating a study in the same SQLite file.
LOCK_WAIT_SECONDS = 30
FINGERPRINT_ATTR = "data_fingerprint"
SEQUENCE_LENGTH_ATTR = "sequence_length"
# A point whose worker went silent is queued again this many times, then left failed: a point
# that kills every machine it runs on (out of memory, say) must not be retried forever. Within
# one machine, dead worker processes stop a point after three attempts likewise.
MAX_STALE_RETRIES = 2
GRID_SIZE_ATTR = "n_points"  # the whole grid's size, stored before its points are enqueued
ENCODING_ATTR = "data_encoding"  # class names and standardization of a user's data
REPEAT_ATTR = "repeat/"  # + zero-padded repeat index: seed, every metric, seconds
FAIL_KIND_ATTR = "fail_kind"  # DIVERGED or ERRORED; absent for a point whose workers kept dying
DIVERGED = "diverged"
ERRORED = "errored"
SET_ASIDE_ATTR = "set_aside"  # a trial that is no grid point, failed for good
WORKER_ATTR = "worker"  # host:pid of the process that claimed the point last
WORKER = f"{socket.gethostname()}:{os.getpid()}"

optuna.logging.set_verbosity(optuna.logging.WARNING)


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
    url: str | None, *, heartbeat: Liveness | None = None, must_exist: bool = False
) -> optuna.storages.RDBStorage:
    """The study database. With `heartbeat`, claimed points record heartbeats, and points whose
    heartbeats stopped are failed and queued again with their finished repeats. With
    `must_exist`, a SQLite file that is not there is an error, not created: commands that only
    read or join a study never leave a database behind."""
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
    if heartbeat is not None and not 0 < heartbeat.heartbeat_interval < heartbeat.grace_period:
        raise StorageError(
            f"heartbeat interval {heartbeat.heartbeat_interval} s and grace period {heartbeat.grace_period} s: "
            "the interval must be positive and the grace period longer (a few intervals is usual)"
        )
    try:
        storage = _new_storage(url, heartbeat)
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ValueError) as error:
        raise StorageError(
            f"bad storage URL {_redacted(url)!r} ({_first_line(error)}); use sqlite:///FILE.db or "
            "postgresql+psycopg://USER@HOST/DB"
        ) from None
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as error:
        raise StorageError(describe_database_error(error, url)) from None
    except sqlalchemy.exc.DatabaseError as error:  # not a database, no rights
        raise StorageError(describe_database_error(error, url)) from None
    except ImportError as error:
        raise StorageError(f"no driver for storage URL {_redacted(url)} ({error}); install it with pip") from None
    if storage.engine.dialect.name == "sqlite":
        _lock_sqlite_writes_up_front(storage.engine)
    return storage


# What a database says when retrying cannot help: it must be fixed by hand.
_PERMANENT = ("readonly", "read-only", "permission denied", "not a database", "malformed")


def is_permanent_database_error(error: BaseException) -> bool:
    return any(marker in _first_line(_root_cause(error)).lower() for marker in _PERMANENT)


def _root_cause(error: BaseException) -> BaseException:
    """The driver's own error under SQLAlchemy's and Optuna's wrappers."""
    while True:
        inner = getattr(error, "orig", None) or error.__cause__
        if inner is None or inner is error:
            return error
        error = inner


def describe_database_error(error: BaseException, url: str | None = None) -> str:
    """One line for a database that cannot be used: which (if `url` is known), why, and what to do."""
    cause = _first_line(_root_cause(error))
    where = f" {_sqlite_file(url) or _redacted(url)}" if url is not None else ""
    for markers, problem, fix in _DATABASE_PROBLEMS:
        if any(marker in cause.lower() for marker in markers):
            return f"{problem} the study database{where} ({cause}); {fix}"
    return f"cannot reach the study database{where} ({cause}); check that the server is up and the URL is right"


# (what the database says, what went wrong, what to do), the first that matches.
_DATABASE_PROBLEMS = (
    (("not a database", "malformed"), "cannot use", "point --storage at a sweep database or at a new file"),
    (("readonly", "read-only"), "cannot write to",
     "sweep needs to write there, even to read (SQLite's write-ahead log): make the file and its directory writable"),
    (("unable to open",), "cannot reach", "check that its directory exists and is writable"),
    (("permission denied", "privilege"), "cannot use",
     "grant the database user the rights on the database and its tables, or use another user"),
    (("locked",), "cannot use", "another process holds the database; wait for it or end it"),
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


def _new_storage(url: str, heartbeat: Liveness | None, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Optuna's storage; processes that create the same new database at once collide on its
    tables and version stamp, and the loser finds them made when it tries again."""
    liveness: dict[str, Any] = {}
    if heartbeat is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_STALE_RETRIES, inherit_intermediate_values=True)
        liveness = {
            "heartbeat_interval": heartbeat.heartbeat_interval,
            "grace_period": heartbeat.grace_period,
            "heartbeat_stale_trial_callback": retry,
        }
    # The lock keeps processes that make a new database at once apart; an existing one needs none
    # (and a read must not wait on a stopped `sweep create`).
    database = _sqlite_file(url)
    is_new = database is not None and not os.path.exists(database)
    for attempt in range(attempts):
        try:
            with _sqlite_file_lock(url) if is_new else contextlib.nullcontext(), warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url), **liveness)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Wait for a busy database rather than failing at once.
        return {"connect_args": {"timeout": 60}}
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_recycle": 300}
    if url.startswith(("postgresql+psycopg:", "postgresql+psycopg2:", "postgresql:")):
        # Notice a dead server or network in seconds, not in the kernel's two hours.
        kwargs["connect_args"] = {
            "connect_timeout": 10,
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
    return kwargs


def _lock_sqlite_writes_up_front(engine: sqlalchemy.engine.Engine) -> None:
    """Make every SQLite transaction take the write lock when it begins.

    SQLite ignores SELECT ... FOR UPDATE, so two processes could both read a trial as WAITING
    and both claim it. With BEGIN IMMEDIATE the read and the update of a claim happen under one
    write lock, one process at a time; WAL lets readers outside transactions go on meanwhile.
    """

    @sqlalchemy.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None  # sqlite3 emits no BEGIN of its own
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA busy_timeout=60000")

    @sqlalchemy.event.listens_for(engine, "begin")
    def _on_begin(connection: sqlalchemy.engine.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    # Connections opened before the listeners existed would still begin lazily.
    engine.dispose()


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def display_url(url: str | None) -> str:
    """The storage URL to show: the one in use, with any password hidden."""
    return _redacted(storage_url(url))


def _redacted(url: str) -> str:
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def is_sweep_study(user_attrs: Mapping[str, Any]) -> bool:
    """Whether a study's attributes carry sweep's marker (or, made before the marker, its spec)."""
    return MARKER_ATTR in user_attrs or SPEC_ATTR in user_attrs


def load_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    """A study that sweep made; any other is refused, and left as it is."""
    study = _load_any_study(storage, name)
    if not is_sweep_study(study.user_attrs):
        raise StorageError(
            f"study {name!r} was not made by sweep (it has no sweep marker), and sweep leaves it alone; "
            "check the name, or remove it with Optuna (optuna delete-study) if it is yours"
        )
    return study


def _load_any_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler())
    except KeyError:
        names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False))
        known = f"studies there: {', '.join(names)}" if names else "the storage holds no study yet"
        raise StorageError(f"no study named {name!r} in this storage ({known}); check --storage or the name") from None


def study_exists(study: optuna.Study) -> bool:
    """Whether the study is still in its storage (another command may have deleted it)."""
    try:
        return study.study_name in optuna.get_all_study_names(study._storage)
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError):
        return True  # cannot tell: let the first error speak


def study_spec(study: optuna.Study) -> Spec:
    raw = study.user_attrs.get(SPEC_ATTR)
    if raw is None:
        raise StorageError(f"study {study.study_name!r} was not made by sweep (it has no spec); pick another name")
    try:
        stored = json.loads(raw) if isinstance(raw, str) else None
    except json.JSONDecodeError:
        stored = None
    if not isinstance(stored, dict):
        raise StorageError(
            f"study {study.study_name!r} has a damaged spec (user attribute {SPEC_ATTR!r} is not a study's settings); "
            f"restore it, or remove the study (sweep delete {study.study_name})"
        )
    try:
        return spec_from_dict(_as_stored(stored), source=f"study {study.study_name!r}")
    except SpecError as error:
        raise StorageError(f"{error} (the stored spec is damaged: restore it, or sweep delete {study.study_name})") from None


def _as_stored(raw: dict) -> dict:
    """A stored spec with the settings its version had where later versions changed a default:
    npz data were not standardized before `standardize` existed."""
    problem = raw.get("problem")
    if isinstance(problem, dict) and problem.get("kind") == "npz":
        problem.setdefault("standardize", False)
    return raw


def create_or_resume(
    storage: optuna.storages.BaseStorage,
    spec: Spec,
    *,
    fingerprint: str,
    points: Sequence[GridPoint],
    sequence_length: int | None = None,
    encoding: dict | None = None,
) -> optuna.Study:
    """The study of `spec`, created with its whole grid enqueued, or resumed if it exists.

    Resuming checks that the stored spec and data fingerprint match and enqueues only the grid
    points that have no trial yet, so running twice never adds a point twice. `encoding` (class
    names, standardization) is stored with a new study.
    """
    with _creation_lock(storage, spec.name):
        return _create_or_resume(
            storage, spec, fingerprint=fingerprint, points=points, sequence_length=sequence_length, encoding=encoding
        )


def _create_or_resume(
    storage: optuna.storages.BaseStorage,
    spec: Spec,
    *,
    fingerprint: str,
    points: Sequence[GridPoint],
    sequence_length: int | None,
    encoding: dict | None,
) -> optuna.Study:
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if spec.name in names:
        study = _load_any_study(storage, spec.name)
        if not is_sweep_study(study.user_attrs):
            raise StorageError(
                f"study {spec.name!r} exists but was not made by sweep, and sweep leaves it alone; "
                "give this one another name (--name)"
            )
        _check_same_study(study, spec, fingerprint)
    else:
        study = optuna.create_study(
            study_name=spec.name,
            storage=storage,
            direction=spec.direction,
            sampler=optuna.samplers.RandomSampler(),
        )
    if SPEC_ATTR not in study.user_attrs:
        if sequence_length is not None:
            study.set_user_attr(SEQUENCE_LENGTH_ATTR, sequence_length)
        if encoding:
            study.set_user_attr(ENCODING_ATTR, encoding)
        study.set_user_attr(FINGERPRINT_ATTR, fingerprint)
        study.set_user_attr(SPEC_ATTR, json.dumps(spec.model_dump(mode="json"), sort_keys=True))
        study.set_user_attr(MARKER_ATTR, FORMAT_VERSION)
    if study.user_attrs.get(GRID_SIZE_ATTR) != len(points):
        # Stored before the points, so that a grid whose enqueuing was cut short shows as such.
        study.set_user_attr(GRID_SIZE_ATTR, len(points))
    enqueue_grid(study, points)
    return study


@contextlib.contextmanager
def _creation_lock(storage: optuna.storages.BaseStorage, name: str) -> Iterator[None]:
    """One process at a time creates a study or enqueues its grid, so no point is enqueued twice.

    PostgreSQL: an advisory lock named after the study, held by its own connection. SQLite: a
    lock file beside the database (SQLite studies are shared only between processes of one
    machine). Other storages: none.
    """
    engine = getattr(storage, "engine", None)
    if engine is not None and engine.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"sweep:{name}".encode()).digest()[:8], "big", signed=True)
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()
        return
    with _sqlite_file_lock(str(engine.url) if engine is not None else ""):
        yield


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


def _check_same_study(study: optuna.Study, spec: Spec, fingerprint: str) -> None:
    # Read as a spec: keys added since the study was stored take the values it was made with.
    stored = study_spec(study).model_dump(mode="json")
    wanted = spec.model_dump(mode="json")
    difference = _first_difference(stored, wanted)
    if difference is not None:
        key, old, new = difference
        raise StorageError(
            f"study {spec.name!r} already exists with {key} = {old!r}, not {new!r}; resume it as it is, "
            f"or give this one another name (--name) or remove the old one (sweep delete {spec.name})"
        )
    if study.user_attrs.get(FINGERPRINT_ATTR) != fingerprint:
        raise StorageError(
            f"study {spec.name!r} was made with different data (fingerprint "
            f"{study.user_attrs.get(FINGERPRINT_ATTR)}, here {fingerprint}); use the same data file or another name"
        )


def _first_difference(old: Any, new: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new)):
            found = _first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
            if found is not None:
                return found
        return None
    return None if old == new else (prefix.rstrip("."), old, new)


def enqueue_grid(study: optuna.Study, points: Sequence[GridPoint]) -> int:
    """Enqueue the grid points that have no trial yet; returns how many were added."""
    taken = {trial.user_attrs.get("key") for trial in study.get_trials(deepcopy=False)}
    missing = [point for point in points if point.key not in taken]
    for point in missing:
        study.enqueue_trial(point.params, user_attrs={"key": point.key})
    return len(missing)


def claim_next(study: optuna.Study) -> Trial | None:
    """Take the next WAITING trial, marking it RUNNING; None when no point is waiting.

    The claim reads and updates the trial in one transaction that locks its row (or, on SQLite,
    the database), so two workers never take the same point.
    """
    storage = study._storage
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING):
                trial = Trial(study, frozen._trial_id)
                trial.set_user_attr(WORKER_ATTR, WORKER)
                if frozen.user_attrs.get("fail_reason"):
                    trial.set_user_attr("fail_reason", "")  # a requeued point starts afresh
                return trial
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def requeue_failed(study: optuna.Study, current: Sequence[FrozenTrial]) -> tuple[list[str], list[str]]:
    """Queue again every failed point among `current` (one trial per point), with its repeats.

    Returns the keys requeued, and those left failed because they diverged: the same settings
    and seeds would diverge again.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(inherit_intermediate_values=True)
    failed = [trial for trial in current if trial.state == TrialState.FAIL and not trial.user_attrs.get(SET_ASIDE_ATTR)]
    diverged = [trial for trial in failed if trial.user_attrs.get(FAIL_KIND_ATTR) == DIVERGED]
    for trial in failed:
        if trial not in diverged:
            retry(study, trial)
    keys = [trial.user_attrs.get("key", f"#{trial.number}") for trial in failed if trial not in diverged]
    return keys, [trial.user_attrs.get("key", f"#{trial.number}") for trial in diverged]


def requeue_stale(study: optuna.Study) -> None:
    """Fail the points whose worker stopped beating and queue them again with their repeats."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def last_heartbeats(study: optuna.Study) -> dict[int, Any]:
    """When each trial's worker last proved alive, by trial number (points never claimed: absent)."""
    # Optuna reads heartbeats only to find stale trials; its table is the one place they are kept.
    from optuna.storages._rdb import models

    storage = getattr(study._storage, "_backend", study._storage)  # under Optuna's cache, the RDBStorage
    if not hasattr(storage, "scoped_session"):
        return {}
    numbers = {t._trial_id: t.number for t in study.get_trials(deepcopy=False)}
    with storage.scoped_session() as session:
        rows = session.query(models.TrialHeartbeatModel).filter(
            models.TrialHeartbeatModel.trial_id.in_(list(numbers))
        )
        beats = {numbers[row.trial_id]: row.heartbeat for row in rows}
    storage.scoped_session.remove()
    return beats


def suggest_point(trial: Trial, spec: Spec, points: Sequence[GridPoint]) -> GridPoint | None:
    """Record the trial's grid point as its parameters, with distributions that span the grid.

    None for a trial that is none of the grid's points (one enqueued by hand with Optuna).
    """
    fixed = trial.study._storage.get_trial_system_attrs(trial._trial_id).get("fixed_params") or {}
    keys = {point.key for point in points}
    if "length" not in fixed or "mode" not in fixed or GridPoint.from_params(fixed).key not in keys:
        return None
    for name in fixed:
        values = sorted({point.params[name] for point in points if name in point.params})
        if isinstance(values[0], bool) or isinstance(values[0], str):
            trial.suggest_categorical(name, values)
        elif isinstance(values[0], int):
            trial.suggest_int(name, values[0], max(values[-1], values[0]))
        else:
            trial.suggest_float(name, values[0], values[-1])
    return GridPoint.from_params(fixed)


def finished_repeats(trial: Trial | FrozenTrial) -> dict[int, dict[str, Any]]:
    """The repeats already stored on a trial, by index."""
    attrs = trial.user_attrs
    return {int(name.removeprefix(REPEAT_ATTR)): value for name, value in attrs.items() if name.startswith(REPEAT_ATTR)}


def record_repeat(trial: Trial, *, repeat: int, score: float, details: Mapping[str, Any]) -> None:
    """Store one finished repeat: every metric as an attribute, then its objective score as an
    intermediate value (in that order, so that :func:`restore_missing_scores` can mend a cut)."""
    trial.set_user_attr(f"{REPEAT_ATTR}{repeat:04d}", dict(details))
    trial.report(score, step=repeat)


def restore_missing_scores(study: optuna.Study, trial: Trial, metric: str) -> None:
    """Report the score of every stored repeat that has none: a worker killed between a repeat's
    two writes leaves its attribute (written first, with every metric) without the score."""
    stored = study._storage.get_trial(trial._trial_id)
    for repeat, details in sorted(finished_repeats(stored).items()):
        if repeat not in stored.intermediate_values:
            trial.report(details[metric], step=repeat)


def finish_trial(study: optuna.Study, trial: Trial, *, summary: Mapping[str, Any], value: float) -> None:
    """Store the point's summary and complete it; safe to repeat after a lost connection."""
    if study._storage.get_trial(trial._trial_id).state.is_finished():
        return
    for name, item in summary.items():
        trial.set_user_attr(name, item)
    study.tell(trial, value, skip_if_finished=True)


def set_aside(study: optuna.Study, trial: Trial) -> None:
    """Fail a trial that is none of the grid's points, for good: requeue leaves it be."""
    fixed = trial.study._storage.get_trial_system_attrs(trial._trial_id).get("fixed_params")
    trial.set_user_attr(SET_ASIDE_ATTR, True)
    fail_trial(study, trial, f"set aside: parameters {fixed} are none of this study's grid points")


def fail_trial(study: optuna.Study, trial: Trial, reason: str, *, kind: str = "") -> None:
    if study._storage.get_trial(trial._trial_id).state.is_finished():
        return
    trial.set_user_attr("fail_reason", reason)
    if kind:
        trial.set_user_attr(FAIL_KIND_ATTR, kind)
    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def release_trial(study: optuna.Study, trial: Trial) -> None:
    """Put a claimed trial back in the queue, with the repeats it finished, for a later run."""
    study._storage.set_trial_state_values(trial._trial_id, state=TrialState.WAITING)

