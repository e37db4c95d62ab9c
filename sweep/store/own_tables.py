"""The tables sweep keeps beside Optuna's (weights, data files): made by the first write, and
looked for, never made, by a read, so that a command that only reads writes nothing."""

from __future__ import annotations

import time

import sqlalchemy as sa

__all__ = ["delete_rows", "has_table", "make_tables"]

_ATTEMPTS = 5


def make_tables(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """Make the tables of `metadata` that the database lacks.

    Two processes that make the same table at once collide: PostgreSQL refuses the second type
    of that name (a unique violation in pg_type); on SQLite, a transaction that read the schema
    cannot write once another has (database is locked, at once, whatever the busy timeout). The
    loser looks again a moment later, finds the table made, and goes on.
    """
    for attempt in range(_ATTEMPTS):
        try:
            metadata.create_all(engine, checkfirst=True)
            return
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError):
            if all(has_table(engine, name) for name in metadata.tables):
                return
            if attempt == _ATTEMPTS - 1:
                raise
            time.sleep(0.1 * (attempt + 1))


def has_table(engine: sa.Engine, name: str) -> bool:
    return sa.inspect(engine).has_table(name)


def delete_rows(engine: sa.Engine, table: sa.Table, where: sa.ColumnElement[bool]) -> int:
    """Delete the rows of one of sweep's tables that `where` picks, in one transaction; how many
    went (none where the table was never made, which is left unmade)."""
    if not has_table(engine, table.name):
        return 0
    with engine.begin() as connection:
        return connection.execute(table.delete().where(where)).rowcount
