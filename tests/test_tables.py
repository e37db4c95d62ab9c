"""Users' own data: CSV and Parquet tables, long series, variable-length npz files, standardization,
`sweep data`, bad data through the CLI, and one end-to-end run of a variable-length table study."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState

from sweep.data import tables
from sweep.errors import DataError
from sweep.data.shaping import chunk
from sweep.data.problems import Dataset, describe, load_data, load_problem, real_steps
from sweep.data.scoring import score_all
from sweep.spec import NpzProblem, SeriesProblem, TableProblem, Validation, load_spec
from tests.test_cli import sweep_in_process

# Sequence name -> its steps. Feature `a` is 10 * (the sequence's index) + t, so every real step
# tells which sequence and which step it is; `b` is noise.
TRAIN_LENGTHS = {"s0": 3, "s1": 5, "s2": 4, "s3": 6, "s4": 3, "s5": 5}
TEST_LENGTHS = {"q0": 4, "q1": 2, "q2": 5}


def steps_frame(lengths: dict[str, int], *, labels: dict | None = None, seed: int = 0, first_index: int = 0) -> pd.DataFrame:
    """One row per step: seq, t, a, b, label (per sequence; "up" and "down" by default), y (a number)."""
    rng = np.random.default_rng(seed)
    rows = []
    for index, (name, n) in enumerate(lengths.items(), start=first_index):
        label = labels[name] if labels is not None else ("up" if index % 2 == 0 else "down")
        for t in range(n):
            rows.append({"seq": name, "t": t, "a": 10.0 * index + t, "b": float(rng.normal()), "label": label, "y": 1.5 * index})
    return pd.DataFrame(rows)


def save(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def table_problem(train: Path, **changes) -> TableProblem:
    settings_ = {
        "kind": "table", "train": str(train), "sequence": "seq", "order": "t", "target": "label",
        "task": "classification", "standardize": False,
    }
    settings_.update({key: str(value) if isinstance(value, Path) else value for key, value in changes.items()})
    return TableProblem(**settings_)


def real_part(x: np.ndarray, lengths: np.ndarray, i: int) -> np.ndarray:
    return x[i, x.shape[1] - lengths[i] :]


def sequences_by_start(dataset: Dataset, part: str) -> dict[int, np.ndarray]:
    """Each sequence's real inputs keyed by the index its first `a` value names; padding checked zero."""
    x, lengths = getattr(dataset, f"x_{part}"), getattr(dataset, f"{part}_lengths")
    assert not x[~real_steps(lengths, x.shape[1])].any(), "padding must be zero"
    return {int(real_part(x, lengths, i)[0, 0]) // 10: real_part(x, lengths, i) for i in range(len(x))}


def expected_inputs(frame: pd.DataFrame, features: list[str]) -> dict[int, np.ndarray]:
    """Each sequence's features in time order, keyed by its index, computed from the frame alone."""
    out = {}
    for _, rows in frame.groupby("seq", sort=False):
        rows = rows.sort_values("t")
        out[int(rows["a"].iloc[0]) // 10] = rows[features].to_numpy(dtype=np.float32)
    return out


def assert_same_dataset(first: Dataset, second: Dataset) -> None:
    for name in ("x_train", "y_train", "x_test", "y_test", "train_lengths", "test_lengths"):
        assert getattr(first, name).shape == getattr(second, name).shape, name
        assert np.array_equal(getattr(first, name), getattr(second, name)), name
    assert (first.task, first.n_classes, first.encoding) == (second.task, second.n_classes, second.encoding)
    assert first.fingerprint == second.fingerprint


# 0. Installing sweep brings what reading tables needs.


ROOT = Path(__file__).resolve().parents[1]


def test_pandas_and_pyarrow_are_installed_with_sweep() -> None:
    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=!~\[;@ ]", line.strip(), maxsplit=1)[0].lower() for line in requirements if line.strip()}

    declared = names(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert {"pandas", "pyarrow"} <= declared
    pinned = names([line for line in (ROOT / "docker-requirements.txt").read_text().splitlines() if not line.lstrip().startswith("#")])
    assert {"pandas", "pyarrow"} <= pinned


# 1. Tables: CSV and Parquet, grouping, order, padding, features.


@pytest.mark.parametrize("target_per", ["sequence", "step"])
@pytest.mark.parametrize("standardize", [False, True])
def test_csv_and_parquet_give_the_same_dataset(tmp_path: Path, target_per: str, standardize: bool) -> None:
    train, test = steps_frame(TRAIN_LENGTHS).sample(frac=1, random_state=1), steps_frame(TEST_LENGTHS, seed=1)
    datasets = [
        load_problem(table_problem(
            save(train, tmp_path / f"train.{suffix}"), test=save(test, tmp_path / f"test.{suffix}"),
            target_per=target_per, standardize=standardize,
        ))
        for suffix in ("csv", "parquet")
    ]
    assert_same_dataset(*datasets)
    assert datasets[0].x_train.shape == (6, 6, 3)  # a, b, y: every numeric column but seq, t (order) and label


def test_rows_are_grouped_per_sequence_and_steps_sorted_by_order(tmp_path: Path) -> None:
    train = steps_frame(TRAIN_LENGTHS)
    shuffled = train.sample(frac=1, random_state=3)  # sequences interleaved, steps out of order
    data = load_problem(table_problem(save(shuffled, tmp_path / "train.csv"), test_fraction=0.3, features=["a", "b"]))
    steps = data.sequence_length
    assert steps == max(TRAIN_LENGTHS.values())
    assert data.x_train.shape[1] == data.x_test.shape[1] == steps
    assert sorted([*data.train_lengths, *data.test_lengths]) == sorted(TRAIN_LENGTHS.values())
    assert data.train_lengths.dtype == np.int64
    got = {**sequences_by_start(data, "train"), **sequences_by_start(data, "test")}
    expected = expected_inputs(train, ["a", "b"])
    assert sorted(got) == sorted(expected)
    for index, inputs in expected.items():
        assert np.array_equal(got[index], inputs)


def test_without_order_the_steps_keep_their_file_order(tmp_path: Path) -> None:
    frame = steps_frame(TRAIN_LENGTHS)
    # Each sequence's rows backwards in time, and the sequences interleaved row by row.
    frame = frame.iloc[::-1].assign(rank=lambda f: f.groupby("seq").cumcount()).sort_values("rank", kind="stable")
    data = load_problem(table_problem(save(frame.drop(columns="rank"), tmp_path / "train.csv"), order=None,
                                      test=tmp_path / "train.csv", features=["a", "t"]))
    got = sequences_by_start(data, "train")
    for index, (name, n) in enumerate(TRAIN_LENGTHS.items()):
        rows = frame[frame["seq"] == name]
        assert np.array_equal(got[index], rows[["a", "t"]].to_numpy(dtype=np.float32))
        assert np.array_equal(got[index][:, 1], np.arange(n)[::-1])


def test_sequences_of_different_lengths_are_padded_at_the_front(tmp_path: Path) -> None:
    lengths = {"long": 7, "short": 2, "mid": 4}
    data = load_problem(table_problem(save(steps_frame(lengths), tmp_path / "train.csv"), test=tmp_path / "train.csv",
                                      features=["a"]))
    assert data.x_train.shape == (3, 7, 1)
    assert sorted(data.train_lengths) == [2, 4, 7]
    for i, n in enumerate(data.train_lengths):
        row = data.x_train[i, :, 0]
        assert not row[: 7 - n].any()
        assert np.array_equal(row[7 - n :], row[7 - n] + np.arange(n))
    assert data.has_variable_lengths


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"test_fraction": 0.3}, ["a", "b", "y", "flag"]),
        ({"test_fraction": 0.3, "order": None}, ["t", "a", "b", "y", "flag"]),
        ({"test_fraction": 0.3, "target": "y", "task": "regression"}, ["a", "b", "flag"]),
        ({"split": "part"}, ["a", "b", "y", "flag"]),
        ({"test_fraction": 0.3, "sequence": "sid", "order": "t"}, ["a", "b", "y", "flag"]),
    ],
    ids=["plain", "no-order", "numeric-target", "split-column", "numeric-sequence-column"],
)
def test_default_features_are_the_numeric_columns_but_the_named_ones(tmp_path: Path, changes: dict, expected: list[str]) -> None:
    frame = steps_frame(TRAIN_LENGTHS)
    frame["colour"] = "red"  # text: never a default feature
    frame["flag"] = frame["t"] % 2 == 0  # booleans count as numbers
    frame["sid"] = frame["seq"].str[1:].astype(int)
    frame["part"] = np.where(frame["seq"].isin(["s0", "s3"]), "test", "train")
    if changes.get("sequence") != "sid":
        frame = frame.drop(columns="sid")
    data = load_problem(table_problem(save(frame, tmp_path / "train.csv"), **changes))
    assert data.encoding["features"] == expected
    assert data.n_features == len(expected)


def test_explicit_features_choose_and_order_the_inputs(tmp_path: Path) -> None:
    frame = steps_frame(TRAIN_LENGTHS)
    data = load_problem(table_problem(save(frame, tmp_path / "train.csv"), test=tmp_path / "train.csv", features=["b", "a"]))
    assert data.encoding["features"] == ["b", "a"]
    by_start = {int(real_part(data.x_train, data.train_lengths, i)[0, 1]) // 10: real_part(data.x_train, data.train_lengths, i)
                for i in range(len(data.x_train))}
    for index, inputs in expected_inputs(frame, ["b", "a"]).items():
        assert np.array_equal(by_start[index], inputs)


# 2. Test data: a second file, a split column, or a seeded share of the sequences.


def test_a_test_file_gives_the_test_sequences(tmp_path: Path) -> None:
    train, test = steps_frame(TRAIN_LENGTHS), steps_frame(TEST_LENGTHS, first_index=20)
    data = load_problem(table_problem(save(train, tmp_path / "train.csv"), test=save(test, tmp_path / "test.csv"), features=["a"]))
    assert sorted(data.test_lengths) == sorted(TEST_LENGTHS.values())
    assert sorted(sequences_by_start(data, "test")) == [20, 21, 22]
    assert sorted(sequences_by_start(data, "train")) == list(range(6))


def test_a_split_column_gives_the_train_and_test_rows(tmp_path: Path) -> None:
    frame = steps_frame(TRAIN_LENGTHS)
    frame["part"] = np.where(frame["seq"].isin(["s1", "s4"]), "test", "train")
    data = load_problem(table_problem(save(frame, tmp_path / "all.csv"), split="part", features=["a"]))
    assert sorted(sequences_by_start(data, "test")) == [1, 4]
    assert sorted(sequences_by_start(data, "train")) == [0, 2, 3, 5]
    assert sorted(data.test_lengths) == [3, 5]


def test_a_sequence_marked_both_train_and_test_is_refused(tmp_path: Path) -> None:
    frame = steps_frame(TRAIN_LENGTHS)
    frame["part"] = np.where(frame["seq"].isin(["s1", "s4"]), "test", "train")
    frame.loc[(frame["seq"] == "s3") & (frame["t"] >= 4), "part"] = "test"
    path = save(frame, tmp_path / "all.csv")
    with pytest.raises(DataError, match="s3"):
        load_problem(table_problem(path, split="part", features=["a"]))


def test_test_fraction_takes_whole_sequences_by_seed(tmp_path: Path) -> None:
    lengths = {f"s{i}": 2 + i % 4 for i in range(10)}
    path = save(steps_frame(lengths).sample(frac=1, random_state=0), tmp_path / "train.csv")

    def split(seed: int) -> tuple[list[int], list[int]]:
        data = load_problem(table_problem(path, test_fraction=0.3, seed=seed, features=["a"]))
        return sorted(sequences_by_start(data, "train")), sorted(sequences_by_start(data, "test"))

    train, test = split(0)
    assert len(test) == 3 and not set(train) & set(test) and sorted(train + test) == list(range(10))
    assert split(0) == (train, test)
    assert len({tuple(split(seed)[1]) for seed in range(6)}) > 1, "the seed must choose the test sequences"


@settings(max_examples=40, deadline=None)
@given(n_sequences=st.integers(2, 12), fraction=st.floats(0.01, 0.99), seed=st.integers(0, 2**16))
def test_split_table_partitions_the_sequences(n_sequences: int, fraction: float, seed: int) -> None:
    frame = steps_frame({f"s{i}": 1 + i % 3 for i in range(n_sequences)})
    problem = TableProblem(kind="table", train="t.csv", test_fraction=fraction, seed=seed, sequence="seq", target="label",
                           task="classification")
    n_test = max(1, round(n_sequences * fraction))
    if n_test >= n_sequences:
        with pytest.raises(DataError, match="test_fraction"):
            tables.split_table(frame, problem, source="t.csv")
        return
    train, test = tables.split_table(frame, problem, source="t.csv")
    assert set(test["seq"]).isdisjoint(train["seq"])
    assert test["seq"].nunique() == n_test
    assert len(train) + len(test) == len(frame)
    again = tables.split_table(frame, problem, source="t.csv")[1]
    assert again.equals(test)


# 3. Targets per sequence and per step; labels of any kind.


def test_string_labels_are_coded_in_sorted_order(tmp_path: Path) -> None:
    labels = {name: ["up", "down", "flat"][i % 3] for i, name in enumerate(TRAIN_LENGTHS)}
    test_labels = {"q0": "flat", "q1": "up", "q2": "down"}
    data = load_problem(table_problem(save(steps_frame(TRAIN_LENGTHS, labels=labels), tmp_path / "train.csv"),
                                      test=save(steps_frame(TEST_LENGTHS, labels=test_labels, first_index=20), tmp_path / "test.csv"),
                                      features=["a"]))
    assert data.encoding["classes"] == ["down", "flat", "up"]
    assert (data.n_classes, data.n_outputs) == (3, 3)
    assert data.y_train.shape == (6, 1) and data.y_train.dtype == np.float32
    code = {"down": 0, "flat": 1, "up": 2}
    for part, names, label_of in (("train", list(TRAIN_LENGTHS), labels), ("test", list(TEST_LENGTHS), test_labels)):
        x, y, lengths = getattr(data, f"x_{part}"), getattr(data, f"y_{part}"), getattr(data, f"{part}_lengths")
        for i in range(len(x)):
            index = int(real_part(x, lengths, i)[0, 0]) // 10
            name = names[index - (20 if part == "test" else 0)]
            assert y[i, 0] == code[label_of[name]]
    json.dumps(data.encoding)  # stored with the study as JSON


@pytest.mark.parametrize(
    "values, classes",
    [(["up", "down"], ["down", "up"]), ([7, 3], [3, 7]), ([True, False], [False, True]), ([2.5, -1.0], [-1.0, 2.5])],
    ids=["strings", "ints", "bools", "floats"],
)
@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_labels_of_any_kind_are_classes_in_sorted_order(tmp_path: Path, values: list, classes: list, suffix: str) -> None:
    labels = {name: values[i % 2] for i, name in enumerate(TRAIN_LENGTHS)}
    path = save(steps_frame(TRAIN_LENGTHS, labels=labels), tmp_path / f"train.{suffix}")
    data = load_problem(table_problem(path, test=path, features=["a"]))
    assert data.encoding["classes"] == classes
    assert [type(c) for c in data.encoding["classes"]] == [type(c) for c in classes]
    assert (data.n_classes, data.n_outputs) == (2, 1)
    for i in range(len(data.x_train)):
        index = int(real_part(data.x_train, data.train_lengths, i)[0, 0]) // 10
        assert data.y_train[i, 0] == classes.index(values[index % 2])
    json.dumps(data.encoding)


def test_targets_per_step_are_coded_at_every_real_step(tmp_path: Path) -> None:
    frame = steps_frame(TRAIN_LENGTHS)
    frame["label"] = np.where(frame["b"] > 0, "up", "down")
    data = load_problem(table_problem(save(frame, tmp_path / "train.csv"), test=tmp_path / "train.csv", target_per="step",
                                      features=["a"]))
    assert data.is_per_step and data.y_train.shape == (6, 6, 1)
    assert data.encoding["classes"] == ["down", "up"]
    real = real_steps(data.train_lengths, 6)
    assert not data.y_train[~real].any()
    expected = {int(row["a"]): float(row["label"] == "up") for _, row in frame.iterrows()}
    got = {int(a): float(y) for a, y in zip(data.x_train[real][:, 0], data.y_train[real][:, 0])}
    assert got == expected


def test_regression_targets_keep_their_values(tmp_path: Path) -> None:
    frame = steps_frame(TRAIN_LENGTHS)
    path = save(frame, tmp_path / "train.csv")
    per_sequence = load_problem(table_problem(path, test=path, target="y", task="regression", features=["a"]))
    assert per_sequence.y_train.shape == (6, 1)
    for i in range(6):
        index = int(real_part(per_sequence.x_train, per_sequence.train_lengths, i)[0, 0]) // 10
        assert per_sequence.y_train[i, 0] == 1.5 * index
    per_step = load_problem(table_problem(path, test=path, target="b", task="regression", target_per="step", features=["a"]))
    real = real_steps(per_step.train_lengths, 6)
    assert np.allclose(np.sort(per_step.y_train[real][:, 0]), np.sort(frame["b"].to_numpy(np.float32)))
    assert (per_step.n_classes, "classes" in per_step.encoding) == (0, False)


def test_a_test_label_never_seen_in_training_is_refused(tmp_path: Path) -> None:
    train = save(steps_frame(TRAIN_LENGTHS), tmp_path / "train.csv")
    test = save(steps_frame(TEST_LENGTHS, labels={"q0": "up", "q1": "sideways", "q2": "down"}), tmp_path / "test.csv")
    with pytest.raises(DataError) as info:
        load_problem(table_problem(train, test=test))
    message = str(info.value)
    assert message.startswith(str(test)) and "'sideways'" in message and "'q1'" in message and "\n" not in message


def test_an_unseen_test_label_is_found_without_deprecated_pandas_behaviour(tmp_path: Path) -> None:
    train = save(steps_frame(TRAIN_LENGTHS), tmp_path / "train.csv")
    test = save(steps_frame(TEST_LENGTHS, labels={"q0": "up", "q1": "sideways", "q2": "down"}), tmp_path / "test.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        warnings.simplefilter("error", FutureWarning)
        with pytest.raises(DataError, match="'sideways'"):
            load_problem(table_problem(train, test=test))


def test_a_per_sequence_target_that_varies_within_a_sequence_is_refused(tmp_path: Path) -> None:
    frame = steps_frame(TRAIN_LENGTHS)
    frame.loc[(frame["seq"] == "s2") & (frame["t"] == 1), "label"] = "down"  # s2 is "up"
    path = save(frame, tmp_path / "train.csv")
    with pytest.raises(DataError, match=r"'label' varies within sequence 's2'.*target_per = \"step\""):
        load_problem(table_problem(path, test=path))


# 4. Series: horizon framing, split by time, segments, several series, npz files.


def series_frame(n: int = 20) -> pd.DataFrame:
    return pd.DataFrame({"time": np.arange(n), "v": 100.0 + np.arange(n) ** 1.5, "w": -np.arange(n, dtype=float)})


def series_problem(path: Path, **changes) -> SeriesProblem:
    settings_ = {"kind": "series", "path": str(path), "target": "v", "standardize": False}
    settings_.update(changes)
    return SeriesProblem(**settings_)


def real_values(data: Dataset, part: str, name: str) -> list[np.ndarray]:
    array, lengths = getattr(data, f"{name}_{part}"), getattr(data, f"{part}_lengths")
    return [real_part(array, lengths, i)[:, 0] for i in range(len(array))]


@pytest.mark.parametrize("horizon", [1, 3])
def test_the_series_target_is_the_value_horizon_steps_later(tmp_path: Path, horizon: int) -> None:
    frame = series_frame(20)
    v = frame["v"].to_numpy(np.float32)
    data = load_problem(series_problem(save(frame, tmp_path / "s.csv"), order="time", horizon=horizon, test_fraction=0.25))
    n_framed = 20 - horizon
    n_test = math.ceil(n_framed * 0.25)
    assert (data.task, data.is_per_step, data.encoding["features"]) == ("regression", True, ["v"])
    assert data.train_lengths.tolist() == [n_framed - n_test] and data.test_lengths.tolist() == [n_test]
    (x_train,), (y_train,) = real_values(data, "train", "x"), real_values(data, "train", "y")
    (x_test,), (y_test,) = real_values(data, "test", "x"), real_values(data, "test", "y")
    assert np.array_equal(x_train, v[: n_framed - n_test]) and np.array_equal(y_train, v[horizon : n_framed - n_test + horizon])
    assert np.array_equal(x_test, v[n_framed - n_test : n_framed]) and np.array_equal(y_test, v[n_framed - n_test + horizon :])


def test_the_series_test_part_is_the_last_in_time_never_shuffled(tmp_path: Path) -> None:
    frame = series_frame(30)
    backwards = save(frame.iloc[::-1], tmp_path / "s.csv")
    data = load_problem(series_problem(backwards, order="time", test_fraction=0.3, features=["w", "v"]))
    assert len(data.x_train) == len(data.x_test) == 1
    x_train, x_test = real_part(data.x_train, data.train_lengths, 0), real_part(data.x_test, data.test_lengths, 0)
    assert np.array_equal(x_test[:, 0], -np.arange(20, 29, dtype=np.float32))  # 29 framed steps, the last 9 (ceil 8.7)
    assert np.array_equal(x_train[:, 0], -np.arange(20, dtype=np.float32))
    assert data.encoding["features"] == ["w", "v"]


@pytest.mark.parametrize("segments", [1, 2, 3, 5])
def test_segments_are_contiguous_pieces_of_the_training_part_in_order(tmp_path: Path, segments: int) -> None:
    frame = series_frame(24)
    v = frame["v"].to_numpy(np.float32)
    data = load_problem(series_problem(save(frame, tmp_path / "s.csv"), order="time", segments=segments, test_fraction=0.2))
    n_train = 23 - math.ceil(23 * 0.2)
    assert len(data.train_lengths) == segments and data.train_lengths.sum() == n_train
    assert data.train_lengths.max() - data.train_lengths.min() <= 1
    assert np.array_equal(np.concatenate(real_values(data, "train", "x")), v[:n_train])
    assert np.array_equal(np.concatenate(real_values(data, "train", "y")), v[1 : n_train + 1])
    assert len(data.test_lengths) == 1


@settings(max_examples=40, deadline=None)
@given(n=st.integers(3, 40), horizon=st.integers(1, 4), fraction=st.floats(0.05, 0.9), segments=st.integers(1, 4))
def test_series_framing_and_segments_hold_for_any_sizes(n: int, horizon: int, fraction: float, segments: int) -> None:
    frame = pd.DataFrame({"v": 100.0 + np.arange(n)})
    problem = series_problem(Path("s.csv"), horizon=horizon, test_fraction=fraction, segments=segments)
    n_framed = n - horizon
    if n_framed <= 1:
        with pytest.raises(DataError, match=f"horizon {horizon}"):
            tables.series_sequences(frame, problem, features=["v"], source="s.csv")
        return
    n_test = max(1, math.ceil(n_framed * fraction))
    if n_framed - n_test < segments:
        with pytest.raises(DataError, match="segments"):
            tables.series_sequences(frame, problem, features=["v"], source="s.csv")
        return
    train, validation, test = tables.series_sequences(frame, problem, features=["v"], source="s.csv")
    assert validation is None
    pieces = [real_part(train.x, train.lengths, i)[:, 0] for i in range(len(train.x))]
    assert len(pieces) == segments and all(len(piece) for piece in pieces)
    assert np.array_equal(np.concatenate(pieces), 100.0 + np.arange(n_framed - n_test))
    for i, piece in enumerate(pieces):
        assert np.array_equal(real_part(train.y, train.lengths, i)[:, 0], piece + horizon)
    assert test.lengths.tolist() == [n_test]
    assert np.array_equal(real_part(test.x, test.lengths, 0)[:, 0], 100.0 + np.arange(n_framed - n_test, n_framed))
    assert np.array_equal(real_part(test.y, test.lengths, 0)[:, 0], 100.0 + horizon + np.arange(n_framed - n_test, n_framed))


def test_several_series_by_a_series_column(tmp_path: Path) -> None:
    rows = [{"sid": sid, "time": t, "v": base + t} for t in range(12) for sid, base in (("A", 0.0), ("B", 100.0))]
    rows += [{"sid": "C", "time": t, "v": 500.0 + t} for t in range(8)]
    frame = pd.DataFrame(rows).sample(frac=1, random_state=2)
    data = load_problem(series_problem(save(frame, tmp_path / "s.csv"), series="sid", order="time", segments=2, test_fraction=0.25))
    # A and B: 11 framed steps, 3 for test, 8 in two segments of 4; C: 7 framed, 2 for test, 5 as 3 + 2.
    assert sorted(data.train_lengths.tolist()) == [2, 3, 4, 4, 4, 4]
    assert sorted(data.test_lengths.tolist()) == [2, 3, 3]
    starts = sorted(float(x[0]) for x in real_values(data, "test", "x"))
    assert starts == [8.0, 108.0, 505.0]
    for x, y in zip(real_values(data, "train", "x") + real_values(data, "test", "x"),
                    real_values(data, "train", "y") + real_values(data, "test", "y")):
        assert np.array_equal(y, x + 1)  # never a target from another series
        assert np.array_equal(np.diff(x), np.ones(len(x) - 1))


def test_an_npz_series_file_is_the_same_as_its_table(tmp_path: Path) -> None:
    frame = series_frame(20)
    np.savez(tmp_path / "s.npz", **{column: frame[column].to_numpy() for column in frame.columns})
    from_npz = load_problem(series_problem(tmp_path / "s.npz", features=["v", "w"], horizon=2))
    from_csv = load_problem(series_problem(save(frame, tmp_path / "s.csv"), features=["v", "w"], horizon=2))
    assert_same_dataset(from_npz, from_csv)

    several = np.stack([100.0 * k + np.arange(10) for k in range(3)])
    np.savez(tmp_path / "three.npz", v=several)
    rows = pd.DataFrame({"id": np.repeat(np.arange(3), 10), "v": several.reshape(-1)})
    from_npz = load_problem(series_problem(tmp_path / "three.npz", series="id"))
    from_csv = load_problem(series_problem(save(rows, tmp_path / "three.csv"), series="id"))
    assert_same_dataset(from_npz, from_csv)
    assert len(from_npz.test_lengths) == 3


def test_npz_rows_of_several_series_are_never_joined_into_one(tmp_path: Path) -> None:
    several = np.stack([100.0 * k + np.arange(10) for k in range(3)])
    np.savez(tmp_path / "three.npz", v=several)
    try:
        data = load_problem(series_problem(tmp_path / "three.npz"))
    except DataError as error:
        assert "series" in str(error)
        return
    assert len(data.test_lengths) == 3
    for x, y in zip(real_values(data, "train", "x"), real_values(data, "train", "y")):
        assert np.array_equal(y, x + 1)


# 5. npz files of sequences of their own lengths.


NPZ_TRAIN_LENGTHS, NPZ_TEST_LENGTHS = [3, 5, 2, 4], [6, 1]


def npz_sequences(lengths: list[int], *, seed: int, features: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, features)) for n in lengths]


def object_array(items: list[np.ndarray]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def save_variable_npz(path: Path, *, per_step: bool, layout: str, outputs: int = 0) -> Path:
    """Train and test sequences in the safe layout or as object arrays, targets per sequence or step."""
    arrays = {}
    for part, lengths, seed in (("train", NPZ_TRAIN_LENGTHS, 0), ("test", NPZ_TEST_LENGTHS, 1)):
        x = npz_sequences(lengths, seed=seed)
        rng = np.random.default_rng(seed + 10)
        shape = (lambda n: (n, outputs)) if outputs else (lambda n: (n,))
        y = [rng.normal(size=shape(n)) for n in lengths] if per_step else np.arange(len(lengths)) % 2
        if layout == "safe":
            arrays.update({f"x_{part}": np.concatenate(x), f"{part}_lengths": np.array(lengths),
                           f"y_{part}": np.concatenate(y) if per_step else y})
        else:
            arrays.update({f"x_{part}": object_array(x), f"y_{part}": object_array(y) if per_step else y})
    np.savez(path, **arrays)
    return path


def npz_problem(path: Path, task: str, **changes) -> NpzProblem:
    return NpzProblem(kind="npz", path=str(path), task=task, **{"standardize": False, **changes})


def test_the_safe_npz_layout_with_targets_per_sequence(tmp_path: Path) -> None:
    data = load_problem(npz_problem(save_variable_npz(tmp_path / "d.npz", per_step=False, layout="safe"), "classification"))
    assert data.x_train.shape == (4, 6, 2) and data.x_test.shape == (2, 6, 2)  # padded to the longest of both
    assert data.train_lengths.tolist() == NPZ_TRAIN_LENGTHS and data.test_lengths.tolist() == NPZ_TEST_LENGTHS
    for part, lengths, seed in (("train", NPZ_TRAIN_LENGTHS, 0), ("test", NPZ_TEST_LENGTHS, 1)):
        x = getattr(data, f"x_{part}")
        for i, sequence in enumerate(npz_sequences(lengths, seed=seed)):
            assert np.allclose(real_part(x, np.array(lengths), i), sequence)
            assert not x[i, : 6 - lengths[i]].any()
    assert data.y_train[:, 0].tolist() == [0, 1, 0, 1] and (data.n_classes, data.is_per_step) == (2, False)


@pytest.mark.parametrize("outputs", [0, 2])
def test_the_safe_npz_layout_with_targets_per_step(tmp_path: Path, outputs: int) -> None:
    data = load_problem(npz_problem(save_variable_npz(tmp_path / "d.npz", per_step=True, layout="safe", outputs=outputs), "regression"))
    assert data.is_per_step and data.y_train.shape == (4, 6, max(outputs, 1)) and data.n_outputs == max(outputs, 1)
    rng = np.random.default_rng(10)
    for i, n in enumerate(NPZ_TRAIN_LENGTHS):
        expected = rng.normal(size=(n, outputs) if outputs else (n,)).reshape(n, -1)
        assert np.allclose(real_part(data.y_train, data.train_lengths, i), expected)
        assert not data.y_train[i, : 6 - n].any()


def test_object_arrays_are_refused_without_allow_pickle(tmp_path: Path) -> None:
    path = save_variable_npz(tmp_path / "d.npz", per_step=False, layout="object")
    with pytest.raises(DataError) as info:
        load_problem(npz_problem(path, "classification"))
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert "safe layout" in message and "train_lengths" in message and "allow_pickle = true" in message


@pytest.mark.parametrize("per_step, task", [(False, "classification"), (True, "regression")], ids=["per-sequence", "per-step"])
@pytest.mark.parametrize("standardize", [False, True])
def test_object_arrays_with_allow_pickle_equal_the_safe_layout(tmp_path: Path, per_step: bool, task: str, standardize: bool) -> None:
    safe = save_variable_npz(tmp_path / "safe.npz", per_step=per_step, layout="safe")
    pickled = save_variable_npz(tmp_path / "pickled.npz", per_step=per_step, layout="object")
    assert_same_dataset(
        load_problem(npz_problem(safe, task, standardize=standardize)),
        load_problem(npz_problem(pickled, task, standardize=standardize, allow_pickle=True)),
    )


def test_variable_length_npz_labels_of_one_class_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "one.npz"
    np.savez(path, x_train=np.ones((9, 1)), train_lengths=np.array([2, 4, 3]), y_train=np.ones(9),
             x_test=np.ones((5, 1)), test_lengths=np.array([4, 1]), y_test=np.ones(5))
    with pytest.raises(DataError, match="one class only"):
        load_problem(npz_problem(path, "classification"))


# 6. Standardization.


def regression_tables(tmp_path: Path, *, test_scale: float = 1.0, test_name: str = "test.csv") -> tuple[Path, Path]:
    train = steps_frame(TRAIN_LENGTHS)
    test = steps_frame(TEST_LENGTHS, seed=1, first_index=20)
    test[["a", "b", "y"]] = test[["a", "b", "y"]] * test_scale + (test_scale - 1.0) * 7.0
    return save(train, tmp_path / "train.csv"), save(test, tmp_path / test_name)


def test_standardizing_uses_the_training_data_alone(tmp_path: Path) -> None:
    train, test = regression_tables(tmp_path)
    _, other_test = regression_tables(tmp_path, test_scale=50.0, test_name="other.csv")
    first, second = (load_problem(table_problem(train, test=t, target="b", target_per="step", task="regression",
                                                features=["a", "y"], standardize=True)) for t in (test, other_test))
    assert np.array_equal(first.x_train, second.x_train) and np.array_equal(first.y_train, second.y_train)
    for key in ("input_mean", "input_std", "target_mean", "target_std"):
        assert first.encoding[key] == second.encoding[key], key
    assert not np.allclose(first.x_test, second.x_test)
    frame = pd.read_csv(train)
    assert np.allclose(first.encoding["input_mean"], frame[["a", "y"]].mean(), atol=1e-5)
    assert np.allclose(first.encoding["input_std"], frame[["a", "y"]].std(ddof=0), atol=1e-5)
    assert np.allclose(first.encoding["target_mean"], [frame["b"].mean()], atol=1e-5)
    real = real_steps(first.train_lengths, first.sequence_length)
    assert np.allclose(first.x_train[real].mean(axis=0), 0, atol=1e-5) and np.allclose(first.x_train[real].std(axis=0), 1, atol=1e-5)
    assert np.allclose(first.y_train[real].mean(), 0, atol=1e-5) and np.allclose(first.y_train[real].std(), 1, atol=1e-5)


@pytest.mark.parametrize("target_per", ["sequence", "step"])
def test_padding_stays_zero_after_standardizing(tmp_path: Path, target_per: str) -> None:
    train, test = regression_tables(tmp_path, test_scale=3.0)
    target = "y" if target_per == "sequence" else "b"
    data = load_problem(table_problem(train, test=test, target=target, target_per=target_per, task="regression",
                                      features=["a"], standardize=True))
    for part in ("train", "test"):
        pad = ~real_steps(getattr(data, f"{part}_lengths"), data.sequence_length)
        assert pad.any() and not getattr(data, f"x_{part}")[pad].any()
        if target_per == "step":
            assert not getattr(data, f"y_{part}")[pad].any()
    mean, std = data.target_scale
    frame = pd.read_csv(train)
    expected_mean = frame.groupby("seq")["y"].first().mean() if target_per == "sequence" else frame["b"].mean()
    assert np.allclose(mean, [expected_mean], atol=1e-5) and std[0] > 0


def test_standardize_false_keeps_the_raw_values(tmp_path: Path) -> None:
    train, test = regression_tables(tmp_path)
    data = load_problem(table_problem(train, test=test, target="y", task="regression", features=["a", "b"], standardize=False))
    assert data.target_scale is None and "input_mean" not in data.encoding
    got = sequences_by_start(data, "train")
    for index, inputs in expected_inputs(pd.read_csv(train), ["a", "b"]).items():
        assert np.array_equal(got[index], inputs)
    assert sorted(data.y_train[:, 0].tolist()) == [1.5 * i for i in range(6)]
    scaled = load_problem(table_problem(train, test=test, target="y", task="regression", standardize=True))
    assert not describe(data, [2]).is_standardized and describe(scaled, [2]).is_standardized


def test_npz_standardizes_by_default(tmp_path: Path) -> None:
    path = save_variable_npz(tmp_path / "d.npz", per_step=True, layout="safe")
    default = load_problem(NpzProblem(kind="npz", path=str(path), task="regression"))
    raw = load_problem(npz_problem(path, "regression"))
    assert default.target_scale is not None and "input_mean" in default.encoding
    real = real_steps(raw.train_lengths, raw.sequence_length)
    assert np.allclose(default.encoding["input_mean"], raw.x_train[real].mean(axis=0), atol=1e-5)
    assert np.allclose(default.x_train[real] * default.encoding["input_std"] + default.encoding["input_mean"], raw.x_train[real], atol=1e-5)


@pytest.mark.parametrize("length", [1, 2, 4])
def test_regression_scores_are_in_the_original_units(tmp_path: Path, length: int) -> None:
    train, test = regression_tables(tmp_path, test_scale=2.0)
    problem = {"test": test, "target": "b", "target_per": "step", "task": "regression", "features": ["a"]}
    scaled = load_problem(table_problem(train, standardize=True, **problem))
    raw = load_problem(table_problem(train, standardize=False, **problem))
    mean, std = scaled.target_scale
    assert std[0] != pytest.approx(1.0)
    chunks = chunk(scaled.x_test, scaled.y_test, length, scaled.test_lengths)
    noise = np.random.default_rng(0).normal(size=chunks.y.shape).astype(np.float32)
    scores = score_all(chunks.y + noise, chunks, task="regression", target_scale=scaled.target_scale)

    raw_chunks = chunk(raw.x_test, raw.y_test, length, raw.test_lengths)
    predicted = (chunks.y + noise) * std + mean
    error = (predicted - raw_chunks.y)[..., 0][raw_chunks.mask]
    assert scores["rmse/sample"] == pytest.approx(np.sqrt(np.mean(error**2)), rel=1e-4)
    assert scores["mae/sample"] == pytest.approx(np.mean(np.abs(error)), rel=1e-4)
    last = (predicted - raw_chunks.y)[:, -1, -1, 0]
    assert scores["rmse/sequence"] == pytest.approx(np.sqrt(np.mean(last**2)), rel=1e-4)
    unscaled = score_all(chunks.y + noise, chunks, task="regression")
    assert scores["rmse/sample"] == pytest.approx(unscaled["rmse/sample"] * std[0], rel=1e-4)


# 7. Bad data through the CLI: one line, exit status 1, nothing written.


BASE_PROBLEM = {
    "kind": "table", "train": "train.csv", "test": "test.csv", "sequence": "seq", "order": "t",
    "target": "label", "task": "classification",
}


def toml_value(value: object) -> str:
    return json.dumps(value)  # strings, numbers, booleans and lists of them read the same in TOML


def write_study(directory: Path, problem: dict, *, lengths: list[int], metric: str = "accuracy", name: str = "tables",
                repeats: int = 2) -> Path:
    lines = [f'name = "{name}"', f"repeats = {repeats}", "", "[problem]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in problem.items()]
    lines += ["", "[grid]", f"lengths = {lengths}", 'modes = ["stateless", "stateful"]', "", "[model]", "units = 3", "",
              "[training]", "epochs = 1", "batch_size = 4", "", "[objective]", f'metric = "{metric}"']
    path = directory / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def good_tables(directory: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    train, test = steps_frame(TRAIN_LENGTHS), steps_frame(TEST_LENGTHS, seed=1, first_index=20)
    save(train, directory / "train.csv")
    save(test, directory / "test.csv")
    return train, test


def nan_feature(d: Path):
    train, _ = good_tables(d)
    train.loc[(train["seq"] == "s2") & (train["t"] == 1), "a"] = np.nan
    save(train, d / "train.csv")
    return BASE_PROBLEM, "accuracy", ["train.csv", "'a'", "'s2'", "NaN"]


def inf_feature(d: Path):
    train, _ = good_tables(d)
    train.loc[(train["seq"] == "s3") & (train["t"] == 2), "b"] = np.inf
    save(train, d / "train.csv")
    return BASE_PROBLEM, "accuracy", ["train.csv", "'b'", "'s3'", "infinite"]


def varying_target(d: Path):
    train, _ = good_tables(d)
    train.loc[(train["seq"] == "s1") & (train["t"] == 3), "label"] = "up"  # s1 is "down"
    save(train, d / "train.csv")
    return BASE_PROBLEM, "accuracy", ["train.csv", "'label'", "'s1'", "target_per"]


def unknown_column(d: Path):
    good_tables(d)
    return {**BASE_PROBLEM, "features": ["a", "speed"]}, "accuracy", ["train.csv", "'speed'"]


def text_feature(d: Path):
    train, test = good_tables(d)
    save(train.assign(colour="red"), d / "train.csv")
    save(test.assign(colour="blue"), d / "test.csv")
    return {**BASE_PROBLEM, "features": ["a", "colour"]}, "accuracy", ["train.csv", "'colour'", "not numeric"]


def unseen_test_class(d: Path):
    _, test = good_tables(d)
    test.loc[test["seq"] == "q1", "label"] = "sideways"
    save(test, d / "test.csv")
    return BASE_PROBLEM, "accuracy", ["test.csv", "'sideways'", "'q1'"]


def empty_file(d: Path):
    good_tables(d)
    (d / "train.csv").write_text("")
    return BASE_PROBLEM, "accuracy", ["train.csv", "empty"]


def header_only(d: Path):
    good_tables(d)
    (d / "test.csv").write_text("seq,t,a,b,label,y\n")
    return BASE_PROBLEM, "accuracy", ["test.csv", "no rows"]


def header_only_parquet(d: Path):
    train, _ = good_tables(d)
    save(train.iloc[:0], d / "test.parquet")
    return {**BASE_PROBLEM, "test": "test.parquet"}, "accuracy", ["test.parquet", "no rows"]


def short_series(d: Path):
    rows = [{"sid": "A", "v": float(t)} for t in range(12)] + [{"sid": "B", "v": float(t)} for t in range(3)]
    save(pd.DataFrame(rows), d / "series.csv")
    problem = {"kind": "series", "path": "series.csv", "target": "v", "series": "sid", "horizon": 3}
    return problem, "rmse", ["series.csv", "'B'", "horizon 3"]


def missing_file(d: Path):
    good_tables(d)
    return {**BASE_PROBLEM, "train": "absent.csv"}, "accuracy", ["absent.csv", "no such data file"]


def not_a_table(d: Path):
    good_tables(d)
    (d / "train.json").write_text("{}")
    return {**BASE_PROBLEM, "train": "train.json"}, "accuracy", ["train.json", ".csv", ".parquet"]


def pickled_npz(d: Path):
    save_variable_npz(d / "data.npz", per_step=False, layout="object")
    return {"kind": "npz", "path": "data.npz", "task": "classification"}, "accuracy", ["data.npz", "allow_pickle", "safe layout"]


def infinite_regression_target_in_training(d: Path):
    train, _ = good_tables(d)
    train.loc[train["seq"] == "s2", "y"] = np.inf
    save(train, d / "train.csv")
    return {**BASE_PROBLEM, "target": "y", "task": "regression"}, "rmse", ["train.csv", "'y'", "'s2'"]


BAD_DATA = [
    nan_feature, inf_feature, varying_target, unknown_column, text_feature, unseen_test_class, empty_file,
    header_only, header_only_parquet, short_series, missing_file, not_a_table, pickled_npz,
    infinite_regression_target_in_training,
]


def files_under(directory: Path) -> set[Path]:
    return {path.relative_to(directory) for path in directory.rglob("*")}


@pytest.mark.parametrize("command", ["data", "run"])
@pytest.mark.parametrize("bad", BAD_DATA, ids=lambda case: case.__name__.replace("_", "-"))
def test_bad_data_gets_one_line_naming_the_file_and_writes_nothing(capsys, monkeypatch, tmp_path: Path, bad, command: str) -> None:
    data_dir, work = tmp_path / "data", tmp_path / "work"
    data_dir.mkdir()
    work.mkdir()
    problem, metric, fragments = bad(data_dir)
    study = write_study(data_dir, problem, lengths=[2], metric=metric)
    before = files_under(tmp_path)
    monkeypatch.chdir(work)
    args = ["data", str(study)] if command == "data" else ["run", str(study), "--workers", "1", "--storage", f"sqlite:///{tmp_path / 'x.db'}"]
    code, out, err = sweep_in_process(capsys, monkeypatch, *args)
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    named_file = str((data_dir / fragments[0]).resolve())
    assert named_file in err, err
    for fragment in fragments[1:]:
        assert fragment in err, err
    assert out == ""
    assert not (tmp_path / "x.db").exists()
    assert files_under(tmp_path) == before


def sweep_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sweep", *args], capture_output=True, text=True, cwd=cwd, timeout=600,
        env={**os.environ, "COLUMNS": "160"},
    )


def test_bad_data_from_the_real_command_is_one_line_on_stderr(tmp_path: Path) -> None:
    problem, metric, _ = nan_feature(tmp_path)
    study = write_study(tmp_path, problem, lengths=[2], metric=metric)
    done = sweep_cli("run", str(study), "--workers", "1", "--storage", f"sqlite:///{tmp_path / 'x.db'}", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: {(tmp_path / 'train.csv').resolve()}: column 'a' is empty or NaN in sequence 's2'; fill or drop such rows first"
    ]
    assert not (tmp_path / "x.db").exists()


# 8. sweep data: the counts, nothing written.


def table_rows(text: str, title: str) -> list[list[str]]:
    """The body rows of the rich table printed under `title`, as lists of cell texts."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == title)
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("└"):
            break
        if line.startswith("│"):
            rows.append([cell.strip() for cell in line.strip("│").split("│")])
    return rows


def padding_expected(lengths: list[int], length: int) -> tuple[int, float]:
    n_subsequences = sum(math.ceil(n / length) for n in lengths)
    return n_subsequences, 1 - sum(lengths) / (n_subsequences * length)


E2E_TRAIN = {"s0": 3, "s1": 12, "s2": 5, "s3": 8, "s4": 4, "s5": 10, "s6": 7, "s7": 6}
E2E_TEST = {"q0": 6, "q1": 3, "q2": 9, "q3": 11}
E2E_LENGTHS = [5, 12]


def e2e_study(directory: Path) -> Path:
    labels = {name: "up" if i % 3 == 0 else "down" for i, name in enumerate(E2E_TRAIN)}
    save(steps_frame(E2E_TRAIN, labels=labels).sample(frac=1, random_state=4), directory / "train.csv")
    test_labels = {"q0": "up", "q1": "down", "q2": "down", "q3": "up"}
    save(steps_frame(E2E_TEST, labels=test_labels, seed=1, first_index=20), directory / "test.csv")
    problem = {**BASE_PROBLEM, "features": ["a", "b"]}
    return write_study(directory, problem, lengths=E2E_LENGTHS, name="vartable")


def test_sweep_data_prints_the_counts_and_writes_nothing(tmp_path: Path) -> None:
    data_dir, work = tmp_path / "data", tmp_path / "work"
    data_dir.mkdir()
    work.mkdir()
    study = e2e_study(data_dir)
    with study.open("a") as file:
        file.write("\n[validation]\nfraction = 0\n")  # every training sequence trains: counts as in the file
    before = files_under(tmp_path)
    done = sweep_cli("data", str(study), cwd=work)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert files_under(tmp_path) == before
    out = done.stdout
    assert "vartable: classification, targets per sequence, 2 feature(s), standardized" in out
    assert "features: a, b" in out
    train, test = list(E2E_TRAIN.values()), list(E2E_TEST.values())
    assert table_rows(out, "sequences") == [
        ["train", "8", str(sum(train)), "3", f"{np.median(train):g}", "12"],
        ["test", "4", str(sum(test)), "3", f"{np.median(test):g}", "11"],
    ]
    assert table_rows(out, "classes") == [["0", "down", "5", "2"], ["1", "up", "3", "2"]]
    expected = []
    for length in E2E_LENGTHS:
        n_subsequences, padding = padding_expected(train, length)
        expected.append([str(length), str(n_subsequences), f"{padding:.1%}"])
    assert table_rows(out, "the grid's lengths") == expected


def test_sweep_data_shows_the_validation_split_by_default_with_each_class_held_out_in_its_share(tmp_path: Path) -> None:
    study = e2e_study(tmp_path)
    done = sweep_cli("data", str(study), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = table_rows(done.stdout, "sequences")
    assert [row[:2] for row in rows] == [["train", "6"], ["validation", "2"], ["test", "4"]]
    assert int(rows[0][2]) + int(rows[1][2]) == sum(E2E_TRAIN.values())  # whole sequences moved, none cut
    # Five "down" and three "up" training sequences: a fifth of each class, rounded, is held out.
    assert table_rows(done.stdout, "classes") == [["0", "down", "4", "1", "2"], ["1", "up", "2", "1", "2"]]


def test_describe_counts_per_step_classes_over_real_steps_only(tmp_path: Path) -> None:
    frame = steps_frame(TRAIN_LENGTHS)
    frame["label"] = np.where(frame["t"] == 0, "start", "go")
    path = save(frame, tmp_path / "train.csv")
    data = load_problem(table_problem(path, test=path, target_per="step", features=["a"]))
    summary = describe(data, [1, 4, 6])
    n_steps = sum(TRAIN_LENGTHS.values())
    assert summary.classes == [("go", n_steps - 6, n_steps - 6), ("start", 6, 6)]
    expected = [(1, n_steps, 0.0), *((L, *padding_expected(list(TRAIN_LENGTHS.values()), L)) for L in (4, 6))]
    assert [row[:2] for row in summary.subsequences] == [row[:2] for row in expected]
    assert [row[2] for row in summary.subsequences] == pytest.approx([row[2] for row in expected])
    assert (summary.train.n_sequences, summary.train.length_min, summary.train.length_max) == (6, 3, 6)


# 9. End to end: sweep run on a variable-length table, read back with Optuna.


@pytest.mark.slow
def test_run_on_a_variable_length_table_stores_every_point(tmp_path: Path) -> None:
    study_file = e2e_study(tmp_path)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    done = sweep_cli("run", str(study_file), "--workers", "1", "--storage", url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "4 done, 0 running, 0 waiting, 0 failed" in done.stdout

    study = optuna.load_study(study_name="vartable", storage=url)
    encoding = study.user_attrs["data_encoding"]
    assert encoding["classes"] == ["down", "up"] and encoding["features"] == ["a", "b"]
    assert len(encoding["input_mean"]) == 2
    assert study.user_attrs["data_fingerprint"] == load_problem(
        table_problem(tmp_path / "train.csv", test=tmp_path / "test.csv", features=["a", "b"], standardize=True), Validation()
    ).fingerprint
    trials = study.get_trials()
    # The training sequences left once the validation split is held out: the subsequences count theirs.
    training_lengths = load_data(load_spec(study_file)).train_lengths.tolist()
    assert len(training_lengths) == len(E2E_TRAIN) - 2
    assert sorted(t.user_attrs["key"] for t in trials) == sorted(
        f"L={length} {mode}" for length in E2E_LENGTHS for mode in ("stateless", "stateful")
    )
    for trial in trials:
        assert trial.state == TrialState.COMPLETE
        assert sorted(trial.intermediate_values) == [0, 1]
        assert all(0.0 <= score <= 1.0 for score in trial.intermediate_values.values())
        length = trial.params["length"]
        n_subsequences, padding = padding_expected(training_lengths, length)
        assert trial.user_attrs["n_subsequences"] == n_subsequences
        assert trial.user_attrs["padding_fraction"] == pytest.approx(padding, abs=1e-6)
        assert trial.user_attrs["is_padded"] is True
        assert trial.user_attrs["n_chunks"] == math.ceil(12 / length)


@pytest.mark.slow
def test_an_npz_study_stored_before_standardization_resumes_as_it_was_made(tmp_path: Path) -> None:
    """A study stored by the version before `standardize` existed trained on raw npz data: its spec
    has no such key, and resuming it must neither standardize nor refuse the data as changed."""
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, size=(16, 4, 1)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x_train=x[:12], y_train=(x[:12, 0, 0] > 5).astype(int),
             x_test=x[12:], y_test=np.array([0, 1, 0, 1]))
    study_file = write_study(tmp_path, {"kind": "npz", "path": "data.npz", "task": "classification", "standardize": False},
                             lengths=[2], name="old", repeats=1)
    url = f"sqlite:///{tmp_path / 'old.db'}"
    create = subprocess.run([sys.executable, "-m", "sweep", "create", str(study_file), "--storage", url], capture_output=True, text=True)
    assert create.returncode == 0, create.stderr
    study = optuna.load_study(study_name="old", storage=url)
    stored = json.loads(study.user_attrs["spec"])
    del stored["problem"]["standardize"], stored["problem"]["allow_pickle"]  # as the earlier version stored it
    study.set_user_attr("spec", json.dumps(stored, sort_keys=True))
    resumed = subprocess.run([sys.executable, "-m", "sweep", "run", "old", "--storage", url, "--workers", "1"],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    trials = optuna.load_study(study_name="old", storage=url).trials
    assert [trial.state for trial in trials] == [TrialState.COMPLETE] * 2
