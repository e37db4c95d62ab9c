"""A study's data files, kept in its database, so that a worker on any machine trains with the
study's name and URL alone.

The files are kept as they were read at create, compressed, in a table of sweep's own,
``sweep_data_files``: one row per file, keyed by the study's data fingerprint and the problem's
key that names the file (``path``, ``train``, ``test``). Studies made from the same data share
the rows. Keeping them again replaces them in one transaction, so a create that is retried never
leaves half a set. The table is made by the first write; reading a database without it reads no
files and writes nothing.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import sqlalchemy as sa

from sweep.store.own_tables import delete_rows, has_table, make_tables

__all__ = ["TABLE", "delete_files", "kept_files", "load_files", "store_files"]

TABLE = "sweep_data_files"
_METADATA = sa.MetaData()
_FILES = sa.Table(
    TABLE,
    _METADATA,
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),  # bytes as read
    sa.Column("content", sa.LargeBinary, nullable=False),  # zlib-compressed
)


def store_files(engine: sa.Engine, *, fingerprint: str, files: Mapping[str, bytes]) -> None:
    """Keep the files of one data fingerprint (name: bytes), replacing any kept before, in one transaction."""
    make_tables(engine, _METADATA)
    rows = [
        {"fingerprint": fingerprint, "name": name, "size": len(content), "content": zlib.compress(content, 6)}
        for name, content in files.items()
    ]
    with engine.begin() as connection:
        connection.execute(_FILES.delete().where(_FILES.c.fingerprint == fingerprint))
        connection.execute(_FILES.insert(), rows)


def kept_files(engine: sa.Engine, *, fingerprint: str) -> dict[str, int]:
    """The names of the files kept for a fingerprint, with their sizes as read; empty where none are."""
    if not has_table(engine, TABLE):
        return {}
    query = sa.select(_FILES.c.name, _FILES.c.size).where(_FILES.c.fingerprint == fingerprint)
    with engine.connect() as connection:
        return {name: int(size) for name, size in connection.execute(query)}


def load_files(engine: sa.Engine, *, fingerprint: str) -> dict[str, bytes]:
    """The files kept for a fingerprint, as they were read (name: bytes); empty where none are."""
    if not has_table(engine, TABLE):
        return {}
    query = sa.select(_FILES.c.name, _FILES.c.content).where(_FILES.c.fingerprint == fingerprint)
    with engine.connect() as connection:
        return {name: zlib.decompress(content) for name, content in connection.execute(query)}


def delete_files(engine: sa.Engine, *, fingerprint: str) -> None:
    """Drop the files kept for a fingerprint (once no study made from them is left)."""
    delete_rows(engine, _FILES, _FILES.c.fingerprint == fingerprint)
