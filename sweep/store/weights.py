"""Trained weights, kept in the study's database beside its record, so that any machine with the
study's name and URL can export a repeat's network.

Optuna keeps attributes as JSON text that every read of a trial loads; weights are bytes that only
an export reads, so they live in a table of their own, ``sweep_weights``: one row per repeat,
keyed by the trial's id and the repeat's index, its arrays in NumPy's npz format (no pickling).
Writing a repeat again replaces its row, so a retried write or a repeat trained again after its
worker died never leaves two. The table is made by the first write; reading a database without
it reads no weights and writes nothing.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import sqlalchemy as sa

from sweep.store.own_tables import delete_rows, has_table, make_tables

__all__ = ["TABLE", "delete_study_weights", "keep_only", "load_weights", "repeats_with_weights", "store_many_weights", "store_weights", "stored_size"]

TABLE = "sweep_weights"
_METADATA = sa.MetaData()
_WEIGHTS = sa.Table(
    TABLE,
    _METADATA,
    sa.Column("trial_id", sa.Integer, primary_key=True),
    sa.Column("repeat", sa.Integer, primary_key=True),
    sa.Column("study_id", sa.Integer, nullable=False, index=True),
    sa.Column("arrays", sa.LargeBinary, nullable=False),
)


def store_weights(engine: sa.Engine, *, study_id: int, trial_id: int, repeat: int, weights: Sequence[np.ndarray]) -> None:
    """Keep one repeat's weights, replacing any kept before, in one transaction."""
    store_many_weights(engine, study_id=study_id, trial_id=trial_id, weights={repeat: weights})


def store_many_weights(
    engine: sa.Engine, *, study_id: int, trial_id: int, weights: Mapping[int, Sequence[np.ndarray]]
) -> None:
    """Keep the weights of several repeats of a trial, by repeat, replacing any kept before, in one transaction."""
    make_tables(engine, _METADATA)
    rows = [
        {"trial_id": trial_id, "repeat": repeat, "study_id": study_id, "arrays": _packed(arrays)}
        for repeat, arrays in weights.items()
    ]
    where = (_WEIGHTS.c.trial_id == trial_id) & _WEIGHTS.c.repeat.in_(list(weights))
    with engine.begin() as connection:
        connection.execute(_WEIGHTS.delete().where(where))
        connection.execute(_WEIGHTS.insert(), rows)


def load_weights(engine: sa.Engine, *, trial_id: int, repeat: int) -> list[np.ndarray] | None:
    """One repeat's weights, in the order they were kept; None where none are kept."""
    if not has_table(engine, TABLE):
        return None
    where = (_WEIGHTS.c.trial_id == trial_id) & (_WEIGHTS.c.repeat == repeat)
    with engine.connect() as connection:
        packed = connection.execute(sa.select(_WEIGHTS.c.arrays).where(where)).scalar()
    return None if packed is None else _unpacked(packed)


def repeats_with_weights(engine: sa.Engine, *, trial_id: int) -> set[int]:
    """The repeats of a trial whose weights are kept."""
    if not has_table(engine, TABLE):
        return set()
    with engine.connect() as connection:
        return set(connection.execute(sa.select(_WEIGHTS.c.repeat).where(_WEIGHTS.c.trial_id == trial_id)).scalars())


def stored_size(engine: sa.Engine, *, study_id: int) -> tuple[int, int]:
    """How many repeats of a study have weights kept, and their bytes in all."""
    if not has_table(engine, TABLE):
        return 0, 0
    query = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(sa.func.length(_WEIGHTS.c.arrays)), 0))
    with engine.connect() as connection:
        count, size = connection.execute(query.where(_WEIGHTS.c.study_id == study_id)).one()
    return int(count), int(size)


def keep_only(engine: sa.Engine, *, study_id: int, trial_id: int) -> int:
    """Drop every kept weight of a study but one trial's; how many repeats' were dropped."""
    return delete_rows(engine, _WEIGHTS, (_WEIGHTS.c.study_id == study_id) & (_WEIGHTS.c.trial_id != trial_id))


def delete_study_weights(engine: sa.Engine, *, study_id: int) -> None:
    """Drop a study's kept weights (before the study itself is deleted)."""
    delete_rows(engine, _WEIGHTS, _WEIGHTS.c.study_id == study_id)


def _packed(weights: Sequence[np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, *[np.asarray(array) for array in weights])
    return buffer.getvalue()


def _unpacked(packed: bytes) -> list[np.ndarray]:
    with np.load(io.BytesIO(packed), allow_pickle=False) as arrays:
        return [arrays[f"arr_{index}"] for index in range(len(arrays.files))]
