"""Predictions of an exported network on new data, in the forms the study's problem takes: a
table (CSV, Parquet or a DataFrame) with the study's sequence, order and feature columns, a long
series with its order (and series) column, or arrays (an npz file or a mapping) holding `x`.

Each sequence is cut as the point was trained (see :class:`sweep.export.contract.Contract`), the
inputs standardized as they were, and the outputs turned back into labels or the target's units.
A step's prediction comes from the window in which it is among the newest steps; a sequence's
from its last step, as the study's "sequence" scope scores it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sweep.data import tables
from sweep.data.problems import SERIES_COLUMN, read_npz, real_steps
from sweep.errors import DataError
from sweep.export.contract import MODEL_FILE, Contract, ExportError, read_contract
from sweep.export.exporting import windowed_outputs
from sweep.train.pool import quiet_stderr

__all__ = ["Export", "load_export", "write_predictions"]

Data = pd.DataFrame | str | Path | Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Export:
    """An export folder, loaded: its contract and its Keras model."""

    folder: Path
    contract: Contract
    model: Any  # keras.Model

    def predict(self, data: Data) -> pd.DataFrame:
        """One row per sequence (per step, for targets per step): the sequence's name (and the
        step's order value, or a series' origin and horizon), `prediction` in the original label
        or unit, and for classification `p_<class>`, one probability per class."""
        inputs = _inputs(self.contract, data)
        outputs = self._outputs_per_step(inputs)
        return _frame(self.contract, inputs, outputs)

    def _outputs_per_step(self, inputs: _Inputs) -> np.ndarray:
        """The model's outputs at every step of x, (n, T, outputs), each from the window in which
        the step is among the newest (NaN at steps no window reaches)."""
        from sweep.export import _keras

        window = self.contract.window
        x = _standardized(self.contract, inputs.x, inputs.lengths)
        placeholder = np.zeros((*x.shape[:2], 1), np.float32)
        # A window longer than these sequences is the same window, padded: cut at their length.
        length = min(window["length"], x.shape[1])
        backward = None if window["backward"] is None else min(window["backward"], x.shape[1])
        with quiet_stderr():
            per_window, _ = windowed_outputs(
                {**window, "length": length, "backward": backward}, _keras.chunk_predictor(self.model),
                x, placeholder, inputs.lengths,
            )
        return _steps_of(per_window, steps=x.shape[1], stride=length)


def load_export(path: str | Path) -> Export:
    """An export folder (see ``sweep export``), loaded; ExportError for a folder that is none."""
    folder = Path(path)
    contract = read_contract(folder)
    with quiet_stderr():
        from sweep.export import _keras

        try:
            model = _keras.load_model(folder / MODEL_FILE)
        except (OSError, ValueError) as error:
            raise ExportError(f"{folder / MODEL_FILE} does not load ({str(error).splitlines()[0]}); export the study again") from None
    return Export(folder=folder, contract=contract, model=model)


def write_predictions(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a CSV whole or not at all: into a file beside it, then moved into place."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise DataError(f"{path}: predictions are written as CSV; name a .csv file with -o")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as file:
            frame.to_csv(file, index=False)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return path


@dataclass(frozen=True)
class _Inputs:
    x: np.ndarray  # (n, T, features), raw units, front-padded
    lengths: np.ndarray  # (n,)
    names: np.ndarray  # (n,) each sequence's name
    keys: pd.DataFrame | None  # tables and series: the sequence and order column of each real step


def _inputs(contract: Contract, data: Data) -> _Inputs:
    kind = contract.problem.get("kind")
    if kind in ("table", "series"):
        return _table_inputs(contract, data)
    return _array_inputs(contract, data)


def _table_inputs(contract: Contract, data: Data) -> _Inputs:
    problem = contract.problem
    source = str(data) if isinstance(data, (str, Path)) else "the data"
    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, (str, Path)) and Path(data).suffix.lower() == ".npz" and problem["kind"] == "series":
        frame = tables.series_frame(read_npz(Path(data)), source=source, series=problem.get("series") or SERIES_COLUMN)
    elif isinstance(data, (str, Path)):
        frame = tables.read_table(data, key="DATA")
    else:
        raise DataError(f"a {problem['kind']} study predicts from a table (CSV, Parquet or a DataFrame), not {type(data).__name__}")
    sequence = problem.get("sequence") if problem["kind"] == "table" else problem.get("series")
    if problem["kind"] == "series" and sequence is None and SERIES_COLUMN in frame.columns:
        sequence = SERIES_COLUMN
    sequences, keys = tables.input_sequences(
        frame, sequence=sequence, order=problem.get("order"), features=contract.features, source=source,
    )
    return _Inputs(x=sequences.x, lengths=sequences.lengths, names=sequences.names, keys=keys)


def _array_inputs(contract: Contract, data: Data) -> _Inputs:
    if isinstance(data, (str, Path)):
        arrays = read_npz(Path(data))
        source = str(data)
    elif isinstance(data, Mapping):
        arrays, source = data, "the arrays"
    else:
        raise DataError(f"a {contract.problem.get('kind')} study predicts from arrays (an npz file or a mapping holding 'x')")
    name = next((key for key in ("x", "x_test") if key in arrays), None)
    if name is None:
        raise DataError(f"{source}: no array 'x' (the inputs, (sequences, steps, features)); save them as x")
    x = np.asarray(arrays[name])
    lengths_name = next((key for key in ("lengths", "test_lengths") if key in arrays), None)
    if x.ndim == 2 and lengths_name is not None:  # every sequence's steps one after another, as a study's npz holds them
        x = _front_padded(x, np.asarray(arrays[lengths_name]).astype(np.int64), source=source)
    if x.ndim != 3 or x.shape[2] != len(contract.features) or not np.issubdtype(x.dtype, np.number):
        raise DataError(
            f"{source}: {name} must be numbers shaped (sequences, steps, {len(contract.features)}), or (steps, "
            f"{len(contract.features)}) with lengths; got {x.dtype} {x.shape}"
        )
    lengths = np.asarray(arrays[lengths_name]).astype(np.int64) if lengths_name else np.full(len(x), x.shape[1], np.int64)
    if lengths.shape != (len(x),) or (lengths < 1).any() or (lengths > x.shape[1]).any():
        raise DataError(f"{source}: {lengths_name} must give each of the {len(x)} sequences a length from 1 to {x.shape[1]}")
    real = real_steps(lengths, x.shape[1])
    if not np.isfinite(x[real]).all():
        raise DataError(f"{source}: {name} holds NaN or infinite values at real steps; fill or drop those sequences")
    return _Inputs(x=np.where(real[..., None], x, 0).astype(np.float32), lengths=lengths, names=np.arange(len(x)), keys=None)


def _front_padded(steps: np.ndarray, lengths: np.ndarray, *, source: str) -> np.ndarray:
    """Sequences laid one after another, (total steps, features), as (n, longest, features)
    padded at the front."""
    if lengths.ndim != 1 or (lengths < 1).any() or int(lengths.sum()) != len(steps):
        raise DataError(f"{source}: the lengths must be positive and add up to x's {len(steps)} steps; got {lengths.sum()}")
    padded = np.zeros((len(lengths), int(lengths.max()), steps.shape[1]), dtype=steps.dtype)
    for row, piece in enumerate(np.split(steps, np.cumsum(lengths)[:-1])):
        padded[row, padded.shape[1] - len(piece) :] = piece
    return padded


def _standardized(contract: Contract, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    scale = contract.standardization
    if "input_mean" not in scale:
        return x
    mean, std = np.asarray(scale["input_mean"], np.float32), np.asarray(scale["input_std"], np.float32)
    real = real_steps(lengths, x.shape[1])
    return np.where(real[..., None], (x - mean) / std, 0.0).astype(np.float32)


def _steps_of(per_window: np.ndarray, *, steps: int, stride: int) -> np.ndarray:
    """Outputs of windows (n, k, width, outputs), window j ending `stride * (k - 1 - j)` steps
    before the last, as one output per step (n, steps, outputs): each step's from the window in
    which it is among the newest `stride` steps."""
    n, k, width, n_out = per_window.shape
    cover = min(stride, width)
    result = np.full((n, steps, n_out), np.nan, dtype=np.float64)
    for j in range(k):
        end = steps - stride * (k - 1 - j)
        start = max(0, end - cover)
        if end > 0:
            result[:, start:end] = per_window[:, j, width - (end - start) :]
    return result


def _frame(contract: Contract, inputs: _Inputs, outputs: np.ndarray) -> pd.DataFrame:
    steps = inputs.x.shape[1]
    if contract.target == "per step":
        real = real_steps(inputs.lengths, steps)
        values = outputs[real]
        frame = inputs.keys.copy() if inputs.keys is not None else _step_index(inputs.lengths)
        if contract.problem.get("kind") == "series":
            frame = _origins(contract, frame)
    else:
        values = outputs[:, -1]
        frame = pd.DataFrame({_sequence_column(contract): inputs.names})
    return pd.concat([frame.reset_index(drop=True), _predictions(contract, values)], axis=1)


def _step_index(lengths: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({
        "sequence": np.repeat(np.arange(len(lengths)), lengths),
        "step": np.concatenate([np.arange(length) for length in lengths]),
    })


def _origins(contract: Contract, keys: pd.DataFrame) -> pd.DataFrame:
    """A series' rows as forecasts: each row's order value is the origin, and the target is
    predicted `horizon` steps after it."""
    order = contract.problem.get("order")
    frame = keys.rename(columns={order: "origin"}) if order else keys.assign(origin=_positions_in_series(keys))
    return frame.assign(horizon=int(contract.problem.get("horizon", 1)))


def _positions_in_series(keys: pd.DataFrame) -> np.ndarray:
    if keys.shape[1] == 0:
        return np.arange(len(keys))
    return keys.groupby(keys.columns[0], sort=False).cumcount().to_numpy()


def _sequence_column(contract: Contract) -> str:
    return str(contract.problem.get("sequence") or "sequence")


def _predictions(contract: Contract, values: np.ndarray) -> pd.DataFrame:
    """(items, outputs) of the model as predictions in labels or units, with class probabilities."""
    if contract.task == "regression":
        scale = contract.standardization
        if "target_mean" in scale:
            values = values * np.asarray(scale["target_std"]) + np.asarray(scale["target_mean"])
        if values.shape[1] == 1:
            return pd.DataFrame({"prediction": values[:, 0]})
        return pd.DataFrame({f"prediction_{index}": values[:, index] for index in range(values.shape[1])})
    probabilities = np.concatenate([1 - values, values], axis=1) if values.shape[1] == 1 else values
    classes = list(contract.classes)
    labels = np.asarray(classes, dtype=object)[np.argmax(probabilities, axis=1)]
    columns = {"prediction": labels}
    columns.update({f"p_{label}": probabilities[:, index] for index, label in enumerate(classes)})
    return pd.DataFrame(columns)
