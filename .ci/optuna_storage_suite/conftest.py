"""Run Optuna's own storage tests against the storage sweep builds, assertions untouched.

Every RDBStorage the tests make is built by :func:`sweep.store.connection.build_storage` instead: sweep's
engine settings and SQLite locking. SWEEP_SUITE_BACKEND=postgresql moves the tests' SQLite
databases (in memory or in an empty temporary file) to fresh PostgreSQL databases; files that
hold data (the schema-upgrade assets) stay on SQLite. SWEEP_SUITE_BACKEND=plain leaves
Optuna's RDBStorage as it is, for comparison.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from typing import Any

import optuna.storages
import pytest
import sqlalchemy

from sweep.store.connection import build_storage

RealRDBStorage = optuna.storages.RDBStorage
BACKEND = os.environ.get("SWEEP_SUITE_BACKEND", "sqlite")
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432"
_moved: dict[str, str] = {}
_made: list[str] = []
_built: list[Any] = []


def _postgres_database() -> str:
    name = f"optuna_suite_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    _made.append(name)
    return f"{POSTGRES}/{name}"


@pytest.fixture(autouse=True)
def _drop_databases_after_each_test() -> Any:
    """PostgreSQL serves a hundred connections: let go of each test's before the next."""
    yield
    for storage in _built:
        storage.engine.dispose()
    _built.clear()
    _moved.clear()
    if not _made:
        return
    admin = sqlalchemy.create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for name in _made:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()
    _made.clear()


def _where(url: str) -> str:
    """The URL sweep's storage gets in place of the one a test asked for."""
    if not url.startswith("sqlite"):
        return url
    database = sqlalchemy.engine.make_url(url).database or ""
    in_memory = database in ("", ":memory:")
    if BACKEND == "postgresql" and (in_memory or os.path.getsize(database) == 0):
        if in_memory:
            return _postgres_database()
        return _moved.setdefault(url, _postgres_database())  # two storages on one file share it
    if in_memory:  # sweep refuses in-memory SQLite: worker processes could not see it
        return f"sqlite:///{tempfile.mkdtemp()}/memory.db"
    return url


class _StandsForRDBStorage(type):
    """Instance and subclass checks, and class attributes, answer as RDBStorage's own."""

    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, RealRDBStorage)

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, RealRDBStorage)

    def __getattr__(cls, name: str) -> Any:
        return getattr(RealRDBStorage, name)


class SweepBuiltRDBStorage(metaclass=_StandsForRDBStorage):
    def __new__(cls, url: str, engine_kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
        where = _where(url)
        if not where.startswith("sqlite") and url.startswith("sqlite") and engine_kwargs:
            engine_kwargs = {k: v for k, v in engine_kwargs.items() if k != "connect_args"}  # SQLite's own
        storage = build_storage(where, engine_kwargs=engine_kwargs, **options)
        _built.append(storage)
        return storage


if BACKEND != "plain":  # plain: Optuna's own RDBStorage, for comparison
    optuna.storages.RDBStorage = SweepBuiltRDBStorage
