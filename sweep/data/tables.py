"""Users' tables and long series, read with pandas into NumPy sequences.

The only module that imports pandas. A table has one row per step and a column that names each
row's sequence; a series file has one row per step of one or several long series. Both become
:class:`Sequences`: inputs padded at the front to the longest sequence, each with its own
length, and targets per sequence or per step. Every problem with the data is a
:class:`~sweep.errors.DataError` that names the file, the column or sequence, and the fix.
"""

from __future__ import annotations

import csv

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sweep.errors import DataError, first_line
from sweep.spec import SeriesProblem, TableProblem

__all__ = [
    "Sequences",
    "code_classes",
    "default_features",
    "frame",
    "input_sequences",
    "read_table",
    "series_frame",
    "series_sequences",
    "split_table",
    "table_sequences",
]

SPLIT_VALUES = ("train", "test")


@dataclass(frozen=True, eq=False)
class Sequences:
    """Sequences of their own lengths, stored padded at the front to the longest, T."""

    x: np.ndarray  # (n, T, features) float32
    y: np.ndarray  # per sequence (n, 1), per step (n, T, 1); raw values, labels not yet coded
    lengths: np.ndarray  # (n,) int64
    names: np.ndarray  # (n,) each sequence's name in the file, for messages
    classes: tuple = ()  # classification, once coded: the label of class 0, 1, ...


def read_table(path: str | Path, *, key: str) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame; `key` is the study-file key that names it."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".txt", ".parquet", ".pq"):
        raise DataError(f"{path}: {key} must be a .csv or .parquet file (got {suffix or 'no suffix'!r})")
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except FileNotFoundError:
        raise DataError(f"{path}: no such data file; fix {key} (relative to the study file)") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory; {key} must name a file") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; {key} needs a header row and one row per step") from None
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise DataError(f"{path}: not a readable {suffix[1:]} table ({first_line(error)}); check the file") from None
    if frame.empty:
        raise DataError(f"{path}: the table has a header but no rows; {key} needs one row per step")
    if suffix not in (".parquet", ".pq"):
        _no_repeated_columns(path, sep="\t" if suffix == ".tsv" else ",")
    frame.columns = [str(column) for column in frame.columns]
    return frame


def _no_repeated_columns(path: Path, *, sep: str) -> None:
    """Refuse a header that names a column twice: pandas would rename the second ("a.1") and the
    study would read whichever one kept the name."""
    with open(path, newline="", encoding="utf-8") as file:
        header = next(csv.reader(file, delimiter=sep), [])
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise DataError(f"{path}: the header names column {name!r} twice; rename or drop one of them")
        seen.add(name)


def series_frame(columns: dict[str, np.ndarray], *, source: str, series: str) -> pd.DataFrame:
    """Arrays of a series npz file as a table: one array per column, each (steps,), or
    (series, steps) for several series, whose rows the column `series` then names by index."""
    shapes = {array.shape for array in columns.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) not in (1, 2):
        raise DataError(f"{source}: every array must have one shape, (steps,) or (series, steps); got {sorted(shapes)}")
    table = {name: array.reshape(-1) for name, array in columns.items()}
    shape = next(iter(shapes))
    if len(shape) == 2:
        table[series] = np.repeat(np.arange(shape[0]), shape[1])
    return pd.DataFrame(table)


def table_sequences(
    frame: pd.DataFrame, problem: TableProblem, *, features: list[str], source: str
) -> Sequences:
    """The sequences of a table: rows grouped by `problem.sequence`, in `problem.order` or file order."""
    _require_columns(frame, [problem.sequence, problem.target, *features, *_optional(problem.order)], source)
    codes, names = _sequence_codes(frame, problem.sequence, source)
    order = _step_order(frame, codes, problem.order, source)
    codes = codes[order]
    lengths = np.bincount(codes, minlength=len(names)).astype(np.int64)
    positions = _positions(codes, lengths)
    x = _place(_numeric(frame, features, source, names, codes_by_row=codes, order=order), codes, positions, lengths)
    if problem.task == "regression":
        target = _numeric(frame, [problem.target], source, names, codes_by_row=codes, order=order)[:, 0]
    else:
        target = frame[problem.target].to_numpy()[order]
        _no_missing_target(target, problem.target, source, names[codes])
    if problem.target_per == "step":
        y = _place(target[:, None], codes, positions, lengths, dtype=target.dtype)
    else:
        y = _per_sequence(target, codes, names, column=problem.target, source=source)[:, None]
    return Sequences(x=x, y=y, lengths=lengths, names=names)


def input_sequences(
    frame: pd.DataFrame, *, sequence: str | None, order: str | None, features: list[str], source: str
) -> tuple[Sequences, pd.DataFrame]:
    """The inputs of a table or series alone, to predict from (no target needed): rows grouped by
    `sequence` (None: one sequence), in `order` or file order. Also the rows' `sequence` and
    `order` columns in the order of the sequences' real steps."""
    _require_columns(frame, [*features, *_optional(sequence), *_optional(order)], source)
    if sequence is not None:
        codes, names = _sequence_codes(frame, sequence, source)
    else:
        codes, names = np.zeros(len(frame), np.int64), np.array(["series"], dtype=object)
    row_order = _step_order(frame, codes, order, source)
    codes = codes[row_order]
    lengths = np.bincount(codes, minlength=len(names)).astype(np.int64)
    values = _numeric(frame, features, source, names, codes_by_row=codes, order=row_order)
    x = _place(values, codes, _positions(codes, lengths), lengths)
    keys = frame.iloc[row_order][[*_optional(sequence), *_optional(order)]].reset_index(drop=True)
    return Sequences(x=x, y=np.zeros((len(names), 1), np.float32), lengths=lengths, names=names), keys


def default_features(frame: pd.DataFrame, problem: TableProblem | SeriesProblem) -> list[str]:
    """Every numeric column but those that name the sequence, order, split or target."""
    named = {problem.target, *_optional(problem.order)}
    named.update(_optional(getattr(problem, "sequence", None)))
    named.update(_optional(getattr(problem, "split", None)))
    named.update(_optional(getattr(problem, "series", None)))
    return [c for c in frame.columns if c not in named and pd.api.types.is_numeric_dtype(frame[c])]


def split_table(frame: pd.DataFrame, problem: TableProblem, *, source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training and test rows of one table, by its split column or a seeded share of its sequences."""
    if problem.split is not None:
        _require_columns(frame, [problem.split], source)
        values = frame[problem.split].astype(str).str.strip().str.lower()
        unknown = sorted(set(values) - set(SPLIT_VALUES))
        if unknown:
            raise DataError(
                f"{source}: column {problem.split!r} holds {unknown[0]!r}; the split column may hold only 'train' and 'test'"
            )
        _require_columns(frame, [problem.sequence], source)
        marks = pd.DataFrame({"sequence": frame[problem.sequence], "split": values}).groupby("sequence", sort=False)["split"]
        mixed = marks.nunique()
        if (mixed > 1).any():
            raise DataError(
                f"{source}: sequence {mixed.index[np.argmax(mixed.to_numpy() > 1)]!r} has rows marked both 'train' and 'test' "
                f"in column {problem.split!r}; mark every row of a sequence alike"
            )
        parts = frame[values == "train"], frame[values == "test"]
        for part, name in zip(parts, SPLIT_VALUES):
            if part.empty:
                raise DataError(f"{source}: column {problem.split!r} marks no row {name!r}; mark some sequences for {name}ing")
        return parts
    _require_columns(frame, [problem.sequence], source)
    names = pd.unique(frame[problem.sequence])
    n_test = max(1, round(len(names) * problem.test_fraction))
    if n_test >= len(names):
        raise DataError(
            f"{source}: {len(names)} sequence(s) leave none for training at test_fraction {problem.test_fraction}; "
            "lower problem.test_fraction or add sequences"
        )
    shuffled = np.random.default_rng(problem.seed).permutation(len(names))
    is_test = frame[problem.sequence].isin(names[shuffled[:n_test]])
    return frame[~is_test], frame[is_test]


def series_sequences(
    frame: pd.DataFrame, problem: SeriesProblem, *, features: list[str], source: str, validation_fraction: float = 0.0
) -> tuple[Sequences, Sequences | None, Sequences]:
    """Training, validation and test sequences of long series, split by time, never shuffled.

    The input at step t is the features' values at t, its target the target's value `horizon`
    steps later. The last `test_fraction` of every series is its test sequence; with
    `validation_fraction`, that share of the steps before it is its validation sequence (None
    without); the rest is cut into `segments` contiguous training sequences, so that stateful
    training carries the state along the real series.
    """
    _require_columns(frame, [problem.target, *features, *_optional(problem.series), *_optional(problem.order)], source)
    if problem.series is not None:
        codes, names = _sequence_codes(frame, problem.series, source)
    else:
        codes, names = np.zeros(len(frame), np.int64), np.array(["series"], dtype=object)
    order = _step_order(frame, codes, problem.order, source)
    codes = codes[order]
    inputs = _numeric(frame, features, source, names, codes_by_row=codes, order=order)
    target = _numeric(frame, [problem.target], source, names, codes_by_row=codes, order=order)[:, 0]
    train, validation, test = [], [], []
    for code, name in enumerate(names):
        rows = np.flatnonzero(codes == code)
        x, y = _framed(inputs[rows], target[rows], problem, name=name, source=source)
        n_test = max(1, math.ceil(len(x) * problem.test_fraction))
        n_held = math.ceil((len(x) - n_test) * validation_fraction)
        n_train = len(x) - n_test - n_held
        if n_train < problem.segments:
            held = f" and {n_held} validation steps" if n_held else ""
            raise DataError(
                f"{source}: series {name!r} has {n_train} training steps{held} for {problem.segments} segments; "
                f"lower problem.segments or problem.test_fraction{' or validation.fraction' if n_held else ''}"
            )
        for piece in np.array_split(np.arange(n_train), problem.segments):
            train.append((x[piece], y[piece], name))
        if n_held:
            validation.append((x[n_train : n_train + n_held], y[n_train : n_train + n_held], name))
        test.append((x[-n_test:], y[-n_test:], name))
    return _stacked(train), (_stacked(validation) if validation else None), _stacked(test)


def code_classes(train: Sequences, test: Sequences, *, train_source: str, test_source: str) -> tuple[Sequences, Sequences]:
    """Labels of any kind (numbers, strings, booleans) as classes 0, 1, ... in sorted order of the
    training labels; a test label the training data never had is refused."""
    labels = _real_labels(train)[0]
    try:
        classes = sorted(pd.unique(labels))
    except TypeError:
        classes = sorted(pd.unique(labels), key=str)
    if len(classes) < 2:
        raise DataError(f"{train_source}: the training targets hold one class only ({_plain(classes[0])!r}); a classifier needs at least two")
    return _coded(train, classes, train_source), _coded(test, classes, test_source)


def _coded(sequences: Sequences, classes: list, source: str) -> Sequences:
    labels, where = _real_labels(sequences)
    codes = pd.Index(classes).get_indexer(labels)
    if (codes < 0).any():
        first = int(np.argmax(codes < 0))
        raise DataError(
            f"{source}: class {_plain(labels[first])!r} in sequence {sequences.names[where[0][first]]!r} never occurs "
            "in the training data; drop those sequences or give the training data examples of it"
        )
    y = np.zeros(sequences.y.shape, np.float32)
    y[where] = codes
    return Sequences(x=sequences.x, y=y, lengths=sequences.lengths, names=sequences.names, classes=tuple(_plain(c) for c in classes))


def _real_labels(sequences: Sequences) -> tuple[np.ndarray, tuple]:
    """The labels of real steps (or of sequences), and where they stand in `sequences.y`."""
    y = sequences.y
    if y.ndim == 2:
        where = (np.arange(len(y)), np.zeros(len(y), np.int64))
    else:
        steps = y.shape[1]
        rows, cols = np.nonzero(np.arange(steps)[None, :] >= steps - sequences.lengths[:, None])
        where = (rows, cols, np.zeros(len(rows), np.int64))
    return y[where], where


def _plain(value: object) -> object:
    """A NumPy scalar as the plain Python value that JSON stores."""
    return value.item() if isinstance(value, np.generic) else value


def _framed(inputs: np.ndarray, target: np.ndarray, problem: SeriesProblem, *, name: object, source: str) -> tuple:
    if len(target) <= problem.horizon + 1:
        raise DataError(
            f"{source}: series {name!r} has {len(target)} steps, too few for horizon {problem.horizon}; "
            "lower problem.horizon or give a longer series"
        )
    return inputs[: -problem.horizon], target[problem.horizon :, None]


def _stacked(pieces: list[tuple[np.ndarray, np.ndarray, object]]) -> Sequences:
    lengths = np.array([len(x) for x, _, _ in pieces], dtype=np.int64)
    steps = int(lengths.max())
    x = np.zeros((len(pieces), steps, pieces[0][0].shape[1]), np.float32)
    y = np.zeros((len(pieces), steps, 1), np.float32)
    for i, (inputs, target, _) in enumerate(pieces):
        x[i, steps - len(inputs) :] = inputs
        y[i, steps - len(target) :] = target
    return Sequences(x=x, y=y, lengths=lengths, names=np.array([name for _, _, name in pieces], dtype=object))


def _optional(column: str | None) -> list[str]:
    return [column] if column is not None else []


def _require_columns(frame: pd.DataFrame, columns: list[str], source: str) -> None:
    for column in columns:
        if column not in frame.columns:
            shown = ", ".join(repr(c) for c in list(frame.columns)[:12])
            raise DataError(f"{source}: no column {column!r} (columns: {shown}); fix the column's name in [problem]")


def _sequence_codes(frame: pd.DataFrame, column: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Each row's sequence as 0, 1, ... in order of first appearance, and the sequences' names."""
    if frame[column].isna().any():
        row = int(np.flatnonzero(frame[column].isna().to_numpy())[0])
        raise DataError(f"{source}: row {row + 1} has no value in column {column!r}; every row must name its sequence")
    codes, names = pd.factorize(frame[column], sort=False)
    return codes.astype(np.int64), np.asarray(names, dtype=object)


def _step_order(frame: pd.DataFrame, codes: np.ndarray, order: str | None, source: str) -> np.ndarray:
    """Row order grouping each sequence's steps, sorted by `order` within it, else as in the file."""
    if order is None:
        return np.argsort(codes, kind="stable")
    values = frame[order]
    if values.isna().any():
        raise DataError(f"{source}: column {order!r} has empty values; every step needs its place in problem.order")
    try:
        keys = values.to_numpy()
        return np.lexsort((np.argsort(np.argsort(keys, kind="stable"), kind="stable"), codes))
    except TypeError:
        raise DataError(f"{source}: column {order!r} mixes kinds of values that cannot be sorted; fix problem.order") from None


def _positions(codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each row's step within its sequence, for rows grouped by sequence."""
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return np.arange(len(codes)) - starts[codes]


def _place(values: np.ndarray, codes: np.ndarray, positions: np.ndarray, lengths: np.ndarray, dtype: object = np.float32) -> np.ndarray:
    """Rows of values (rows, columns) as sequences (n, T, columns), each padded at the front."""
    steps = int(lengths.max())
    placed = np.zeros((len(lengths), steps, values.shape[1]), dtype=dtype)
    placed[codes, steps - lengths[codes] + positions] = values
    return placed


def _numeric(
    frame: pd.DataFrame, columns: list[str], source: str, names: np.ndarray, *, codes_by_row: np.ndarray, order: np.ndarray
) -> np.ndarray:
    """The columns as float32 (rows in `order`), checked numeric and finite."""
    if not columns:
        raise DataError(f"{source}: no numeric input column; name the inputs in problem.features")
    for column in columns:
        series = frame[column]
        if not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
            raise DataError(f"{source}: column {column!r} is not numeric ({series.dtype}); encode it as numbers or drop it from problem.features")
    values = frame[columns].to_numpy(dtype=np.float64)[order]
    bad = ~np.isfinite(values) | (np.abs(values) > np.finfo(np.float32).max)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        what = "empty or NaN" if np.isnan(values[row, col]) else "infinite or too large for float32"
        raise DataError(
            f"{source}: column {columns[col]!r} is {what} in sequence {names[codes_by_row[row]]!r}; fill or drop such rows first"
        )
    return values.astype(np.float32)


def _no_missing_target(target: np.ndarray, column: str, source: str, row_names: np.ndarray) -> None:
    missing = pd.isna(target)
    if missing.any():
        raise DataError(f"{source}: target {column!r} is empty in sequence {row_names[np.argmax(missing)]!r}; fill or drop such rows")


def _per_sequence(target: np.ndarray, codes: np.ndarray, names: np.ndarray, *, column: str, source: str) -> np.ndarray:
    """One target per sequence, refused where it varies within one."""
    frame = pd.DataFrame({"code": codes, "value": target})
    distinct = frame.groupby("code", sort=True)["value"].nunique()
    varying = distinct.index[distinct.to_numpy() > 1]
    if len(varying):
        raise DataError(
            f"{source}: target {column!r} varies within sequence {names[varying[0]]!r}; "
            'set problem.target_per = "step", or give each sequence one target'
        )
    return frame.groupby("code", sort=True)["value"].first().to_numpy()




def frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Plain records as a DataFrame, one column per field (the Python API's tables)."""
    return pd.DataFrame.from_records(records)
