from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest

from sweep.errors import DataError
from sweep.data.problems import echo_first, lag_echo, load_npz, load_problem
from sweep.spec import EchoFirstProblem, LagEchoProblem, NpzProblem


def echo(seed: int = 0, length: int = 7, n_train: int = 10, n_test: int = 6):
    return echo_first(EchoFirstProblem(kind="echo-first", length=length, n_train=n_train, n_test=n_test, seed=seed))


def lagged(lag: int, length: int = 9, seed: int = 0):
    return lag_echo(LagEchoProblem(kind="lag-echo", length=length, lag=lag, n_train=5, n_test=3, seed=seed))


def test_echo_first_shapes() -> None:
    data = echo(length=7, n_train=10, n_test=6)
    assert data.x_train.shape == (10, 7, 1)
    assert data.x_test.shape == (6, 7, 1)
    assert data.y_train.shape == (10, 1)
    assert data.y_test.shape == (6, 1)
    assert data.x_train.dtype == np.float32
    assert (data.task, data.n_classes, data.n_outputs) == ("classification", 2, 1)
    assert data.sequence_length == 7
    assert data.n_features == 1
    assert not data.is_per_step


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("n", [2, 10, 11])
def test_echo_first_has_a_one_at_the_first_step_of_half_the_sequences(seed: int, n: int) -> None:
    data = echo(seed=seed, n_train=n, n_test=n)
    for x in (data.x_train, data.x_test):
        assert int(x[:, 0, 0].sum()) == n // 2
        assert set(np.unique(x[:, 0, 0])) <= {0.0, 1.0}
        assert not x[:, 1:].any()


def test_echo_first_label_is_the_first_value() -> None:
    data = echo(n_train=20, n_test=8)
    assert np.array_equal(data.y_train[:, 0], data.x_train[:, 0, 0])
    assert np.array_equal(data.y_test[:, 0], data.x_test[:, 0, 0])


def test_the_same_seed_gives_the_same_data_and_fingerprint() -> None:
    first, second = echo(seed=3), echo(seed=3)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(first, name), getattr(second, name))
    assert first.fingerprint == second.fingerprint


def test_another_seed_gives_another_fingerprint() -> None:
    assert echo(seed=3, n_train=40).fingerprint != echo(seed=4, n_train=40).fingerprint


def test_another_shape_gives_another_fingerprint() -> None:
    assert echo(length=7).fingerprint != echo(length=8).fingerprint


def test_load_problem_dispatches_on_kind() -> None:
    assert load_problem(EchoFirstProblem(kind="echo-first", length=4)).task == "classification"
    assert load_problem(LagEchoProblem(kind="lag-echo", length=4, lag=1)).task == "regression"


@pytest.mark.parametrize("lag", [0, 1, 3, 8])
def test_lag_echo_target_is_the_input_lag_steps_earlier(lag: int) -> None:
    data = lagged(lag, length=9)
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        assert x.shape == y.shape == (len(x), 9, 1)
        assert np.array_equal(y[:, lag:], x[:, : 9 - lag])
        assert not y[:, :lag].any()
    assert data.is_per_step
    assert (data.task, data.n_outputs) == ("regression", 1)


def test_lag_echo_same_seed_same_fingerprint() -> None:
    assert lagged(2, seed=5).fingerprint == lagged(2, seed=5).fingerprint
    assert lagged(2, seed=5).fingerprint != lagged(2, seed=6).fingerprint


N_TRAIN, N_TEST, STEPS, FEATURES = 6, 4, 5, 2


def x_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.normal(size=(N_TRAIN, STEPS, FEATURES)),
        "x_test": rng.normal(size=(N_TEST, STEPS, FEATURES)),
    }


def labels(n: int, n_classes: int = 2) -> np.ndarray:
    return np.arange(n) % n_classes


def save(tmp_path: Path, name: str = "data.npz", **arrays: np.ndarray) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def npz(path: Path, task: str = "classification"):
    return load_npz(NpzProblem(kind="npz", path=str(path), task=task))


def npz_error(path: Path, match: str, task: str = "classification") -> str:
    with pytest.raises(DataError, match=match) as info:
        npz(path, task)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "task, y_train, y_test, shape, n_outputs",
    [
        ("classification", labels(N_TRAIN), labels(N_TEST), (N_TRAIN, 1), 1),
        ("classification", labels(N_TRAIN, 3), labels(N_TEST, 3), (N_TRAIN, 1), 3),
        ("classification", labels(N_TRAIN)[:, None], labels(N_TEST)[:, None], (N_TRAIN, 1), 1),
        ("regression", np.ones(N_TRAIN), np.ones(N_TEST), (N_TRAIN, 1), 1),
        ("regression", np.ones((N_TRAIN, 3)), np.ones((N_TEST, 3)), (N_TRAIN, 3), 3),
        ("regression", np.ones((N_TRAIN, STEPS)), np.ones((N_TEST, STEPS)), (N_TRAIN, STEPS, 1), 1),
        ("regression", np.ones((N_TRAIN, STEPS, 2)), np.ones((N_TEST, STEPS, 2)), (N_TRAIN, STEPS, 2), 2),
        ("classification", np.ones((N_TRAIN, STEPS)) * labels(N_TRAIN)[:, None], np.zeros((N_TEST, STEPS)), (N_TRAIN, STEPS, 1), 1),
        # Labels 0 and 2 in training (a test class must occur there too): three outputs.
        ("classification", 2.0 * (labels(N_TRAIN)[:, None, None] * np.ones((1, STEPS, 1))), np.full((N_TEST, STEPS, 1), 2.0), (N_TRAIN, STEPS, 1), 3),
    ],
    ids=["binary-(n,)", "3-class-(n,)", "binary-(n,1)", "regression-(n,)", "regression-(n,k)",
         "regression-(n,T)", "regression-(n,T,k)", "classification-(n,T)", "classification-(n,T,1)"],
)
def test_accepted_npz_target_shapes(tmp_path: Path, task: str, y_train, y_test, shape: tuple, n_outputs: int) -> None:
    data = npz(save(tmp_path, **x_arrays(), y_train=y_train, y_test=y_test), task)
    assert data.y_train.shape == shape
    assert data.y_test.shape == (N_TEST, *shape[1:])
    assert data.x_train.shape == (N_TRAIN, STEPS, FEATURES)
    assert data.x_train.dtype == data.y_train.dtype == np.float32
    assert data.is_per_step == (len(shape) == 3)
    assert data.n_outputs == n_outputs
    assert data.task == task


def test_npz_values_are_kept(tmp_path: Path) -> None:
    arrays = {**x_arrays(), "y_train": labels(N_TRAIN), "y_test": labels(N_TEST)}
    data = npz(save(tmp_path, **arrays))
    assert np.allclose(data.x_train, arrays["x_train"])
    assert np.array_equal(data.y_train[:, 0], arrays["y_train"])


def test_integer_inputs_are_accepted_as_float32(tmp_path: Path) -> None:
    x = np.ones((N_TRAIN, STEPS, 1), dtype=np.int64)
    data = npz(save(tmp_path, x_train=x, x_test=x, y_train=labels(N_TRAIN), y_test=labels(N_TRAIN)))
    assert data.x_train.dtype == np.float32


def good(**changes: np.ndarray | None) -> dict[str, np.ndarray]:
    arrays = {**x_arrays(), "y_train": labels(N_TRAIN), "y_test": labels(N_TEST)}
    arrays.update(changes)
    return {name: value for name, value in arrays.items() if value is not None}


def with_nan(array: np.ndarray, index: tuple) -> np.ndarray:
    array = array.astype(float).copy()
    array[index] = np.nan
    return array


@pytest.mark.parametrize(
    "arrays, match",
    [
        (good(y_test=None), "missing array 'y_test'"),
        (good(x_train=None), "missing array 'x_train'"),
        (good(x_train=np.ones((N_TRAIN, STEPS))), re.escape(f"x_train has shape {(N_TRAIN, STEPS)}")),
        (good(x_test=np.ones((N_TEST, STEPS, FEATURES, 1))), "x_test has shape"),
        (good(x_test=np.ones((N_TEST, STEPS + 1, FEATURES))), "x_test has shape .* but x_train"),
        (good(x_test=np.ones((N_TEST, STEPS, FEATURES + 1))), "x_test has shape .* but x_train"),
        (good(x_train=with_nan(x_arrays()["x_train"], (1, 2, 0))), "x_train contains NaN"),
        (good(x_test=np.full((N_TEST, STEPS, FEATURES), np.inf)), "x_test contains NaN or infinite"),
        (good(y_train=with_nan(labels(N_TRAIN), (3,))), "y_train must hold finite numbers"),
        (good(y_train=labels(N_TRAIN + 1)), f"y_train has {N_TRAIN + 1} rows but there are {N_TRAIN} sequences"),
        (good(y_test=labels(N_TEST - 1)), f"y_test has {N_TEST - 1} rows but there are {N_TEST} sequences"),
        (good(y_train=np.array(5)), "y_train has 0 rows"),
        (good(x_train=np.full((N_TRAIN, STEPS, FEATURES), "a")), "x_train has dtype <U1"),
        (good(y_train=np.array(["a", "b", "a", "b", "a", "b"])), "y_train has dtype <U1; targets must be numbers"),
        (good(y_train=np.ones((N_TRAIN, STEPS + 1, 1))), f"y_train has {STEPS + 1} steps but the inputs have {STEPS}"),
        (good(y_train=np.ones((N_TRAIN, STEPS, 1, 1))), "y_train has shape"),
        (good(y_test=np.zeros((N_TEST, STEPS, 1))), "do not match"),
        (good(y_train=labels(N_TRAIN) + 0.5), "one integer class label"),
        (good(y_train=labels(N_TRAIN) - 1), "one integer class label"),
        (good(y_train=np.ones((N_TRAIN, 2)), y_test=np.ones((N_TEST, 2))), "one integer class label"),
        (good(y_train=np.zeros(N_TRAIN), y_test=np.zeros(N_TEST)), "one class only"),
    ],
    ids=["missing-y_test", "missing-x_train", "x-2d", "x-4d", "test-steps", "test-features", "nan-x", "inf-x",
         "nan-y", "rows-y_train", "rows-y_test", "scalar-y", "string-x", "string-y", "y-steps", "y-4d",
         "per-step-vs-per-sequence", "fractional-labels", "negative-labels", "several-outputs", "one-class"],
)
def test_bad_npz_arrays_are_a_one_line_data_error(tmp_path: Path, arrays: dict, match: str) -> None:
    path = save(tmp_path, **arrays)
    message = npz_error(path, match)
    assert message.startswith(str(path))



def test_labels_that_are_all_one_are_a_single_class(tmp_path: Path) -> None:
    npz_error(save(tmp_path, **good(y_train=np.ones(N_TRAIN), y_test=np.ones(N_TEST))), "one class only")


def test_a_missing_npz_file_is_a_data_error(tmp_path: Path) -> None:
    npz_error(tmp_path / "absent.npz", "no such data file; fix problem.path")


def npy_bytes() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ones((N_TRAIN, STEPS, 1)))
    return buffer.getvalue()


def test_a_single_npy_array_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    path.write_bytes(npy_bytes())
    npz_error(path, "not an .npz archive")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"hello, not numpy", id="text"),
        pytest.param(b"", id="empty"),
        pytest.param(b"PK\x03\x04broken zip", id="broken-zip"),
    ],
)
def test_a_file_that_is_not_an_npz_is_a_data_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "data.npz"
    path.write_bytes(content)
    npz_error(path, "not a readable .npz file")


def test_an_npz_with_object_arrays_is_a_data_error_that_names_the_safe_layout(tmp_path: Path) -> None:
    """Object arrays need pickle, which can run code: refused unless the study allows it."""
    ragged = np.array([np.ones(2), np.ones(3)], dtype=object)
    npz_error(save(tmp_path, **good(x_train=ragged)), "holds object arrays, .*safe layout.*problem.allow_pickle = true")
